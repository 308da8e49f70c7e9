"""Smart Start: count model, UCB choice of the Smart Start state, value-iteration planner.

Smart Start (paper Sec. III.A, Algorithm 1 lines 17-29; Keulen's thesis code) makes exploration
directed and persistent: at the start of an episode it picks the visited state S_ss that looks
most promising to explore from (Eq. 1), plans a walk to it on an empirical model of the
environment built from visit counts, walks there, and only then lets the learner explore.

This module imports no torch and knows nothing about mazes: states are observations of any
discrete environment (python / numpy ints for ``Discrete`` spaces, ``np.uint8`` arrays for
``MultiBinary``), identified by :func:`state_key`.

Pieces, from the bottom up:

* :class:`CountModel` - C(s), C(s, a), C(s, a, s') and reward sums over visited states only,
  O(1) amortised per step; exports P(s'|s, a) as a ``scipy.sparse`` CSR matrix.
* :func:`eq1_values` / :func:`ucb_scores` / :func:`smart_start_state` - Eq. 1, the choice of
  S_ss: its value term (the learner's values, or zero as the paper's text has it), the count
  bonus, the argmax; optionally over the frontier only (states with an untried action).
* :func:`ucb1_action` - UCB1 over the count model's C(s, a), untried actions first: the
  exploration after the guided walk (``TrainConfig.explore`` 'ucb1' and 'directed').
* :func:`value_iteration` - TRAJOPT: value iteration with reward 1 for landing in the target
  region, which is absorbing; vectorised sparse mat-vecs.
* :class:`SmartStartController` - the per-episode logic the trainer drives: ``begin_episode``,
  ``act`` for each guided step, ``observe`` for every transition, ``end_episode`` for the report.
* :class:`ModelGoalValues` - the model's value of every visited state for a goal (value
  iteration toward it, in the env's rewards): values for the DQN's targets (``model_values``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

__all__ = [
    "CountModel",
    "ModelGoalValues",
    "SmartStartController",
    "SmartStartReport",
    "SS_VALUES",
    "UCB_FORMS",
    "eq1_values",
    "known_distances",
    "moves_return",
    "smart_start_state",
    "state_key",
    "ucb1_action",
    "ucb_scores",
    "value_iteration",
]

UcbForm = Literal["paper", "keulen"]
UCB_FORMS: tuple[str, ...] = get_args(UcbForm)
"""Where c_ss sits in Eq. 1: 'paper' (outside the square root) or 'keulen' (inside)."""
SsValue = Literal["learner", "zero"]
SS_VALUES: tuple[str, ...] = get_args(SsValue)
"""The value terms of Eq. 1 (``TrainConfig.ss_value``); :func:`eq1_values` computes each."""
ExploreName = Literal["epsilon", "ucb1", "directed"]
EXPLORES: tuple[str, ...] = get_args(ExploreName)
"""What the learner does after the guided walk (``TrainConfig.explore``)."""
ModelMode = Literal["floor", "target", "q"]
"""How :class:`ModelGoalValues` enter the DQN's TD targets (``agents.targets``)."""
ModelLoss = Literal["split", "entries"]
"""How the DQN's 'q' mode weighs a row's model targets (``agents.targets.model_q_loss``)."""
ModelGoals = Literal["env", "all"]
"""Which goals :class:`ModelGoalValues` answers for: the refreshed (env's) goal, or every goal."""
# The per-goal distance cache of ModelGoalValues holds at most this many bytes: one row of
# distances per goal, one entry per state (uint16 while the states number under 65,535, int32
# beyond: distance_dtype). When it is full the goal searched longest ago makes room, and that is
# costly: goals then leave and re-enter faster than the searches follow, and their rows fall back
# to TD targets. At 128 MB (3,289 of generated:101x101:seed=0's 5,101 goals) that run learnt no
# greedy path in 300k env steps; with room for every goal it learnt the shortest one (2,572 moves)
# at 100,848 (docs/large_mazes.md). 2 GiB holds every goal of a 201x201 maze (1.65 GB).
DISTANCE_CACHE_BYTES = 2 << 30
# The breadth-first searches of ModelGoalValues visit at most this many states per batch on
# average (a credit that grows by it each batch, spent on whole searches): a search every 10th
# update on a 201x201 maze (20,401 states), 7 a batch on keulen_hard (279 states).
# docs/goal_reach.md measures the cost (experiments/benchmarks/bench_model_goals.py).
SEARCH_STATES_PER_BATCH = 2048
# Goals searched on an older graph are searched again this many at a time (at least).
STALE_SEARCHES = 32

# C(s, a, s') is a dict keyed by one packed int, (s * n_actions + a) * _PACK + s', which is
# cheaper to build and hash than a tuple; it bounds the model to 2**32 visited states.
_PACK = 1 << 32
# Index dtype of the sparse arrays built here: scipy keeps int32 indices as they are, and spends
# a scan and a copy casting int64 ones down (half the cost of a constructor on a small model).
_INDEX = np.int32


def state_key(obs: Any) -> Hashable:
    """Hashable id of a discrete observation.

    ``int(obs)`` for python / numpy integers and 0-d arrays, ``obs.tobytes()`` for arrays (e.g. a
    ``MultiBinary`` observation). Two array observations are the same state when they have the
    same bytes, so all observations of one environment must share one dtype.
    """
    if type(obs) is int:  # the common case first: a Discrete env's python int
        return obs
    if isinstance(obs, (int, np.integer)):
        return int(obs)
    arr = np.asarray(obs)
    if arr.ndim == 0:
        return int(arr)
    return np.ascontiguousarray(arr).tobytes()


def _copy_observation(obs: Any) -> Any:
    """A stored copy of an observation: a python int, or an array the caller cannot mutate."""
    if isinstance(obs, (int, np.integer)):
        return int(obs)
    arr = np.array(obs, copy=True)
    if arr.ndim == 0:
        return int(arr)
    arr.setflags(write=False)
    return arr


@dataclass
class _Layout:
    """The sparsity pattern of C(s, a, s'): CSR order of the packed keys, rows and columns."""

    n_keys: int  # len(C(s, a, s')) when built
    n_states: int  # n_states when built
    order: np.ndarray  # dict (insertion) order -> CSR order
    rows: np.ndarray  # (nnz,) int64: s * n_actions + a
    cols: np.ndarray  # (nnz,) int64: s'
    indices: np.ndarray  # cols as CSR indices (int32)
    indptr: np.ndarray  # (n_states * n_actions + 1,) int32
    graph: sp.csr_matrix | None = None  # CountModel.graph(), built on first use
    reverse_graph: sp.csr_matrix | None = None  # its transpose, built on first use
    successors: np.ndarray | None = None  # CountModel.successors(), built on first use
    deterministic: bool | None = None  # CountModel.is_deterministic(), found on first use


