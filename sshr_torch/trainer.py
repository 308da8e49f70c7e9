"""The run: build the parts a config describes, play episodes, log, evaluate, checkpoint.

The loop, top to bottom (``Trainer.run``):

    while the budget lasts and nobody asked to stop:
        result = play_episode(env, agent, buffer, ...)     # rollout: SS -> explore -> learn
        progress.record(result); logger.log_episode(row)  # episodes.csv, TensorBoard
        callbacks.on_episode_end(trainer, row)
        every eval_interval episodes: evaluate greedily   # callbacks.on_evaluation
        every checkpoint_interval episodes: checkpoint
    final evaluation, images, checkpoint, summary.json

Process-wide settings (torch threads, flush-to-zero of subnormal floats) are settings of the
run, applied here once (``apply_process_settings``) and recorded in config.json; building an
agent or an env changes nothing outside itself.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tqdm import tqdm

from sshr_torch import runlog
from sshr_torch.agents import Agent, DQNAgent, LinearSchedule, TabularAgent
from sshr_torch.config import ConfigError, TrainConfig
from sshr_torch.env import GridMazeEnv
from sshr_torch.goal_reach import (
    DEFAULT_EVAL_GOALS,
    GoalReach,
    maze_distances,
    reach_from_start,
    walk_stepper,
)
from sshr_torch.her import HerReplayBuffer
from sshr_torch.interrupt import StopRequest
from sshr_torch.maze import (
    BUILTIN_MAZES,
    GENERATED_PREFIX,
    load_maze,
    maze_to_text,
    shortest_path_length,
)
from sshr_torch.rollout import EpisodeResult, play_episode
from sshr_torch.smart_start import (
    CountModel,
    ModelGoalValues,
    SmartStartController,
    SmartStartReport,
    ucb1_action,
)

__all__ = [
    "Callback",
    "Trainer",
    "TrainResult",
    "apply_process_settings",
    "evaluate",
    "make_agent",
    "make_env",
    "resume_config",
    "train",
]

# Fields a resumed run may change: how long it runs and how much it prints.
RESUME_OVERRIDABLE = ("episodes", "total_steps", "quiet", "resume")
# The maze/goal_reach image walks to at most this many cells (the first in the run's goal order).
MAX_IMAGE_WALKS = 4096
LOSSES = {"huber": torch.nn.functional.smooth_l1_loss, "mse": torch.nn.functional.mse_loss}


@dataclass
class TrainResult:
    """What ``train`` returns: where the run is, its summary, and the trained learner."""

    run_dir: Path
    summary: dict[str, Any]
    agent: Agent
    config: TrainConfig
    interrupted: bool = False


class Callback:
    """Hooks into a run; subclass and override what you need (each default does nothing).

    ``trainer`` gives access to everything: ``trainer.progress`` (episode, env_steps, ...),
    ``trainer.agent``, ``trainer.evaluate()``, ``trainer.logger.writer`` (TensorBoard).
    """

    def on_episode_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """After each episode, with its episodes.csv row."""

    def on_evaluation(self, trainer: Trainer, success_rate: float, mean_length: float) -> None:
        """After each greedy evaluation (the periodic ones, the final one, and callbacks')."""

    def should_stop(self, trainer: Trainer) -> bool:
        """Checked before each episode: True ends the run there (checkpoint and summary)."""
        return False


def train(
    config: TrainConfig,
    env: gym.Env | None = None,
    callbacks: Sequence[Callback] = (),
    q_network: torch.nn.Module | Callable[..., torch.nn.Module] | None = None,
) -> TrainResult:
    """Train a goal-conditioned learner with Smart Start and HER as configured.

    Args:
        config: the run's settings. With ``config.resume`` set, the run in that directory
            continues from its last checkpoint (build the config with ``resume_config``).
        env: a goal-env with Discrete or MultiBinary spaces; None builds the maze env of
            ``config``. It runs under a TimeLimit of ``config.max_episode_steps``; the maze's
            other settings (slip, random start and goal, stop_path_factor) are refused with it.
        callbacks: hooks called during the run (see ``Callback``).
        q_network: the DQN's Q-network, a module or a factory (see ``DQNAgent``); None: the
            default ``OneHotMLP`` with ``config.hidden_sizes``.

    Returns:
        A TrainResult; the run directory holds config.json, episodes.csv, summary.json,
        TensorBoard event files and checkpoint.pt.
    """
    # One Ctrl-C from here on, start-up included, ends with a checkpoint and the summary.
    with StopRequest() as stop:
        return Trainer(config.validate(), env, callbacks, q_network).run(stop)


def resume_config(run_dir: str | Path, **overrides: Any) -> TrainConfig:
    """The saved config of the run in ``run_dir``, with ``resume`` set and overrides applied.

    Only the run length and verbosity may be overridden (``RESUME_OVERRIDABLE``).
    """
    if str(run_dir).strip() == "":
        raise runlog.RunError("--resume needs a run directory, got an empty string.")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise runlog.RunError(f"cannot resume: run directory {run_dir} does not exist.")
    saved = runlog.read_json(run_dir / runlog.CONFIG_FILE)
    try:
        config = TrainConfig.from_dict(saved)
    except (TypeError, ValueError) as error:  # ConfigError is a ValueError
        raise runlog.RunError(
            f"{run_dir / runlog.CONFIG_FILE} is not a valid config: {error}"
        ) from None
    bad = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
    if bad:
        raise ConfigError(
            f"--resume continues a run with its saved config; it cannot change {', '.join(bad)}."
        )
    # A bad override is the flag's fault, not config.json's: check it alone first.
    dataclasses.replace(TrainConfig(), **overrides).validate()
    values = {**config.to_dict(), **overrides, "resume": str(run_dir), "run_dir": str(run_dir)}
    try:
        return TrainConfig.from_dict(values).validate()
    except ConfigError as error:
        raise runlog.RunError(
            f"{run_dir / runlog.CONFIG_FILE} is not a valid config: {error}"
        ) from None


def apply_process_settings(config: TrainConfig) -> None:
    """The run's process-wide settings: torch's CPU threads and flush-to-zero of subnormals.

    Subnormal floats: in a real run many gradients are tiny and Adam's second moments decay
    below 1.2e-38, where x86 CPUs compute several times slower; values that small change
    nothing that Adam or the TD targets can see, so by default they are flushed to zero.
    """
    torch.set_num_threads(config.torch_threads)
    torch.set_flush_denormal(config.flush_denormal)


def check_device(device: str) -> None:
    """ConfigError unless ``device`` exists on this machine ('cpu' and 'auto' always do)."""
    if device in ("cpu", "auto"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device}: this machine has no CUDA device that torch can use; "
            "use --device cpu or auto."
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"numbered from 0."
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_estimates(
    config: TrainConfig, env: gym.Env, q_network: Any = None
) -> list[tuple[str, str, int]]:
    """What the run will allocate, as (flag and value, what, bytes), before allocating it.

    Upper bounds where the size depends on the run: the tabular Q table stores one entry per
    (state, goal) pair updated, at most 1 + k per env step and never more than states x goals.
    """
    space = env.observation_space
    obs_bytes = _item_bytes(space["observation"])
    goal_bytes = _item_bytes(space["desired_goal"])
    # obs, next_obs, goal, next achieved goal; action, reward, flags, episode bounds.
    per_transition = 2 * obs_bytes + 2 * goal_bytes + 8 + 4 + 2 + 16
    estimates = [
        (
            f"--buffer-size {config.buffer_size}",
            f"the replay buffer ({per_transition} bytes a transition)",
            config.buffer_size * per_transition,
        )
    ]
    relabels = config.her_k if config.her != "none" else 0
    if config.agent == "tabular":
        if not isinstance(space["observation"], spaces.Discrete):
            return estimates  # make_agent refuses it
        # episode_relabels(): k rows per step of an episode (obs, goal, action, reward, ...).
        per_row = 2 * obs_bytes + goal_bytes + 8 + 4 + 4 + 1
        estimates.append(
            (
                f"--her-k {config.her_k}",
                f"the HER relabels of one episode ({per_row} bytes a row)",
                relabels * config.max_episode_steps * per_row,
            )
        )
        episodes, steps = config.run_length
        budget = min(
            steps if steps is not None else math.inf,
            config.max_episode_steps * episodes if episodes is not None else math.inf,
        )
        length = f"--total-steps {steps}" if budget == steps else f"--episodes {episodes}"
        n_states = int(space["observation"].n)
        n_goals = int(getattr(space["desired_goal"], "n", n_states))
        entries = int(min(budget * (1 + relabels), n_states * n_goals))
        per_entry = TabularAgent.bytes_per_entry(int(env.action_space.n))
        estimates.append(
            (
                f"--agent tabular with {length} and --her-k {config.her_k}",
                f"the Q table (up to {entries:,} (state, goal) entries x {per_entry} bytes)",
                entries * per_entry,
            )
        )
    elif q_network is None:
        n_in = _input_size(space["observation"]) + _input_size(space["desired_goal"])
        sizes = [n_in, *config.hidden_sizes, int(env.action_space.n)]
        n_params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))
        hidden = " ".join(map(str, config.hidden_sizes))
        # weights, target network, gradients and Adam's two moments, float32.
        estimates.append(
            (f"--hidden-sizes {hidden}", f"the Q-network ({n_params:,} weights)", 20 * n_params)
        )
        # activations and their gradients for the online and target networks, float32.
        per_sample = 4 * 4 * sum(sizes[1:]) + per_transition
        estimates.append(
            (f"--batch-size {config.batch_size}", "one minibatch", config.batch_size * per_sample)
        )
    if config.agent == "dqn" and config.n_step > 1:
        # The HER buffer's n-step windows: (batch, n) positions, slots, rewards, flags and
        # relabelled goals per minibatch, and its own (n,) offsets and powers of gamma.
        per_step = 8 + 8 + 8 + 4 + 4 + 1 + 1 + 1 + goal_bytes
        estimates.append(
            (
                f"--n-step {config.n_step} with --batch-size {config.batch_size}",
                f"the n-step windows of one minibatch ({per_step} bytes a step of a row)",
                (config.batch_size * per_step + 12) * config.n_step,
            )
        )
    return estimates


