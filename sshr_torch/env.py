"""GridMazeEnv: a goal-conditioned grid maze as a gymnasium environment.

Importing this module registers ``"sshr_torch/GridMaze-v0"`` (and
``"sshr_torch/GridMazeMisleading-v0"``, Keulen's misleading semantics) with gymnasium.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from enum import IntEnum
from typing import Any, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces

from sshr_torch.maze import Maze, bfs_distances, load_maze, maze_to_text

__all__ = ["ENV_ID", "MISLEADING_ENV_ID", "MISLEADING_REWARDS", "Action", "GridMazeEnv"]

ENV_ID = "sshr_torch/GridMaze-v0"
MISLEADING_ENV_ID = "sshr_torch/GridMazeMisleading-v0"
#: Keulen's misleading semantics as GridMazeEnv settings: the decoy pays 1 and ends the
#: episode, the goal pays 100, and hitting a wall (or the grid edge) ends it with -1.
MISLEADING_REWARDS: dict[str, float] = {
    "goal_reward": 100.0,
    "decoy_reward": 1.0,
    "wall_reward": -1.0,
}


class Action(IntEnum):
    """The four moves, clockwise from up."""

    UP = 0
    RIGHT = 1
    DOWN = 2
    LEFT = 3


# (row, col) change of each action, indexed by Action
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))

# Colours of the rgb_array image (RGB, uint8). The paper draws the start red and the goal green.
COLOURS: dict[str, tuple[int, int, int]] = {
    "wall": (40, 40, 48),
    "free": (236, 236, 236),
    "start": (214, 62, 62),
    "goal": (46, 160, 67),
    "decoy": (240, 165, 30),
    "agent": (45, 95, 220),
}
# Image side of one cell: 8 pixels, fewer for big mazes so the image stays about 1024 px wide.
_MAX_CELL_PX, _TARGET_IMAGE_PX = 8, 1024


class GridMazeEnv(gymnasium.Env):
    """A grid maze in which an agent walks from a start cell to a goal cell.

    ## Description

    The maze is a grid of walls and free cells (see :mod:`sshr_torch.maze` for the text format,
    the built-in layouts and the generator). The agent starts on the start cell and must reach
    the goal cell; optional decoy cells end the episode with a small reward. This is the grid
    world of the Smart Start + HER paper (sparse reward 1 at the goal, 1000-step episodes) and
    of Keulen's Smart Start code, and it grows to generated mazes hundreds of cells wide.

    Cells are numbered ``index = row * n_cols + col`` (row and column from the top-left,
    counting from 0; walls have indices too, but the agent is never on one).

    ## Action Space

    ``Discrete(4)``:

    | Num | Name  | Move                  |
    |-----|-------|-----------------------|
    | 0   | UP    | row - 1               |
    | 1   | RIGHT | col + 1               |
    | 2   | DOWN  | row + 1               |
    | 3   | LEFT  | col - 1               |

    A move into a wall or off the grid leaves the agent where it is and still costs a step.
    With ``slip`` > 0, each step with that probability makes a uniformly random *other* move
    instead of the chosen one (as in Keulen's code). All randomness (slips, random start and
    goal) comes from ``self.np_random``, so restoring its ``bit_generator.state`` at an
    episode boundary continues the very same episodes (for checkpoints).

    ## Observation

    The goal-env convention (gymnasium-robotics ``GoalEnv``, Stable-Baselines3 HER): a ``Dict``
    of three ``Discrete(n_cells)`` cell indices (Python ints)

    - ``observation``: the agent's cell,
    - ``achieved_goal``: the agent's cell (the goal it has achieved),
    - ``desired_goal``: the goal cell.

    ## Rewards

    ``goal_reward`` (1, the paper's) on reaching the goal; ``decoy_reward`` on entering a decoy;
    ``wall_reward`` for a blocked move when it is set (a number); 0 otherwise. The three
    rewards are rounded to float32 (as Python floats), so step() and compute_reward() agree
    exactly.
    :meth:`compute_reward` recomputes the goal and decoy rewards for any (achieved, desired)
    pair, vectorised, for hindsight relabelling. It cannot recompute the wall penalty: whether a
    move was blocked is not a function of the goals, so with ``wall_reward`` set a blocked step's
    reward differs from ``compute_reward`` of its goals.

    ## Starting State

    The maze's start cell, or with ``random_start`` a uniformly random free non-decoy cell other
    than the goal; the goal is the maze's goal, or with ``random_goal`` a uniformly random free
    non-decoy cell other than the start. ``reset(options={"start": s, "goal": g})`` sets either
    for one episode (a cell index or a (row, col) pair).

    ## Episode End

    Terminated: the agent reaches the goal (``info["is_success"]`` True) or a decoy, or, with
    ``wall_reward`` set, makes a blocked move. Truncated: ``max_episode_steps`` steps (1000, the
    paper's limit) pass without termination; the limit is counted inside the environment, no
    ``TimeLimit`` wrapper is needed (``gymnasium.make(..., max_episode_steps=n)`` still adds
    gymnasium's own wrapper on top). ``terminated`` and ``truncated`` are never both True.

    ## Env protocol

    It implements every method of the env protocol (:mod:`sshr_torch.protocol`,
    docs/envs.md): ``goal_of_state`` (the identity), ``shortest_path_lengths`` (the maze's
    breadth-first search), ``transition_table`` (:attr:`next_cell` and the decoys),
    ``goal_grid``, ``background_image``, ``fingerprint`` (SHA-256 of the maze's text),
    ``start`` (the fixed start, None with ``random_start``) and ``return_range``.

    ## Registered configurations

    - ``sshr_torch/GridMaze-v0``: any maze, e.g.
      ``gymnasium.make("sshr_torch/GridMaze-v0", maze="keulen_hard")``; every constructor
      argument can be passed to ``make``.
    - ``sshr_torch/GridMazeMisleading-v0``: ``maze="keulen_misleading"`` with Keulen's
      misleading semantics :data:`MISLEADING_REWARDS` (goal 100, decoy 1 and ends the episode,
      a wall hit ends it with -1).

    Args:
        maze: a :class:`~sshr_torch.maze.Maze`, a built-in name, a maze file, or
            ``"generated:HxW[:seed=N][:kind=K]"`` (see :func:`~sshr_torch.maze.load_maze`).
        max_episode_steps: steps before truncation.
        slip: probability that a step makes a random other move.
        random_start: draw the start cell at every reset.
        random_goal: draw the goal cell at every reset.
        goal_reward: reward on reaching the goal.
        decoy_reward: reward on entering a decoy (which ends the episode).
        wall_reward: None: a blocked move only wastes a step; a number: a blocked move ends the
            episode with this reward.
        render_mode: None, "ansi" (text) or "rgb_array" (an image, 8 px per cell at most).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(
        self,
        maze: str | Maze = "keulen_easy",
        *,
        max_episode_steps: int = 1000,
        slip: float = 0.0,
        random_start: bool = False,
        random_goal: bool = False,
        goal_reward: float = 1.0,
        decoy_reward: float = 0.1,
        wall_reward: float | None = None,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(max_episode_steps, bool) or int(max_episode_steps) != max_episode_steps:
            raise ValueError(f"max_episode_steps must be an integer, not {max_episode_steps!r}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be at least 1, not {max_episode_steps}")
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"slip is a probability in [0, 1], not {slip}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} is not one of {self.metadata['render_modes']}"
            )
        self.maze: Maze = load_maze(maze)
        self.n_cells: int = self.maze.n_cells
        self.max_episode_steps: int = int(max_episode_steps)
        self.slip = float(slip)
        self.random_start = bool(random_start)
        self.random_goal = bool(random_goal)
        # Rewards are rounded to float32 so that step() and the float32 compute_reward() agree
        # exactly (0.1 becomes 0.10000000149...).
        self.goal_reward = float(np.float32(goal_reward))
        self.decoy_reward = float(np.float32(decoy_reward))
        self.wall_reward = None if wall_reward is None else float(np.float32(wall_reward))
        self.render_mode = render_mode

        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Discrete(self.n_cells),
                "achieved_goal": spaces.Discrete(self.n_cells),
                "desired_goal": spaces.Discrete(self.n_cells),
            }
        )
        self.action_space = spaces.Discrete(len(Action))

        self.next_cell: np.ndarray = _next_cell_table(self.maze)
        # step() reads plain Python containers: indexing them is several times cheaper than
        # indexing numpy arrays and gives Python ints back.
        # int32 halves the memory of the copy (n_cells < 2**31 for any maze that fits in memory)
        self._next = array("i", self.next_cell.ravel().astype(np.int32).tobytes())
        is_decoy = np.zeros(self.n_cells, dtype=bool)
        is_decoy[self.maze.decoy_indices] = True
        self._is_decoy = is_decoy.tolist()
        self._decoy_rewards = np.where(is_decoy, self.decoy_reward, 0.0).astype(np.float32)
        # cells a random start or goal may be drawn from (ascending)
        self._candidates = np.setdiff1d(self.maze.free_cells, self.maze.decoy_indices)
        self._slip_scale = 3.0 / self.slip if self.slip > 0 else 0.0

        self._start = self.maze.start_index
        self._goal = self.maze.goal_index
        self._pos = self._start
        self._steps = 0
        self._background: np.ndarray | None = None

    # ----------------------------------------------------------------------------------------
    # gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, int], dict[str, Any]]:
        """Start an episode; ``options`` may hold "start" and/or "goal" (index or (row, col))."""
        super().reset(seed=seed)
        options = options or {}
        start = self._cell_option(options, "start")
        goal = self._cell_option(options, "goal")
        if goal is None and self.random_goal:
            # keep clear of the start this episode will have (a fixed start is already known)
            fixed_start = None if self.random_start else self.maze.start_index
            goal = self._draw_cell(exclude=fixed_start if start is None else start)
        elif goal is None:
            goal = self.maze.goal_index
        if start is None:
            start = self._draw_cell(exclude=goal) if self.random_start else self.maze.start_index
        if start == goal:
            raise ValueError(f"the start and the goal are the same cell {start}")
        self._start, self._goal, self._pos, self._steps = start, goal, start, 0
        obs = {"observation": start, "achieved_goal": start, "desired_goal": goal}
        return obs, {"is_success": False}

    def step(self, action: int) -> tuple[dict[str, int], SupportsFloat, bool, bool, dict[str, Any]]:
        """Move one cell (see the class docstring for rewards and episode ends)."""
        a = int(action)
        if not 0 <= a <= 3:
            raise ValueError(f"action {action!r} is not one of 0 (up), 1, 2, 3 (left)")
        if self._slip_scale:
            # One draw straight from np_random per step (no buffer of draws), so np_random's
            # state is all the randomness there is: saving and restoring it (a checkpoint)
            # continues the same episodes.
            u = self.np_random.random()
            if u < self.slip:
                # u / slip is uniform on [0, 1) given u < slip: reuse it to pick one of the
                # three other moves (min() guards a rounding to exactly 3)
                a = (a + 1 + min(int(u * self._slip_scale), 2)) & 3
        pos = self._pos
        nxt = self._next[(pos << 2) | a]
        self._pos = nxt
        self._steps += 1
        success = False
        if nxt == self._goal:
            reward, terminated, success = self.goal_reward, True, True
        elif self._is_decoy[nxt]:
            reward, terminated = self.decoy_reward, True
        elif nxt == pos and self.wall_reward is not None:
            reward, terminated = self.wall_reward, True
        else:
            reward, terminated = 0.0, False
        truncated = not terminated and self._steps >= self.max_episode_steps
        obs = {"observation": nxt, "achieved_goal": nxt, "desired_goal": self._goal}
        return obs, reward, terminated, truncated, {"is_success": success}

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> np.ndarray:
        """Rewards for (achieved, desired) cell-index pairs, float32, one per pair.

        ``goal_reward`` where achieved == desired, else ``decoy_reward`` where the achieved cell
        is a decoy, else 0; this is what step() pays. ``info`` is accepted for the goal-env
        convention and ignored: the wall penalty cannot be recomputed from goals (see the class
        docstring).

        Goals are ``Discrete`` cell indices: a scalar (one goal, a 0-d result), a batch of shape
        ``(batch,)`` (what our HER buffer passes), or any batch shape with a trailing goal axis
        of size 1, ``(..., 1)`` (how Stable-Baselines3 stores a Discrete goal). As the goal-env
        convention says, the goal axis is reduced: ``(batch, 1)`` goals give ``(batch,)``
        rewards. The batch shapes of the two arguments broadcast like numpy.
        """
        achieved = goal_ids(achieved_goal)
        desired = goal_ids(desired_goal)
        return np.where(
            achieved == desired, np.float32(self.goal_reward), self._decoy_rewards[achieved]
        ).astype(np.float32, copy=False)

    def distance(self, a: Any, b: Any) -> np.ndarray | int:
        """Manhattan grid distance |row_a - row_b| + |col_a - col_b| between cell indices.

        Ints in, int out; arrays in, an int64 array out (broadcast like numpy). It ignores walls
        (it is a lower bound on the number of moves).
        """
        n_cols = self.maze.n_cols
        if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
            row_a, col_a = divmod(int(a), n_cols)
            row_b, col_b = divmod(int(b), n_cols)
            return abs(row_a - row_b) + abs(col_a - col_b)
        row_a, col_a = np.divmod(np.asarray(a, dtype=np.int64), n_cols)
        row_b, col_b = np.divmod(np.asarray(b, dtype=np.int64), n_cols)
        return np.abs(row_a - row_b) + np.abs(col_a - col_b)

    def render(self) -> str | np.ndarray | None:
        """The maze as text (render_mode "ansi", agent 'A') or an (H, W, 3) uint8 image."""
        if self.render_mode == "ansi":
            return self._render_text()
        if self.render_mode == "rgb_array":
            return self._render_image()
        gymnasium.logger.warn(
            "GridMazeEnv.render() was called without a render_mode; "
            'pass render_mode="ansi" or "rgb_array" to the constructor'
        )
        return None

    # ----------------------------------------------------------------------------------------
    # extras

    @property
    def position(self) -> int:
        """The agent's cell index."""
        return self._pos

    @property
    def start(self) -> int | None:
        """The fixed start cell index (the maze's start), None with ``random_start`` (the env
        protocol's ``start``: goal reach walks from it); :attr:`episode_start` is this
        episode's."""
        return None if self.random_start else self.maze.start_index

    @property
    def episode_start(self) -> int:
        """The current episode's start cell index."""
        return self._start

    @property
    def goal(self) -> int:
        """The current episode's goal cell index."""
        return self._goal

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode."""
        return self._steps

    @property
    def cell_px(self) -> int:
        """Side in pixels of one cell in the rgb_array image."""
        side = max(self.maze.n_rows, self.maze.n_cols)
        return max(1, min(_MAX_CELL_PX, _TARGET_IMAGE_PX // side))

    # ----------------------------------------------------------------------------------------
    # the env protocol (sshr_torch.protocol, docs/envs.md)

    def goal_of_state(self, states: Any) -> np.ndarray:
        """The achieved goal of each state: the cell itself (goals are cells), int64."""
        return np.asarray(states, dtype=np.int64)

    def shortest_path_lengths(self, state: int) -> np.ndarray:
        """(n_cells,) float64: the fewest moves from cell ``state`` to every cell (the maze's
        breadth-first search; decoys are reached but not passed through), inf at walls and
        unreachable cells."""
        d = bfs_distances(self.maze, divmod(int(state), self.maze.n_cols)).ravel()
        out = d.astype(np.float64)
        out[d < 0] = np.inf
        return out

    def transition_table(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(next, terminal): :attr:`next_cell` (n_cells, 4) and the decoys (n_cells,) bool,
        where an episode ends; None with ``slip`` > 0 (the moves are not deterministic)."""
        if self.slip > 0.0:
            return None
        terminal = np.zeros(self.n_cells, dtype=bool)
        terminal[self.maze.decoy_indices] = True
        return self.next_cell, terminal

    def goal_grid(self) -> np.ndarray:
        """(n_rows, n_cols) int64: the goal (cell) id of each cell, -1 at walls."""
        grid = np.arange(self.n_cells, dtype=np.int64).reshape(self.maze.shape)
        grid[self.maze.walls] = -1
        return grid

    def background_image(self, cell_px: int) -> np.ndarray:
        """(n_rows * cell_px, n_cols * cell_px, 3) uint8: walls, free cells and decoys."""
        cells = np.empty((*self.maze.shape, 3), dtype=np.uint8)
        cells[:] = COLOURS["free"]
        cells[self.maze.walls] = COLOURS["wall"]
        for r, c in self.maze.decoys:
            cells[r, c] = COLOURS["decoy"]
        return np.repeat(np.repeat(cells, cell_px, axis=0), cell_px, axis=1)

    def fingerprint(self) -> str:
        """SHA-256 of the maze's text (layout, start, goal, decoys): a resume refuses another."""
        return hashlib.sha256(maze_to_text(self.maze).encode()).hexdigest()

    def return_range(self, step_reward: float = 0.0, gamma: float = 1.0) -> tuple[float, float]:
        """(lowest, highest) return of an episode, with ``step_reward`` added to every reward.

        Every nonzero reward (the goal's, a decoy's, a blocked move's when it is set) ends the
        episode, so a return is 0 or one of them: [0, 1] with the default rewards. A step
        reward c <= 0 on every step adds between c / (1 - gamma) (never ending) and c (ending
        at once): [-1 / (1 - gamma), 0] for c = -1 with the default rewards.
        """
        rewards = [0.0, self.goal_reward, self.decoy_reward]
        if self.wall_reward is not None:
            rewards.append(self.wall_reward)
        return episode_return_range(rewards, step_reward, gamma)

    # ----------------------------------------------------------------------------------------
    # helpers

    def _cell_option(self, options: dict[str, Any], key: str) -> int | None:
        """A start/goal reset option as a cell index, checked to be a free non-decoy cell."""
        if key not in options or options[key] is None:
            return None
        value = options[key]
        if isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2:
            row, col = int(value[0]), int(value[1])
            if not (0 <= row < self.maze.n_rows and 0 <= col < self.maze.n_cols):
                raise ValueError(f"reset option {key}={value!r} is outside the maze")
            cell = self.maze.cell_index(row, col)
        else:
            cell = int(value)
        i = int(np.searchsorted(self._candidates, cell))
        if i == self._candidates.size or self._candidates[i] != cell:
            raise ValueError(f"reset option {key}={value!r} is not a free, non-decoy cell")
        return cell

    def _draw_cell(self, exclude: int | None) -> int:
        """A uniformly random free non-decoy cell other than ``exclude``."""
        candidates = self._candidates
        if exclude is None:
            return int(candidates[self.np_random.integers(candidates.size)])
        # draw among n - 1 cells and step over the excluded one
        k = int(self.np_random.integers(candidates.size - 1))
        if k >= int(np.searchsorted(candidates, exclude)):
            k += 1
        return int(candidates[k])

    def _render_text(self) -> str:
        """The maze text with this episode's start/goal and the agent 'A'."""
        rows = [list(line) for line in maze_to_text(self.maze).splitlines()]
        for cell, char in ((self.maze.start_index, "."), (self.maze.goal_index, ".")):
            r, c = self.maze.cell_position(cell)
            rows[r][c] = char
        for cell, char in ((self._start, "S"), (self._goal, "G"), (self._pos, "A")):
            r, c = self.maze.cell_position(cell)
            rows[r][c] = char
        return "".join("".join(row) + "\n" for row in rows)

    def _render_image(self) -> np.ndarray:
        """Cached walls/free/decoys image, with start, goal and agent painted on a copy."""
        px = self.cell_px
        if self._background is None:
            self._background = self.background_image(px)
        image = self._background.copy()
        inset = 1 if px >= 4 else 0  # a margin lets the start/goal colour show round the agent
        for cell, colour, margin in (
            (self._start, "start", 0),
            (self._goal, "goal", 0),
            (self._pos, "agent", inset),
        ):
            r, c = self.maze.cell_position(cell)
            y, x = r * px + margin, c * px + margin
            image[y : y + px - 2 * margin, x : x + px - 2 * margin] = COLOURS[colour]
        return image


def episode_return_range(
    rewards: list[float], step_reward: float, gamma: float
) -> tuple[float, float]:
    """(lowest, highest) return of an episode of an env whose every nonzero reward (one of
    ``rewards``, 0 included) ends it, with ``step_reward`` c <= 0 added to every reward: between
    c / (1 - gamma) plus the lowest reward (never ending) and c plus the highest (ending at
    once)."""
    if step_reward == 0.0:
        return min(rewards), max(rewards)
    low = -math.inf if gamma >= 1.0 else step_reward / (1.0 - gamma) + min(rewards)
    return low, max(0.0, step_reward + max(rewards))


def goal_ids(goal: Any) -> np.ndarray:
    """Discrete goals as int64 cell indices, without a trailing goal axis of size 1.

    Stable-Baselines3 stores a Discrete goal as an array of shape (1,) and hands
    ``compute_reward`` batches of shape (batch, 1); the goal-env convention reduces the goal
    axis, so (..., 1) is read as (...). A 1-d array is always a batch of scalar goals, also
    when its length is 1: our HER buffer relabels batches of any size, a single row included,
    and must get one reward per row back.
    """
    cells = np.asarray(goal, dtype=np.int64)
    if cells.ndim >= 2 and cells.shape[-1] == 1:
        cells = cells[..., 0]
    return cells


def _next_cell_table(maze: Maze) -> np.ndarray:
    """(n_cells, 4) int64: the cell each action leads to; blocked moves stay put.

    Rows of wall cells are the identity (the agent is never on a wall).
    """
    n_rows, n_cols = maze.shape
    rows, cols = np.divmod(np.arange(maze.n_cells), n_cols)
    table = np.empty((maze.n_cells, len(_MOVES)), dtype=np.int64)
    free = ~maze.walls
    for a, (dr, dc) in enumerate(_MOVES):
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < n_rows) & (c >= 0) & (c < n_cols)
        open_ = inside.copy()
        open_[inside] = free[r[inside], c[inside]]
        table[:, a] = np.where(open_, r * n_cols + c, rows * n_cols + cols)
    table.setflags(write=False)
    return table


def _register() -> None:
    """Register the env ids with gymnasium (once, even if this module is reloaded)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="sshr_torch.env:GridMazeEnv")
    if MISLEADING_ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=MISLEADING_ENV_ID,
            entry_point="sshr_torch.env:GridMazeEnv",
            kwargs={"maze": "keulen_misleading", **MISLEADING_REWARDS},
        )


_register()
