"""Tests of sshr_torch.smart_start: the count model, Eq. 1, value iteration and the controller.

Values are worked out by hand on tiny models. The maze tests use a small grid simulator defined
here, so that they depend on nothing but the module under test.
"""

from __future__ import annotations

import json
import math
from collections import deque

import numpy as np
import pytest
import scipy.sparse as sp

from sshr_torch.smart_start import (
    SS_VALUES,
    CountModel,
    ModelGoalValues,
    SmartStartController,
    eq1_values,
    smart_start_state,
    state_key,
    ucb1_action,
    ucb_scores,
    value_iteration,
)

GAMMA = 0.99

# ---- a tiny grid world ---------------------------------------------------------------------

MAZE = """\
#########
#S..#...#
#.#.#.#.#
#.#...#.#
#.#####.#
#.......#
#########
"""
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left


class Grid:
    """Cells are ints row * n_cols + col; '#' is a wall, a move into it stays put."""

    def __init__(self, text: str, slip: float = 0.0) -> None:
        rows = text.strip("\n").split("\n")
        self.walls = np.array([[c == "#" for c in row] for row in rows])
        self.n_rows, self.n_cols = self.walls.shape
        self.slip = slip
        self.free = [
            r * self.n_cols + c
            for r in range(self.n_rows)
            for c in range(self.n_cols)
            if not self.walls[r, c]
        ]

    def step(self, s: int, a: int, rng: np.random.Generator | None = None) -> int:
        if self.slip and rng is not None and rng.random() < self.slip:
            a = int(rng.integers(4))  # a slip: a uniformly random action
        r, c = divmod(s, self.n_cols)
        nr, nc = r + MOVES[a][0], c + MOVES[a][1]
        return s if self.walls[nr, nc] else nr * self.n_cols + nc

    def bfs(self, source: int) -> dict[int, int]:
        dist, todo = {source: 0}, deque([source])
        while todo:
            s = todo.popleft()
            for a in range(4):
                t = self.step(s, a)
                if t not in dist:
                    dist[t] = dist[s] + 1
                    todo.append(t)
        return dist

    def manhattan(self, a, b):
        ra, ca = np.divmod(np.asarray(a), self.n_cols)
        rb, cb = np.divmod(np.asarray(b), self.n_cols)
        return np.abs(ra - rb) + np.abs(ca - cb)

    def cell(self, r: int, c: int) -> int:
        return r * self.n_cols + c


def explore_all(controller: SmartStartController, grid: Grid, repeats: int = 1) -> None:
    """Feed every (s, a) of a deterministic grid to the controller ``repeats`` times."""
    for _ in range(repeats):
        for s in grid.free:
            for a in range(4):
                controller.observe(s, a, 0.0, grid.step(s, a), False)


def force_target(controller: SmartStartController, target) -> np.ndarray:
    """A max_q array (over model states) that makes ``target`` the UCB choice."""
    q = np.zeros(controller.model.n_states)
    q[controller.model.index(target)] = 100.0
    return q


def walk(controller, grid, s, limit=200, rng=None):
    """Follow the guide from s; returns the visited states."""
    visited = [s]
    while controller.active and len(visited) <= limit:
        a = controller.act(s)
        if a is None:
            break
        s2 = grid.step(s, a, rng)
        controller.observe(s, a, 0.0, s2, False)
        s = s2
        visited.append(s)
    return visited


# ---- state keys and the count model ------------------------------------------------------


def test_state_key_ints_and_arrays():
    assert state_key(3) == 3
    assert state_key(np.int64(3)) == 3 and type(state_key(np.int64(3))) is int
    assert state_key(np.array(3)) == 3
    bits = np.array([1, 0, 1], dtype=np.uint8)
    assert state_key(bits) == bits.tobytes()
    assert state_key(bits) != state_key(np.array([1, 1, 0], dtype=np.uint8))


def test_counts_after_scripted_walk_equal_hand_counts():
    # corridor 0-1-2-3, actions 0 = left, 1 = right
    model = CountModel(2)
    walk_ = [(0, 1, 0.0, 1), (1, 1, 0.0, 2), (2, 0, 0.0, 1), (1, 1, 0.0, 2), (2, 1, 1.0, 3)]
    for s, a, r, s2 in walk_:
        model.update(s, a, r, s2, s2 == 3)
    assert model.n_states == 4 and model.n_steps == 5
    assert [model.observation(i) for i in range(4)] == [0, 1, 2, 3]  # first-seen order
    np.testing.assert_array_equal(model.observations(), [0, 1, 2, 3])
    np.testing.assert_array_equal(model.state_counts, [1, 2, 2, 0])
    np.testing.assert_array_equal(model.state_action_counts, [[0, 1], [0, 2], [1, 1], [0, 0]])
    np.testing.assert_array_equal(model.reward_sums, [[0, 0], [0, 0], [0, 1], [0, 0]])
    assert model.transition_count(1, 1, 2) == 2
    assert model.transition_count(2, 0, 1) == 1
    assert model.transition_count(0, 0, 1) == 0
    assert model.transition_count(9, 0, 1) == 0  # never-seen state
    np.testing.assert_array_equal(model.terminal_mask, [False, False, False, True])
    np.testing.assert_array_equal(model.candidate_mask(), [True, True, True, False])
    assert model.index(2) == 2 and model.index(np.int64(3)) == 3 and model.index(7) is None


