"""Benchmark of sshr_torch.smart_start: count-model update cost and planning time.

Prints each measured figure beside its target (issue 3):

* count-model update: <= 5 us per step (the cost every env step pays, guided or not);
* planning over a 10,000-state visited model: <= 50 ms (model export + value iteration).

The models are synthetic 10,000-state grids with 4 actions (up, right, down, left), built by
feeding transitions to a CountModel exactly as training would:

* open:    a 100 x 100 room, deterministic moves, start and S_ss in opposite corners (198 steps);
* maze:    a perfect maze (one path between any two cells, long corridors) of about 10,000 free
           cells, S_ss at several path distances from the start;
* slip:    the open room with slip 0.2 (a random action 20% of the time), every (s, a) tried
           10 times: a stochastic model with about 3 outcomes per (s, a).

Update costs are the median of a few repeats, planning times the best of a few (noise on a
shared machine only ever adds time); one CPU thread.

Run: python experiments/benchmarks/bench_smart_start.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import deque

import numpy as np

from sshr_torch.smart_start import CountModel, SmartStartController, value_iteration

MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))


def open_room(n_rows: int, n_cols: int) -> np.ndarray:
    """Walls (bool, True = wall) of an open room with a wall border."""
    walls = np.zeros((n_rows + 2, n_cols + 2), dtype=bool)
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    return walls


def perfect_maze(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Walls of a perfect maze of h x w rooms (randomised depth-first carving)."""
    rng = np.random.default_rng(seed)
    walls = np.ones((2 * h + 1, 2 * w + 1), dtype=bool)
    seen = np.zeros((h, w), dtype=bool)
    seen[0, 0], walls[1, 1] = True, False
    stack = [(0, 0)]
    while stack:
        y, x = stack[-1]
        nxt = [
            (y + dy, x + dx)
            for dy, dx in MOVES
            if 0 <= y + dy < h and 0 <= x + dx < w and not seen[y + dy, x + dx]
        ]
        if not nxt:
            stack.pop()
            continue
        ny, nx = nxt[rng.integers(len(nxt))]
        seen[ny, nx] = True
        walls[2 * ny + 1, 2 * nx + 1] = walls[y + ny + 1, x + nx + 1] = False
        stack.append((ny, nx))
    return walls


