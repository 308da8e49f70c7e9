"""Ablation: {plain, HER, Smart Start, Smart Start + HER} x {tabular, DQN} x six mazes.

    python experiments/ablation.py --out runs/ablation             # full, see BUDGETS
    python experiments/ablation.py --smoke --out /tmp/ablation     # seconds (2 mazes)

Per learner, maze and arm: steps to the first goal (median and range over seeds), the success
rate of the last 100 training episodes, the final greedy (epsilon 0) success from the start and
its path length against the shortest path; success-rate curves over env steps as figures.

Writes into --out: ablation.csv/.md, success_tabular.png, success_dqn.png, and the sweep's run
directories under sweep/.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from _common import (
    FIRST_ROUND_DQN,
    PAPER_EXPLORATION,
    Timer,
    mean_ci,
    median_range,
    number,
    parse_args,
    read_episodes,
    save,
    write_table,
)

from sshr_torch.config import TrainConfig
from sshr_torch.maze import load_maze, shortest_path_length
from sshr_torch.sweep import grid, run_sweep

MAZES = (
    "keulen_easy",
    "keulen_medium",
    "keulen_hard",
    "keulen_extreme",
    "generated:41x41:seed=1:kind=loops",
    "generated:101x101:seed=1:kind=loops",
)
SMOKE_MAZES = ("keulen_easy", "generated:41x41:seed=1:kind=loops")
ARMS = {  # label -> (smart_start, her)
    "plain": (False, "none"),
    "HER": (False, "future"),
    "SS": (True, "none"),
    "SS+HER": (True, "future"),
}
# learner -> (env steps per run, seeds); chosen so the whole grid fits well under an hour on
# two shared cores. The DQN costs ~20x more per step than the tabular learner.
BUDGETS = {"tabular": (60_000, 3), "dqn": (15_000, 3)}
SMOKE_BUDGETS = {"tabular": (1_500, 1), "dqn": (500, 1)}
EPISODE_STEPS = 1000
CURVE_BINS = 10

SETTINGS = [
    "Every run: fixed start and goal of the maze, 1000-step episodes, reward 1 at the goal; "
    "Smart Start (when on) with eta 1, c_ss 0.1, the paper's UCB form; HER (when on) 'future' "
    "with k = 4. 'plain' is epsilon-greedy alone.",
    "Tabular: Q-learning alpha 0.1, gamma 0.99, epsilon 0.1 constant. DQN: one hidden layer of "
    "256, Adam 1e-3, gamma 0.98, batch 128, epsilon 1 -> 0.05 over 10k steps (shortened from "
    "the default 20k to fit the 15k-step budget), updates from step 1000 on.",
    "The issue leaves the generated mazes' kind open: generator kind 'loops' (a perfect maze "
    "with some walls knocked through), seed 1; the perfect 101x101 maze's shortest path (2382 "
    "moves) is out of reach of these budgets.",
    "first goal: env steps to the first success, median (range) over seeds. last-100 success: "
    "mean over seeds of the success rate of the last 100 training episodes. greedy success: "
    "mean over seeds of the final greedy evaluation's success (3 episodes from the start). "
    "path / shortest: greedy episode length / BFS shortest path, mean over seeds that succeed.",
]


def build_configs(smoke: bool) -> list[TrainConfig]:
    """The ablation grid for both learners."""
    budgets = SMOKE_BUDGETS if smoke else BUDGETS
    mazes = SMOKE_MAZES if smoke else MAZES
    configs: list[TrainConfig] = []
    for learner, (steps, seeds) in budgets.items():
        base = TrainConfig(
            agent=learner,
            max_episode_steps=EPISODE_STEPS,
            eta=1.0,
            c_ss=0.1,
            ucb_form="paper",
            her_k=4,
            # The DQN's settings of the published tables (its defaults before issue 12).
            **(
                FIRST_ROUND_DQN
                if learner == "dqn"
                else {"ss_value": "learner", **PAPER_EXPLORATION}
            ),
            total_steps=steps,
            learning_starts=200 if smoke else 1000,
            epsilon_decay_steps=10_000,
            buffer_size=10_000 if learner == "tabular" else 100_000,
            eval_interval=0,
            eval_episodes=3,
            image_interval=0,
            checkpoint_interval=100,
        )
        for smart_start, her in ARMS.values():
            arm = TrainConfig(**{**base.to_dict(), "smart_start": smart_start, "her": her})
            configs += grid(arm, {"maze": list(mazes)}, seeds)
    return configs


def _arm(row: dict) -> str:
    key = (row["smart_start"] in (True, "True"), row["her"])
    return next(label for label, value in ARMS.items() if value == key)


def table(rows: Sequence[dict], mazes: Sequence[str]) -> list[dict]:
    """One row per learner, maze and arm."""
    out = []
    for learner in BUDGETS:
        for maze in mazes:
            shortest = shortest_path_length(load_maze(maze))
            for label in ARMS:
                runs = [
                    r
                    for r in rows
                    if r["agent"] == learner and r["maze"] == maze and _arm(r) == label
                ]
                if any(r["error"] for r in runs):
                    raise RuntimeError(f"a run failed: {[r['error'] for r in runs if r['error']]}")
                greedy = [r["eval_success_rate"] for r in runs]
                lengths = [r["eval_mean_length"] for r in runs if r["eval_success_rate"] == 1.0]
                out.append(
                    {
                        "learner": learner,
                        "maze": maze.replace(":seed=1:kind=loops", " loops"),
                        "shortest": shortest,
                        "arm": label,
                        "seeds": len(runs),
                        "env_steps": runs[0]["env_steps"] if runs else 0,
                        "first_goal": median_range([r["first_success_step"] for r in runs]),
                        "last100_success": round(
                            float(np.mean([r["success_rate_last_100"] for r in runs])), 3
                        ),
                        "greedy_success": round(float(np.mean(greedy)), 3),
                        "path_over_shortest": round(float(np.mean(lengths)) / shortest, 2)
                        if lengths
                        else None,
                    }
                )
    return out


def curves(out: Path, episodes: list[dict[str, str]], configs: Sequence[TrainConfig]) -> None:
    """Per learner: success rate of the episodes ending in each env-step bin, mean over seeds."""
    mazes = list(dict.fromkeys(c.maze for c in configs))
    for learner in dict.fromkeys(c.agent for c in configs):
        budget = next(c.total_steps for c in configs if c.agent == learner) or 1
        edges = np.linspace(0, budget, CURVE_BINS + 1)
        fig, axes = plt.subplots(2, (len(mazes) + 1) // 2, figsize=(10, 5.5), squeeze=False)
        for ax, maze in zip(axes.flat, mazes, strict=False):
            for label in ARMS:
                by_seed: dict[str, list[tuple[int, float]]] = {}
                for r in episodes:
                    if r["agent"] == learner and r["maze"] == maze and _arm(r) == label:
                        by_seed.setdefault(r["seed"], []).append(
                            (int(r["env_steps"]), number(r["success"]))
                        )
                rates = []
                for points in by_seed.values():
                    steps, success = np.asarray(points).T
                    index = np.clip(np.digitize(steps, edges[1:-1]), 0, CURVE_BINS - 1)
                    sums = np.bincount(index, success, CURVE_BINS)
                    counts = np.bincount(index, minlength=CURVE_BINS)
                    rates.append(np.where(counts > 0, sums / np.maximum(counts, 1), 0.0))
                if rates:
                    mean, _, _ = mean_ci(np.asarray(rates))
                    ax.plot((edges[:-1] + edges[1:]) / 2, mean, label=label, marker=".")
            ax.set_title(maze.replace(":seed=1:kind=loops", " loops"), fontsize=8)
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=7)
        fig.supxlabel("env steps")
        fig.supylabel("success rate of episodes")
        save(fig, out / f"success_{learner}.png")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep (finished runs are skipped), then write the table and the figures."""
    args = parse_args(__doc__.split("\n\n")[0], argv)
    out = Path(args.out)
    configs = build_configs(args.smoke)
    with Timer("ablation sweep") as timer:
        rows = run_sweep(configs, out / "sweep", workers=args.workers, progress=not args.smoke)
    mazes = SMOKE_MAZES if args.smoke else MAZES
    budgets = SMOKE_BUDGETS if args.smoke else BUDGETS
    notes = [
        *SETTINGS,
        "Budgets: "
        + "; ".join(f"{k} {s:,} env steps x {n} seeds (0-{n - 1})" for k, (s, n) in budgets.items())
        + f". Wall time of this call's sweep (finished runs skipped): {timer.seconds:.0f} s, "
        + f"{args.workers} worker(s)"
        + (" (smoke: 2 mazes)." if args.smoke else "."),
    ]
    write_table(out, "ablation", table(rows, mazes), "Ablation: each part on and off", notes)
    curves(out, read_episodes(out / "sweep"), configs)
    print((out / "ablation.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
