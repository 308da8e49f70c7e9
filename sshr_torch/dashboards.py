"""Images for the TensorBoard dashboards: where the agent has been, and what it has learned.

Each function returns an RGB image as a ``(height, width, 3)`` uint8 array for
``SummaryWriter.add_image(..., dataformats="HWC")``. Images are drawn straight into NumPy arrays
(a colour look-up per cell, then each cell blown up to a square of pixels): a few milliseconds
even for a 201x201 maze, so dashboards do not slow training down.

Legend (docs/tensorboard.md repeats it): walls dark grey; start a white square, goal a red
square, decoys orange squares; in the visit heatmap the planned walk to S_ss is a white dot per
cell and S_ss a magenta frame; in the policy map the colour is max_a Q(s, a) and a blue stroke
from the cell's centre points along the greedy action; in the goal-reach map a cell is green
where the greedy walk from the start reaches it on a shortest path, yellow to orange up to
1.5x it, red where it does not arrive within 1.5x, dark blue where no walk was made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps

from sshr_torch.env import Action
from sshr_torch.maze import Maze

WALL = np.array([45, 45, 45], dtype=np.uint8)
START = np.array([255, 255, 255], dtype=np.uint8)
GOAL = np.array([230, 30, 30], dtype=np.uint8)
DECOY = np.array([255, 150, 0], dtype=np.uint8)
TARGET = np.array([255, 0, 255], dtype=np.uint8)
PATH = np.array([255, 255, 255], dtype=np.uint8)
STROKE = np.array([0, 170, 255], dtype=np.uint8)
UNWALKED = np.array([20, 30, 80], dtype=np.uint8)

# Unit moves (d_row, d_col) of each action, for the policy strokes.
_DELTAS = {Action.UP: (-1, 0), Action.RIGHT: (0, 1), Action.DOWN: (1, 0), Action.LEFT: (0, -1)}
# 256-entry colour tables, so colouring a maze is one fancy-indexing operation.
_LUTS = {name: (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
         for name in ("viridis", "magma", "RdYlGn")}  # fmt: skip


def cell_pixels(maze: Maze, max_side: int = 640) -> int:
    """Pixels per cell side: large for small mazes, at least 3 so marks stay visible."""
    return int(np.clip(max_side // max(maze.n_rows, maze.n_cols), 3, 24))


def visit_heatmap(
    maze: Maze,
    visits: np.ndarray,
    target: int | None = None,
    path: Sequence[int] = (),
) -> np.ndarray:
    """State-visit counts (log scale, viridis) with S_ss and its planned walk drawn.

    Args:
        maze: the maze.
        visits: ``(n_cells,)`` visit counts by cell index.
        target: the cell index of the last Smart Start state S_ss, if any.
        path: cell indices of the last planned walk to S_ss.
    """
    colours = _colour(maze, np.log1p(np.asarray(visits, dtype=float)), "viridis")
    px = cell_pixels(maze)
    image = _blow_up(colours, px)
    for cell in path:
        _mark(image, maze, int(cell), px, PATH, fraction=0.3)
    _mark_endpoints(image, maze, px)
    if target is not None:
        _frame(image, maze, int(target), px, TARGET)
    return image


def policy_map(maze: Maze, q_values: np.ndarray) -> np.ndarray:
    """max_a Q(s, a) for the real goal (magma), a blue stroke along the greedy action per free cell.

    Args:
        maze: the maze.
        q_values: ``(n_cells, n_actions)`` action values of every cell for the goal.
    """
    q_values = np.asarray(q_values, dtype=float)
    px = cell_pixels(maze)
    image = _blow_up(_colour(maze, q_values.max(axis=1), "magma"), px)
    if px >= 5:
        strokes = _strokes(px)  # (n_actions, px, px) bool
        greedy = q_values.argmax(axis=1).reshape(maze.shape)
        tiles = strokes[greedy]  # (rows, cols, px, px)
        tiles &= ~maze.walls[:, :, None, None]
        mask = tiles.transpose(0, 2, 1, 3).reshape(maze.n_rows * px, maze.n_cols * px)
        image[mask] = STROKE
    _mark_endpoints(image, maze, px)
    return image


def goal_reach_map(
    maze: Maze, moves: np.ndarray, shortest: np.ndarray, start: int | None = None
) -> np.ndarray:
    """Where the greedy walk from the start arrives, and how directly (``maze/goal_reach``).

    A cell reached is green on a shortest path and shades through yellow to orange at 1.5x it
    (colour = shortest / moves, from 1 down to 2/3); a cell not reached within 1.5x its
    shortest path is red; a cell not walked to (no path, or left out) dark blue. The start is a
    white square.

    Args:
        maze: the maze.
        moves: ``(n_cells,)`` moves the walk to each cell took, -1 where it did not arrive.
        shortest: ``(n_cells,)`` the shortest path to each cell (inf where there is none).
        start: the cell the walks started from (the maze's start by default).
    """
    moves = np.asarray(moves, dtype=float).reshape(maze.shape)
    shortest = np.asarray(shortest, dtype=float).reshape(maze.shape)
    colours = np.empty((*maze.shape, 3), dtype=np.uint8)
    colours[:] = UNWALKED
    walked = np.isfinite(shortest) & (shortest > 0)
    reached = walked & (moves > 0)
    directness = np.zeros(maze.shape)
    directness[reached] = shortest[reached] / moves[reached]  # (2/3, 1]
    # 1 -> the top of the red-yellow-green table, 2/3 -> its middle (yellow-orange)
    scaled = np.clip(0.5 + 1.5 * (directness - 2.0 / 3.0), 0.5, 1.0)
    colours[reached] = _LUTS["RdYlGn"][np.round(scaled[reached] * 255).astype(np.intp)]
    colours[walked & ~reached] = _LUTS["RdYlGn"][0]
    colours[maze.walls] = WALL
    px = cell_pixels(maze)
    image = _blow_up(colours, px)
    start = maze.cell_index(*maze.start) if start is None else int(start)
    _mark(image, maze, start, px, START, fraction=0.6)
    return image


def _colour(maze: Maze, values: np.ndarray, lut: str) -> np.ndarray:
    values = np.asarray(values, dtype=float).reshape(maze.shape)
    free = ~maze.walls
    scaled = np.zeros(maze.shape)
    if free.any():
        low, high = values[free].min(), values[free].max()
        if high > low:
            scaled = (values - low) / (high - low)
    colours = _LUTS[lut][np.clip((scaled * 255).round(), 0, 255).astype(np.intp)]
    colours[maze.walls] = WALL
    return colours  # (rows, cols, 3)


def _blow_up(colours: np.ndarray, px: int) -> np.ndarray:
    return np.repeat(np.repeat(colours, px, axis=0), px, axis=1)


def _cell_box(maze: Maze, cell: int, px: int) -> tuple[int, int]:
    row, col = divmod(cell, maze.n_cols)
    return row * px, col * px


def _mark(image: np.ndarray, maze: Maze, cell: int, px: int, colour, fraction: float) -> None:
    """A centred square covering ``fraction`` of the cell's side."""
    top, left = _cell_box(maze, cell, px)
    side = max(1, round(px * fraction))
    offset = (px - side) // 2
    image[top + offset : top + offset + side, left + offset : left + offset + side] = colour


def _frame(image: np.ndarray, maze: Maze, cell: int, px: int, colour) -> None:
    top, left = _cell_box(maze, cell, px)
    width = max(1, px // 6)
    box = image[top : top + px, left : left + px]
    box[:width], box[-width:], box[:, :width], box[:, -width:] = colour, colour, colour, colour


def _mark_endpoints(image: np.ndarray, maze: Maze, px: int) -> None:
    _mark(image, maze, maze.cell_index(*maze.start), px, START, fraction=0.6)
    _mark(image, maze, maze.cell_index(*maze.goal), px, GOAL, fraction=0.6)
    for row, col in maze.decoys:
        _mark(image, maze, maze.cell_index(row, col), px, DECOY, fraction=0.6)


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
