"""The paper's Fig. 5 (reward per episode) and Fig. 6 (steps per episode) under each reading.

    python experiments/paper_fig5_fig6.py --out runs/paper_fig5_fig6    # full: docs/results.md
    python experiments/paper_fig5_fig6.py --smoke --out /tmp/fig56      # seconds
    python experiments/paper_fig5_fig6.py --out runs/fig56_defaults --learners dqn --goals drawn \
        --dqn defaults --dqn-seeds 30 --workers 1        # the library's DQN, drawn goals

The paper's setting: keulen_easy (12x9), reward 1 only at the goal, Smart Start with eta 1
(every episode but the first) and c_ss 0.1, HER 'future' with k = 4, 300 episodes; compared with
the same without HER ("SS alone"). The paper is loose in three places (issue 14), so every
combination they imply is run, for the tabular learner and the DQN, at the paper's 1000-step
episodes and at Keulen's 100-step ones:

* Eq. 1's value term (``ss_value``): the learner's max_a Q(s, g) ('learner', Keulen's code), or
  zero, counts alone ('zero', the paper's text: "Through the experiment the value function will
  be zero");
* goals: the maze's one fixed goal (Sec. V's figure), or a goal drawn every episode with the
  fixed start (Algorithm 1 line 3, "Sample a goal g and an initial state s_0");
* "Average Reward": the episode's return, or its reward divided by its steps (Keulen's plotting
  code, whose axis labels the paper's figures carry).

The DQN is the first round's (``--dqn first_round``, the published tables: 1-step targets,
reward 1 at the goal only, gamma 0.98, no count-model values) or the library's defaults
(``--dqn defaults``: the count model's values for every goal, 10-step returns, reward -1 per
step inside the learner); both keep the paper's exploration after the guided walk. The metrics
are the env's rewards either way. ``--learners``, ``--goals`` and ``--dqn-seeds`` run a part.

Writes into --out: report.md (all the tables and the settings); summary.csv/.md (docs/results.md's
table: every ratio per arm and the mechanism share); verdicts.csv/.md (one row per reading:
each claim reproduced or not, with the numbers); mechanism.csv/.md (share of Smart Start
episodes whose S_ss lies within 2 moves of the goal); greedy.csv/.md (drawn goals: a greedy
walk from the start to every goal after training); claims.csv/.md (every HER/SS ratio with its
bootstrap 95% interval and verdict); fig5_return.png, fig5_reward_per_step.png and
fig6_steps.png; and the sweep's run directories under sweep/ (each drawn-goal run also keeps
its greedy result in greedy_all_goals.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import matplotlib.pyplot as plt
import numpy as np
from _common import (
    FIRST_ROUND_DQN,
    PAPER_EXPLORATION,
    Timer,
    band_plot,
    bootstrap_ratio,
    mean_ci,
    number,
    parse_args,
    per_seed_curves,
    read_episodes,
    save,
    write_table,
)

from sshr_torch import runlog
from sshr_torch.config import SsValue, TrainConfig
from sshr_torch.maze import bfs_distances, load_maze
from sshr_torch.sweep import grid, run_names, run_sweep

MAZE = "keulen_easy"
EPISODES = 300
SPLIT = 100  # the paper's claims change at episode 100
# The DQN arms have 5 seeds, not 30: on this 2-core machine one DQN seed of all 16 arms costs
# about 280 CPU-seconds (the two drawn-goal, 1000-step SS-alone arms, ~125k env steps each,
# half of it), so 30 seeds need ~140 CPU-minutes, over an hour on both cores (docs/results.md).
SEEDS = {"tabular": 30, "dqn": 5}
DQN_LEARNERS = ("first_round", "defaults")
LEARNERS = ("tabular", "dqn")
EPISODE_STEPS = (1000, 100)
VALUE_TERMS: tuple[str, ...] = get_args(SsValue)
GOALS = {"fixed": False, "drawn": True}  # label -> TrainConfig.random_goal
ARMS = {"none": "SS", "future": "SS+HER"}
REWARD_METRICS = ("return", "reward_per_step")  # the two readings of "Average Reward"
NEAR = 2  # "S_ss within 2 moves of the goal"
GREEDY_LIMIT = 100  # moves of a greedy walk to one goal (keulen_easy's longest path: 21)
SMOOTH = 10

# (claim, metric kind, part, the paper's HER/SS ratio, the band we accept as "about" it)
CLAIMS = (
    ("2x reward early", "reward", "early", 2.0, (1.5, 2.5)),
    ("equal reward late", "reward", "late", 1.0, (0.95, 1.05)),
    ("30% fewer steps early", "steps", "early", 0.70, (0.60, 0.80)),
    ("5% fewer steps late", "steps", "late", 0.95, (0.90, 1.00)),
)

DQN_NOTES = {
    "first_round": "Left open by the paper, the first round's DQN (--dqn first_round): one "
    "hidden layer of 256, Adam 1e-3, gamma 0.98 (the HER paper's), batch 128, buffer 100k, one "
    "update per step after 1000 steps, hard target sync every 500 updates, epsilon 1 -> 0.05 "
    "over 20k steps, Huber loss, gradient norm 10, TD targets clamped to [0, 1].",
    "defaults": "Left open by the paper, the library's DQN defaults (--dqn defaults): as the "
    "first round's, but gamma 0.999 with reward -1 per step inside the learner (the env's "
    "reward, which the metrics read, is unchanged), 10-step returns, and the network "
    "regressed onto Smart Start's count-model values for every goal of a batch "
    "(model_values 'q', model_goals 'all'); the paper's exploration after the guided walk.",
}
SETTINGS = [
    "Maze keulen_easy (12x9, thesis code scale 3; the paper names 'the Easy grid world' without "
    "a size), fixed start, no slip; reward 1 on reaching the goal, 0 otherwise. Goals 'fixed': "
    "the maze's goal; 'drawn': a free cell other than the start drawn uniformly every episode "
    "(TrainConfig.random_goal).",
    "Smart Start: eta 1 (never in episode 0), c_ss 0.1 in the paper's Eq. 1 form "
    "V(s) + c_ss sqrt(ln N / C(s)) with V(s) = max_a Q(s, g) of the learner ('learner') or 0 "
    "('zero'); walk to the exact state (theta 0), guided steps learned from and counted in the "
    "episode's steps. HER: 'future', k = 4; goals are achieved goals of next states; a "
    "relabelled transition reaching its goal is terminal.",
    "Left open by the paper, Keulen's defaults used: tabular Q-learning alpha 0.1, gamma 0.99, "
    "epsilon-greedy 0.1 constant, Q0 = 0; the tabular learner learns online from each real "
    "transition and from the episode's k relabels per transition at its end.",
    DQN_NOTES["first_round"],
    "Metrics per episode: return (1 if the goal was reached), reward per step (return / "
    "steps, Keulen's plotted 'average reward'), steps (guided Smart Start steps included). "
    "'early' = episodes 0-99, 'late' = 100-299 (smoke: split at episode 2).",
    "Ratio = mean over SS+HER seeds / mean over SS seeds of each seed's mean over the episodes; "
    "95% interval: percentile bootstrap over seeds (10,000 resamples, each arm resampled on its "
    "own). A claim counts as reproduced when our ratio lies in the stated band around the "
    "paper's figure and, for a claimed difference, the interval excludes 1. The paper gives no "
    "seed count and no error bars.",
    "Mechanism: share of the Smart Start episodes whose S_ss lies within 2 moves of the "
    "episode's goal (mean over seeds, Student-t 95% interval). On keulen_easy the grid "
    "distance (the env's distance, which ignores walls) is <= 2 exactly when the walk is <= 2 "
    "moves, for every pair of free cells (checked by breadth-first search when the tables are "
    "written).",
    "Greedy evaluation (drawn goals): after training, from the fixed start to each of the 71 "
    "other free cells as the goal, argmax_a Q(s, g, a) (ties to the lowest action) for up to "
    f"{GREEDY_LIMIT} moves, a revisited cell ends the walk as a failure (the maze is "
    "deterministic); success = share of goals reached, excess = moves beyond the shortest path, "
    "averaged over the goals reached.",
]


def build_configs(
    smoke: bool,
    learners: Sequence[str] = LEARNERS,
    goals: Sequence[str] = tuple(GOALS),
    dqn: str = "first_round",
    dqn_seeds: int | Sequence[int] = SEEDS["dqn"],
) -> list[TrainConfig]:
    """SS and SS+HER for every learner, value term, goal reading and episode length; the DQN
    is the first round's or the library's defaults (``dqn``), with ``dqn_seeds`` seeds (a
    number: 0..n-1, or the seeds)."""
    base = TrainConfig(
        her_k=4,
        smart_start=True,
        eta=1.0,
        c_ss=0.1,
        ucb_form="paper",
        maze=MAZE,
        episodes=4 if smoke else EPISODES,
        alpha=0.1,
        gamma=None,  # each learner's default: 0.99 tabular (Keulen); the DQN's below
        tabular_epsilon=0.1,
        eval_interval=0,
        image_interval=0,
        checkpoint_interval=50,
        **PAPER_EXPLORATION,
    )
    configs: list[TrainConfig] = []
    for learner in learners:
        seeds = 2 if smoke else (dqn_seeds if learner == "dqn" else SEEDS[learner])
        buffer = {"buffer_size": 10_000} if learner == "tabular" else {}
        # The paper's DQN (1-step targets), as in the published tables, or the library's
        # defaults; Eq. 1 is an axis either way.
        first_round = {k: v for k, v in FIRST_ROUND_DQN.items() if k != "ss_value"}
        dqn_settings = first_round if dqn == "first_round" else {}
        settings = {**buffer, **(dqn_settings if learner == "dqn" else {})}
        learner_base = TrainConfig(**{**base.to_dict(), "agent": learner, **settings})
        axes = {
            "ss_value": list(VALUE_TERMS),
            "random_goal": [GOALS[name] for name in goals],
            "max_episode_steps": list(EPISODE_STEPS),
            "her": list(ARMS),
        }
        configs += grid(learner_base, axes, seeds)
    # Seed by seed within a learner: a sweep cut short leaves whole seeds, every arm in each.
    return sorted(configs, key=lambda c: (LEARNERS.index(c.agent), c.seed))


# ---- the episodes, per arm ---------------------------------------------------------------------


def _keep(learner: str, value: str, goals: str, steps: int, her: str) -> Any:
    """Whether an episodes.csv row is of this arm. The sweep writes only the axes it varied,
    so a column it left out (one learner, one goal reading) holds for every row."""
    wanted = {
        "agent": learner,
        "ss_value": value,
        "random_goal": str(GOALS[goals]),
        "max_episode_steps": str(steps),
        "her": her,
    }
    return lambda r: all(r.get(key, wanted[key]) == wanted[key] for key in wanted)


def arm_curves(
    episodes: list[dict[str, str]], arm: tuple[str, str, str, int, str], n: int
) -> dict[str, np.ndarray]:
    """(n_seeds, n) arrays of return, reward per step and steps for one arm."""
    keep = _keep(*arm)
    returns = per_seed_curves(episodes, keep, "return", n)
    lengths = per_seed_curves(episodes, keep, "length", n)
    return {"return": returns, "reward_per_step": returns / lengths, "steps": lengths}


def _arms(kinds: Sequence[str] = tuple(GOALS)) -> list[tuple[str, int, str, str]]:
    """(learner, steps, value term, goals) in table order, for the goal readings run."""
    return [
        (learner, steps, value, goals)
        for learner in LEARNERS
        for steps in EPISODE_STEPS
        for value in VALUE_TERMS
        for goals in GOALS
        if goals in kinds
    ]


def claims_table(
    episodes: list[dict[str, str]],
    learners: Sequence[str],
    n_episodes: int,
    split: int,
    kinds: Sequence[str] = tuple(GOALS),
) -> list[dict]:
    """One row per arm, metric and claim: ratio, interval, verdict."""
    rows = []
    for learner, steps, value, goals in _arms(kinds):
        if learner not in learners:
            continue
        curves = {
            her: arm_curves(episodes, (learner, value, goals, steps, her), n_episodes)
            for her in ARMS
        }
        for claim, kind, part, paper, (low_ok, high_ok) in CLAIMS:
            window = slice(0, split) if part == "early" else slice(split, n_episodes)
            for metric in REWARD_METRICS if kind == "reward" else ("steps",):
                her_means = curves["future"][metric][:, window].mean(axis=1)
                ss_means = curves["none"][metric][:, window].mean(axis=1)
                ratio, low, high = bootstrap_ratio(her_means, ss_means)
                inside = low_ok <= ratio <= high_ok
                differs = paper == 1.0 or not (low <= 1.0 <= high)
                rows.append(
                    {
                        "learner": learner,
                        "steps_per_episode": steps,
                        "ss_value": value,
                        "goals": goals,
                        "metric": metric,
                        "claim": claim,
                        "episodes": f"{window.start}-{window.stop - 1}",
                        "ss_mean": round(float(ss_means.mean()), 4),
                        "ss_her_mean": round(float(her_means.mean()), 4),
                        "ratio_her_over_ss": round(ratio, 3),
                        "ci95_low": round(low, 3),
                        "ci95_high": round(high, 3),
                        "paper": paper,
                        "accepted_band": f"{low_ok}-{high_ok}",
                        "seeds": len(her_means),
                        "verdict": "reproduced" if inside and differs else "not reproduced",
                    }
                )
    return rows


def verdict_table(claims: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One row per reading (learner, episode length, value term, goals, reward metric): each
    claim as 'ratio [low, high] yes/no' and how many of the four are reproduced."""
    by_key = {
        (
            c["learner"],
            c["steps_per_episode"],
            c["ss_value"],
            c["goals"],
            c["metric"],
            c["claim"],
        ): c
        for c in claims
    }
    arms = dict.fromkeys(
        (c["learner"], c["steps_per_episode"], c["ss_value"], c["goals"]) for c in claims
    )
    rows = []
    for learner, steps, value, goals in arms:
        for reward_metric in REWARD_METRICS:
            row: dict[str, Any] = {
                "learner": learner,
                "steps_per_episode": steps,
                "ss_value": value,
                "goals": goals,
                "reward_metric": reward_metric,
            }
            n_reproduced = 0
            for claim, kind, *_ in CLAIMS:
                metric = reward_metric if kind == "reward" else "steps"
                c = by_key[(learner, steps, value, goals, metric, claim)]
                yes = c["verdict"] == "reproduced"
                n_reproduced += yes
                row[claim] = (
                    f"{c['ratio_her_over_ss']:.2f} [{c['ci95_low']:.2f}, {c['ci95_high']:.2f}] "
                    + ("yes" if yes else "no")
                )
            row["claims_reproduced"] = f"{n_reproduced}/{len(CLAIMS)}"
            row["verdict"] = (
                "reproduced"
                if n_reproduced == len(CLAIMS)
                else "partly reproduced"
                if n_reproduced
                else "not reproduced"
            )
            rows.append(row)
    return rows


