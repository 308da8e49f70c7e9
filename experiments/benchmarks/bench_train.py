"""Trainer figures (issue 5), each printed beside its target.

1. The loop's own cost beyond the learner's work, per env step (target <= 30 us): the wall time
   of a run minus the time inside the learner (updates, batches, actions), Smart Start,
   evaluations, images and checkpoints, each of which is printed as well. For the DQN it is
   measured twice: beside the real updates, and with each update replaced by a no-op that
   returns the same metrics (the loop's own cost proper). The two differ because a DQN update
   reads and writes about 1-2 MB (activations, rows of w1 and its Adam moments), which pushes
   the loop's own code and data out of the CPU caches: every other part then runs slower
   after it. A no-op update that only reads a 2 MB (8 MB) array raised the remainder from 13
   to 22 (39) us per step on the test VM, and sampling from 30 to 48 (69) us.
2. Tabular Q-learning with Smart Start and HER (k = 4) on keulen_medium, 100-step episodes:
   env steps per second of the whole run, logs and checkpoints included (target >= 20,000;
   Keulen's code: 25-50 us per step without Smart Start, 80-1,500 us with it).

    python experiments/benchmarks/bench_train.py            # about a minute
    python experiments/benchmarks/bench_train.py --smoke    # seconds
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sshr_torch.config import TrainConfig
from sshr_torch.trainer import Trainer


class _Stopwatch:
    """Wraps callables and adds up the seconds spent inside them."""

    active = 0  # how many watched calls are running (for nested calls)

    def __init__(self) -> None:
        self.seconds = 0.0
        self.nested_seconds = 0.0  # seconds of calls made while another watched call ran
        self.calls = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            nested = _Stopwatch.active > 0
            _Stopwatch.active += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                _Stopwatch.active -= 1
                self.seconds += elapsed
                self.nested_seconds += elapsed if nested else 0.0
                self.calls += 1

        return timed


def measure(config: TrainConfig, no_op_updates: bool = False) -> dict[str, float]:
    """Run ``config`` with each part of the work timed; return seconds per env step by part.

    The parts: the learner's updates (``update`` / the tabular ``learn``), drawing replay
    batches, acting (``act``: the learner's forward pass), greedy evaluations, dashboard images
    checkpoints and Smart Start (count model, choice of S_ss, planning, guided actions). What
    remains of the wall time is the loop's own cost: env steps, the HER buffer's writes, the
    episode log and TensorBoard scalars.
    """
    trainer = Trainer(config.validate())
    agent, watches = trainer.agent, {}
    if no_op_updates:
        metrics = {"td_loss": 0.0, "q_mean": 0.0, "grad_norm": 0.0}
        agent.update = lambda batch: dict(metrics)

    def time_it(owner: Any, name: str, part: str) -> None:
        watches.setdefault(part, _Stopwatch())
        setattr(owner, name, watches[part].wrap(getattr(owner, name)))

    # The DQN's learn() draws a batch and updates; the tabular learner's learns in learn().
    time_it(agent, "update" if config.agent == "dqn" else "learn", "updates")
    time_it(trainer.buffer, "sample", "sampling")
    time_it(agent, "act", "act")
    time_it(trainer, "evaluate", "evaluation")
    time_it(trainer, "_write_images", "images")
    time_it(trainer, "checkpoint", "checkpoints")
    if trainer.controller is not None:
        for name in ("begin_episode", "act", "observe", "end_episode"):
            time_it(trainer.controller, name, "smart start")
    started = time.perf_counter()
    result = trainer.run()
    wall = time.perf_counter() - started
    steps = result.summary["env_steps"]
    # A call inside another watched call (act() during an evaluation) counts for the outer one.
    seconds = {part: watch.seconds - watch.nested_seconds for part, watch in watches.items()}
    figures = {part: value / steps * 1e6 for part, value in seconds.items()}
    figures.update(
        loop=(wall - sum(seconds.values())) / steps * 1e6,
        env_steps=steps,
        wall_s=wall,
        sps=steps / wall,
    )
    return figures


def main() -> None:
    """Measure and print the trainer's figures beside their targets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets, seconds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = 20_000 if args.smoke else 300_000
    dqn_steps = 3_000 if args.smoke else 30_000
    with tempfile.TemporaryDirectory() as tmp:
        tabular = measure(
            TrainConfig(
                agent="tabular",
                her="future",
                her_k=4,
                smart_start=True,
                eta=0.8,
                maze="keulen_medium",
                max_episode_steps=100,
                total_steps=steps,
                run_dir=str(Path(tmp) / "tabular"),
                quiet=True,
            )
        )
        dqn_config = TrainConfig(
            agent="dqn",
            her="future",
            maze="keulen_easy",
            max_episode_steps=1000,
            total_steps=dqn_steps,
            run_dir=str(Path(tmp) / "dqn"),
            quiet=True,
        )
        dqn = measure(dqn_config)
        no_op = measure(replace(dqn_config, run_dir=str(Path(tmp) / "no-op")), no_op_updates=True)
    print("machine: 2-core CPU, 1 torch thread (figures are per env step, in us)")
    print(f"{'run':<44}{'part':<26}{'measured':>10}  target")
    for label, figures, sps_target, loop_target in (
        ("tabular SS+HER(k=4), keulen_medium, 100 st.", tabular, ">= 20,000", "<= 30"),
        ("DQN SS+HER(k=4), keulen_easy, 1000 st.", dqn, "-", "(caches: see doc)"),
        ("the same, each DQN update a no-op", no_op, "-", "<= 30"),
    ):
        print(f"{label:<44}{'env steps per second':<26}{figures['sps']:>10,.0f}  {sps_target}")
        print(f"{'':<44}{'loop (the rest)':<26}{figures['loop']:>10.1f}  {loop_target}")
        parts = ("smart start", "updates", "sampling", "act", "evaluation", "images", "checkpoints")
        for part in parts:
            print(f"{'':<44}{part:<26}{figures[part]:>10.1f}  -")
        print(f"{'':<44}({figures['env_steps']:,} steps in {figures['wall_s']:.1f} s)")


if __name__ == "__main__":
    main()