def check_memory(config: TrainConfig, env: gym.Env, q_network: Any = None) -> None:
    """ConfigError naming the flag when an allocation of the run cannot fit in memory."""
    available = available_memory()
    if available is None:
        return
    for flags, what, size in memory_estimates(config, env, q_network):
        if size > available:
            raise ConfigError(
                f"{flags}: {what} would need about {_gigabytes(size)}, more than the "
                f"{_gigabytes(available)} of memory available."
            )


def _gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.2f} GB"


def _item_bytes(space: spaces.Space) -> int:
    return 8 if isinstance(space, spaces.Discrete) else int(np.prod(space.shape))


def _input_size(space: spaces.Space) -> int:
    return int(space.n) if isinstance(space, spaces.Discrete) else int(np.prod(space.shape))


def portable_maze_spec(spec: str) -> str:
    """The maze spec to save with a run: a file's absolute path (so that the run resumes from
    any working directory); built-in names and generator specs as they are."""
    if spec.startswith(GENERATED_PREFIX) or spec in BUILTIN_MAZES:
        return spec
    return str(Path(spec).resolve())


def make_env(config: TrainConfig) -> GridMazeEnv:
    """The maze env a config describes."""
    return GridMazeEnv(
        load_maze(config.maze),
        max_episode_steps=config.max_episode_steps,
        slip=config.slip,
        random_start=config.random_start,
        random_goal=config.random_goal,
    )


