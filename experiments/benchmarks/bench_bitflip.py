"""Side by side with Stable-Baselines3 on its own BitFlippingEnv (issue 22): throughput.

    python experiments/benchmarks/bench_bitflip.py            # about five minutes
    python experiments/benchmarks/bench_bitflip.py --smoke    # seconds

The env is SB3's ``BitFlippingEnv`` with 15 bits and its default observations: a Dict of three
``MultiBinary(15)`` (observation, achieved_goal, desired_goal), 15 actions (flip bit i), reward
-1 until every bit matches the goal (then 0 and the episode ends), 15 steps per episode. Both
libraries read it as it is. SB3's ``MultiInputPolicy`` flattens and concatenates the three keys
(45 inputs); ours reads observation || desired_goal (30): the achieved goal of this env is its
observation, so the extra block carries no information (it only costs SB3 time).

Two arms at equal settings (ours through ``TrainConfig``, SB3 through its constructor):

* ``sb3``: Stable-Baselines3 ``DQN("MultiInputPolicy", replay_buffer_class=HerReplayBuffer)``;
* ``ours``: our goal-conditioned DQN + HER, no Smart Start (the default ``OneHotMLP``, whose
  fast path takes MultiBinary inputs).

Shared settings: one hidden layer of 256, batch 128, one gradient step per env step, learning
starts at 1000 env steps, hard target update every 500 updates, Adam 1e-3, gamma 0.98, Huber
loss, gradient-norm clip 10, buffer 1e5, HER 'future' k = 4, epsilon 1 -> 0.05 linearly over
20,000 env steps (SB3: ``exploration_fraction`` = 20,000 / steps, which may exceed 1), 1-step
targets and the env's own rewards (ours: ``n_step=1``, ``step_reward=0``), one torch thread,
subnormal floats flushed to zero in both arms.

Figure: env steps per CPU-second (``time.process_time``) of training only: SB3's ``learn``, our
``Trainer.run`` (which also writes its logs, the closing greedy evaluation and a checkpoint);
model construction is excluded. The arms alternate (sb3, ours, sb3, ours, ...) for ``--rounds``
rounds in this one process, so a busy spell of the shared machine falls on both; the median of
each is printed, and ours / SB3 beside the target (>= 2.5x). The first round of each arm also
pays one-off costs (our numba kernels load from their cache, about half a CPU-second), which
the median leaves out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sshr_torch.config import TrainConfig
from sshr_torch.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_sb3 as BENCH  # noqa: E402  (beside this file)

ARMS = ("sb3", "ours")
TARGET_RATIO = 2.5
N_BITS = 15

# The settings both arms share, and SB3's model at them: bench_vs_sb3.py's.
SHARED = BENCH.SHARED


def make_env(n_bits: int = N_BITS) -> Any:
    """SB3's BitFlippingEnv with its default MultiBinary observations."""
    from stable_baselines3.common.envs import BitFlippingEnv

    return BitFlippingEnv(n_bits=n_bits)


def run_ours(steps: int, *, seed: int, runs_root: str, n_bits: int = N_BITS) -> float:
    """Train our DQN + HER for ``steps`` env steps; env steps per CPU-second of ``run``."""
    config = TrainConfig(
        agent="dqn",
        smart_start=False,
        n_step=1,
        step_reward=0.0,
        max_episode_steps=n_bits,
        total_steps=steps,
        seed=seed,
        runs_root=runs_root,
        quiet=True,
        eval_interval=0,
        image_interval=0,
        checkpoint_interval=10**9,
        torch_threads=1,
        **SHARED,
    ).validate()
    trainer = Trainer(config, env=make_env(n_bits))
    started = time.process_time()
    result = trainer.run()
    return result.summary["env_steps"] / (time.process_time() - started)


def run_sb3(steps: int, *, seed: int, n_bits: int = N_BITS) -> float:
    """Train SB3's DQN + HerReplayBuffer; env steps per CPU-second of ``learn``."""
    model = BENCH.make_sb3_model(make_env(n_bits), steps, seed=seed)
    started = time.process_time()
    model.learn(total_timesteps=steps)
    return model.num_timesteps / (time.process_time() - started)


def main(argv: list[str] | None = None) -> int:
    """Alternate the arms and print the medians and their ratio beside the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one round of 1,200 steps")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the two arms")
    parser.add_argument("--steps", type=int, default=8_000, help="env steps per run")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    args = parser.parse_args(argv)
    rounds, steps = (1, 1_200) if args.smoke else (args.rounds, args.steps)
    if rounds < 1 or steps <= SHARED["learning_starts"]:
        print(
            f"--rounds must be >= 1 and --steps > {SHARED['learning_starts']} (learning starts).",
            file=sys.stderr,
        )
        return 2
    try:
        import stable_baselines3
    except ImportError:
        print("bench_bitflip needs Stable-Baselines3: pip install -e '.[bench]'.", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    # Our trainer turns flush-to-zero on for its run (config.flush_denormal); turn it on here
    # so that SB3's runs, which share this thread, get it from the start too.
    torch.set_flush_denormal(True)
    print(
        f"Stable-Baselines3 {stable_baselines3.__version__}, torch {torch.__version__}, "
        f"1 thread; BitFlippingEnv({N_BITS} bits, MultiBinary), {steps} env steps per run"
    )
    rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as root:
        for index in range(rounds):
            for arm in ARMS:
                if arm == "sb3":
                    rate = run_sb3(steps, seed=args.seed)
                else:
                    rate = run_ours(steps, seed=args.seed, runs_root=root)
                rates[arm].append(rate)
                print(f"  round {index + 1} {arm:4s} {rate:7.0f} env steps/CPU-s")
    medians = {arm: statistics.median(values) for arm, values in rates.items()}
    ratio = medians["ours"] / medians["sb3"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"\nmedian of {rounds}: SB3 {medians['sb3']:.0f}, ours {medians['ours']:.0f} env steps "
        f"per CPU-second; ours / SB3 {ratio:.2f}x (target >= {TARGET_RATIO}x: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
