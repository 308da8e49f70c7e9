"""Side by side with Stable-Baselines3: throughput and steps to a greedy solution (issue 7).

    python experiments/benchmarks/bench_vs_sb3.py [--smoke] [--rounds N] [--seed S]
                                                  [--throughput-only] [--greedy-arms ARM ...]

Three arms, at equal settings (ours through ``TrainConfig``, SB3 through its constructor):

* ``sb3``: Stable-Baselines3 ``DQN("MultiInputPolicy", replay_buffer_class=HerReplayBuffer)``;
* ``ours``: our goal-conditioned DQN + HER, no Smart Start;
* ``ours+ss``: the same with Smart Start (eta 1, c_ss 0.1).

Shared settings: one hidden layer of 256, batch 128, one gradient step per env step, learning
starts at 1000 env steps, hard target update every 500 updates, Adam 1e-3, gamma 0.98, Huber
loss, gradient-norm clip 10, buffer 1e5, HER 'future' k = 4, epsilon 1 -> 0.05 over 20,000 env
steps, one torch thread, subnormal floats flushed to zero in every arm.

The env needs no adapter: SB3 2.9 reads our ``GridMazeEnv`` (a Dict of three ``Discrete``
spaces, a vectorised ``compute_reward`` that takes SB3's (batch, 1) Discrete goals and returns
(batch,) rewards) as it is; its ``MultiInputPolicy`` one-hot encodes each key and concatenates
them, so its first layer sees one-hot(s) || one-hot(achieved) || one-hot(g) (3 n_cells inputs)
where ours sees one-hot(s) || one-hot(g): the achieved goal of this env is always the state, so
the extra block carries no information (it only costs SB3 time). The rewards are the env's own
(1 at the goal, 0 elsewhere), relabelled ones included (a test checks SB3's equal ours). SB3
never marks a relabelled success as terminal (its issue #627); ours does.

Measurements:

1. Throughput: env steps per CPU-second (``time.process_time``, training only: model
   construction excluded) on keulen_hard with 100-step episodes, no evaluation. The arms
   alternate (sb3, ours, ours+ss, sb3, ...) for ``--rounds`` rounds in this one process, so a
   busy spell of the shared machine falls on all of them; the median per arm is reported.
   Target: ours >= 3x SB3.
2. Steps to a greedy solution: greedy success (5 episodes, epsilon 0; maze, start and goal
   are fixed, so the episodes differ only by tie-breaks) is evaluated every 500 env steps; a
   run stops at the first evaluation with success >= 0.9, or at its budget ("not reached in
   N"). On keulen_hard (100-step episodes, 60,000 env steps) and generated:41x41:seed=0, a
   perfect maze whose start-goal path is 520 steps, with 1,000-step episodes (the longest SB3
   accepts with learning starts at 1000: its HER buffer cannot sample before the first episode
   ends) and 400,000 env steps for our arms, 60,000 for SB3's (about 35 of its env steps per
   CPU-second there: 400,000 would take three hours). Here our arms run at the library's
   defaults (only the maze, episode limit, budget and seed set: since issue 12 they include
   reward -1 per step, gamma 0.999, 10-step returns and, with Smart Start, the count model's Q
   in the targets), SB3 at the shared settings above (the HER paper's): each library as a
   user gets it. ``--greedy-arms`` picks the arms of this measurement.
   Evaluation is not part of the throughput figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sshr_torch.config import TrainConfig
from sshr_torch.env import GridMazeEnv
from sshr_torch.trainer import Callback, Trainer

ARMS = ("sb3", "ours", "ours+ss")
TARGET_RATIO = 3.0
SUCCESS_TARGET = 0.9
EVAL_EVERY = 500
EVAL_EPISODES = 5
THROUGHPUT_MAZE, THROUGHPUT_EPISODE_STEPS = "keulen_hard", 100

# The settings every arm shares (TrainConfig field names).
SHARED = {
    "hidden_sizes": (256,),
    "batch_size": 128,
    "train_freq": 1,
    "learning_starts": 1000,
    "target_update_interval": 500,
    "learning_rate": 1e-3,
    "gamma": 0.98,
    "buffer_size": 100_000,
    "her": "future",
    "her_k": 4,
    "max_grad_norm": 10.0,
    "epsilon_start": 1.0,
    "epsilon_end": 0.05,
    "epsilon_decay_steps": 20_000,
}


@dataclass(frozen=True)
class Task:
    """A maze, its episode limit, and the env-step budget to reach greedy success >= 0.9
    (``sb3_budget``: SB3's, when it is smaller: its steps cost 10-30x ours)."""

    maze: str
    max_episode_steps: int
    budget: int
    sb3_budget: int | None = None

    def budget_of(self, arm: str) -> int:
        """The env-step budget of ``arm`` on this task."""
        return self.sb3_budget if arm == "sb3" and self.sb3_budget else self.budget


@dataclass
class Outcome:
    """One run: env steps, CPU seconds of training, and the step greedy success was reached."""

    steps: int
    cpu_s: float
    reached_at: int | None = None
    last_success: float = 0.0

    @property
    def sps(self) -> float:
        """Env steps per CPU-second."""
        return self.steps / max(self.cpu_s, 1e-9)


# --- our arms --------------------------------------------------------------------------------


class StepEvaluation(Callback):
    """Evaluates greedily every ``every`` env steps; stops the run once ``target`` is reached.

    The run's own evaluations are off (eval_interval 0); its closing one also counts.
    """

    def __init__(self, every: int, target: float) -> None:
        self.every, self.target = every, target
        self.next_eval = every
        self.reached_at: int | None = None
        self.last_success = 0.0

    def on_episode_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        steps = trainer.progress.env_steps
        if steps >= self.next_eval:
            self.next_eval = (steps // self.every + 1) * self.every
            trainer.evaluate()

    def on_evaluation(self, trainer: Trainer, success_rate: float, mean_length: float) -> None:
        self.last_success = float(success_rate)
        if self.reached_at is None and success_rate >= self.target:
            self.reached_at = trainer.progress.env_steps

    def should_stop(self, trainer: Trainer) -> bool:
        return self.reached_at is not None


def run_ours(
    maze: str,
    max_episode_steps: int,
    steps: int,
    *,
    smart_start: bool,
    seed: int,
    evaluate: bool,
    runs_root: str,
    defaults: bool = False,
) -> Outcome:
    """Train our DQN + HER (with or without Smart Start); CPU time of ``Trainer.run`` only.

    At the shared settings, or (``defaults``) at the library's defaults."""
    config = TrainConfig(
        agent="dqn",
        smart_start=smart_start,
        maze=maze,
        max_episode_steps=max_episode_steps,
        total_steps=steps,
        seed=seed,
        runs_root=runs_root,
        quiet=True,
        eval_interval=0,
        eval_episodes=EVAL_EPISODES,
        image_interval=0,
        checkpoint_interval=10**9,
        torch_threads=1,
        **({} if defaults else {**SHARED, "eta": 1.0, "c_ss": 0.1}),
    ).validate()
    callback = StepEvaluation(EVAL_EVERY if evaluate else 10**12, SUCCESS_TARGET)
    trainer = Trainer(config, callbacks=[callback])
    started = time.process_time()
    result = trainer.run()
    cpu_s = time.process_time() - started
    return Outcome(result.summary["env_steps"], cpu_s, callback.reached_at, callback.last_success)


# --- Stable-Baselines3 -----------------------------------------------------------------------


def make_sb3_model(env: GridMazeEnv, steps: int, *, seed: int) -> Any:
    """SB3's DQN + HerReplayBuffer on our env as it is, at the shared settings, for ``steps``."""
    from stable_baselines3 import DQN, HerReplayBuffer

    return DQN(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs={
            "n_sampled_goal": SHARED["her_k"],
            "goal_selection_strategy": "future",
        },
        policy_kwargs={"net_arch": list(SHARED["hidden_sizes"])},
        learning_rate=SHARED["learning_rate"],
        gamma=SHARED["gamma"],
        batch_size=SHARED["batch_size"],
        buffer_size=SHARED["buffer_size"],
        train_freq=SHARED["train_freq"],
        gradient_steps=1,
        learning_starts=SHARED["learning_starts"],
        target_update_interval=SHARED["target_update_interval"],
        max_grad_norm=SHARED["max_grad_norm"],
        exploration_initial_eps=SHARED["epsilon_start"],
        exploration_final_eps=SHARED["epsilon_end"],
        # SB3 decays epsilon over a fraction of the run: the same 20,000 steps as ours (a
        # fraction past 1 for shorter runs, whose epsilon does not finish decaying, as ours).
        exploration_fraction=SHARED["epsilon_decay_steps"] / steps,
        seed=seed,
        device="cpu",
        verbose=0,
    )


def run_sb3(maze: str, max_episode_steps: int, steps: int, *, seed: int, evaluate: bool) -> Outcome:
    """Train SB3's DQN + HerReplayBuffer; CPU time of ``learn`` minus its evaluations."""
    from stable_baselines3.common.callbacks import BaseCallback

    env = GridMazeEnv(maze, max_episode_steps=max_episode_steps)
    eval_env = GridMazeEnv(maze, max_episode_steps=max_episode_steps)
    model = make_sb3_model(env, steps, seed=seed)
    outcome = Outcome(0, 0.0)
    eval_cpu = [0.0]

    class StepEval(BaseCallback):
        """Greedy evaluation every EVAL_EVERY steps; stop at the target."""

        def _on_step(self) -> bool:
            if not evaluate or self.num_timesteps % EVAL_EVERY:
                return True
            t0 = time.process_time()
            outcome.last_success = _greedy_success(
                lambda obs: int(model.predict(obs, deterministic=True)[0]), eval_env, seed
            )
            eval_cpu[0] += time.process_time() - t0
            if outcome.last_success >= SUCCESS_TARGET:
                outcome.reached_at = self.num_timesteps
                return False
            return True

    started = time.process_time()
    model.learn(total_timesteps=steps, callback=StepEval())
    outcome.cpu_s = time.process_time() - started - eval_cpu[0]
    outcome.steps = int(model.num_timesteps)
    return outcome


def _greedy_success(policy: Callable[[dict], int], env: GridMazeEnv, seed: int) -> float:
    """Fraction of EVAL_EPISODES greedy episodes that reach the goal."""
    successes = 0
    for index in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=seed + index)
        done, info = False, {}
        while not done:
            obs, _, terminated, truncated, info = env.step(policy(obs))
            done = terminated or truncated
        successes += bool(info.get("is_success", False))
    return successes / EVAL_EPISODES


def run_arm(arm: str, task: Task, steps: int, seed: int, evaluate: bool, root: str) -> Outcome:
    """One run of one arm: ours at the shared settings to measure throughput, at the library's
    defaults to measure the steps to a greedy solution (``evaluate``)."""
    if arm == "sb3":
        return run_sb3(task.maze, task.max_episode_steps, steps, seed=seed, evaluate=evaluate)
    return run_ours(
        task.maze,
        task.max_episode_steps,
        steps,
        smart_start=arm == "ours+ss",
        seed=seed,
        evaluate=evaluate,
        runs_root=root,
        defaults=evaluate,
    )


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print each figure beside its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: a few seconds' check")
    parser.add_argument("--rounds", type=int, default=None, help="throughput rounds (A, B, ...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="skip measurement 2 (steps to a greedy solution: about 45 minutes, mostly SB3's)",
    )
    parser.add_argument(
        "--greedy-arms",
        nargs="+",
        choices=ARMS,
        default=list(ARMS),
        help="the arms of measurement 2 (default: all)",
    )
    args = parser.parse_args(argv)
    try:
        import stable_baselines3
    except ImportError:
        print("bench_vs_sb3 needs Stable-Baselines3: pip install -e '.[bench]'.", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    # Our CPU agent turns on flush-to-zero when it is built (subnormal floats are slow on x86);
    # turn it on here so that SB3's runs, which share this thread, get it from the start too.
    torch.set_flush_denormal(True)
    if args.smoke:
        rounds, throughput_steps = args.rounds or 1, 1_200
        tasks = [Task("keulen_hard", 100, 1_200), Task("generated:41x41:seed=0", 1_000, 1_200)]
    else:
        rounds, throughput_steps = args.rounds or 3, 6_000
        tasks = [
            Task("keulen_hard", 100, 60_000),
            Task("generated:41x41:seed=0", 1_000, 400_000, sb3_budget=60_000),
        ]
    print(f"Stable-Baselines3 {stable_baselines3.__version__}, torch {torch.__version__}, 1 thread")
    with tempfile.TemporaryDirectory() as root:
        rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
        task = Task(THROUGHPUT_MAZE, THROUGHPUT_EPISODE_STEPS, throughput_steps)
        for round_index in range(rounds):
            for arm in ARMS:
                outcome = run_arm(arm, task, throughput_steps, args.seed, False, root)
                rates[arm].append(outcome.sps)
                print(f"  round {round_index + 1} {arm:8s} {outcome.sps:7.0f} env steps/CPU-s")
        medians = {arm: statistics.median(values) for arm, values in rates.items()}
        print(
            f"\nThroughput, {THROUGHPUT_MAZE}, {THROUGHPUT_EPISODE_STEPS}-step episodes, "
            f"{throughput_steps} env steps per run, median of {rounds} (env steps per CPU-second)"
        )
        for arm in ARMS:
            ratio = medians[arm] / medians["sb3"]
            verdict = "" if arm == "sb3" else _verdict(ratio >= TARGET_RATIO)
            print(
                f"  {arm:8s} {medians[arm]:7.0f}   ratio to SB3 {ratio:4.1f}x"
                + ("" if arm == "sb3" else f"   target >= {TARGET_RATIO:.0f}x  {verdict}")
            )
        if args.throughput_only:
            return 0
        print(f"\nEnv steps to greedy success >= {SUCCESS_TARGET} (eval every {EVAL_EVERY} steps)")
        for task in tasks:
            print(f"  {task.maze}, {task.max_episode_steps}-step episodes, budget {task.budget}")
            for arm in args.greedy_arms:
                budget = task.budget_of(arm)
                outcome = run_arm(arm, task, budget, args.seed, True, root)
                reached = (
                    f"reached at {outcome.reached_at}"
                    if outcome.reached_at is not None
                    else f"not reached in {budget} (last greedy success {outcome.last_success:.1f})"
                )
                print(f"    {arm:8s} {reached}   ({outcome.sps:.0f} env steps/CPU-s)")
    return 0


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
