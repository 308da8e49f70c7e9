"""Greedy paths on long mazes: the DQN (defaults, and the long-maze settings) against tabular.

    python experiments/long_mazes.py --out runs/long_mazes              # full: hours of CPU
    python experiments/long_mazes.py --smoke --out /tmp/long_mazes      # seconds

Arms (Smart Start and HER 'future' on, every other setting at its default):
- dqn: the goal-conditioned DQN with the library's defaults (since 2026-12-01: 10-step returns
  from the HER buffer and Eq. 1 without the learner's values, the settings docs/long_mazes.md
  found to fix the greedy policy on keulen_hard);
- dqn_1step: the DQN with the earlier defaults, 1-step targets (``n_step=1``) and Eq. 1 with
  the learner's values (``ss_value='learner'``);
- tabular: the tabular learner.

Tasks (issue 12): keulen_hard with 100-step episodes and 60,000 env steps (10 seeds);
keulen_extreme and generated:41x41:seed=S (S = the run's seed) with 1,000-step episodes and
400,000 env steps (5 seeds). Greedy success over 20 greedy episodes from the start every
``eval_interval`` episodes (read back from each run's TensorBoard scalars eval/success_rate and
eval/mean_length); "steps to greedy" is the first evaluation with success >= 0.9 and mean
episode length <= 1.2x the shortest path.

Writes into --out: long_mazes.csv (one row per run), long_mazes.md (per maze and arm: seeds
that reached it, median env steps to greedy, median final path / shortest, the DQN / tabular
ratio), long_mazes.png (greedy success against env steps, one panel per maze), and the sweep's
run directories under sweep/.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from _common import Timer, fmt, median_range, parse_args, save, write_table
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sshr_torch.config import TrainConfig
from sshr_torch.maze import load_maze, shortest_path_length
from sshr_torch.sweep import run_sweep

ARMS: dict[str, dict[str, Any]] = {
    "dqn": {"agent": "dqn"},
    "dqn_1step": {"agent": "dqn", "n_step": 1, "ss_value": "learner"},
    "tabular": {"agent": "tabular"},
}
SUCCESS, PATH_FACTOR, EVAL_EPISODES = 0.9, 1.2, 20


@dataclasses.dataclass(frozen=True)
class Task:
    """A maze family, its episode limit, budget, seeds and evaluation interval (episodes)."""

    name: str  # a maze spec; '{seed}' in it is replaced by the run's seed
    max_episode_steps: int
    budget: int
    n_seeds: int
    eval_interval: int

    def maze(self, seed: int) -> str:
        return self.name.format(seed=seed)


FULL = (
    Task("keulen_hard", 100, 60_000, 10, 20),
    Task("keulen_extreme", 1000, 400_000, 5, 10),
    Task("generated:41x41:seed={seed}", 1000, 400_000, 5, 10),
)
SMOKE = (Task("keulen_easy", 100, 3_000, 1, 5),)


def build_configs(tasks: Sequence[Task]) -> list[tuple[Task, str, TrainConfig]]:
    """(task, arm, config) for every task x arm x seed."""
    jobs = []
    for task in tasks:
        for arm, settings in ARMS.items():
            for seed in range(task.n_seeds):
                config = TrainConfig(
                    maze=task.maze(seed),
                    max_episode_steps=task.max_episode_steps,
                    total_steps=task.budget,
                    seed=seed,
                    eval_interval=task.eval_interval,
                    eval_episodes=EVAL_EPISODES,
                    image_interval=0,
                    checkpoint_interval=10**6,
                    **settings,
                )
                jobs.append((task, arm, config))
    return jobs


def greedy_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(env step, greedy success, mean greedy episode length) of each evaluation of a run."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    success = events.Scalars("eval/success_rate")
    length = {e.step: e.value for e in events.Scalars("eval/mean_length")}
    return [(e.step, e.value, length[e.step]) for e in success]


def steps_to_greedy(curve: Sequence[tuple[int, float, float]], shortest: int) -> int | None:
    """The first env step with greedy success >= 0.9 and mean length <= 1.2x shortest."""
    for step, success, length in curve:
        if success >= SUCCESS and length <= PATH_FACTOR * shortest:
            return step
    return None


def summarise(rows: Sequence[dict[str, Any]], tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """One row per task and arm."""
    table = []
    for task in tasks:
        of_task = [r for r in rows if r["task"] == task.name]
        tabular = [r["steps_to_greedy"] for r in of_task if r["arm"] == "tabular"]
        tabular_reached = [s for s in tabular if s is not None]
        for arm in ARMS:
            runs = [r for r in of_task if r["arm"] == arm]
            steps = [r["steps_to_greedy"] for r in runs]
            reached = [s for s in steps if s is not None]
            ratio = (
                float(np.median(reached)) / float(np.median(tabular_reached))
                if arm != "tabular" and len(reached) * 2 > len(steps) and tabular_reached
                else None
            )
            table.append(
                {
                    "maze": task.name,
                    "episode_steps": task.max_episode_steps,
                    "budget": task.budget,
                    "arm": arm,
                    "seeds_reached": f"{len(reached)}/{len(steps)}",
                    "steps_to_greedy": median_range(steps),
                    "final_success": fmt(float(np.median([r["final_success"] for r in runs]))),
                    "final_length_over_shortest": fmt(
                        float(np.median([r["final_length"] / r["shortest"] for r in runs]))
                    ),
                    "ratio_to_tabular": fmt(ratio),
                }
            )
    return table


def plot(path: Path, rows: Sequence[dict[str, Any]], tasks: Sequence[Task]) -> None:
    """Greedy success against env steps, one panel per task, one thin line per run."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3), dpi=90, squeeze=False)
    colors = {"dqn": "tab:blue", "dqn_1step": "tab:gray", "tabular": "tab:orange"}
    for ax, task in zip(axes[0], tasks, strict=True):
        for arm in ARMS:
            runs = [r for r in rows if r["task"] == task.name and r["arm"] == arm]
            for index, row in enumerate(runs):
                steps, success = zip(*[(s, v) for s, v, _ in row["curve"]], strict=True)
                ax.plot(steps, success, color=colors[arm], lw=0.8, alpha=0.6,
                        label=arm if index == 0 else None)  # fmt: skip
        ax.set_title(f"{task.name}, {task.max_episode_steps}-step episodes", fontsize=8)
        ax.set_xlabel("env steps", fontsize=8)
        ax.set_ylabel("greedy success", fontsize=8)
        ax.set_ylim(-0.05, 1.05)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    out = Path(args.out)
    tasks = SMOKE if args.smoke else FULL
    jobs = build_configs(tasks)
    with Timer("runs"):
        configs = [config for _, _, config in jobs]
        results = run_sweep(configs, out / "sweep", workers=args.workers, progress=False)
    rows = []
    for (task, arm, config), result in zip(jobs, results, strict=True):
        if result["error"]:
            raise RuntimeError(f"run {result['run']} failed: {result['error']}")
        shortest = shortest_path_length(load_maze(config.maze))
        curve = greedy_curve(out / "sweep" / result["run"])
        rows.append(
            {
                "task": task.name,
                "maze": config.maze,
                "arm": arm,
                "seed": config.seed,
                "shortest": shortest,
                "steps_to_greedy": steps_to_greedy(curve, shortest),
                "first_success_step": result["first_success_step"],
                "final_success": curve[-1][1],
                "final_length": curve[-1][2],
                "sps": result["sps"],
                "curve": curve,
            }
        )
    columns = [k for k in rows[0] if k != "curve"]
    runs = [{k: r[k] for k in columns} for r in rows]
    write_table(out, "long_mazes_runs", runs, "Long mazes: one row per run")
    notes = [
        f"Greedy: {EVAL_EPISODES} greedy episodes from the start; reached = success >= {SUCCESS} "
        f"and mean episode length <= {PATH_FACTOR}x the shortest path.",
        "dqn_1step: n_step 1, ss_value 'learner' (the defaults before 2026-12-01).",
        "ratio_to_tabular: median steps to greedy of the arm / the tabular learner's (when more "
        "than half the seeds of the arm reached it).",
    ]
    table = summarise(rows, tasks)
    write_table(out, "long_mazes", table, "Long mazes: steps to a greedy path", notes)
    plot(out / "long_mazes.png", rows, tasks)
    print((out / "long_mazes.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
