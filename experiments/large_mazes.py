"""Exploration on large perfect mazes: steps to the first goal of five explorers (issue 21).

    python experiments/large_mazes.py --out runs/large_mazes --workers 1    # tens of minutes
    python experiments/large_mazes.py --out runs/large_mazes --sizes 41 101
    python experiments/large_mazes.py --out runs/large_mazes --greedy 1     # + DQN greedy paths
    python experiments/large_mazes.py --out runs/l101 --sizes 101 --greedy 3 --greedy-side 101
    python experiments/large_mazes.py --smoke --out /tmp/large_mazes        # seconds

Arms (every other setting at its default; HER 'future'):
- paper: Smart Start as the paper's Algorithm 1, the learner's epsilon-greedy after the walk
  (``explore='epsilon'``);
- directed: Smart Start with Eq. 1 over the frontier and UCB1 after the walk, a walk to the
  nearest frontier state whenever no untried action is left (``explore='directed'``);
- count_bonus: the DQN without Smart Start, beta / sqrt(C(s, a)) added to its real rewards
  (``count_bonus``; #Exploration / MBIE-EB style);
- frontier: the reference explorer (:func:`frontier_explorer`), no learning;
- epsilon: no Smart Start, the tabular learner's epsilon-greedy: its values of a goal never
  reached are all 0 and its ties random, so a uniform random walk (the floor).

Before the goal is first reached the Smart Start arms' moves do not depend on the learner (the
DQN's random moves until the goal, or UCB1 on counts, draw what the tabular learner's draw), so
those arms run the cheaper tabular learner; every run stops at its first goal
(``stop_first_goal``) or its budget. Mazes: ``generated:41x41:seed=S`` (S = 0-4, 1000-step
episodes), 101x101 (S = 0-2, 5000) and 201x201 (S = 0, 20,000: its shortest path is 7,894
moves). Episodes restart at the start for every arm.

``--greedy N`` adds the DQN with the paper's and with the directed exploration at the value
scale of episodes up to 1,000 steps (``SHORT_PATHS``: ``--model-loss entries --gamma 0.999``),
and with the directed one and the long-path settings (``config.LONG_PATHS``: ``--model-loss
split --gamma 0.99999``, the defaults for longer episodes), on generated:41x41:seed=S, S < N,
400k env steps
(``--greedy-side 101``: 300k; 201: 1.5M), stopping at its first greedy evaluation (20
episodes, every 10k env steps) with success >= 0.9 and mean length <= 1.2x the shortest path.

Writes into --out: large_mazes_runs.csv/.md (one row per run), large_mazes.csv/.md (per maze
size and arm: median first goal, ratio to the frontier explorer and to the DFS bound 2(n - 1),
n free cells; steps to a greedy path where measured), large_mazes.png (first-goal steps against
free cells, log-log, one line per arm with its fitted exponent), and the runs under sweep/.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from _common import Timer, fmt, median_range, parse_args, save, write_table

from sshr_torch.config import LONG_PATHS, TrainConfig
from sshr_torch.env import GridMazeEnv
from sshr_torch.maze import load_maze, shortest_path_length
from sshr_torch.sweep import run_sweep

# The count bonus's beta, with the DQN's reward -1 per step: a move tried once pays 0, as much
# as the goal (on keulen_hard, seed 0, 40k env steps, neither beta 1 nor beta 0.1 with reward 1
# at the goal and gamma 0.98 found the goal: docs/large_mazes.md).
COUNT_BONUS = 1.0
# The DQN's value scale for episodes of up to 1,000 steps, pinned in the arms that measure it
# on longer ones (where the defaults are config.LONG_PATHS).
SHORT_PATHS: dict[str, Any] = {"model_loss": "entries", "gamma": 0.999}
ARMS: dict[str, dict[str, Any] | None] = {
    "paper": {"agent": "tabular", "explore": "epsilon"},
    "directed": {"agent": "tabular", "explore": "directed"},
    # gamma 0.999 at every size, as measured (a move tried once pays 0 against -1 a step)
    "count_bonus": {
        "agent": "dqn",
        "smart_start": False,
        "count_bonus": COUNT_BONUS,
        "gamma": 0.999,
    },
    "frontier": None,  # frontier_explorer, not a TrainConfig
    "epsilon": {"agent": "tabular", "smart_start": False},
}
GREEDY_ARMS = {
    "dqn_paper": {"agent": "dqn", "explore": "epsilon", **SHORT_PATHS},
    "dqn_directed": {"agent": "dqn", "explore": "directed", **SHORT_PATHS},
    "dqn_long_paths": {"agent": "dqn", "explore": "directed", **LONG_PATHS},
}
# The budgets for a greedy path, by maze side.
GREEDY_BUDGETS = {41: 400_000, 101: 300_000, 201: 1_500_000}
SUCCESS, PATH_FACTOR, EVAL_EPISODES = 0.9, 1.2, 20


@dataclasses.dataclass(frozen=True)
class Size:
    """A maze size: seeds, episode limit, and each arm's budget in env steps."""

    side: int
    n_seeds: int
    episode_steps: int
    budgets: dict[str, int]

    def maze(self, seed: int) -> str:
        return f"generated:{self.side}x{self.side}:seed={seed}"