def summary_table(
    claims: Sequence[Mapping[str, Any]], mechanism: Sequence[Mapping[str, Any]]
) -> list[dict]:
    """docs/results.md's table: one row per arm, each claim's ratio [interval] under both reward
    metrics (in bold where reproduced), and the mechanism share of each arm."""
    share = f"share_within_{NEAR}_moves"
    near = {
        (m["learner"], m["steps_per_episode"], m["ss_value"], m["goals"], m["arm"]): m[share]
        for m in mechanism
    }
    rows: dict[tuple, dict[str, Any]] = {}
    for c in claims:
        arm = (c["learner"], c["steps_per_episode"], c["ss_value"], c["goals"])
        row = rows.setdefault(
            arm, dict(zip(("learner", "steps", "V(s) in Eq. 1", "goals"), arm, strict=True))
        )
        metric = {"return": "return", "reward_per_step": "reward/step", "steps": ""}[c["metric"]]
        cell = f"{c['ratio_her_over_ss']:.2f} [{c['ci95_low']:.2f}, {c['ci95_high']:.2f}]"
        row[f"{c['claim']} {metric}".strip()] = (
            f"**{cell}**" if c["verdict"] == "reproduced" else cell
        )
    for arm, row in rows.items():
        row[f"S_ss within {NEAR} moves, SS / SS+HER"] = " / ".join(
            f"{near[(*arm, label)]:.2f}" for label in ARMS.values()
        )
    return list(rows.values())


