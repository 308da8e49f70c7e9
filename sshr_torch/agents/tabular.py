"""Tabular goal-conditioned Q-learning, Q(s, g, a) (numpy only, no torch).

The learner of the paper's tabular experiments, with Keulen's defaults: Q0 = 0, alpha 0.1,
gamma 0.99, greedy ties broken at random (epsilon is the caller's: 0.1 constant in Keulen's
code). It is *online*: ``learn`` steps on each real transition as it happens, and at the end
of each episode on the buffer's HER relabels of that episode. With HER 'none' it is plain
Q-learning on the real goal, the paper's "SS alone" baseline.

Q is stored sparse: one entry of ``n_actions`` values per (state, goal) pair that an update
has written, so memory grows with what was learned, not with states x goals (HER makes nearly
every reached cell a goal: a dense table per goal is cells squared). A pair never updated reads
as ``q_init``. ``bytes_per_entry`` gives the measured cost of one entry.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import numpy as np

from sshr_torch.agents.base import Transition
from sshr_torch.her import Batch, HerReplayBuffer

__all__ = ["TabularAgent"]

_INITIAL_ROWS = 64
# Measured (tests/test_tabular.py checks it): a dict entry with its slack, the state key and the
# row-number int objects; the values add 8 bytes per action, doubled for the growth's slack.
_DICT_BYTES_PER_ENTRY = 112


class TabularAgent:
    """Goal-conditioned Q-learning on Discrete states and goals.

    Update, for each row of a batch in order:
        Q(s, g, a) <- Q(s, g, a) + alpha * (r + gamma * (1 - terminal) * max_a' Q(s', g, a')
                                            - Q(s, g, a))

    Args:
        n_states: size of the Discrete observation space (states are ints in [0, n_states)).
        n_actions: number of actions.
        alpha: learning rate.
        gamma: discount.
        q_init: initial value of every Q(s, g, a).
        seed: seeds the generator used for exploration and tie-breaks.
    """

    def __init__(
        self,
        n_states: int,
        n_actions: int,
        *,
        alpha: float = 0.1,
        gamma: float = 0.99,
        q_init: float = 0.0,
        seed: int = 0,
    ) -> None:
        if n_states < 1 or n_actions < 1:
            raise ValueError(f"n_states and n_actions must be >= 1, got {n_states}, {n_actions}.")
        self.n_states = int(n_states)
        self.n_actions = int(n_actions)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.q_init = float(q_init)
        self.rng = np.random.default_rng(seed)
        self._clear()

    @staticmethod
    def bytes_per_entry(n_actions: int) -> int:
        """Memory of one stored (state, goal) entry, amortised: its ``n_actions`` float64 values
        (with the doubling growth's slack) and its place in the goal's dict (entry, key and
        row-number objects, with the dict's slack), as measured with tracemalloc on CPython.
        """
        return 16 * n_actions + _DICT_BYTES_PER_ENTRY

    # --- storage -------------------------------------------------------------------------

    def _clear(self) -> None:
        self._rows: dict[int, dict[int, int]] = {}  # goal -> {state: row of self._q}
        self._n_rows = 0
        self._set_values(np.full((_INITIAL_ROWS, self.n_actions), self.q_init))

    def _set_values(self, q: np.ndarray) -> None:
        """Make ``q`` (capacity, n_actions), C-contiguous float64, the entries' values.

        The per-transition code reads and writes Q through ``_flat``, a flat memoryview of the
        same memory, at ``row * n_actions + a``: indexing a memoryview gives python floats with
        none of numpy's scalar overhead (the same IEEE doubles, so the same results).
        """
        self._q = q
        self._flat = memoryview(q.reshape(-1))

    def _new_row(self, goal_rows: dict[int, int], s: int) -> int:
        """A row for a new (s, goal) entry, at q_init; grows the values by doubling (take
        ``_flat`` afterwards)."""
        row = self._n_rows
        if row == len(self._q):
            grown = np.full((2 * len(self._q), self.n_actions), self.q_init)
            grown[:row] = self._q
            self._set_values(grown)
        goal_rows[s] = row
        self._n_rows = row + 1
        return row

    def _goal_rows(self, goal: int) -> dict[int, int]:
        """The {state: row} dict of ``goal``, created (empty) if the goal is new."""
        rows = self._rows.get(goal)
        if rows is None:
            if not 0 <= goal < self.n_states:
                raise ValueError(f"goal {goal} is outside the Discrete({self.n_states}) space.")
            rows = self._rows[goal] = {}
        return rows

    def __getstate__(self) -> dict[str, Any]:
        """For pickle and deepcopy: everything but the memoryview, which is rebuilt."""
        return {key: value for key, value in self.__dict__.items() if key != "_flat"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._set_values(self._q)

    # --- goals ---------------------------------------------------------------------------

    @property
    def n_goals(self) -> int:
        """Goals with at least one stored entry."""
        return len(self._rows)

    @property
    def n_entries(self) -> int:
        """Stored (state, goal) entries."""
        return self._n_rows

    @property
    def goals(self) -> list[int]:
        """Goals with stored entries, in the order they appeared."""
        return list(self._rows)

    def table(self, goal: Any) -> np.ndarray:
        """Q(., goal, .) as a dense (n_states, n_actions) array (q_init where never updated)."""
        return self.q_values(np.arange(self.n_states), goal)

    # --- acting --------------------------------------------------------------------------

    def act(self, obs: Any, goal: Any, epsilon: float) -> int:
        """Epsilon-greedy: uniform with probability epsilon, else greedy (ties at random)."""
        s = _as_int(obs, "state")
        if not 0 <= s < self.n_states:
            raise ValueError(f"state {s} is outside the Discrete({self.n_states}) space.")
        rng = self.rng
        if epsilon > 0.0 and rng.random() < epsilon:
            return int(rng.integers(self.n_actions))
        rows = self._rows.get(_as_int(goal, "goal"))
        row = None if rows is None else rows.get(s)
        if row is None:  # every action still at q_init: all tied
            return int(rng.integers(self.n_actions))
        n_actions = self.n_actions
        start = row * n_actions
        q = self._flat[start : start + n_actions].tolist()  # Q(s, g, .)
        best = max(q)
        if q.count(best) == 1:
            return q.index(best)
        # A uniform tie-break: the same draw as rng.choice(ties) (it calls integers(0, n)),
        # without its argument handling; ties are common while Q is still q_init.
        ties = [a for a, value in enumerate(q) if value == best]
        return ties[int(rng.integers(len(ties)))]

    def q_values(self, states: np.ndarray, goal: Any) -> np.ndarray:
        """Q(s, goal, a) for each state, shape (n, n_actions) (a copy)."""
        states = _as_states(states)
        values = np.full((len(states), self.n_actions), self.q_init)
        rows = self._rows.get(_as_int(goal, "goal"))
        if rows:
            found = np.fromiter(
                map(rows.get, states.tolist(), itertools.repeat(-1)), np.int64, len(states)
            )
            stored = found >= 0
            values[stored] = self._q[found[stored]]
        return values

    def pair_q_values(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Q(s_i, g_i, a) for each (state, goal) row, (n, n_actions) (a copy): one dictionary
        look-up a row, as goal reach walks many goals at once."""
        states, goals = _as_states(states), _as_states(goals)
        if len(states) != len(goals):
            raise ValueError(f"{len(states)} states but {len(goals)} goals.")
        empty: dict[int, int] = {}
        found = np.fromiter(
            (
                self._rows.get(g, empty).get(s, -1)
                for s, g in zip(states.tolist(), goals.tolist(), strict=True)
            ),
            np.int64,
            len(states),
        )
        values = np.full((len(states), self.n_actions), self.q_init)
        stored = found >= 0
        values[stored] = self._q[found[stored]]
        return values

    def max_q(self, states: np.ndarray, goal: Any) -> np.ndarray:
        """max_a Q(s, goal, a) for each state, shape (n,)."""
        return self.q_values(states, goal).max(axis=1)

    # --- learning ------------------------------------------------------------------------

    def learn(
        self, buffer: HerReplayBuffer, env_steps: int, transition: Transition | None
    ) -> dict[str, float]:
        """Online: one step on each real transition, then the episode's HER relabels at its end.

        Returns ``td_loss`` (the squared TD error of the transition, or the relabels' mean) and
        ``q_mean``; {} at the end of an episode with nothing to relabel.
        """
        if transition is not None:
            old, td_error = self._learn_one(*transition)
            return {"td_loss": td_error * td_error, "q_mean": old}
        relabels = buffer.episode_relabels()
        return self.update(relabels) if len(relabels.action) else {}

    def _learn_one(
        self, obs: Any, goal: Any, action: Any, reward: Any, next_obs: Any, terminal: Any
    ) -> tuple[float, float]:
        """One Q-learning step; returns (Q(s, g, a) before it, TD error)."""
        s, s_next = _as_int(obs, "state"), _as_int(next_obs, "state")
        n_states = self.n_states
        if not (0 <= s < n_states and 0 <= s_next < n_states):
            raise ValueError(f"a state is outside the Discrete({n_states}) space.")
        a = int(action)
        n_actions = self.n_actions
        if not 0 <= a < n_actions:
            raise ValueError(f"action {a} is outside the Discrete({n_actions}) space.")
        goal = _as_int(goal, "goal")
        rows = self._rows.get(goal)
        if rows is None:
            rows = self._goal_rows(goal)
        row = rows.get(s)
        if row is None:
            row = self._new_row(rows, s)  # may grow (replace) the values: take _flat after
        flat = self._flat
        sa = row * n_actions + a
        old = flat[sa]
        target = float(reward)
        if not terminal:
            next_row = rows.get(s_next)
            if next_row is None:
                target += self.gamma * self.q_init
            else:
                start = next_row * n_actions
                target += self.gamma * max(flat[start : start + n_actions])
        td_error = target - old
        flat[sa] = old + self.alpha * td_error
        return old, td_error

    def update(self, batch: Batch) -> dict[str, float]:
        """Apply the Q-learning update to each row of ``batch`` in order (see the class).

        Rows are applied one after another, so a later row sees the earlier rows' changes,
        exactly as if the transitions were learned one at a time. Returns ``td_loss`` (mean
        squared TD error before each row's step) and ``q_mean`` (mean Q(s, g, a) before it).

        Raises:
            ValueError: states or goals are not Discrete (ints) or out of range.
        """
        n = len(batch.action)
        if n == 0:
            return {"td_loss": 0.0, "q_mean": 0.0}
        if n == 1 and batch.obs.ndim == batch.goal.ndim == batch.next_obs.ndim == 1:
            # One real transition: skip the vectorised conversions.
            old, td_error = self._learn_one(
                batch.obs[0],
                batch.goal[0],
                batch.action[0],
                batch.reward[0],
                batch.next_obs[0],
                batch.terminal[0],
            )
            return {"td_loss": td_error * td_error, "q_mean": old}
        obs = _as_states(batch.obs, self.n_states).tolist()
        next_obs = _as_states(batch.next_obs, self.n_states).tolist()
        goals = _as_states(batch.goal).tolist()
        actions = np.asarray(batch.action)
        n_actions = self.n_actions
        if not (actions.min() >= 0 and actions.max() < n_actions):
            raise ValueError(f"an action is outside the Discrete({n_actions}) space.")
        actions = actions.tolist()
        rewards = np.asarray(batch.reward, dtype=np.float64).tolist()
        terminals = np.asarray(batch.terminal).tolist()
        alpha, gamma, q_init = self.alpha, self.gamma, self.q_init
        by_goal, flat = self._rows, self._flat
        sq_error = 0.0
        q_sum = 0.0
        rows: dict[int, int] = {}
        last_goal = None
        for goal, s, a, reward, s_next, terminal in zip(
            goals, obs, actions, rewards, next_obs, terminals, strict=True
        ):
            if goal != last_goal:  # relabel batches come in runs of the same goal often enough
                rows = by_goal.get(goal) or self._goal_rows(goal)
                last_goal = goal
            row = rows.get(s)
            if row is None:
                row = self._new_row(rows, s)  # may grow (replace) the values: take _flat after
                flat = self._flat
            sa = row * n_actions + a  # Q(s, g, a)
            old = flat[sa]
            if terminal:
                target = reward
            else:
                next_row = rows.get(s_next)
                if next_row is None:
                    target = reward + gamma * q_init
                else:
                    start = next_row * n_actions
                    target = reward + gamma * max(flat[start : start + n_actions])
            td_error = target - old
            flat[sa] = old + alpha * td_error
            sq_error += td_error * td_error
            q_sum += old
        return {"td_loss": float(sq_error / n), "q_mean": float(q_sum / n)}

    # --- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The stored entries, settings and generator state (numpy arrays and python scalars).

        Entries are ``goal`` (n,), ``state`` (n,) and ``q`` (n, n_actions), in storage order.
        """
        goals = np.empty(self._n_rows, dtype=np.int64)
        states = np.empty(self._n_rows, dtype=np.int64)
        for goal, rows in self._rows.items():
            index = np.fromiter(rows.values(), np.int64, len(rows))
            goals[index] = goal
            states[index] = np.fromiter(rows.keys(), np.int64, len(rows))
        return {
            "goal": goals,
            "state": states,
            "q": self._q[: self._n_rows].copy(),  # (n_entries, n_actions)
            "n_states": self.n_states,
            "n_actions": self.n_actions,
            "alpha": self.alpha,
            "gamma": self.gamma,
            "q_init": self.q_init,
            "rng_state": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict()``; the state and action counts must match."""
        if (int(state["n_states"]), int(state["n_actions"])) != (self.n_states, self.n_actions):
            raise ValueError(
                f"checkpoint Q table is for {state['n_states']} states x {state['n_actions']} "
                f"actions, this agent has {self.n_states} x {self.n_actions}."
            )
        q = np.asarray(state["q"], dtype=np.float64).reshape(-1, self.n_actions)
        goals = np.asarray(state["goal"], dtype=np.int64)
        states = np.asarray(state["state"], dtype=np.int64)
        if not len(goals) == len(states) == len(q):
            raise ValueError("checkpoint Q table: goal, state and q differ in length.")
        if len(goals) and not (
            min(goals.min(), states.min()) >= 0 and max(goals.max(), states.max()) < self.n_states
        ):
            raise ValueError(f"checkpoint Q table has a state outside Discrete({self.n_states}).")
        self.alpha = float(state["alpha"])
        self.gamma = float(state["gamma"])
        self.q_init = float(state["q_init"])
        self._clear()
        capacity = max(_INITIAL_ROWS, 1 << max(len(q) - 1, 0).bit_length())
        values = np.full((capacity, self.n_actions), self.q_init)
        values[: len(q)] = q
        self._set_values(values)
        by_goal = self._rows
        for row, (goal, s) in enumerate(zip(goals.tolist(), states.tolist(), strict=True)):
            rows = by_goal.get(goal)
            if rows is None:
                rows = by_goal[goal] = {}
            rows[s] = row
        self._n_rows = len(q)
        if self._n_rows != sum(map(len, by_goal.values())):
            raise ValueError("checkpoint Q table stores a (state, goal) pair twice.")
        self.rng.bit_generator.state = state["rng_state"]


def _as_int(value: Any, what: str) -> int:
    """A Discrete state or goal as a python int; a clear error for anything else."""
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(
            f"the tabular agent needs Discrete (integer) {what}s, got {value!r}; "
            "use the DQN for other spaces."
        ) from None


def _as_states(values: Any, n_states: int | None = None) -> np.ndarray:
    """A stack of Discrete states or goals as an int64 array (n,); a clear error otherwise."""
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"the tabular agent needs Discrete (integer) states and goals, got an array of "
            f"shape {array.shape} and dtype {array.dtype}; use the DQN for other spaces."
        )
    if n_states is not None and len(array) and not (array.min() >= 0 and array.max() < n_states):
        raise ValueError(f"a state is outside the Discrete({n_states}) space.")
    return array.astype(np.int64, copy=False)
