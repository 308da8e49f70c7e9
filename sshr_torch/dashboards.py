"""Images for the TensorBoard dashboards: where the agent has been, and what it has learned.

Each function returns an RGB image as a ``(height, width, 3)`` uint8 array, drawn with
matplotlib's Agg canvas (no pyplot state, no display), ready for ``SummaryWriter.add_image(...,
dataformats="HWC")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sshr_torch.env import Action
from sshr_torch.maze import Maze

# Unit moves (d_row, d_col) of each action, for the policy arrows.
_ACTION_DELTAS = {
    Action.UP: (-1, 0),
    Action.RIGHT: (0, 1),
    Action.DOWN: (1, 0),
    Action.LEFT: (0, -1),
}


def visit_heatmap(
    maze: Maze,
    visits: np.ndarray,
    target: int | None = None,
    path: Sequence[int] = (),
    title: str = "",
) -> np.ndarray:
    """State-visit counts on the maze (log scale), with S_ss and the planned path drawn.

    Args:
        maze: the maze.
        visits: ``(n_cells,)`` visit counts by cell index.
        target: the cell index of the last Smart Start state S_ss, if any.
        path: cell indices of the last planned walk to S_ss.
        title: a title above the image.
    """
    counts = np.log1p(np.asarray(visits, dtype=float).reshape(maze.shape))
    image = np.ma.masked_array(counts, mask=maze.walls)
    figure, axes = _figure(maze)
    shown = axes.imshow(image, cmap="viridis", interpolation="nearest")
    axes.imshow(np.ma.masked_array(maze.walls, mask=~maze.walls), cmap="gray_r", vmin=0, vmax=1.5)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="ln(1 + visits)")
    if len(path) > 1:
        rows, cols = np.divmod(np.asarray(path), maze.n_cols)
        axes.plot(cols, rows, color="white", linewidth=1.5, alpha=0.9, label="planned path")
    _mark_endpoints(axes, maze)
    if target is not None:
        row, col = divmod(int(target), maze.n_cols)
        axes.plot(col, row, marker="*", color="red", markersize=14, linestyle="", label="S_ss")
    if target is not None or len(path) > 1:
        axes.legend(loc="upper right", fontsize=7, framealpha=0.6)
    axes.set_title(title, fontsize=9)
    return _render(figure)


def policy_map(maze: Maze, q_values: np.ndarray, title: str = "") -> np.ndarray:
    """max_a Q(s, a) for the real goal as colours, the greedy action as an arrow per free cell.

    Args:
        maze: the maze.
        q_values: ``(n_cells, n_actions)`` action values of every cell for the goal.
        title: a title above the image.
    """
    q_values = np.asarray(q_values, dtype=float)
    best = q_values.max(axis=1).reshape(maze.shape)
    figure, axes = _figure(maze)
    shown = axes.imshow(np.ma.masked_array(best, mask=maze.walls), cmap="magma")
    axes.imshow(np.ma.masked_array(maze.walls, mask=~maze.walls), cmap="gray_r", vmin=0, vmax=1.5)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="max_a Q(s, a)")
    free = np.flatnonzero(~maze.walls.ravel())
    greedy = q_values[free].argmax(axis=1)
    deltas = np.array([_ACTION_DELTAS[Action(a)] for a in range(len(Action))])
    rows, cols = np.divmod(free, maze.n_cols)
    # quiver's v axis points up while rows grow downwards: negate d_row.
    axes.quiver(
        cols,
        rows,
        deltas[greedy, 1],
        -deltas[greedy, 0],
        color="cyan",
        scale=1.6,
        scale_units="xy",
        width=0.004,
        pivot="middle",
    )
    _mark_endpoints(axes, maze)
    axes.set_title(title, fontsize=9)
    return _render(figure)


def _figure(maze: Maze) -> tuple[Figure, object]:
    # About 0.22 inch per cell, clamped so small mazes stay legible and large ones stay small.
    width = float(np.clip(0.22 * maze.n_cols, 3.0, 9.0)) + 1.2
    height = float(np.clip(0.22 * maze.n_rows, 3.0, 9.0)) + 0.5
    figure = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_xticks([])
    axes.set_yticks([])
    return figure, axes


def _mark_endpoints(axes: object, maze: Maze) -> None:
    axes.text(maze.start[1], maze.start[0], "S", ha="center", va="center", color="white")
    axes.text(maze.goal[1], maze.goal[0], "G", ha="center", va="center", color="red")
    for row, col in maze.decoys:
        axes.text(col, row, "g", ha="center", va="center", color="orange")


def _render(figure: Figure) -> np.ndarray:
    figure.tight_layout()
    canvas = figure.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