def mechanism_table(
    episodes: list[dict[str, str]], learners: Sequence[str], kinds: Sequence[str] = tuple(GOALS)
) -> list[dict]:
    """Share of the Smart Start episodes whose S_ss lies within NEAR moves of the goal."""
    rows = []
    for learner, steps, value, goals in _arms(kinds):
        if learner not in learners:
            continue
        for her, label in ARMS.items():
            keep = _keep(learner, value, goals, steps, her)
            near: dict[str, list[float]] = {}
            for r in episodes:
                if r["smart_start"] == "1" and keep(r):
                    near.setdefault(r["seed"], []).append(number(r["ss_target_distance"]) <= NEAR)
            shares = np.array([np.mean(v) for v in near.values()])
            mean, low, high = mean_ci(shares) if len(shares) else (np.nan,) * 3
            rows.append(
                {
                    "learner": learner,
                    "steps_per_episode": steps,
                    "ss_value": value,
                    "goals": goals,
                    "arm": label,
                    "ss_episodes_per_seed": round(
                        float(np.mean([len(v) for v in near.values()])), 1
                    )
                    if near
                    else 0,
                    f"share_within_{NEAR}_moves": round(float(mean), 3),
                    "ci95_low": round(float(low), 3),
                    "ci95_high": round(float(high), 3),
                    "seeds": len(shares),
                }
            )
    return rows