def test_transition_model_rows_sum_to_one_and_mean_rewards():
    model = CountModel(2)
    for s2, r in ((1, 1.0), (1, 0.0), (2, 0.5)):  # (0, 0) -> 1 twice, -> 2 once
        model.update(0, 0, r, s2, False)
    model.update(1, 1, 0.0, 0, False)
    P, R = model.transition_model()
    assert sp.issparse(P) and P.format == "csr" and P.shape == (3 * 2, 3)
    dense = P.toarray()
    np.testing.assert_allclose(dense[0], [0, 2 / 3, 1 / 3])
    np.testing.assert_allclose(dense[3], [1, 0, 0])
    sums = dense.sum(axis=1)
    np.testing.assert_allclose(sums[[0, 3]], 1.0)  # tried pairs
    np.testing.assert_array_equal(sums[[1, 2, 4, 5]], 0.0)  # untried pairs: empty rows
    np.testing.assert_allclose(R, [[0.5, 0], [0, 0], [0, 0]])
    assert model.transition_model()[0] is P  # cached until the next update
    model.update(2, 0, 0.0, 2, False)
    assert model.transition_model()[0] is not P


def test_terminal_means_every_arrival_was_terminal():
    model = CountModel(1)
    model.update(0, 0, 1.0, 1, True)  # episode ends in 1 ...
    model.update(0, 0, 0.0, 2, True)
    model.update(3, 0, 0.0, 2, False)  # ... 2 is also reached mid-episode
    model.update(2, 0, 0.0, 3, False)
    np.testing.assert_array_equal(model.terminal_mask, [False, True, False, False])


def test_multibinary_observations():
    model = CountModel(3)
    a, b = np.array([0, 1, 0], np.uint8), np.array([1, 1, 0], np.uint8)
    model.update(a, 0, 0.0, b, False)
    model.update(a.copy(), 0, 0.0, b.copy(), False)
    assert model.n_states == 2 and model.transition_count(a, 0, b) == 2
    obs = model.observations()
    assert obs.shape == (2, 3) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs[1], b)
    a[0] = 1  # the model keeps its own copy
    np.testing.assert_array_equal(model.observation(0), [0, 1, 0])


def test_model_state_dict_round_trip_is_plain_python():
    model = CountModel(2)
    for s, a, s2 in ((0, 1, 1), (1, 1, 2), (2, 0, 1), (1, 0, 0)):
        model.update(s, a, 0.5, s2, s2 == 2)
    state = model.state_dict()
    json.dumps(state)  # only python containers and numbers
    other = CountModel(2)
    other.load_state_dict(state)
    assert other.n_steps == model.n_steps and other.index(2) == model.index(2)
    np.testing.assert_array_equal(other.state_action_counts, model.state_action_counts)
    np.testing.assert_array_equal(other.terminal_mask, model.terminal_mask)
    assert (other.transition_model()[0] != model.transition_model()[0]).nnz == 0


# ---- Eq. 1 ---------------------------------------------------------------------------------


def test_ucb_scores_paper_and_keulen_forms_by_hand():
    max_q = np.array([0.0, 0.5])
    counts = np.array([1, 4])
    # ln(5) = 1.6094; paper: 0.1 * sqrt(1.6094 / 1) = 0.12686, 0.1 * sqrt(1.6094 / 4) = 0.06343
    np.testing.assert_allclose(
        ucb_scores(max_q, counts, 5, 0.1, "paper"), [0.126864, 0.5 + 0.063432], atol=1e-6
    )
    # keulen: sqrt(0.1 * 1.6094 / 1) = 0.40118, sqrt(0.1 * 1.6094 / 4) = 0.20059
    np.testing.assert_allclose(
        ucb_scores(max_q, counts, 5, 0.1, "keulen"), [0.401178, 0.5 + 0.200589], atol=1e-6
    )
    # with c_ss = 1 the two forms coincide: sqrt(ln 10 / 10) = 0.479853
    np.testing.assert_allclose(
        ucb_scores(np.zeros(1), [10], 10, 1.0, "paper"), [0.479853], atol=1e-6
    )
    np.testing.assert_allclose(
        ucb_scores(np.zeros(1), [10], 10, 1.0, "keulen"), [0.479853], atol=1e-6
    )
    with pytest.raises(ValueError, match="form"):
        ucb_scores(max_q, counts, 5, 0.1, "other")


def test_ucb_picks_least_visited_when_q_is_zero():
    counts = np.array([5, 2, 9, 3])
    assert smart_start_state(np.zeros(4), counts, 0.1) == 1


def test_ucb_picks_high_q_when_c_ss_is_tiny():
    counts = np.array([5, 2, 9, 3])
    max_q = np.array([0.1, 0.0, 0.7, 0.2])
    assert smart_start_state(max_q, counts, 1e-6) == 2
    assert smart_start_state(max_q, counts, 1e-6, form="keulen") == 2
    assert smart_start_state(max_q, counts, 10.0) == 1  # large c_ss: counts dominate


def test_ucb_excludes_never_left_and_terminal_states():
    counts = np.array([0, 4, 1, 6])
    exclude = np.array([False, False, True, False])
    assert smart_start_state(np.zeros(4), counts, 0.1, exclude=exclude) == 1
    assert smart_start_state(np.zeros(2), np.array([0, 0]), 0.1) is None
    assert smart_start_state(np.zeros(1), np.array([3]), exclude=np.array([True])) is None


