"""Grid mazes: the text format, the built-in layouts, a procedural generator and validation.

Text format (one row per line, no border needed; the grid edge blocks moves)::

    #  wall            .  free cell
    S  start (one)     G  goal (one)
    g  decoy: a free, terminal cell that pays a small reward

Positions are ``(row, col)`` from the top-left corner; a cell's index is
``row * n_cols + col``. Line endings may be ``\\n`` or ``\\r\\n``; blank lines at the end of a
file are ignored. Anything else that is not a well-formed maze (a blank line between rows,
rows of different lengths, a space, a tab, an unknown character, a missing or repeated start or
goal, a goal that cannot be reached, a file that is not text) raises :class:`MazeError` with one
sentence naming the file and, where it applies, the line and column (both counted from 1).

A decoy ends the episode, so a path never passes *through* one: breadth-first search reaches a
decoy but does not expand it. This module imports numpy only (no torch), so it tests in
milliseconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "BUILTIN_MAZES",
    "GENERATOR_KINDS",
    "Maze",
    "MazeError",
    "bfs_distances",
    "generate_maze",
    "load_maze",
    "maze_to_text",
    "parse_maze",
    "parse_generator_spec",
    "shortest_path_length",
]

WALL, FREE, START, GOAL, DECOY = "#", ".", "S", "G", "g"
#: The procedural generator's kinds, see :func:`generate_maze`.
GENERATOR_KINDS: tuple[str, ...] = ("perfect", "loops", "rooms")
#: Prefix of a generator spec given to :func:`load_maze`.
GENERATED_PREFIX = "generated:"
#: Smallest and largest side length the generator accepts.
MIN_GENERATED_SIZE = 3
MAX_GENERATED_SIZE = 2001
#: Files larger than this are refused before being read (a maze of 8000 x 8000 cells fits).
MAX_MAZE_FILE_BYTES = 64 * 1024 * 1024

# Fraction of the remaining walls between two lattice cells that the "loops" kind knocks down.
_LOOP_FRACTION = 0.1
# Room side lengths (in grid cells) for the "rooms" kind: a region is split while it is wider or
# taller than _ROOM_MAX, and never into a part narrower than _ROOM_MIN.
_ROOM_MIN, _ROOM_MAX = 3, 9

_BAD_CHAR = re.compile(r"[^#.SGg]")
_SIZE = re.compile(r"([0-9]+)[xX]([0-9]+)")
_SEED = re.compile(r"[0-9]+")


class MazeError(ValueError):
    """A maze that cannot be used: the message is one sentence naming the file, line and column.

    Attributes:
        source: the file path, built-in name or spec the problem is in.
        line, column: 1-based position of the problem in the file, or None where none applies.
    """

    def __init__(
        self, source: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        where = source
        if line is not None:
            where += f", line {line}"
            if column is not None:
                where += f", column {column}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, eq=False)
class Maze:
    """An immutable grid maze.

    Attributes:
        walls: (n_rows, n_cols) bool array, True = wall (stored read-only).
        start: (row, col) of the start cell.
        goal: (row, col) of the goal cell.
        decoys: (row, col) of each decoy cell (terminal, small reward).
        name: a label, e.g. the built-in name or the generator spec.

    A cell's index is ``row * n_cols + col``. Two mazes are equal when all fields are equal.
    """

    walls: np.ndarray
    start: tuple[int, int]
    goal: tuple[int, int]
    decoys: tuple[tuple[int, int], ...] = ()
    name: str = "maze"
    _free: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        walls = np.array(self.walls, dtype=bool)  # always a private copy
        if walls.ndim != 2 or walls.size == 0:
            raise MazeError(self.name, f"walls must be a non-empty 2-D array, got {walls.shape}")
        walls.setflags(write=False)
        start = _as_position(self.start)
        goal = _as_position(self.goal)
        decoys = tuple(_as_position(d) for d in self.decoys)
        # frozen dataclass: normalise fields through object.__setattr__
        object.__setattr__(self, "walls", walls)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "goal", goal)
        object.__setattr__(self, "decoys", decoys)
        free = ~walls
        free.setflags(write=False)
        object.__setattr__(self, "_free", free)
        for label, pos in [("start", start), ("goal", goal)] + [("decoy", d) for d in decoys]:
            r, c = pos
            if not (0 <= r < walls.shape[0] and 0 <= c < walls.shape[1]):
                raise MazeError(self.name, f"the {label} {pos} is outside the {walls.shape} grid")
            if walls[r, c]:
                raise MazeError(self.name, f"the {label} {pos} is a wall")
        if start == goal:
            raise MazeError(self.name, f"the start and the goal are the same cell {start}")
        if len(set(decoys)) != len(decoys) or {start, goal} & set(decoys):
            raise MazeError(self.name, "decoys must be distinct cells other than start and goal")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Maze):
            return NotImplemented
        return (
            self.walls.shape == other.walls.shape
            and bool(np.array_equal(self.walls, other.walls))
            and (self.start, self.goal, self.decoys, self.name)
            == (other.start, other.goal, other.decoys, other.name)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array: not hashable

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.walls.shape[0])

    @property
    def n_cols(self) -> int:
        """Number of columns."""
        return int(self.walls.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """(n_rows, n_cols)."""
        return (self.n_rows, self.n_cols)

    @property
    def n_cells(self) -> int:
        """Number of cells, walls included (the size of the cell-index space)."""
        return self.n_rows * self.n_cols

    def cell_index(self, row: int, col: int) -> int:
        """The index ``row * n_cols + col`` of cell (row, col)."""
        return int(row) * self.n_cols + int(col)

    def cell_position(self, index: int) -> tuple[int, int]:
        """The (row, col) of a cell index (inverse of :meth:`cell_index`)."""
        row, col = divmod(int(index), self.n_cols)
        return (row, col)

    @property
    def start_index(self) -> int:
        """Cell index of the start."""
        return self.cell_index(*self.start)

    @property
    def goal_index(self) -> int:
        """Cell index of the goal."""
        return self.cell_index(*self.goal)

    @cached_property
    def decoy_indices(self) -> np.ndarray:
        """Cell indices of the decoys, (n_decoys,) int64, read-only."""
        out = np.array([self.cell_index(r, c) for r, c in self.decoys], dtype=np.int64)
        out.setflags(write=False)
        return out

    @cached_property
    def free_cells(self) -> np.ndarray:
        """Cell indices of every non-wall cell (start, goal and decoys included), ascending."""
        out = np.flatnonzero(self._free).astype(np.int64)
        out.setflags(write=False)
        return out

    @property
    def n_free(self) -> int:
        """Number of non-wall cells."""
        return int(self.free_cells.size)


def _as_position(pos: Sequence[int]) -> tuple[int, int]:
    """(row, col) as a tuple of Python ints."""
    row, col = pos
    return (int(row), int(col))


# --------------------------------------------------------------------------------------------
# Parsing and loading


def parse_maze(
    text: str, source: str = "<string>", *, check_reachable: bool = True, name: str | None = None
) -> Maze:
    """Parse maze text (format in the module docstring) into a :class:`Maze`.

    Args:
        text: the maze text.
        source: what to call the text in error messages (a path, a built-in name).
        check_reachable: also require the goal to be reachable from the start.
        name: the maze's name; by default the file stem of ``source`` (or "maze").

    Raises:
        MazeError: naming ``source`` and the line and column of the first problem.
    """
    if name is None:
        name = "maze" if source.startswith("<") else Path(source).stem
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark some editors write
        text = text[1:]
    if text == "":
        raise MazeError(source, "the file is empty; a maze needs at least one row")
    lines = text.replace("\r\n", "\n").split("\n")
    # Blank lines at the end (an editor's final newline, or a few more) are harmless.
    while lines and lines[-1].strip() == "":
        lines.pop()
    if not lines:
        raise MazeError(source, "the file is blank; a maze needs at least one row")

    n_cols = len(lines[0])
    for number, line in enumerate(lines, start=1):
        if line.strip() == "":
            raise MazeError(source, "blank line between maze rows", number)
        bad = _BAD_CHAR.search(line)
        if bad is not None:
            column = bad.start() + 1
            raise MazeError(source, _describe_bad_char(line, bad.start()), number, column)
        if len(line) != n_cols:
            raise MazeError(
                source,
                f"this row has {len(line)} columns but line 1 has {n_cols}; "
                "every row must have the same length",
                number,
            )

    grid = np.frombuffer("".join(lines).encode("ascii"), dtype=np.uint8).reshape(len(lines), -1)
    start = _unique_cell(grid, START, "start", source)
    goal = _unique_cell(grid, GOAL, "goal", source)
    decoys = tuple(_as_position(p) for p in np.argwhere(grid == ord(DECOY)))
    maze = Maze(grid == ord(WALL), start, goal, decoys, name=name)
    if check_reachable and shortest_path_length(maze) is None:
        raise MazeError(
            source,
            f"the goal 'G' cannot be reached from the start 'S' at line {start[0] + 1}, "
            f"column {start[1] + 1} (walls and decoys block the way)",
            goal[0] + 1,
            goal[1] + 1,
        )
    return maze


def _describe_bad_char(line: str, index: int) -> str:
    """Why the character at ``line[index]`` is not allowed, in words."""
    char = line[index]
    allowed = "a maze uses only '#' wall, '.' free, 'S' start, 'G' goal and 'g' decoy"
    if char in " \t" and line[index:].strip() == "":
        return f"trailing whitespace after the row; {allowed}"
    if char == " ":
        return f"a space inside the row; {allowed}"
    if char == "\t":
        return f"a tab inside the row; {allowed}"
    if char == "\r":
        return f"a carriage return inside the row (only \\n or \\r\\n line endings); {allowed}"
    shown = repr(char) if char.isprintable() else f"{ascii(char)} (not printable)"
    return f"unknown character {shown}; {allowed}"


def _unique_cell(grid: np.ndarray, char: str, label: str, source: str) -> tuple[int, int]:
    """The (row, col) of the single occurrence of ``char``; MazeError if none or several."""
    found = np.argwhere(grid == ord(char))
    if len(found) == 1:
        return _as_position(found[0])
    if len(found) == 0:
        raise MazeError(source, f"no {label} '{char}'; a maze needs exactly one")
    places = ", ".join(f"line {r + 1} column {c + 1}" for r, c in found[:3])
    more = ", ..." if len(found) > 3 else ""
    raise MazeError(
        source,
        f"{len(found)} {label} cells '{char}' ({places}{more}); a maze needs exactly one",
        int(found[1][0]) + 1,
        int(found[1][1]) + 1,
    )


def read_maze_file(path: str | os.PathLike[str], *, check_reachable: bool = True) -> Maze:
    """Read and parse a maze text file; every problem raises a :class:`MazeError` naming it."""
    source = os.fspath(path)
    p = Path(source)
    if p.is_dir():
        raise MazeError(source, "this is a directory, not a maze file")
    if p.exists() and not p.is_file():
        # A FIFO or a device would block the read or never end it.
        raise MazeError(source, "this is not a regular file (a FIFO, socket or device)")
    try:
        with p.open("rb") as f:
            data = f.read(MAX_MAZE_FILE_BYTES + 1)
    except FileNotFoundError:
        raise MazeError(source, "no such maze file") from None
    except PermissionError:
        raise MazeError(source, "the maze file cannot be read (permission denied)") from None
    except OSError as e:
        raise MazeError(source, f"the maze file cannot be read ({e.strerror or e})") from None
    if len(data) > MAX_MAZE_FILE_BYTES:
        raise MazeError(
            source, f"the file is larger than the {MAX_MAZE_FILE_BYTES} byte limit for a maze"
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = _byte_position(data, nul)
        raise MazeError(source, "not a text file (it holds a NUL byte)", line, column)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = _byte_position(data, e.start)
        raise MazeError(
            source, f"not a UTF-8 text file (byte 0x{data[e.start]:02x})", line, column
        ) from None
    return parse_maze(text, source, check_reachable=check_reachable)


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a byte offset, counting bytes within the line."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _builtin_names() -> tuple[str, ...]:
    """Stems of the maze text files shipped in the package's mazes/ folder."""
    folder = resources.files("sshr_torch") / "mazes"
    return tuple(sorted(f.name[:-4] for f in folder.iterdir() if f.name.endswith(".txt")))


