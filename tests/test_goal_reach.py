"""Goal reach: greedy walks to many goals at once, scored against the shortest paths."""

from __future__ import annotations

import copy
import json
import math

import goal_envs
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_train import tiny_config

from sshr_torch import dashboards
from sshr_torch.agents import DQNAgent, TabularAgent
from sshr_torch.config import ConfigError, TrainConfig
from sshr_torch.env import GridMazeEnv
from sshr_torch.goal_reach import (
    GoalReach,
    budgets,
    maze_distances,
    reach_from_start,
    score,
    walk_stepper,
)
from sshr_torch.maze import bfs_distances, parse_maze
from sshr_torch.rollout import env_step, greedy_choice, greedy_walks, pair_q_values, table_step
from sshr_torch.smart_start import CountModel, ModelGoalValues, known_distances, moves_return
from sshr_torch.sweep import SUMMARY_COLUMNS
from sshr_torch.trainer import train

# A 4x5 maze: a wall splits it, the right part reached around the bottom.
MAZE = parse_maze("S.#..\n..#..\n.....\n###.G\n")


class OraclePolicy:
    """A hand-built policy: a shortest-path move towards each goal in ``known``, and UP (into
    the wall above the top row, or wandering) towards every other goal."""

    def __init__(self, maze, known: set[int]) -> None:
        self.maze, self.known, self.calls = maze, known, 0
        self.table = GridMazeEnv(maze).next_cell
        # to_goal[g][s]: moves from s to g (BFS from g; moves are reversible in a grid)
        self.to_goal = {
            g: bfs_distances(maze, divmod(int(g), maze.n_cols)).ravel() for g in free_cells(maze)
        }

    def pair_q_values(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        self.calls += 1
        q = np.zeros((len(states), 4))
        for i, (s, g) in enumerate(zip(states.tolist(), goals.tolist(), strict=True)):
            if g in self.known:
                after = self.to_goal[g][self.table[s]].astype(float)
                after[after < 0] = np.inf
                q[i] = -after
            else:
                q[i, 0] = 1.0  # always UP
        return q


def free_cells(maze) -> np.ndarray:
    return np.flatnonzero(~maze.walls.ravel())


def test_score_and_budgets_by_hand():
    # reached: 4 of 4 (on the path), 6 of 4 (= 1.5x, the limit); not: no arrival, 7 of 4
    report = score(np.array([4, 6, -1, 7]), np.array([4.0, 4.0, 2.0, 4.0]))
    assert report.success == 0.5 and report.excess == pytest.approx(0.25)
    assert report.n_goals == 4
    assert report.row() == {"goals_success": 0.5, "goals_excess": 0.25}
    assert math.isnan(score(np.array([-1]), np.array([3.0])).excess)
    assert math.isnan(score(np.zeros(0), np.zeros(0)).success)
    assert budgets(np.array([1.0, 2.0, 3.0, np.inf])).tolist() == [1, 3, 4, 0]


def test_greedy_choice_breaks_ties_at_random_and_picks_the_best():
    rng = np.random.default_rng(0)
    q = np.array([[0.0, 1.0, 0.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    picks = np.array([greedy_choice(q, rng) for _ in range(200)])  # (200, 2)
    assert set(picks[:, 0].tolist()) == {1, 3}
    assert set(picks[:, 1].tolist()) == {0}


@pytest.mark.parametrize("stepper", ["table", "env copies"])
def test_goal_reach_of_a_hand_built_policy(stepper):
    start = MAZE.start_index
    cells = free_cells(MAZE)
    known = {int(cells[1]), int(cells[4]), MAZE.goal_index}  # the policy's goals
    agent = OraclePolicy(MAZE, known)
    reach = GoalReach(100, MAZE.n_cells, seed=3, start=start, shortest=maze_distances(MAZE))
    env = GridMazeEnv(MAZE)
    if stepper == "table":
        walks = walk_stepper(env)
    else:
        walks = lambda starts, goals: env_step(  # noqa: E731
            [copy.deepcopy(env) for _ in goals], starts, goals
        )
    report = reach.evaluate(agent, walks, cells, np.random.default_rng(0))
    goals = cells[cells != start]
    assert report.n_goals == len(goals)
    assert report.success == pytest.approx(len(known) / len(goals))
    assert report.excess == 0.0  # the policy's walks are shortest paths
    # One forward pass per step for all walks: as many calls as the longest walk's moves. On
    # the move table the walks that go round (UP into a wall) stop at once, so the longest is
    # the longest arrival; on env copies every other walk runs its whole budget.
    shortest = maze_distances(MAZE)(start)
    if stepper == "table":
        assert agent.calls == max(shortest[g] for g in known)
    else:
        assert agent.calls == budgets(shortest[goals]).max()


def test_goals_come_from_the_visited_states_in_one_order_per_run():
    reach = GoalReach(3, 20, seed=1, start=0)
    starts, goals = reach.pairs(np.arange(20))
    assert (starts == 0).all() and 0 not in goals and len(goals) == 3
    # The same draw from a smaller visited set keeps the goals that are still in it.
    fewer = np.setdiff1d(np.arange(20), goals[:1])
    _, later = reach.pairs(fewer)
    assert set(goals[1:].tolist()) <= set(later.tolist()) and goals[0] not in later
    assert (GoalReach(3, 20, seed=1, start=0).pairs(np.arange(20))[1] == goals).all()
    assert not (GoalReach(3, 20, seed=2, start=0).pairs(np.arange(20))[1] == goals).all()
    # Random starts: drawn from the visited states, never the walk's own goal.
    random = GoalReach(10, 20, seed=1, start=None)
    starts, goals = random.pairs(np.array([3, 5, 7, 9]))
    assert len(goals) == 4 and (starts != goals).all()
    assert set(starts.tolist()) <= {3, 5, 7, 9}


def test_count_model_distances_are_the_fewest_moves_seen():
    # A line 10 - 11 - 12 - 13 walked right then back left from 13 to 12 only; 14 a dead end.
    model = CountModel(2)
    for s, a, s2 in [(10, 1, 11), (11, 1, 12), (12, 1, 13), (13, 0, 12), (12, 1, 14)]:
        model.update(s, a, 0.0, s2, False)
    index = {obs: i for i, obs in enumerate(model.observations().tolist())}
    d = known_distances(model, np.array([index[10]]))[0]
    assert [d[index[s]] for s in (10, 11, 12, 13)] == [0, 1, 2, 3]
    to_12 = known_distances(model, np.array([index[12]]), reverse=True)[0]
    assert [to_12[index[s]] for s in (10, 11, 13, 14)] == [2, 1, 1, np.inf]
    assert not model.is_deterministic()  # (12, right) led to 13 and to 14
    successors = model.successors()
    assert successors[index[10], 1] == index[11] and successors[index[12], 1] == -1
    assert successors[index[10], 0] == -1  # never tried
    # Goal reach without an env shortest path takes the model's.
    agent = OraclePolicyOnLine()
    reach = GoalReach(5, 20, seed=0, start=10)
    report = reach.evaluate(
        agent, lambda starts, goals: line_step(starts, goals), np.array([10, 11, 12, 13]),
        np.random.default_rng(0), model,
    )  # fmt: skip
    assert report.n_goals == 3 and report.success == 1.0 and report.excess == 0.0


class OraclePolicyOnLine:
    """Always action 1 (right) on the line of the count-model test."""

    def pair_q_values(self, states, goals):
        return np.tile([0.0, 1.0], (len(states), 1))


def line_step(starts, goals):
    states = np.array(starts)

    def step(index, actions):
        states[index] = states[index] + np.where(actions == 1, 1, -1)
        arrived = states[index] == goals[index]
        return states[index], arrived, np.zeros_like(arrived)

    return step


def test_dqn_pair_q_values_match_one_goal_at_a_time():
    agent = DQNAgent(12, 12, 4, hidden_sizes=(8,), seed=0)
    states, goals = np.array([0, 3, 5, 5]), np.array([7, 7, 2, 9])
    q = agent.pair_q_values(states, goals)
    for i in range(4):
        assert np.allclose(q[i], agent.q_values(states[i : i + 1], goals[i])[0])
    # The tabular learner's own, and the fallback of one q_values call per goal, agree.
    tabular = TabularAgent(12, 4, seed=0)
    rows = tabular._goal_rows(7)
    tabular._q[tabular._new_row(rows, 3)] = [1.0, 2.0, 3.0, 4.0]
    rows = tabular._goal_rows(2)
    tabular._q[tabular._new_row(rows, 5)] = [5.0, 6.0, 7.0, 8.0]
    own = tabular.pair_q_values(states, goals)
    assert own[1].tolist() == [1.0, 2.0, 3.0, 4.0] and own[2].tolist() == [5.0, 6.0, 7.0, 8.0]
    assert (own[[0, 3]] == tabular.q_init).all()

    class OneGoalAtATime:
        q_values = tabular.q_values

    assert (pair_q_values(OneGoalAtATime(), states, goals) == own).all()


def test_reach_map_colours_by_hand():
    agent = OraclePolicy(MAZE, {MAZE.goal_index})
    env = GridMazeEnv(MAZE)
    moves, shortest = reach_from_start(
        agent, MAZE, env.next_cell, MAZE.start_index, np.random.default_rng(0)
    )
    assert moves[MAZE.goal_index] == shortest[MAZE.goal_index]
    assert (moves[free_cells(MAZE)] > 0).sum() == 1
    image = dashboards.goal_reach_map(dashboards.board_of_maze(MAZE), moves, shortest)
    px = dashboards.cell_pixels(dashboards.board_of_maze(MAZE))
    row, col = MAZE.goal
    centre = image[row * px + px // 2, col * px + px // 2]
    assert centre[1] > 2 * centre[0] and centre[1] > centre[2]  # green: on a shortest path
    red = image[1 * px + px // 2, 1 * px + px // 2]  # cell (1, 1): not reached
    assert red[0] > 150 and red[1] < 60
    assert (image[0 * px + 1, 2 * px + 1] == dashboards.WALL).all()


def test_walks_stop_at_their_budget():
    agent = OraclePolicyOnLine()
    moves = greedy_walks(
        agent, np.array([0, 0]), np.array([3, 2]), np.array([2, 2]),
        line_step(np.array([0, 0]), np.array([3, 2])), np.random.default_rng(0),
    )  # fmt: skip
    assert moves.tolist() == [-1, 2]


def test_a_run_reports_goal_reach_everywhere(tmp_path):
    config = tiny_config(tmp_path, episodes=6, image_interval=3, eval_goals=4)
    result = train(config)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert 0.0 <= summary["goals_success"] <= 1.0 and summary["goal_reach_s"] >= 0.0
    assert {"goals_success", "goals_excess"} <= set(SUMMARY_COLUMNS)
    accumulator = EventAccumulator(str(result.run_dir), size_guidance={"images": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    assert {"eval/goals_success", "eval/goals_excess"} <= set(tags["scalars"])
    assert "maze/goal_reach" in tags["images"]
    off = train(
        TrainConfig(**{**config.__dict__, "eval_goals": 0, "run_dir": str(tmp_path / "off")})
    )
    assert off.summary["goals_success"] is None


def test_goal_reach_is_refused_where_goals_are_not_states(tmp_path):
    config = TrainConfig(episodes=1, eval_goals=5, quiet=True, run_dir=str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="--eval-goals 5"):
        train(config, env=goal_envs.BitFlipEnv(4))
    # Unset, it is simply off there.
    result = train(
        TrainConfig(episodes=1, quiet=True, run_dir=str(tmp_path / "u"), learning_starts=1),
        env=goal_envs.BitFlipEnv(4),
    )
    assert result.summary["goals_success"] is None
    with pytest.raises(ConfigError, match="--eval-goals"):
        TrainConfig(eval_goals=-1).validate()


def test_moves_return_by_hand():
    # c = -1, r_g = 0, gamma 0.5: G(T) = -2 + 0.5^(T - 1) * 2
    values = moves_return(np.array([1.0, 2.0, 3.0, np.inf]), 0.5, 0.0, -1.0)
    assert values.tolist() == [0.0, -1.0, -1.5, -np.inf]
    # reward 1 at the goal, nothing per step: gamma^(T - 1)
    assert moves_return(np.array([3.0]), 0.9).tolist() == pytest.approx([0.81])


def line_model() -> CountModel:
    """States 0 - 1 - 2 - 3 on a line, walked right to 3 and back left to 1; action 1 is
    right, 0 left; 3 bumped into its wall once (a self-loop)."""
    model = CountModel(2)
    for s, a, s2 in [(0, 1, 1), (1, 1, 2), (2, 1, 3), (3, 1, 3), (3, 0, 2), (2, 0, 1)]:
        model.update(s, a, 0.0, s2, False)
    return model


def test_model_values_for_every_goal_by_hand():
    model = line_model()
    gamma = 0.5
    values = ModelGoalValues(model, 6, gamma, goal_reward=0.0, step_reward=-1.0, goals="all")
    G = lambda moves: float(moves_return(np.array([moves]), gamma, 0.0, -1.0)[0])  # noqa: E731
    q = values.q_values(np.array([0, 2, 3, 1, 5, 2]), np.array([3, 0, 1, 1, 1, 5]))
    assert q[0].tolist() == [-np.inf, G(3)]  # 0 -> 3: right (3 moves); left never tried
    assert q[1].tolist() == [-np.inf, -np.inf]  # into 0: the model never went left from 1
    assert q[2].tolist() == [G(2), G(3)]  # 3 -> 1: left 2 moves; right bumps, then 2 more
    assert (q[3:] == -np.inf).all()  # at the goal itself; unseen state 5; unseen goal 5
    assert values(np.array([0]), np.array([3])).tolist() == [G(3)]
    # Cached per goal: asking again searches nothing, until a refresh finds the graph grown.
    searches = values.n_searches
    values.q_values(np.array([1, 2]), np.array([3, 0]))
    assert values.n_searches == searches
    model.update(1, 0, 0.0, 0, False)  # a new move, seen by the searches after a refresh
    assert values.q_values(np.array([2]), np.array([0]))[0].tolist() == [-np.inf] * 2
    values.refresh(3)
    assert values.q_values(np.array([2]), np.array([0]))[0, 0] == G(2)
    assert values.n_searches == searches + 1
    # The env goal only ('env'): other goals get none.
    env_only = ModelGoalValues(model, 6, gamma, goal_reward=0.0, step_reward=-1.0)
    env_only.refresh(3)
    q = env_only.q_values(np.array([0, 3]), np.array([3, 1]))
    assert q[0, 1] == G(3) and (q[1] == -np.inf).all()


def test_model_values_for_every_goal_fall_back_to_the_env_goal_when_moves_slip():
    model = line_model()
    model.update(1, 1, 0.0, 0, False)  # (1, right) has also led left: stochastic
    values = ModelGoalValues(model, 6, 0.5, goal_reward=0.0, step_reward=-1.0, goals="all")
    values.refresh(3)
    q = values.q_values(np.array([2, 3]), np.array([3, 1]))
    assert q[0, 1] > -np.inf and (q[1] == -np.inf).all()


def test_model_values_search_within_a_budget_of_states_per_batch(monkeypatch):
    import sshr_torch.smart_start as smart_start

    model = line_model()
    monkeypatch.setattr(smart_start, "SEARCH_STATES_PER_BATCH", 4)  # one 4-state search a batch
    values = ModelGoalValues(model, 6, 0.5, goal_reward=0.0, step_reward=-1.0, goals="all")
    states, goals = np.array([0, 0, 0]), np.array([1, 2, 3])
    known = [(values.q_values(states, goals) > -np.inf).any(axis=1).sum() for _ in range(3)]
    assert known == [1, 2, 3] and values.n_searches == 3  # one more goal each batch


def test_the_distance_cache_is_sized_in_bytes_and_evicts_the_oldest_goal(monkeypatch):
    """Distances are kept as uint16 below 65,535 states (int32 beyond); a cache with room for
    two goals' rows keeps the two searched last; an evicted goal's rows get no model value
    (their TD targets) until it is searched again, into the row of the oldest goal."""
    import sshr_torch.smart_start as smart_start

    assert smart_start.distance_dtype(65_534) is np.uint16
    assert smart_start.distance_dtype(65_535) is np.int32
    assert smart_start.distance_cache_bytes(10_201, 5_101) == 10_201 * 2 * 5_101  # 101x101: all
    assert smart_start.distance_cache_bytes(10**6, 10**6) <= smart_start.DISTANCE_CACHE_BYTES
    model = line_model()
    monkeypatch.setattr(smart_start, "DISTANCE_CACHE_BYTES", 2 * 6 * 2)  # two rows of 6 uint16
    values = ModelGoalValues(model, 6, 0.5, goal_reward=0.0, step_reward=-1.0, goals="all")
    G = lambda moves: float(moves_return(np.array([moves]), 0.5, 0.0, -1.0)[0])  # noqa: E731
    states, goals = np.array([0, 0, 0]), np.array([1, 2, 3])
    first = values.q_values(states, goals)  # from 0, right: 1, 2 and 3 moves
    assert values._dist.dtype == np.uint16 and values._n_slots == 2 and values.n_searches == 3
    assert first[:, 1].tolist() == [-np.inf, G(2), G(3)]  # goal 1 made room for goal 3
    again = values.q_values(states, goals)
    assert values.n_searches == 4  # goal 1 searched again, into goal 2's row (the oldest)
    assert again[:, 1].tolist() == [G(1), -np.inf, G(3)]


def test_the_distance_cache_is_in_the_memory_estimate():
    """The start-up memory check counts the distance cache of --model-goals all: a row of
    n_states distances for each goal, up to the cache's limit; none without it."""
    from sshr_torch import resources
    from sshr_torch.build import make_env

    config = TrainConfig(maze="generated:101x101:seed=0")
    env = make_env(config)
    n = env.observation_space["observation"].n
    cache = [
        size
        for flags, _, size in resources.memory_estimates(config, env)
        if flags == "--model-goals all"
    ]
    assert cache == [n * 2 * n]  # every goal, uint16
    for other in (TrainConfig(model_goals="env"), TrainConfig(model_values="off")):
        flags = [f for f, _, _ in resources.memory_estimates(other, env)]
        assert "--model-goals all" not in flags


class TiedPolicy:
    """Every action equally good for every goal: each move is a tie, broken at random."""

    def __init__(self) -> None:
        self.calls = 0

    def pair_q_values(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.zeros((len(states), 4))


def test_deterministic_walks_stop_when_they_come_round_again():
    """On the maze's move table a walk without ties that is back at a state it was at can only
    loop: it stops there, not arrived, so the walks' result is the budget's (as if run to it)
    in a few moves; a walk that broke a tie is not stopped (it may still arrive)."""
    next_cell = GridMazeEnv(MAZE).next_cell
    cells = free_cells(MAZE)
    start = MAZE.start_index
    goals = cells[cells != start]
    known = {int(g) for g in goals[::2]}
    shortest = bfs_distances(MAZE, MAZE.start).ravel()[goals].astype(float)
    budgets = np.full(len(goals), 1000)
    starts = np.full(len(goals), start)
    agent = OraclePolicy(MAZE, known)
    step = table_step(next_cell, goals, starts.copy())
    moves = greedy_walks(agent, starts, goals, budgets, step, np.random.default_rng(0))
    expected = np.where([int(g) in known for g in goals], shortest, -1)
    assert moves.tolist() == expected.astype(int).tolist()
    assert agent.calls <= shortest.max() + 2  # the loops (UP into a wall) end at once
    tied = TiedPolicy()
    short = np.full(len(goals), 40)
    step = table_step(next_cell, goals, starts.copy())
    greedy_walks(tied, starts, goals, short, step, np.random.default_rng(0))
    # random walks revisit cells all the time, and some of them still run the whole budget
    assert tied.calls == 40