def test_ucb_ties_are_broken_at_random():
    counts = np.array([4, 2, 2, 7])
    chosen = {
        smart_start_state(np.zeros(4), counts, rng=np.random.default_rng(i)) for i in range(40)
    }
    assert chosen == {1, 2}


# ---- value iteration -----------------------------------------------------------------------


def corridor_P(n: int = 4) -> sp.csr_matrix:
    """1 x n corridor, action 0 = left, 1 = right, walls at both ends."""
    rows, cols = [], []
    for s in range(n):
        rows += [2 * s, 2 * s + 1]
        cols += [max(s - 1, 0), min(s + 1, n - 1)]
    return sp.csr_matrix((np.ones(2 * n), (rows, cols)), shape=(2 * n, n))


def test_value_iteration_on_corridor_gives_powers_of_gamma():
    target = np.array([False, False, False, True])
    P = corridor_P()
    Q = value_iteration(P, target, GAMMA, tol=1e-12)
    np.testing.assert_array_equal(P.toarray(), corridor_P().toarray())  # P is not modified
    g = GAMMA
    # V(2) = 1 (one step into T), V(1) = g, V(0) = g^2; going left from s lands in s - 1
    # (or stays in 0 against the wall): Q(s, left) = g * V(max(s - 1, 0))
    expected = [[g**3, g**2], [g**3, g], [g**2, 1.0]]
    np.testing.assert_allclose(Q[:3], expected, rtol=1e-12)


def test_value_iteration_stochastic_self_loop_by_hand():
    # one state, one action: into T with p = 0.5, else stays: V = 0.5 + 0.5 g V
    P = sp.csr_matrix(np.array([[0.5, 0.5], [0.0, 1.0]]))
    Q = value_iteration(P, np.array([False, True]), GAMMA, tol=1e-12, max_iter=10_000)
    assert Q[0, 0] == pytest.approx(0.5 / (1 - 0.5 * GAMMA), rel=1e-9)


def test_value_iteration_unreachable_target_gives_zero():
    P = corridor_P(6)
    P = P.tolil()
    P[2 * 2 + 1, 3], P[2 * 2 + 1, 2] = 0, 1  # state 2 can no longer go right
    P = P.tocsr()
    P.eliminate_zeros()
    Q = value_iteration(P, np.eye(6, dtype=bool)[5], GAMMA)
    np.testing.assert_array_equal(Q[:3], 0.0)
    assert (Q[3:5].max(axis=1) > 0).all()


def test_value_iteration_reaches_far_states_in_one_sweep_on_a_deterministic_model():
    # 0.99^k < 1e-3 for k > 687: sweeps from V = 0 would need ~n of them, with a tolerance
    # check that must not stop them early; the shortest-path start is exact at once
    n = 2000
    target = np.eye(n, dtype=bool)[n - 1]
    Q = value_iteration(corridor_P(n), target, GAMMA, max_iter=1)
    assert Q[0, 1] == pytest.approx(GAMMA ** (n - 2), rel=1e-9)
    assert Q[0, 0] == pytest.approx(GAMMA ** (n - 1), rel=1e-9)  # the wall: stays in 0
    np.testing.assert_allclose(Q, value_iteration(corridor_P(n), target, GAMMA, tol=0.0))


def test_value_iteration_falls_from_the_bound_to_the_stochastic_fixed_point():
    # a 1x3 corridor where 'right' from 0 slips back with p = 0.5: the shortest-path bound
    # (V0(0) = g) is too optimistic and the sweeps bring it down to the solution by hand
    P = sp.csr_matrix(
        np.array(
            [
                [1.0, 0.0, 0.0],  # 0 left (wall)
                [0.5, 0.5, 0.0],  # 0 right, slips with p = 0.5
                [1.0, 0.0, 0.0],  # 1 left
                [0.0, 0.0, 1.0],  # 1 right, into T
                [0.0, 1.0, 0.0],  # 2 left
                [0.0, 0.0, 1.0],  # 2 right (wall)
            ]
        )
    )
    Q = value_iteration(P, np.array([False, False, True]), GAMMA, tol=1e-14, max_iter=10_000)
    # V(1) = 1; V(0) = 0.5 g V(0) + 0.5 g  ->  V(0) = 0.5 g / (1 - 0.5 g)
    v0 = 0.5 * GAMMA / (1 - 0.5 * GAMMA)
    np.testing.assert_allclose(Q[0], [GAMMA * v0, v0], rtol=1e-10)
    np.testing.assert_allclose(Q[1], [GAMMA * v0, 1.0], rtol=1e-10)
    capped = value_iteration(P, np.array([False, False, True]), GAMMA, max_iter=1)
    assert capped[0, 1] > Q[0, 1]  # one sweep: still above, on its way down


def test_value_iteration_terminal_states_end_the_walk():
    # a corridor 0-1-2-3 with T = {3} where 1 is terminal: 0 cannot pass through it
    target = np.eye(4, dtype=bool)[3]
    Q = value_iteration(corridor_P(), target, GAMMA, terminal_mask=np.eye(4, dtype=bool)[1])
    np.testing.assert_array_equal(Q[0], 0.0)
    assert Q[2, 1] == 1.0


# ---- the controller ------------------------------------------------------------------------


