"""MiniGrid worlds: env steps to a greedy policy that reaches the goal (issue 22).

(Not named minigrid.py: run as a script, or imported with experiments/ on sys.path as the
tests do, that name would shadow the minigrid package itself.)

    python experiments/minigrid_worlds.py --out runs/minigrid            # the full table
    python experiments/minigrid_worlds.py --out runs/minigrid --tasks FourRooms --seeds 1 \
        --arms defaults                                                  # a piece of it
    python experiments/minigrid_worlds.py --smoke --out /tmp/minigrid    # seconds

Tasks (one fixed layout per run, drawn by ``make_minigrid(env_id, env_seed)``; the learner
sees the full state, not MiniGrid's partial view; see docs/minigrid.md):

| name | MiniGrid id and kwargs | layouts (env seeds) | budget |
|---|---|---|---|
| FourRooms | MiniGrid-FourRooms-v0 | 0, 1, 2 | 300k |
| DoorKey16 | MiniGrid-DoorKey-16x16-v0 | 0, 1, 2 | 300k |
| MultiRoomN6 | MiniGrid-MultiRoom-N6-v0 | 0, 1, 2 | 300k |
| LavaCrossingS11N5 | MiniGrid-LavaCrossingS11N5-v0 | 0, 1, 2 | 300k |
| MultiRoomN12S10 | MultiRoom-N6-v0, minNumRooms=maxNumRooms=12, maxRoomSize=10 (RIDE) | 0 | 1M |

The 12-room task runs with ``one_way_doors`` (an open door stays open): with MiniGrid's own
doors its layouts have 1.15M-1.40M reachable full states, beyond a one-hot input; with one-way
doors 3.9k-4.7k.

Arms (everything else at the library's defaults): ``defaults`` (the DQN with Smart Start and
HER), ``count_bonus`` (the DQN without Smart Start, beta / sqrt(C(s, a)) added to its real
rewards, beta 1 as in experiments/large_mazes.py), ``tabular`` (the tabular learner with Smart
Start and HER).

Each run evaluates the greedy policy (20 episodes) every ``--eval-every`` env steps and stops at
the first evaluation with success >= 0.9 or at its budget. At the end it measures goal reach:
the share of the layout's goal cells (every cell the agent can stand on but its start's) that
the greedy policy walks to from the start within 1.5x the shortest path.

Runs go one after another (``--workers`` > 1: that many processes); every finished run is
appended to minigrid_runs_log.csv at once (with its evaluation curve), and a rerun skips the
runs already there (with at least its budget, or solved within it), so the table can be
completed a piece at a time. Writes into --out:
minigrid_runs.csv/.md (a row per run), minigrid.csv/.md (per task and arm), minigrid.png
(greedy success against env steps), minigrid_layouts.png (layout 0 of each task, MiniGrid's
render, the start marked red); the runs' own directories under runs/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from _common import fmt, median_range, parse_args, save, write_table

from sshr_torch.config import TrainConfig
from sshr_torch.goal_reach import reach_from, score
from sshr_torch.minigrid import MiniGridGoalEnv, make_minigrid
from sshr_torch.rollout import walk_stepper
from sshr_torch.trainer import Callback, Trainer, train

SUCCESS, EVAL_EPISODES = 0.9, 20
COUNT_BONUS = 1.0


@dataclasses.dataclass(frozen=True)
class Task:
    """A MiniGrid task: its id, kwargs, layouts and budget in env steps."""

    env_id: str
    kwargs: dict[str, Any]
    n_layouts: int
    budget: int


TASKS: dict[str, Task] = {
    "FourRooms": Task("MiniGrid-FourRooms-v0", {}, 3, 300_000),
    "DoorKey16": Task("MiniGrid-DoorKey-16x16-v0", {}, 3, 300_000),
    "MultiRoomN6": Task("MiniGrid-MultiRoom-N6-v0", {}, 3, 300_000),
    # MiniGrid's own reward: a death pays 0 (the DQN values it as never reaching the goal, the
    # HER buffer's failure tail; docs/minigrid.md, "Lava and a cost per step").
    "LavaCrossingS11N5": Task("MiniGrid-LavaCrossingS11N5-v0", {}, 3, 300_000),
    "MultiRoomN12S10": Task(
        "MiniGrid-MultiRoom-N6-v0",
        {"minNumRooms": 12, "maxNumRooms": 12, "maxRoomSize": 10, "one_way_doors": True},
        1,
        1_000_000,
    ),
}
ARMS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "count_bonus": {"agent": "dqn", "smart_start": False, "count_bonus": COUNT_BONUS},
    "tabular": {"agent": "tabular"},
}
# --smoke: two small tasks, a few thousand steps
SMOKE_TASKS: dict[str, Task] = {
    "Empty6x6": Task("MiniGrid-Empty-6x6-v0", {}, 1, 1500),
    "DoorKey5x5": Task("MiniGrid-DoorKey-5x5-v0", {}, 1, 1500),
}
RUN_COLUMNS = (
    "task",
    "env_id",
    "layout",
    "arm",
    "budget",
    "n_states",
    "n_actions",
    "shortest",
    "steps_to_success",
    "final_success",
    "final_mean_length",
    "goal_reach",
    "n_goal_cells",
    "env_steps",
    "wall_s",
    "curve",
)


class GreedyEvaluations(Callback):
    """Greedy evaluation every ``every`` env steps; the run stops at success >= 0.9."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.next_at = every
        self.curve: list[tuple[int, float]] = []

    def on_episode_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        steps = trainer.progress.env_steps
        if steps >= self.next_at:
            rate, _ = trainer.evaluate()
            self.curve.append((steps, rate))
            self.next_at = (steps // self.every + 1) * self.every

    def should_stop(self, trainer: Trainer) -> bool:
        return bool(self.curve) and self.curve[-1][1] >= SUCCESS


def goal_reach(agent: Any, env: MiniGridGoalEnv) -> tuple[float, int]:
    """Share of the goal cells (but the start's) reached greedily from the start within 1.5x
    the shortest path, and their number: the library's goal-reach walks (all at once over the
    transition table, ties broken at random) to every goal cell."""
    shortest = env.shortest_path_lengths(env.start)
    goals = np.flatnonzero(np.isfinite(shortest) & (shortest > 0))
    rng = np.random.default_rng(0)
    moves = reach_from(agent, walk_stepper(env), env.start, goals, shortest[goals], rng)
    return score(moves, shortest[goals]).success, len(goals)


def run_one(
    name: str, task: Task, layout: int, arm: str, budget: int, every: int, out: str
) -> dict:
    """One run: train to success >= 0.9 or the budget; its row of the runs log."""
    env = make_minigrid(task.env_id, layout, **task.kwargs)
    config = TrainConfig(
        total_steps=budget,
        max_episode_steps=env.max_episode_steps,  # MiniGrid's own limit
        seed=layout,
        eval_interval=0,
        eval_episodes=EVAL_EPISODES,
        image_interval=0,
        checkpoint_interval=10**6,
        torch_threads=1,
        run_dir=str(Path(out) / "runs" / f"{name}__{arm}__layout{layout}"),
        **ARMS[arm],
    )
    evaluations = GreedyEvaluations(every)
    began = time.perf_counter()
    result = train(config, env, callbacks=[evaluations])
    wall = time.perf_counter() - began
    summary = result.summary
    reach, n_goals = goal_reach(result.agent, env)
    solved = next((step for step, rate in evaluations.curve if rate >= SUCCESS), None)
    curve = [*evaluations.curve, (summary["env_steps"], summary["eval_success_rate"])]
    return {
        "task": name,
        "env_id": task.env_id,
        "layout": layout,
        "arm": arm,
        "budget": budget,
        "n_states": env.n_states,
        "n_actions": env.action_space.n,
        "shortest": int(env.shortest_path_lengths(env.start)[env.default_goal]),
        "steps_to_success": solved,
        "final_success": summary["eval_success_rate"],
        "final_mean_length": summary["eval_mean_length"],
        "goal_reach": reach,
        "n_goal_cells": n_goals,
        "env_steps": summary["env_steps"],
        "wall_s": round(wall, 1),
        "curve": ";".join(f"{step}:{rate:g}" for step, rate in curve),
    }


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The finished runs of the runs log, numbers parsed (empty: none yet)."""
    if not path.exists():
        return []
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        for key in ("layout", "budget", "n_states", "n_actions", "shortest", "n_goal_cells"):
            row[key] = int(row[key])
        for key in ("steps_to_success", "env_steps"):
            row[key] = int(row[key]) if row[key] not in ("", "None") else None
        for key in ("final_success", "final_mean_length", "goal_reach", "wall_s"):
            row[key] = float(row[key])
    return rows


def append_run(path: Path, row: dict[str, Any]) -> None:
    """Append one run to the runs log (the header first if the file is new)."""
    new = not path.exists()
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=RUN_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _covered(
    finished: Sequence[dict[str, Any]], task: str, layout: int, arm: str, budget: int
) -> bool:
    """Whether a finished run answers this one: same task, layout and arm, with at least this
    budget or solved within it (a run is the same up to its stop, whatever its budget)."""
    return any(
        (r["task"], r["layout"], r["arm"]) == (task, layout, arm)
        and (r["budget"] >= budget or (r["steps_to_success"] or math.inf) <= budget)
        for r in finished
    )


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task and arm, over its layouts."""
    table = []
    for name in dict.fromkeys(r["task"] for r in rows):
        for arm in dict.fromkeys(r["arm"] for r in rows if r["task"] == name):
            runs = sorted(
                (r for r in rows if r["task"] == name and r["arm"] == arm),
                key=lambda r: r["layout"],
            )
            table.append(
                {
                    "task": name,
                    "arm": arm,
                    "layouts": ",".join(str(r["layout"]) for r in runs),
                    "budget": "/".join(dict.fromkeys(str(r["budget"]) for r in runs)),
                    "states": "/".join(str(r["n_states"]) for r in runs),
                    "steps_to_success_0.9": median_range([r["steps_to_success"] for r in runs]),
                    "final_success": fmt(float(np.mean([r["final_success"] for r in runs]))),
                    "goal_reach": fmt(float(np.mean([r["goal_reach"] for r in runs]))),
                    "wall_s": fmt(float(np.sum([r["wall_s"] for r in runs]))),
                }
            )
    return table


def plot(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Greedy success against env steps, a panel per task, a line per run."""
    names = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    colours = {"defaults": "tab:blue", "count_bonus": "tab:orange", "tabular": "tab:green"}
    for ax, name in zip(axes[0], names, strict=True):
        for row in (r for r in rows if r["task"] == name):
            points = [tuple(map(float, p.split(":"))) for p in row["curve"].split(";") if p]
            steps, rates = zip(*points, strict=True) if points else ((), ())
            label = f"{row['arm']} L{row['layout']}"
            ax.plot(steps, rates, marker=".", lw=1, color=colours.get(row["arm"]), label=label)
        ax.axhline(SUCCESS, color="grey", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("greedy success (20 episodes)")
    save(fig, path)


def plot_layouts(path: Path, tasks: dict[str, Task]) -> None:
    """Layout 0 of each task as MiniGrid draws it (the dashboards' background), the start's
    cell marked red."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks), 3.3), squeeze=False)
    for ax, (name, task) in zip(axes[0], tasks.items(), strict=True):
        env = make_minigrid(task.env_id, 0, **task.kwargs)
        ax.imshow(env.background_image(8))
        x, y = env.goal_of_state(env.start) % env.width, env.goal_of_state(env.start) // env.width
        ax.plot(x * 8 + 3.5, y * 8 + 3.5, "o", color="red", ms=4)  # the start cell
        ax.set_title(f"{name}\n{env.n_states} states, {env.action_space.n} actions", fontsize=8)
        ax.axis("off")
    save(fig, path)


def _extra_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks", nargs="+", choices=list(TASKS), default=list(TASKS),
        help="tasks to run (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, default=None, metavar="N",
        help="layouts (env seeds) 0..N-1 of each task (default: the task's own, 3 or 1)",
    )  # fmt: skip
    parser.add_argument(
        "--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
        help="arms to run (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=int, default=None,
        help="budget in env steps of every run (default: the task's own, 300k or 1M)",
    )  # fmt: skip
    parser.add_argument(
        "--eval-every", type=int, default=10_000,
        help="greedy evaluation every this many env steps (default 10,000)",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, _extra_flags)
    for flag_name in ("seeds", "steps", "eval_every"):
        value = getattr(args, flag_name)
        if value is not None and value < 1:
            flag = "--" + flag_name.replace("_", "-")
            print(f"error: {flag} must be a positive integer, got {value}.", file=sys.stderr)
            return 2
    out = Path(args.out)
    tasks = SMOKE_TASKS if args.smoke else {name: TASKS[name] for name in args.tasks}
    every = 500 if args.smoke else args.eval_every
    runs_path = out / "minigrid_runs_log.csv"
    finished = read_runs(runs_path)
    jobs = []
    for name, task in tasks.items():
        budget = task.budget if args.steps is None or args.smoke else args.steps
        n_layouts = task.n_layouts if args.seeds is None or args.smoke else args.seeds
        for layout in range(n_layouts):
            for arm in args.arms:
                if not _covered(finished, name, layout, arm, budget):
                    jobs.append((name, task, layout, arm, budget, every, str(out)))
    if args.workers == 1:
        for job in jobs:
            append_run(runs_path, run_one(*job))
            print(f"done: {job[0]} layout {job[2]} {job[3]}", file=sys.stderr, flush=True)
    else:
        with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
            futures = [pool.submit(run_one, *job) for job in jobs]
            for future in concurrent.futures.as_completed(futures):
                append_run(runs_path, future.result())
    rows = read_runs(runs_path)
    if not rows:
        print("error: no runs to tabulate.", file=sys.stderr)
        return 2
    shown = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    write_table(out, "minigrid_runs", shown, "MiniGrid: one row per run")
    notes = [
        "One fixed layout per run (env seed = layout) and the full state as the learner's "
        "input; published MiniGrid results draw a layout per episode and see a partial view.",
        "steps_to_success_0.9: env steps to the first greedy evaluation (20 episodes, every "
        f"{every} steps) with success >= 0.9, median (min-max) over layouts; the run stops there.",
        "final_success: greedy success at the run's end (its stop or its budget), mean over "
        "layouts; goal_reach: share of the layout's goal cells reached greedily from the start "
        "within 1.5x the shortest path, mean over layouts.",
    ]
    write_table(out, "minigrid", summarise(rows), "MiniGrid: steps to greedy success", notes)
    plot(out / "minigrid.png", rows)
    plot_layouts(out / "minigrid_layouts.png", tasks)
    print((out / "minigrid.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
