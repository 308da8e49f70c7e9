"""Hard exploration: a generated 101x101 perfect maze, three DQN arms in one env-step budget.

    python experiments/hard_exploration.py [--smoke] [--budget N] [--episode-steps N]
    python experiments/hard_exploration.py --defaults     # the DQN + HER + SS arm, defaults

The maze is ``generated:101x101:seed=0``: a perfect maze (one path between any two cells) whose
start and goal are the two ends of its longest path, 2,572 moves apart, among 5,201 free cells.
Arms, each one ``train(TrainConfig(...))`` run with the same seed, settings and budget:

* ``dqn``: DQN alone (no HER, no Smart Start);
* ``dqn+her``: DQN with HER 'future' k = 4;
* ``dqn+her+ss``: DQN with HER and Smart Start (eta 1, c_ss 5 unless ``--c-ss``).

Shared settings: one hidden layer of 256, batch 128, Adam 1e-3, learning from step 1000, one
update every 4 env steps, hard target update every 500 updates, TD targets clamped to [0, 1],
gamma 0.999 (the default 0.99 would leave 0.99^2572 ~ 6e-12 of the goal's reward at the
start: no greedy path could be learnt), episodes of 5,000 steps (~2x the shortest path; the
Smart Start walk counts against them), replay buffer as large as the budget, and epsilon 1
throughout: outside Smart Start's walk every arm moves uniformly at random, so the arms differ
only in where each episode's exploration happens (the DQN learns off-policy from all of it;
the greedy evaluation shows what it learnt). With epsilon decaying to 0.05 instead, the
untrained greedy policy walks into a wall and stays there for most of each episode, in every
arm. c_ss 5 rather than the paper's 0.1: with Q-values in [0, 1] and over a million steps, the
bonus of a once-visited state is 0.1 * sqrt(ln 1e6) ~ 0.37, so with 0.1 the DQN's noisy Q term
(not the counts) would pick S_ss.

Each arm leaves a run directory under runs/hard_exploration/ with TensorBoard scalars and the
maze/visits heatmaps (``tensorboard --logdir runs/hard_exploration``): they show how far each
arm's visits spread from the start. Printed per arm: first_success_step (the first env step
that reached the goal, or none), the final greedy success (2 episodes), the share of free cells
visited, the closest any visit came to the goal (moves along the maze), episodes, and CPU time.
The arms' final visit heatmaps, side by side, go to ``visits.png`` in the runs root.

``--defaults`` runs the ``dqn+her+ss`` arm with the library's defaults instead (since issue 12:
10-step returns, reward -1 per step, gamma 0.999, Eq. 1 from counts alone with the paper's c_ss
0.1, random moves until the goal is first reached, the count model's Q in the targets), only
the maze, the episode limit and the budget set, and stops at the first greedy evaluation (2
episodes) that walks to the goal within 1.2x the shortest path.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import FIRST_ROUND_DQN

from sshr_torch import runlog
from sshr_torch.config import TrainConfig
from sshr_torch.dashboards import visit_heatmap
from sshr_torch.maze import bfs_distances, load_maze, shortest_path_length
from sshr_torch.trainer import train

MAZE = "generated:101x101:seed=0"
ARMS: dict[str, dict] = {
    "dqn": {"her": "none", "smart_start": False},
    "dqn+her": {"her": "future", "smart_start": False},
    "dqn+her+ss": {"her": "future", "smart_start": True},
}


def base_config(budget: int, episode_steps: int, root: str, seed: int) -> TrainConfig:
    """The settings all arms share."""
    return TrainConfig(
        agent="dqn",
        maze=MAZE,
        max_episode_steps=episode_steps,
        total_steps=budget,
        seed=seed,
        # The settings of the published run (the DQN's defaults before issue 12, with gamma
        # 0.999); `--defaults` runs the DQN's current defaults instead.
        **{**FIRST_ROUND_DQN, "gamma": 0.999},
        her_k=4,
        eta=1.0,
        c_ss=5.0,
        hidden_sizes=(256,),
        batch_size=128,
        learning_rate=1e-3,
        learning_starts=1000,
        train_freq=4,
        target_update_interval=500,
        buffer_size=budget,
        epsilon_start=1.0,
        epsilon_end=1.0,
        eval_interval=20,
        eval_episodes=2,
        image_interval=10,
        checkpoint_interval=10,
        runs_root=root,
        quiet=True,
    )


def final_visits(run_dir: Path) -> np.ndarray:
    """The run's visit counts per cell index, from its last checkpoint."""
    checkpoint = runlog.load_checkpoint(run_dir / runlog.CHECKPOINT_FILE)
    return np.asarray(checkpoint["visits"]).ravel()


