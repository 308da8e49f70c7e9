"""The parts a config describes: the env, the learner, the replay buffer.

``make_env`` builds any env a config names: the maze (``--maze``, the default) or a gymnasium
id (``--env``): a registered id, the ``module:Env-v0`` form that imports the registering
module, or a MiniGrid id ("MiniGrid-..." / "BabyAI-..."), built by
``sshr_torch.minigrid.make_minigrid`` (the optional extra ``sshr_torch[minigrid]``, imported
only for those ids). Every entry point (the command line, a sweep's local processes and its
Ray trials) builds its env here, so they all build the same envs.

Nothing here changes the process (threads, seeds): that is the run's (``resources``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from sshr_torch import protocol
from sshr_torch.agents import Agent, DQNAgent, TabularAgent
from sshr_torch.agents.networks import DistanceQNetwork, InputSpec
from sshr_torch.config import MAZE_FIELDS, ConfigError, TrainConfig
from sshr_torch.env import GridMazeEnv
from sshr_torch.her import HerReplayBuffer
from sshr_torch.maze import BUILTIN_MAZES, GENERATED_PREFIX, load_maze
from sshr_torch.smart_start import ModelGoalValues

__all__ = [
    "LOSSES",
    "MINIGRID_PREFIXES",
    "check_env_settings",
    "check_q_network",
    "check_spaces",
    "env_name",
    "make_agent",
    "make_buffer",
    "make_env",
    "portable_maze_spec",
]

LOSSES = {"huber": torch.nn.functional.smooth_l1_loss, "mse": torch.nn.functional.mse_loss}
#: Env ids built by the MiniGrid wrapper (``sshr_torch.minigrid.make_minigrid``).
MINIGRID_PREFIXES = ("MiniGrid-", "BabyAI-")
MINIGRID_INSTALL = "pip install 'sshr_torch[minigrid]'"


def make_env(config: TrainConfig) -> gym.Env:
    """The env a config names: the maze of ``config.maze`` where ``config.env`` is unset, else
    the gymnasium id ``config.env`` with ``config.env_kwargs``, under a TimeLimit of
    ``config.max_episode_steps`` (its own limit holds where shorter). ConfigError in one line
    for an id that cannot be built."""
    if config.env is None:
        return GridMazeEnv(
            load_maze(config.maze),
            max_episode_steps=config.max_episode_steps,
            slip=config.slip,
            random_start=config.random_start,
            random_goal=config.random_goal,
        )
    env_id, kwargs = config.env, dict(config.env_kwargs)
    if env_id.startswith(MINIGRID_PREFIXES):
        env = _make_minigrid(
            env_id, config.seed if config.env_seed is None else config.env_seed, kwargs
        )
    else:
        try:
            env = gym.make(env_id, **kwargs)
        except Exception as error:  # an unknown id, an unimportable module, bad kwargs
            raise ConfigError(
                f"--env {env_id}: gymnasium cannot make it ({type(error).__name__}: "
                f"{_first_line(error)})."
            ) from None
    return gym.wrappers.TimeLimit(env, config.max_episode_steps)


def _make_minigrid(env_id: str, env_seed: int, kwargs: dict[str, Any]) -> gym.Env:
    """A MiniGrid id through the wrapper module, imported here only (an optional extra)."""
    try:
        module = importlib.import_module("sshr_torch.minigrid")
    except ImportError as error:
        raise ConfigError(
            f"--env {env_id}: MiniGrid envs need the optional extra ({MINIGRID_INSTALL}); "
            f"importing sshr_torch.minigrid failed ({_first_line(error)})."
        ) from None
    make_minigrid = getattr(module, "make_minigrid", None)
    if make_minigrid is None:
        raise ConfigError(f"--env {env_id}: sshr_torch.minigrid has no make_minigrid().")
    try:
        return make_minigrid(env_id, env_seed, **kwargs)
    except ConfigError:
        raise
    except Exception as error:  # an unknown MiniGrid id, bad kwargs
        raise ConfigError(
            f"--env {env_id}: the MiniGrid wrapper cannot make it ({type(error).__name__}: "
            f"{_first_line(error)})."
        ) from None


def _first_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def env_name(config: TrainConfig) -> str:
    """What the run is on, for run names: the env id, or the maze spec."""
    return config.env if config.env is not None else config.maze


def portable_maze_spec(spec: str) -> str:
    """The maze spec to save with a run: a file's absolute path (so that the run resumes from
    any working directory); built-in names and generator specs as they are."""
    if spec.startswith(GENERATED_PREFIX) or spec in BUILTIN_MAZES:
        return spec
    return str(Path(spec).resolve())


def make_agent(
    config: TrainConfig,
    env: gym.Env,
    seed: int,
    q_network: torch.nn.Module | Callable[..., torch.nn.Module] | None = None,
    model_values: ModelGoalValues | None = None,
) -> Agent:
    """The learner a config describes, sized for ``env``'s spaces; the DQN gets the count
    model's ``model_values`` (``config.model_values``) at construction."""
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
    target_range = None
    return_range = protocol.method(env, protocol.RETURN_RANGE)
    if config.clip_target and return_range is not None:
        low, high = return_range(config.step_reward, config.discount)
        target_range = (float(low), float(high))
    model_mode = (
        {}
        if model_values is None
        else {"model_mode": config.model_values, "model_loss": config.q_fit}
    )
    if config.all_actions:  # every action's target in 'q' mode's loss
        model_mode = {"model_loss": config.q_fit}
    if q_network is None and config.q_head == "distance":
        q_network = distance_network(config.hidden_sizes[0], seed)
    return DQNAgent(
        observation_space,
        goal_space,
        n_actions,
        q_network=q_network,
        hidden_sizes=config.hidden_sizes,
        learning_rate=config.learning_rate,
        lr_scheduler=lr_decay(config.lr_half_life),
        gamma=config.discount,
        loss=LOSSES[config.loss],
        batch_size=config.batch_size,
        learning_starts=config.learning_starts,
        train_freq=config.train_freq,
        target_update_interval=config.target_update_interval,
        tau=config.tau,
        double_dqn=config.double_dqn,
        advantage_alpha=config.advantage_alpha,
        max_grad_norm=config.max_grad_norm,
        target_range=target_range,
        device=config.device,
        seed=seed,
        fast_path=config.fast_path,
        model_values=model_values,
        **model_mode,
    )