# ---- greedy evaluation over all goals ----------------------------------------------------------


def greedy_all_goals(run_dir: Path) -> dict[str, float]:
    """The trained learner's greedy walk from the fixed start to every other free cell.

    Cached in the run directory (greedy_all_goals.json). Returns success (share of goals
    reached) and excess (mean moves beyond the shortest path over the goals reached).
    """
    cache = run_dir / "greedy_all_goals.json"
    if cache.exists():
        return json.loads(cache.read_text())
    import torch  # loads only here

    from sshr_torch.build import make_agent, make_env

    config = TrainConfig.from_dict(runlog.read_json(run_dir / runlog.CONFIG_FILE))
    torch.set_num_threads(config.torch_threads)  # as in training; more threads only contend
    env = make_env(config)
    agent = make_agent(config, env, seed=0)
    agent.load_state_dict(runlog.load_checkpoint(run_dir / runlog.CHECKPOINT_FILE)["agent"])
    maze = env.maze
    start = maze.start_index
    shortest = bfs_distances(maze, maze.start).ravel()
    cells = np.flatnonzero(~maze.walls.ravel())
    reached, excess = 0, []
    goals = [int(goal) for goal in cells if goal != start]
    for goal in goals:
        greedy = np.argmax(agent.q_values(np.arange(maze.n_cells), goal), axis=1)  # (n_cells,)
        env.reset(options={"start": start, "goal": goal})
        cell, seen, moves = start, {start}, 0
        while moves < GREEDY_LIMIT:
            obs, _, terminated, _, info = env.step(int(greedy[cell]))
            cell, moves = int(obs["observation"]), moves + 1
            if info.get("is_success"):
                reached += 1
                excess.append(moves - int(shortest[goal]))
                break
            if terminated or cell in seen:
                break
            seen.add(cell)
    result = {
        "success": reached / len(goals),
        "excess": float(np.mean(excess)) if excess else float("nan"),
    }
    cache.write_text(json.dumps(result))
    return result