def reach(visits: np.ndarray, goal_distance: np.ndarray, free: np.ndarray) -> tuple[float, int]:
    """(share of free cells visited, fewest moves to the goal from any visited cell)."""
    visited = visits[free] > 0
    return float(visited.mean()), int(goal_distance[free][visited].min())


def visits_figure(visits: dict[str, np.ndarray], out: Path) -> None:
    """The arms' visit heatmaps (log counts, as on TensorBoard's maze/visits) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maze = load_maze(MAZE)
    fig, axes = plt.subplots(1, len(visits), figsize=(3.2 * len(visits), 3.5), squeeze=False)
    for ax, (arm, counts) in zip(axes[0], visits.items(), strict=True):
        ax.imshow(visit_heatmap(maze, counts))
        ax.set_title(arm, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the three arms one after another and print their outcomes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a 3,000-step budget per arm")
    parser.add_argument("--budget", type=int, default=1_500_000, help="env steps per arm")
    parser.add_argument("--episode-steps", type=int, default=5_000, help="episode step limit")
    parser.add_argument("--seed", type=int, default=0, help="seed of every arm")
    parser.add_argument("--runs-root", default="runs/hard_exploration", help="parent run dir")
    parser.add_argument("--c-ss", type=float, default=5.0, help="Smart Start's c_ss (Eq. 1)")
    parser.add_argument(
        "--arms", default=",".join(ARMS), help=f"comma-separated arms among {', '.join(ARMS)}"
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="the dqn+her+ss arm with the library's defaults, stopping at a greedy path",
    )
    args = parser.parse_args(argv)
    budget = 3_000 if args.smoke else args.budget
    if budget < 1 or args.episode_steps < 1:
        print("--budget and --episode-steps must be positive integers.", file=sys.stderr)
        return 2
    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    if not arms or any(arm not in ARMS for arm in arms):
        print(f"--arms must name arms among {', '.join(ARMS)}; got {args.arms!r}.", file=sys.stderr)
        return 2
    maze = load_maze(MAZE)
    path = shortest_path_length(maze)
    goal_distance = bfs_distances(maze, maze.goal).ravel()
    free = maze.free_cells
    print(
        f"{MAZE}: {maze.n_free} free cells, shortest start-goal path {path} moves; budget "
        f"{budget} env steps per arm, {args.episode_steps}-step episodes"
    )
    config = replace(
        base_config(budget, args.episode_steps, args.runs_root, args.seed), c_ss=args.c_ss
    )
    if args.defaults:
        arms = ["dqn+her+ss"]
        config = TrainConfig(
            maze=MAZE,
            max_episode_steps=args.episode_steps,
            total_steps=budget,
            seed=args.seed,
            eval_interval=20,
            eval_episodes=2,
            image_interval=10,
            checkpoint_interval=10,
            runs_root=args.runs_root,
            quiet=True,
            stop_success=0.9,
            stop_path_factor=1.2,
        )
    outcomes, visits = {}, {}
    for arm in arms:
        settings = ARMS[arm]
        started_cpu, started = time.process_time(), time.perf_counter()
        result = train(replace(config, **settings))
        cpu_s, wall_s = time.process_time() - started_cpu, time.perf_counter() - started
        summary = result.summary
        outcomes[arm], visits[arm] = summary, final_visits(result.run_dir)
        coverage, closest = reach(visits[arm], goal_distance, free)
        first = summary["first_success_step"]
        solved = f"   greedy path at {summary['solved_step']}" if args.defaults else ""
        print(
            f"  {arm:11s} first_success_step {first if first is not None else 'none':>7}   "
            f"final greedy success {summary['eval_success_rate']:.1f}   visited "
            f"{coverage:5.1%} of free cells, closest {closest:4d} moves from the goal   "
            f"{summary['episodes']} episodes, {cpu_s:.0f} CPU-s ({wall_s:.0f} s wall)   "
            f"{result.run_dir}{solved}",
            flush=True,
        )
    found = [arm for arm in arms if outcomes[arm]["first_success_step"] is not None]
    print(f"\nArms that found the goal in {budget} steps: {', '.join(found) or 'none'}")
    figure = Path(args.runs_root) / "visits.png"
    visits_figure(visits, figure)
    print(f"Visit heatmaps (log counts; start and goal marked): {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
