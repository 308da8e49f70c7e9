"""Sweeps on a Ray cluster (issue 15): what Ray Tune costs per run, simulated on this machine.

The cluster is ray.cluster_utils.Cluster: a head node without CPUs and two worker nodes of one
CPU each (three nodes; every run goes to a worker), the storage path a local directory.

1. Overhead per run, the same sweep on the local backend (2 processes) and on the cluster
   (2 worker CPUs): ``(wall time x 2 - the runs' own training time) / runs``, where a run's
   training time is the wall_s of its summary.json (the trainer's own clock). The rest is
   process start, imports, Tune's scheduling, checkpoint copies to storage and idle slots.
2. 60 short runs over the cluster: wall time, and the share of the CPU time of every process
   of the cluster and the driver that went into training. Training CPU time is measured by
   running each of the 60 configs once more in this process (``time.process_time``); the
   cluster's CPU time by polling every process under this one with psutil.

    python experiments/benchmarks/bench_cluster.py            # about 3 minutes on 2 cores
    python experiments/benchmarks/bench_cluster.py --smoke    # under a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import ray
from ray.cluster_utils import Cluster

from sshr_torch.config import TrainConfig
from sshr_torch.sweep import grid, run_sweep
from sshr_torch.trainer import train

# A short tabular run: the 4x3 maze, 30-step episodes, a checkpoint every 50 episodes.
BASE = TrainConfig(
    agent="tabular",
    maze="keulen_easy_unscaled",
    max_episode_steps=30,
    episodes=300,
    eval_interval=0,
    eval_episodes=1,
    image_interval=0,
    checkpoint_interval=50,
)


class CpuMeter:
    """CPU seconds (user + system) of this process and every process under it, polled."""

    def __init__(self, period_s: float = 0.2) -> None:
        self._seen: dict[tuple[int, float], float] = {}  # (pid, start time) -> CPU seconds
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
                self._seen[(process.pid, process.create_time())] = times.user + times.system
            except psutil.Error:
                pass  # ended between the listing and the look

    def _poll(self) -> None:
        while not self._stop.wait(self._period_s):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self._before = dict(self._seen)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        """CPU seconds spent between enter and exit (processes that started in between count
        from zero)."""
        return sum(cpu - self._before.get(key, 0.0) for key, cpu in self._seen.items())


def start_cluster() -> Cluster:
    """A head node without CPUs and two worker nodes of one CPU each."""
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


def timed(sweep: Callable[[], list[dict[str, Any]]]) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    rows = sweep()
    return time.perf_counter() - started, rows


def overhead_per_run(wall: float, rows: Sequence[dict[str, Any]], slots: int) -> float:
    """Seconds per run of the sweep's slot time not spent in the trainer."""
    assert all(row["error"] == "" for row in rows), [row["error"] for row in rows]
    return (wall * slots - sum(row["wall_s"] for row in rows)) / len(rows)


def training_cpu_s(configs: Sequence[TrainConfig], root: Path) -> float:
    """CPU seconds of training the configs one after another in this process."""
    train(dataclasses.replace(configs[0], run_dir=str(root / "warm-up"), quiet=True))
    started = time.process_time()
    for index, config in enumerate(configs):
        train(dataclasses.replace(config, run_dir=str(root / f"run{index}"), quiet=True))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets, seconds")
    args = parser.parse_args()
    base = dataclasses.replace(BASE, episodes=40) if args.smoke else BASE
    n_small, n_large = (4, 6) if args.smoke else (12, 60)
    small = grid(base, {"her": ["none", "future"]}, n_small // 2)
    large = grid(base, {"her": ["none", "future"]}, n_large // 2)
    print(f"ray {ray.__version__}, {os.cpu_count()} cores; runs of {base.episodes} episodes")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local_wall, local_rows = timed(
            lambda: run_sweep(small, root / "local", workers=2, progress=False)
        )
        local = overhead_per_run(local_wall, local_rows, 2)
        started = time.perf_counter()
        cluster = start_cluster()
        print(f"cluster start: {time.perf_counter() - started:.1f} s (not counted below)")
        try:
            ray_wall, ray_rows = timed(
                lambda: run_sweep(
                    small, root / "ray", backend="ray", address=cluster.address, progress=False
                )
            )
            on_ray = overhead_per_run(ray_wall, ray_rows, 2)
            print(
                f"1. {len(small)} runs, 2 slots: local backend {local_wall:.1f} s wall, "
                f"{local:.2f} s overhead per run; cluster {ray_wall:.1f} s wall, {on_ray:.2f} s "
                f"overhead per run (+{on_ray - local:.2f} s per run for Ray Tune)"
            )
            with CpuMeter() as meter:
                wall, rows = timed(
                    lambda: run_sweep(
                        large, root / "large", backend="ray", address=cluster.address,
                        progress=False,
                    )
                )  # fmt: skip
            assert all(row["error"] == "" for row in rows)
        finally:
            cluster.shutdown()
        training = training_cpu_s(large, root / "cpu")
        print(
            f"2. {len(large)} runs over the 3-node cluster: {wall:.1f} s wall "
            f"({wall / len(large):.2f} s per run); CPU time {meter.seconds:.1f} s of which "
            f"{training:.1f} s training ({training / meter.seconds:.0%}); "
            f"overhead per run {overhead_per_run(wall, rows, 2):.2f} s of slot time"
        )


if __name__ == "__main__":
    main()
