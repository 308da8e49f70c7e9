"""Trainer figures (issue 5), each printed beside its target.

1. The loop's own cost beyond the learner's updates, per env step (target <= 30 us): the wall
   time of a run minus the time spent inside the learner's update calls, over env steps.
2. Tabular Q-learning with Smart Start and HER (k = 4) on keulen_medium, 100-step episodes:
   env steps per second of the whole run, logs and checkpoints included (target >= 20,000;
   Keulen's code: 25-50 us per step without Smart Start, 80-1,500 us with it).

    python experiments/bench_train.py            # about a minute
    python experiments/bench_train.py --smoke    # seconds
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sshr_torch.config import TrainConfig
from sshr_torch.trainer import Trainer


class _Stopwatch:
    """Wraps callables and adds up the seconds spent inside them."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


def measure(config: TrainConfig) -> dict[str, float]:
    """Run ``config`` with the learner's update (and act) calls timed; return the figures."""
    trainer = Trainer(config.validate())
    updates, acts = _Stopwatch(), _Stopwatch()
    agent = trainer.agent
    agent.update = updates.wrap(agent.update)
    if hasattr(agent, "update_transition"):
        agent.update_transition = updates.wrap(agent.update_transition)
    agent.act = acts.wrap(agent.act)
    started = time.perf_counter()
    result = trainer.run()
    wall = time.perf_counter() - started
    steps = result.summary["env_steps"]
    # The stopwatch's own overhead (two perf_counter calls per wrapped call) is charged to
    # the learner, not the loop, so the loop figure is not flattered by it.
    return {
        "env_steps": steps,
        "wall_s": wall,
        "sps": steps / wall,
        "loop_us": (wall - updates.seconds) / steps * 1e6,
        "loop_minus_act_us": (wall - updates.seconds - acts.seconds) / steps * 1e6,
        "update_us_per_step": updates.seconds / steps * 1e6,
        "act_us": acts.seconds / max(acts.calls, 1) * 1e6,
        "success": result.summary["success_rate_last_100"],
    }


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
        dqn = measure(
            TrainConfig(
                agent="dqn",
                her="future",
                maze="keulen_easy",
                max_episode_steps=1000,
                total_steps=dqn_steps,
                run_dir=str(Path(tmp) / "dqn"),
                quiet=True,
            )
        )
    print(f"machine: {torch.get_num_threads()} torch thread, CPU")
    print(f"{'figure':<66}{'measured':>12}  target")
    rows = [
        (
            "tabular SS+HER(k=4), keulen_medium, 100-step ep.: env steps/s",
            f"{tabular['sps']:,.0f}",
            ">= 20,000",
        ),
        ("tabular run: loop cost beyond learner updates, us/step",
         f"{tabular['loop_us']:.1f}", "<= 30"),
        ("tabular run: learner updates (k=4 relabels incl.), us/step",
         f"{tabular['update_us_per_step']:.1f}", "-"),
        ("DQN SS+HER, keulen_easy: loop cost beyond learner updates, us/step",
         f"{dqn['loop_us']:.1f}", "<= 30"),
        ("DQN run: of which act() (greedy forward), us/call", f"{dqn['act_us']:.1f}", "-"),
        ("DQN run: env steps/s (one update per step)", f"{dqn['sps']:,.0f}", "-"),
    ]  # fmt: skip
    for name, value, target in rows:
        print(f"{name:<66}{value:>12}  {target}")
    print(
        f"(tabular: {tabular['env_steps']:,} steps in {tabular['wall_s']:.1f} s; "
        f"DQN: {dqn['env_steps']:,} steps in {dqn['wall_s']:.1f} s)"
    )


if __name__ == "__main__":
    main()
