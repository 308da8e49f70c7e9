"""Scale: generated mazes from 11x11 to 201x201 (issue 7). Prints each figure beside its target.

    python experiments/benchmarks/bench_scale.py [--smoke]
    python experiments/benchmarks/bench_scale.py --sizes 21 201 --steps 3000   # issue 21's pair

Every maze is ``generated:NxN:seed=0`` (a perfect maze, start and goal at the two ends of its
longest path). Each size runs in a fresh subprocess (so its peak memory is its own), one torch
thread, one at a time. Per size:

* update: median time of one DQN gradient update (batch 128, one hidden layer of 256, index
  mode), batches drawn uniformly over the maze's free cells (states, next states and goals:
  the worst case for the CPU cache). Target: at 201x201 <= 1.5x the figure at 11x11.
* plan: the Smart Start controller's planning time (count-model export, value iteration, path
  trace; what ``SmartStartReport.plan_ms`` records) on a count model that has seen every action
  of the first min(20,000, n_free) free cells in breadth-first order from the start, i.e. about
  20,000 visited states at 201x201. Median over 10 episodes with Eq. 1 choosing S_ss (counts
  equal, so ties at random) and, separately, S_ss forced to the visited state farthest from the
  start (the worst case). Target: <= 100 ms at 20,000 visited states.
* throughput: env steps per CPU-second of ``Trainer.run`` (DQN + HER 'future' k = 4, learning
  from step 1000, 1000-step episodes), without and with Smart Start. Target: with Smart Start,
  the largest size's throughput >= 0.6x the smallest's (issue 21; its pair is 21x21 and
  201x201 with 3,000-step runs).
* memory: the process's peak resident set (``ru_maxrss``) minus its resident set right after
  the imports, beside the bytes the run's arrays and tensors hold: the agent's tensors (Q-network,
  target network, Adam moments: O(maze) through the first layer's rows), the replay buffer's
  arrays (O(buffer)), the env's tables and the count model (O(maze)). Target: linear in buffer
  size plus maze size, checked by also running the 41x41 maze with buffers of 1e4 and 1e6
  transitions and reading the slope per transition and per cell.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque

import numpy as np
import torch

SIZES = (11, 21, 41, 81, 101, 151, 201)
UPDATE_RATIO_TARGET = 1.5
SPS_RATIO_TARGET = 0.6
PLAN_TARGET_MS = 100.0
PLAN_STATES = 20_000
DEFAULT_BUFFER = 100_000


def _rss_mb() -> float:
    """Peak resident set of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    """Current resident set of this process, MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def update_us(maze_spec: str, n_updates: int) -> float:
    """Median time of one DQN update, in microseconds, after a warm-up of 200."""
    from sshr_torch.agents import DQNAgent
    from sshr_torch.her import Batch
    from sshr_torch.maze import load_maze

    maze = load_maze(maze_spec)
    free = maze.free_cells
    agent = DQNAgent(maze.n_cells, maze.n_cells, 4, hidden_sizes=(256,), gamma=0.98)
    rng = np.random.default_rng(0)

    def batch() -> Batch:
        return Batch(
            obs=rng.choice(free, 128),
            goal=rng.choice(free, 128),
            action=rng.integers(0, 4, 128),
            reward=(rng.random(128) < 0.1).astype(np.float32),
            next_obs=rng.choice(free, 128),
            terminal=(rng.random(128) < 0.1).astype(np.float32),
            relabelled=np.zeros(128, dtype=bool),
        )

    batches = [batch() for _ in range(64)]
    for i in range(200):
        agent.update(batches[i % 64])
    times = []
    for i in range(n_updates):
        t0 = time.perf_counter()
        agent.update(batches[i % 64])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def plan_ms(maze_spec: str, n_states: int, repeats: int) -> dict[str, float]:
    """Planning times (ms) on a count model of ``n_states`` visited cells (see the docstring)."""
    from sshr_torch.env import GridMazeEnv
    from sshr_torch.smart_start import SmartStartController

    env = GridMazeEnv(maze_spec)
    start = env.maze.start_index
    order, seen, queue = [], {start}, deque([start])
    while queue and len(order) < n_states:  # breadth-first from the start
        cell = queue.popleft()
        order.append(cell)
        for action in range(4):
            nxt = int(env.next_cell[cell, action])
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    controller = SmartStartController(4, rng=np.random.default_rng(0))
    model = controller.model
    for cell in order:
        for action in range(4):
            model.update(cell, action, 0.0, int(env.next_cell[cell, action]), False)
    chosen = []
    for episode in range(1, repeats + 1):
        model._version += 1  # drop the cached export: time a fresh plan each episode
        controller.begin_episode(episode, start, None)
        chosen.append(controller.end_episode().plan_ms)
    farthest = np.zeros(model.n_states)
    farthest[model.index(order[-1])] = 1.0  # Eq. 1 then picks the last cell in BFS order
    worst = []
    for episode in range(1, repeats + 1):
        model._version += 1
        controller.begin_episode(episode, start, farthest)
        report = controller.end_episode()
        worst.append(report.plan_ms)
    return {
        "n_visited": model.n_states,
        "plan_ms": statistics.median(chosen),
        "plan_ms_farthest": statistics.median(worst),
        "plan_length_farthest": report.plan_length,
    }


def throughput(maze_spec: str, steps: int, smart_start: bool, buffer_size: int) -> dict:
    """Env steps per CPU-second of Trainer.run, and the bytes its arrays and tensors hold."""
    from sshr_torch.config import TrainConfig
    from sshr_torch.trainer import Trainer

    with tempfile.TemporaryDirectory() as root:
        config = TrainConfig(
            maze=maze_spec,
            smart_start=smart_start,
            max_episode_steps=1000,
            total_steps=steps,
            gamma=0.98,
            buffer_size=buffer_size,
            runs_root=root,
            quiet=True,
            eval_interval=0,
            image_interval=0,
            checkpoint_interval=10**9,
        ).validate()
        trainer = Trainer(config)
        started = time.process_time()
        summary = trainer.run().summary
        cpu_s = time.process_time() - started
        agent_bytes = sum(
            t.numel() * t.element_size()
            for t in (
                *trainer.agent.q_network.parameters(),
                *trainer.agent.target_network.parameters(),
                *(
                    value
                    for optimizer in trainer.agent.optimizers
                    for state in optimizer.state.values()
                    for value in state.values()
                    if isinstance(value, torch.Tensor)
                ),
            )
        )
        buffer_bytes = sum(
            value.nbytes for value in vars(trainer.buffer).values() if isinstance(value, np.ndarray)
        )
        env_bytes = trainer.env.next_cell.nbytes + len(trainer.env._next) * 4
    return {
        "sps": summary["env_steps"] / cpu_s,
        "agent_mb": agent_bytes / 2**20,
        "buffer_mb": buffer_bytes / 2**20,
        "env_mb": env_bytes / 2**20,
    }


def worker(size: int, buffer_size: int, steps: int, n_updates: int, memory_only: bool) -> dict:
    """Every figure of one maze size (run in a fresh process); returns them as a dict."""
    torch.set_num_threads(1)
    import sshr_torch.trainer  # noqa: F401  (the imports' memory belongs to the baseline)

    baseline = _current_rss_mb()
    spec = f"generated:{size}x{size}:seed=0"
    out: dict = {"size": size, "buffer_size": buffer_size, "baseline_mb": baseline}
    if not memory_only:
        out["update_us"] = update_us(spec, n_updates)
        out.update(plan_ms(spec, PLAN_STATES, 10))
        out["sps_no_ss"] = throughput(spec, steps, False, buffer_size)["sps"]
    run = throughput(spec, steps, True, buffer_size)
    out["sps_ss"] = run["sps"]
    out.update({key: run[key] for key in ("agent_mb", "buffer_mb", "env_mb")})
    out["peak_mb"] = _rss_mb() - baseline
    return out


def _spawn(size: int, buffer_size: int, steps: int, n_updates: int, memory_only: bool) -> dict:
    command = [sys.executable, __file__, "--worker", str(size), "--buffer", str(buffer_size)]
    command += ["--steps", str(steps), "--updates", str(n_updates)]
    if memory_only:
        command.append("--memory-only")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"size {size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Spawn one worker per size, then print the table and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="two sizes, short runs")
    parser.add_argument(
        "--sizes", nargs="+", type=int, help=f"maze sides to run (default: {SIZES})"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--buffer", type=int, default=DEFAULT_BUFFER, help=argparse.SUPPRESS)
    parser.add_argument(
        "--steps", type=int, default=5_000, help="env steps per throughput run (default 5000)"
    )
    parser.add_argument("--updates", type=int, default=2_000, help=argparse.SUPPRESS)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(
            json.dumps(worker(args.worker, args.buffer, args.steps, args.updates, args.memory_only))
        )
        return 0
    sizes = (11, 201) if args.smoke else tuple(args.sizes or SIZES)
    if len(sizes) < 2 or any(size < 5 or size % 2 == 0 for size in sizes):
        parser.exit(2, f"error: --sizes needs two or more odd sides >= 5, got {sizes}.\n")
    steps, n_updates = (1_500, 300) if args.smoke else (args.steps, 2_000)
    rows = []
    for size in sizes:
        rows.append(_spawn(size, DEFAULT_BUFFER, steps, n_updates, False))
        row = rows[-1]
        print(
            f"  {size}x{size} done: update {row['update_us']:.0f} us, plan {row['plan_ms']:.1f} ms",
            flush=True,
        )
    buffers = [_spawn(41, b, steps, n_updates, True) for b in (10_000, 1_000_000)]
    print(
        f"\nGenerated perfect mazes, buffer {DEFAULT_BUFFER}, {steps} env steps per throughput "
        "run, 1000-step episodes, 1 torch thread"
    )
    print(
        f"{'maze':>9} {'cells':>6} {'update us':>9} {'visited':>7} {'plan ms':>7} "
        f"{'worst ms':>8} {'(path)':>6} {'sps':>6} {'sps SS':>6} {'peak MiB':>8} "
        f"{'arrays MiB':>10}"
    )
    for row in rows:
        size = row["size"]
        arrays = row["agent_mb"] + row["buffer_mb"] + row["env_mb"]
        print(
            f"{size:>4}x{size:<4} {size * size:>6} {row['update_us']:>9.0f} "
            f"{row['n_visited']:>7} {row['plan_ms']:>7.1f} {row['plan_ms_farthest']:>8.1f} "
            f"{row['plan_length_farthest']:>6} {row['sps_no_ss']:>6.0f} {row['sps_ss']:>6.0f} "
            f"{row['peak_mb']:>8.0f} {arrays:>10.0f}"
        )
    small, large = rows[0], rows[-1]
    ratio = large["update_us"] / small["update_us"]
    print(
        f"\nupdate cost {large['size']}x{large['size']} / {small['size']}x{small['size']}: "
        f"{ratio:.2f}x   target <= {UPDATE_RATIO_TARGET}x   "
        f"{_verdict(ratio <= UPDATE_RATIO_TARGET)}"
    )
    sps_ratio = large["sps_ss"] / small["sps_ss"]
    print(
        f"throughput with Smart Start {large['size']}x{large['size']} / "
        f"{small['size']}x{small['size']}: {sps_ratio:.2f}x (without: "
        f"{large['sps_no_ss'] / small['sps_no_ss']:.2f}x)   target >= {SPS_RATIO_TARGET}x   "
        f"{_verdict(sps_ratio >= SPS_RATIO_TARGET)}"
    )
    print(
        f"planning with {large['n_visited']} visited states: {large['plan_ms']:.1f} ms (Eq. 1 "
        f"target), {large['plan_ms_farthest']:.1f} ms (farthest state, a "
        f"{large['plan_length_farthest']}-step plan)   target <= {PLAN_TARGET_MS:.0f} ms   "
        f"{_verdict(large['plan_ms'] <= PLAN_TARGET_MS)} / "
        f"{_verdict(large['plan_ms_farthest'] <= PLAN_TARGET_MS)}"
    )
    # Linear memory: peak = base + per_cell * cells + per_transition * buffer.
    small_buffer, big_buffer = buffers
    per_transition = (big_buffer["buffer_mb"] - small_buffer["buffer_mb"]) / (
        big_buffer["buffer_size"] - small_buffer["buffer_size"]
    )
    peak_per_transition = (big_buffer["peak_mb"] - small_buffer["peak_mb"]) / (
        big_buffer["buffer_size"] - small_buffer["buffer_size"]
    )
    cells = np.array([row["size"] ** 2 for row in rows], dtype=float)
    peaks = np.array([row["peak_mb"] for row in rows])
    slope, intercept = np.polyfit(cells, peaks, 1)
    residual = float(np.max(np.abs(peaks - (slope * cells + intercept))))
    print(
        f"memory: buffer arrays {per_transition * 2**20:.0f} B per transition (capacity), "
        f"peak RSS {peak_per_transition * 2**20:.0f} B per transition of capacity (buffers "
        f"1e4 vs 1e6 at 41x41: {small_buffer['peak_mb']:.0f} vs {big_buffer['peak_mb']:.0f} MiB; "
        "untouched capacity is never resident)"
    )
    print(
        f"memory: peak RSS = {intercept:.0f} MiB + {slope * 2**20:.0f} B per cell over the "
        f"sizes, largest deviation from that line {residual:.0f} MiB   target linear   "
        f"{_verdict(residual <= max(32.0, 0.1 * peaks.max()))}"
    )
    return 0


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


if __name__ == "__main__":
    sys.exit(main())
