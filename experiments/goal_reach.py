"""Goal reach: does one network walk to every goal HER shows it? (issue 20's figures)

    python experiments/goal_reach.py --out runs/goal_reach --seeds 1 2 3      # hours of CPU
    python experiments/goal_reach.py --out runs/goal_reach --tasks hard_random --arms dqn tabular
    python experiments/goal_reach.py --smoke --out /tmp/goal_reach            # seconds

Each run ends with a goal-reach evaluation (``TrainConfig.eval_goals``, 50 goals: greedy walks
from the start to visited cells, success = arrival within 1.5x the shortest path) and the usual
greedy evaluation of the env's goal; both are read from the run's summary.json.

Tasks:
- hard_random: keulen_hard, ``--random-goal``, 200-step episodes, 100,000 env steps;
- hard_env: keulen_hard, the env's goal, the long-maze defaults (100-step episodes), 60,000;
- maze_random, medium_random: keulen_maze and keulen_medium as hard_random;
- easy: the main job, keulen_easy, 1000-step episodes, 50,000;
- only when named: extreme_random, keulen_extreme, ``--random-goal``, 1000-step episodes,
  1,000,000 env steps.

Arms (Smart Start, eta 1, and HER 'future' k 4 unless stated; every other setting at its
default):
- dqn: the DQN's defaults (the count model's values for every goal of a batch);
- dqn_env_goal: the count model's values for the episode's goal only (``model_goals='env'``,
  the default before issue 20);
- dqn_no_ss: the defaults without Smart Start (so without the model's values);
- dqn_pure: the defaults without the model's values (``model_values='off'``);
- tabular: the tabular learner;
- only when named: the levers (``LEVERS``), one at a time: dqn_pure_no_guided
  (``off_policy_weight`` 0: no guided step in replay), dqn_pure_guided_x3 (3), dqn_pure_cut
  (``n_step_cut``), dqn_pure_1step, dqn_pure_epsilon (``explore='epsilon'``), dqn_pure_double,
  dqn_pure_30step and dqn_pure_100step (``n_step`` 30, 100), dqn_pure_sync100
  (``target_update_interval`` 100), dqn_pure_wide (``hidden_sizes`` (512, 512)),
  dqn_pure_model_rows (``model_rows`` 0.5) and dqn_model_rows (the same with the model's
  values), dqn_split (``model_loss`` 'split'), dqn_pure_advantage, dqn_pure_advantage09 and
  dqn_pure_advantage097 (``advantage_alpha`` 0.5, 0.9, 0.97), dqn_pure_advantage09_30step
  (0.9 and ``n_step`` 30), dqn_pure_distance (``q_head`` 'distance'), dqn_pure_all_actions
  (``all_actions``; _split with ``model_loss`` 'split'), dqn_pure_no_clip (``clip_target``
  off) and dqn_pure_priority (``priority_alpha`` 0.6).

Per run also: ``guided_share``, the share of env steps that Smart Start's guided walks took
(episodes.csv ss_steps), and ``model_share``, the mean share of a replay batch's rows that had
a count-model value (TensorBoard train/model_share); ``visited``, the free cells the run
visited (the goal set of its goal reach is drawn from them, so an arm that explores less is
asked for nearer goals), and ``goals_all``, goal reach from the start over every free cell
(the same goal set for every arm: the final checkpoint's greedy walks, ``reach_from_start``);
``greedy_1_24``, ``greedy_25_49``, ``greedy_50_up``: of the final checkpoint's greedy actions
over every (state, goal) pair of free cells, the share that moves along a shortest path, by
the pair's distance (``greedy_moves``).

Runs go one after another in this process (a run whose summary.json exists is read, not run
again) into --out/runs/; writes goal_reach_runs.csv/.md (one row per run) and goal_reach.csv/.md
(per task and arm: median and range over seeds, the target, measured against it).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import Timer, fmt, parse_args, write_table
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sshr_torch import runlog
from sshr_torch.build import make_agent, make_env
from sshr_torch.config import TrainConfig
from sshr_torch.goal_reach import maze_distances, reach_from_start
from sshr_torch.maze import load_maze, shortest_path_length
from sshr_torch.trainer import train

ARMS: dict[str, dict[str, Any]] = {
    "dqn": {},
    "dqn_env_goal": {"model_goals": "env"},
    "dqn_no_ss": {"smart_start": False},
    "dqn_pure": {"model_values": "off"},
    "tabular": {"agent": "tabular"},
}
# The levers measured (docs/goal_reach.md), most for the pure DQN + Smart Start, one at a time; run
# only when named in --arms.
LEVERS: dict[str, dict[str, Any]] = {
    "dqn_pure_no_guided": {"model_values": "off", "off_policy_weight": 0.0},
    "dqn_pure_guided_x3": {"model_values": "off", "off_policy_weight": 3.0},
    "dqn_pure_cut": {"model_values": "off", "n_step_cut": True},
    "dqn_pure_1step": {"model_values": "off", "n_step": 1},
    "dqn_pure_epsilon": {"model_values": "off", "explore": "epsilon"},
    "dqn_pure_double": {"model_values": "off", "double_dqn": True},
    # How far the credit travels per target sync, and how often the targets move:
    "dqn_pure_30step": {"model_values": "off", "n_step": 30},
    "dqn_pure_100step": {"model_values": "off", "n_step": 100},
    "dqn_pure_sync100": {"model_values": "off", "target_update_interval": 100},
    # Room to hold a value per (state, goal) pair: two hidden layers of 512.
    "dqn_pure_wide": {"model_values": "off", "hidden_sizes": (512, 512)},
    # Coverage of (state, goal) pairs: half of each batch drawn over every move and goal the
    # count model has seen (Dyna-style rows), without / with the model's values.
    "dqn_pure_model_rows": {"model_values": "off", "model_rows": 0.5},
    "dqn_model_rows": {"model_rows": 0.5},
    # The model loss that fits each row's action differences on their own (LONG_PATHS').
    "dqn_split": {"model_loss": "split"},
    # Advantage learning: the action gaps widened, so a greedy choice survives fit errors.
    "dqn_pure_advantage": {"model_values": "off", "advantage_alpha": 0.5},
    "dqn_pure_advantage09": {"model_values": "off", "advantage_alpha": 0.9},
    "dqn_pure_advantage097": {"model_values": "off", "advantage_alpha": 0.97},
    "dqn_pure_advantage09_30step": {"model_values": "off", "advantage_alpha": 0.9, "n_step": 30},
    # A head that represents the distance to the goal: a quasimetric (triangle inequality).
    "dqn_pure_distance": {"model_values": "off", "q_head": "distance"},
    # Every action the count model knows regressed onto its one-step target from the network.
    "dqn_pure_all_actions": {"model_values": "off", "all_actions": True},
    "dqn_pure_all_actions_split": {
        "model_values": "off",
        "all_actions": True,
        "model_loss": "split",
    },
    # Targets not clamped to the return range (clamped by default).
    "dqn_pure_no_clip": {"model_values": "off", "clip_target": False},
    # Prioritised replay by the TD error of the goal each step was last replayed for.
    "dqn_pure_priority": {"model_values": "off", "priority_alpha": 0.6},
}
DEFAULT_ARMS = list(ARMS)
ARMS.update(LEVERS)


@dataclasses.dataclass(frozen=True)
class Task:
    """One row of the figures: the maze, its settings and the goal-reach target."""

    maze: str
    settings: dict[str, Any]
    total_steps: int
    target: float  # goal reach of the dqn arm
    greedy_optimal: bool  # the env's goal must also be walked on a shortest path


TASKS = {
    "hard_random": Task(
        "keulen_hard", {"random_goal": True, "max_episode_steps": 200}, 100_000, 0.9, False
    ),
    "hard_env": Task("keulen_hard", {"max_episode_steps": 100}, 60_000, 0.8, True),
    "maze_random": Task(
        "keulen_maze", {"random_goal": True, "max_episode_steps": 200}, 100_000, 0.9, False
    ),
    "medium_random": Task(
        "keulen_medium", {"random_goal": True, "max_episode_steps": 200}, 100_000, 0.9, False
    ),
    "easy": Task("keulen_easy", {"max_episode_steps": 1000}, 50_000, 0.95, True),
    # Not in the default --tasks: about 20 minutes of CPU per DQN run here.
    "extreme_random": Task(
        "keulen_extreme", {"random_goal": True, "max_episode_steps": 1000}, 1_000_000, 0.7, False
    ),
}
DEFAULT_TASKS = [name for name in TASKS if name != "extreme_random"]
# The pure DQN's own target on hard_random (issue 20).
PURE_TARGET = 0.6


def run_one(task: Task, arm: str, seed: int, run_dir: Path, smoke: bool) -> dict[str, Any]:
    """Train one run (or read its summary.json if it finished before); its row."""
    summary_file = run_dir / "summary.json"
    if summary_file.exists():
        summary = json.loads(summary_file.read_text())
    else:
        steps = 600 if smoke else task.total_steps
        extra = {"learning_starts": 100, "eval_interval": 0} if smoke else {}
        config = TrainConfig(
            maze=task.maze,
            total_steps=steps,
            seed=seed,
            run_dir=str(run_dir),
            quiet=True,
            image_interval=0,
            **{**task.settings, **ARMS[arm], **extra},
        )
        summary = train(config).summary
    shortest = shortest_path_length(load_maze(task.maze))
    with (run_dir / "episodes.csv").open(newline="") as file:
        episodes = list(csv.DictReader(file))
    guided = sum(int(row["ss_steps"]) for row in episodes)
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    shares = (
        [event.value for event in accumulator.Scalars("train/model_share")]
        if "train/model_share" in accumulator.Tags()["scalars"]
        else []
    )
    optimal = summary["eval_success_rate"] == 1.0 and summary["eval_mean_length"] == shortest
    visited, goals_all = reach_everywhere(run_dir)
    return {
        "arm": arm,
        "seed": seed,
        "goals_success": summary["goals_success"],
        "goals_excess": summary["goals_excess"],
        "eval_success_rate": summary["eval_success_rate"],
        "eval_mean_length": summary["eval_mean_length"],
        "greedy_optimal": optimal,
        "goals_all": goals_all,
        **greedy_moves(run_dir),
        "visited": visited,
        "guided_share": round(guided / max(1, summary["env_steps"]), 3),
        "model_share": round(float(np.mean(shares)), 3) if shares else None,
        "env_steps": summary["env_steps"],
        "wall_s": summary["wall_s"],
        "goal_reach_s": summary.get("goal_reach_s"),
        "sps": summary["sps"],
    }


def final_agent(run_dir: Path) -> tuple[dict[str, Any], Any, Any]:
    """(the final checkpoint's state, the run's env, its learner as the checkpoint left it)."""
    state = runlog.load_checkpoint(run_dir / runlog.CHECKPOINT_FILE)
    config = TrainConfig.from_dict(state["config"])
    env = make_env(config)
    agent = make_agent(config, env, config.seed)
    agent.load_state_dict(state["agent"])
    return state, env, agent


# Bands of shortest distance (moves) for the greedy-move shares, (low, high) inclusive.
BANDS = {"1_24": (1, 24), "25_49": (25, 49), "50_up": (50, 10**9)}


def greedy_moves(run_dir: Path) -> dict[str, float | None]:
    """``greedy_move_shares`` of the run's final checkpoint."""
    _, env, agent = final_agent(run_dir)
    return greedy_move_shares(agent, env.unwrapped.maze, env.unwrapped.next_cell)