def test_controller_not_in_episode_zero_nor_with_empty_model():
    controller = SmartStartController(4, rng=np.random.default_rng(0))
    assert not controller.begin_episode(1, 0, None)  # empty model
    report = controller.end_episode()
    assert not report.used and report.steps == 0
    controller.observe(0, 1, 0.0, 1, False)
    assert not controller.begin_episode(0, 0, None)  # episode 0
    # the only candidate is 0, the start itself: reached at once, nothing to walk
    assert not controller.begin_episode(1, 0, None)
    assert not controller.active
    report = controller.end_episode()
    assert report.used and report.reached and report.steps == 0 and report.target == 0


def test_controller_no_candidate():
    # every state that was left is terminal (each arrival ended an episode): no candidate
    controller = SmartStartController(1, rng=np.random.default_rng(0))
    controller.observe(0, 0, 0.0, 1, True)
    controller.observe(1, 0, 0.0, 0, True)
    assert not controller.begin_episode(3, 0, None)
    assert not controller.end_episode().used


def test_controller_eta_zero_never_runs_and_half_runs_about_half():
    grid = Grid(MAZE)
    never = SmartStartController(4, eta=0.0, rng=np.random.default_rng(0))
    explore_all(never, grid)
    assert not any(never.begin_episode(e, grid.free[0], None) for e in range(1, 50))
    half = SmartStartController(4, eta=0.5, rng=np.random.default_rng(0))
    explore_all(half, grid)
    runs = 0
    for episode in range(1, 201):
        half.begin_episode(episode, grid.free[0], None)
        runs += half.end_episode().used
    assert 70 <= runs <= 130


def test_max_q_callable_gets_candidate_observations_only():
    controller = SmartStartController(2, rng=np.random.default_rng(0))
    for s, a, s2 in ((0, 1, 1), (1, 1, 2), (2, 1, 3)):
        controller.observe(s, a, 1.0 if s2 == 3 else 0.0, s2, s2 == 3)
    seen = []

    def max_q(obs):
        seen.append(obs.copy())
        return np.where(obs == 2, 5.0, 0.0)

    assert controller.begin_episode(1, 0, max_q)
    np.testing.assert_array_equal(seen[0], [0, 1, 2])  # 3 is terminal and never left
    assert controller.target_observation == 2
    with pytest.raises(ValueError, match="one value per candidate"):
        controller.begin_episode(2, 0, lambda obs: np.zeros(len(obs) + 1))


def _counted_corridor(ss_value: str) -> SmartStartController:
    """A 4-cell corridor 0-1-2-3 (actions 0 left, 1 right; 3 the goal, terminal) with
    C(0) = 3, C(1) = 1, C(2) = 2, so N = 6, and |a - b| as the distance."""
    controller = SmartStartController(
        2, ss_value=ss_value, distance=lambda a, b: abs(a - b), rng=np.random.default_rng(0)
    )
    for s, a, s2 in ((0, 1, 1), (1, 1, 2), (2, 1, 3), (0, 0, 0), (0, 0, 0), (2, 0, 1)):
        controller.observe(s, a, 1.0 if s2 == 3 else 0.0, s2, s2 == 3)
    return controller


def test_zero_value_term_picks_s_ss_by_counts_alone():
    # By hand, paper form, c_ss 0.1, ln N = ln 6 = 1.7918; the learner's max_a Q = 0.5, 0, 0.1:
    #   state 0: 0.5 + 0.1 * sqrt(1.7918 / 3) = 0.5 + 0.0773 = 0.5773   <- 'learner' picks 0
    #   state 1: 0.0 + 0.1 * sqrt(1.7918 / 1) = 0.0 + 0.1339 = 0.1339   <- 'zero' picks 1
    #   state 2: 0.1 + 0.1 * sqrt(1.7918 / 2) = 0.1 + 0.0947 = 0.1947
    # (3 is terminal: never a candidate.) With the value term zero, the least-left state wins.
    q = {0: 0.5, 1: 0.0, 2: 0.1}
    learner = _counted_corridor("learner")
    np.testing.assert_array_equal(learner.model.state_counts, [3, 1, 2, 0])
    learner.begin_episode(1, 0, lambda obs: np.array([q[int(s)] for s in obs]), goal=3)
    assert learner.target_observation == 0 and learner.report.reached  # the start itself

    def never_called(obs):
        raise AssertionError("the 'zero' value term must not ask the learner")

    zero = _counted_corridor("zero")
    assert zero.begin_episode(1, 0, never_called, goal=3)
    report = zero.report
    assert zero.target_observation == 1 and report.target_count == 1
    assert report.target_distance_to_goal == 2.0  # |1 - 3|
    assert zero.act(0) == 1  # the planned walk: one step right, to S_ss


def test_eq1_values_one_branch_per_choice():
    controller = _counted_corridor("learner")
    candidates = np.flatnonzero(controller.model.candidate_mask())
    np.testing.assert_array_equal(candidates, [0, 1, 2])
    max_q = np.array([0.5, 0.0, 0.1, 9.0])  # over all model states
    assert SS_VALUES == ("learner", "zero")
    np.testing.assert_array_equal(
        eq1_values("learner", max_q, controller.model, candidates), [0.5, 0.0, 0.1]
    )
    np.testing.assert_array_equal(
        eq1_values("zero", max_q, controller.model, candidates), [0.0, 0.0, 0.0]
    )
    with pytest.raises(ValueError, match="ss_value must be one of"):
        eq1_values("half", max_q, controller.model, candidates)
    with pytest.raises(ValueError, match="ss_value must be one of"):
        SmartStartController(2, ss_value="half")


