"""Goal reach: does the greedy learner walk to the goals HER has shown it, and how directly?

Each evaluation (``TrainConfig.eval_goals``) walks greedily from a start to N goals at once
(``rollout.greedy_walks``: one ``pair_q_values`` call per step for all walks still going):

- the goals are the N visited states that come first in an order drawn once per run from its
  seed (so the set is stable once the run has visited N states, and grows with the visits
  before that); the start is the env's start state, or, where the env draws its start at
  random, the visited states in a second order drawn the same way;
- a walk succeeds when it arrives within ``GOAL_REACH_FACTOR`` (1.5) times the shortest path:
  the env's own (the maze's breadth-first search) where it has one, else the fewest moves the
  count model has seen (``smart_start.known_distances``);
- ``success`` is the share of goals reached so; ``excess`` the mean over the reached goals of
  moves / shortest - 1 (0: every one on a shortest path; at most 0.5).

numpy only (the learner is called through ``rollout.pair_q_values``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sshr_torch.agents.base import Agent
from sshr_torch.maze import Maze, bfs_distances
from sshr_torch.rollout import StepperFactory, greedy_walks, table_step, walk_stepper
from sshr_torch.smart_start import CountModel, known_distances

__all__ = [
    "DEFAULT_EVAL_GOALS",
    "GOAL_REACH_FACTOR",
    "GoalReach",
    "GoalReachReport",
    "cached_distances",
    "maze_distances",
    "reach_from",
    "reach_from_start",
    "walk_stepper",
]

GOAL_REACH_FACTOR = 1.5
"""A walk reaches its goal when it arrives within this many times the shortest path."""
DEFAULT_EVAL_GOALS = 50
"""Goals per evaluation when ``TrainConfig.eval_goals`` is unset, on envs that allow it."""

# start state -> (n_goals,) shortest moves to every goal, inf where unreachable
ShortestFunction = Callable[[int], np.ndarray]


@dataclass
class GoalReachReport:
    """One goal-reach evaluation: the share of goals reached and how directly."""

    success: float
    """Share of the goals reached within 1.5x their shortest path (NaN: no goals yet)."""
    excess: float
    """Mean of moves / shortest - 1 over the goals reached (NaN: none reached)."""
    n_goals: int
    """Goals walked to."""

    def scalars(self) -> dict[str, float]:
        """The TensorBoard scalars, by tag."""
        return {"eval/goals_success": self.success, "eval/goals_excess": self.excess}

    def row(self) -> dict[str, float | None]:
        """The summary.json fields (None for NaN, which JSON cannot hold)."""
        return {
            key: None if math.isnan(value) else round(value, 4)
            for key, value in (("goals_success", self.success), ("goals_excess", self.excess))
        }


def score(moves: np.ndarray, shortest: np.ndarray) -> GoalReachReport:
    """The report of walks that took ``moves`` (-1: did not arrive within the budget) to goals
    ``shortest`` moves away (> 0, finite)."""
    moves = np.asarray(moves, dtype=np.int64)
    shortest = np.asarray(shortest, dtype=np.float64)
    if moves.size == 0:
        return GoalReachReport(math.nan, math.nan, 0)
    reached = (moves > 0) & (moves <= GOAL_REACH_FACTOR * shortest)
    excess = float(np.mean(moves[reached] / shortest[reached] - 1.0)) if reached.any() else math.nan
    return GoalReachReport(float(reached.mean()), excess, int(moves.size))


def budgets(shortest: np.ndarray) -> np.ndarray:
    """Moves a walk may take: floor(1.5 x shortest), 0 where there is no path."""
    shortest = np.asarray(shortest, dtype=np.float64)
    finite = np.isfinite(shortest)
    out = np.zeros(shortest.shape, dtype=np.int64)
    out[finite] = np.floor(GOAL_REACH_FACTOR * shortest[finite] + 1e-9).astype(np.int64)
    return out


def maze_distances(maze: Maze) -> ShortestFunction:
    """The maze's own shortest paths from a start cell, (n_cells,) float64 (inf: walls and
    unreachable cells), cached per start."""
    cache: dict[int, np.ndarray] = {}

    def distances(start: int) -> np.ndarray:
        if start not in cache:
            d = bfs_distances(maze, divmod(int(start), maze.n_cols)).ravel().astype(np.float64)
            d[d < 0] = np.inf
            cache[start] = d
        return cache[start]

    return distances


def cached_distances(shortest: ShortestFunction) -> ShortestFunction:
    """``shortest`` (an env's ``shortest_path_lengths``) cached per start."""
    cache: dict[int, np.ndarray] = {}

    def distances(start: int) -> np.ndarray:
        if start not in cache:
            cache[start] = np.asarray(shortest(int(start)), dtype=np.float64)
        return cache[start]

    return distances


def model_distances(
    model: CountModel, n_states: int, goal_of: np.ndarray | None = None, n_goal_ids: int = 0
) -> ShortestFunction:
    """The fewest moves the count model has seen from a start state to every state, (n_states,)
    float64 (inf where it knows no path), for envs without a shortest path of their own; with
    ``goal_of`` (the goal of each state) to every goal, (n_goal_ids,), the fewest to any state
    achieving it."""

    def distances(start: int) -> np.ndarray:
        out = np.full(n_states, np.inf)
        index = model.index(int(start))
        if index is not None:
            out[model.observations()] = known_distances(model, np.array([index]))[0]
        if goal_of is None:
            return out
        by_goal = np.full(n_goal_ids, np.inf)
        np.minimum.at(by_goal, goal_of, out)
        return by_goal

    return distances


class GoalReach:
    """The goals of one run and their evaluation (see the module docstring).

    Args:
        n_goals: goals per evaluation (N).
        n_states: the size of the env's Discrete state space.
        seed: the run's seed; the goal and start orders are drawn from it once.
        start: the env's fixed start state, or None where the env draws its start at random.
        shortest: the env's own shortest paths (its ``shortest_path_lengths``, the maze's
            ``maze_distances``), or None to take them from the count model passed to
            :meth:`evaluate`.
        goal_of: (n_states,) the achieved goal of each state (the env protocol's
            ``goal_of_state``), None where goals are the states themselves; the goals are
            then the achieved goals of the visited states.
        n_goal_ids: with ``goal_of``, the size of the goal space.
    """

    def __init__(
        self,
        n_goals: int,
        n_states: int,
        seed: int,
        start: int | None,
        shortest: ShortestFunction | None = None,
        goal_of: np.ndarray | None = None,
        n_goal_ids: int | None = None,
    ) -> None:
        self.n_goals, self.n_states, self.start = int(n_goals), int(n_states), start
        self.shortest = shortest
        self.goal_of = goal_of
        self.n_goal_ids = self.n_states if goal_of is None else int(n_goal_ids or 0)
        rng = np.random.default_rng([seed, 20])
        # rank[g]: where goal g comes in the run's goal order; rank[s]: state s in the starts'
        self.goal_rank = rng.permutation(self.n_goal_ids)
        self.start_rank = rng.permutation(self.n_states)

    def _achieved(self, states: np.ndarray) -> np.ndarray:
        return states if self.goal_of is None else self.goal_of[states]

    def pairs(self, visited: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(starts, goals): the N goals of visited states first in the goal order, each with a
        start (the fixed one, or the visited states first in the start order, never one that
        achieves its goal)."""
        visited = np.unique(np.asarray(visited, dtype=np.int64))
        reached = visited if self.goal_of is None else np.unique(self.goal_of[visited])
        if self.start is not None:
            reached = reached[reached != self._achieved(np.array([self.start]))[0]]
        goals = reached[np.argsort(self.goal_rank[reached], kind="stable")][: self.n_goals]
        if self.start is not None:
            return np.full(len(goals), self.start, dtype=np.int64), goals
        if len(visited) < 2:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        order = visited[np.argsort(self.start_rank[visited], kind="stable")]
        starts = order[np.arange(len(goals)) % len(order)]
        clash = self._achieved(starts) == goals  # take the next one in the order instead
        starts[clash] = order[(np.flatnonzero(clash) + 1) % len(order)]
        return starts, goals

    def evaluate(
        self,
        agent: Agent,
        stepper: StepperFactory,
        visited: np.ndarray,
        rng: np.random.Generator,
        model: CountModel | None = None,
    ) -> GoalReachReport:
        """Walk greedily to this evaluation's goals (all at once); the report."""
        starts, goals = self.pairs(visited)
        if self.shortest is not None:
            shortest_from = self.shortest
        elif model is not None:
            shortest_from = model_distances(model, self.n_states, self.goal_of, self.n_goal_ids)
        else:
            raise ValueError("goal reach needs the env's shortest paths or a count model.")
        shortest = np.empty(len(goals))
        for start in np.unique(starts):
            rows = starts == start
            shortest[rows] = shortest_from(int(start))[goals[rows]]
        known = np.isfinite(shortest) & (shortest > 0)
        starts, goals, shortest = starts[known], goals[known], shortest[known]
        if len(goals) == 0:
            return score(np.zeros(0), np.zeros(0))
        moves = greedy_walks(agent, starts, goals, budgets(shortest), stepper(starts, goals), rng)
        return score(moves, shortest)


def reach_from(
    agent: Agent,
    stepper: StepperFactory,
    start: int,
    goals: np.ndarray,
    shortest: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Greedy walks from ``start`` to each of ``goals`` (``shortest`` moves away, > 0 and
    finite), budget 1.5x the shortest path, on ``stepper`` (``rollout.walk_stepper``); the
    moves each took, (len(goals),) int64, -1 where it did not arrive (the goal-reach image)."""
    goals = np.asarray(goals, dtype=np.int64)
    starts = np.full(len(goals), start, dtype=np.int64)
    if len(goals) == 0:
        return np.zeros(0, dtype=np.int64)
    return greedy_walks(agent, starts, goals, budgets(shortest), stepper(starts, goals), rng)


def reach_from_start(
    agent: Agent,
    maze: Maze,
    next_cell: np.ndarray,
    start: int,
    rng: np.random.Generator,
    cells: np.ndarray | None = None,
    shortest_from: ShortestFunction | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy walks from ``start`` to every free cell (or to ``cells``) on the maze's move
    table ``next_cell`` (``GridMazeEnv.next_cell``), budget 1.5x the shortest path, a walk
    ending on a decoy; (moves, shortest), each (n_cells,): moves -1 where the walk did not
    arrive or was not made, shortest inf where there is no path. A slip probability is
    ignored (the walks are the intended moves). ``shortest_from``: the maze's shortest paths
    (a run passes its cached ``maze_distances``; None computes them)."""
    shortest = (shortest_from or maze_distances(maze))(start)
    if cells is None:
        cells = np.flatnonzero(np.isfinite(shortest))
    cells = np.asarray(cells, dtype=np.int64)
    cells = cells[np.isfinite(shortest[cells]) & (cells != start)]
    moves = np.full(maze.n_cells, -1, dtype=np.int64)
    starts = np.full(len(cells), start, dtype=np.int64)
    step = table_step(next_cell, cells, starts.copy(), stops=_decoy_mask(maze))
    moves[cells] = greedy_walks(agent, starts, cells, budgets(shortest[cells]), step, rng)
    return moves, shortest


def _decoy_mask(maze: Maze) -> np.ndarray:
    """(n_cells,) bool: the maze's decoys, where a walk's episode ends."""
    decoys = np.zeros(maze.n_cells, dtype=bool)
    decoys[maze.decoy_indices] = True
    return decoys