def successors(walls: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Free cells (index row * n_cols + col) and next[cell, a] for deterministic moves."""
    n_cols = walls.shape[1]
    free = np.flatnonzero(~walls.ravel())
    rows, cols = np.divmod(free, n_cols)
    nxt = np.empty((walls.size, 4), dtype=np.int64)
    for a, (dr, dc) in enumerate(MOVES):
        blocked = walls[rows + dr, cols + dc]
        nxt[free, a] = np.where(blocked, free, (rows + dr) * n_cols + cols + dc)
    return free.tolist(), nxt


def bfs(nxt: np.ndarray, source: int) -> dict[int, int]:
    """Path distances from ``source``."""
    dist, todo = {source: 0}, deque([source])
    while todo:
        s = todo.popleft()
        for t in nxt[s].tolist():
            if t not in dist:
                dist[t] = dist[s] + 1
                todo.append(t)
    return dist


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_update(n_steps: int, repeats: int) -> dict[str, float]:
    """us per CountModel.update / controller.observe along a random walk on a 100 x 100 room."""
    free, nxt = successors(open_room(100, 100))
    rng = np.random.default_rng(0)
    actions = rng.integers(4, size=n_steps).tolist()
    states = [free[0]]
    for a in actions:
        states.append(int(nxt[states[-1], a]))
    transitions = list(zip(states[:-1], actions, states[1:], strict=True))
    bits = rng.integers(2, size=(64, 16), dtype=np.uint8)  # 64 MultiBinary(16) states
    ids = rng.integers(64, size=n_steps + 1)
    bit_transitions = [
        (bits[ids[i]], actions[i], bits[ids[i + 1]]) for i in range(min(n_steps, 100_000))
    ]

    def run_model():
        model = CountModel(4)
        update = model.update
        for s, a, s2 in transitions:
            update(s, a, 0.0, s2, False)

    def run_observe():
        controller = SmartStartController(4, rng=np.random.default_rng(0))
        observe = controller.observe
        for s, a, s2 in transitions:
            observe(s, a, 0.0, s2, False)

    def run_bits():
        model = CountModel(4)
        for s, a, s2 in bit_transitions:
            model.update(s, a, 0.0, s2, False)

    return {
        "update": median_time(run_model, repeats) / n_steps * 1e6,
        "observe": median_time(run_observe, repeats) / n_steps * 1e6,
        "update_bits": median_time(run_bits, repeats) / len(bit_transitions) * 1e6,
    }


def build_model(free, nxt, samples: int = 1, slip: float = 0.0, seed: int = 0) -> CountModel:
    """A CountModel that saw every (s, a) of the grid ``samples`` times."""
    rng = np.random.default_rng(seed)
    model = CountModel(4)
    for _ in range(samples):
        slips = rng.random((len(free), 4)) < slip
        random_actions = rng.integers(4, size=(len(free), 4))
        for i, s in enumerate(free):
            row = nxt[s]
            for a in range(4):
                model.update(s, a, 0.0, int(row[random_actions[i, a] if slips[i, a] else a]), False)
    return model


def plan_once(model: CountModel, start, target) -> tuple[float, float]:
    """(export ms, value iteration ms) of one plan from ``start`` to ``target``."""
    t0 = time.perf_counter()
    model._version += 1  # drop the cached export: time it as a fresh plan would
    P, _ = model.transition_model()
    t1 = time.perf_counter()
    mask = np.zeros(model.n_states, dtype=bool)
    mask[model.index(target)] = True
    Q = value_iteration(P, mask, 0.99, 1e-3, 1000)
    t2 = time.perf_counter()
    assert Q[model.index(start)].max() > 0, "the planner found no path"
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def controller_plan_ms(model: CountModel, start, target, repeats: int) -> float:
    """Best plan_ms reported by the controller (export + VI + path) for a forced target."""
    controller = SmartStartController(4, rng=np.random.default_rng(0))
    controller.model = model
    q = np.zeros(model.n_states)
    q[model.index(target)] = 1e3  # make S_ss the target
    times = []
    for _ in range(repeats):
        model._version += 1
        assert controller.begin_episode(1, start, q)
        times.append(controller.end_episode().plan_ms)
    return min(times)


def main() -> None:
    """Run the benchmark and print measured beside target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    args = parser.parse_args()
    n_steps, repeats = (50_000, 3) if args.quick else (200_000, 5)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"sshr_torch.smart_start benchmark (CPU, 1 thread; load average {load:.2f})\n")
    up = bench_update(n_steps, repeats)
    print(f"{'figure (median of repeats)':58s} {'measured':>10s} {'target':>10s}")
    print(f"{'count-model update (int states), us/step':58s} {up['update']:10.2f} {'<= 5':>10s}")
    print(f"{'controller.observe (update + walk check), us/step':58s} {up['observe']:10.2f}")
    print(f"{'count-model update (MultiBinary(16) states), us/step':58s} {up['update_bits']:10.2f}")

    rows = []
    free, nxt = successors(open_room(100, 100))
    model = build_model(free, nxt)
    start, target = free[0], free[-1]
    export, vi = min(plan_once(model, start, target) for _ in range(repeats))
    plan = controller_plan_ms(model, start, target, repeats)
    rows.append((f"open 100x100, {model.n_states} states, d=198", export, vi, plan))

    slip_model = build_model(free, nxt, samples=10, slip=0.2, seed=1)
    export, vi = min(plan_once(slip_model, start, target) for _ in range(repeats))
    nnz = slip_model.transition_model()[0].nnz
    plan = controller_plan_ms(slip_model, start, target, repeats)
    rows.append((f"open + slip 0.2, {nnz} transitions, d=198", export, vi, plan))

    free, nxt = successors(perfect_maze(70, 71, seed=0))
    maze_model = build_model(free, nxt)
    start = free[0]
    dist = bfs(nxt, start)
    for d in (100, 300, 600, 900):
        target = min(dist, key=lambda s, d=d: abs(dist[s] - d))
        export, vi = min(plan_once(maze_model, start, target) for _ in range(repeats))
        plan = controller_plan_ms(maze_model, start, target, repeats)
        rows.append(
            (f"perfect maze, {maze_model.n_states} states, d={dist[target]}", export, vi, plan)
        )

    print("\nplanning over a 10,000-state visited model, best of repeats (target: plan <= 50 ms)")
    print(f"{'model':58s} {'export':>8s} {'VI':>8s} {'plan':>8s}  (ms)")
    for name, export, vi, plan in rows:
        print(f"{name:58s} {export:8.1f} {vi:8.1f} {plan:8.1f}")
    print(
        "\nplan = SmartStartReport.plan_ms: model export + target region + value iteration"
        " + most-likely path.\nThe sweeps start from the shortest-path bound gamma^(d - 1)"
        " (one breadth-first search):\none sweep confirms it on a deterministic model, a"
        " stochastic one needs more (one sparse mat-vec each)."
    )


if __name__ == "__main__":
    main()