def lr_decay(half_life: int) -> Callable[[torch.optim.Optimizer], Any] | None:
    """``lr_half_life``'s scheduler factory: lr_t = lr 0.5^(t / half_life), stepped per update
    (None: a constant rate)."""
    if half_life <= 0:
        return None
    factor = 0.5 ** (1.0 / half_life)
    return lambda optimizer: torch.optim.lr_scheduler.ExponentialLR(optimizer, factor)


def make_buffer(
    config: TrainConfig,
    env: gym.Env,
    compute_reward: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rng: np.random.Generator,
) -> HerReplayBuffer:
    """The HER replay buffer a config describes, storing ``env``'s observations and goals."""
    space = env.observation_space
    return HerReplayBuffer(
        config.buffer_size,
        compute_reward,
        strategy=config.her,
        k=config.her_k,
        obs_shape=storage_shape(space["observation"]),
        goal_shape=storage_shape(space["desired_goal"]),
        obs_dtype=storage_dtype(space["observation"]),
        goal_dtype=storage_dtype(space["desired_goal"]),
        rng=rng,
        # The DQN's batches carry n-step sums and their bootstrap discounts (her.py).
        **n_step_settings(config),
    )


def n_step_settings(config: TrainConfig) -> dict[str, Any]:
    """The HER buffer's settings for the DQN's targets: n-step returns, the step reward and
    the value of an end without the goal (``failure_tail``).

    With n_step 1 the buffer hands out plain 1-step batches (no discount column).
    """
    if config.agent != "dqn":
        return {}
    gamma = config.discount if config.n_step > 1 else None
    # An end without the goal (a decoy, lava) is worth never reaching it: c / (1 - gamma).
    failure_tail = 0.0
    if config.step_reward and config.discount < 1.0:
        failure_tail = config.discount * config.step_reward / (1.0 - config.discount)
    return {
        "n_step": config.n_step,
        "gamma": gamma,
        "step_reward": config.step_reward,
        "failure_tail": failure_tail,
        "cut_off_policy": config.n_step_cut,
        "off_policy_weight": config.off_policy_weight,
        "priority_alpha": config.priority_alpha,
    }


def storage_shape(space: spaces.Space) -> tuple[int, ...]:
    """The shape one observation or goal of ``space`` is stored with: () for a Discrete id."""
    return () if isinstance(space, spaces.Discrete) else (int(np.prod(space.shape)),)


def storage_dtype(space: spaces.Space) -> type:
    """The dtype one observation or goal of ``space`` is stored with."""
    return np.int64 if isinstance(space, spaces.Discrete) else np.uint8


def item_bytes(space: spaces.Space) -> int:
    """Bytes one observation or goal of ``space`` takes in the replay buffer."""
    return 8 if isinstance(space, spaces.Discrete) else int(np.prod(space.shape))


def input_size(space: spaces.Space) -> int:
    """Inputs of the DQN's one-hot encoding of ``space``."""
    return int(space.n) if isinstance(space, spaces.Discrete) else int(np.prod(space.shape))


def check_env_settings(config: TrainConfig, env: gym.Env) -> None:
    """ConfigError when a setting of the maze env (or --env) is given with an env passed to
    train(): it would be recorded in config.json but not applied."""
    given = config.given((*MAZE_FIELDS[1:], "env", "env_kwargs", "env_seed"))
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise ConfigError(
            f"{flags}: settings of the env that the config builds, which an env passed to "
            "train() does not use; leave them out (configure the env itself)."
        )


def check_spaces(env: gym.Env) -> None:
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


def distance_network(hidden: int, seed: int) -> Callable[..., torch.nn.Module]:
    """The factory of ``--q-head distance``'s network, its weights drawn from ``seed``."""

    def make(obs_spec: InputSpec, goal_spec: InputSpec, n_actions: int) -> torch.nn.Module:
        generator = torch.Generator().manual_seed(seed)
        return DistanceQNetwork(obs_spec, goal_spec, n_actions, hidden, generator=generator)

    return make


def check_q_network(agent: DQNAgent) -> None:
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