def test_target_distance_to_goal_needs_a_distance_and_a_goal():
    controller = SmartStartController(2, ss_value="zero", rng=np.random.default_rng(0))
    controller.observe(0, 1, 0.0, 1, False)
    controller.observe(1, 1, 0.0, 2, False)
    controller.begin_episode(1, 0, None, goal=2)
    assert controller.report.used and controller.report.target_distance_to_goal is None


def test_guide_walks_a_shortest_path_in_a_known_maze():
    grid = Grid(MAZE)
    start, target = grid.cell(1, 1), grid.cell(1, 7)  # over the top: 10 steps (14 below)
    dist = grid.bfs(start)
    controller = SmartStartController(4, rng=np.random.default_rng(0))
    explore_all(controller, grid)
    assert controller.begin_episode(1, start, force_target(controller, target))
    report = controller.report
    assert report.plan_length == dist[target] == 10
    path = controller.planned_path
    assert path[0] == start and path[-1] == target and len(path) == 11
    assert all(grid.manhattan(a, b) == 1 for a, b in zip(path, path[1:], strict=False))
    visited = walk(controller, grid, start)
    assert visited[-1] == target and len(visited) - 1 == dist[target]
    report = controller.end_episode()
    assert report.used and report.reached and report.steps == 10 and report.n_plans == 1
    assert report.target == target and report.target_count == 4 and report.plan_ms > 0


def test_guide_breaks_ties_at_random():
    grid = Grid("####\n#..#\n#..#\n####")  # 2 x 2 room: two shortest paths to the far corner
    start, target = grid.cell(1, 1), grid.cell(2, 2)
    first_actions = set()
    for seed in range(20):
        controller = SmartStartController(4, rng=np.random.default_rng(seed))
        explore_all(controller, grid)
        controller.begin_episode(1, start, force_target(controller, target))
        first_actions.add(controller.act(start))
    assert first_actions == {1, 2}  # right or down


def test_theta_stops_at_the_region():
    grid = Grid(MAZE)
    start, target = grid.cell(1, 1), grid.cell(1, 7)
    controller = SmartStartController(
        4, theta=2, distance=grid.manhattan, rng=np.random.default_rng(0)
    )
    explore_all(controller, grid)
    assert controller.begin_episode(1, start, force_target(controller, target))
    region = [s for s in grid.free if grid.manhattan(s, target) <= 2]
    np.testing.assert_array_equal(
        np.flatnonzero(controller.target_mask()), sorted(controller.model.index(s) for s in region)
    )
    visited = walk(controller, grid, start)
    dist = grid.bfs(start)
    assert grid.manhattan(visited[-1], target) <= 2
    assert len(visited) - 1 == min(dist[s] for s in region) == 8  # (1, 5), 8 steps away
    report = controller.end_episode()
    assert report.reached and report.plan_length == 8
    with pytest.raises(ValueError, match="distance"):
        SmartStartController(4, theta=1)


@pytest.mark.parametrize("replan", [False, True])
def test_walk_with_slip_still_reaches_the_target_in_most_episodes(replan):
    grid = Grid(MAZE, slip=0.2)
    rng = np.random.default_rng(1)
    controller = SmartStartController(4, replan=replan, rng=np.random.default_rng(2))
    for _ in range(15):  # a noisy model: every (s, a) tried 15 times with slips
        for s in grid.free:
            for a in range(4):
                controller.observe(s, a, 0.0, grid.step(s, a, rng), False)
    start, target = grid.cell(1, 1), grid.cell(5, 7)  # 10 steps: down, then along the bottom
    reached = 0
    for episode in range(1, 31):
        controller.begin_episode(episode, start, force_target(controller, target))
        walk(controller, grid, start, limit=40, rng=rng)
        reached += controller.end_episode().reached
    assert reached >= 24


def test_no_path_hands_over():
    grid = Grid(MAZE)
    controller = SmartStartController(4, rng=np.random.default_rng(0))
    explore_all(controller, grid)
    far = 999  # a start the model never saw
    assert not controller.begin_episode(1, far, None)
    report = controller.end_episode()
    assert report.used and report.no_path and not report.reached
    # one-way model: 0 -> 1 -> 2 known, nothing leads back to 0
    c2 = SmartStartController(2, rng=np.random.default_rng(0))
    c2.observe(0, 1, 0.0, 1, False)
    c2.observe(1, 1, 0.0, 2, False)
    c2.observe(2, 1, 0.0, 2, False)
    q = np.array([9.0, 0.0, 0.0])  # force S_ss = 0, unreachable from 2
    assert not c2.begin_episode(1, 2, q)
    assert c2.end_episode().no_path
    # the walk slips to a state the plan does not cover: act says None
    c3 = SmartStartController(2, rng=np.random.default_rng(0))
    for s in range(3):
        c3.observe(s, 1, 0.0, s + 1, False)
    assert c3.begin_episode(1, 0, np.array([0, 0, 0, 0.0]) + np.eye(4)[2] * 9)
    assert c3.act(0) == 1
    c3.observe(0, 1, 0.0, 50, False)  # an unforeseen state
    assert c3.act(50) is None and not c3.active and c3.end_episode().no_path


