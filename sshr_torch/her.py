"""Hindsight Experience Replay: a replay buffer that relabels goals (numpy only, no torch).

Semantics (the paper's readings behind them: docs/design.md; every learner and test relies on
them):

- A transition (s_t, g, a_t, r_t, s_{t+1}) may be replayed with a substitute goal g' that the
  agent actually reached. Substitute goals are always *achieved goals of next states*,
  ag(s_{t+1'}), never of the state a transition starts from.
- Strategies choose the step t' whose next achieved goal becomes g':

  ========  ==================================================================================
  none      no relabelling: plain experience replay on the real goal.
  future    t' uniform over t' >= t in the same episode. The current step is included
            (t' = t gives g' = ag(s_{t+1}), a guaranteed success).
  final     t' = T - 1, the episode's last step, so g' = ag(s_T), the last *next* achieved goal.
  episode   t' uniform over all steps of the same episode (earlier ones included).
  random    any next achieved goal stored in the buffer (any finished episode).
  ========  ==================================================================================

- k relabels per real transition. ``sample`` does this at sampling time: a fraction k / (k + 1)
  of each batch is relabelled (exact in expectation), which equals k stored relabels per
  transition in expectation without storing them. ``episode_relabels`` returns exactly k
  relabels for every transition of the last finished episode (for the tabular learner, which
  learns them at episode end). Both paths draw goals with the same function,
  ``_goal_indices``.
- Reward of a relabelled transition: ``compute_reward(ag(s_{t+1}), g')``, the env's vectorised
  function, called as ``(achieved, desired)``. Parts of the env's reward that
  ``compute_reward`` does not express are not carried over to relabelled transitions.
- Terminal (1.0 = do not bootstrap): a relabelled transition is terminal when its next achieved
  goal equals g' (a relabelled success), or when the env terminated it for a reason that does
  not depend on the goal (``terminated and not is_success``). A real transition is terminal
  when the env terminated it. A time-limit truncation is never terminal: it bootstraps.
- Goals are compared exactly: ints for Discrete goals, all elements equal for array goals
  (MultiBinary).
- n-step returns (``n_step`` > 1, needs ``gamma``): a sampled transition at step t with goal g
  (real or substitute) is replayed as the window t, t+1, ..., t+m-1 of its own episode, with
  m = min(n, steps left in the episode, 1 + first j >= 0 at which step t+j is terminal for g).
  Rewards over the window are those of g: recomputed by ``compute_reward`` for a substitute
  goal, the stored ones for the real goal, so the window is cut at the step that achieves a
  substitute goal. The batch row then holds reward = sum_j gamma^j r_{t+j}, next_obs =
  s_{t+m}, terminal = the terminal flag of step t+m-1, and discount = gamma^m (1 - terminal),
  the factor of the bootstrap value Q(s_{t+m}, g). A window never crosses the episode's end: a
  truncated episode bootstraps from its last next state. With n_step = 1 and gamma set, the
  batch is the 1-step one with discount = gamma (1 - terminal).
- ``cut_off_policy``: a step stored with ``off_policy`` (its action was not the learner's:
  Smart Start's guided walk, a directed explorer's move) ends every window before it, so
  m <= the first j >= 1 at which step t+j is off-policy. The row's own action (j = 0) may be
  any: Q(s_t, g, a_t) is learnt for whatever a_t was; the later ones are only unbiased for the
  greedy value where they are the learner's own (its epsilon-greedy choices are kept, as in
  n-step DQN).
- ``step_reward`` (default 0) is added to every reward the buffer hands out, real and
  relabelled, at every step of a window (e.g. -1 with the maze's 1-at-the-goal reward gives 0
  at the goal and -1 per other step).
- ``failure_tail`` (default 0) is added to the reward of a step that ends the episode without
  reaching the row's goal (the env terminated it for a reason that has nothing to do with the
  goal: a decoy, lava): with a step reward c < 0 the DQN sets it to gamma c / (1 - gamma), so
  such an end is worth what never reaching the goal is worth, c / (1 - gamma) in all, as it is
  under the env's own reward (0 either way); without it an early death would be the cheapest
  end of every episode whose goal is far. It is the last step of its window, which the
  terminal flag ends.

Storage: whole episodes in numpy ring arrays of ``capacity`` transitions. Positions are absolute
write counters (slot = position % capacity). The samplable transitions are the contiguous range
[tail, start of the running episode): the running episode is never sampled, and when a write
would overwrite the tail, the tail jumps past the *whole* oldest episode (amortised O(1) per
write). Every samplable transition therefore has its full episode in the buffer, so relabelling
never crosses an episode boundary, also after the ring wraps. Sampling a batch is O(batch),
independent of how much is stored.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from enum import Enum
from typing import Any, Literal, NamedTuple, get_args

import numpy as np

__all__ = ["Batch", "GoalSelectionStrategy", "HerReplayBuffer", "ModelRows", "StrategyName"]


StrategyName = Literal["none", "final", "future", "episode", "random"]
"""The goal-selection strategies by name (the only place they are spelled)."""

# NONE, FINAL, FUTURE, EPISODE, RANDOM, each with its name as value.
GoalSelectionStrategy = Enum(
    "GoalSelectionStrategy", [(name.upper(), name) for name in get_args(StrategyName)]
)
GoalSelectionStrategy.__doc__ = (
    "How a substitute goal is chosen; see the module docstring for the exact semantics."
)


class Batch(NamedTuple):
    """A batch of transitions for a learner; every field is a numpy array of length B.

    ``goal`` is the goal the transition is learned for (the real one or a substitute);
    ``terminal`` is 1.0 where the target must not bootstrap; ``relabelled`` marks substitutes.
    ``discount`` is the factor of the bootstrap value in the TD target, y = reward + discount *
    max_a Q(next_obs, goal, a): gamma^m * (1 - terminal) for an m-step row; None (a buffer
    built without ``gamma``, or a hand-made batch) means gamma * (1 - terminal). ``weight``:
    each row's importance weight in the loss where the buffer draws by priority, else None.
    """

    obs: np.ndarray  # (B, *obs_shape)
    goal: np.ndarray  # (B, *goal_shape)
    action: np.ndarray  # (B,) int64
    reward: np.ndarray  # (B,) float32
    next_obs: np.ndarray  # (B, *obs_shape)
    terminal: np.ndarray  # (B,) float32
    relabelled: np.ndarray  # (B,) bool
    discount: np.ndarray | None = None  # (B,) float32, or None: gamma * (1 - terminal)
    weight: np.ndarray | None = None  # (B,) float32 importance weights (prioritised), or None


ComputeReward = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ModelRows(NamedTuple):
    """One-step transitions drawn from a model of the env, each with a goal to learn it for
    (``HerReplayBuffer``'s ``model_rows``); every field is a numpy array of length n.

    ``failed`` marks a next state at which the env ended an episode without success (a
    decoy, lava): such a row ends there, as a stored step that did.
    """

    obs: np.ndarray  # (n, *obs_shape)
    action: np.ndarray  # (n,) int64
    next_obs: np.ndarray  # (n, *obs_shape)
    next_achieved_goal: np.ndarray  # (n, *goal_shape)
    goal: np.ndarray  # (n, *goal_shape)
    failed: np.ndarray  # (n,) bool


RowSource = Callable[[int], ModelRows]


class HerReplayBuffer:
    """Episode-aware ring buffer with Hindsight Experience Replay goal relabelling.

    Args:
        capacity: number of transitions stored; the oldest whole episodes are dropped first.
        compute_reward: ``compute_reward(achieved, desired) -> rewards``, vectorised over a
            leading batch axis (e.g. ``lambda a, d: env.compute_reward(a, d, None)``).
        strategy: a ``GoalSelectionStrategy`` or its string value.
        k: relabels per real transition (``sample`` relabels k / (k + 1) of a batch).
        obs_shape, goal_shape: shapes of one observation / goal; ``()`` for Discrete.
        obs_dtype, goal_dtype: storage dtypes (int64 for Discrete, uint8 for MultiBinary).
        rng: a numpy Generator, a seed, or None (fresh entropy).
        n_step: returns over up to this many steps (see the module docstring); 1 is 1-step.
        gamma: the discount of the n-step sums; set, ``sample`` fills ``Batch.discount``.
        step_reward: added to every reward handed out (real and relabelled, every step).
        failure_tail: added to the reward of a step that ends the episode without reaching the
            row's goal (see the module docstring).
        cut_off_policy: n-step windows end before a step added with ``off_policy`` (see the
            module docstring).
        off_policy_weight: ``sample`` draws a step added with ``off_policy`` with this weight
            relative to the others (1: uniform; 0: never, unless nothing else is stored; > 1
            more often).
        model_rows, model_share: ``sample`` fills a share ``model_share`` of each batch (exact
            in expectation) with ``model_rows(n)``, one-step transitions from a model of the env
            (Dyna-style: the trainer draws them over every move Smart Start's count model has
            seen, each with a goal drawn over every state it has seen), rewarded and ended for
            their goals as a relabelled step is (``transition_rows``).
        priority_alpha, priority_beta: prioritised replay (Schaul et al. 2016) where alpha > 0:
            a stored step is drawn with probability p^alpha / sum p^alpha, p its row's last
            |TD error| (``update_priorities``; a new step gets the largest p so far), and the
            batch carries importance weights (N P)^-beta / their max; the row's goal (real or
            substitute) is drawn after the step, so a step's priority is that of the goal it was
            last replayed for. O(stored steps) per batch (a cumulative sum, no sum tree).

    Call ``add`` for each env step, ``end_episode`` when the episode terminated or was
    truncated (only then is it samplable), then ``sample`` or ``episode_relabels``.
    """

    def __init__(
        self,
        capacity: int,
        compute_reward: ComputeReward,
        *,
        strategy: GoalSelectionStrategy | str = "future",
        k: int = 4,
        obs_shape: tuple[int, ...] = (),
        goal_shape: tuple[int, ...] = (),
        obs_dtype: Any = np.int64,
        goal_dtype: Any = np.int64,
        rng: np.random.Generator | int | None = None,
        n_step: int = 1,
        gamma: float | None = None,
        step_reward: float = 0.0,
        failure_tail: float = 0.0,
        cut_off_policy: bool = False,
        off_policy_weight: float = 1.0,
        model_rows: RowSource | None = None,
        model_share: float = 0.0,
        priority_alpha: float = 0.0,
        priority_beta: float = 0.4,
    ) -> None:
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}.")
        if n_step > 1 and gamma is None:
            raise ValueError("n-step returns need gamma.")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}.")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}.")
        if not 0.0 <= off_policy_weight < math.inf:
            raise ValueError(
                f"off_policy_weight must be a finite number >= 0, got {off_policy_weight}."
            )
        if not 0.0 <= model_share < 1.0 or (model_share and model_rows is None):
            raise ValueError(
                f"model_share must be in [0, 1), with model_rows where above 0, got {model_share}."
            )
        if not (0.0 <= priority_alpha <= 1.0 and 0.0 <= priority_beta <= 1.0):
            raise ValueError(
                f"priority_alpha and priority_beta must be in [0, 1], got {priority_alpha} and "
                f"{priority_beta}."
            )
        if priority_alpha and (off_policy_weight != 1.0 or model_share):
            raise ValueError(
                "prioritised replay draws by priority alone: it takes neither an "
                "off_policy_weight other than 1 nor model rows."
            )
        try:
            self.strategy = GoalSelectionStrategy(strategy)
        except ValueError:
            names = ", ".join(s.value for s in GoalSelectionStrategy)
            raise ValueError(f"unknown HER strategy {strategy!r}; choose one of {names}.") from None
        self.capacity = int(capacity)
        self.compute_reward = compute_reward
        self.k = int(k)
        self.n_step = int(n_step)
        self.gamma = None if gamma is None else float(gamma)
        self.step_reward = float(step_reward)
        self.failure_tail = float(failure_tail)
        self.cut_off_policy = bool(cut_off_policy)
        self.off_policy_weight = float(off_policy_weight)
        self.model_rows = model_rows
        self.model_share = float(model_share)
        self.priority_alpha, self.priority_beta = float(priority_alpha), float(priority_beta)
        # prioritised replay: each slot's priority, the largest so far, the last draw's positions
        self._priority = np.zeros(capacity if priority_alpha else 0, dtype=np.float64)
        self._max_priority = 1.0
        self._drawn = np.zeros(0, dtype=np.int64)
        self._offsets = np.arange(self.n_step)  # window offsets j and their gamma^j
        self._powers = np.float32(self.gamma or 1.0) ** np.arange(self.n_step, dtype=np.float32)
        self.obs_shape = tuple(obs_shape)
        self.goal_shape = tuple(goal_shape)
        self.rng = np.random.default_rng(rng)
        n = self.capacity
        self._obs = np.zeros((n, *self.obs_shape), dtype=obs_dtype)
        self._next_obs = np.zeros((n, *self.obs_shape), dtype=obs_dtype)
        self._desired_goal = np.zeros((n, *self.goal_shape), dtype=goal_dtype)
        self._next_achieved_goal = np.zeros((n, *self.goal_shape), dtype=goal_dtype)
        self._action = np.zeros(n, dtype=np.int64)
        self._reward = np.zeros(n, dtype=np.float32)
        self._terminated = np.zeros(n, dtype=bool)
        self._is_success = np.zeros(n, dtype=bool)
        self._off_policy = np.zeros(n, dtype=bool)  # the action was not the learner's
        # Absolute positions [start, end) of each transition's episode; end is written when the
        # episode ends (a running episode is never sampled, so it is never read before then).
        self._episode_start = np.zeros(n, dtype=np.int64)
        self._episode_end = np.zeros(n, dtype=np.int64)
        self._head = 0  # absolute position of the next write
        self._tail = 0  # absolute position of the oldest stored transition
        self._running_start = 0  # absolute start of the running (unfinished) episode
        self._last_episode = (0, 0)  # absolute [start, end) of the last finished episode
        self._n_episodes = 0  # finished episodes stored

    # --- sizes ---------------------------------------------------------------------------

    @property
    def n_transitions(self) -> int:
        """Samplable transitions: those of finished episodes still stored."""
        return self._running_start - self._tail

    def __len__(self) -> int:
        """Same as ``n_transitions``."""
        return self._running_start - self._tail

    @property
    def n_episodes(self) -> int:
        """Finished episodes still stored."""
        return self._n_episodes

    # --- writing -------------------------------------------------------------------------

    def add(
        self,
        obs: Any,
        achieved_goal: Any,
        desired_goal: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_achieved_goal: Any,
        terminated: bool,
        truncated: bool,
        is_success: bool,
        off_policy: bool = False,
    ) -> None:
        """Append one env step to the running episode.

        ``off_policy``: the step's action was not the learner's (a guided walk's); with
        ``cut_off_policy`` n-step windows end before it.

        ``achieved_goal`` (of ``obs``) is accepted for the goal-env call shape but not stored:
        substitute goals come from next states only. ``truncated`` is not stored either: a
        truncation never makes a transition terminal; call ``end_episode`` after it.

        Raises:
            ValueError: the running episode is longer than the whole buffer.
        """
        head = self._head
        if head - self._tail >= self.capacity:
            self._drop_oldest_episode()
        slot = head % self.capacity
        self._obs[slot] = obs
        self._next_obs[slot] = next_obs
        self._desired_goal[slot] = desired_goal
        self._next_achieved_goal[slot] = next_achieved_goal
        self._action[slot] = action
        self._reward[slot] = reward
        self._terminated[slot] = terminated
        self._is_success[slot] = is_success
        self._off_policy[slot] = off_policy
        if self.priority_alpha:
            self._priority[slot] = self._max_priority
        self._episode_start[slot] = self._running_start
        self._head = head + 1

    def _drop_oldest_episode(self) -> None:
        """Advance the tail past the whole oldest finished episode to free its slots."""
        if self._tail >= self._running_start:
            raise ValueError(
                f"an episode longer than the buffer capacity ({self.capacity} transitions) "
                "cannot be stored; raise the capacity or shorten the episodes."
            )
        self._tail = int(self._episode_end[self._tail % self.capacity])
        self._n_episodes -= 1

    def end_episode(self) -> None:
        """Close the running episode (terminated or truncated) and make it samplable.

        A call with no transition since the last one does nothing.
        """
        start, end = self._running_start, self._head
        if end == start:
            return
        slots = np.arange(start, end) % self.capacity
        self._episode_end[slots] = end
        self._running_start = end
        self._last_episode = (start, end)
        self._n_episodes += 1

    def last_end(self) -> tuple[np.ndarray, bool] | None:
        """(the next observation of the last finished episode's last step, whether the env
        ended the episode there without success: a decoy, lava), or None before any episode
        ended."""
        start, end = self._last_episode
        if end == start:
            return None
        slot = (end - 1) % self.capacity
        return self._next_obs[slot].copy(), bool(
            self._terminated[slot] and not self._is_success[slot]
        )

    # --- relabelling ---------------------------------------------------------------------

    def _goal_indices(self, positions: np.ndarray) -> np.ndarray:
        """Absolute positions whose next achieved goal relabels each of ``positions``.

        ``positions`` are absolute positions of samplable transitions. The one place goal
        selection lives, used by both ``sample`` and ``episode_relabels``.
        """
        strategy = self.strategy
        n = len(positions)
        if strategy is GoalSelectionStrategy.FUTURE:
            # t' uniform in [t, end): floor(t + u * (end - t)), u in [0, 1); includes t itself.
            end = self._episode_end[positions % self.capacity]
            return positions + (self.rng.random(n) * (end - positions)).astype(np.int64)
        if strategy is GoalSelectionStrategy.FINAL:
            # The last step of the episode: its next achieved goal is ag(s_T).
            return self._episode_end[positions % self.capacity] - 1
        if strategy is GoalSelectionStrategy.EPISODE:
            slots = positions % self.capacity
            start = self._episode_start[slots]
            end = self._episode_end[slots]
            return start + (self.rng.random(n) * (end - start)).astype(np.int64)
        if strategy is GoalSelectionStrategy.RANDOM:
            # Any samplable transition of any stored episode (the running one excluded).
            return self._tail + self.rng.integers(0, self.n_transitions, size=n)
        raise ValueError(f"strategy {strategy.value!r} does not relabel goals.")

    def _relabelled(self, slots: np.ndarray, goal_slots: np.ndarray):
        """Goals, rewards and terminal flags of ``slots`` relabelled with ``goal_slots``' goals."""
        new_goal = self._next_achieved_goal[goal_slots]  # (n, *goal_shape)
        reward, terminal = self._outcome(slots, new_goal)
        return new_goal, reward, terminal.astype(np.float32)

    def _outcome(self, slots: np.ndarray, new_goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reward (float32) and terminal flag (bool) of the transitions in ``slots`` (n,) under
        the substitute goals ``new_goal`` (n, *goal_shape)."""
        ended_failing = self._terminated[slots] & ~self._is_success[slots]
        return self._goal_outcome(self._next_achieved_goal[slots], new_goal, ended_failing)

    def _goal_outcome(
        self, achieved: np.ndarray, goal: np.ndarray, ended_failing: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reward (float32) and terminal flag (bool) of n transitions whose next achieved goals
        are ``achieved``, learnt for ``goal`` (both (n, *goal_shape)); ``ended_failing`` (n,):
        the env ended the episode there without success. Terminal: the goal is reached, or the
        env ended the episode for a reason that has nothing to do with the goal (a failure,
        which gets the failure tail)."""
        reward = self._with_step_reward(
            np.asarray(self.compute_reward(achieved, goal), dtype=np.float32)
        )
        reached = achieved == goal
        if reached.ndim > 1:
            reached = reached.reshape(len(goal), -1).all(axis=1)
        failed = np.asarray(ended_failing, dtype=bool) & ~reached
        return self._with_failure_tail(reward, failed), reached | failed

    def _real_reward(self, index: np.ndarray) -> np.ndarray:
        """The stored (real-goal) rewards at ``index`` (slots, any shape), with ``step_reward``
        and, on a step that ended the episode without success, ``failure_tail``."""
        reward = self._with_step_reward(self._reward[index])
        if not self.failure_tail:
            return reward
        return self._with_failure_tail(reward, self._terminated[index] & ~self._is_success[index])

    def _with_failure_tail(self, reward: np.ndarray, failed: np.ndarray) -> np.ndarray:
        """``reward`` plus ``failure_tail`` where ``failed`` (an end without the row's goal)."""
        if not self.failure_tail:
            return reward
        return reward + np.where(failed, np.float32(self.failure_tail), np.float32(0.0))

    def _with_step_reward(self, reward: np.ndarray) -> np.ndarray:
        """``reward`` (float32) plus ``step_reward``: every reward the buffer hands out passes
        here, real (:meth:`_real_reward`) or recomputed (:meth:`_outcome`)."""
        return reward + np.float32(self.step_reward) if self.step_reward else reward

    def sample(self, batch_size: int) -> Batch:
        """A uniform batch of stored transitions, k / (k + 1) of them relabelled on average.

        The relabelled rows are the first ``n_her`` rows, where ``n_her`` is
        ``batch_size * k / (k + 1)`` rounded at random up or down (exact in expectation); rows
        are drawn independently, so which rows carry substitutes does not bias anything.
        With ``model_rows``, the last ``batch_size * model_share`` rows (rounded the same way)
        are the model's transitions instead (``transition_rows``). Costs O(batch_size).

        Raises:
            RuntimeError: no finished episode is stored yet.
        """
        n_stored = self._running_start - self._tail
        if n_stored <= 0:
            raise RuntimeError(
                "cannot sample from the HER buffer before an episode has ended "
                "(call end_episode() once an episode terminates or is truncated)."
            )
        n_model = self._round(batch_size * self.model_share) if self.model_rows else 0
        batch = self._sample_stored(batch_size - n_model, n_stored)
        if not n_model:
            return batch
        assert self.model_rows is not None
        rows = self.transition_rows(self.model_rows(n_model))
        pairs = zip(batch, rows, strict=True)
        return Batch(*(None if a is None else np.concatenate([a, b]) for a, b in pairs))

    def _round(self, expected: float) -> int:
        """``expected`` rounded at random up or down, exact in expectation."""
        return int(expected) + int(self.rng.random() < expected - int(expected))

    def transition_rows(self, rows: ModelRows) -> Batch:
        """One-step batch rows of a model's transitions, for their goals: the reward
        ``compute_reward(next achieved goal, goal)`` (plus ``step_reward``, and
        ``failure_tail`` on a failed end), terminal where the goal is reached or the row failed
        (as a relabelled stored step), discount gamma (1 - terminal) where the buffer has a
        gamma; every row marked relabelled (its goal is the model's choice)."""
        goal = np.asarray(rows.goal)
        n = len(goal)
        reward, ended = self._goal_outcome(np.asarray(rows.next_achieved_goal), goal, rows.failed)
        terminal = ended.astype(np.float32)
        discount = None
        if self.gamma is not None:
            discount = (np.float32(self.gamma) * (1.0 - terminal)).astype(np.float32)
        return Batch(
            obs=np.asarray(rows.obs, dtype=self._obs.dtype),
            goal=goal.astype(self._desired_goal.dtype, copy=False),
            action=np.asarray(rows.action, dtype=np.int64),
            reward=reward.astype(np.float32, copy=False),
            next_obs=np.asarray(rows.next_obs, dtype=self._obs.dtype),
            terminal=terminal,
            relabelled=np.ones(n, dtype=bool),
            discount=discount,
        )

    def _sample_stored(self, batch_size: int, n_stored: int) -> Batch:
        """``sample``'s rows from the stored episodes."""
        weight = None
        if self.priority_alpha:
            positions, weight = self._draw_by_priority(batch_size)
        else:
            positions = self._draw(batch_size, n_stored)
        slots = positions % self.capacity
        goal = self._desired_goal[slots]  # fancy indexing copies
        reward = self._real_reward(slots)
        terminal = self._terminated[slots].astype(np.float32)
        relabelled = np.zeros(batch_size, dtype=bool)
        if self.strategy is not GoalSelectionStrategy.NONE and self.k > 0:
            n_her = self._round(batch_size * self.k / (self.k + 1))
            if n_her:
                her_slots = slots[:n_her]
                goal_slots = self._goal_indices(positions[:n_her]) % self.capacity
                relabelled[:n_her] = True
                if self.gamma is not None:  # rewards and terminals come from the windows
                    goal[:n_her] = self._next_achieved_goal[goal_slots]
                else:
                    new_goal, new_reward, new_terminal = self._relabelled(her_slots, goal_slots)
                    goal[:n_her] = new_goal
                    reward[:n_her] = new_reward
                    terminal[:n_her] = new_terminal
        if self.gamma is None:
            return Batch(
                obs=self._obs[slots],
                goal=goal,
                action=self._action[slots],
                reward=reward,
                next_obs=self._next_obs[slots],
                terminal=terminal,
                relabelled=relabelled,
                weight=weight,
            )
        n_her = int(np.count_nonzero(relabelled))  # the first n_her rows
        reward, last, terminal, discount = self._n_step_returns(positions, goal, n_her)
        return Batch(
            obs=self._obs[slots],
            goal=goal,
            action=self._action[slots],
            reward=reward,
            next_obs=self._next_obs[last % self.capacity],
            terminal=terminal,
            relabelled=relabelled,
            discount=discount,
            weight=weight,
        )

    def _draw_by_priority(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(``batch_size`` absolute positions drawn with probability p^alpha / sum p^alpha,
        their importance weights (N P)^-beta / max, float32), remembered for
        ``update_priorities``."""
        stored = np.arange(self._tail, self._running_start)
        p = self._priority[stored % self.capacity] ** self.priority_alpha
        cdf = np.cumsum(p)
        index = np.searchsorted(cdf, self.rng.random(batch_size) * cdf[-1], side="right")
        index = np.minimum(index, len(stored) - 1)
        weight = (len(stored) * p[index] / cdf[-1]) ** -self.priority_beta
        self._drawn = stored[index]
        return self._drawn, (weight / weight.max()).astype(np.float32)

    def update_priorities(self, errors: np.ndarray) -> None:
        """Set the priorities of the last batch's steps to its rows' |TD ``errors``| (B,) (a
        step drawn twice keeps its last row's); a floor of 1e-6 keeps every step drawable."""
        if not self.priority_alpha:
            raise RuntimeError("update_priorities needs a buffer with priority_alpha > 0.")
        priority = np.abs(np.asarray(errors, dtype=np.float64)) + 1e-6
        if priority.shape != self._drawn.shape:
            raise ValueError(f"{len(priority)} errors for a batch of {len(self._drawn)} rows.")
        self._priority[self._drawn % self.capacity] = priority
        self._max_priority = max(self._max_priority, float(priority.max()))

    def _draw(self, batch_size: int, n_stored: int) -> np.ndarray:
        """``batch_size`` absolute positions of stored steps, an off-policy step drawn with
        relative weight ``off_policy_weight`` w: uniform draws, an off-policy one kept with
        probability min(1, w), another with min(1, 1 / w), rejected ones drawn again (the
        accepted draws follow the weighted distribution; after 32 rounds the rest stay as
        drawn, e.g. when every stored step is of one kind and its weight is 0)."""
        rng = self.rng
        positions = self._tail + rng.integers(0, n_stored, size=batch_size)
        weight = self.off_policy_weight
        if weight != 1.0:
            # accept an off-policy step with probability min(1, w), another with min(1, 1 / w)
            keep_off, keep_on = min(1.0, weight), 1.0 / weight if weight > 1.0 else 1.0
            pending = np.arange(batch_size)  # rows whose latest draw is not yet accepted
            for _ in range(32):
                off = self._off_policy[positions[pending] % self.capacity]
                keep = np.where(off, keep_off, keep_on)
                pending = pending[rng.random(len(pending)) >= keep]
                if not len(pending):
                    break
                positions[pending] = self._tail + rng.integers(0, n_stored, size=len(pending))
        return positions

    def _n_step_returns(
        self, positions: np.ndarray, goal: np.ndarray, n_her: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """n-step windows of ``positions`` for ``goal``: (reward, last position, terminal,
        discount), each (B,); see the module docstring. The first ``n_her`` rows carry
        substitute goals. One ``compute_reward`` call for their (n_her, n) window, O(B n).

        Step j of row b is position p_b + j. Its reward r_bj and terminal flag d_bj are those
        of the row's goal; the window's length is m_b = min(n, end_b - p_b, 1 + first j with
        d_bj); reward_b = sum_{j < m_b} gamma^j (r_bj + step_reward).
        """
        n, capacity, gamma = self.n_step, self.capacity, self.gamma
        b = len(positions)
        end = self._episode_end[positions % capacity]  # (B,)
        steps = positions[:, None] + self._offsets  # (B, n) absolute positions
        inside = steps < end[:, None]  # (B, n): within the row's own episode
        # Steps past the episode's end read its last step (masked out below), never the next
        # episode.
        window = np.minimum(steps, end[:, None] - 1)  # (B, n) positions
        if end.max() > capacity:  # the ring has wrapped: positions to slots
            window %= capacity
        # Real-goal rows: the stored rewards and terminal flags (they hold what compute_reward
        # does not express, e.g. a blocked move's reward).
        reward = self._real_reward(window)  # (B, n)
        terminal = self._terminated[window]  # (B, n)
        if n_her:
            her = window[:n_her].reshape(-1)  # (R n,) the substitute rows' window steps
            new_goal = np.repeat(goal[:n_her], n, axis=0)  # (R n, *goal_shape)
            her_reward, her_terminal = self._outcome(her, new_goal)
            reward[:n_her] = her_reward.reshape(n_her, n)
            terminal[:n_her] = her_terminal.reshape(n_her, n)
        # Length m: up to and including the first terminal step, within the episode and n.
        stop = terminal & inside  # (B, n)
        m = np.where(stop.any(axis=1), stop.argmax(axis=1) + 1, inside.sum(axis=1))  # (B,)
        if self.cut_off_policy:
            # m <= the first j >= 1 whose action was not the learner's (steps past the end
            # read the last step, but m <= the steps inside already)
            later = self._off_policy[window] & (self._offsets >= 1)  # (B, n)
            m = np.minimum(m, np.where(later.any(axis=1), later.argmax(axis=1), n))
        used = np.arange(n) < m[:, None]  # (B, n)
        powers = self._powers  # (n,) gamma^j
        total = (reward * used) @ powers  # (B,)
        last_terminal = terminal[np.arange(b), m - 1].astype(np.float32)  # (B,)
        discount = np.float32(gamma) ** m.astype(np.float32) * (1.0 - last_terminal)
        return (
            total.astype(np.float32),
            positions + m - 1,
            last_terminal,
            discount.astype(np.float32),
        )

    def episode_relabels(self) -> Batch:
        """Exactly k relabels of every transition of the last finished episode, in step order.

        Rows are t = 0 (k rows), t = 1 (k rows), ... With strategy 'none' (or k = 0) the batch
        is empty.

        Raises:
            RuntimeError: no episode has ended yet, or the last one was already overwritten.
        """
        if self.strategy is GoalSelectionStrategy.NONE or self.k == 0:
            return self._empty_batch()
        start, end = self._last_episode
        if end == start:
            raise RuntimeError("no finished episode to relabel yet (call end_episode() first).")
        if start < self._tail:
            raise RuntimeError(
                "the last finished episode was overwritten by the running one; "
                "call episode_relabels() right after end_episode()."
            )
        positions = np.repeat(np.arange(start, end, dtype=np.int64), self.k)
        slots = positions % self.capacity
        goal_slots = self._goal_indices(positions) % self.capacity
        goal, reward, terminal = self._relabelled(slots, goal_slots)
        return Batch(
            obs=self._obs[slots],
            goal=goal,
            action=self._action[slots],
            reward=reward,
            next_obs=self._next_obs[slots],
            terminal=terminal,
            relabelled=np.ones(len(slots), dtype=bool),
        )

    def _empty_batch(self) -> Batch:
        """A batch of length 0 with this buffer's shapes and dtypes."""
        return Batch(
            obs=self._obs[:0].copy(),
            goal=self._desired_goal[:0].copy(),
            action=self._action[:0].copy(),
            reward=self._reward[:0].copy(),
            next_obs=self._next_obs[:0].copy(),
            terminal=np.zeros(0, dtype=np.float32),
            relabelled=np.zeros(0, dtype=bool),
        )

    # --- checkpoints ---------------------------------------------------------------------

    _ARRAYS = (
        "_obs",
        "_next_obs",
        "_desired_goal",
        "_next_achieved_goal",
        "_action",
        "_reward",
        "_terminated",
        "_is_success",
        "_off_policy",
        "_episode_start",
        "_episode_end",
    )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: numpy arrays and python scalars (copies)."""
        state: dict[str, Any] = {
            name.lstrip("_"): getattr(self, name).copy() for name in self._ARRAYS
        }
        state.update(
            capacity=self.capacity,
            strategy=self.strategy.value,
            k=self.k,
            head=self._head,
            tail=self._tail,
            running_start=self._running_start,
            last_episode=list(self._last_episode),
            n_episodes=self._n_episodes,
            rng_state=copy.deepcopy(self.rng.bit_generator.state),
        )
        if self.priority_alpha:
            state.update(priority=self._priority.copy(), max_priority=self._max_priority)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict()``; capacity and shapes must match this buffer's."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"checkpoint buffer capacity {state['capacity']} differs from {self.capacity}."
            )
        for name in self._ARRAYS:
            array = getattr(self, name)
            if name == "_off_policy" and "off_policy" not in state:
                array[...] = False  # a checkpoint from before the flag: all the learner's
                continue
            saved = np.asarray(state[name.lstrip("_")])
            if saved.shape != array.shape:
                raise ValueError(
                    f"checkpoint buffer array {name.lstrip('_')} has shape {saved.shape}, "
                    f"expected {array.shape}."
                )
            array[...] = saved
        self.strategy = GoalSelectionStrategy(state["strategy"])
        self.k = int(state["k"])
        self._head = int(state["head"])
        self._tail = int(state["tail"])
        self._running_start = int(state["running_start"])
        start, end = state["last_episode"]
        self._last_episode = (int(start), int(end))
        self._n_episodes = int(state["n_episodes"])
        self.rng.bit_generator.state = copy.deepcopy(state["rng_state"])
        if self.priority_alpha and "priority" in state:
            self._priority[...] = np.asarray(state["priority"])
            self._max_priority = float(state["max_priority"])
