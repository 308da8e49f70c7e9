"""The training loop: Smart Start phase -> exploration -> HER -> learner updates -> logs.

One episode, as in the paper's Algorithm 1 read with DESIGN.md's corrections:

1. reset; with probability eta (never in the first episode) Smart Start picks S_ss by Eq. 1
   from the learner's values for this episode's goal, plans a walk there on the count model and
   supplies the actions until the agent is within theta of S_ss;
2. the learner's epsilon-greedy exploration takes the rest of the episode;
3. every transition, guided ones included, goes to the count model and the HER buffer, and
   updates the learner: the tabular learner online from each real transition (and from the
   episode's k relabels per transition at its end), the DQN from a replay batch every
   ``train_freq`` steps after ``learning_starts``; the Smart Start phase counts against the
   episode's step limit;
4. the episode is logged: a row of episodes.csv, TensorBoard scalars, now and then images, an
   evaluation and a checkpoint.

The loop talks to any env that follows the goal-env convention (Dict observation with
``observation``, ``achieved_goal``, ``desired_goal``; vectorised ``compute_reward``;
``info["is_success"]``) with Discrete or MultiBinary spaces; the maze is one such env.
"""

from __future__ import annotations

import copy
import hashlib
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm import tqdm

from sshr_torch import runlog
from sshr_torch.agents import Agent, DQNAgent, LinearSchedule, TabularAgent
from sshr_torch.config import ConfigError, TrainConfig
from sshr_torch.env import GridMazeEnv
from sshr_torch.her import Batch, HerReplayBuffer
from sshr_torch.maze import load_maze
from sshr_torch.smart_start import SmartStartController, SmartStartReport

# Fields a resumed run may change: how long it runs and how much it prints.
RESUME_OVERRIDABLE = ("episodes", "total_steps", "quiet", "resume")
# Rolling window of the rollout statistics in the progress bar and summary.
WINDOW = 100
# TensorBoard rollout scalars are written at most every this many env steps (means over the
# episodes in between), so that runs of many short episodes do not spend their time logging.
LOG_EVERY_STEPS = 500


@dataclass
class TrainResult:
    """What ``train`` returns: where the run is, its summary, and the trained learner."""

    run_dir: Path
    summary: dict[str, Any]
    agent: Agent
    config: TrainConfig
    interrupted: bool = False


def train(config: TrainConfig, env: gym.Env | None = None) -> TrainResult:
    """Train a goal-conditioned learner with Smart Start and HER as configured.

    Args:
        config: the run's settings. With ``config.resume`` set, the run in that directory
            continues from its last checkpoint (build the config with ``resume_config``).
        env: a goal-env with Discrete or MultiBinary spaces; None builds the maze env of
            ``config``.

    Returns:
        A TrainResult; the run directory holds config.json, episodes.csv, summary.json,
        TensorBoard event files and checkpoint.pt.
    """
    return Trainer(config.validate(), env).run()


def resume_config(run_dir: str | Path, **overrides: Any) -> TrainConfig:
    """The saved config of the run in ``run_dir``, with ``resume`` set and overrides applied.

    Only the run length and verbosity may be overridden (``RESUME_OVERRIDABLE``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise runlog.RunError(f"cannot resume: run directory {run_dir} does not exist.")
    saved = runlog.read_json(run_dir / runlog.CONFIG_FILE)
    try:
        config = TrainConfig.from_dict(saved)
    except (TypeError, ConfigError) as error:
        raise runlog.RunError(
            f"{run_dir / runlog.CONFIG_FILE} is not a valid config: {error}"
        ) from None
    bad = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
    if bad:
        raise ConfigError(
            f"--resume continues a run with its saved config; it cannot change {', '.join(bad)}."
        )
    values = {**config.to_dict(), **overrides, "resume": str(run_dir), "run_dir": str(run_dir)}
    return TrainConfig.from_dict(values).validate()


def make_env(config: TrainConfig) -> GridMazeEnv:
    """The maze env a config describes."""
    return GridMazeEnv(
        load_maze(config.maze),
        max_episode_steps=config.max_episode_steps,
        slip=config.slip,
        random_start=config.random_start,
        random_goal=config.random_goal,
    )


def make_agent(config: TrainConfig, env: gym.Env, seed: int) -> Agent:
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
        hidden_sizes=config.hidden_sizes,
        learning_rate=config.learning_rate,
        gamma=config.discount,
        target_update_interval=config.target_update_interval,
        tau=config.tau,
        double_dqn=config.double_dqn,
        max_grad_norm=config.max_grad_norm,
        target_range=_return_range(env, config.step_reward, config.discount)
        if config.clip_target
        else None,
        device=config.device,
        seed=seed,
    )


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
    """Greedy (epsilon 0) episodes; returns (success rate, mean episode length)."""
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


class _StopRequest:
    """First Ctrl-C: finish the current episode, checkpoint and stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: finishing this episode, then saving a checkpoint.", file=sys.stderr)


