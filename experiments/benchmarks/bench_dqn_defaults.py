"""What the DQN's long-maze defaults cost per env step (issue 12's throughput target).

    python experiments/benchmarks/bench_dqn_defaults.py            # about three minutes
    python experiments/benchmarks/bench_dqn_defaults.py --smoke    # seconds

Two arms, alternated (before, now, before, now, ...) for ``--rounds`` rounds in this one
process, so that a busy spell of a shared machine falls on both; the median of each is printed:

* ``before``: the DQN's settings before issue 12 (``_common.FIRST_ROUND_DQN``: 1-step targets,
  reward 1 at the goal, gamma 0.98, no count-model values, the epsilon schedule throughout);
* ``env_goal``: the defaults before issue 20, the count model's Q for the env's goal only
  (``model_goals='env'``);
* ``now``: the defaults (10-step returns from the HER buffer, reward -1 per step, gamma 0.999,
  random moves until the goal is first reached, the count model's Q regressed for every goal
  of a batch: a cached reverse breadth-first search per goal, and value iteration for the
  env's goal after every episode).

Both: DQN + HER 'future' + Smart Start on keulen_hard, 100-step episodes, ``--steps`` env steps,
no evaluation, one torch thread. Figure: env steps per CPU-second of ``Trainer.run``; targets:
``now`` at least 0.75x ``before`` (at most 25 % slower, issue 12) and at least 0.7x
``env_goal`` (issue 20).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/_common.py

from _common import FIRST_ROUND_DQN  # noqa: E402

from sshr_torch.config import TrainConfig  # noqa: E402
from sshr_torch.trainer import Trainer  # noqa: E402

ARMS = {"before": FIRST_ROUND_DQN, "env_goal": {"model_goals": "env"}, "now": {}}
TARGET_RATIO = 0.75
TARGET_GOALS_RATIO = 0.7


def steps_per_cpu_second(settings: dict, steps: int, seed: int, run_dir: str) -> float:
    """One run of ``steps`` env steps; env steps per CPU-second of the run itself."""
    config = TrainConfig(
        maze="keulen_hard",
        max_episode_steps=100,
        total_steps=steps,
        seed=seed,
        eval_interval=0,
        eval_episodes=1,
        image_interval=0,
        checkpoint_interval=10**9,
        torch_threads=1,
        run_dir=run_dir,  # one per run: two runs can start within the same second
        quiet=True,
        **settings,
    )
    trainer = Trainer(config)
    started = time.process_time()
    result = trainer.run()
    return result.summary["env_steps"] / (time.process_time() - started)


def main(argv: list[str] | None = None) -> int:
    """Alternate the arms and print the medians and their ratio beside the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one round of 1,500 steps")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the two arms")
    parser.add_argument("--steps", type=int, default=15_000, help="env steps per run")
    args = parser.parse_args(argv)
    rounds, steps = (1, 1_500) if args.smoke else (args.rounds, args.steps)
    if rounds < 1 or steps < 1:
        print("--rounds and --steps must be positive integers.", file=sys.stderr)
        return 2
    rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as root:
        for index in range(rounds):
            for arm, settings in ARMS.items():
                run_dir = f"{root}/{arm}-{index}"
                rates[arm].append(steps_per_cpu_second(settings, steps, index, run_dir))
                print(f"  round {index + 1} {arm:8s} {rates[arm][-1]:7.0f} env steps/CPU-s")
    medians = {arm: statistics.median(values) for arm, values in rates.items()}
    ratio = medians["now"] / medians["before"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"\nkeulen_hard, 100-step episodes, {steps} env steps, median of {rounds}: before "
        f"{medians['before']:.0f}, now {medians['now']:.0f} env steps/CPU-s; now / before "
        f"{ratio:.2f} (target >= {TARGET_RATIO}: {verdict})"
    )
    goals_ratio = medians["now"] / medians["env_goal"]
    verdict = "met" if goals_ratio >= TARGET_GOALS_RATIO else "NOT met"
    print(
        f"every goal's model values: env_goal {medians['env_goal']:.0f} env steps/CPU-s; "
        f"now / env_goal {goals_ratio:.2f} (target >= {TARGET_GOALS_RATIO}: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