def greedy_move_shares(agent: Any, maze: Any, next_cell: np.ndarray) -> dict[str, float | None]:
    """The agent's greedy action over every (state, goal) pair of free cells reachable from
    the start: the share that is a move along a shortest path, by the pair's distance
    (``BANDS``; None where no pair is that far); ties count as wrong. What a greedy walk
    needs is this share near 1 at every distance."""
    distances_to = maze_distances(maze)  # the maze is undirected: from g is to g
    cells = np.flatnonzero(np.isfinite(distances_to(maze.start_index)))
    correct = {band: [] for band in BANDS}
    for goal in cells:
        to_goal = distances_to(int(goal))
        states = cells[cells != goal]
        q = agent.pair_q_values(states, np.full(len(states), goal))  # (n, n_actions)
        best = q.max(axis=1, keepdims=True)
        unique = (q == best).sum(axis=1) == 1
        chosen = next_cell[states, q.argmax(axis=1)]
        right = unique & (to_goal[chosen] == to_goal[states] - 1)
        for band, (low, high) in BANDS.items():
            inside = (to_goal[states] >= low) & (to_goal[states] <= high)
            correct[band].append(right[inside])
    shares: dict[str, float | None] = {}
    for band, parts in correct.items():
        joined = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
        shares[f"greedy_{band}"] = round(float(np.mean(joined)), 3) if len(joined) else None
    return shares


