"""Images for the TensorBoard dashboards: where the agent has been, and what it has learned.

Each function returns an RGB image as a ``(height, width, 3)`` uint8 array for
``SummaryWriter.add_image(..., dataformats="HWC")``. Images are drawn straight into NumPy arrays
(a colour look-up per cell, then each cell blown up to a square of pixels): a few milliseconds
even for a 201x201 maze, so dashboards do not slow training down.

They draw any env that has a grid of goals (the env protocol's ``goal_grid``: the goal id of
each cell, -1 where none), as a :class:`Board`: one value per goal id is one cell's colour.
Where the env draws its world (``background_image``: the maze's walls and decoys, MiniGrid's
render), each coloured cell is an inset square on it, so the world shows round it and on the
cells with no goal.

Legend (docs/tensorboard.md repeats it): cells with no goal (walls) dark grey or the world's
picture; start a white square, goal a red square; in the visit heatmap the planned walk to
S_ss is a white dot per cell and S_ss a magenta frame; in the policy map the colour is
max_a Q(s, a) and, on 4-action envs whose goals are their states (the maze), a blue stroke
from the cell's centre points along the greedy action; in the goal-reach map a cell is green
where the greedy walk from the start reaches it on a shortest path, yellow to orange up to
1.5x it, red where it does not arrive within 1.5x, dark blue where no walk was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps

from sshr_torch.env import Action

WALL = np.array([45, 45, 45], dtype=np.uint8)
START = np.array([255, 255, 255], dtype=np.uint8)
GOAL = np.array([230, 30, 30], dtype=np.uint8)
TARGET = np.array([255, 0, 255], dtype=np.uint8)
PATH = np.array([255, 255, 255], dtype=np.uint8)
STROKE = np.array([0, 170, 255], dtype=np.uint8)
UNWALKED = np.array([20, 30, 80], dtype=np.uint8)

# Unit moves (d_row, d_col) of each action, for the policy strokes.
_DELTAS = {Action.UP: (-1, 0), Action.RIGHT: (0, 1), Action.DOWN: (1, 0), Action.LEFT: (0, -1)}
# 256-entry colour tables, so colouring a maze is one fancy-indexing operation.
_LUTS = {name: (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
         for name in ("viridis", "magma", "RdYlGn")}  # fmt: skip


@dataclass
class Board:
    """What the images are drawn on: a grid of goal ids (the env protocol's ``goal_grid``), the
    world's picture behind it, and the start and goal to mark.

    Args:
        grid: (rows, cols) int64, the goal id of each cell, -1 where none (walls).
        background: (rows * px, cols * px, 3) uint8 at ``px = cell_pixels(grid)``, or None.
        start: the goal id of the start's cell (a white square), or None.
        goal: the goal id of the goal's cell (a red square), or None.
    """

    grid: np.ndarray
    background: np.ndarray | None = None
    start: int | None = None
    goal: int | None = None

    def __post_init__(self) -> None:
        self.grid = np.asarray(self.grid, dtype=np.int64)
        free = self.grid >= 0
        # cell_of[g]: the (flat) cell that draws goal g, -1 where none
        n_ids = int(self.grid.max(initial=-1)) + 1
        self.cell_of = np.full(n_ids, -1, dtype=np.int64)
        self.cell_of[self.grid[free]] = np.flatnonzero(free)
        self.walls = ~free

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the grid."""
        return self.grid.shape  # type: ignore[return-value]

    def per_cell(self, values: np.ndarray, fill: Any = 0) -> np.ndarray:
        """Values by goal id (n_ids, ...) laid out on the grid, (rows, cols, ...); ``fill``
        where a cell has no goal."""
        values = np.asarray(values)
        out = np.full((*self.shape, *values.shape[1:]), fill, dtype=values.dtype)
        free = ~self.walls
        out[free] = values[self.grid[free]]
        return out


def as_board(board: Board | Any) -> Board:
    """A Board as it is; a :class:`~sshr_torch.maze.Maze` as its board (``board_of_maze``)."""
    return board if isinstance(board, Board) else board_of_maze(board)


def board_of_maze(maze: Any) -> Board:
    """The board of a :class:`~sshr_torch.maze.Maze` (goal id = cell index), no background."""
    grid = np.arange(maze.n_cells, dtype=np.int64).reshape(maze.shape)
    grid[maze.walls] = -1
    return Board(grid, None, maze.cell_index(*maze.start), maze.cell_index(*maze.goal))


def cell_pixels(board: Any, max_side: int = 640) -> int:
    """Pixels per cell side of a board (or anything with a (rows, cols) ``shape``): large for
    small grids, at least 3 so marks stay visible."""
    rows, cols = board.shape[:2]
    return int(np.clip(max_side // max(rows, cols), 3, 24))


def visit_heatmap(
    board: Board | Any,
    visits: np.ndarray,
    target: int | None = None,
    path: Sequence[int] = (),
) -> np.ndarray:
    """Visit counts (log scale, viridis) with S_ss and its planned walk drawn.

    Args:
        board: the grid (a Board, or a Maze: ``as_board``).
        visits: ``(n_ids,)`` visit counts by goal id (a state's visits count for its goal).
        target: the goal id of the last Smart Start state S_ss's cell, if any.
        path: goal ids of the cells of the last planned walk to S_ss.
    """
    board = as_board(board)
    px = cell_pixels(board)
    image = _draw(board, _colour(board, np.log1p(np.asarray(visits, dtype=float)), "viridis"), px)
    for goal in path:
        _mark(image, board, int(goal), px, PATH, fraction=0.3)
    _mark_endpoints(image, board, px)
    if target is not None:
        _frame(image, board, int(target), px, TARGET)
    return image


def policy_map(board: Board | Any, q_values: np.ndarray, strokes: bool = True) -> np.ndarray:
    """max_a Q(s, a) for the goal (magma); with ``strokes`` (a 4-action env whose goals are its
    states: the maze's moves), a blue stroke along the greedy action of each cell.

    Args:
        board: the grid (a Board, or a Maze: ``as_board``).
        q_values: ``(n_ids, n_actions)`` action values of each cell's state for the goal.
        strokes: draw the greedy actions (read as up, right, down, left).
    """
    board = as_board(board)
    q_values = np.asarray(q_values, dtype=float)
    px = cell_pixels(board)
    image = _draw(board, _colour(board, q_values.max(axis=1), "magma"), px)
    if strokes and px >= 5 and q_values.shape[1] == len(Action):
        masks = _strokes(px)  # (n_actions, px, px) bool
        greedy = board.per_cell(q_values.argmax(axis=1))
        tiles = masks[greedy]  # (rows, cols, px, px)
        tiles &= ~board.walls[:, :, None, None]
        rows, cols = board.shape
        mask = tiles.transpose(0, 2, 1, 3).reshape(rows * px, cols * px)
        image[mask] = STROKE
    _mark_endpoints(image, board, px)
    return image


def goal_reach_map(
    board: Board | Any, moves: np.ndarray, shortest: np.ndarray, start: int | None = None
) -> np.ndarray:
    """Where the greedy walk from the start arrives, and how directly (``maze/goal_reach``).

    A cell reached is green on a shortest path and shades through yellow to orange at 1.5x it
    (colour = shortest / moves, from 1 down to 2/3); a cell not reached within 1.5x its
    shortest path is red; a cell not walked to (no path, or left out) dark blue. The start is a
    white square.

    Args:
        board: the grid (a Board, or a Maze: ``as_board``).
        moves: ``(n_ids,)`` moves the walk to each goal took, -1 where it did not arrive.
        shortest: ``(n_ids,)`` the shortest path to each goal (inf where there is none).
        start: the goal id of the cell the walks started from (the board's start by default).
    """
    board = as_board(board)
    moves = board.per_cell(np.asarray(moves, dtype=float), -1.0)
    shortest = board.per_cell(np.asarray(shortest, dtype=float), np.inf)
    colours = np.empty((*board.shape, 3), dtype=np.uint8)
    colours[:] = UNWALKED
    walked = np.isfinite(shortest) & (shortest > 0)
    reached = walked & (moves > 0)
    directness = np.zeros(board.shape)
    directness[reached] = shortest[reached] / moves[reached]  # (2/3, 1]
    # 1 -> the top of the red-yellow-green table, 2/3 -> its middle (yellow-orange)
    scaled = np.clip(0.5 + 1.5 * (directness - 2.0 / 3.0), 0.5, 1.0)
    colours[reached] = _LUTS["RdYlGn"][np.round(scaled[reached] * 255).astype(np.intp)]
    colours[walked & ~reached] = _LUTS["RdYlGn"][0]
    colours[board.walls] = WALL
    px = cell_pixels(board)
    image = _draw(board, colours, px)
    start = board.start if start is None else int(start)
    if start is not None:
        _mark(image, board, start, px, START, fraction=0.6)
    return image


def _colour(board: Board, values: np.ndarray, lut: str) -> np.ndarray:
    """Each cell's colour from ``values`` by goal id, scaled over the cells with a goal."""
    values = board.per_cell(np.asarray(values, dtype=float), 0.0)
    free = ~board.walls
    scaled = np.zeros(board.shape)
    if free.any():
        low, high = values[free].min(), values[free].max()
        if high > low:
            scaled = (values - low) / (high - low)
    colours = _LUTS[lut][np.clip((scaled * 255).round(), 0, 255).astype(np.intp)]
    colours[board.walls] = WALL
    return colours  # (rows, cols, 3)


def _draw(board: Board, colours: np.ndarray, px: int) -> np.ndarray:
    """The cells' colours blown up to px-squares; on the board's background, inset squares
    on the cells with a goal (the world shows round them and on the others)."""
    image = np.repeat(np.repeat(colours, px, axis=0), px, axis=1)
    if board.background is None:
        return image
    background = np.asarray(board.background, dtype=np.uint8)
    if background.shape != image.shape:
        raise ValueError(
            f"background_image({px}) has shape {background.shape}, not the grid's "
            f"{image.shape} at {px} pixels a cell."
        )
    inset = max(1, px // 6)
    inner = np.zeros((px, px), dtype=bool)
    inner[inset : px - inset, inset : px - inset] = True
    rows, cols = board.shape
    mask = np.tile(inner, (rows, cols)) & np.repeat(np.repeat(~board.walls, px, 0), px, 1)
    out = background.copy()
    out[mask] = image[mask]
    return out


def _cell_box(board: Board, goal: int, px: int) -> tuple[int, int] | None:
    if not 0 <= goal < len(board.cell_of) or board.cell_of[goal] < 0:
        return None
    row, col = divmod(int(board.cell_of[goal]), board.shape[1])
    return row * px, col * px


def _mark(image: np.ndarray, board: Board, goal: int, px: int, colour, fraction: float) -> None:
    """A centred square covering ``fraction`` of the side of the cell of ``goal``."""
    box = _cell_box(board, goal, px)
    if box is None:
        return
    top, left = box
    side = max(1, round(px * fraction))
    offset = (px - side) // 2
    image[top + offset : top + offset + side, left + offset : left + offset + side] = colour


def _frame(image: np.ndarray, board: Board, goal: int, px: int, colour) -> None:
    box = _cell_box(board, goal, px)
    if box is None:
        return
    top, left = box
    width = max(1, px // 6)
    cell = image[top : top + px, left : left + px]
    cell[:width], cell[-width:], cell[:, :width], cell[:, -width:] = colour, colour, colour, colour


def _mark_endpoints(image: np.ndarray, board: Board, px: int) -> None:
    if board.start is not None:
        _mark(image, board, board.start, px, START, fraction=0.6)
    if board.goal is not None:
        _mark(image, board, board.goal, px, GOAL, fraction=0.6)


def _strokes(px: int) -> np.ndarray:
    """Per action, a ``(px, px)`` mask: a line from the cell's centre towards that side."""
    strokes = np.zeros((len(Action), px, px), dtype=bool)
    centre, half_width = px // 2, max(0, px // 10)
    for action, (d_row, d_col) in _DELTAS.items():
        for step in range(0, px // 2):
            row, col = centre + d_row * step, centre + d_col * step
            strokes[
                action,
                max(row - half_width, 0) : row + half_width + 1,
                max(col - half_width, 0) : col + half_width + 1,
            ] = True
    return strokes