SIZES = {
    41: Size(41, 5, 1000, {"paper": 400_000, "directed": 400_000, "count_bonus": 200_000,
                           "frontier": 400_000, "epsilon": 1_000_000}),
    101: Size(101, 3, 5000, {"paper": 2_000_000, "directed": 2_000_000, "count_bonus": 300_000,
                             "frontier": 2_000_000, "epsilon": 2_000_000}),
    201: Size(201, 1, 20_000, {"paper": 10_000_000, "directed": 4_000_000, "count_bonus": 0,
                               "frontier": 4_000_000, "epsilon": 0}),
}  # fmt: skip
# A budget of 0: the arm is not run at that size (the reason is in docs/large_mazes.md).
SMOKE = {21: Size(21, 1, 500, {**{arm: 30_000 for arm in ARMS}, "count_bonus": 1_000})}
# The DQN runs about 1,000 env steps per second here (200k: 195 s): the count bonus runs
# seed 0 only.
COUNT_BONUS_SEEDS = 1


def frontier_explorer(maze: str, episode_steps: int, seed: int, budget: int) -> int | None:
    """Env steps to the first goal of the frontier explorer, None when not within ``budget``.

    At a state with an untried action it tries one (uniformly at random); otherwise it walks
    the moves it has seen, by a breadth-first search, to the nearest state that has one.
    Episodes restart at the start after ``episode_steps`` steps, as for the learners.
    """
    env = GridMazeEnv(load_maze(maze), max_episode_steps=episode_steps)
    rng = np.random.default_rng(seed)
    moves: dict[int, dict[int, int]] = collections.defaultdict(dict)  # s -> {a: s'}
    steps, reset_seed = 0, seed
    while steps < budget:
        obs, _ = env.reset(seed=reset_seed)
        state, path, reset_seed = int(obs["observation"]), [], None
        while steps < budget:
            untried = [a for a in range(4) if a not in moves[state]]
            if untried:
                action, path = untried[int(rng.integers(len(untried)))], []
            else:
                path = path or _path_to_untried(moves, state)
                if not path:
                    return None  # everything reachable tried: the goal is not reachable
                action = path.pop(0)
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            moves[state][action] = int(obs["observation"])
            if info["is_success"]:
                return steps
            if terminated or truncated:
                break
            state = int(obs["observation"])
    return None


def _path_to_untried(moves: dict[int, dict[int, int]], start: int) -> list[int]:
    """Actions of the fewest seen moves from ``start`` to a state with an untried action."""
    parent: dict[int, tuple[int, int] | None] = {start: None}
    queue = collections.deque([start])
    while queue:
        state = queue.popleft()
        if len(moves[state]) < 4:
            actions = []
            while parent[state] is not None:
                state, action = parent[state]  # type: ignore[misc]
                actions.append(action)
            return actions[::-1]
        for action, nxt in moves[state].items():
            if nxt not in parent:
                parent[nxt] = (state, action)
                queue.append(nxt)
    return []


def build_configs(sizes: Sequence[Size]) -> list[tuple[Size, str, TrainConfig]]:
    """(size, arm, config) for every size x learning arm x seed with a budget."""
    jobs = []
    for size in sizes:
        for arm, settings in ARMS.items():
            if settings is None or not size.budgets[arm]:
                continue
            n_seeds = min(size.n_seeds, COUNT_BONUS_SEEDS) if arm == "count_bonus" else size.n_seeds
            for seed in range(n_seeds):
                config = TrainConfig(
                    maze=size.maze(seed),
                    max_episode_steps=size.episode_steps,
                    total_steps=size.budgets[arm],
                    seed=seed,
                    stop_first_goal=True,
                    eval_interval=0,
                    eval_episodes=1,
                    image_interval=0,
                    checkpoint_interval=10**6,
                    **settings,
                )
                jobs.append((size, arm, config))
    return jobs