def test_walk_ends_on_terminal_and_on_reaching_in_observe():
    controller = SmartStartController(2, rng=np.random.default_rng(0))
    for s in range(4):
        controller.observe(s, 1, 0.0, s + 1, False)
    assert controller.begin_episode(1, 0, np.eye(5)[3] * 9)
    controller.act(0)
    controller.observe(0, 1, 0.0, 1, True)  # the episode ends on the way
    assert not controller.active
    report = controller.end_episode()
    assert report.steps == 1 and not report.reached and not report.no_path


def test_replan_after_a_slip():
    grid = Grid(MAZE)
    controller = SmartStartController(4, replan=True, rng=np.random.default_rng(0))
    explore_all(controller, grid)
    start, target = grid.cell(1, 1), grid.cell(5, 7)
    assert controller.begin_episode(1, start, force_target(controller, target))
    a = controller.act(start)
    assert a == 2  # down
    controller.observe(start, a, 0.0, start, False)  # a slip: it stayed put
    controller.act(start)
    report = controller.end_episode()
    assert report.n_plans == 2


def test_multibinary_states_bit_flipping():
    n_bits = 4

    def flip(s, a):
        t = s.copy()
        t[a] ^= 1
        return t

    controller = SmartStartController(n_bits, rng=np.random.default_rng(0))
    for i in range(2**n_bits):  # every state and action of the 4-bit flipping world
        s = np.array([(i >> b) & 1 for b in range(n_bits)], dtype=np.uint8)
        for a in range(n_bits):
            controller.observe(s, a, 0.0, flip(s, a), False)
    start = np.zeros(n_bits, np.uint8)
    target = np.array([1, 0, 1, 1], np.uint8)
    assert controller.begin_episode(1, start, force_target(controller, target))
    np.testing.assert_array_equal(controller.target_observation, target)
    assert controller.report.plan_length == 3
    s, steps = start, 0
    while controller.active:
        a = controller.act(s)
        if a is None:
            break
        s2 = flip(s, a)
        controller.observe(s, a, 0.0, s2, False)
        s, steps = s2, steps + 1
    np.testing.assert_array_equal(s, target)
    assert steps == 3 and controller.end_episode().reached
    hamming = SmartStartController(
        n_bits,
        theta=1,
        distance=lambda a, b: np.sum(np.asarray(a) != b, axis=-1),
        rng=np.random.default_rng(0),
    )
    hamming.model.load_state_dict(controller.model.state_dict())
    hamming.begin_episode(1, start, force_target(hamming, target))
    assert hamming.end_episode().plan_length == 2
    assert all(isinstance(o, np.ndarray) for o in hamming.planned_path)


def test_controller_state_dict_round_trip():
    grid = Grid(MAZE)
    controller = SmartStartController(4, rng=np.random.default_rng(5))
    explore_all(controller, grid, repeats=2)
    state = controller.state_dict()
    json.dumps(state)  # plain python containers only (torch.load(weights_only=True) safe)
    other = SmartStartController(4, rng=np.random.default_rng(99))
    other.load_state_dict(state)
    start = grid.cell(1, 1)
    assert controller.begin_episode(3, start, None) == other.begin_episode(3, start, None)
    a, b = controller.end_episode(), other.end_episode()
    assert (a.target, a.target_count, a.plan_length) == (b.target, b.target_count, b.plan_length)


def test_ucb_total_is_sum_of_state_counts():
    # Algorithm 1 writes |D|: the number of transitions, which is sum_s C(s)
    model = CountModel(2)
    for s, a, s2 in ((0, 1, 1), (1, 1, 2), (2, 0, 1), (1, 0, 0)):
        model.update(s, a, 0.0, s2, False)
    assert model.state_counts.sum() == model.n_steps == 4
    assert math.isclose(
        ucb_scores(np.zeros(1), [1], model.n_steps, 0.1)[0], 0.1 * math.sqrt(math.log(4))
    )


def test_guided_walks_in_grid_maze_env():
    from sshr_torch import env as env_module
    from sshr_torch import maze as maze_module

    env = env_module.GridMazeEnv("keulen_easy", max_episode_steps=100)
    controller = SmartStartController(4, rng=np.random.default_rng(0))
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(3000):  # random exploration feeds the model
        s, a = obs["observation"], int(rng.integers(4))
        obs, reward, terminated, truncated, _ = env.step(a)
        controller.observe(s, a, reward, obs["observation"], terminated)
        if terminated or truncated:
            obs, _ = env.reset()
    n_guided = 0
    for episode in range(1, 6):
        obs, _ = env.reset()
        start = obs["observation"]
        if controller.begin_episode(episode, start, None):
            n_guided += 1
        target = controller.target_observation
        s, terminated = start, False
        while controller.active and not terminated:
            a = controller.act(s)
            if a is None:
                break
            obs, reward, terminated, _, _ = env.step(a)
            controller.observe(s, a, reward, obs["observation"], terminated)
            s = obs["observation"]
        report = controller.end_episode()
        assert report.used and report.reached and s == target
        assert report.steps == report.plan_length  # deterministic moves: the plan is walked
        dist = maze_module.bfs_distances(env.maze, env.maze.cell_position(start))
        assert report.steps >= dist[env.maze.cell_position(target)]
    assert n_guided >= 4