def make_agent(
    config: TrainConfig,
    env: gym.Env,
    seed: int,
    q_network: torch.nn.Module | Callable[..., torch.nn.Module] | None = None,
) -> Agent:
    """The learner a config describes, sized for ``env``'s spaces."""
    observation_space = env.observation_space["observation"]
    goal_space = env.observation_space["desired_goal"]
    n_actions = int(env.action_space.n)
    if config.agent == "tabular":
        if not isinstance(observation_space, spaces.Discrete):
            raise ConfigError("--agent tabular needs a Discrete observation space; use dqn.")
        return TabularAgent(
            int(observation_space.n),
            n_actions,
            alpha=config.alpha,
            gamma=config.discount,
            seed=seed,
        )
    return DQNAgent(
        observation_space,
        goal_space,
        n_actions,
        q_network=q_network,
        hidden_sizes=config.hidden_sizes,
        learning_rate=config.learning_rate,
        lr_scheduler=_lr_decay(config.lr_half_life),
        gamma=config.discount,
        loss=LOSSES[config.loss],
        batch_size=config.batch_size,
        learning_starts=config.learning_starts,
        train_freq=config.train_freq,
        target_update_interval=config.target_update_interval,
        tau=config.tau,
        double_dqn=config.double_dqn,
        max_grad_norm=config.max_grad_norm,
        target_range=_return_range(env, config.step_reward, config.discount)
        if config.clip_target
        else None,
        device=config.device,
        seed=seed,
        fast_path=config.fast_path,
    )


def _lr_decay(half_life: int) -> Callable[[torch.optim.Optimizer], Any] | None:
    """``lr_half_life``'s scheduler factory: lr_t = lr 0.5^(t / half_life), stepped per update."""
    if half_life <= 0:
        return None
    factor = 0.5 ** (1.0 / half_life)
    return lambda optimizer: torch.optim.lr_scheduler.ExponentialLR(optimizer, factor)


def _return_range(
    env: gym.Env, step_reward: float = 0.0, gamma: float = 1.0
) -> tuple[float, float] | None:
    """(lowest, highest) return of an episode of the maze env, None for any other env.

    Every nonzero reward of the maze (the goal's, a decoy's, a blocked move's when it is set)
    ends the episode, so a return is 0 or one of them: [0, 1] with the default rewards. A step
    reward c <= 0 on every step adds between c / (1 - gamma) (never ending) and c (ending at
    once): [-1 / (1 - gamma), 0] for c = -1 with the default rewards.
    """
    maze = env.unwrapped
    if not isinstance(maze, GridMazeEnv):
        return None
    rewards = [0.0, float(maze.goal_reward), float(maze.decoy_reward)]
    if maze.wall_reward is not None:
        rewards.append(float(maze.wall_reward))
    if step_reward == 0.0:
        return min(rewards), max(rewards)
    low = -math.inf if gamma >= 1.0 else step_reward / (1.0 - gamma) + min(rewards)
    return low, max(0.0, step_reward + max(rewards))


def _n_step_settings(config: TrainConfig) -> dict[str, Any]:
    """The HER buffer's settings for the DQN's targets: n-step returns and the step reward.

    With n_step 1 the buffer hands out plain 1-step batches (no discount column).
    """
    if config.agent != "dqn":
        return {}
    gamma = config.discount if config.n_step > 1 else None
    return {"n_step": config.n_step, "gamma": gamma, "step_reward": config.step_reward}


def evaluate(agent: Agent, env: gym.Env, n_episodes: int, seed: int) -> tuple[float, float]:
    """Greedy (epsilon 0) episodes; returns (success rate, mean episode length).

    It draws nothing from the training's random streams: the agent's tie-breaks use a
    generator seeded from ``seed`` (see ``evaluation_streams``).
    """
    with evaluation_streams(agent, seed):
        return _evaluate(agent, env, n_episodes, seed)


@contextlib.contextmanager
def evaluation_streams(agent: Any, seed: int) -> Iterator[None]:
    """While it lasts, each numpy Generator attribute of ``agent`` (the DQN's and the tabular
    learner's ``rng``) is replaced by one seeded from ``seed``; its torch.Generator and
    random.Random attributes and torch's global random state are put back after it. An
    evaluation so leaves the training's random streams as it found them: a run interrupted and
    resumed (or extended) plays the episodes an uninterrupted run plays.
    """
    attributes = getattr(agent, "__dict__", {})
    swapped = {k: v for k, v in attributes.items() if isinstance(v, np.random.Generator)}
    restored = [
        (value, value.get_state() if isinstance(value, torch.Generator) else value.getstate())
        for value in attributes.values()
        if isinstance(value, (torch.Generator, random.Random))
    ]
    torch_state = torch.get_rng_state()
    try:
        for index, name in enumerate(swapped):
            setattr(agent, name, np.random.default_rng([seed, index]))
        yield
    finally:
        for name, value in swapped.items():
            setattr(agent, name, value)
        for generator, state in restored:
            if isinstance(generator, torch.Generator):
                generator.set_state(state)
            else:
                generator.setstate(state)
        torch.set_rng_state(torch_state)


def _evaluate(agent: Agent, env: gym.Env, n_episodes: int, seed: int) -> tuple[float, float]:
    successes, lengths = 0, 0
    for index in range(n_episodes):
        obs, _ = env.reset(seed=seed if index == 0 else None)
        state, goal = obs["observation"], obs["desired_goal"]
        length, done = 0, False
        while not done:
            obs, _, terminated, truncated, info = env.step(agent.act(state, goal, 0.0))
            state, length = obs["observation"], length + 1
            done = terminated or truncated
        successes += bool(info.get("is_success", False))
        lengths += length
    return successes / n_episodes, lengths / n_episodes