#: Names of the built-in mazes (the package's mazes/*.txt file stems), sorted.
BUILTIN_MAZES: tuple[str, ...] = _builtin_names()


def builtin_maze_text(name: str) -> str:
    """The text of built-in maze ``name`` exactly as shipped."""
    if name not in BUILTIN_MAZES:
        raise MazeError(
            repr(name), f"not a built-in maze; the built-in mazes are {', '.join(BUILTIN_MAZES)}"
        )
    return (resources.files("sshr_torch") / "mazes" / f"{name}.txt").read_text(encoding="utf-8")


@cache
def _load_builtin(name: str) -> Maze:
    """Parse a built-in maze once; Maze is immutable, so the cached object is shared."""
    return parse_maze(builtin_maze_text(name), f"built-in maze '{name}'", name=name)


def load_maze(spec: str | os.PathLike[str] | Maze) -> Maze:
    """A maze from a built-in name, a text file path, or a generator spec.

    Args:
        spec: one of

            * a :class:`Maze` (returned as it is);
            * a built-in name from :data:`BUILTIN_MAZES`, e.g. ``"keulen_hard"`` (a built-in
              name wins over a file of the same name in the working directory; write
              ``./keulen_hard`` for the file);
            * a path to a maze text file (a ``str`` or any ``os.PathLike``);
            * ``"generated:HxW[:seed=N][:kind=K]"``, see :func:`generate_maze` (seed 0 and
              kind "perfect" by default), e.g. ``"generated:101x101:seed=3:kind=loops"``.

    Raises:
        MazeError: a sentence naming the file or spec, and the line and column where it applies.
    """
    if isinstance(spec, Maze):
        return spec
    if isinstance(spec, os.PathLike):
        return read_maze_file(spec)
    if not isinstance(spec, str):
        raise TypeError(f"a maze spec is a name, a path or a Maze, not {type(spec).__name__}")
    if spec.strip() == "":
        raise MazeError(
            repr(spec), "an empty maze spec; give a built-in name, a file or 'generated:HxW'"
        )
    if spec.startswith(GENERATED_PREFIX):  # "generated_maze.txt" is a file name
        n_rows, n_cols, seed, kind = parse_generator_spec(spec)
        return generate_maze(n_rows, n_cols, seed=seed, kind=kind)
    if spec in BUILTIN_MAZES:
        return _load_builtin(spec)
    if not os.path.lexists(spec) and os.sep not in spec and "/" not in spec and "." not in spec:
        # Looks like a name rather than a path: say what the names are.
        raise MazeError(
            f"'{spec}'",
            "neither a built-in maze nor an existing file; the built-in mazes are "
            + ", ".join(BUILTIN_MAZES),
        )
    return read_maze_file(spec)


