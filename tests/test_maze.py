"""Tests for sshr_torch.maze: built-in layouts, parsing, errors, generator, shortest paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sshr_torch import maze as maze_module
from sshr_torch.maze import (
    BUILTIN_MAZES,
    GENERATOR_KINDS,
    Maze,
    MazeError,
    bfs_distances,
    builtin_maze_text,
    generate_maze,
    load_maze,
    maze_to_text,
    parse_generator_spec,
    parse_maze,
    shortest_path_length,
)

# The table of sshr_torch/mazes/README.md: name -> (rows, cols, start, goal, shortest).
README_TABLE = {
    "keulen_easy": (12, 9, (10, 1), (1, 1), 19),
    "keulen_medium": (15, 12, (13, 10), (1, 1), 35),
    "keulen_hard": (21, 21, (19, 1), (1, 1), 84),
    "keulen_maze": (18, 27, (7, 1), (1, 25), 40),
    "keulen_extreme": (60, 69, (58, 1), (1, 67), 223),
    "keulen_misleading": (7, 15, (5, 2), (1, 12), 14),
    "keulen_easy_unscaled": (4, 3, (3, 0), (0, 0), 7),
    "keulen_medium_unscaled": (5, 4, (4, 3), (0, 0), 13),
    "keulen_hard_unscaled": (7, 7, (6, 0), (0, 0), 30),
    "keulen_easy_2017_scale5": (20, 15, (17, 2), (2, 2), 31),
    "keulen_medium_2017_scale5": (25, 25, (22, 22), (2, 2), 72),
    "keulen_hard_2017_scale5": (35, 35, (32, 2), (2, 2), 138),
    "keulen_extreme_2017_scale3": (60, 69, (58, 1), (1, 67), 223),
}

SMALL = "S.#\n.#G\n...\n"  # hand-checked: S(0,0) -> (1,0) -> (2,0) -> (2,1) -> (2,2) -> G(1,2)


def free_pairs(walls: np.ndarray) -> int:
    """Number of pairs of side-by-side free cells (edges of the maze graph)."""
    free = ~walls
    return int((free[:, :-1] & free[:, 1:]).sum() + (free[:-1, :] & free[1:, :]).sum())


# ------------------------------------------------------------------------------------------
# built-in mazes


def test_builtin_names_match_readme() -> None:
    assert set(BUILTIN_MAZES) == set(README_TABLE)


@pytest.mark.parametrize("name", sorted(README_TABLE))
def test_builtin_matches_readme(name: str) -> None:
    rows, cols, start, goal, shortest = README_TABLE[name]
    m = load_maze(name)
    assert m.name == name
    assert m.shape == (rows, cols)
    assert m.n_cells == rows * cols
    assert m.start == start
    assert m.goal == goal
    assert shortest_path_length(m) == shortest
    assert m.decoys == (((1, 2),) if name == "keulen_misleading" else ())


@pytest.mark.parametrize("name", BUILTIN_MAZES)
def test_builtin_round_trips(name: str) -> None:
    text = builtin_maze_text(name)
    m = load_maze(name)
    assert maze_to_text(m) == text
    assert parse_maze(text, name=name) == m


def test_builtin_file_path_loads_same(tmp_path: Path) -> None:
    path = tmp_path / "copy.txt"
    path.write_text(builtin_maze_text("keulen_hard"))
    m = load_maze(path)  # a PathLike
    assert m.name == "copy"
    assert np.array_equal(m.walls, load_maze("keulen_hard").walls)
    assert load_maze(str(path)).goal == (1, 1)


def test_maze_is_immutable_and_indexes_cells() -> None:
    m = load_maze("keulen_easy")
    with pytest.raises(ValueError):
        m.walls[0, 0] = True
    assert m.cell_index(10, 1) == 91 == m.start_index
    assert m.cell_position(91) == (10, 1)
    assert m.free_cells.size == m.n_free == int((~m.walls).sum())
    assert m.free_cells[0] == 0


def test_load_maze_returns_maze_unchanged() -> None:
    m = load_maze("keulen_easy")
    assert load_maze(m) is m


# ------------------------------------------------------------------------------------------
# parsing


def test_parse_small_by_hand() -> None:
    m = parse_maze(SMALL)
    assert m.shape == (3, 3)
    assert m.walls.tolist() == [[False, False, True], [False, True, False], [False] * 3]
    assert (m.start, m.goal) == ((0, 0), (1, 2))
    assert shortest_path_length(m) == 5
    assert bfs_distances(m, (0, 0)).tolist() == [[0, 1, -1], [1, -1, 5], [2, 3, 4]]


@pytest.mark.parametrize(
    "text",
    [
        SMALL,
        SMALL.rstrip("\n"),  # no final newline
        SMALL.replace("\n", "\r\n"),  # Windows line endings
        SMALL + "\n\n  \n",  # blank lines at the end
        "\ufeff" + SMALL,  # byte-order mark
    ],
)
def test_parse_accepts_harmless_variants(text: str) -> None:
    assert maze_to_text(parse_maze(text)) == SMALL


def test_decoy_blocks_paths() -> None:
    # the only way to G runs through the decoy: unreachable
    with pytest.raises(MazeError, match="cannot be reached"):
        parse_maze("S.g.G\n")
    m = parse_maze("S.g.G\n", check_reachable=False)
    assert bfs_distances(m, m.start).tolist() == [[0, 1, 2, -1, -1]]
    assert shortest_path_length(m) is None
    assert shortest_path_length(parse_maze("S.g\n...\nG..\n")) == 2


# Every bad file: (content, expected words in the message, expected "line L, column C" or None)
BAD_FILES = {
    "empty": (b"", "empty", None),
    "blank": (b"\n  \n\n", "blank", None),
    "ragged": (b"S..\n..\n..G\n", "same length", "line 2"),
    "unknown_char": (b"S..\n.x.\n..G\n", "unknown character 'x'", "line 2, column 2"),
    "unicode_char": ("S..\n.\u2588.\n..G\n".encode(), "unknown character", "line 2, column 2"),
    "control_char": (b"S..\n.\x07.\n..G\n", "not printable", "line 2, column 2"),
    "space": (b"S..\n. .\n..G\n", "a space", "line 2, column 2"),
    "tab": (b"S..\n.\t.\n..G\n", "a tab", "line 2, column 2"),
    "trailing_space": (b"S..\n...  \n..G\n", "trailing whitespace", "line 2, column 4"),
    "blank_between": (b"S..\n\n..G\n", "blank line", "line 2"),
    "blank_before": (b"\nS..\n..G\n", "blank line", "line 1"),
    "lone_cr": (b"S..\r...\n..G\n", "carriage return", "line 1, column 4"),
    "no_start": (b"...\n..G\n", "no start", None),
    "two_starts": (b"S..\n..S\n..G\n", "2 start cells", "line 2, column 3"),
    "no_goal": (b"S..\n...\n", "no goal", None),
    "two_goals": (b"S.G\n...\n..G\n", "2 goal cells", "line 3, column 3"),
    "unreachable": (b"S.#..\n..#.G\n", "cannot be reached", "line 2, column 5"),
    "binary": (b"S..\n.\x00.\n..G\n", "not a text file", "line 2, column 2"),
    "not_utf8": (b"S..\n..\xff\n..G\n", "not a UTF-8 text file", "line 2, column 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_maze_error_naming_file(tmp_path: Path, case: str) -> None:
    content, words, where = BAD_FILES[case]
    path = tmp_path / f"{case}.txt"
    path.write_bytes(content)
    with pytest.raises(MazeError) as info:
        load_maze(str(path))
    message = str(info.value)
    assert str(path) in message
    assert words in message
    if where is not None:
        assert where in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_directory_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(MazeError, match="directory") as info:
        load_maze(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    missing = tmp_path / "nope.txt"
    with pytest.raises(MazeError, match="no such maze file") as info:
        load_maze(str(missing))
    assert str(missing) in str(info.value)
    with pytest.raises(MazeError, match="no such maze file"):
        load_maze(missing)  # PathLike too


def test_file_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maze_module, "MAX_MAZE_FILE_BYTES", 8)
    path = tmp_path / "big.txt"
    path.write_text("S........\n........G\n")
    with pytest.raises(MazeError, match="larger than") as info:
        load_maze(path)
    assert str(path) in str(info.value)


def test_unknown_builtin_name_lists_names() -> None:
    with pytest.raises(MazeError) as info:
        load_maze("keulen_impossible")
    message = str(info.value)
    assert "'keulen_impossible'" in message
    assert all(name in message for name in BUILTIN_MAZES)
    with pytest.raises(MazeError, match="empty maze spec"):
        load_maze("  ")
    with pytest.raises(TypeError):
        load_maze(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("generated", "neither a built-in maze nor an existing file"),
        ("generated:", "is not ROWSxCOLS"),
        ("generated:abc", "is not ROWSxCOLS"),
        ("generated:10", "is not ROWSxCOLS"),
        ("generated:10x-3", "is not ROWSxCOLS"),
        ("generated:2x2", "too small"),
        ("generated:9x1", "too small"),
        ("generated:5000x9", "too large"),
        ("generated:9x9:kind=spiral", "unknown maze kind 'spiral'"),
        ("generated:9x9:seed=-1", "not a non-negative integer"),
        ("generated:9x9:seed=abc", "not a non-negative integer"),
        ("generated:9x9:seed=", "not a non-negative integer"),
        ("generated:9x9:colour=red", "unknown option"),
        ("generated:9x9:seed", "unknown option"),
        ("generated:9x9:seed=1:seed=2", "given twice"),
    ],
)
def test_bad_generator_spec(spec: str, words: str) -> None:
    with pytest.raises(MazeError) as info:
        load_maze(spec)
    assert f"'{spec}'" in str(info.value)
    assert words in str(info.value)


def test_bad_generator_arguments() -> None:
    with pytest.raises(MazeError, match="too small"):
        generate_maze(2, 9)
    with pytest.raises(MazeError, match="unknown maze kind"):
        generate_maze(9, 9, kind="cave")
    with pytest.raises(MazeError, match="non-negative"):
        generate_maze(9, 9, seed=-5)


def test_bad_maze_objects() -> None:
    walls = np.zeros((2, 2), dtype=bool)
    with pytest.raises(MazeError, match="same cell"):
        Maze(walls, (0, 0), (0, 0))
    with pytest.raises(MazeError, match="outside"):
        Maze(walls, (0, 0), (2, 0))
    walls[1, 1] = True
    with pytest.raises(MazeError, match="is a wall"):
        Maze(walls, (0, 0), (1, 1))
    with pytest.raises(MazeError, match="decoys"):
        Maze(walls, (0, 0), (1, 0), decoys=((1, 0),))
    with pytest.raises(ValueError, match="wall"):
        bfs_distances(Maze(walls, (0, 0), (1, 0)), (1, 1))


# ------------------------------------------------------------------------------------------
# generator

SIZES = [(3, 3), (3, 8), (5, 7), (10, 10), (21, 31), (40, 17), (64, 64)]


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
def test_generator_solvable_connected_deterministic(kind: str) -> None:
    for n_rows, n_cols in SIZES:
        for seed in range(8):
            m = generate_maze(n_rows, n_cols, seed=seed, kind=kind)
            assert m.shape == (n_rows, n_cols)
            dist = bfs_distances(m, m.start)
            # every free cell is reachable, and the goal is the farthest one from the start
            assert np.all(dist[~m.walls] >= 0)
            assert dist[m.goal] == dist.max() == shortest_path_length(m) > 0
            again = generate_maze(n_rows, n_cols, seed=seed, kind=kind)
            assert again == m
            if kind == "perfect":
                # a tree: exactly one path between any two cells
                assert free_pairs(m.walls) == m.n_free - 1


def test_generator_kinds_differ_as_described() -> None:
    perfect = generate_maze(41, 41, seed=1, kind="perfect")
    loops = generate_maze(41, 41, seed=1, kind="loops")
    rooms = generate_maze(41, 41, seed=1, kind="rooms")
    # the loops maze is the perfect maze with some walls knocked down: it has cycles
    assert np.all(loops.walls <= perfect.walls)
    assert free_pairs(loops.walls) > loops.n_free - 1
    # rooms have open 2 x 2 blocks; corridors of a perfect maze never do
    open_blocks = ~(rooms.walls[:-1, :-1] | rooms.walls[1:, :-1])
    open_blocks &= ~(rooms.walls[:-1, 1:] | rooms.walls[1:, 1:])
    assert open_blocks.sum() > 100
    # different seeds give different mazes
    assert generate_maze(41, 41, seed=2) != perfect


def test_generator_even_side_keeps_last_row_wall() -> None:
    m = generate_maze(10, 12, seed=3)
    assert m.walls[-1].all() and m.walls[:, -1].all()
    assert not m.walls[::2, ::2][:-1].any()  # every lattice cell is free


def test_generator_spec_round_trips() -> None:
    m = load_maze("generated:21x31:kind=loops:seed=3")
    assert m == generate_maze(21, 31, seed=3, kind="loops")
    assert m.name == "generated:21x31:seed=3:kind=loops"
    assert load_maze(m.name) == m
    assert load_maze("generated:9X9") == generate_maze(9, 9)
    assert parse_generator_spec("generated:7x9:seed=4") == (7, 9, 4, "perfect")
    assert parse_maze(maze_to_text(m), name=m.name) == m


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
def test_generator_201(kind: str) -> None:
    m = generate_maze(201, 201, seed=0, kind=kind)
    assert shortest_path_length(m) is not None
    assert m.n_free > 201 * 201 // 2