class Trainer:
    """One run's parts; ``run()`` plays episodes until the budget, a callback or a Ctrl-C."""

    def __init__(
        self,
        config: TrainConfig,
        env: gym.Env | None = None,
        callbacks: Sequence[Callback] = (),
        q_network: torch.nn.Module | Callable[..., torch.nn.Module] | None = None,
    ) -> None:
        self._run_name_maze = config.maze
        self._reward_per_row = False  # see _compute_reward
        if env is None:
            config = dataclasses.replace(config, maze=portable_maze_spec(config.maze))
        self.config = config
        self.callbacks = list(callbacks)
        check_device(config.device)
        apply_process_settings(config)
        if env is not None:
            _check_maze_settings(config, env)
            # The run's episode limit holds for any env (its own limit may be shorter).
            env = gym.wrappers.TimeLimit(env, config.max_episode_steps)
        self.env = make_env(config) if env is None else env
        _check_spaces(self.env)
        self._check_n_step()
        check_memory(config, self.env, q_network)
        self.eval_env = make_env(config) if env is None else copy.deepcopy(env)
        seeds = np.random.SeedSequence(config.seed).generate_state(4)
        self.agent = make_agent(config, self.env, int(seeds[0]), q_network)
        if q_network is not None:
            _check_q_network(self.agent)  # type: ignore[arg-type]
        space = self.env.observation_space
        self.buffer = HerReplayBuffer(
            config.buffer_size,
            self._compute_reward,
            strategy=config.her,
            k=config.her_k,
            obs_shape=_shape(space["observation"]),
            goal_shape=_shape(space["desired_goal"]),
            obs_dtype=_dtype(space["observation"]),
            goal_dtype=_dtype(space["desired_goal"]),
            rng=np.random.default_rng(seeds[1]),
            # The DQN's batches carry n-step sums and their bootstrap discounts (her.py).
            **_n_step_settings(config),
        )
        # The exploration after the guided walk: the config's, or by default 'directed' where
        # it applies (Smart Start, goals that are states), the paper's epsilon-greedy elsewhere.
        directed_applies = config.smart_start and self._goals_are_states()
        self.exploration = config.explore or ("directed" if directed_applies else "epsilon")
        self.controller = self._make_controller(np.random.default_rng(seeds[2]))
        self.model_values = self._make_model_values()
        self._random_until_goal = (
            config.agent == "dqn"
            and config.random_until_goal
            and self.controller is not None
            and self._goals_are_states()
        )
        self._explorer: Callable[[Any], int] | None = None
        if self.exploration != "epsilon":
            if not self._goals_are_states():
                raise ConfigError(
                    f"--explore {self.exploration} explores while the episode's goal was never "
                    "reached; it needs an env whose goals are its Discrete states (the maze); "
                    "use --explore epsilon."
                )
            self._random_until_goal = True
            self._explorer = self._ucb1_action
        # The count bonus reads Smart Start's count model, or one of its own without it.
        self.counts = (
            CountModel(int(self.env.action_space.n))
            if config.count_bonus > 0 and self.controller is None
            else None
        )
        if config.agent == "dqn":
            self.epsilon = LinearSchedule(
                config.epsilon_start, config.epsilon_end, config.epsilon_decay_steps
            )
        else:
            self.epsilon = LinearSchedule(config.tabular_epsilon, config.tabular_epsilon, 1)
        self.maze = getattr(self.env.unwrapped, "maze", None)
        self.visits = np.zeros(self.maze.n_cells, dtype=np.int64) if self.maze else None
        self._shortest = shortest_path_length(self.maze) if self.maze else None
        self.goal_reach = self._make_goal_reach()
        self.progress = runlog.Progress()
        self._env_seed = int(seeds[3])
        self._last_report: SmartStartReport | None = None
        # The state before the last episode, when the step budget cut that episode short.
        self._cut_before: dict[str, Any] | None = None
        self._open_run_dir()

    # --- set-up ---------------------------------------------------------------------------

    def _check_n_step(self) -> None:
        """ConfigError when the DQN's n-step window is longer than an episode can be."""
        config, cap = self.config, self._episode_cap()
        if config.agent == "dqn" and config.n_step > cap:
            raise ConfigError(
                f"--n-step {config.n_step} is longer than an episode of this env can be "
                f"({cap} steps: --max-episode-steps or the env's own limit); an n-step window "
                "never spans two episodes."
            )

    def _compute_reward(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        """The env's rewards for a batch of (achieved, desired) goals, shape (batch,).

        An env whose ``compute_reward`` returns another shape for a batch (SB3's
        BitFlippingEnv with ``discrete_obs_space`` reads a batch of Discrete goals as one goal)
        is called once per row instead, with each row as the env's observations hold it.
        """
        compute = self.env.unwrapped.compute_reward
        if not self._reward_per_row:
            reward = np.asarray(compute(achieved, desired, None))
            if reward.shape == (len(achieved),):
                return reward
            self._reward_per_row = True
        return np.array(
            [
                np.asarray(compute(_row(a), _row(d), None)).reshape(-1)[0]
                for a, d in zip(achieved, desired, strict=True)
            ],
            dtype=np.float32,
        )

    def _make_controller(self, rng: np.random.Generator) -> SmartStartController | None:
        config = self.config
        if not config.smart_start:
            return None
        distance: Callable[[Any, Any], float] | None = getattr(self.env.unwrapped, "distance", None)
        if config.theta > 0 and distance is None:
            raise ConfigError("--theta > 0 needs an env with a distance(a, b) method.")
        return SmartStartController(
            int(self.env.action_space.n),
            eta=config.eta,
            c_ss=config.c_ss,
            theta=config.theta,
            distance=distance,
            ucb_form=config.ucb_form,
            ss_value=config.eq1_value,
            replan=config.replan,
            # Eq. 1 over the frontier: ss_frontier, or by default with 'directed'
            frontier=self.exploration == "directed"
            if config.ss_frontier is None
            else config.ss_frontier,
            rng=rng,
        )

    def _goals_are_states(self) -> bool:
        """Whether the env's goals are its Discrete states (the maze's cells)."""
        space = self.env.observation_space
        goal, state = space["desired_goal"], space["observation"]
        return isinstance(goal, spaces.Discrete) and goal == state

    def _make_model_values(self) -> ModelGoalValues | None:
        """Smart Start's count-model values for the DQN's targets (``model_values``), or None
        where it does not apply (another learner, no Smart Start, goals that are not states)."""
        config = self.config
        if not (
            config.agent == "dqn"
            and config.model_values != "off"
            and self.controller is not None
            and self._goals_are_states()
        ):
            return None
        state_space = self.env.observation_space["observation"]
        modes = f"--model-values {config.model_values}"
        if not config.discount < 1.0:
            raise ConfigError(
                f"--gamma {config.discount} with {modes}: the count model's values need gamma "
                "below 1; set --gamma below 1 or --model-values off."
            )
        # The env's rewards as the learner sees them (step_reward added): on arrival at the goal,
        # and on every other move (the maze pays 1 and 0; an env that pays -1 per step, 0 and -1).
        first = int(state_space.start)
        goal = np.array([first])
        goal_reward = getattr(self.env.unwrapped, "goal_reward", None)
        if goal_reward is None:  # another env: the reward of achieving a goal, as it computes it
            goal_reward = float(self._compute_reward(goal, goal)[0])
        move_reward = 0.0
        if int(state_space.n) > 1 and not isinstance(self.env.unwrapped, GridMazeEnv):
            move_reward = float(self._compute_reward(np.array([first + 1]), goal)[0])
        arrival, move = float(goal_reward) + config.step_reward, move_reward + config.step_reward
        if not arrival > move / (1.0 - config.discount):
            raise ConfigError(
                f"--step-reward {config.step_reward} with {modes}: this env pays {goal_reward:g} "
                f"on arrival and {move_reward:g} on other moves, so reaching a goal pays no "
                "more than never reaching it and the count model's values cannot guide the "
                "learner; set --step-reward below 0 or --model-values off."
            )
        values = ModelGoalValues(
            self.controller.model,
            int(state_space.start + state_space.n),
            config.discount,
            goal_reward=arrival,
            step_reward=move,
            goals=config.model_goals,
        )
        self.agent.model_values = values  # type: ignore[attr-defined]
        self.agent.model_mode = config.model_values  # type: ignore[attr-defined]
        self.agent.model_loss = config.model_loss  # type: ignore[attr-defined]
        return values

    def _make_goal_reach(self) -> GoalReach | None:
        """Goal reach (``eval_goals``) where the env allows it: goals that are its Discrete
        states and a record of the visited ones (the maze's visit counts or the count model)."""
        config = self.config
        applies = self._goals_are_states() and (
            self.visits is not None or self.controller is not None
        )
        n_goals = config.eval_goals
        if n_goals is None:
            n_goals = DEFAULT_EVAL_GOALS if applies else 0
        if n_goals == 0:
            return None
        if not applies:
            raise ConfigError(
                f"--eval-goals {n_goals}: goal reach needs an env whose goals are its Discrete "
                "states and a record of the visited ones (the maze, or Smart Start's count "
                "model); use --eval-goals 0."
            )
        unwrapped = self.env.unwrapped
        start = None if getattr(unwrapped, "random_start", True) else unwrapped.start
        self._walks = walk_stepper(self.eval_env, n_goals)
        return GoalReach(
            n_goals,
            int(self.env.observation_space["observation"].n),
            config.seed,
            None if start is None else int(start),
            maze_distances(self.maze) if self.maze is not None else None,
        )

    def _visited(self) -> np.ndarray:
        """The states the run has visited (goal reach draws its goals from them)."""
        if self.visits is not None:
            return np.flatnonzero(self.visits)
        return np.asarray(self.controller.model.observations(), dtype=np.int64)  # type: ignore[union-attr]

    def _explore_at_random(self, goal: Any) -> bool:
        """``random_until_goal`` (or ``explore`` other than 'epsilon'): True while the episode's
        goal has never been reached."""
        return self.controller.model.index(goal) is None  # type: ignore[union-attr]

    def _ucb1_action(self, state: Any) -> int:
        """``explore`` 'ucb1': UCB1 over Smart Start's C(s, a), untried actions first; with
        'directed', a state with no untried action left starts a guided walk to the nearest
        frontier state instead (Smart Start again, mid-episode)."""
        controller = self.controller
        assert controller is not None  # validate() refuses ucb1 without Smart Start
        counts = controller.model.action_counts(state)
        directed = self.exploration == "directed"
        if directed and min(counts) > 0 and controller.walk_to_frontier(state):
            action = controller.act(state)
            if action is not None:
                return action
        return ucb1_action(counts, controller.rng)

    def _maze_digest(self) -> str | None:
        """SHA-256 of the maze's layout (None for another env): a resume refuses a changed maze."""
        if self.maze is None:
            return None
        return hashlib.sha256(maze_to_text(self.maze).encode()).hexdigest()

    def _parts(self) -> dict[str, Any]:
        """What a checkpoint holds the state of, by name."""
        parts = {"agent": self.agent, "buffer": self.buffer, "controller": self.controller}
        if self.counts is not None:  # the count bonus's own model (no Smart Start)
            parts["counts"] = self.counts
        if self.model_values is not None:  # its distance cache and search schedule
            parts["model_values"] = self.model_values
        return parts

    def _open_run_dir(self) -> None:
        """Lock the run directory (before anything in it is read or written), then resume
        from it or start it."""
        config = self.config
        if config.resume:
            self.run_dir = Path(config.resume)
            self._lock = runlog.lock_run_dir(self.run_dir)
        else:
            name = runlog.default_run_name(
                self._run_name_maze if self.maze else type(self.env.unwrapped).__name__,
                config.agent,
                config.her,
                config.smart_start,
                config.seed,
            )
            self.run_dir = runlog.create_run_dir(
                Path(config.run_dir) if config.run_dir else Path(config.runs_root) / name
            )
            self._lock = runlog.lock_run_dir(self.run_dir)
        try:
            runlog.remove_stale_temporary_files(self.run_dir)
            if config.resume:
                checkpoint = self.run_dir / runlog.CHECKPOINT_FILE
                if checkpoint.exists():
                    self._restore(runlog.load_checkpoint(checkpoint))
                episodes = self.run_dir / runlog.EPISODES_FILE
                runlog.EpisodeLog.keep_first(episodes, self.progress.episode)
            else:
                saved = {**config.to_dict(), "run_dir": str(self.run_dir), "resume": None}
                runlog.write_json(self.run_dir / runlog.CONFIG_FILE, saved)
            self.logger = runlog.RunLogger(
                self.run_dir,
                self.config.to_dict(),
                resumed_at=self.progress.env_steps if config.resume else None,
            )
        except BaseException:
            self._lock.close()
            raise

    def close(self) -> None:
        """Close the logs and release the run directory's lock (``run`` does it at its end)."""
        self.logger.close()
        self._lock.close()

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop: StopRequest | None = None) -> TrainResult:
        """Play episodes until the budget is spent, a callback stops it, or Ctrl-C.

        ``stop``: the Ctrl-C handler already installed by ``train`` (None: install one here).
        """
        if stop is None:
            with StopRequest() as stop:
                return self.run(stop)
        try:
            return self._run(stop)
        finally:
            self.close()

    def _run(self, stop: StopRequest) -> TrainResult:
        config, progress = self.config, self.progress
        max_episodes, max_steps = config.run_length
        by_episode = max_episodes is not None
        bar = tqdm(
            total=max_episodes if by_episode else max_steps,
            initial=progress.episode if by_episode else progress.env_steps,
            unit="ep" if by_episode else "step",
            disable=config.quiet or not sys.stderr.isatty(),
            dynamic_ncols=True,
        )
        started = time.perf_counter() - progress.wall_s
        try:
            while not (
                self.budget_spent()
                or stop.requested
                or self._callback_stop()
                or self.solved()
                or (config.stop_first_goal and progress.first_success_step is not None)
            ):
                steps_before = progress.env_steps
                step_limit = math.inf if max_steps is None else max_steps - steps_before
                # The step budget may cut this episode short: keep the state from before it, for
                # the final checkpoint, so that a resume with another step budget plays the
                # episode again, out to where one run of that budget ends it.
                before = copy.deepcopy(self._state()) if step_limit < self._episode_cap() else None
                result = play_episode(
                    self.env,
                    self.agent,
                    self.buffer,
                    env_steps=progress.env_steps,
                    epsilon=self.epsilon,
                    controller=self.controller,
                    episode=progress.episode,
                    step_limit=step_limit,
                    # The run's first episode seeds the env; a resumed run restored its
                    # random stream instead.
                    reset_seed=self._env_seed if progress.episode == 0 else None,
                    visits=self.visits,
                    explore_at_random=self._explore_at_random if self._random_until_goal else None,
                    explorer=self._explorer,
                    count_model=self.counts,
                    count_bonus=config.count_bonus,
                )
                progress.wall_s = time.perf_counter() - started
                self._cut_before = before if result.length >= step_limit else None
                self._end_episode(result)
                bar.update(1 if by_episode else progress.env_steps - steps_before)
                bar.set_postfix(self._postfix(), refresh=False)
        finally:
            bar.close()
        self.logger.log_scalars(progress, self._extra_scalars(), force=True)
        progress.wall_s = time.perf_counter() - started
        self.evaluate()
        self._write_images()
        interrupted = stop.requested and not self.budget_spent()
        summary = self._summary(interrupted)
        self.checkpoint(self._cut_before)
        runlog.write_json(self.run_dir / runlog.SUMMARY_FILE, summary)
        return TrainResult(self.run_dir, summary, self.agent, config, interrupted)

    def budget_spent(self) -> bool:
        """The configured number of episodes or env steps has been played."""
        max_episodes, max_steps = self.config.run_length
        progress = self.progress
        return (max_episodes is not None and progress.episode >= max_episodes) or (
            max_steps is not None and progress.env_steps >= max_steps
        )

    def solved(self) -> bool:
        """``stop_success`` is set and an evaluation has met it (see ``solves``)."""
        return self.config.stop_success is not None and self.progress.solved_step is not None

    def solves(self, success_rate: float, mean_length: float) -> bool:
        """Whether an evaluation meets ``stop_success`` (and ``stop_path_factor`` on a maze)."""
        config = self.config
        if config.stop_success is None or not success_rate >= config.stop_success:
            return False
        if config.stop_path_factor is None or self._shortest is None:
            return True
        return mean_length <= config.stop_path_factor * self._shortest

    def _callback_stop(self) -> bool:
        return any(callback.should_stop(self) for callback in self.callbacks)

    def _end_episode(self, result: EpisodeResult) -> None:
        """Count the episode, log it, and evaluate / draw / checkpoint when due."""
        config, progress = self.config, self.progress
        report = result.report
        if report is not None and report.used:
            self._last_report = report
        if self.model_values is not None:
            self.model_values.refresh(result.goal)
        progress.env_steps += result.length
        progress.n_updates += result.n_learned
        if result.first_success_step is not None and progress.first_success_step is None:
            progress.first_success_step = result.first_success_step
        progress.successes.append(float(result.success))
        progress.lengths.append(result.length)
        used = bool(report and report.used)
        row = {
            "episode": progress.episode,
            "env_steps": progress.env_steps,
            "return": result.episode_return,
            "length": result.length,
            "success": result.success,
            "smart_start": used,
            "ss_target": _target_label(report),
            "ss_target_count": report.target_count if used else "",
            "ss_plan_length": report.plan_length if used else "",
            "ss_steps": report.steps if report else 0,
            "ss_reached": bool(report and report.reached),
            "ss_target_distance": report.target_distance_to_goal if report else None,
            "epsilon": result.epsilon,
            "n_updates": progress.n_updates,
            "td_loss": result.td_loss,
            "wall_s": progress.wall_s,
            "report": report,
        }
        progress.episode += 1
        episode = progress.episode
        self.logger.log_episode(row, result.metrics)
        for callback in self.callbacks:
            callback.on_episode_end(self, row)
        if config.eval_interval and episode % config.eval_interval == 0:
            self.evaluate()
        self.logger.log_scalars(progress, self._extra_scalars(), force=False)
        if config.image_interval and episode % config.image_interval == 0:
            self._write_images()
        if episode % config.checkpoint_interval == 0:
            # A resume starts from here: nothing pending, the curves on disk before the state.
            self.logger.log_scalars(progress, self._extra_scalars(), force=True)
            self.logger.flush()
            self.checkpoint()
            runlog.write_json(self.run_dir / runlog.SUMMARY_FILE, self._summary(False))

    def _extra_scalars(self) -> dict[str, float]:
        extra = {"her/buffer_size": float(len(self.buffer))}
        if self.controller is not None:
            extra["smart_start/visited_states"] = float(self.controller.model.n_states)
        if self.config.agent == "tabular" and self.config.her != "none":
            # The tabular learner sees k relabels per real transition.
            extra["her/relabelled_fraction"] = self.config.her_k / (self.config.her_k + 1)
        return extra

    # --- evaluation and dashboards --------------------------------------------------------

    def evaluate(self) -> tuple[float, float]:
        """Greedy evaluation now (``eval_episodes`` episodes); logged, kept in the progress,
        and passed to the callbacks. Returns (success rate, mean length)."""
        progress = self.progress
        rate, length = evaluate(
            self.agent,
            self.eval_env,
            self.config.eval_episodes,
            _derived_seed(self.config, progress.episode),
        )
        progress.eval_success_rate, progress.eval_mean_length = rate, length
        if progress.solved_step is None and self.solves(rate, length):
            progress.solved_step = progress.env_steps
        self.logger.log_evaluation(rate, length, progress.env_steps)
        if self.goal_reach is not None:
            began = time.perf_counter()
            report = self.goal_reach.evaluate(
                self.agent,
                self._walks,
                self._visited(),
                np.random.default_rng([_derived_seed(self.config, progress.episode), 20]),
                self.controller.model if self.controller is not None else None,
            )
            row = report.row()
            progress.goals_success, progress.goals_excess = (
                row["goals_success"],
                row["goals_excess"],
            )
            self.logger.log_goal_reach(report.scalars(), progress.env_steps)
            progress.goal_reach_s += time.perf_counter() - began
        for callback in self.callbacks:
            callback.on_evaluation(self, rate, length)
        return rate, length

    def _write_images(self) -> None:
        if self.maze is None:
            return
        maze, report = self.maze, self._last_report
        target = path = None
        if report is not None and self.controller is not None:
            target = self.controller.target_observation
            path = self.controller.planned_path
        goal = maze.cell_index(*maze.goal)
        self.logger.log_maze_images(
            maze,
            self.visits,
            self.agent.q_values(np.arange(maze.n_cells), goal),
            self.progress.env_steps,
            target=None if target is None else int(target),
            path=[int(cell) for cell in path or ()],
        )
        next_cell = getattr(self.env.unwrapped, "next_cell", None)
        if self.goal_reach is not None and next_cell is not None:
            began = time.perf_counter()
            start = maze.cell_index(*maze.start)  # random starts too: the maze's own start
            free = np.flatnonzero(~maze.walls.ravel())
            # At most MAX_IMAGE_WALKS cells, the first in the run's goal order (big mazes).
            cells = free[np.argsort(self.goal_reach.goal_rank[free])][:MAX_IMAGE_WALKS]
            rng = np.random.default_rng([_derived_seed(self.config, self.progress.episode), 21])
            moves, shortest = reach_from_start(
                self.agent, maze, next_cell, start, rng, cells, self.goal_reach.shortest
            )
            self.logger.log_goal_reach_image(maze, moves, shortest, start, self.progress.env_steps)
            self.progress.goal_reach_s += time.perf_counter() - began

    def _postfix(self) -> dict[str, str]:
        progress = self.progress
        return {
            "episodes": str(progress.episode),
            "steps": str(progress.env_steps),
            "success": f"{progress.success_rate:.2f}",
            "eps": f"{self.epsilon(progress.env_steps):.2f}",
        }

    def _summary(self, interrupted: bool) -> dict[str, Any]:
        progress = self.progress
        return {
            "episodes": progress.episode,
            "env_steps": progress.env_steps,
            "first_success_step": progress.first_success_step,
            "success_rate_last_100": progress.success_rate,
            "mean_length_last_100": progress.mean_length,
            "eval_success_rate": progress.eval_success_rate,
            "eval_mean_length": progress.eval_mean_length,
            "solved_step": progress.solved_step,
            "goals_success": progress.goals_success,
            "goals_excess": progress.goals_excess,
            "goal_reach_s": round(progress.goal_reach_s, 3),
            "n_updates": progress.n_updates,
            "wall_s": round(progress.wall_s, 3),
            "sps": round(progress.env_steps / max(progress.wall_s, 1e-9), 1),
            "interrupted": interrupted,
            "run_dir": str(self.run_dir),
        }

    # --- checkpoints ----------------------------------------------------------------------

    def checkpoint(self, before_cut: dict[str, Any] | None = None) -> None:
        """Save everything a resume needs to checkpoint.pt (atomically): the run's state now,
        and ``before_cut``, the state before the last episode when the step budget cut it (a
        resume with another step budget continues from there: see ``_restore``)."""
        state = self._state()
        if before_cut is not None:
            state["before_cut"] = before_cut
        runlog.save_checkpoint(self.run_dir / runlog.CHECKPOINT_FILE, state)

    def _state(self) -> dict[str, Any]:
        """The run's state as a checkpoint holds it (its tensors and arrays are the live
        ones: copy it to keep it)."""
        state = runlog.run_state(
            self.config.to_dict(), self.progress, self._parts(), self.env, self.visits
        )
        state["maze_sha256"] = self._maze_digest()
        env_class = type(self.env.unwrapped)
        state["env"] = f"{env_class.__module__}.{env_class.__qualname__}"
        # The count model's values are recomputed on resume, for the goal they were last for.
        state["model_values_goal"] = self.model_values.goal if self.model_values else None
        return state

    def _episode_cap(self) -> int:
        """The most steps an episode can have: ``max_episode_steps`` (the maze's limit, and
        the TimeLimit around an env passed in), or the env's own limit where it is shorter."""
        limits = [
            self.config.max_episode_steps,
            getattr(self.env.unwrapped, "max_episode_steps", None),
            getattr(self.env.spec, "max_episode_steps", None),
        ]
        return min(limit for limit in limits if isinstance(limit, int) and limit > 0)

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            saved_config = TrainConfig.from_dict(state["config"])
            saved = saved_config.to_dict()
        except (KeyError, TypeError, ConfigError) as error:
            raise runlog.RunError(
                f"the checkpoint in {self.config.resume} has no valid config ({error})."
            ) from None
        mine = self.config.to_dict()
        ignored = (*RESUME_OVERRIDABLE, "run_dir")
        mismatched = [
            name for name, value in saved.items() if name not in ignored and value != mine[name]
        ]
        if mismatched:
            raise runlog.RunError(
                f"the checkpoint in {self.config.resume} was written with other settings "
                f"({', '.join(mismatched)})."
            )
        saved_env, resume = state.get("env", "its own env"), self.config.resume
        if state.get("maze_sha256") is None and self.maze is not None:
            raise runlog.RunError(
                f"the run in {resume} was trained on an env passed to train() ({saved_env}), "
                "not a maze; resume it from Python with the same env: "
                f"train(resume_config({str(resume)!r}), env=...)."
            )
        if state.get("maze_sha256") is not None and self.maze is None:
            raise runlog.RunError(
                f"the run in {resume} was trained on the maze {self.config.maze}, not on the "
                f"env passed to train(); resume it without env=, or with "
                f"python -m sshr_torch.train --resume {resume}."
            )
        if state.get("maze_sha256") != self._maze_digest():
            raise runlog.RunError(
                f"the maze {self.config.maze} is not the one the run in {self.config.resume} "
                "started with (its layout changed); put the original back or start a new run."
            )
        before_cut = state.get("before_cut")
        if isinstance(before_cut, dict) and saved_config.run_length[1] != self.config.run_length[1]:
            # Another step budget: the episode the old one cut is played again, to the new end.
            state = before_cut
        self.progress = runlog.restore_run_state(
            state, self._parts(), self.env, self.visits, str(self.config.resume)
        )
        self._check_budget_reaches(self.progress)
        goal = state.get("model_values_goal")
        if self.model_values is not None and isinstance(goal, int):
            self.model_values.refresh(goal)

    def _check_budget_reaches(self, progress: runlog.Progress) -> None:
        """RunError when a resume's budget ends before the checkpoint it resumes from (the
        episodes after the checkpoint can be played again; those before it cannot be undone)."""
        max_episodes, max_steps = self.config.run_length
        for name, budget, done, unit in (
            ("episodes", max_episodes, progress.episode, "episodes"),
            ("total-steps", max_steps, progress.env_steps, "env steps"),
        ):
            if budget is not None and budget < done:
                raise runlog.RunError(
                    f"--{name} {budget} ends before the last checkpoint of the run in "
                    f"{self.config.resume} (at {done} {unit}); a resume can shorten a run only "
                    "to a point after its last checkpoint."
                )


