"""Dashboard images: the right colours land on the right cells."""

import numpy as np

from sshr_torch import dashboards
from sshr_torch.env import Action
from sshr_torch.maze import parse_maze

MAZE = parse_maze("S..\n.#.\n..G\n")
BOARD = dashboards.board_of_maze(MAZE)


def cell(image: np.ndarray, row: int, col: int, px: int) -> np.ndarray:
    return image[row * px : (row + 1) * px, col * px : (col + 1) * px]


def test_heatmap_marks_walls_endpoints_target_and_path():
    px = dashboards.cell_pixels(BOARD)
    visits = np.zeros(MAZE.n_cells)
    visits[MAZE.cell_index(0, 2)] = 100  # the most visited cell gets the top of the colour map
    image = dashboards.visit_heatmap(BOARD, visits, target=MAZE.cell_index(1, 2), path=[2, 5])
    assert image.shape == (3 * px, 3 * px, 3) and image.dtype == np.uint8
    assert (cell(image, 1, 1, px) == dashboards.WALL).all()
    centre = px // 2
    assert (cell(image, 0, 0, px)[centre, centre] == dashboards.START).all()
    assert (cell(image, 2, 2, px)[centre, centre] == dashboards.GOAL).all()
    target = cell(image, 1, 2, px)
    assert (target[0, :] == dashboards.TARGET).all() and (target[:, 0] == dashboards.TARGET).all()
    assert (cell(image, 0, 2, px)[centre, centre] == dashboards.PATH).all()
    # Unvisited cells are coloured from the bottom of the map, the busiest from the top.
    top, bottom = dashboards._LUTS["viridis"][255], dashboards._LUTS["viridis"][0]
    assert (cell(image, 0, 2, px)[0, 0] == top).all()
    assert (cell(image, 2, 0, px)[0, 0] == bottom).all()


def test_policy_strokes_point_along_the_greedy_action():
    px = dashboards.cell_pixels(BOARD)
    q_values = np.zeros((MAZE.n_cells, len(Action)))
    q_values[:, Action.RIGHT] = 1.0
    q_values[MAZE.cell_index(1, 0), :] = [0.0, 0.0, 2.0, 0.0]  # DOWN at (1, 0)
    image = dashboards.policy_map(BOARD, q_values)
    right = cell(image, 0, 1, px) == dashboards.STROKE
    down = cell(image, 1, 0, px) == dashboards.STROKE
    centre = px // 2
    # The stroke runs from the centre to the right edge / to the bottom edge, not the other way.
    assert right[centre, centre + px // 2 - 1].all() and not right[centre, 0].all()
    assert down[centre + px // 2 - 1, centre].all() and not down[0, centre].all()
    # No stroke on a wall.
    assert not (cell(image, 1, 1, px) == dashboards.STROKE).all(axis=-1).any()


def test_a_maze_draws_as_its_board_and_a_background_shows_round_the_cells():
    px = dashboards.cell_pixels(BOARD)
    visits = np.arange(MAZE.n_cells, dtype=float)
    assert np.array_equal(
        dashboards.visit_heatmap(MAZE, visits), dashboards.visit_heatmap(BOARD, visits)
    )
    background = np.full((3 * px, 3 * px, 3), 77, dtype=np.uint8)
    drawn = dashboards.Board(BOARD.grid, background, BOARD.start, BOARD.goal)
    image = dashboards.visit_heatmap(drawn, visits)
    # a cell with a goal: its colour inside, the background on its rim; the wall: background
    corner = cell(image, 0, 1, px)
    assert (corner[0, 0] == 77).all() and not (corner[px // 2, px // 2] == 77).all()
    assert (cell(image, 1, 1, px) == 77).all()
    # goal ids that are not cell indices: the grid says where each goal is drawn
    shuffled = dashboards.Board(np.array([[2, -1], [0, 1]]), None, 0, 2)
    values = np.array([0.0, 1.0, 2.0])  # by goal id
    image = dashboards.visit_heatmap(shuffled, values)
    side = dashboards.cell_pixels(shuffled)
    top = dashboards._LUTS["viridis"][255]
    assert (cell(image, 0, 0, side)[0, 0] == top).all()  # goal 2, the most visited, at (0, 0)
    assert (cell(image, 0, 1, side) == dashboards.WALL).all()
