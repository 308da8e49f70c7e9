"""What the count model's values for every goal cost per DQN update (issue 20's budget).

    python experiments/benchmarks/bench_model_goals.py            # about a minute
    python experiments/benchmarks/bench_model_goals.py --smoke    # seconds

``ModelGoalValues(goals='all').q_values`` on batches of 128 (state, goal) rows drawn uniformly
from the free cells, on a count model that has seen every move of the maze (every goal known,
so every row asks for a search at first); the worst case of a model that grows all the time is
simulated by a model that lacks the moves of some cells and learns one cell's moves before each
batch (each cached goal is then stale after the next refresh, once per 100 batches as the
trainer's once per 100-step episode, and is searched again as the credit of
``SEARCH_STATES_PER_BATCH`` visited states allows). The refreshes (value iteration for one
goal, as before issue 20) are not timed. Figure: mean
milliseconds per batch over ``--batches`` batches, the cold start included; target: at most
1 ms a batch (about the cost of the rest of a DQN update at batch 128) on every maze, 201x201
included.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from sshr_torch.env import GridMazeEnv
from sshr_torch.smart_start import CountModel, ModelGoalValues

MAZES = ("keulen_hard", "generated:101x101:seed=0", "generated:201x201:seed=0")
TARGET_MS = 1.0
EPISODE = 100  # batches between refreshes (an episode of 100 steps, one update a step)


def explore(model: CountModel, env: GridMazeEnv, cells: np.ndarray) -> None:
    """Count every action from each of ``cells`` once."""
    for s in cells.tolist():
        for a in range(4):
            model.update(s, a, 0.0, int(env.next_cell[s, a]), False)


def ms_per_batch(spec: str, batches: int, growing: bool, seed: int = 0) -> tuple[float, int]:
    """Mean milliseconds of q_values per batch of 128, and the searches it ran."""
    env = GridMazeEnv(spec)
    free = env.maze.free_cells
    # Growing: the moves of the last `batches` cells are left out, one cell's added a batch.
    held = free[len(free) - min(batches, len(free) // 2) :] if growing else free[:0]
    model = CountModel(4)
    explore(model, env, free[: len(free) - len(held)])
    values = ModelGoalValues(
        model, env.n_cells, 0.999, goal_reward=0.0, step_reward=-1.0, goals="all"
    )
    rng = np.random.default_rng(seed)
    states, goals = rng.choice(free, (batches, 128)), rng.choice(free, (batches, 128))
    elapsed = 0.0
    for index in range(batches):
        if index < len(held):
            explore(model, env, held[index : index + 1])
        if index % EPISODE == 0:  # the trainer refreshes once per episode
            values.refresh(int(goals[index, 0]))
        started = time.perf_counter()
        values.q_values(states[index], goals[index])
        elapsed += time.perf_counter() - started
    return 1e3 * elapsed / batches, values.n_searches


def main(argv: list[str] | None = None) -> int:
    """Print the cost per batch of each maze beside the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="keulen_hard, 50 batches")
    parser.add_argument("--batches", type=int, default=1000, help="batches per maze")
    args = parser.parse_args(argv)
    mazes, batches = (MAZES[:1], 50) if args.smoke else (MAZES, args.batches)
    if batches < 1:
        print("--batches must be a positive integer.", file=sys.stderr)
        return 2
    for spec in mazes:
        for growing in (False, True):
            ms, searches = ms_per_batch(spec, batches, growing)
            verdict = "met" if ms <= TARGET_MS else "NOT met"
            label = "growing model" if growing else "fixed model"
            print(
                f"{spec:26s} {label:14s} {ms:6.3f} ms a batch of 128 ({searches} searches in "
                f"{batches} batches; target <= {TARGET_MS} ms: {verdict})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