# Settings of the maze that make_env builds: an env passed to train() brings its own.
MAZE_SETTINGS = ("slip", "random_start", "random_goal")


def _check_maze_settings(config: TrainConfig, env: gym.Env) -> None:
    """ConfigError when a setting of the maze env is given with an env passed to train(): it
    would be recorded in config.json but not applied."""
    defaults = TrainConfig()
    given = [name for name in MAZE_SETTINGS if getattr(config, name) != getattr(defaults, name)]
    if config.stop_path_factor is not None and not isinstance(env.unwrapped, GridMazeEnv):
        given.append("stop_path_factor")  # it needs the maze's shortest path
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise ConfigError(
            f"{flags}: settings of the maze env, which an env passed to train() does not use; "
            "leave them out (configure the env itself)."
        )


def _check_q_network(agent: DQNAgent) -> None:
    """ConfigError unless the Q-network maps a batch of (state, goal) to finite float32
    Q-values of shape (B, n_actions); checked on two rows of the spaces' first values."""
    states = np.zeros((2, *agent.obs_spec.shape), dtype=np.int64)
    goals = np.zeros((2, *agent.goal_spec.shape), dtype=np.int64)
    wanted = f"a finite float32 tensor of shape (B, n_actions) = (2, {agent.n_actions})"
    torch_state = torch.get_rng_state()  # a network that draws (dropout) draws nothing here
    try:
        with torch.no_grad():
            q = agent.q_network(
                agent.tensors(states, agent.obs_spec), agent.tensors(goals, agent.goal_spec)
            )
    except Exception as error:  # any failure of a user's network, named in one line
        raise ConfigError(
            f"q_network: forward(state, goal) on a batch of 2 failed ({type(error).__name__}: "
            f"{error}); it must return {wanted}."
        ) from None
    finally:
        torch.set_rng_state(torch_state)
    if not isinstance(q, torch.Tensor):
        got = type(q).__name__
    elif tuple(q.shape) != (2, agent.n_actions):
        got = f"shape {tuple(q.shape)}"
    elif q.dtype != torch.float32:
        got = f"dtype {q.dtype}"
    elif not bool(torch.isfinite(q).all()):
        got = "values that are not finite (NaN or inf)"
    else:
        return
    raise ConfigError(f"q_network: forward(state, goal) returned {got}; it must return {wanted}.")