# ---- directed exploration: UCB1, the frontier, walks to it -------------------------------------


def test_ucb1_action_tries_untried_actions_first_at_random():
    rng = np.random.default_rng(0)
    picks = {ucb1_action([3, 0, 5, 0], rng) for _ in range(50)}
    assert picks == {1, 3}  # only the untried ones, both of them
    assert ucb1_action([0, 9, 9, 9], rng) == 0


def test_ucb1_action_by_hand_once_every_action_was_tried():
    rng = np.random.default_rng(0)
    # no values: the least-tried action, whatever c
    assert ucb1_action([4, 1, 2, 4], rng) == 1
    assert ucb1_action([4, 1, 2, 4], rng, c=100.0) == 1
    # C(s) = 8, ln 8 = 2.079: bonuses c * sqrt(2.079 / n) = 0.721 (n 4) and 1.442 (n 1), c = 1;
    # Q = [1.0, 0.2]: scores 1.721 and 1.642, so action 0; with c = 2, 2.442 against 3.084: 1.
    assert ucb1_action([4, 1], rng, q=np.array([1.0, 0.2])) == 0
    assert ucb1_action([4, 1], rng, q=np.array([1.0, 0.2]), c=2.0) == 1
    ties = {ucb1_action([2, 2, 2], rng) for _ in range(60)}
    assert ties == {0, 1, 2}


def test_frontier_mask_path_to_frontier_and_action_counts():
    # a corridor 0 - 1 - 2 - 3 (two actions: 0 left, 1 right); every action of 0, 1, 2 tried,
    # 3 only arrived at: the frontier is {3} and the walk from 0 goes right three times
    model = CountModel(2)
    for s in range(3):
        model.update(s, 1, 0.0, s + 1, False)
        model.update(s, 0, 0.0, max(s - 1, 0), False)
    assert model.frontier_mask().tolist() == [False, False, False, True]
    assert model.action_counts(1) == [1, 1] and model.action_counts(99) == [0, 0]
    path, end = model.path_to_frontier(0)
    assert [(model.observation(s), a) for s, a in path] == [(0, 1), (1, 1), (2, 1)]
    assert end == model.index(3)
    assert model.path_to_frontier(3) is None  # already on it
    assert model.path_to_frontier(42) is None  # unknown
    # a terminal state is never the frontier, nor walked through
    model.update(3, 1, 1.0, 4, True)
    model.update(3, 0, 0.0, 2, False)
    assert not model.frontier_mask().any() and model.path_to_frontier(0) is None
    # the moves survive a checkpoint, in the order they were first seen (the search's ties)
    shuffled = CountModel(4)
    for s, a, s2 in [(0, 3, 1), (0, 1, 2), (0, 0, 0), (0, 2, 0), (2, 0, 0)]:
        shuffled.update(s, a, 0.0, s2, False)
    restored = CountModel(4)
    restored.load_state_dict(json.loads(json.dumps(shuffled.state_dict())))
    # 1 and 2 are both one move from 0: the first seen, 1 (by action 3), is the one walked to
    assert restored.path_to_frontier(0) == shuffled.path_to_frontier(0) == ([(0, 3)], 1)
    copy = CountModel(2)
    copy.load_state_dict(json.loads(json.dumps(model.state_dict())))
    copy.update(1, 1, 0.0, 5, False)  # a new move from 1 (a slip): 5 is the frontier
    path, end = copy.path_to_frontier(0)
    assert [(copy.observation(s), a) for s, a in path] == [(0, 1), (1, 1)]
    assert copy.observation(end) == 5


def test_walk_to_frontier_walks_the_fewest_seen_moves_and_ends_there():
    grid = Grid(MAZE)
    start, corner = grid.cell(1, 1), grid.cell(5, 7)
    controller = SmartStartController(4, rng=np.random.default_rng(0))
    explore_all(controller, grid)
    assert not controller.walk_to_frontier(start)  # every action of every cell tried
    # every action tried but three of the corner's: it is the only frontier state
    controller = SmartStartController(4, rng=np.random.default_rng(0))
    for s in grid.free:
        for a in range(4):
            if s != corner or a == 0:
                controller.observe(s, a, 0.0, grid.step(s, a), False)
    assert controller.model.frontier_mask().sum() == 1
    assert controller.walk_to_frontier(start) and controller.active
    visited = walk(controller, grid, start)
    distance = grid.bfs(start)[corner]
    assert visited[-1] == corner and len(visited) - 1 == distance and not controller.active
    report = controller.end_episode()
    assert report.reached and report.steps == distance and report.n_plans == 1


def test_frontier_eq1_ranks_the_frontier_only():
    grid = Grid(MAZE)
    start, a, b = grid.cell(1, 1), grid.cell(5, 3), grid.cell(3, 5)

    def counted(frontier: bool) -> SmartStartController:
        # every action of every cell tried twice (C(s) = 8), but at a and b action 0 is
        # untried and the others were tried 3 (C(a) = 9) and 4 (C(b) = 12) times
        controller = SmartStartController(4, frontier=frontier, rng=np.random.default_rng(0))
        for s in grid.free:
            for action in range(4):
                k = 2 if s not in (a, b) else 0 if action == 0 else 3 if s == a else 4
                for _ in range(k):
                    controller.observe(s, action, 0.0, grid.step(s, action), False)
        return controller

    frontier = counted(True)
    assert frontier.begin_episode(1, start, None) and frontier.target_observation == a
    # the paper's Eq. 1 ranks every visited state: a least-left one (C = 8), not a or b
    plain = counted(False)
    plain.begin_episode(1, start, None)
    assert plain.target_observation not in (a, b)
    # a state only ever arrived at (C(s) = 0) scores +inf on the frontier
    frontier.end_episode()
    frontier.observe(grid.cell(5, 1), 3, 0.0, 999, False)
    frontier.begin_episode(2, start, None)
    assert frontier.target_observation == 999