class CountModel:
    """Visit counts and the empirical model over the visited states of a discrete environment.

    Each state gets a dense index (0, 1, ...) the first time it is seen, as the start or the end
    of a transition, so nothing is allocated for states never seen. Per transition
    (s, a, r, s', terminal) it counts

    * C(s): steps taken from s (0 for a state only ever arrived at: "never left"),
    * C(s, a) and the reward sum of (s, a),
    * C(s, a, s'),
    * arrivals at s', and how many of them ended the episode (``terminal=True``).

    The update is plain python on lists and one dict (O(1) amortised, about a microsecond);
    numpy arrays are built only on export (:meth:`transition_model`, the count properties).

    A state is *terminal* when every arrival at it ended the episode (the goal of a fixed-goal
    task). Counting arrivals, rather than flagging a state the first time an episode ended there,
    keeps states that also occur mid-episode (a past goal of a task with random goals, a cell in
    front of a wall that ended one episode) usable as Smart Start states.
    """

    def __init__(self, n_actions: int) -> None:
        """Make an empty model for an environment with ``n_actions`` discrete actions."""
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions}.")
        self.n_actions = int(n_actions)
        self.clear()

    def clear(self) -> None:
        """Forget everything counted so far."""
        self._index: dict[Hashable, int] = {}
        self._observations: list[Any] = []
        self._state_counts: list[int] = []  # C(s)
        self._sa_counts: list[int] = []  # C(s, a) at s * n_actions + a
        self._reward_sums: list[float] = []  # sum of rewards of (s, a), same layout
        self._sas_counts: dict[int, int] = {}  # C(s, a, s') at (s * n_actions + a) * _PACK + s'
        self._arrivals: list[int] = []
        self._terminal_arrivals: list[int] = []
        self._moves: list[list[tuple[int, int]]] = []  # per state: (a, s') seen, first-seen order
        self.n_steps = 0
        """Transitions counted so far (the sum over s of C(s))."""
        self._version = 0  # bumped by every update: invalidates the cached export
        self._export: tuple[int, sp.csr_matrix, np.ndarray] | None = None
        self._obs_cache: np.ndarray | None = None
        # The sparsity pattern of C(s, a, s') changes only when a new (s, a, s') or state turns
        # up, which stops happening once the reachable part of an env has been explored. It is
        # cached, keyed by (number of (s, a, s') keys, n_states): keys are only ever added and a
        # dict keeps insertion order, so an unchanged count means unchanged keys in the same
        # order. Saves the key export, the argsort and the indptr build on most plans (an export
        # of keulen_medium's 124-state model fell from about 89 to 62 us).
        self._layout: _Layout | None = None

    # ---- update -------------------------------------------------------------------------------

    def _add_state(self, key: Hashable, obs: Any) -> int:
        """Give a never-seen state the next dense index."""
        index = len(self._observations)
        self._index[key] = index
        self._observations.append(_copy_observation(obs))
        self._state_counts.append(0)
        self._sa_counts.extend([0] * self.n_actions)
        self._reward_sums.extend([0.0] * self.n_actions)
        self._arrivals.append(0)
        self._terminal_arrivals.append(0)
        self._moves.append([])
        return index

    def add_state(self, state: Any) -> int:
        """Index of ``state``, adding it (with zero counts) when it was never seen."""
        key = state_key(state)
        index = self._index.get(key)
        return self._add_state(key, state) if index is None else index

    def update(
        self, state: Any, action: int, reward: float, next_state: Any, terminal: bool
    ) -> None:
        """Count one transition (s, a, r, s'); ``terminal`` is True when s' ended the episode.

        A time-limit truncation is not terminal. The first observation seen for each state is
        copied and kept (see :meth:`observation`).
        """
        index = self._index
        key = state if type(state) is int else state_key(state)
        s = index.get(key)
        if s is None:
            s = self._add_state(key, state)
        key = next_state if type(next_state) is int else state_key(next_state)
        s2 = index.get(key)
        if s2 is None:
            s2 = self._add_state(key, next_state)
        a = int(action)
        if not 0 <= a < self.n_actions:
            raise ValueError(f"action must be in [0, {self.n_actions}), got {action}.")
        sa = s * self.n_actions + a
        self._state_counts[s] += 1
        self._sa_counts[sa] += 1
        self._reward_sums[sa] += float(reward)
        packed = sa * _PACK + s2
        sas = self._sas_counts
        seen = sas.get(packed, 0)
        if not seen:
            self._moves[s].append((a, s2))
        sas[packed] = seen + 1
        self._arrivals[s2] += 1
        if terminal:
            self._terminal_arrivals[s2] += 1
        self.n_steps += 1
        self._version += 1

    # ---- look-ups -----------------------------------------------------------------------------

    @property
    def n_states(self) -> int:
        """Number of states seen (including those only arrived at, with C(s) = 0)."""
        return len(self._observations)

    def __len__(self) -> int:
        """Number of states seen, as :attr:`n_states`."""
        return len(self._observations)

    def index(self, state: Any) -> int | None:
        """Dense index of ``state``, or None when it was never seen."""
        return self._index.get(state if type(state) is int else state_key(state))

    def observation(self, index: int) -> Any:
        """The stored observation of the state with dense index ``index``."""
        return self._observations[index]

    def observations(self) -> np.ndarray:
        """All stored observations in index order: (n_states,) int64, or (n_states, *shape).

        The array is cached and extended as states are added; do not modify it.
        """
        n = len(self._observations)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        cache = self._obs_cache
        have = 0 if cache is None else cache.shape[0]
        if have < n:
            new = self._observations[have:]
            block = np.array(new, dtype=np.int64) if isinstance(new[0], int) else np.stack(new)
            cache = block if cache is None else np.concatenate([cache, block])
            cache.setflags(write=False)
            self._obs_cache = cache
        return cache

    @property
    def state_counts(self) -> np.ndarray:
        """C(s): steps taken from each state, (n_states,) int64."""
        return np.array(self._state_counts, dtype=np.int64)

    @property
    def state_action_counts(self) -> np.ndarray:
        """C(s, a), (n_states, n_actions) int64."""
        return np.array(self._sa_counts, dtype=np.int64).reshape(-1, self.n_actions)

    @property
    def reward_sums(self) -> np.ndarray:
        """Sum of the rewards received for each (s, a), (n_states, n_actions) float64."""
        return np.array(self._reward_sums, dtype=np.float64).reshape(-1, self.n_actions)

    def transition_count(self, state: Any, action: int, next_state: Any) -> int:
        """C(s, a, s') for observations ``state`` and ``next_state`` (0 when never seen)."""
        s, s2 = self.index(state), self.index(next_state)
        if s is None or s2 is None:
            return 0
        return self._sas_counts.get((s * self.n_actions + int(action)) * _PACK + s2, 0)

    def transition_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """C(s, a, s') as COO triplets: rows s * n_actions + a, columns s', counts (int64).

        Sorted by row, then column (CSR order), with no duplicates: the packed keys are unique
        and sort that way. The rows and columns are shared between calls: do not modify them.
        """
        layout = self._sparsity()
        n = len(self._sas_counts)
        counts = np.fromiter(self._sas_counts.values(), dtype=np.int64, count=n)
        return layout.rows, layout.cols, counts[layout.order]

    def sample_transitions(
        self, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` moves (s, a, s') drawn from the empirical model, as dense indices (int64, (n,)
        each): (s, a) uniform over the tried pairs, s' by C(s, a, s') / C(s, a) (Dyna's
        simulated experience; on a deterministic model, uniform over the moves seen).

        Raises:
            ValueError: no transition has been counted yet.
        """
        layout = self._sparsity()
        rows, cols = layout.rows, layout.cols
        if not len(rows):
            raise ValueError("the count model has no transition to draw yet.")
        if self.is_deterministic():  # one s' per (s, a): uniform over the moves seen
            keys = rng.integers(0, len(rows), size=n)
        else:
            counts = self.transition_counts()[2]
            totals = np.bincount(rows, weights=counts)[rows]  # C(s, a) of each key
            n_pairs = np.count_nonzero(np.bincount(rows))
            keys = rng.choice(len(rows), size=n, p=counts / totals / n_pairs)
        pair = rows[keys]
        return pair // self.n_actions, pair % self.n_actions, cols[keys].astype(np.int64)

    def _sparsity(self) -> _Layout:
        """The cached sparsity pattern of C(s, a, s'), rebuilt when a key or state was added."""
        n_keys, n_states = len(self._sas_counts), len(self._observations)
        layout = self._layout
        if layout is not None and layout.n_keys == n_keys and layout.n_states == n_states:
            return layout
        packed = np.fromiter(self._sas_counts.keys(), dtype=np.int64, count=n_keys)
        order = np.argsort(packed)
        packed = packed[order]
        rows, cols = packed // _PACK, packed % _PACK
        indptr = np.zeros(n_states * self.n_actions + 1, dtype=_INDEX)
        np.cumsum(np.bincount(rows, minlength=n_states * self.n_actions), out=indptr[1:])
        layout = _Layout(n_keys, n_states, order, rows, cols, cols.astype(_INDEX), indptr)
        for array in (order, rows, cols, layout.indices, indptr):
            array.setflags(write=False)
        self._layout = layout
        return layout

    def successors(self) -> np.ndarray:
        """(n_states, n_actions) int64: the one state each tried (s, a) has led to, -1 where
        (s, a) was never tried or has led to more than one state (a stochastic move)."""
        layout = self._sparsity()
        if layout.successors is None:
            n_rows = self.n_states * self.n_actions
            out = np.full(n_rows, -1, dtype=np.int64)
            single = np.flatnonzero(np.diff(layout.indptr) == 1)  # rows with exactly one s'
            out[single] = layout.cols[layout.indptr[single]]
            layout.successors = out.reshape(-1, self.n_actions)
            layout.successors.setflags(write=False)
        return layout.successors

    def is_deterministic(self) -> bool:
        """Every tried (s, a) has led to one state only (so hop counts are exact distances)."""
        layout = self._sparsity()
        if layout.deterministic is None:
            layout.deterministic = bool(np.all(np.diff(layout.indptr) <= 1))
        return layout.deterministic

    @property
    def n_transition_keys(self) -> int:
        """Distinct (s, a, s') seen: it grows exactly when the model's graph does."""
        return len(self._sas_counts)

    def graph(self, reverse: bool = False) -> sp.csr_matrix:
        """(n_states, n_states) CSR: 1 where some action has led from s to s' (s != s'), or
        with ``reverse`` its transpose; cached with the sparsity pattern (it changes only when
        a new (s, a, s') turns up)."""
        layout = self._sparsity()
        if layout.graph is None:
            n = self.n_states
            s = layout.rows // self.n_actions
            moves = s != layout.cols
            graph = sp.csr_matrix(
                (np.ones(int(moves.sum())), (s[moves], layout.cols[moves])), shape=(n, n)
            )
            graph.sum_duplicates()
            layout.graph = graph
        if not reverse:
            return layout.graph
        if layout.reverse_graph is None:
            layout.reverse_graph = layout.graph.T.tocsr()
        return layout.reverse_graph

    @property
    def terminal_mask(self) -> np.ndarray:
        """(n_states,) bool: states whose every arrival ended the episode."""
        terminal = np.array(self._terminal_arrivals, dtype=np.int64)
        return (terminal > 0) & (terminal == np.array(self._arrivals, dtype=np.int64))

    def candidate_mask(self) -> np.ndarray:
        """(n_states,) bool: states that may be S_ss, i.e. left at least once and not terminal."""
        return (self.state_counts > 0) & ~self.terminal_mask

    def frontier_mask(self) -> np.ndarray:
        """(n_states,) bool: the frontier, non-terminal states with an action never tried
        (C(s, a) = 0 for some a; a state only ever arrived at has all of them untried)."""
        untried = self.state_action_counts.min(axis=1, initial=1) == 0
        return untried & ~self.terminal_mask

    def path_to_frontier(self, state: Any) -> tuple[list[tuple[int, int]], int] | None:
        """The fewest seen moves from ``state`` to the nearest frontier state: ((state index,
        action) pairs, the frontier state's index), or None when ``state`` is unknown, on the
        frontier, or no frontier state is reachable over seen moves.

        A breadth-first search over the moves seen at least once, that never passes through a
        terminal state: its cost grows with the states nearer than the frontier, not with the
        model (after a dead end of a maze, the last junction with an untried branch).
        """
        start = self.index(state)
        if start is None or self._on_frontier(start):
            return None
        parent: dict[int, tuple[int, int] | None] = {start: None}
        queue = [start]
        for u in queue:  # the list grows while it is read: a FIFO queue
            for a, v in self._moves[u]:
                if v in parent or self._is_terminal(v):
                    continue
                parent[v] = (u, a)
                if self._on_frontier(v):
                    end, path, step = v, [], parent[v]
                    while step is not None:
                        path.append(step)
                        step = parent[step[0]]
                    return path[::-1], end
                queue.append(v)
        return None

    def _is_terminal(self, s: int) -> bool:
        """Every arrival at state ``s`` ended the episode (as :attr:`terminal_mask`)."""
        terminal = self._terminal_arrivals[s]
        return terminal > 0 and terminal == self._arrivals[s]

    def _on_frontier(self, s: int) -> bool:
        """State ``s`` has an untried action and is not terminal (as :meth:`frontier_mask`)."""
        n = self.n_actions
        return min(self._sa_counts[s * n : (s + 1) * n]) == 0 and not self._is_terminal(s)

    def action_counts(self, state: Any) -> list[int]:
        """C(state, a) for every action, a list of ``n_actions`` ints (zeros for a new state)."""
        s = self.index(state)
        if s is None:
            return [0] * self.n_actions
        n = self.n_actions
        return self._sa_counts[s * n : (s + 1) * n]

    def transition_model(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The empirical model: P (n_states * n_actions, n_states) CSR and R (n_states, n_actions).

        Row s * n_actions + a of P is P(.|s, a) = C(s, a, .) / C(s, a) and sums to 1 when (s, a)
        was tried, else it is empty (all zero). R[s, a] is the mean reward of (s, a), 0 when
        untried. Both are cached until the next update.
        """
        if self._export is not None and self._export[0] == self._version:
            return self._export[1], self._export[2]
        n, n_actions = self.n_states, self.n_actions
        layout = self._sparsity()
        rows, cols, counts = self.transition_counts()  # CSR order, no duplicates
        sa_counts = np.array(self._sa_counts, dtype=np.float64)
        # P(s'|s, a) = C(s, a, s') / C(s, a); every P shares the layout's (read-only) indices
        P = sp.csr_matrix(
            (counts / sa_counts[rows], layout.indices, layout.indptr), shape=(n * n_actions, n)
        )
        P.has_sorted_indices = True
        reward_sums = np.array(self._reward_sums, dtype=np.float64)
        mean_rewards = np.divide(
            reward_sums, sa_counts, out=np.zeros_like(reward_sums), where=sa_counts > 0
        ).reshape(n, n_actions)
        self._export = (self._version, P, mean_rewards)
        return P, mean_rewards

    # ---- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The model as plain python containers (lists, ints, floats, str): no numpy, no torch.

        Safe for ``torch.save`` / ``torch.load(weights_only=True)`` and for JSON.
        """
        obs = self._observations
        if obs and not isinstance(obs[0], int):
            observations: list[Any] = [o.tolist() for o in obs]
            obs_dtype: str | None = obs[0].dtype.str
        else:
            observations, obs_dtype = list(obs), None
        rows, cols, counts = self.transition_counts()
        return {
            "n_actions": self.n_actions,
            "observations": observations,
            "obs_dtype": obs_dtype,
            "state_counts": list(self._state_counts),
            "sa_counts": list(self._sa_counts),
            "reward_sums": list(self._reward_sums),
            "sas_rows": rows.tolist(),
            "sas_cols": cols.tolist(),
            "sas_counts": counts.tolist(),
            # the position of each (s, a, s') in the order it was first seen: the walks to the
            # frontier break ties in that order, and a resumed run must break them alike
            "sas_first_seen": self._sparsity().order.tolist(),
            "arrivals": list(self._arrivals),
            "terminal_arrivals": list(self._terminal_arrivals),
            "n_steps": self.n_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the model saved by :meth:`state_dict` (replacing what this one holds)."""
        if int(state["n_actions"]) != self.n_actions:
            raise ValueError(
                f"checkpoint model has {state['n_actions']} actions, this one {self.n_actions}."
            )
        self.clear()
        dtype = state["obs_dtype"]
        for obs in state["observations"]:
            obs = obs if dtype is None else np.asarray(obs, dtype=np.dtype(dtype))
            self._add_state(state_key(obs), obs)
        self._state_counts = [int(c) for c in state["state_counts"]]
        self._sa_counts = [int(c) for c in state["sa_counts"]]
        self._reward_sums = [float(r) for r in state["reward_sums"]]
        triplets = list(zip(state["sas_rows"], state["sas_cols"], state["sas_counts"], strict=True))
        first_seen = state.get("sas_first_seen")  # absent from older checkpoints
        if first_seen is not None:
            triplets = [triplets[k] for k in np.argsort(first_seen, kind="stable")]
        self._sas_counts = {int(r) * _PACK + int(c): int(k) for r, c, k in triplets}
        for row, col, _ in triplets:
            self._moves[int(row) // self.n_actions].append((int(row) % self.n_actions, int(col)))
        self._arrivals = [int(c) for c in state["arrivals"]]
        self._terminal_arrivals = [int(c) for c in state["terminal_arrivals"]]
        self.n_steps = int(state["n_steps"])
        self._version += 1


# ---- Eq. 1: the choice of S_ss ----------------------------------------------------------------


def eq1_values(
    ss_value: str,
    max_q: Callable[[np.ndarray], np.ndarray] | np.ndarray | None,
    model: CountModel,
    candidates: np.ndarray,
) -> np.ndarray:
    """The value term of Eq. 1 for each candidate state, (n_candidates,) float64.

    ``candidates`` are dense indices into ``model``; ``max_q`` is the learner's max_a Q(s, g)
    for the episode's goal g, as :meth:`SmartStartController.begin_episode` takes it. One
    branch per choice of ``ss_value`` (``SS_VALUES``); a new choice is one more branch.
    """
    if ss_value == "learner":
        # Keulen's code: the learner's max_a Q(s, g), called once over the stacked candidates
        # (or read from an array over all model states); None stands for all zeros.
        if max_q is None:
            values = np.zeros(candidates.size)
        elif callable(max_q):
            values = np.asarray(max_q(model.observations()[candidates]), dtype=np.float64)
        else:
            values = np.asarray(max_q, dtype=np.float64)[candidates]
    elif ss_value == "zero":
        # The paper's Sec. V: "Through the experiment the value function will be zero", so the
        # count bonus alone picks S_ss (a least-left state; c_ss only scales the bonus).
        values = np.zeros(candidates.size)
    else:
        raise ValueError(f"ss_value must be one of {SS_VALUES}, got {ss_value!r}.")
    if values.shape != candidates.shape:
        raise ValueError(
            f"max_q must give one value per candidate, {candidates.shape}: got {values.shape}."
        )
    return values


def ucb_scores(
    max_q: np.ndarray, counts: np.ndarray, total: float, c_ss: float, form: str = "paper"
) -> np.ndarray:
    """UCB score of each state for the choice of S_ss (paper Eq. 1).

    paper:  max_a Q(s, a) + c_ss * sqrt(ln(total) / C(s))
    keulen: max_a Q(s, a) + sqrt(c_ss * ln(total) / C(s))     (Keulen's code)

    ``total`` is sum_s C(s) (Algorithm 1 line 19 writes |D|, the same number). The log is
    natural, as in Keulen's code; the paper's worked example (0.316 for C(s) = 10, 0.255 for 20)
    evaluates sqrt(log10(C) / C), which only rescales the bonus. A state with C(s) = 0 scores
    +inf; such states are never candidates (see :func:`smart_start_state`).
    """
    max_q = np.asarray(max_q, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ratio = math.log(total) / counts if total > 0 else np.zeros_like(counts)
    ratio = np.where(counts > 0, ratio, np.inf)
    if form == "paper":
        return max_q + c_ss * np.sqrt(ratio)
    elif form == "keulen":
        return max_q + np.sqrt(c_ss * ratio)
    else:
        raise ValueError(f"ucb form must be one of {UCB_FORMS}, got {form!r}.")


def smart_start_state(
    max_q: np.ndarray,
    counts: np.ndarray,
    c_ss: float = 0.1,
    *,
    form: str = "paper",
    total: float | None = None,
    exclude: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> int | None:
    """Index of S_ss: the argmax of :func:`ucb_scores` over the candidate states.

    ``max_q`` and ``counts`` (C(s)) are aligned arrays over states. Candidates are the states
    with C(s) > 0 that ``exclude`` (bool, e.g. terminal states) does not mark. ``total``
    defaults to ``counts.sum()``. Ties are broken uniformly at random with ``rng``. Returns None
    when there is no candidate.
    """
    counts = np.asarray(counts)
    candidates = counts > 0
    if exclude is not None:
        candidates &= ~np.asarray(exclude, dtype=bool)
    index = np.flatnonzero(candidates)
    if index.size == 0:
        return None
    total = float(counts.sum()) if total is None else float(total)
    scores = ucb_scores(np.asarray(max_q)[index], counts[index], total, c_ss, form)
    best = index[scores == scores.max()]
    if best.size == 1:
        return int(best[0])
    rng = np.random.default_rng() if rng is None else rng
    return int(best[rng.integers(best.size)])


def ucb1_action(
    counts: Sequence[int],
    rng: np.random.Generator,
    q: np.ndarray | None = None,
    c: float = 1.0,
) -> int:
    """UCB1 over a state's action counts C(s, a): an untried action first, else the argmax of

        Q(s, a) + c * sqrt(ln C(s) / C(s, a)),    C(s) = sum_a C(s, a)

    (Keulen's UCB1 learner, which ranks untried actions first). ``q`` None stands for all
    zeros: with no values the rule is "the least-tried action", whatever ``c``. Ties among
    untried actions and among equal scores are broken uniformly at random with ``rng``.
    """
    # plain python on the few actions of one state: it runs at every exploring step
    untried = [a for a, n in enumerate(counts) if n == 0]
    if untried:
        return untried[0] if len(untried) == 1 else untried[int(rng.integers(len(untried)))]
    log_total = math.log(sum(counts))
    scores = [c * math.sqrt(log_total / n) for n in counts]
    if q is not None:
        scores = [score + float(value) for score, value in zip(scores, q, strict=True)]
    top = max(scores)
    best = [a for a, score in enumerate(scores) if score == top]
    return best[0] if len(best) == 1 else best[int(rng.integers(len(best)))]


# ---- TRAJOPT: value iteration on the empirical model ------------------------------------------


def value_iteration(
    P: sp.csr_matrix,
    target_mask: np.ndarray,
    gamma: float = 0.99,
    tol: float = 1e-3,
    max_iter: int = 1000,
    *,
    terminal_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Plan a walk into the target region by value iteration; returns Q (n_states, n_actions).

    P is (n_states * n_actions, n_states), row s * n_actions + a holding P(.|s, a) (empty rows
    for untried pairs give Q = 0). A transition that lands in the target region pays 1 and ends
    the walk (the region is absorbing, its value 0 after arrival); so does landing in a state of
    ``terminal_mask``, without the reward:

        Q(s, a) = sum_s' P(s'|s, a) [1{s' in T} + gamma * V(s') * 1{s' not in T, not terminal}]
        V(s)    = max_a Q(s, a)

    The sweeps start from above, at V0(s) = gamma^(d(s) - 1), where d(s) is the fewest moves
    from s into T over transitions the model has seen at least once (one breadth-first search;
    V0 = 0 where there is none). V0 is what V would be if every move went where it can go, so
    no policy does better: the iterates fall monotonically to the fixed point. On a
    deterministic model V0 is already the fixed point (V = gamma^(d - 1)) and one sweep
    confirms it, where sweeps from V = 0 would need d + 1 of them (thousands on a big maze);
    on a stochastic one the sweeps only correct the shortest-path guess. Q > 0 exactly where
    the model knows a path.

    Stops when the largest fall of V in a sweep is below ``tol``, or after ``max_iter`` sweeps
    (at least one). Each sweep is one sparse mat-vec and a max over actions; no Python loop
    over states or actions.
    """
    n_rows, n = P.shape
    if n == 0:
        return np.zeros((0, 0))
    n_actions = n_rows // n
    if n_actions * n != n_rows:
        raise ValueError(f"P must be (n_states * n_actions, n_states), got {P.shape}.")
    if not (sp.issparse(P) and P.format == "csr" and P.dtype == np.float64):
        P = sp.csr_matrix(P, dtype=np.float64)
    target = np.asarray(target_mask, dtype=bool)
    stop = target if terminal_mask is None else target | np.asarray(terminal_mask, dtype=bool)
    discount = gamma * (~stop)  # gamma where the walk goes on after landing, 0 where it ends
    # The mat-vecs run on P's arrays with np.bincount rather than on new scipy matrices: on the
    # small models of a maze like keulen_medium, scipy's constructors cost more than the sweeps
    # (this cut value iteration from about 190 to 150 us on its 124-state model). bincount adds
    # each row's entries in storage order, as scipy's csr mat-vec does, so Q is bit-identical.
    # Rows are binned action-major (a * n + s), so that the max over actions is a max of
    # n_actions contiguous blocks (a reshape(n, n_actions).max(1) is several times slower). The
    # reward part P @ 1{T} is constant and the discount is folded into the entries:
    #   q = P @ (1{T} + discount * V) = reward_part + M @ V,   M = P * discount[s']
    cols, probs = P.indices, P.data
    rows = np.repeat(np.arange(n_rows), np.diff(P.indptr))  # each entry's row s * n_actions + a
    bins = (rows % n_actions) * n + rows // n_actions  # its action-major row a * n + s
    reward_part = np.bincount(bins, weights=probs * target[cols], minlength=n_rows)
    weights = probs * discount[cols]  # (nnz,) the entries of M
    values = _shortest_path_bound(n, rows // n_actions, cols, weights > 0, reward_part, gamma)
    q = np.zeros(n_rows)
    for _ in range(max(1, max_iter)):
        q = np.bincount(bins, weights=weights * values[cols], minlength=n_rows)  # M @ V
        q += reward_part
        new_values = q[:n].copy()
        for a in range(1, n_actions):
            np.maximum(new_values, q[a * n : (a + 1) * n], out=new_values)
        change = float((values - new_values).max())  # >= 0 (up to rounding): V only falls
        values = new_values
        if change < tol:
            break
    return np.ascontiguousarray(q.reshape(n_actions, n).T)


def _shortest_path_bound(
    n: int,
    state: np.ndarray,
    next_state: np.ndarray,
    continues: np.ndarray,
    reward_part: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """V0(s) = gamma^(d(s) - 1), d(s) the fewest seen moves from s into the target region.

    The model's entries are moves ``state`` -> ``next_state``; ``continues`` marks those that
    land outside the stop states (the walk goes on), ``reward_part`` (action-major rows a * n +
    s) the probability that a row lands in the target. A breadth-first search from a virtual
    target node over the reversed edges gives d for every state at once. V0 bounds the values
    from above and is a super-solution of the Bellman equation: a state d moves away has no
    successor closer than d - 1 moves, so (T V0)(s) <= gamma^(d - 1).
    """
    into_target = np.flatnonzero(reward_part > 0) % n
    # reversed edges: s' -> s for each seen move s -> s', and the target node n -> s
    tails = np.concatenate([next_state[continues], np.full(into_target.size, n)])
    heads = np.concatenate([state[continues], into_target])
    order = np.argsort(tails, kind="stable")  # CSR by tail (repeated edges do no harm)
    indptr = np.zeros(n + 2, dtype=_INDEX)
    np.cumsum(np.bincount(tails, minlength=n + 1), out=indptr[1:])
    graph = sp.csr_matrix(
        (np.ones(tails.size), heads[order].astype(_INDEX), indptr), shape=(n + 1, n + 1)
    )
    d = csgraph.dijkstra(graph, directed=True, indices=n, unweighted=True)[:n]
    bound = np.zeros(n)
    reachable = np.isfinite(d)
    bound[reachable] = gamma ** (d[reachable] - 1.0)
    return bound


def known_distances(model: CountModel, sources: np.ndarray, *, reverse: bool = False) -> np.ndarray:
    """Fewest moves the model has seen from each source (dense index) to every state, or with
    ``reverse`` from every state to each source; (len(sources), n_states) float64, inf where
    it knows no path. One breadth-first search per source, all in one scipy call."""
    sources = np.asarray(sources, dtype=np.int64).reshape(-1)
    if sources.size == 0 or model.n_states == 0:
        return np.full((sources.size, model.n_states), np.inf)
    graph = model.graph(reverse=reverse)
    return np.atleast_2d(
        csgraph.shortest_path(graph, directed=True, unweighted=True, indices=sources)
    )


def moves_return(
    moves: np.ndarray, gamma: float, goal_reward: float = 1.0, step_reward: float = 0.0
) -> np.ndarray:
    """The learner's return of a walk that arrives at its goal after ``moves`` moves, the one
    place where the count model's distances become values (float32, -inf where ``moves`` is
    inf, no known path). ``step_reward`` c on every move before the last, ``goal_reward`` r_g
    on arrival (the env's goal reward plus c), discounted by gamma:

        G(T) = c (1 - gamma^(T - 1)) / (1 - gamma) + gamma^(T - 1) r_g
             = c / (1 - gamma) + gamma^(T - 1) (r_g - c / (1 - gamma))

    (-(T - 1) with c = -1, r_g = 0 and gamma -> 1). A Q(s, g, a) is G(1 + d(s')), d(s') the
    moves from the state a leads to.
    """
    moves = np.asarray(moves, dtype=np.float64)
    never = step_reward / (1.0 - gamma)  # the return of never arriving
    out = np.full(moves.shape, -np.inf, dtype=np.float32)
    known = np.isfinite(moves)
    out[known] = never + gamma ** (moves[known] - 1.0) * (goal_reward - never)
    return out


# ---- the model's values for a goal -----------------------------------------------------------


def distance_dtype(n_states: int) -> type[np.integer]:
    """The smallest integer type of the distance cache for ``n_states`` states: it holds every
    distance (< n_states) and the mark of no known path (n_states)."""
    return np.uint16 if n_states < np.iinfo(np.uint16).max else np.int32


def distance_cache_bytes(n_states: int, n_goals: int) -> int:
    """The most the distance cache of :class:`ModelGoalValues` (goals='all') can hold, in bytes:
    a row per goal, up to ``DISTANCE_CACHE_BYTES``."""
    row = n_states * np.dtype(distance_dtype(n_states)).itemsize
    return min(n_goals, max(1, DISTANCE_CACHE_BYTES // row)) * row


class ModelGoalValues:
    """V(s, g): what the count model knows a state is worth for reaching goal ``g``.

    For goals that are states (a Discrete env whose goals are its observations, as the maze's),
    :meth:`refresh` runs :func:`value_iteration` on the model with the goal as target region,
    giving x(s) = max over policies of E[gamma^(T - 1)], T the moves from s into the goal
    (gamma^(d(s) - 1) on a deterministic model, d the fewest moves the model has seen; 0 where
    it knows no path). In the env's rewards, ``goal_reward`` on arrival and ``step_reward`` on
    every other move (c = step_reward, r_g = goal_reward):

        V(s, g) = c / (1 - gamma) + x(s) (r_g - c / (1 - gamma))

    (exact in expectation: the return of a walk that arrives after T moves is linear in
    gamma^(T - 1)). On a deterministic env V(s, g) is the return of a walk the agent has made,
    so a lower bound on the optimal value; on a stochastic one it is the empirical model's
    estimate.

    :meth:`__call__` looks the values up for a batch of (state, goal) rows: the rows whose goal is
    the refreshed goal and whose state has a known path get V, all others -inf (none);
    :meth:`q_values` does the same for Q(s, g, a) = E[r + gamma V(s', g)] of each action, -inf
    for the actions the model never saw taken in s (or that lead nowhere it knows a path from). The
    values are those of the last :meth:`refresh` (the trainer refreshes once per episode, for
    the episode's goal): between refreshes the model only grows, so on a deterministic env stale
    values are still lower bounds.

    With ``goals='all'`` it answers for every goal of a batch, not only the refreshed one,
    while the model is deterministic (every tried (s, a) has led to one state): d(s, g), the
    fewest moves the model has seen from s to g, comes from one reverse breadth-first search
    per goal (a batch's goals in one scipy call), on the graph as of the last :meth:`refresh`,
    cached per goal and searched again once a refresh found the graph grown, within a budget
    of visited states per batch (``SEARCH_STATES_PER_BATCH``); Q(s, g, a) =
    :func:`moves_return` (1 + d(s_a, g)), s_a the state a leads to. These are the returns of
    walks the agent has made, so lower bounds on the optimal values, also when stale. On a
    stochastic model it answers for the refreshed goal only (value iteration, as with 'env').

    Goals need not be states: with ``goal_of`` (the achieved goal of each state, the env
    protocol's ``goal_of_state``: MiniGrid's full state and its cell) the target region of
    goal g is every state the model knows with goal_of[s] == g (value iteration on that
    region; the reverse breadth-first search from all of it at once).
    """

    def __init__(
        self,
        model: CountModel,
        n_states: int,
        gamma: float,
        *,
        goal_reward: float = 1.0,
        step_reward: float = 0.0,
        tol: float = 1e-6,
        max_iter: int = 1000,
        goals: ModelGoals = "env",
        goal_of: np.ndarray | None = None,
        n_goals: int | None = None,
    ) -> None:
        if goals not in get_args(ModelGoals):
            raise ValueError(f"goals must be one of {get_args(ModelGoals)}, got {goals!r}.")
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"the model's goal values need gamma in [0, 1), got {gamma}.")
        if not goal_reward > step_reward / (1.0 - gamma):
            raise ValueError(
                "the model's goal values need a goal reward above step_reward / (1 - gamma) "
                f"(reaching the goal must pay more than never reaching it), got goal_reward "
                f"{goal_reward} and step_reward {step_reward} at gamma {gamma}."
            )
        self.model, self.n_states, self.gamma = model, int(n_states), float(gamma)
        self.goal_of = None if goal_of is None else np.asarray(goal_of, dtype=np.int64)
        """(n_states,) the achieved goal of each state; None: goals are the states."""
        if self.goal_of is not None and self.goal_of.shape != (self.n_states,):
            raise ValueError(
                f"goal_of must have shape ({self.n_states},), got {self.goal_of.shape}."
            )
        self.n_goals = self.n_states if self.goal_of is None else int(n_goals or 0)
        if self.goal_of is not None and self.goal_of.size and self.goal_of.max() >= self.n_goals:
            raise ValueError(f"goal_of holds goal ids beyond n_goals {self.n_goals}.")
        self.goal_reward, self.step_reward = float(goal_reward), float(step_reward)
        self.tol, self.max_iter = float(tol), int(max_iter)
        self.goal: int | None = None
        """The goal of the last :meth:`refresh` (None: none yet, or the goal is unknown)."""
        self.q = np.full((self.n_states, model.n_actions), -np.inf, dtype=np.float32)
        """(n_states, n_actions) Q(s, goal, a), -inf where the model knows no path via a."""
        self.values = self.q.max(axis=1)
        """(n_states,) V(s, goal) = max_a Q(s, goal, a), -inf where the model knows no path."""
        self.goals = goals
        # moves_return(T) for T = 0 .. n_states, and -inf at n_states + 1 (no known path):
        # a distance d < n_states (or n_states for none) maps to Q by one look-up at d + 1
        moves = np.arange(self.n_states + 2, dtype=np.float64)
        moves[-1] = np.inf
        with np.errstate(all="ignore"):  # gamma^-1 at T = 0, never looked up
            self._returns = moves_return(moves, self.gamma, self.goal_reward, self.step_reward)
        # goals='all': _dist[_slot[g], i] the moves from dense state i into goal state g, found
        # on the graph of version _searched[_slot[g]]; _goal_of the inverse of _slot; _dense
        # the dense index of each state
        self._slot = np.full(self.n_goals, -1, dtype=np.int64)
        # n_states: no known path
        self._dist = np.empty((0, self.n_states), dtype=distance_dtype(self.n_states))
        self._searched = np.empty(0, dtype=np.int64)
        self._goal_of = np.empty(0, dtype=np.int64)
        self._n_slots = 0
        self._evict = 0  # the slot the next goal takes once the cache is full (oldest first)
        self._credit = 0.0
        # the model's graph as of the last refresh (goals='all'): its version (distinct
        # (s, a, s')), determinism, successors and reversed graph
        self._version = -1
        self._deterministic = False
        self._successors = np.zeros((0, model.n_actions), dtype=np.int64)
        self._graph: sp.csr_matrix | None = None
        self._dense: np.ndarray | None = None
        self._n_dense = 0
        self.n_searches = 0
        """Reverse breadth-first searches run so far (goals='all'), for the cost measurements."""

    def refresh(self, goal: int) -> None:
        """Recompute the values for ``goal`` on the model as it is now (and, with
        ``goals='all'``, take its graph for the searches until the next refresh)."""
        if self.goals == "all":
            self._snapshot()
        self.q.fill(-np.inf)
        self.values.fill(-np.inf)
        self.goal = int(goal)
        model = self.model
        if self.goal_of is None:
            target = model.index(self.goal)
            if target is None:  # never seen: no state has a known path to it
                return
            mask = np.zeros(model.n_states, dtype=bool)
            mask[target] = True
        else:  # every known state that achieves the goal
            mask = self.goal_of[model.observations()] == self.goal
            if not mask.any():
                return
        P, _ = model.transition_model()
        Q = value_iteration(
            P, mask, self.gamma, self.tol, self.max_iter, terminal_mask=model.terminal_mask
        )
        never = self.step_reward / (1.0 - self.gamma)  # the return of never arriving
        # x > 0 where the model knows a path; the map to returns is increasing (the constructor
        # checks), so max_a commutes with it and V is the max of the mapped Q.
        q = np.where(Q > 0.0, never + Q * (self.goal_reward - never), -np.inf)
        states = model.observations()
        self.q[states] = q
        self.values[states] = q.max(axis=1, initial=-np.inf)

    def __call__(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """(B,) float32: V(s, g) for each row of Discrete ``states`` and ``goals``; -inf where
        the model knows no path from s to g (or, with goals='env', g is not the refreshed
        goal)."""
        if self._all_goals():
            return self.q_values(states, goals).max(axis=1, initial=-np.inf)
        return self._lookup(self.values, states, goals)

    def q_values(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """(B, n_actions) float32: Q(s, g, a) for each row of Discrete ``states`` and ``goals``;
        -inf where the model knows no path via a (or, with goals='env', g is not the refreshed
        goal)."""
        if self._all_goals():
            return self._all_goal_q(states, goals)
        return self._lookup(self.q, states, goals)

    def _all_goals(self) -> bool:
        if self.goals != "all":
            return False
        if self._graph is None:
            self._snapshot()
        return self._deterministic

    def _snapshot(self) -> None:
        """Take the model's graph as it is now for the searches until the next refresh (the
        graph's exports cost O(model) each, once per episode rather than once per batch)."""
        model = self.model
        if self._graph is not None and self._version == model.n_transition_keys:
            return
        self._version = model.n_transition_keys
        self._deterministic = model.is_deterministic()
        self._successors = model.successors()
        self._graph = model.graph(reverse=True)

    def _all_goal_q(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Q(s, g, a) = moves_return(1 + d(s_a, g)) from the cached per-goal distances."""
        states = np.asarray(states, dtype=np.int64).reshape(-1)
        goals = np.asarray(goals, dtype=np.int64).reshape(-1)
        out = np.full((len(states), self.model.n_actions), -np.inf, dtype=np.float32)
        dense = self._dense_index()
        slot = self._slot[goals]  # (B,) row of _dist, -1: none
        need = slot < 0
        cached = np.flatnonzero(~need)
        need[cached] = self._searched[slot[cached]] != self._version  # stale
        n = len(self._successors)  # states in the graph of the last refresh
        cap = max(4.0 * SEARCH_STATES_PER_BATCH, 2.0 * STALE_SEARCHES * n)
        self._credit = min(self._credit + SEARCH_STATES_PER_BATCH, cap)
        if need.any():  # search what the credit allows, then look the rows up again
            unique = np.unique(goals[need])
            self._goal_slots(unique, self._goal_sources(unique, dense, n))
            slot = self._slot[goals]
        s_index = dense[states]
        achieved = states if self.goal_of is None else self.goal_of[states]
        rows = np.flatnonzero((s_index >= 0) & (s_index < n) & (slot >= 0) & (achieved != goals))
        succ = self._successors[s_index[rows]]  # (R, n_actions) dense, -1: untried
        d_next = self._dist[slot[rows][:, None], np.maximum(succ, 0)].astype(np.int64)
        d_next[succ < 0] = self.n_states  # no known path
        out[rows] = self._returns[d_next + 1]  # moves_return(1 + d), precomputed
        return out

    def _dense_index(self) -> np.ndarray:
        """(n_states,) the model's dense index of each state, -1 where never seen; extended as
        the model adds states (dense indices are only ever appended)."""
        observations = self.model.observations()
        if self._dense is None:
            self._dense = np.full(self.n_states, -1, dtype=np.int64)
            self._n_dense = 0
        if len(observations) > self._n_dense:
            new = np.arange(self._n_dense, len(observations))
            self._dense[observations[self._n_dense :]] = new
            self._n_dense = len(observations)
        return self._dense

    def _goal_slots(self, goals: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The rows of the distance cache ``_dist`` holding the moves into each of ``goals``
        (dense ``index``, -1: never seen); -1 where there is none yet.

        Searches, within the credit of ``SEARCH_STATES_PER_BATCH`` visited states a batch:
        first the goals never searched, then, ``STALE_SEARCHES`` or more at a time, those
        searched on an older graph (the model has grown since). A stale row still holds the
        lengths of walks the agent has made, so lower bounds on the values; a goal not searched
        yet gets its TD target this batch."""
        slots = self._slot[goals]
        version, n = self._version, len(self._successors)
        new = np.flatnonzero((slots < 0) & (index >= 0) & (index < n))
        stale = np.flatnonzero(slots >= 0)
        stale = stale[self._searched[slots[stale]] != version]
        # New goals as soon as the credit allows; stale ones (they have values, lower bounds)
        # in calls of STALE_SEARCHES at least, as scipy's call costs more than a small search.
        affordable = int(self._credit // max(n, 1))
        todo = new[:affordable]
        left = affordable - todo.size
        if stale.size and left >= min(stale.size, STALE_SEARCHES):
            todo = np.concatenate([todo, stale[:left]])
        if todo.size == 0:
            return slots
        self._credit -= todo.size * n
        found = self._search(goals[todo], index[todo], n)
        found = np.where(np.isfinite(found), found, self.n_states).astype(self._dist.dtype)
        self.n_searches += todo.size
        for j, i in enumerate(todo.tolist()):
            slot = slots[i] if slots[i] >= 0 else self._take_slot(int(goals[i]))
            self._dist[slot, :n] = found[j]
            self._dist[slot, n:] = self.n_states  # states seen later: no known path yet
            self._searched[slot] = version
            slots[i] = slot
        return slots

    def _goal_sources(self, goals: np.ndarray, dense: np.ndarray, n: int) -> np.ndarray:
        """Per goal, the dense index of a state of the graph (the first n) that achieves it,
        -1 where none: the goal's own with goals that are states; with ``goal_of``, any one
        (the search then starts from all of them, ``_search``)."""
        if self.goal_of is None:
            return dense[goals]
        observations = self.model.observations()[:n]
        achieved = self.goal_of[observations]  # (n,) goal of each dense state
        first = np.full(self.n_goals, -1, dtype=np.int64)
        # the first dense state of each goal: assign in reverse so the lowest index wins
        first[achieved[::-1]] = np.arange(n - 1, -1, -1)
        return first[goals]

    def _search(self, goals: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
        """(M, n) float: the moves from each dense state into each goal on the graph of the
        last refresh, inf where none; one breadth-first search per goal (all in one scipy call
        where goals are states; one search from all the states achieving it, where they are
        not)."""
        if self.goal_of is None:
            return np.atleast_2d(csgraph.shortest_path(self._graph, unweighted=True, indices=index))
        achieved = self.goal_of[self.model.observations()[:n]]
        rows = np.empty((len(goals), n))
        for row, goal in enumerate(goals.tolist()):
            # one multi-source search: the moves into the nearest state that achieves the goal
            sources = np.flatnonzero(achieved == goal)
            rows[row] = csgraph.dijkstra(
                self._graph, directed=True, indices=sources, unweighted=True, min_only=True
            )[:n]
        return rows

    def _take_slot(self, goal: int) -> int:
        """A row of the cache for ``goal``: a new one, or the one searched longest ago."""
        row = self.n_states * self._dist.itemsize
        capacity = max(1, DISTANCE_CACHE_BYTES // row)  # rows of n_states
        if self._n_slots < capacity:
            slot = self._n_slots
            self._n_slots += 1
            if slot >= len(self._dist):  # grow by doubling, up to the capacity
                size = min(capacity, max(2 * len(self._dist), 64))
                fills = (("_dist", self.n_states), ("_searched", -1), ("_goal_of", -1))
                for name, fill in fills:
                    old = getattr(self, name)
                    grown = np.full((size, *old.shape[1:]), fill, dtype=old.dtype)
                    grown[: len(old)] = old
                    setattr(self, name, grown)
        else:
            slot = self._evict
            self._evict = (slot + 1) % capacity
            self._slot[self._goal_of[slot]] = -1
        self._slot[goal] = slot
        self._goal_of[slot] = goal
        return slot

    def state_dict(self) -> dict[str, Any]:
        """The distance cache and its search schedule (goals='all'; copies), so that a resumed
        run's batches get the values the uninterrupted run's got. The graph snapshot and the
        env goal's values are not saved: the trainer refreshes them from the restored model,
        whose version is the one they were taken at (both happen at an episode's end)."""
        n = self._n_slots
        return {
            "slot": self._slot.copy(),
            "dist": self._dist[:n].copy(),
            "searched": self._searched[:n].copy(),
            "goal_of": self._goal_of[:n].copy(),
            "n_slots": n,
            "evict": self._evict,
            "credit": self._credit,
            "n_searches": self.n_searches,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self._slot = np.asarray(state["slot"], dtype=np.int64).copy()
        self._dist = np.asarray(state["dist"], dtype=distance_dtype(self.n_states)).copy()
        self._searched = np.asarray(state["searched"], dtype=np.int64).copy()
        self._goal_of = np.asarray(state["goal_of"], dtype=np.int64).copy()
        self._n_slots, self._evict = int(state["n_slots"]), int(state["evict"])
        self._credit, self.n_searches = float(state["credit"]), int(state["n_searches"])
        self._graph, self._dense = None, None  # taken again from the restored model

    def _lookup(self, table: np.ndarray, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """The rows of ``table`` (by state) for a batch, -inf in the rows of another goal."""
        states = np.asarray(states, dtype=np.int64).reshape(-1)
        goals = np.asarray(goals, dtype=np.int64).reshape(-1)
        out = table[states]  # fancy indexing copies
        out[goals != self.goal] = -np.inf  # every row while no goal was refreshed (None)
        return out


# ---- the controller ---------------------------------------------------------------------------


@dataclass
class SmartStartReport:
    """What Smart Start did in one episode (the trainer logs it under ``smart_start/``).

    plan_length is the number of steps of the planned path (:attr:`SmartStartController.
    planned_path`): from the start state, the first greedy action and its most likely outcome,
    repeated until the target region; 0 when there was no plan or no path.
    """

    used: bool = False
    """A target was chosen and planned for this episode."""
    target: Hashable | None = None
    """state_key of S_ss (None when not used)."""
    target_count: int = 0
    """C(S_ss) when it was chosen."""
    plan_length: int = 0
    """Steps of the planned most-likely greedy path from the start to the target region."""
    target_distance_to_goal: float | None = None
    """distance(S_ss, the episode's goal) when the controller has a distance and was given the
    goal (the maze: grid moves ignoring walls); None otherwise."""
    steps: int = 0
    """Guided actions supplied this episode."""
    reached: bool = False
    """The walk got within theta of S_ss."""
    plan_ms: float = 0.0
    """Wall time spent planning (model export + value iteration + path), all plans summed."""
    no_path: bool = False
    """The walk ended because the model knew no path from the current state."""
    n_plans: int = 0
    """Plans made this episode (1, more with replanning)."""


class SmartStartController:
    """Smart Start for one learner: chooses S_ss, plans, and supplies the guided actions.

    The trainer drives it:

    * :meth:`observe` for every environment transition (it feeds the count model);
    * :meth:`begin_episode` once the episode's start state is known;
    * while :attr:`active`, :meth:`act` for the action; None means "hand over to the learner";
    * :meth:`end_episode` for the :class:`SmartStartReport`.

    Per episode it runs with probability ``eta``, never in episode 0 nor with an empty model or
    no candidate. It picks S_ss by Eq. 1 (with ``ss_value`` 'learner', the learner's max_a Q
    for the current goal, in one batched call over the candidate observations; with 'zero', the
    counts alone: see :func:`eq1_values`), plans once with :func:`value_iteration`,
    and walks greedily on the planned Q (ties at random) until the state is within ``theta`` of
    S_ss (``distance(s, S_ss) <= theta``; theta 0 means the exact state, as in Keulen's code),
    the episode terminates, or the trainer's step limit ends the episode. When the current
    state has no planned path (all its planned Q are 0, or it is new to the plan) the walk ends
    and the learner takes over.

    With ``frontier=True`` Eq. 1 runs over the frontier only (:meth:`CountModel.frontier_mask`:
    states with an untried action, those never left included, which score +inf), while there
    is one; the paper's Eq. 1 ranks every visited state.

    With ``replan=True`` it plans again, on the updated model, whenever a step lands somewhere
    other than the most likely outcome of the planned action (a slip), and before giving up on
    a state without a path.
    """

    def __init__(
        self,
        n_actions: int,
        *,
        eta: float = 1.0,
        c_ss: float = 0.1,
        theta: float = 0.0,
        distance: Callable[[Any, Any], float] | None = None,
        ucb_form: str = "paper",
        ss_value: str = "learner",
        replan: bool = False,
        frontier: bool = False,
        gamma: float = 0.99,
        tol: float = 1e-3,
        max_iter: int = 1000,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Set up an empty count model; see the class docstring for the settings.

        ``distance(a, b)`` gives the distance between two observations; it may be vectorised
        (``a`` a stacked array of observations, returning one distance each) and is needed
        only when ``theta > 0``; given, it also measures the report's distance from S_ss to
        the goal.
        """
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}.")
        if c_ss < 0:
            raise ValueError(f"c_ss must be >= 0, got {c_ss}.")
        if theta < 0:
            raise ValueError(f"theta must be >= 0, got {theta}.")
        if theta > 0 and distance is None:
            raise ValueError("theta > 0 needs a distance callable.")
        if ucb_form not in UCB_FORMS:
            raise ValueError(f"ucb_form must be one of {UCB_FORMS}, got {ucb_form!r}.")
        if ss_value not in SS_VALUES:
            raise ValueError(f"ss_value must be one of {SS_VALUES}, got {ss_value!r}.")
        self.n_actions = int(n_actions)
        self.eta, self.c_ss, self.theta = float(eta), float(c_ss), float(theta)
        self.distance = distance
        self.ucb_form, self.ss_value, self.replan = ucb_form, ss_value, bool(replan)
        self.frontier = bool(frontier)
        self.gamma, self.tol, self.max_iter = float(gamma), float(tol), int(max_iter)
        self.rng = np.random.default_rng() if rng is None else rng
        self.model = CountModel(n_actions)
        self.active = False
        """True while the guided phase is on: :meth:`act` supplies actions."""
        self._report = SmartStartReport()
        self._target_index: int | None = None
        self._target_key: Hashable | None = None
        self._walk: list[tuple[int, int]] = []  # a walk to the frontier: (state, action) left
        self._walk_end: int | None = None  # the frontier state it ends in
        self._greedy: list[int] = []  # greedy action per state of the plan, -1: no path
        self._P: sp.csr_matrix | None = None  # the model the plan used
        self._expected: int | None = None  # most likely index after the last guided action
        self._path: list[int] = []

    # ---- per transition -----------------------------------------------------------------------

    def observe(
        self, state: Any, action: int, reward: float, next_state: Any, terminal: bool
    ) -> None:
        """Count a transition (every env step, guided or not) and end the walk when it is due."""
        self.model.update(state, action, reward, next_state, terminal)
        if self.active:
            if self._in_region(next_state):
                self._report.reached = True
                self.active = False
            elif terminal:
                self.active = False
            if not self.active:
                self._walk, self._walk_end = [], None

    def _in_region(self, obs: Any) -> bool:
        """Whether ``obs`` is within theta of S_ss (on a walk to the frontier: in it)."""
        if self._walk_end is not None:
            return self.model.index(obs) == self._walk_end
        if self.theta == 0.0:
            return state_key(obs) == self._target_key
        return float(self.distance(obs, self.target_observation)) <= self.theta

    # ---- per episode --------------------------------------------------------------------------

    def begin_episode(
        self,
        episode: int,
        state: Any,
        max_q: Callable[[np.ndarray], np.ndarray] | np.ndarray | None,
        goal: Any = None,
    ) -> bool:
        """Decide whether Smart Start runs this episode; if so choose S_ss and plan the walk.

        ``max_q`` gives max_a Q(s, a) for the current goal: a callable that takes the stacked
        candidate observations ((n,) ints or (n, *shape) arrays) and returns (n,) values, or an
        array over all model states in index order, or None (all zeros: counts alone decide).
        With ``ss_value`` 'zero' it is not called. ``goal``, when given with a ``distance``,
        is only measured: the report's ``target_distance_to_goal``.

        Returns True when the guided walk starts (:attr:`active`): a target was chosen and the
        start state has a planned path to it. When the start is already within theta of S_ss,
        the report says used and reached with 0 steps, and this returns False.
        """
        self.active = False
        self._report = SmartStartReport()
        self._target_index = self._target_key = None
        self._walk, self._walk_end = [], None
        self._P = None
        self._greedy = []
        self._expected = None
        self._path = []
        model = self.model
        if episode <= 0 or model.n_states == 0:
            return False
        if self.eta < 1.0 and not self.rng.random() < self.eta:
            return False
        counts = model.state_counts
        frontier = np.flatnonzero(model.frontier_mask()) if self.frontier else None
        if frontier is not None and frontier.size:
            # Eq. 1 over the frontier only; a state never left (C(s) = 0, e.g. where the last
            # episode ended) scores +inf, so the walk resumes where exploration stopped.
            candidates = frontier
            values = eq1_values(self.ss_value, max_q, model, candidates)
            scores = ucb_scores(values, counts[candidates], model.n_steps, self.c_ss, self.ucb_form)
            best = np.flatnonzero(scores == scores.max())
            choice = int(best[self.rng.integers(best.size)]) if best.size > 1 else int(best[0])
        else:
            candidates = np.flatnonzero(model.candidate_mask())
            if candidates.size == 0:
                return False
            values = eq1_values(self.ss_value, max_q, model, candidates)
            choice = smart_start_state(
                values,
                counts[candidates],
                self.c_ss,
                form=self.ucb_form,
                total=model.n_steps,
                rng=self.rng,
            )
        target = int(candidates[choice])
        self._target_index = target
        self._target_key = state_key(model.observation(target))
        report = self._report
        report.used, report.target = True, self._target_key
        report.target_count = int(counts[target])
        if goal is not None and self.distance is not None:
            report.target_distance_to_goal = float(self.distance(model.observation(target), goal))
        if self._in_region(state):
            report.reached = True
            self._path = [target]
            return False
        start = model.index(state)
        if start is not None:
            self._plan(start)
        if self._greedy_action(start) is None:  # an unknown start state, or no known path
            report.no_path = True
            return False
        self.active = True
        return True

    def walk_to_frontier(self, state: Any) -> bool:
        """Start a walk from ``state`` to the nearest frontier state (a state with an untried
        action), mid-episode; True when it starts. Algorithm 1 walks once per episode, to S_ss;
        this is the directed exploration's departure from it.

        The walk follows the fewest seen moves (:meth:`CountModel.path_to_frontier`, a
        breadth-first search that stops at the nearest frontier state, so its cost does not
        grow with the model) and ends there, or where a move lands off the path (a slip on a
        stochastic env). False, and no walk, when ``state`` is on the frontier or no frontier
        state is reachable.
        """
        t0 = time.perf_counter()
        found = self.model.path_to_frontier(state)
        self._report.plan_ms += (time.perf_counter() - t0) * 1e3
        self._report.n_plans += 1
        if found is None:
            return False
        path, self._walk_end = found
        self._walk = path[::-1]  # popped from the end
        self.active = True
        return True

    def act(self, state: Any) -> int | None:
        """The guided action in ``state``, or None (and :attr:`active` becomes False) when the
        walk is over: the state is within theta of S_ss, or the model knows no path from it."""
        if not self.active:
            return None
        if self._walk_end is not None:
            return self._walk_step(state)
        if self._in_region(state):
            self._report.reached = True
            self.active = False
            return None
        index = self.model.index(state)
        replanned = False
        if self.replan and self._expected is not None and index != self._expected:
            self._plan(index)  # a slip: plan again from here on the updated model
            replanned = True
        action = self._greedy_action(index)
        if action is None and self.replan and not replanned:
            self._plan(index)  # the old plan does not cover this state; the model may
            action = self._greedy_action(index)
        if action is None:
            self._report.no_path = True
            self.active = False
            return None
        if self.replan:
            self._expected = self._likely_next(index, action)
        self._report.steps += 1
        return action

    def _walk_step(self, state: Any) -> int | None:
        """The next action of a walk to the frontier, or None (the walk ends) when ``state``
        is its end or off its path."""
        index = self.model.index(state)
        if index == self._walk_end or not self._walk or self._walk[-1][0] != index:
            self._report.reached |= index == self._walk_end
            self.active, self._walk, self._walk_end = False, [], None
            return None
        self._report.steps += 1
        return self._walk.pop()[1]

    @property
    def report(self) -> SmartStartReport:
        """This episode's report so far (:meth:`end_episode` returns the final one)."""
        return self._report

    def end_episode(self) -> SmartStartReport:
        """Stop the walk if it is still on and return this episode's report."""
        self.active = False
        return self._report

    # ---- planning -----------------------------------------------------------------------------

    def _plan(self, start: int | None) -> None:
        """Export the model, plan to the target region, and trace the most likely greedy path."""
        t0 = time.perf_counter()
        P, _ = self.model.transition_model()
        target = self.target_mask()
        Q = value_iteration(
            P,
            target,
            self.gamma,
            self.tol,
            self.max_iter,
            terminal_mask=self.model.terminal_mask,
        )
        self._P = P
        self._greedy = self._greedy_table(Q)
        self._path = self._trace_path(start, target)
        self._report.plan_length = len(self._path) - 1 if len(self._path) > 1 else 0
        self._report.plan_ms += (time.perf_counter() - t0) * 1e3
        self._report.n_plans += 1

    def target_mask(self) -> np.ndarray:
        """(n_states,) bool: model states within theta of S_ss (the planner's target region)."""
        n = self.model.n_states
        mask = np.zeros(n, dtype=bool)
        if self._target_index is None:
            return mask
        if self.theta == 0.0:
            mask[self._target_index] = True
            return mask
        target, observations = self.target_observation, self.model.observations()
        try:  # a vectorised distance: one call over all states
            d = np.asarray(self.distance(observations, target), dtype=np.float64)
        except Exception:  # any failure: fall back to one call per state
            d = None
        if d is None or d.shape != (n,):
            d = np.array([float(self.distance(o, target)) for o in observations])
        return d <= self.theta

    def _greedy_table(self, Q: np.ndarray) -> list[int]:
        """argmax_a Q(s, a) for every state, exact ties broken at random (drawn once per plan),
        -1 where Q = 0 (no transition known to lead to the target region)."""
        best = Q.max(axis=1)
        tied = np.equal(Q, best[:, None])
        choice = np.argmax(np.where(tied, self.rng.random(Q.shape), -1.0), axis=1)
        choice[best <= 0.0] = -1
        return choice.tolist()

    def _greedy_action(self, index: int | None) -> int | None:
        """The plan's greedy action in state ``index``, or None when there is no path."""
        greedy = self._greedy
        if index is None or index >= len(greedy) or greedy[index] < 0:
            return None
        return greedy[index]

    def _likely_next(self, index: int, action: int) -> int | None:
        """The most likely next state of (index, action) in the planned model (lowest on ties)."""
        P = self._P
        row = index * self.n_actions + action
        lo, hi = P.indptr[row], P.indptr[row + 1]
        if lo == hi:
            return None
        return int(P.indices[lo + int(np.argmax(P.data[lo:hi]))])

    def _trace_path(self, start: int | None, mask: np.ndarray) -> list[int]:
        """Indices along the most likely greedy path from ``start`` (the plan's greedy actions),
        stopping in the target region ``mask``, at a state without a path, or before a repeat."""
        if start is None or start >= len(self._greedy):
            return []
        # vectorised over states: the first greedy action, and its successor where the row has
        # a single outcome (a deterministic move); other rows are resolved along the way
        P, n_actions = self._P, self.n_actions
        greedy = np.array(self._greedy, dtype=np.int64)
        n = len(greedy)
        rows = np.arange(n) * n_actions + np.maximum(greedy, 0)
        lo, hi = P.indptr[rows], P.indptr[rows + 1]
        single = np.flatnonzero(hi - lo == 1)
        successor = np.full(n, -1, dtype=np.int64)
        successor[single] = P.indices[lo[single]]
        done = mask[:n] | (greedy < 0)
        path, seen, index = [start], {start}, start
        while not done[index]:
            nxt = int(successor[index])
            if nxt < 0:
                nxt = self._likely_next(index, int(greedy[index]))
            if nxt is None or nxt in seen:
                break
            path.append(nxt)
            seen.add(nxt)
            index = nxt
        return path

    # ---- for drawing --------------------------------------------------------------------------

    @property
    def target_observation(self) -> Any:
        """The stored observation of S_ss this episode (None when Smart Start is not used)."""
        if self._target_index is None:
            return None
        return self.model.observation(self._target_index)

    @property
    def planned_path(self) -> list[Any]:
        """Observations along the latest plan's most likely greedy path (start first)."""
        return [self.model.observation(i) for i in self._path]

    # ---- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The controller's state between episodes as plain python containers: the count model
        (see :meth:`CountModel.state_dict`) and the random generator's state. No numpy arrays,
        so a checkpoint holding it loads with ``torch.load(weights_only=True)``; the settings
        are not saved (they come from the run's config)."""
        return {"model": self.model.state_dict(), "rng": _plain(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; any walk in progress is dropped."""
        self.model.load_state_dict(state["model"])
        if state.get("rng") is not None:
            self.rng.bit_generator.state = state["rng"]
        self.active = False
        self._report = SmartStartReport()


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays and scalars turned into python lists and numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value