def greedy_table(sweep_rows: Sequence[Mapping[str, Any]], sweep_dir: Path) -> list[dict]:
    """Drawn goals: greedy success over all goals and excess moves, per arm; HER/SS ratio."""
    rows = []
    for learner, steps, value, goals in _arms():
        if goals != "drawn":
            continue
        by_arm = {
            her: [
                greedy_all_goals(sweep_dir / r["run"])
                for r in sweep_rows
                if r["agent"] == learner
                and r["ss_value"] == value
                and r["random_goal"] is True
                and r["max_episode_steps"] == steps
                and r["her"] == her
            ]
            for her in ARMS
        }
        if not by_arm["none"]:
            continue
        success = {her: np.array([g["success"] for g in runs]) for her, runs in by_arm.items()}
        excess = {
            her: np.array([g["excess"] for g in runs if g["success"] > 0])
            for her, runs in by_arm.items()
        }
        ratio, low, high = bootstrap_ratio(success["future"], success["none"])
        rows.append(
            {
                "learner": learner,
                "steps_per_episode": steps,
                "ss_value": value,
                "success_ss": round(float(success["none"].mean()), 3),
                "success_ss_her": round(float(success["future"].mean()), 3),
                "success_ratio_her_over_ss": round(ratio, 3),
                "ci95_low": round(low, 3),
                "ci95_high": round(high, 3),
                "excess_moves_ss": _mean_or_nan(excess["none"]),
                "excess_moves_ss_her": _mean_or_nan(excess["future"]),
                "seeds": len(success["none"]),
            }
        )
    return rows


