"""What a run leaves on disk: its directory, episodes.csv, JSON files and checkpoints.

A run directory holds config.json, episodes.csv (one row per finished episode, appended and
flushed as the episode ends), summary.json, TensorBoard event files and checkpoint.pt.

Checkpoints are written atomically (a temporary file, then ``os.replace``), so a kill at any
moment leaves either the previous checkpoint or the new one, never half of one. They hold only
tensors, Python scalars, strings, bytes and containers, so ``torch.load(path, weights_only=True)``
reads them and a checkpoint file cannot run code. NumPy arrays are stored as tensors inside a
one-key dict ``{NUMPY_TAG: tensor}`` and come back as arrays; a large integer array is stored in
the narrowest integer dtype that holds its values, as ``{NUMPY_TAG: tensor, DTYPE_TAG: its own
dtype}``, and comes back in its own dtype.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

CONFIG_FILE = "config.json"
EPISODES_FILE = "episodes.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1
NUMPY_TAG = "__numpy__"
DTYPE_TAG = "__dtype__"
# Integer arrays of at least this many elements are stored in the narrowest of _NARROW_DTYPES
# that holds their values. The replay buffer's int64 states, goals and actions of a maze fit in
# one byte: this cut the tabular bench's checkpoint from 7.0 to 2.7 MB. On ext4 the cost of a
# checkpoint grows with its size (replacing a file flushes the new one and frees the old), so
# the checkpoint went from about 13 to 7 ms (measured at 120k steps of the bench config).
_NARROW_MIN_SIZE = 4096
_NARROW_DTYPES = (np.uint8, np.int8, np.int16, np.int32)
# Items a list or tuple may hold to be saved as it is, without a look at each item.
_PLAIN_TYPES = frozenset({int, float, bool, str, bytes, type(None)})

EPISODE_COLUMNS = (
    "episode",
    "env_steps",
    "return",
    "length",
    "success",
    "smart_start",
    "ss_target",
    "ss_target_count",
    "ss_plan_length",
    "ss_steps",
    "ss_reached",
    "ss_target_distance",
    "epsilon",
    "n_updates",
    "td_loss",
    "wall_s",
)


class RunError(ValueError):
    """A run directory or checkpoint a user pointed at cannot be used; the message says why."""


def default_run_name(maze: str, agent: str, her: str, smart_start: bool, seed: int) -> str:
    """``{maze}__{agent}__her-{her}__ss-{0|1}__s{seed}__{time}``, safe as a directory name."""
    maze_name = Path(maze).stem if maze.endswith(".txt") else maze
    maze_name = re.sub(r"[^A-Za-z0-9_.=-]+", "-", maze_name).strip("-") or "maze"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{maze_name}__{agent}__her-{her}__ss-{int(smart_start)}__s{seed}__{stamp}"


def create_run_dir(path: Path) -> Path:
    """Create a new run directory (parents included); RunError when it cannot be written."""
    if path.exists() and any(path.iterdir()):
        raise RunError(f"run directory {path} already exists and is not empty.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise RunError(f"cannot write run directory {path}: {error.strerror or error}.") from None
    return path


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    _atomic_write(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path) -> Any:
    """Read a JSON file written by write_json; RunError names the file when it is unreadable."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path} is not a readable JSON file ({error}).") from None


class EpisodeLog:
    """episodes.csv: a header, then one row per episode, flushed as each row is written."""

    def __init__(self, path: Path, columns: Sequence[str] = EPISODE_COLUMNS) -> None:
        self.path = path
        self.columns = tuple(columns)
        fresh = not path.exists() or path.stat().st_size == 0
        self._file = path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if fresh:
            self._writer.writerow(self.columns)
            self._file.flush()

    def write(self, row: dict[str, Any]) -> None:
        """Append one episode's row (missing columns are left empty) and flush it to disk."""
        self._writer.writerow([_csv_value(row.get(column, "")) for column in self.columns])
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    @staticmethod
    def keep_first(path: Path, n_episodes: int) -> int:
        """Cut episodes.csv to its header and first ``n_episodes`` rows; returns the rows cut.

        Used on resume: the rows written after the last checkpoint belong to episodes that the
        resumed run plays again (with the same random numbers), so each episode stays exactly once.
        """
        if not path.exists():
            return 0
        lines = path.read_text().splitlines(keepends=True)
        # A kill mid-write can leave a last line without its newline: it is never kept.
        complete = [line for line in lines if line.endswith("\n")]
        kept = complete[: 1 + n_episodes]
        if len(kept) < 1 + n_episodes:
            raise RunError(
                f"{path} has {len(kept) - 1} complete episode rows but the checkpoint "
                f"expects {n_episodes}."
            )
        _atomic_write(path, "".join(kept).encode())
        return len(lines) - len(kept)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a checkpoint atomically; NumPy arrays become tagged tensors."""
    state = {"version": CHECKPOINT_VERSION, **state}
    tmp = _temporary_path(path)
    try:
        torch.save(_to_torch(state), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint (weights_only); RunError when unreadable."""
    if not path.is_file():
        raise RunError(f"{path} does not exist.")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise RunError(f"{path} is not a readable checkpoint ({first_line}).") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise RunError(f"{path} is not a sshr_torch checkpoint of version {CHECKPOINT_VERSION}.")
    return _from_torch(state)


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _array_to_torch(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: _to_torch(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if set(map(type, value)) <= _PLAIN_TYPES:
            # Nothing to convert: the count model's long lists of ints and floats are kept as
            # they are (item-by-item recursion cost 0.8 ms of each tabular bench checkpoint).
            return value
        return type(value)(_to_torch(item) for item in value)
    return value


def _array_to_torch(array: np.ndarray) -> dict[str, Any]:
    """A tagged tensor holding ``array`` (narrowed when it is a large integer array)."""
    array = np.ascontiguousarray(array)
    narrow = _narrowest_dtype(array)
    if narrow is not None:
        return {NUMPY_TAG: torch.from_numpy(array.astype(narrow)), DTYPE_TAG: array.dtype.str}
    # torch.save writes the bytes the tensor shares with the array (from_numpy of a view spans
    # just the view), so no copy is needed; torch only warns about read-only arrays.
    return {NUMPY_TAG: torch.from_numpy(array if array.flags.writeable else array.copy())}


def _narrowest_dtype(array: np.ndarray) -> type | None:
    """The narrowest of _NARROW_DTYPES that holds an integer array's values, if it is narrower."""
    if array.dtype.kind not in "iu" or array.size < _NARROW_MIN_SIZE:
        return None
    low, high = int(array.min()), int(array.max())
    for dtype in _NARROW_DTYPES:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype if info.bits < 8 * array.dtype.itemsize else None
    return None


def _from_torch(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and NUMPY_TAG in value:
            return value[NUMPY_TAG].numpy()
        if len(value) == 2 and NUMPY_TAG in value and DTYPE_TAG in value:
            return value[NUMPY_TAG].numpy().astype(np.dtype(value[DTYPE_TAG]))
        return {key: _from_torch(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_torch(item) for item in value)
    return value


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _temporary_path(path: Path) -> Path:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(name)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = _temporary_path(path)
    try:
        with tmp.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
