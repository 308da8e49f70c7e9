"""Benchmark the maze environment and generator; print each measured figure beside its target.

    python experiments/benchmarks/bench_env.py

Figures (issue 2):
  * GridMazeEnv.step, unwrapped: median <= 10 us per step.
  * generate_maze(201, 201), per kind: < 1 s.

step() is timed in blocks of 100 calls (a perf_counter call per step would cost as much as a
step); the figure is the median over blocks of the time per step, which shrugs off the odd
block slowed by another process on a shared machine. Resets are outside the timed blocks.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium
import numpy as np

from sshr_torch.env import ENV_ID, GridMazeEnv
from sshr_torch.maze import GENERATOR_KINDS, generate_maze

_BLOCK = 100


def step_median_us(env: gymnasium.Env, n_blocks: int, seed: int = 0) -> float:
    """Median over blocks of 100 random steps of the time per step, in microseconds."""
    base = env.unwrapped
    rng = np.random.default_rng(seed)
    actions = rng.integers(4, size=(n_blocks, _BLOCK)).tolist()  # Python ints, like an agent's
    env.reset(seed=seed)
    step = env.step
    per_step = []
    for block in actions:
        if base.elapsed_steps + _BLOCK > base.max_episode_steps:
            env.reset()
        t0 = time.perf_counter()
        for a in block:
            step(a)
        per_step.append((time.perf_counter() - t0) / _BLOCK)
    return statistics.median(per_step) * 1e6


def generation_s(n_rows: int, n_cols: int, kind: str, repeats: int) -> float:
    """Median wall time of generate_maze over ``repeats`` seeds, in seconds."""
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        generate_maze(n_rows, n_cols, seed=seed, kind=kind)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Run the benchmarks and print a measured-versus-target table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2000, help="blocks of 100 steps to time")
    parser.add_argument("--repeats", type=int, default=5, help="seeds per generator figure")
    args = parser.parse_args()

    rows: list[tuple[str, str, str, bool]] = []
    # The paper's kind of maze, a big generated one (the agent rarely ends an episode there),
    # and one with slip, which adds a uniform draw per step.
    for label, env in [
        ("GridMazeEnv.step keulen_hard", GridMazeEnv("keulen_hard")),
        ("GridMazeEnv.step generated:201x201", GridMazeEnv("generated:201x201:seed=1")),
        ("GridMazeEnv.step keulen_extreme, slip 0.2", GridMazeEnv("keulen_extreme", slip=0.2)),
    ]:
        us = step_median_us(env, args.blocks)
        rows.append((label + " (median)", f"{us:.2f} us", "<= 10 us", us <= 10.0))
    # For information (no target): the same step through gymnasium.make's checker and
    # order-enforcing wrappers, which a trainer gets unless it takes env.unwrapped.
    wrapped = gymnasium.make(ENV_ID, maze="keulen_hard")
    us = step_median_us(wrapped, args.blocks // 4)
    rows.append(("gymnasium.make(...).step keulen_hard (median)", f"{us:.2f} us", "-", True))
    for kind in GENERATOR_KINDS:
        s = generation_s(201, 201, kind, args.repeats)
        rows.append((f"generate_maze 201x201 kind={kind}", f"{s * 1e3:.1f} ms", "< 1 s", s < 1.0))

    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':>10}  {'target':>9}  ok")
    for name, measured, target, ok in rows:
        print(f"{name:<{width}}  {measured:>10}  {target:>9}  {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