def _mean_or_nan(values: np.ndarray) -> float:
    return round(float(values.mean()), 2) if len(values) else float("nan")


def near_means_moves(maze_name: str = MAZE) -> bool:
    """Whether grid distance <= NEAR exactly when the shortest walk is <= NEAR moves, for every
    pair of free cells of the maze (so the env's distance measures the mechanism in moves)."""
    maze = load_maze(maze_name)
    cells = np.flatnonzero(~maze.walls.ravel())
    rows, cols = np.divmod(cells, maze.n_cols)
    for index in range(len(cells)):
        moves = bfs_distances(maze, (int(rows[index]), int(cols[index]))).ravel()[cells]
        grid_distance = np.abs(rows - rows[index]) + np.abs(cols - cols[index])
        if not np.array_equal(grid_distance <= NEAR, (moves >= 0) & (moves <= NEAR)):
            return False
    return True


# ---- figures -----------------------------------------------------------------------------------


def figures(
    out: Path,
    episodes: list[dict[str, str]],
    learners: Sequence[str],
    n_episodes: int,
    kinds: Sequence[str] = tuple(GOALS),
) -> None:
    """fig5_return.png, fig5_reward_per_step.png, fig6_steps.png: rows learner x episode
    length, columns value term x goals."""
    columns = [(value, goals) for value in VALUE_TERMS for goals in GOALS if goals in kinds]
    panel_rows = [(learner, steps) for learner in learners for steps in EPISODE_STEPS]
    curves = {
        (learner, steps, value, goals): {
            label: arm_curves(episodes, (learner, value, goals, steps, her), n_episodes)
            for her, label in ARMS.items()
        }
        for learner, steps in panel_rows
        for value, goals in columns
    }
    for name, metric, ylabel in (
        ("fig5_return", "return", "reward per episode (return)"),
        ("fig5_reward_per_step", "reward_per_step", "reward per step"),
        ("fig6_steps", "steps", "steps per episode"),
    ):
        fig, axes = plt.subplots(
            len(panel_rows), len(columns), figsize=(12, 2.3 * len(panel_rows)), squeeze=False
        )
        for i, (learner, steps) in enumerate(panel_rows):
            for j, (value, goals) in enumerate(columns):
                arm = curves[(learner, steps, value, goals)]
                band_plot(
                    axes[i][j],
                    {label: c[metric] for label, c in arm.items()},
                    ylabel if j == 0 else "",
                    f"{learner}, {steps} steps, V={value}, {goals} goal",
                    smooth=SMOOTH,
                    floor=1.0 if metric == "steps" else None,
                )
                if metric == "steps":
                    axes[i][j].set_yscale("log")
        save(fig, out / f"{name}.png")
        shrink_png(out / f"{name}.png")


def shrink_png(path: Path, colors: int = 64) -> None:
    """Rewrite a PNG with a palette of ``colors`` (these 16-panel figures fall from ~300 to
    ~90 KB; lines and bands keep their colours)."""
    from PIL import Image  # matplotlib's own dependency

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colors)
    small.save(path, optimize=True)


def finished_seeds(configs: Sequence[TrainConfig], sweep_dir: Path) -> list[TrainConfig]:
    """The configs of the seeds whose every run in ``sweep_dir`` played all its episodes (a
    run's summary.json, read by its settings' directory name), per learner."""
    done = set()
    for path in sweep_dir.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        if summary.get("episodes", 0) >= (configs[0].episodes or EPISODES):
            done.add(path.parent.name)
    names = run_names(configs)  # the sweep's own directory names
    missing = {(c.agent, c.seed) for c, n in zip(configs, names, strict=True) if n not in done}
    return [c for c in configs if (c.agent, c.seed) not in missing]