@dataclass
class _Progress:
    """The counters a checkpoint must restore (everything else is derived or rebuilt)."""

    episode: int = 0
    env_steps: int = 0
    n_updates: int = 0
    first_success_step: int | None = None
    wall_s: float = 0.0
    successes: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    lengths: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    eval_success_rate: float | None = None
    eval_mean_length: float | None = None


class Trainer:
    """Holds one run's parts; ``run()`` plays episodes until the budget or a Ctrl-C."""

    def __init__(self, config: TrainConfig, env: gym.Env | None = None) -> None:
        self.config = config
        torch.set_num_threads(config.torch_threads)
        self.env = make_env(config) if env is None else env
        self.eval_env = make_env(config) if env is None else copy.deepcopy(env)
        self._check_spaces()
        seeds = np.random.SeedSequence(config.seed).generate_state(4)
        self.agent = make_agent(config, self.env, seed=int(seeds[0]))
        goal_space = self.env.observation_space["desired_goal"]
        self.buffer = HerReplayBuffer(
            config.buffer_size,
            self._compute_reward,
            strategy=config.her,
            k=config.her_k,
            obs_shape=self._obs_shape,
            goal_shape=_shape(goal_space),
            obs_dtype=_dtype(self.env.observation_space["observation"]),
            goal_dtype=_dtype(goal_space),
            rng=np.random.default_rng(seeds[1]),
            # The DQN's batches carry n-step sums and their bootstrap discounts (her.py).
            **_n_step_settings(config),
        )
        self.controller = self._make_controller(np.random.default_rng(seeds[2]))
        if config.agent == "dqn":
            self.epsilon = LinearSchedule(
                config.epsilon_start, config.epsilon_end, config.epsilon_decay_steps
            )
        else:
            self.epsilon = LinearSchedule(config.tabular_epsilon, config.tabular_epsilon, 1)
        self.maze = getattr(self.env.unwrapped, "maze", None)
        self.visits = np.zeros(self.maze.n_cells, dtype=np.int64) if self.maze else None
        self.progress = _Progress()
        self._env_seed = int(seeds[3])
        self._metrics: dict[str, list[float]] = {}
        self._pending: list[dict[str, Any]] = []
        self._last_log_step = 0
        self._last_report: SmartStartReport | None = None
        self._setup_run_dir()

    # --- set-up ---------------------------------------------------------------------------

    def _check_spaces(self) -> None:
        space = self.env.observation_space
        if not isinstance(space, spaces.Dict) or not {
            "observation",
            "achieved_goal",
            "desired_goal",
        } <= set(space.spaces):
            raise ConfigError(
                "the env must follow the goal-env convention: a Dict observation with "
                "observation, achieved_goal and desired_goal."
            )
        for key in ("observation", "achieved_goal", "desired_goal"):
            if not isinstance(space[key], (spaces.Discrete, spaces.MultiBinary)):
                raise ConfigError(
                    f"observation['{key}'] is {type(space[key]).__name__}; only Discrete and "
                    "MultiBinary spaces are supported."
                )
        if not isinstance(self.env.action_space, spaces.Discrete):
            raise ConfigError("the env's action space must be Discrete.")
        self._obs_shape = _shape(space["observation"])

    def _compute_reward(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        return np.asarray(self.env.unwrapped.compute_reward(achieved, desired, None))

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
            replan=config.replan,
            rng=rng,
        )

    def _setup_run_dir(self) -> None:
        config = self.config
        if config.resume:
            self.run_dir = Path(config.resume)
            checkpoint = self.run_dir / runlog.CHECKPOINT_FILE
            if checkpoint.exists():
                self._restore(runlog.load_checkpoint(checkpoint))
            runlog.EpisodeLog.keep_first(self.run_dir / runlog.EPISODES_FILE, self.progress.episode)
        else:
            name = runlog.default_run_name(
                config.maze if self.maze else type(self.env.unwrapped).__name__,
                config.agent,
                config.her,
                config.smart_start,
                config.seed,
            )
            self.run_dir = runlog.create_run_dir(
                Path(config.run_dir) if config.run_dir else Path(config.runs_root) / name
            )
            saved = {**config.to_dict(), "run_dir": str(self.run_dir), "resume": None}
            runlog.write_json(self.run_dir / runlog.CONFIG_FILE, saved)
        self.episode_log = runlog.EpisodeLog(self.run_dir / runlog.EPISODES_FILE)
        # purge_step hides the events a killed run wrote after its last checkpoint (those at
        # later env steps), so resumed curves continue without a doubled stretch.
        if config.resume:
            _wait_for_a_newer_event_file_name(self.run_dir)
        self.writer = SummaryWriter(
            str(self.run_dir), purge_step=self.progress.env_steps + 1 if config.resume else None
        )
        if not config.resume:
            self._write_config_to_tensorboard()

    def _write_config_to_tensorboard(self) -> None:
        values = {
            key: (str(value) if value is None or isinstance(value, list) else value)
            for key, value in self.config.to_dict().items()
        }
        table = "|field|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in values.items())
        self.writer.add_text("config", table, 0)
        metrics = {"eval/success_rate": 0.0, "rollout/success_rate": 0.0}
        for summary in hparams(values, metrics):
            self.writer.file_writer.add_summary(summary)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Play episodes until the configured budget is spent or Ctrl-C; then summarise."""
        config = self.config
        max_episodes, max_steps = config.run_length
        bar = tqdm(
            total=max_episodes if max_episodes is not None else max_steps,
            initial=self.progress.episode if max_episodes is not None else self.progress.env_steps,
            unit="ep" if max_episodes is not None else "step",
            disable=config.quiet or not sys.stderr.isatty(),
            dynamic_ncols=True,
        )
        started = time.perf_counter() - self.progress.wall_s
        try:
            with _StopRequest() as stop:
                while not self._budget_spent() and not stop.requested:
                    steps_before = self.progress.env_steps
                    self._play_episode(max_steps)
                    self.progress.wall_s = time.perf_counter() - started
                    self._after_episode()
                    bar.update(
                        1 if max_episodes is not None else self.progress.env_steps - steps_before
                    )
                    bar.set_postfix(self._postfix(), refresh=False)
                interrupted = stop.requested
        finally:
            bar.close()
        self._log_pending(force=True)
        self.progress.wall_s = time.perf_counter() - started
        self._final_evaluation()
        self._write_images()
        summary = self._summary(interrupted)
        self._checkpoint()
        runlog.write_json(self.run_dir / runlog.SUMMARY_FILE, summary)
        self.writer.close()
        self.episode_log.close()
        return TrainResult(self.run_dir, summary, self.agent, config, interrupted)

    def _budget_spent(self) -> bool:
        max_episodes, max_steps = self.config.run_length
        progress = self.progress
        return (max_episodes is not None and progress.episode >= max_episodes) or (
            max_steps is not None and progress.env_steps >= max_steps
        )

    def _play_episode(self, max_steps: int | None) -> None:
        config, env, agent, buffer, controller = (
            self.config,
            self.env,
            self.agent,
            self.buffer,
            self.controller,
        )
        progress = self.progress
        # The run's first episode seeds the env; a resumed run restored its random stream
        # instead (and one killed before its first checkpoint starts over from episode 0).
        obs, _ = env.reset(seed=self._env_seed if progress.episode == 0 else None)
        state, goal, achieved = obs["observation"], obs["desired_goal"], obs["achieved_goal"]
        if controller is not None:
            values = None if config.ss_value == "zero" else (lambda s: agent.max_q(s, goal))
            controller.begin_episode(progress.episode, state, values)
        online = agent.online
        learn_one = getattr(agent, "update_transition", None) or _batch_of_one(agent)
        episode_sq_error, updates_before = 0.0, len(self._metrics.get("td_loss", []))
        learning_starts, train_freq = config.learning_starts, config.train_freq
        visits = self.visits
        episode_return, length, success = 0.0, 0, False
        epsilon = self.epsilon(progress.env_steps)
        step_limit = math.inf if max_steps is None else max_steps - progress.env_steps
        while True:
            epsilon = self.epsilon(progress.env_steps)
            action = controller.act(state) if controller is not None and controller.active else None
            if action is None:
                action = agent.act(state, goal, epsilon)
            obs, reward, terminated, truncated, info = env.step(action)
            next_state, next_achieved = obs["observation"], obs["achieved_goal"]
            success = bool(info.get("is_success", False))
            if controller is not None:
                controller.observe(state, action, reward, next_state, terminated)
            buffer.add(
                state,
                achieved,
                goal,
                action,
                reward,
                next_state,
                next_achieved,
                terminated,
                truncated,
                success,
            )
            progress.env_steps += 1
            if visits is not None:
                visits[state] += 1
            if online:
                td_error = learn_one(state, goal, action, reward, next_state, terminated)
                episode_sq_error += td_error * td_error
            elif (
                progress.env_steps >= learning_starts
                and progress.env_steps % train_freq == 0
                and len(buffer) > 0  # at least one finished episode to sample from
            ):
                batch = buffer.sample(config.batch_size)
                metrics = agent.update(batch)
                metrics["relabelled_fraction"] = np.count_nonzero(batch.relabelled) / len(
                    batch.relabelled
                )
                self._record(metrics)
                episode_sq_error += metrics.get("td_loss", 0.0)
                progress.n_updates += 1
            if success and progress.first_success_step is None:
                progress.first_success_step = progress.env_steps
            episode_return += float(reward)
            length += 1
            state, achieved = next_state, next_achieved
            if terminated or truncated or length >= step_limit:
                break
        buffer.end_episode()
        if online:
            # The per-step TD errors of the real transitions, as one mean for the logs.
            self._record({"td_loss": episode_sq_error / length})
            if config.her != "none":
                relabels = buffer.episode_relabels()
                if len(relabels.action):
                    self._record(agent.update(relabels))
        n_learned = 1 if online else len(self._metrics.get("td_loss", [])) - updates_before
        report = controller.end_episode() if controller is not None else None
        if report is not None and report.used:
            self._last_report = report
        progress.successes.append(float(success))
        progress.lengths.append(length)
        row = {
            "episode": progress.episode,
            "env_steps": progress.env_steps,
            "return": episode_return,
            "length": length,
            "success": success,
            "smart_start": bool(report and report.used),
            "ss_target": _target_label(report),
            "ss_target_count": report.target_count if report and report.used else "",
            "ss_plan_length": report.plan_length if report and report.used else "",
            "ss_steps": report.steps if report else 0,
            "ss_reached": bool(report and report.reached),
            "epsilon": epsilon,
            "n_updates": progress.n_updates,
            # This episode's mean TD loss (real transitions for the tabular learner).
            "td_loss": episode_sq_error / length
            if online
            else _safe_div(episode_sq_error, n_learned),
            "wall_s": progress.wall_s,
        }
        progress.episode += 1
        self._pending.append({**row, "report": report})

    def _record(self, metrics: dict[str, float] | None) -> None:
        for key, value in (metrics or {}).items():
            self._metrics.setdefault(key, []).append(float(value))

    def _after_episode(self) -> None:
        config, progress = self.config, self.progress
        row = self._pending[-1]
        row["wall_s"] = progress.wall_s
        self.episode_log.write(row)
        episode = progress.episode
        if config.eval_interval and episode % config.eval_interval == 0:
            self._evaluate(episode)
        self._log_pending(force=False)
        if config.image_interval and episode % config.image_interval == 0:
            self._write_images()
        if episode % config.checkpoint_interval == 0:
            self._log_pending(force=True)  # a resume starts from here: nothing left pending
            self.writer.flush()  # and the curves up to here are on disk before the checkpoint
            self._checkpoint()
            runlog.write_json(self.run_dir / runlog.SUMMARY_FILE, self._summary(False))

    # --- logging --------------------------------------------------------------------------

    def _log_pending(self, force: bool) -> None:
        """Write the rollout, train, Smart Start and HER scalars of the episodes since last time."""
        progress, rows = self.progress, self._pending
        if not rows or (not force and progress.env_steps - self._last_log_step < LOG_EVERY_STEPS):
            return
        step, add = progress.env_steps, self.writer.add_scalar
        add("rollout/episodic_return", _mean([r["return"] for r in rows]), step)
        add("rollout/episodic_length", _mean([r["length"] for r in rows]), step)
        add("rollout/success", _mean([float(r["success"]) for r in rows]), step)
        add("rollout/success_rate", _mean(progress.successes), step)
        add("rollout/episodes", progress.episode, step)
        add("train/epsilon", rows[-1]["epsilon"], step)
        add("train/n_updates", progress.n_updates, step)
        for key in ("td_loss", "q_mean"):
            if self._metrics.get(key):
                add(f"train/{key}", _mean(self._metrics[key]), step)
        reports = [r["report"] for r in rows if r["report"] is not None]
        if reports:
            used = [report for report in reports if report.used]
            add("smart_start/used", len(used) / len(reports), step)
            if used:
                add("smart_start/plan_length", _mean([u.plan_length for u in used]), step)
                add("smart_start/steps_to_target", _mean([u.steps for u in used]), step)
                add("smart_start/reached", _mean([float(u.reached) for u in used]), step)
                add("smart_start/target_count", _mean([u.target_count for u in used]), step)
                add("smart_start/plan_ms", _mean([u.plan_ms for u in used]), step)
            add("smart_start/visited_states", self.controller.model.n_states, step)
        if self._metrics.get("relabelled_fraction"):
            add("her/relabelled_fraction", _mean(self._metrics["relabelled_fraction"]), step)
        elif self.agent.online and self.config.her != "none":
            # The tabular learner sees k relabels per real transition.
            add("her/relabelled_fraction", self.config.her_k / (self.config.her_k + 1), step)
        add("her/buffer_size", len(self.buffer), step)
        add("time/sps", step / max(progress.wall_s, 1e-9), step)
        self._pending, self._metrics, self._last_log_step = [], {}, step

    def _evaluate(self, episode: int) -> None:
        progress = self.progress
        rate, length = evaluate(
            self.agent,
            self.eval_env,
            self.config.eval_episodes,
            _derived_seed(self.config, episode),
        )
        progress.eval_success_rate, progress.eval_mean_length = rate, length
        self.writer.add_scalar("eval/success_rate", rate, progress.env_steps)
        self.writer.add_scalar("eval/mean_length", length, progress.env_steps)

    def _final_evaluation(self) -> None:
        self._evaluate(self.progress.episode)

    def _write_images(self) -> None:
        if self.maze is None:
            return
        from sshr_torch import dashboards  # matplotlib loads only once images are drawn

        step, maze, report = self.progress.env_steps, self.maze, self._last_report
        target = path = None
        if report is not None and self.controller is not None:
            target = self.controller.target_observation
            path = self.controller.planned_path
        heatmap = dashboards.visit_heatmap(
            maze,
            self.visits,
            target=None if target is None else int(target),
            path=[int(cell) for cell in path or ()],
        )
        self.writer.add_image("maze/visits", heatmap, step, dataformats="HWC")
        cells = np.arange(maze.n_cells)
        goal = maze.cell_index(*maze.goal)
        q_values = self.agent.q_values(cells, goal)
        policy = dashboards.policy_map(maze, q_values)
        self.writer.add_image("maze/policy", policy, step, dataformats="HWC")

    def _postfix(self) -> dict[str, str]:
        progress = self.progress
        return {
            "episodes": str(progress.episode),
            "steps": str(progress.env_steps),
            "success": f"{_mean(progress.successes):.2f}",
            "eps": f"{self.epsilon(progress.env_steps):.2f}",
        }

    def _summary(self, interrupted: bool) -> dict[str, Any]:
        progress = self.progress
        return {
            "episodes": progress.episode,
            "env_steps": progress.env_steps,
            "first_success_step": progress.first_success_step,
            "success_rate_last_100": _mean(progress.successes),
            "mean_length_last_100": _mean(progress.lengths),
            "eval_success_rate": progress.eval_success_rate,
            "eval_mean_length": progress.eval_mean_length,
            "n_updates": progress.n_updates,
            "wall_s": round(progress.wall_s, 3),
            "sps": round(progress.env_steps / max(progress.wall_s, 1e-9), 1),
            "interrupted": interrupted,
            "run_dir": str(self.run_dir),
        }

    # --- checkpoints ----------------------------------------------------------------------

    def _checkpoint(self) -> None:
        progress = self.progress
        state = {
            "config": self.config.to_dict(),
            "progress": {
                "episode": progress.episode,
                "env_steps": progress.env_steps,
                "n_updates": progress.n_updates,
                "first_success_step": progress.first_success_step,
                "wall_s": progress.wall_s,
                "successes": list(progress.successes),
                "lengths": list(progress.lengths),
                "eval_success_rate": progress.eval_success_rate,
                "eval_mean_length": progress.eval_mean_length,
            },
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict(),
            "controller": None if self.controller is None else self.controller.state_dict(),
            "env_rng": self.env.unwrapped.np_random.bit_generator.state,
            "visits": self.visits,
            "torch_rng": torch.get_rng_state(),
        }
        runlog.save_checkpoint(self.run_dir / runlog.CHECKPOINT_FILE, state)

    def _restore(self, state: dict[str, Any]) -> None:
        saved = TrainConfig.from_dict(state["config"])
        mismatched = [
            name
            for name, value in saved.to_dict().items()
            if name not in RESUME_OVERRIDABLE + ("run_dir",)
            and value != self.config.to_dict()[name]
        ]
        if mismatched:
            raise runlog.RunError(
                f"the checkpoint in {self.config.resume} was written with other settings "
                f"({', '.join(mismatched)})."
            )
        try:
            saved_progress = state["progress"]
            self.progress = _Progress(
                episode=saved_progress["episode"],
                env_steps=saved_progress["env_steps"],
                n_updates=saved_progress["n_updates"],
                first_success_step=saved_progress["first_success_step"],
                wall_s=saved_progress["wall_s"],
                successes=deque(saved_progress["successes"], maxlen=WINDOW),
                lengths=deque(saved_progress["lengths"], maxlen=WINDOW),
                eval_success_rate=saved_progress["eval_success_rate"],
                eval_mean_length=saved_progress["eval_mean_length"],
            )
            self.agent.load_state_dict(state["agent"])
            self.buffer.load_state_dict(state["buffer"])
            if self.controller is not None:
                self.controller.load_state_dict(state["controller"])
            # Reset once so the env is initialised, then put its random stream back.
            self.env.reset(seed=0)
            self.env.unwrapped.np_random.bit_generator.state = state["env_rng"]
            if self.visits is not None:
                self.visits[:] = state["visits"]
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise runlog.RunError(
                f"the checkpoint in {self.config.resume} does not match this run ({error})."
            ) from None
        self._last_log_step = self.progress.env_steps


def _wait_for_a_newer_event_file_name(run_dir: Path) -> None:
    """TensorBoard reads event files in name order, and names start with the time in whole
    seconds: a resumed run must not share the killed run's second, or its file (and the purge
    it starts with) could sort first."""
    names = (path.name.split(".") for path in run_dir.glob("events.out.tfevents.*"))
    stamps = [int(parts[3]) for parts in names if len(parts) > 3 and parts[3].isdigit()]
    if stamps and (wait := max(stamps) + 1 - time.time()) > 0:
        time.sleep(wait)


def _batch_of_one(agent: Agent) -> Callable[..., float]:
    """An online learner without ``update_transition``: learn from one-row batches."""

    def learn_one(state, goal, action, reward, next_state, terminal) -> float:
        metrics = agent.update(_single(state, goal, action, reward, next_state, terminal))
        return math.sqrt(metrics.get("td_loss", 0.0))

    return learn_one


def _single(state: Any, goal: Any, action: int, reward: float, next_state: Any, terminal: bool):
    """One real transition as a one-row Batch."""
    return Batch(
        obs=np.asarray([state]),
        goal=np.asarray([goal]),
        action=np.asarray([action], dtype=np.int64),
        reward=np.asarray([reward], dtype=np.float32),
        next_obs=np.asarray([next_state]),
        terminal=np.asarray([float(terminal)], dtype=np.float32),
        relabelled=np.zeros(1, dtype=bool),
    )


def _shape(space: spaces.Space) -> tuple[int, ...]:
    return () if isinstance(space, spaces.Discrete) else (int(np.prod(space.shape)),)


def _dtype(space: spaces.Space) -> type:
    return np.int64 if isinstance(space, spaces.Discrete) else np.uint8


def _target_label(report: SmartStartReport | None) -> Any:
    if report is None or not report.used or report.target is None:
        return ""
    target = report.target
    return target.hex() if isinstance(target, bytes) else int(target)


def _derived_seed(config: TrainConfig, episode: int) -> int:
    digest = hashlib.sha256(f"eval:{config.seed}:{episode}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _safe_div(total: float, count: int) -> float:
    return total / count if count else float("nan")


def _mean(values: Any) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