def parse_generator_spec(spec: str) -> tuple[int, int, int, str]:
    """Split ``"generated:HxW[:seed=N][:kind=K]"`` into (n_rows, n_cols, seed, kind).

    Options may come in either order. Raises MazeError naming the spec on any malformed part.
    """
    source = f"maze spec '{spec}'"
    usage = "write generated:ROWSxCOLS[:seed=N][:kind=K], e.g. generated:41x41:seed=3:kind=loops"
    if not spec.startswith(GENERATED_PREFIX):
        raise MazeError(source, f"a generator spec starts with '{GENERATED_PREFIX}'; {usage}")
    size, *options = spec[len(GENERATED_PREFIX) :].split(":")
    match = _SIZE.fullmatch(size)
    if match is None:
        raise MazeError(source, f"the size {size!r} is not ROWSxCOLS; {usage}")
    n_rows, n_cols = int(match.group(1)), int(match.group(2))
    values: dict[str, str] = {}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq or key not in ("seed", "kind"):
            raise MazeError(source, f"unknown option {option!r} (options are seed=N, kind=K)")
        if key in values:
            raise MazeError(source, f"the option {key!r} is given twice")
        values[key] = value
    seed_text = values.get("seed", "0")
    if _SEED.fullmatch(seed_text) is None:
        raise MazeError(source, f"the seed {seed_text!r} is not a non-negative integer")
    kind = values.get("kind", "perfect")
    _check_generator_args(n_rows, n_cols, int(seed_text), kind, source)
    return n_rows, n_cols, int(seed_text), kind