def reach_everywhere(run_dir: Path) -> tuple[int, float]:
    """(free cells the run visited, goal reach from the start over every free cell) of the
    run's final checkpoint: greedy walks within 1.5x the shortest path, as the run's own goal
    reach, but to the same goals whatever the run explored."""
    state, env, agent = final_agent(run_dir)
    maze = env.unwrapped.maze
    moves, shortest = reach_from_start(
        agent, maze, env.unwrapped.next_cell, maze.start_index, np.random.default_rng(0)
    )
    cells = np.flatnonzero(np.isfinite(shortest))
    cells = cells[cells != maze.start_index]
    visited = int(np.count_nonzero(np.asarray(state["visits"]) > 0))
    return visited, round(float(np.mean(moves[cells] >= 0)), 3)


def verdict(task_name: str, task: Task, arm: str, rows: list[dict[str, Any]], by_arm) -> str:
    """The target this arm is held to on this task, and whether its median meets it."""
    median = float(np.median([r["goals_success"] or 0.0 for r in rows]))
    optimal = sum(r["greedy_optimal"] for r in rows)
    if arm == "dqn":
        parts = [f"reach >= {task.target}: {'met' if median >= task.target else 'missed'}"]
        if task.greedy_optimal:
            need = int(np.ceil(0.9 * len(rows)))
            met = "met" if optimal >= need else "missed"
            parts.append(f"greedy-optimal {optimal}/{len(rows)} (>= {need}): {met}")
        for other in ("tabular", "dqn_no_ss"):
            if task_name == "hard_random" and other in by_arm:
                theirs = float(np.median([r["goals_success"] or 0.0 for r in by_arm[other]]))
                met = "met" if median >= theirs else "missed"
                parts.append(f">= {other} ({theirs:.2f}): {met}")
        return "; ".join(parts)
    if arm == "dqn_pure" and task_name == "hard_random":
        return f"reach >= {PURE_TARGET}: {'met' if median >= PURE_TARGET else 'missed'}"
    return "(reference)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tasks x arms x seeds, write the tables; 0 on success."""

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--tasks", nargs="+", choices=list(TASKS), default=DEFAULT_TASKS,
            help=f"default: {' '.join(DEFAULT_TASKS)} (extreme_random only when named)",
        )  # fmt: skip
        parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=DEFAULT_ARMS)
        parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
        parser.add_argument(
            "--finished-only",
            action="store_true",
            help="tabulate the runs already in --out and train none (the rest are left out)",
        )

    args = parse_args(__doc__.splitlines()[0], argv, extra)
    out = Path(args.out)
    seeds = args.seeds[:1] if args.smoke else args.seeds
    tasks = ["easy"] if args.smoke else args.tasks
    arms = ["dqn", "tabular"] if args.smoke else args.arms
    runs, table = [], []
    with Timer("goal_reach runs") as timer:
        for task_name in tasks:
            task = TASKS[task_name]
            by_arm: dict[str, list[dict[str, Any]]] = {}
            for seed in seeds:  # seeds outermost: a cut-short job has every arm's first seeds
                for arm in arms:
                    run_dir = out / "runs" / f"{task_name}__{arm}__s{seed}"
                    if args.finished_only and not (run_dir / "summary.json").exists():
                        continue
                    row = {"task": task_name, **run_one(task, arm, seed, run_dir, args.smoke)}
                    runs.append(row)
                    by_arm.setdefault(arm, []).append(row)
                    print(
                        f"{task_name} {arm} seed {seed}: goal reach {fmt(row['goals_success'])}, "
                        f"env goal {fmt(row['eval_success_rate'])} in "
                        f"{fmt(row['eval_mean_length'])} moves, {row['sps']} steps/s",
                        flush=True,
                    )
                    # the tables so far, after every run (a long job's partial results)
                    write_table(out, "goal_reach_runs", runs, "Goal reach, one row per run")
            for arm in [arm for arm in arms if arm in by_arm]:
                rows = by_arm[arm]
                reach = [r["goals_success"] or 0.0 for r in rows]
                table.append(
                    {
                        "task": task_name,
                        "arm": arm,
                        "seeds": len(rows),
                        "goal reach, median (range)": (
                            f"{np.median(reach):.2f} ({min(reach):.2f}-{max(reach):.2f})"
                        ),
                        "reach over every free cell, median": float(
                            np.median([r["goals_all"] for r in rows])
                        ),
                        "greedy-optimal env goal": f"{sum(r['greedy_optimal'] for r in rows)}"
                        f"/{len(rows)}",
                        "steps/s, median": float(np.median([r["sps"] for r in rows])),
                        "target": verdict(task_name, task, arm, rows, by_arm),
                    }
                )
    notes = [
        "goal reach: greedy walks from the start to 50 visited cells drawn once per run, success"
        " = arrival within 1.5x the shortest path (summary.json goals_success, final value).",
        f"seeds {', '.join(map(str, seeds))}; {timer.seconds:.0f} s of wall time for the runs"
        " run now (others read from --out).",
    ]
    write_table(out, "goal_reach", table, "Goal reach against issue 20's targets", notes)
    print((out / "goal_reach.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