def greedy_configs(seeds: int, side: int = 41) -> list[tuple[Size, str, TrainConfig]]:
    """The DQN with the paper's and the directed exploration, and with the directed one and
    the long-path settings (``LONG_PATHS``), on side x side mazes, to a greedy path."""
    size = SIZES[side]
    return [
        (
            size,
            arm,
            TrainConfig(
                maze=size.maze(seed),
                max_episode_steps=size.episode_steps,
                total_steps=GREEDY_BUDGETS[side],
                seed=seed,
                eval_interval=max(1, 10_000 // size.episode_steps),  # every 10k env steps
                eval_episodes=EVAL_EPISODES,
                stop_success=SUCCESS,
                stop_path_factor=PATH_FACTOR,
                image_interval=0,
                checkpoint_interval=10**6,
                **settings,
            ),
        )
        for arm, settings in GREEDY_ARMS.items()
        for seed in range(seeds)
    ]


def summarise(rows: Sequence[dict[str, Any]], sizes: Sequence[Size]) -> list[dict[str, Any]]:
    """One row per size and arm: first goal against the frontier explorer and the DFS bound."""
    table = []
    for size in sizes:
        of_size = [r for r in rows if r["side"] == size.side]
        frontier = [r["first_goal"] for r in of_size if r["arm"] == "frontier"]
        dfs = [r["dfs_bound"] for r in of_size if r["arm"] == "frontier"]
        for arm in [*ARMS, *GREEDY_ARMS]:
            runs = sorted((r for r in of_size if r["arm"] == arm), key=lambda r: r["seed"])
            if not runs:
                continue
            first = [r["first_goal"] for r in runs]
            by_seed = [
                f / f_ref if f is not None and f_ref else None
                for f, f_ref in zip(first, frontier, strict=False)
            ]
            greedy = [r["steps_to_greedy"] for r in runs]
            reached = [r for r in first if r is not None]
            table.append(
                {
                    "maze": f"generated:{size.side}x{size.side}",
                    "free_cells": runs[0]["free_cells"],
                    "episode_steps": size.episode_steps,
                    "arm": arm,
                    "budget": runs[0]["budget"],
                    "first_goal": median_range(first),
                    "over_frontier": _ratio_cell(by_seed),
                    "over_dfs_bound": fmt(float(np.median(reached)) / float(np.median(dfs)))
                    if len(reached) * 2 > len(first)
                    else "n/a",
                    "steps_to_greedy": median_range(greedy) if arm in GREEDY_ARMS else "",
                    "wall_s": fmt(float(np.median([r["wall_s"] for r in runs]))),
                }
            )
    return table


def _ratio_cell(ratios: Sequence[float | None]) -> str:
    """'median (min-max)' of per-seed ratios to the frontier explorer; never -> 'n/a'."""
    known = [r for r in ratios if r is not None]
    if len(known) < len(ratios) or not known:
        return "n/a"
    return f"{np.median(known):.2f} ({min(known):.2f}-{max(known):.2f})"


def exponents(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per arm, the slope of log(median first goal) against log(free cells) over the sizes
    where every seed reached the goal (two sizes at least)."""
    slopes = {}
    for arm in ARMS:
        points = []
        for side in sorted({r["side"] for r in rows}):
            first = [r["first_goal"] for r in rows if r["arm"] == arm and r["side"] == side]
            if first and all(f is not None for f in first):
                cells = next(r["free_cells"] for r in rows if r["side"] == side)
                points.append((math.log(cells), math.log(float(np.median(first)))))
        if len(points) >= 2:
            x, y = zip(*points, strict=True)
            slopes[arm] = float(np.polyfit(x, y, 1)[0])
    return slopes


def plot(path: Path, rows: Sequence[dict[str, Any]], slopes: dict[str, float]) -> None:
    """Median first-goal steps against free cells, log-log; a hollow marker where some seed
    did not reach the goal within the budget (drawn at the budget)."""
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=90)
    for arm in ARMS:
        points = []
        for side in sorted({r["side"] for r in rows}):
            runs = [r for r in rows if r["arm"] == arm and r["side"] == side]
            if not runs:
                continue
            first = [r["first_goal"] for r in runs]
            reached = all(f is not None for f in first)
            value = float(np.median(first)) if reached else float(runs[0]["budget"])
            points.append((runs[0]["free_cells"], value, reached))
        if not points:
            continue
        x, y, full = zip(*points, strict=True)
        label = arm + (f" (n^{slopes[arm]:.2f})" if arm in slopes else "")
        (line,) = ax.plot(x, y, "-", lw=1.2, label=label)
        for xi, yi, ok in points:
            ax.plot(xi, yi, "o", color=line.get_color(), mfc=line.get_color() if ok else "none")
    cells = np.array(sorted({r["free_cells"] for r in rows}), dtype=float)
    ax.plot(cells, 2 * (cells - 1), "k:", lw=1, label="DFS bound 2(n-1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("free cells n")
    ax.set_ylabel("env steps to the first goal (median)")
    ax.set_title("Perfect mazes; hollow: not reached within the budget", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save(fig, path)


def _extra_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", nargs="+", type=int, choices=sorted(SIZES), default=sorted(SIZES),
        help="maze sides to run (default: all of 41 101 201)",
    )  # fmt: skip
    parser.add_argument(
        "--greedy", type=int, default=0, metavar="N",
        help="also run the DQN to a greedy path on seeds 0..N-1 (minutes of CPU each)",
    )  # fmt: skip
    parser.add_argument(
        "--greedy-side", type=int, choices=sorted(GREEDY_BUDGETS), default=41,
        help="the maze side of the --greedy runs (budgets 400k, 300k, 1.5M env steps)",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, _extra_flags)
    out = Path(args.out)
    sizes = list(SMOKE.values()) if args.smoke else [SIZES[side] for side in args.sizes]
    jobs = build_configs(sizes)
    if args.greedy > 0 and not args.smoke:
        jobs += greedy_configs(args.greedy, args.greedy_side)
    rows = []
    with Timer("frontier explorer"):
        for size in sizes:
            for seed in range(size.n_seeds):
                maze = load_maze(size.maze(seed))
                first = frontier_explorer(
                    size.maze(seed), size.episode_steps, seed, size.budgets["frontier"]
                )
                rows.append(_row(size, "frontier", seed, maze, first, size.budgets["frontier"]))
                rows[-1]["wall_s"] = 0.0
    with Timer("runs"):
        configs = [config for _, _, config in jobs]
        results = run_sweep(configs, out / "sweep", workers=args.workers, progress=False)
    for (size, arm, config), result in zip(jobs, results, strict=True):
        if result["error"]:
            raise RuntimeError(f"run {result['run']} failed: {result['error']}")
        maze = load_maze(config.maze)
        row = _row(size, arm, config.seed, maze, result["first_success_step"], config.total_steps)
        row["steps_to_greedy"] = result.get("solved_step")
        row["wall_s"] = result["wall_s"]
        rows.append(row)
    write_table(out, "large_mazes_runs", rows, "Large mazes: one row per run")
    slopes = exponents([r for r in rows if r["arm"] in ARMS])
    notes = [
        "first_goal: env steps to the first training episode that reached the goal, median "
        "(min-max) over seeds; 'never' where the budget ran out first.",
        "over_frontier: per-seed ratio to the frontier explorer on the same maze, median "
        "(min-max); over_dfs_bound: median first goal / 2(n - 1).",
        "Growth exponents (log-log slope over the sizes where every seed reached the goal): "
        + ", ".join(f"{arm} {slope:.2f}" for arm, slope in slopes.items()),
    ]
    write_table(out, "large_mazes", summarise(rows, sizes), "Large mazes: first goal", notes)
    plot(out / "large_mazes.png", [r for r in rows if r["arm"] in ARMS], slopes)
    print((out / "large_mazes.md").read_text())
    return 0


def _row(size: Size, arm: str, seed: int, maze: Any, first: int | None, budget: int) -> dict:
    n_free = len(maze.free_cells)
    return {
        "side": size.side,
        "maze": size.maze(seed),
        "arm": arm,
        "seed": seed,
        "free_cells": n_free,
        "shortest": shortest_path_length(maze),
        "dfs_bound": 2 * (n_free - 1),
        "budget": budget,
        "first_goal": first,
        "steps_to_greedy": None,
        "wall_s": None,
    }


if __name__ == "__main__":
    sys.exit(main())