def _extra_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--learners", nargs="+", choices=LEARNERS, default=list(LEARNERS),
        help="the learners to run (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--goals", nargs="+", choices=list(GOALS), default=list(GOALS),
        help="the goal readings to run (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--dqn", choices=DQN_LEARNERS, default="first_round",
        help="the DQN's settings: the first round's (the published tables) or the library's "
        "defaults (default: first_round)",
    )  # fmt: skip
    parser.add_argument(
        "--dqn-seeds", type=int, default=SEEDS["dqn"], metavar="N",
        help=f"seeds of the DQN arms (default {SEEDS['dqn']})",
    )  # fmt: skip
    parser.add_argument(
        "--dqn-first-seed", type=int, default=0, metavar="S",
        help="the DQN arms' seeds are S..S+N-1 (default 0; another --out runs more seeds at "
        "once, whose run directories can then be moved into one sweep/)",
    )  # fmt: skip
    parser.add_argument(
        "--finished-only", action="store_true",
        help="run nothing: the tables of the seeds whose every run in --out has finished",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep (finished runs are skipped), then write the tables and figures."""
    args = parse_args(__doc__.split("\n\n")[0], argv, _extra_flags)
    if args.dqn_seeds < 1 or args.dqn_first_seed < 0:
        print("error: --dqn-seeds must be positive and --dqn-first-seed >= 0.")
        return 2
    out = Path(args.out)
    dqn_seeds = range(args.dqn_first_seed, args.dqn_first_seed + args.dqn_seeds)
    configs = build_configs(args.smoke, args.learners, args.goals, args.dqn, dqn_seeds)
    if args.finished_only:
        configs = finished_seeds(configs, out / "sweep")
        if not configs:
            print(f"error: no seed has every run finished in {out / 'sweep'}.")
            return 2
        # the sweep of the finished seeds replaces the record of the grid it was part of
        (out / "sweep" / "sweep.json").unlink(missing_ok=True)
    kinds = [name for name in GOALS if name in args.goals]
    n_episodes = configs[0].episodes or EPISODES
    split = n_episodes // 2 if args.smoke else SPLIT
    with Timer("paper_fig5_fig6 sweep") as timer:
        rows = run_sweep(configs, out / "sweep", workers=args.workers, progress=not args.smoke)
    failed = [row for row in rows if row["error"]]
    if failed:
        print(f"error: {len(failed)} runs failed, e.g. {failed[0]['run']}: {failed[0]['error']}")
        return 1
    learners = [learner for learner in LEARNERS if any(c.agent == learner for c in configs)]
    episodes = read_episodes(out / "sweep")
    claims = claims_table(episodes, learners, n_episodes, split, kinds)
    seeds = {learner: len({c.seed for c in configs if c.agent == learner}) for learner in learners}
    timing = (
        "Seeds per arm: "
        + ", ".join(f"{learner} 0-{n - 1}" for learner, n in seeds.items())
        + f"; {n_episodes} episodes per run; figures smoothed over {SMOOTH} episodes. Wall time "
        f"of this call's sweep (finished runs skipped): {timer.seconds:.0f} s, {args.workers} "
        "worker(s)" + (" (smoke: 4 episodes, split at episode 2)." if args.smoke else ".")
    )
    if not near_means_moves():
        raise RuntimeError(f"on {MAZE} grid distance <= {NEAR} is not <= {NEAR} moves.")
    mechanism = mechanism_table(episodes, learners, kinds)
    tables = {
        "summary": (
            summary_table(claims, mechanism),
            "SS+HER / SS per arm, bootstrap 95% interval (bold: claim reproduced)",
        ),
        "verdicts": (verdict_table(claims), "Verdict per reading of the paper"),
        "mechanism": (
            mechanism,
            f"Share of Smart Start episodes whose S_ss lies within {NEAR} moves of the goal",
        ),
        "greedy": (
            greedy_table(
                [{**c.to_dict(), **r} for c, r in zip(configs, rows, strict=True)], out / "sweep"
            ),
            "Drawn goals: greedy walk from the start to every goal after training",
        ),
        "claims": (claims, "Every claim, arm and metric: SS+HER / SS"),
    }
    sections = [
        "## The paper's Fig. 5 and Fig. 6 under each reading (`paper_fig5_fig6.py`)",
        "",
        "Written by `python experiments/paper_fig5_fig6.py --out DIR` (report.md).",
    ]
    for name, (table, title) in tables.items():
        sections += ["", write_table(out, name, table, title).read_text().rstrip("\n")]
    notes = [DQN_NOTES[args.dqn] if note == DQN_NOTES["first_round"] else note for note in SETTINGS]
    sections += ["", "### Settings", "", *[f"- {note}" for note in [*notes, timing]]]
    (out / "report.md").write_text("\n".join(sections) + "\n")
    figures(out, episodes, learners, n_episodes, kinds)
    print((out / "verdicts.md").read_text())
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