def _check_generator_args(n_rows: int, n_cols: int, seed: int, kind: str, source: str) -> None:
    """MazeError unless the generator can build this maze."""
    if kind not in GENERATOR_KINDS:
        raise MazeError(
            source, f"unknown maze kind {kind!r}; the kinds are {', '.join(GENERATOR_KINDS)}"
        )
    for label, value in (("rows", n_rows), ("columns", n_cols)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MazeError(source, f"the number of {label} must be an integer, not {value!r}")
        if value < MIN_GENERATED_SIZE:
            raise MazeError(
                source,
                f"{value} {label} is too small; a generated maze needs at least "
                f"{MIN_GENERATED_SIZE} rows and {MIN_GENERATED_SIZE} columns",
            )
        if value > MAX_GENERATED_SIZE:
            raise MazeError(
                source,
                f"{value} {label} is too large; a generated maze has at most "
                f"{MAX_GENERATED_SIZE} rows and {MAX_GENERATED_SIZE} columns",
            )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MazeError(source, f"the seed {seed!r} is not a non-negative integer")


def maze_to_text(maze: Maze) -> str:
    """The maze in the text format, one ``\\n``-terminated line per row.

    ``parse_maze(maze_to_text(m))`` rebuilds ``m`` (up to its name), and every built-in maze's
    text comes back character for character.
    """
    chars = np.where(maze.walls, WALL, FREE).astype("<U1")
    chars[maze.start] = START
    chars[maze.goal] = GOAL
    for d in maze.decoys:
        chars[d] = DECOY
    return "".join("".join(row) + "\n" for row in chars)


# --------------------------------------------------------------------------------------------
# Shortest paths


def _bfs_padded(passable: list[bool], expand: list[bool], width: int, source: int) -> list[int]:
    """Breadth-first distances on a flattened grid padded with a one-cell wall border.

    The padding means every neighbour index ``p +- 1``, ``p +- width`` exists, so the inner loop
    needs no bounds checks. Cells that are passable but not ``expand`` (decoys) get a distance
    but are not walked through. Unreached cells are -1.
    """
    dist = [-1] * len(passable)
    dist[source] = 0
    frontier = [source]
    d = 0
    while frontier:
        d += 1
        reached = []
        for p in frontier:
            if not expand[p] and p != source:
                continue
            for q in (p - width, p + 1, p + width, p - 1):
                if passable[q] and dist[q] < 0:
                    dist[q] = d
                    reached.append(q)
        frontier = reached
    return dist


def bfs_distances(maze: Maze, source: tuple[int, int]) -> np.ndarray:
    """Shortest number of moves from ``source`` to every cell, (n_rows, n_cols) int64.

    -1 marks walls and unreachable cells. Decoys are reached but not passed through (they end
    the episode).
    """
    row, col = _as_position(source)
    if not (0 <= row < maze.n_rows and 0 <= col < maze.n_cols) or maze.walls[row, col]:
        raise ValueError(f"BFS source {(row, col)} is a wall or outside the maze {maze.shape}")
    free = np.pad(~maze.walls, 1, constant_values=False)  # (n_rows + 2, n_cols + 2)
    expand = free.copy()
    for r, c in maze.decoys:
        expand[r + 1, c + 1] = False
    width = maze.n_cols + 2
    dist = _bfs_padded(
        free.ravel().tolist(), expand.ravel().tolist(), width, (row + 1) * width + col + 1
    )
    return np.array(dist, dtype=np.int64).reshape(free.shape)[1:-1, 1:-1]


def shortest_path_length(
    maze: Maze, start: tuple[int, int] | None = None, goal: tuple[int, int] | None = None
) -> int | None:
    """Fewest moves from start to goal (the maze's own by default); None if unreachable."""
    start = maze.start if start is None else start
    goal = maze.goal if goal is None else goal
    d = int(bfs_distances(maze, start)[goal])
    return None if d < 0 else d


# --------------------------------------------------------------------------------------------
# Generator


def generate_maze(n_rows: int, n_cols: int, *, seed: int = 0, kind: str = "perfect") -> Maze:
    """A random, always solvable maze, the same for the same arguments.

    Kinds:
        * ``"perfect"``: a spanning tree carved by a randomised depth-first backtracker on the
          lattice of even (row, col) cells, so there is exactly one path between any two free
          cells (long winding corridors). The walls between lattice cells sit on odd rows or
          columns; a grid with an even side therefore keeps its last row or column all wall.
        * ``"loops"``: a perfect maze with 10 % of its remaining inner walls knocked down, so
          there are many alternative routes.
        * ``"rooms"``: recursive division: the grid is split by walls one cell thick, each with
          one door, until every part is a room of at most 9 x 9 cells; the rooms form a tree.

    Start and goal are the ends of the longest shortest path, found by a double
    breadth-first search (the farthest cell from a free cell, then the farthest from that);
    exact for perfect mazes, a close approximation when there are loops. The name of the result
    is its generator spec, so ``load_maze(maze.name)`` rebuilds it. A 201 x 201 maze takes
    about 30 ms; the largest, 2001 x 2001, a few seconds.

    Raises:
        MazeError: for a size outside 3..2001, an unknown kind or a negative seed.
    """
    source = f"maze spec 'generated:{n_rows}x{n_cols}:seed={seed}:kind={kind}'"
    _check_generator_args(n_rows, n_cols, seed, kind, source)
    n_rows, n_cols, seed = int(n_rows), int(n_cols), int(seed)
    rng = np.random.default_rng(seed)
    if kind == "rooms":
        walls = _divide_rooms(n_rows, n_cols, rng)
    else:
        walls = _carve_backtracker(n_rows, n_cols, rng)
        if kind == "loops":
            _knock_down_walls(walls, _LOOP_FRACTION, rng)
    free = np.pad(~walls, 1, constant_values=False)
    padded = free.ravel().tolist()
    width = n_cols + 2
    first = int(np.flatnonzero(padded)[0])
    # Double BFS: the farthest cell from any cell is one end of a longest shortest path (on a
    # tree), and the farthest cell from that end is the other.
    dist = _bfs_padded(padded, padded, width, first)
    end_a = int(np.argmax(dist))
    dist = _bfs_padded(padded, padded, width, end_a)
    end_b = int(np.argmax(dist))
    start = divmod(end_a, width)
    goal = divmod(end_b, width)
    return Maze(
        walls,
        (start[0] - 1, start[1] - 1),
        (goal[0] - 1, goal[1] - 1),
        name=f"generated:{n_rows}x{n_cols}:seed={seed}:kind={kind}",
    )


def _carve_backtracker(n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """Walls of a perfect maze: a randomised depth-first spanning tree of the even lattice.

    Lattice cells are the grid cells with even row and column; the walls between two of them
    are opened as the walk carves. The walk runs on a lattice padded by one visited cell on
    every side, so neighbours need no bounds checks; it is an explicit stack, not recursion.
    """
    lat_rows, lat_cols = (n_rows + 1) // 2, (n_cols + 1) // 2
    pad_cols = lat_cols + 2
    visited = np.ones((lat_rows + 2, pad_cols), dtype=bool)
    visited[1:-1, 1:-1] = False
    # grid index of each padded lattice cell (meaningless on the padding, never used there)
    r = np.arange(lat_rows + 2)[:, None]
    c = np.arange(pad_cols)[None, :]
    grid_of = ((2 * (r - 1)) * n_cols + 2 * (c - 1)).ravel().tolist()
    seen = visited.ravel().tolist()
    free = bytearray(n_rows * n_cols)
    # (step on the padded lattice, step to the wall between on the grid) for up, right, down, left
    steps = ((-pad_cols, -n_cols), (1, 1), (pad_cols, n_cols), (-1, -1))
    n_lattice = lat_rows * lat_cols
    draws = rng.random(n_lattice).tolist()  # one draw per carved passage (n_lattice - 1 of them)
    first = 1 + int(rng.integers(lat_rows)), 1 + int(rng.integers(lat_cols))
    p = first[0] * pad_cols + first[1]
    seen[p] = True
    free[grid_of[p]] = 1
    stack = [p]
    k = 0
    while stack:
        p = stack[-1]
        options = [s for s in steps if not seen[p + s[0]]]
        if not options:
            stack.pop()
            continue
        lattice_step, grid_step = options[int(draws[k] * len(options))]
        k += 1
        q = p + lattice_step
        seen[q] = True
        g = grid_of[p]
        free[g + grid_step] = 1  # the wall between p and q
        free[g + 2 * grid_step] = 1  # q itself
        stack.append(q)
    return np.frombuffer(bytes(free), dtype=np.uint8).reshape(n_rows, n_cols) == 0


def _knock_down_walls(walls: np.ndarray, fraction: float, rng: np.random.Generator) -> None:
    """Open ``fraction`` of the walls that separate two lattice cells (in place).

    Such a wall has one odd and one even coordinate and lattice cells on both sides; pillars
    (both coordinates odd) stay, so the maze keeps its corridor look.
    """
    n_rows, n_cols = walls.shape
    rows = np.arange(n_rows)[:, None]
    cols = np.arange(n_cols)[None, :]
    last_row, last_col = 2 * ((n_rows - 1) // 2), 2 * ((n_cols - 1) // 2)
    between_h = (rows % 2 == 0) & (cols % 2 == 1) & (cols < last_col)  # cells left and right
    between_v = (rows % 2 == 1) & (cols % 2 == 0) & (rows < last_row)  # cells above and below
    candidates = walls & (between_h | between_v)
    walls[candidates & (rng.random(walls.shape) < fraction)] = False


def _divide_rooms(n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """Walls of a rooms-and-doors maze by recursive division (an explicit stack).

    Regions have even top/left bounds; dividing walls go on odd rows/columns and doors on even
    ones, so a later wall can never land on (and block) an earlier door.
    """
    walls = np.zeros((n_rows, n_cols), dtype=bool)
    regions = [(0, n_rows - 1, 0, n_cols - 1)]  # inclusive (top, bottom, left, right)
    while regions:
        top, bottom, left, right = regions.pop()
        height, width = bottom - top + 1, right - left + 1
        # odd positions that leave at least _ROOM_MIN cells on each side
        rows = np.arange(top + _ROOM_MIN, bottom - _ROOM_MIN + 1)
        rows = rows[rows % 2 == 1] if height > _ROOM_MAX else rows[:0]
        cols = np.arange(left + _ROOM_MIN, right - _ROOM_MIN + 1)
        cols = cols[cols % 2 == 1] if width > _ROOM_MAX else cols[:0]
        if rows.size == 0 and cols.size == 0:
            continue  # a room
        # cut across the longer side, so rooms stay roughly square
        horizontal = cols.size == 0 or (rows.size > 0 and height >= width)
        if horizontal:
            r = int(rows[rng.integers(rows.size)])
            door = left + 2 * int(rng.integers((width + 1) // 2))
            walls[r, left : right + 1] = True
            walls[r, door] = False
            regions += [(top, r - 1, left, right), (r + 1, bottom, left, right)]
        else:
            c = int(cols[rng.integers(cols.size)])
            door = top + 2 * int(rng.integers((height + 1) // 2))
            walls[top : bottom + 1, c] = True
            walls[door, c] = False
            regions += [(top, bottom, left, c - 1), (top, bottom, c + 1, right)]
    return walls