# ---- the model's values for a goal (the DQN's bootstrap floor) ---------------------------------


def chain_model() -> CountModel:
    """0 -1-> 1 -1-> 2 -1-> 3 (the goal, terminal); 1 -0-> 0; 5 -0-> 5 (no path); from 6, action
    0 lands in 2 or stays in 6, one time each."""
    model = CountModel(2)
    for s, a, s2 in [(0, 1, 1), (1, 1, 2), (1, 0, 0), (5, 0, 5), (6, 0, 2), (6, 0, 6)]:
        model.update(s, a, 0.0, s2, False)
    model.update(2, 1, 1.0, 3, True)
    return model


def test_model_goal_values_by_hand():
    model = chain_model()
    values = ModelGoalValues(model, 8, 0.9)
    states = np.arange(8)
    assert np.all(values(states, np.full(8, 3)) == -np.inf)  # nothing before a refresh
    values.refresh(3)
    # reward 1 on arrival: V = gamma^(d - 1) on the chain; from 6, x = 0.5 * 0.9 * 1 + 0.5 *
    # 0.9 * x, so x = 0.45 / 0.55; the goal itself, a state without a path (5) and a state
    # never seen (4, 7): no floor.
    expected = [0.81, 0.9, 1.0, -np.inf, -np.inf, -np.inf, 0.45 / 0.55, -np.inf]
    np.testing.assert_allclose(values(states, np.full(8, 3)), expected, rtol=1e-5)
    # rows whose goal is another one get no floor
    got = values(np.array([0, 1, 2]), np.array([3, 2, 3]))
    np.testing.assert_allclose(got, [0.81, -np.inf, 1.0], rtol=1e-5)
    assert got.dtype == np.float32

    # Q by action: from 1, action 1 -> 2 (0.9 * 1), action 0 -> 0 (0.9 * 0.81); actions the
    # model never saw taken: none
    inf = -np.inf
    expected_q = [[inf, 0.81], [0.729, 0.9], [inf, 1.0], [inf, inf], [inf, inf], [inf, inf]]
    got = values.q_values(np.array([0, 1, 2, 3, 4, 5, 6]), np.full(7, 3))
    np.testing.assert_allclose(got, [*expected_q, [0.45 / 0.55, inf]], rtol=1e-5)
    assert np.all(values.q_values(np.array([1]), np.array([2])) == -np.inf)  # another goal
    # reward -1 per step and 0 on arrival: from 0, -1 - 0.9 * 1 + 0.81 * 0 = -1.9
    penalised = ModelGoalValues(model, 8, 0.9, goal_reward=0.0, step_reward=-1.0)
    penalised.refresh(3)
    got = penalised(np.array([0, 1, 2, 5]), np.full(4, 3))
    np.testing.assert_allclose(got, [-1.9, -1.0, 0.0, -np.inf], rtol=1e-5, atol=1e-6)

    values.refresh(4)  # a goal the model never saw: no state has a known path to it
    assert np.all(values(states, np.full(8, 4)) == -np.inf)


def test_model_goal_values_refuse_rewards_that_make_arriving_worse():
    with pytest.raises(ValueError, match="goal reward above"):
        ModelGoalValues(CountModel(2), 4, 0.9, goal_reward=-20.0, step_reward=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        ModelGoalValues(CountModel(2), 4, 1.0)


def test_sample_transitions_draws_tried_pairs_uniformly_and_next_states_by_counts():
    model = CountModel(n_actions=2)
    with pytest.raises(ValueError, match="no transition"):
        model.sample_transitions(1, np.random.default_rng(0))
    # (0, 0) -> 1 ten times; (0, 1) -> 2 once: a deterministic model, uniform over the moves
    for _ in range(10):
        model.update(0, 0, 0.0, 1, False)
    model.update(0, 1, 0.0, 2, False)
    s, a, s2 = model.sample_transitions(20_000, np.random.default_rng(0))
    assert set(zip(s.tolist(), a.tolist(), s2.tolist(), strict=True)) == {(0, 0, 1), (0, 1, 2)}
    assert np.mean(a == 1) == pytest.approx(0.5, abs=0.02)
    # (1, 0) -> 0 three times and -> 2 once: (s, a) pairs uniform (1/3 each), then s' 3:1
    for _ in range(3):
        model.update(1, 0, 0.0, 0, False)
    model.update(1, 0, 0.0, 2, False)
    s, a, s2 = model.sample_transitions(30_000, np.random.default_rng(1))
    from_1 = s == 1
    assert np.mean(from_1) == pytest.approx(1 / 3, abs=0.02)
    assert np.mean(s2[from_1] == 0) == pytest.approx(0.75, abs=0.02)
    assert np.mean((s == 0) & (a == 0) & (s2 == 1)) == pytest.approx(1 / 3, abs=0.02)
