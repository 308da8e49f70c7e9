"""The run: build the parts a config describes, play episodes, log, evaluate, checkpoint.

The loop, top to bottom (``Trainer.run``):

    while the budget lasts and nobody asked to stop:
        result = play_episode(env, agent, buffer, ...)     # rollout: SS -> explore -> learn
        progress.record(result); logger.log_episode(row)  # episodes.csv, TensorBoard
        callbacks.on_episode_end(trainer, row)
        every eval_interval episodes: evaluate greedily   # callbacks.on_evaluation
        every checkpoint_interval episodes: checkpoint
    final evaluation, images, checkpoint, summary.json

The parts come from ``build`` (env, learner, buffer), the machine's checks and the process
settings from ``resources`` (applied here once, recorded in config.json), every env loop
(training episode, evaluation, goal reach's walks) from ``rollout``. Beyond the goal-env
convention the trainer asks the env only through the env protocol (``protocol``,
docs/envs.md); a feature that needs a method the env lacks is refused at start-up.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tqdm import tqdm

from sshr_torch import build, protocol, resources, rollout, runlog
from sshr_torch.agents import Agent, LinearSchedule
from sshr_torch.config import ConfigError, TrainConfig
from sshr_torch.goal_reach import (
    DEFAULT_EVAL_GOALS,
    GoalReach,
    cached_distances,
    reach_from,
)
from sshr_torch.her import ModelRows
from sshr_torch.interrupt import StopRequest
from sshr_torch.rollout import EpisodeResult, play_episode
from sshr_torch.smart_start import (
    CountModel,
    ModelGoalValues,
    SmartStartController,
    SmartStartReport,
    ucb1_action,
)

if TYPE_CHECKING:
    from sshr_torch.dashboards import Board

__all__ = [
    "Callback",
    "Trainer",
    "TrainResult",
    "resume_config",
    "train",
]

# Fields a resumed run may change: how long it runs and how much it prints.
RESUME_OVERRIDABLE = ("episodes", "total_steps", "quiet", "resume")
# The maze/goal_reach image walks to at most this many cells (the first in the run's goal order).
MAX_IMAGE_WALKS = 4096


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
        env: a goal-env with Discrete or MultiBinary spaces; None builds the env ``config``
            names (``--env``, or the maze). It runs under a TimeLimit of
            ``config.max_episode_steps``; the settings of the env a config builds (the maze's,
            ``env``, ``env_kwargs``, ``env_seed``) are refused with it.
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


class Trainer:
    """One run's parts; ``run()`` plays episodes until the budget, a callback or a Ctrl-C."""

    def __init__(
        self,
        config: TrainConfig,
        env: gym.Env | None = None,
        callbacks: Sequence[Callback] = (),
        q_network: torch.nn.Module | Callable[..., torch.nn.Module] | None = None,
    ) -> None:
        self._run_name_env = build.env_name(config)
        self._env_from_config = env is None
        self._reward_per_row = False  # see _compute_reward
        if env is None and config.env is None:
            config = dataclasses.replace(config, maze=build.portable_maze_spec(config.maze))
        self.config = config
        self.callbacks = list(callbacks)
        resources.check_device(config.device)
        resources.apply_process_settings(config)
        if env is not None:
            build.check_env_settings(config, env)
            # The run's episode limit holds for any env (its own limit may be shorter).
            env = gym.wrappers.TimeLimit(env, config.max_episode_steps)
        self.env = build.make_env(config) if env is None else env
        build.check_spaces(self.env)
        self._check_n_step()
        resources.check_memory(config, self.env, q_network)
        self.eval_env = build.make_env(config) if env is None else copy.deepcopy(env)
        seeds = np.random.SeedSequence(config.seed).generate_state(4)
        # The env protocol, looked up once: the achieved goal of each state (None: goals are
        # the states themselves, or the env cannot say), and whether goal features apply.
        self._goal_of = protocol.goal_of_state_table(self.env)
        self._goals_known = self._goal_features_apply()
        self._check_protocol()
        self.buffer = build.make_buffer(
            config, self.env, self._compute_reward, np.random.default_rng(seeds[1])
        )
        # The exploration after the guided walk: the config's, or by default 'directed' where
        # it applies (Smart Start, goals known by state), the paper's epsilon-greedy elsewhere.
        directed_applies = config.smart_start and self._goals_known
        self.exploration = config.explore or ("directed" if directed_applies else "epsilon")
        self.controller = self._make_controller(np.random.default_rng(seeds[2]))
        self.model_values = self._make_model_values()
        # --model-rows and --all-actions only: the states at which the env ended an episode
        # without success (a decoy, lava), where the count model's rows end; and the next
        # state of each (state, action) the model has seen (deterministic moves), by env state
        # id, -1 unknown, refreshed after each episode
        levers = bool(config.model_rows or config.all_actions)
        self._failed_ends = np.zeros(self._n_states() if levers else 0, dtype=bool)
        n_actions = int(getattr(self.env.action_space, "n", 0)) if config.all_actions else 0
        self._successor_table = np.full((self._n_states(), n_actions), -1, dtype=np.int64)
        if config.model_rows:
            self.buffer.model_rows, self.buffer.model_share = self._model_rows, config.model_rows
        self.agent = build.make_agent(
            config, self.env, int(seeds[0]), q_network, model_values=self.model_values
        )
        if q_network is not None:
            build.check_q_network(self.agent)  # type: ignore[arg-type]
        if config.all_actions:
            self.agent.action_targets = self._action_rows  # type: ignore[union-attr]
        self._random_until_goal = (
            config.agent == "dqn"
            and config.random_until_goal
            and self.controller is not None
            and self._goals_known
        )
        self._reached = np.zeros(0, dtype=bool)  # goals reached, by id (see _goal_reached)
        self._n_seen = 0
        self._explorer: Callable[[Any], int] | None = None
        if self.exploration != "epsilon":
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
        grid = protocol.method(self.env, protocol.GOAL_GRID)
        self._grid = np.asarray(grid(), dtype=np.int64) if grid and self._goals_known else None
        n_states = self._n_states()
        self.visits = np.zeros(n_states, dtype=np.int64) if self._grid is not None else None
        shortest = protocol.method(self.env, protocol.SHORTEST_PATH_LENGTHS)
        self._shortest_from = None if shortest is None else cached_distances(shortest)
        self._eval_shortest: float | None = None  # mean shortest path of the last evaluation
        self._board: Board | None = None  # the images' grid (_image_board)
        self._last_goal: Any = None
        self.goal_reach = self._make_goal_reach()
        self.progress = runlog.Progress()
        self._env_seed = int(seeds[3]) if config.env_seed is None else config.env_seed
        self._last_report: SmartStartReport | None = None
        # The state before the last episode, when the step budget cut that episode short.
        self._cut_before: dict[str, Any] | None = None
        self.features_off = self._features_off()
        if self.features_off and not config.quiet:
            print(f"note: {features_off_line(self.features_off)}", file=sys.stderr)
        self._open_run_dir()

    # --- set-up ---------------------------------------------------------------------------

    def _n_states(self) -> int:
        """The size of the env's Discrete state space (0 for another space)."""
        space = self.env.observation_space["observation"]
        return int(space.start + space.n) if isinstance(space, spaces.Discrete) else 0

    def _n_goal_ids(self) -> int:
        """The size of the env's Discrete goal space (0 for another space)."""
        space = self.env.observation_space["desired_goal"]
        return int(space.start + space.n) if isinstance(space, spaces.Discrete) else 0

    def _non_discrete_key(self) -> str | None:
        """The first of the observation and desired-goal spaces that is not Discrete, or None."""
        space = self.env.observation_space
        keys = ("observation", "desired_goal")
        return next((k for k in keys if not isinstance(space[k], spaces.Discrete)), None)

    def _goal_features_apply(self) -> bool:
        """Whether the features that ask for the goal of a state apply: Discrete states and
        goals, and the env's ``goal_of_state`` (the identity where goals are states)."""
        return self._non_discrete_key() is None and protocol.has(self.env, protocol.GOAL_OF_STATE)

    def _features_off(self) -> dict[str, str]:
        """The features on by default that this env cannot have, each with what the env lacks
        (an env-protocol method, or Discrete ids). Nothing is dropped silently: the run prints
        them at start-up and summary.json lists them as ``features_off``; asked for explicitly,
        the same features are refused (``_check_protocol``)."""
        config, off = self.config, {}
        goals = None  # what the env lacks for the features that ask for the goal of a state
        if not self._goals_known:
            discrete = self._non_discrete_key() is None
            goals = f"{protocol.GOAL_OF_STATE}()" if discrete else "Discrete state and goal ids"
        if goals and config.smart_start:
            if config.agent == "dqn" and config.model_values != "off":
                off["count-model values (--model-values)"] = goals
            if config.explore is None:
                off["directed exploration (--explore)"] = goals
            if config.agent == "dqn" and config.random_until_goal:
                off["random moves until the goal (--random-until-goal)"] = goals
        if goals and config.eval_goals is None:
            off["goal reach (--eval-goals)"] = goals
        if self._grid is None:
            off["images (--image-interval)"] = goals or f"{protocol.GOAL_GRID}()"
        elif self.goal_reach is not None and self._shortest_from is None:
            off["the goal-reach image"] = f"{protocol.SHORTEST_PATH_LENGTHS}()"
        if (
            config.agent == "dqn"
            and config.clip_target
            and not protocol.has(self.env, protocol.RETURN_RANGE)
        ):
            off["clamped targets (--clip-target)"] = f"{protocol.RETURN_RANGE}()"
        if not protocol.has(self.env, protocol.FINGERPRINT):
            off["the resume's check of the world beyond id, kwargs and class"] = (
                f"{protocol.FINGERPRINT}()"
            )
        return off

    def _check_protocol(self) -> None:
        """ConfigError in one line for a feature asked for whose env-protocol method the env
        lacks (features left at their defaults are off where the env cannot have them)."""
        config, defaults = self.config, TrainConfig()
        needs_goals: list[str] = []
        if config.explore in ("ucb1", "directed"):
            needs_goals.append(f"--explore {config.explore}")
        if config.agent == "dqn" and config.smart_start:
            if config.model_values not in ("off", defaults.model_values):
                needs_goals.append(f"--model-values {config.model_values}")
            elif config.model_values != "off" and config.model_goals != defaults.model_goals:
                needs_goals.append(f"--model-goals {config.model_goals}")
            if config.model_rows:
                needs_goals.append(f"--model-rows {config.model_rows:g}")
            if config.all_actions:
                needs_goals.append("--all-actions")
        if config.eval_goals:
            needs_goals.append(f"--eval-goals {config.eval_goals}")
        if config.stop_path_factor is not None:
            protocol.require(
                self.env,
                f"--stop-path-factor {config.stop_path_factor}",
                protocol.SHORTEST_PATH_LENGTHS,
            )
        for feature in needs_goals:
            self._require_goals(feature)

    def _require_goals(self, feature: str) -> None:
        """ConfigError unless the goal of a state is known (Discrete states and goals, and
        ``goal_of_state``), naming ``feature``."""
        if self._goals_known:
            return
        key = self._non_discrete_key()
        if key is not None:
            kind = type(self.env.observation_space[key]).__name__
            raise ConfigError(
                f"{feature} needs an env whose states and goals are Discrete ids; its "
                f"{key} space is {kind}."
            )
        protocol.require(self.env, feature, protocol.GOAL_OF_STATE)

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

    def _make_model_values(self) -> ModelGoalValues | None:
        """Smart Start's count-model values for the DQN's targets (``model_values``), or None
        where they do not apply (another learner, no Smart Start, the goal of a state unknown);
        the learner gets them at construction."""
        config = self.config
        if not (
            config.agent == "dqn"
            and config.model_values != "off"
            and self.controller is not None
            and self._goals_known
        ):
            return None
        goal_space = self.env.observation_space["desired_goal"]
        modes = f"--model-values {config.model_values}"
        if not config.discount < 1.0:
            raise ConfigError(
                f"--gamma {config.discount} with {modes}: the count model's values need gamma "
                "below 1; set --gamma below 1 or --model-values off."
            )
        # The env's rewards as the learner sees them (step_reward added): on arrival at the goal,
        # and on every other move (the maze pays 1 and 0; an env that pays -1 per step, 0 and -1).
        first = int(goal_space.start)
        goal = np.array([first])
        goal_reward = getattr(self.env.unwrapped, "goal_reward", None)
        move_reward = 0.0
        if goal_reward is None:  # the reward of achieving a goal, and another, as it computes them
            goal_reward = float(self._compute_reward(goal, goal)[0])
            if int(goal_space.n) > 1:
                move_reward = float(self._compute_reward(np.array([first + 1]), goal)[0])
        arrival, move = float(goal_reward) + config.step_reward, move_reward + config.step_reward
        if not arrival > move / (1.0 - config.discount):
            raise ConfigError(
                f"--step-reward {config.step_reward} with {modes}: this env pays {goal_reward:g} "
                f"on arrival and {move_reward:g} on other moves, so reaching a goal pays no "
                "more than never reaching it and the count model's values cannot guide the "
                "learner; set --step-reward below 0 or --model-values off."
            )
        return ModelGoalValues(
            self.controller.model,
            self._n_states(),
            config.discount,
            goal_reward=arrival,
            step_reward=move,
            goals=config.model_goals,
            goal_of=self._goal_of,
            n_goals=self._n_goal_ids(),
        )

    def _model_rows(self, n: int) -> ModelRows:
        """``n`` replay rows from the count model (``model_rows``): moves it has seen, uniform
        (``CountModel.sample_transitions``), each with the goal of a state it has seen, drawn
        uniformly; with the buffer's generator, so a resume draws on where it stopped."""
        model = self.controller.model  # type: ignore[union-attr]
        rng = self.buffer.rng
        s, action, s2 = model.sample_transitions(n, rng)
        observations = np.asarray(model.observations(), dtype=np.int64)
        obs, next_obs = observations[s], observations[s2]
        goal = observations[rng.integers(0, len(observations), size=n)]
        achieved = next_obs
        if self._goal_of is not None:
            achieved, goal = self._goal_of[next_obs], self._goal_of[goal]
        return ModelRows(obs, action, next_obs, achieved, goal, self._failed_ends[next_obs])

    def _action_rows(
        self, states: np.ndarray, goals: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``all_actions``: (next states (B, A), -1 unknown; rewards (B, A) as the learner sees
        them, step reward and failure tail included; terminal flags (B, A)) of every action in
        each of ``states`` for the row's goal, from the count model's moves."""
        next_states = self._successor_table[states]  # (B, A)
        safe = np.where(next_states >= 0, next_states, 0).ravel()
        achieved = safe if self._goal_of is None else self._goal_of[safe]
        wanted = np.repeat(goals, next_states.shape[1])
        actions = np.tile(np.arange(next_states.shape[1]), len(states))
        rows = ModelRows(np.repeat(states, next_states.shape[1]), actions, safe, achieved, wanted,
                         self._failed_ends[safe])  # fmt: skip
        batch = self.buffer.transition_rows(rows)  # rewarded and ended as the buffer's rows
        shape = next_states.shape
        return next_states, batch.reward.reshape(shape), batch.terminal.reshape(shape)

    def _refresh_successors(self) -> None:
        """``all_actions``: the count model's deterministic moves into the successor table."""
        model = self.controller.model  # type: ignore[union-attr]
        if not len(model):
            return
        successors = model.successors()  # (n_model, A) dense indices, -1 unknown
        observations = np.asarray(model.observations(), dtype=np.int64)
        known = successors >= 0
        self._successor_table[observations] = np.where(
            known, observations[np.where(known, successors, 0)], -1
        )

    def _make_goal_reach(self) -> GoalReach | None:
        """Goal reach (``eval_goals``) where the env allows it: the goal of a state known and a
        record of the visited states (the visit counts or the count model)."""
        config = self.config
        applies = self._goals_known and (self.visits is not None or self.controller is not None)
        n_goals = config.eval_goals
        if n_goals is None:
            n_goals = DEFAULT_EVAL_GOALS if applies else 0
        if n_goals == 0:
            return None
        if not applies:
            raise ConfigError(
                f"--eval-goals {n_goals}: goal reach needs a record of the visited states "
                "(Smart Start's count model, or an env with a goal_grid()); use --eval-goals 0."
            )
        self._walks = rollout.walk_stepper(self.eval_env)
        return GoalReach(
            n_goals,
            self._n_states(),
            config.seed,
            protocol.fixed_start(self.env),
            self._shortest_from,
            goal_of=self._goal_of,
            n_goal_ids=self._n_goal_ids(),
        )

    def _visited(self) -> np.ndarray:
        """The states the run has visited (goal reach draws its goals from them)."""
        if self.visits is not None:
            return np.flatnonzero(self.visits)
        return np.asarray(self.controller.model.observations(), dtype=np.int64)  # type: ignore[union-attr]

    def _explore_at_random(self, goal: Any) -> bool:
        """``random_until_goal`` (or ``explore`` other than 'epsilon'): True while the episode's
        goal has never been reached."""
        return not self._goal_reached(goal)

    def _goal_reached(self, goal: Any) -> bool:
        """Whether a state the count model has seen achieves ``goal`` (its ``goal_of_state``;
        the state itself where goals are states)."""
        model = self.controller.model  # type: ignore[union-attr]
        if self._goal_of is None:
            return model.index(goal) is not None
        if len(self._reached) == 0:
            self._reached = np.zeros(self._n_goal_ids(), dtype=bool)
        observations = model.observations()
        if len(observations) > self._n_seen:  # states seen since the last call
            new = np.asarray(observations[self._n_seen :], dtype=np.int64)
            self._reached[self._goal_of[new]] = True
            self._n_seen = len(observations)
        return bool(self._reached[int(goal)])

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
                self._run_name_env if self._env_from_config else type(self.env.unwrapped).__name__,
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
        """Whether an evaluation meets ``stop_success`` (and ``stop_path_factor``: a mean
        length within that factor of the mean shortest path of its episodes, from the env's
        ``shortest_path_lengths``)."""
        config = self.config
        if config.stop_success is None or not success_rate >= config.stop_success:
            return False
        if config.stop_path_factor is None:
            return True
        if self._eval_shortest is None:
            return False
        return mean_length <= config.stop_path_factor * self._eval_shortest

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
        end = self.buffer.last_end() if len(self._failed_ends) else None
        if end is not None and end[1]:
            self._failed_ends[int(end[0])] = True
        if self.config.all_actions:
            self._refresh_successors()
        self._last_goal = result.goal
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
        episodes: list[tuple[Any, Any]] = []
        rate, length = rollout.evaluate(
            self.agent,
            self.eval_env,
            self.config.eval_episodes,
            _derived_seed(self.config, progress.episode),
            episodes,
        )
        self._eval_shortest = self._mean_shortest(episodes)
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

    def _mean_shortest(self, episodes: list[tuple[Any, Any]]) -> float | None:
        """The mean shortest path of evaluation episodes (start state, goal) where the path
        factor stop needs it (the env's ``shortest_path_lengths``)."""
        if self.config.stop_path_factor is None or self._shortest_from is None or not episodes:
            return None
        return float(np.mean([self._shortest_from(int(s))[int(g)] for s, g in episodes]))

    def _image_board(self) -> Board:
        """The board the images are drawn on (built once): the env's goal grid, its
        background where it draws one, its start and the goal of the run's last episode."""
        if self._board is None:
            from sshr_torch.dashboards import Board, cell_pixels  # matplotlib: only for images

            assert self._grid is not None
            start = protocol.fixed_start(self.env)
            background = protocol.method(self.env, protocol.BACKGROUND_IMAGE)
            px = cell_pixels(self._grid)
            self._board = Board(
                self._grid,
                None if background is None else np.asarray(background(px), dtype=np.uint8),
                None if start is None else int(self._goal_ids(np.array([start]))[0]),
            )
        if self._last_goal is not None:
            self._board.goal = int(self._last_goal)
        return self._board

    def _goal_ids(self, states: np.ndarray) -> np.ndarray:
        """The achieved goal of each state (the states themselves where goals are states)."""
        states = np.asarray(states, dtype=np.int64)
        return states if self._goal_of is None else self._goal_of[states]

    def _image_q_values(self, goal: int) -> np.ndarray:
        """(n_goal_ids, n_actions) Q-values for ``goal`` of a state of each goal's cell: the
        state itself where goals are states; else the visited state of that goal with the
        highest max_a Q (cells of no visited state get the lowest value drawn)."""
        if self._goal_of is None:
            return np.asarray(self.agent.q_values(np.arange(self._n_states()), goal))
        out = np.full((self._n_goal_ids(), int(self.env.action_space.n)), np.nan)
        states = self._visited()
        if len(states):
            q = np.asarray(self.agent.q_values(states, goal), dtype=np.float64)
            order = np.argsort(q.max(axis=1), kind="stable")  # the best state of a goal last
            out[self._goal_of[states[order]]] = q[order]
        return np.where(np.isnan(out), np.nanmin(out, initial=0.0), out)

    def _write_images(self) -> None:
        """The visit, policy and goal-reach images, on envs with a goal grid."""
        if self._grid is None or self.visits is None:
            return
        board, report = self._image_board(), self._last_report
        if board.goal is None:
            return  # no episode yet: no goal to draw the values for
        target = path = None
        if report is not None and self.controller is not None:
            target = self.controller.target_observation
            path = self.controller.planned_path
        visits = self.visits
        if self._goal_of is not None:  # a state's visits count for its goal's cell
            visits = np.bincount(self._goal_of, weights=visits, minlength=self._n_goal_ids())
        self.logger.log_maze_images(
            board,
            visits,
            self._image_q_values(board.goal),
            self.progress.env_steps,
            target=None if target is None else int(self._goal_ids(np.array([target]))[0]),
            path=[int(g) for g in self._goal_ids(np.array(list(path or ()), dtype=np.int64))],
            strokes=self._goal_of is None,
        )
        if self.goal_reach is not None and self._shortest_from is not None:
            began = time.perf_counter()
            start = protocol.fixed_start(self.env)
            visited = self._visited()
            if start is None and len(visited):  # drawn starts: the first in the run's order
                start = int(visited[np.argmin(self.goal_reach.start_rank[visited])])
            if start is not None:
                self._goal_reach_image(board, int(start))
            self.progress.goal_reach_s += time.perf_counter() - began

    def _goal_reach_image(self, board: Board, start: int) -> None:
        """``maze/goal_reach``: greedy walks from ``start`` to the grid's goals (at most
        MAX_IMAGE_WALKS, the first in the run's goal order)."""
        assert self.goal_reach is not None and self._shortest_from is not None
        shortest = self._shortest_from(start)
        goals = np.unique(board.grid[board.grid >= 0])
        goals = goals[np.isfinite(shortest[goals]) & (shortest[goals] > 0)]
        goals = goals[np.argsort(self.goal_reach.goal_rank[goals], kind="stable")]
        goals = goals[:MAX_IMAGE_WALKS]
        rng = np.random.default_rng([_derived_seed(self.config, self.progress.episode), 21])
        moves = np.full(len(shortest), -1, dtype=np.int64)
        moves[goals] = reach_from(self.agent, self._walks, start, goals, shortest[goals], rng)
        start_goal = int(self._goal_ids(np.array([start]))[0])
        self.logger.log_goal_reach_image(
            board, moves, shortest, start_goal, self.progress.env_steps
        )

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
            "features_off": self.features_off,
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
        # The world the run trains in (the env protocol's fingerprint): a resume refuses another.
        state["fingerprint"] = protocol.fingerprint(self.env)
        env_class = type(self.env.unwrapped)
        state["env"] = f"{env_class.__module__}.{env_class.__qualname__}"
        # The count model's values are recomputed on resume, for the goal they were last for.
        state["model_values_goal"] = self.model_values.goal if self.model_values else None
        state["failed_ends"] = np.flatnonzero(self._failed_ends).tolist()
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
        self._check_same_world(state)
        before_cut = state.get("before_cut")
        if isinstance(before_cut, dict) and saved_config.run_length[1] != self.config.run_length[1]:
            # Another step budget: the episode the old one cut is played again, to the new end.
            state = before_cut
        self.progress = runlog.restore_run_state(
            state, self._parts(), self.env, self.visits, str(self.config.resume)
        )
        self._check_budget_reaches(self.progress)
        self._failed_ends[np.asarray(state.get("failed_ends", []), dtype=np.int64)] = True
        if self.config.all_actions:  # as the end of the episode before the checkpoint left it
            self._refresh_successors()
        goal = state.get("model_values_goal")
        if self.model_values is not None and isinstance(goal, int):
            self.model_values.refresh(goal)

    def _check_same_world(self, state: dict[str, Any]) -> None:
        """RunError unless the checkpoint's env is this run's: built the same way (from the
        config, or passed to train()), of the same class, with the same fingerprint."""
        saved_env, resume = state.get("env", "its own env"), self.config.resume
        # Checkpoints before the env protocol saved the maze's digest under this name.
        saved = state.get("fingerprint", state.get("maze_sha256"))
        mine = protocol.fingerprint(self.env)
        env_class = type(self.env.unwrapped)
        current = f"{env_class.__module__}.{env_class.__qualname__}"
        if saved is None and mine is not None and self._env_from_config:
            raise runlog.RunError(
                f"the run in {resume} was trained on an env passed to train() ({saved_env}), "
                f"not on {self._run_name_env}; resume it from Python with the same env: "
                f"train(resume_config({str(resume)!r}), env=...)."
            )
        if saved is not None and mine is None and not self._env_from_config:
            raise runlog.RunError(
                f"the run in {resume} was trained on {self._run_name_env}, not on the env "
                f"passed to train(); resume it without env=, or with "
                f"python -m sshr_torch.train --resume {resume}."
            )
        if "env" in state and saved_env != current:
            raise runlog.RunError(
                f"the run in {resume} was trained on {saved_env}, not on {current}; resume it "
                "with the env it started with."
            )
        if saved != mine:
            what = (
                f"the maze {self.config.maze}"
                if self.config.env is None
                else (f"the env {self.config.env}")
            )
            raise runlog.RunError(
                f"{what} is not the one the run in {resume} started with (its layout changed: "
                "another fingerprint); put the original back or start a new run."
            )

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


def features_off_line(features_off: dict[str, str]) -> str:
    """One line naming the features off on an env and the method each lacks."""
    parts = [f"{feature}: no {lacking}" for feature, lacking in features_off.items()]
    return "off on this env: " + "; ".join(parts) + " (docs/envs.md)."