def _check_spaces(env: gym.Env) -> None:
    """ConfigError unless ``env`` is a goal-env with Discrete / MultiBinary parts."""
    space = env.observation_space
    keys = ("observation", "achieved_goal", "desired_goal")
    if not isinstance(space, spaces.Dict) or not set(keys) <= set(space.spaces):
        raise ConfigError(
            "the env must follow the goal-env convention: a Dict observation with "
            "observation, achieved_goal and desired_goal."
        )
    for key in keys:
        if not isinstance(space[key], (spaces.Discrete, spaces.MultiBinary)):
            raise ConfigError(
                f"observation['{key}'] is {type(space[key]).__name__}; only Discrete and "
                "MultiBinary spaces are supported."
            )
    if not isinstance(env.action_space, spaces.Discrete):
        raise ConfigError("the env's action space must be Discrete.")


def _shape(space: spaces.Space) -> tuple[int, ...]:
    return () if isinstance(space, spaces.Discrete) else (int(np.prod(space.shape)),)


def _dtype(space: spaces.Space) -> type:
    return np.int64 if isinstance(space, spaces.Discrete) else np.uint8


def _row(value: np.ndarray) -> Any:
    """One goal of a batch as an env's observation holds it: a Discrete one as a Python int."""
    return int(value) if np.ndim(value) == 0 else value


def _target_label(report: SmartStartReport | None) -> Any:
    if report is None or not report.used or report.target is None:
        return ""
    target = report.target
    return target.hex() if isinstance(target, bytes) else int(target)


def _derived_seed(config: TrainConfig, episode: int) -> int:
    digest = hashlib.sha256(f"eval:{config.seed}:{episode}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
