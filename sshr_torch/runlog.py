"""What a run leaves on disk: its directory, episodes.csv, dashboards, JSON and checkpoints.

A run directory holds config.json, episodes.csv (one row per finished episode, appended and
flushed as the episode ends), summary.json, TensorBoard event files and checkpoint.pt.
``RunLogger`` writes episodes.csv and the dashboards; ``run_state`` / ``restore_run_state``
turn a run's parts into a checkpoint and back.

One process at a time: a run holds an OS-level lock on ``.lock`` in its directory
(``lock_run_dir``) from before it reads or writes anything there until it ends; the OS releases
it when the process dies, so a ``kill -9`` never leaves a directory locked.

Checkpoints are written atomically (a temporary file, then ``os.replace``), so a kill at any
moment leaves either the previous checkpoint or the new one, never half of one; the temporary
files a kill leaves behind are removed by the next run in the directory. They hold only
tensors, Python scalars, strings, bytes and containers, so ``torch.load(path, weights_only=True)``
reads them and a checkpoint file cannot run code. NumPy arrays are stored as tensors inside a
one-key dict ``{NUMPY_TAG: tensor}`` and come back as arrays; a large integer array is stored in
the narrowest integer dtype that holds its values, as ``{NUMPY_TAG: tensor, DTYPE_TAG: its own
dtype}``, and comes back in its own dtype. A checkpoint also holds the SHA-256 of everything
else in it (``SHA256_KEY``): one whose bytes were altered is refused.

For sweeps, both backends (``sweep`` on local processes, ``cluster`` on Ray Tune) write a
finished run's final metrics with ``write_final_metrics`` and read and write a sweep directory
through ``Storage`` (``LocalDirectory`` here, ``cluster.ArrowStorage`` for a storage URI).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import gymnasium
import numpy as np
import torch

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the one-process rule is then the user's)
    fcntl = None  # type: ignore[assignment]

CONFIG_FILE = "config.json"
EPISODES_FILE = "episodes.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".lock"
# 3: a checksum, the tabular Q table stored sparse (2: the DQN as an nn.Module with torch.optim
# state; 1: before that).
CHECKPOINT_VERSION = 3
SHA256_KEY = "sha256"
NUMPY_TAG = "__numpy__"
DTYPE_TAG = "__dtype__"
# Integer arrays of at least this many elements are stored in the narrowest of _NARROW_DTYPES
# that holds their values: the replay buffer's int64 states, goals and actions of a maze fit in
# one byte, and the cost of writing a checkpoint grows with its size (replacing a file flushes
# the new one and frees the old).
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


def lock_run_dir(path: Path, other: str = "--run-dir") -> IO[str]:
    """Take the run directory's lock (``fcntl.flock`` on ``path/.lock``) or raise RunError
    (whose advice names the flag ``other``: use another one).

    The lock belongs to the open file: it lasts until the returned handle is closed or the
    process ends, however it ends (the OS releases it on a kill -9). The holder's process id
    is written into the file, for the message another process gets.
    """
    try:
        handle = (path / LOCK_FILE).open("a+")
    except OSError as error:
        raise RunError(f"cannot write run directory {path}: {error.strerror or error}.") from None
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise RunError(
                f"run directory {path} is in use by {who}; one process per run directory "
                f"(wait for it to end, or use another {other})."
            ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def remove_stale_temporary_files(path: Path) -> list[Path]:
    """Remove the temporary files (``.{name}.*.tmp``) that a kill during a write left in a run
    directory; call it holding the lock. Returns the files removed."""
    removed = []
    for name in (CONFIG_FILE, EPISODES_FILE, SUMMARY_FILE, CHECKPOINT_FILE):
        for stale in path.glob(f".{name}.*.tmp"):
            if stale.is_file():
                stale.unlink()
                removed.append(stale)
    return removed


def create_run_dir(path: Path) -> Path:
    """Create a new run directory (parents included); RunError when it cannot be written.

    A directory holding only a lock file and temporary files (a run killed before it wrote
    config.json) counts as empty: such a run cannot be resumed, so it can be started again.
    """
    if path.is_dir() and any(not _leftover(entry.name) for entry in path.iterdir()):
        raise RunError(f"run directory {path} already exists and is not empty.")
    if path.exists() and not path.is_dir():
        raise RunError(f"run directory {path} exists and is not a directory.")
    try:  # (lock_run_dir, which creates the lock file next, finds out if it is writable)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot write run directory {path}: {error.strerror or error}.") from None
    return path


def _leftover(name: str) -> bool:
    """A name a run killed at its start can leave: the lock file, temporary files."""
    return name == LOCK_FILE or (name.startswith(".") and name.endswith(".tmp"))


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
        self._writer = csv.writer(self._file, lineterminator="\n")  # one line ending, everywhere
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
        if not path.is_file():
            if n_episodes == 0 and not path.exists():
                return 0
            raise RunError(
                f"{path} is missing (or not a file), but the checkpoint has {n_episodes} "
                "episodes; put the file back, or start a new run."
            )
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise RunError(f"{path} is not a text CSV file (it is not valid UTF-8).") from None
        # Universal newlines: an older file's CRLF rows come back with LF, as new rows are.
        lines = io.StringIO(text, newline=None).readlines()
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
    """Save a checkpoint atomically, with its checksum; NumPy arrays become tagged tensors.

    Raises RunError when the disk is full (the previous checkpoint stands).
    """
    payload = _to_torch({"version": CHECKPOINT_VERSION, **state})
    payload[SHA256_KEY] = _digest(payload)
    # Serialised in memory first, so that a full disk shows as an OSError of our own write.
    data = io.BytesIO()
    torch.save(payload, data)
    _atomic_write(path, data.getbuffer(), sync=False)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint (weights_only); RunError when unreadable."""
    if path.is_dir():
        raise RunError(f"{path} is a directory, not a checkpoint file.")
    if not path.is_file():
        raise RunError(f"{path} does not exist.")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except OSError as error:
        raise RunError(f"{path} cannot be read ({error.strerror or error}).") from None
    except Exception:  # torch raises many types (and cryptic messages) for a foreign file
        raise RunError(
            f"{path} is not a checkpoint file that torch can read (damaged, or not a checkpoint)."
        ) from None
    if not isinstance(state, dict) or "version" not in state:
        raise RunError(f"{path} is not a sshr_torch checkpoint.")
    if state["version"] != CHECKPOINT_VERSION:
        raise RunError(
            f"{path} is a sshr_torch checkpoint of version {state['version']}; this version of "
            f"sshr_torch reads version {CHECKPOINT_VERSION} only."
        )
    stored = state.pop(SHA256_KEY, None)
    if stored != _digest(state):
        raise RunError(f"{path} is damaged: its checksum does not match its contents.")
    return _from_torch(state)


def _digest(value: Any) -> str:
    """SHA-256 of a checkpoint's content: structure, keys, scalars and tensors' bytes."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(value.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"{{{len(value)}".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)) and set(map(type, value)) <= _PLAIN_TYPES:
        digest.update(f"{type(value).__name__}{value!r}".encode())  # long lists: one repr
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


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
            # they are (recursing item by item is slow on lists that long).
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


def _atomic_write(path: Path, data: bytes | memoryview, sync: bool = True) -> None:
    """Write ``path`` atomically (a temporary file, then ``os.replace``); RunError on a full
    disk. ``sync``: fsync the data first (rename atomicity alone is enough against a kill)."""
    try:
        tmp = _temporary_path(path)
        try:
            _write_file(tmp, data, sync)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RunError(
                f"disk full while writing {path}; the previous version of the file stands."
            ) from None
        raise


def _write_file(path: Path, data: bytes | memoryview, sync: bool) -> None:
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        if sync:
            os.fsync(file.fileno())


# --- progress, dashboards and checkpoints of a run ---------------------------------------------

# Rolling window of the rollout statistics in the progress bar and summary.
WINDOW = 100
# TensorBoard rollout scalars are written at most every this many env steps (means over the
# episodes in between), so that runs of many short episodes do not spend their time logging.
LOG_EVERY_STEPS = 500


@dataclass
class Progress:
    """The counters of a run that a checkpoint restores (everything else is rebuilt)."""

    episode: int = 0
    env_steps: int = 0
    n_updates: int = 0
    first_success_step: int | None = None
    wall_s: float = 0.0
    successes: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    lengths: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    eval_success_rate: float | None = None
    eval_mean_length: float | None = None
    solved_step: int | None = None
    goals_success: float | None = None
    goals_excess: float | None = None
    goal_reach_s: float = 0.0

    @property
    def success_rate(self) -> float:
        """Success rate over the last ``WINDOW`` episodes (NaN before the first)."""
        return _mean(self.successes)

    @property
    def mean_length(self) -> float:
        """Mean length of the last ``WINDOW`` episodes (NaN before the first)."""
        return _mean(self.lengths)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint."""
        values = dict(self.__dict__)
        values["successes"], values["lengths"] = list(self.successes), list(self.lengths)
        return values

    @staticmethod
    def from_dict(values: dict[str, Any]) -> Progress:
        """Inverse of to_dict; KeyError / TypeError / ValueError on a malformed dict."""
        for name in ("episode", "env_steps", "n_updates"):
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"progress.{name} is {value!r}, not a count")
        if not isinstance(values["wall_s"], (int, float)):
            raise ValueError(f"progress.wall_s is {values['wall_s']!r}, not a number")
        progress = Progress(
            **{k: v for k, v in values.items() if k not in ("successes", "lengths")}
        )
        progress.successes.extend(values["successes"])
        progress.lengths.extend(values["lengths"])
        return progress


class RunLogger:
    """episodes.csv and the TensorBoard dashboards of one run.

    Scalars (x axis: env steps) are means over the episodes since the last write, written at
    most every ``LOG_EVERY_STEPS`` env steps: ``rollout/``, ``train/``, ``smart_start/``,
    ``her/``, ``time/``; ``eval/`` at each evaluation; images (``maze/visits``,
    ``maze/policy``) when asked. A fresh run also gets its config as a text table and as
    HParams. On resume, ``purge_step`` hides the events a killed run wrote after its last
    checkpoint, so resumed curves continue without a doubled stretch.
    """

    def __init__(self, run_dir: Path, config: dict[str, Any], resumed_at: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.episodes = EpisodeLog(run_dir / EPISODES_FILE)
        if resumed_at is not None:
            _wait_for_a_newer_event_file_name(run_dir)
        self.writer = SummaryWriter(
            str(run_dir), purge_step=None if resumed_at is None else resumed_at + 1
        )
        if resumed_at is None:
            self._write_config(config)
        self._rows: list[dict[str, Any]] = []
        self._metrics: dict[str, list[float]] = {}
        self._last_step = resumed_at or 0

    def _write_config(self, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {key: hparam_value(value) for key, value in config.items()}
        table = "|field|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in values.items())
        self.writer.add_text("config", table, 0)
        metrics = {"eval/success_rate": 0.0, "rollout/success_rate": 0.0}
        # The session's settings only: TensorBoard infers a run's HParams experiment from them,
        # and a sweep writes one experiment for all its runs (its varying settings and final
        # metrics) that a per-run experiment would shadow.
        _, session_start, session_end = hparams(values, metrics)
        for summary in (session_start, session_end):
            self.writer.file_writer.add_summary(summary)

    def log_episode(self, row: dict[str, Any], metrics: dict[str, list[float]]) -> None:
        """Append the episode's row to episodes.csv; keep it and the learner's metrics for the
        next scalars (``row`` may hold a ``report``, the episode's SmartStartReport)."""
        self.episodes.write(row)
        self._rows.append(row)
        for key, values in metrics.items():
            self._metrics.setdefault(key, []).extend(values)

    def log_scalars(self, progress: Progress, extra: dict[str, float], force: bool) -> None:
        """Write the scalars of the episodes since the last write (if due, or ``force``)."""
        rows, step = self._rows, progress.env_steps
        if not rows or (not force and step - self._last_step < LOG_EVERY_STEPS):
            return
        add = self.writer.add_scalar
        add("rollout/episodic_return", _mean([r["return"] for r in rows]), step)
        add("rollout/episodic_length", _mean([r["length"] for r in rows]), step)
        add("rollout/success", _mean([float(r["success"]) for r in rows]), step)
        add("rollout/success_rate", progress.success_rate, step)
        add("rollout/episodes", progress.episode, step)
        add("train/epsilon", rows[-1]["epsilon"], step)
        add("train/n_updates", progress.n_updates, step)
        for key in ("td_loss", "q_mean", "grad_norm", "model_share"):
            if self._metrics.get(key):
                add(f"train/{key}", _mean(self._metrics[key]), step)
        reports = [r["report"] for r in rows if r.get("report") is not None]
        if reports:
            used = [report for report in reports if report.used]
            add("smart_start/used", len(used) / len(reports), step)
            if used:
                add("smart_start/plan_length", _mean([u.plan_length for u in used]), step)
                add("smart_start/steps_to_target", _mean([u.steps for u in used]), step)
                add("smart_start/reached", _mean([float(u.reached) for u in used]), step)
                add("smart_start/target_count", _mean([u.target_count for u in used]), step)
                add("smart_start/plan_ms", _mean([u.plan_ms for u in used]), step)
                distances = [u.target_distance_to_goal for u in used]
                if None not in distances:
                    add("smart_start/target_distance_to_goal", _mean(distances), step)
        if self._metrics.get("relabelled_fraction"):
            add("her/relabelled_fraction", _mean(self._metrics["relabelled_fraction"]), step)
        for tag, value in extra.items():
            add(tag, value, step)
        add("time/sps", step / max(progress.wall_s, 1e-9), step)
        self._rows, self._metrics, self._last_step = [], {}, step

    def log_evaluation(self, success_rate: float, mean_length: float, step: int) -> None:
        """``eval/success_rate`` and ``eval/mean_length`` at env step ``step``."""
        self.writer.add_scalar("eval/success_rate", success_rate, step)
        self.writer.add_scalar("eval/mean_length", mean_length, step)

    def log_goal_reach(self, scalars: dict[str, float], step: int) -> None:
        """Goal reach's ``eval/goals_success`` and ``eval/goals_excess`` at env step ``step``."""
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def log_goal_reach_image(
        self, board: Any, moves: np.ndarray, shortest: np.ndarray, start: int, step: int
    ) -> None:
        """``maze/goal_reach``: each cell coloured by whether and how directly the greedy walk
        from ``start`` reaches it (``dashboards.goal_reach_map`` on a ``dashboards.Board``)."""
        from sshr_torch import dashboards

        image = dashboards.goal_reach_map(board, moves, shortest, start)
        self.writer.add_image("maze/goal_reach", image, step, dataformats="HWC")

    def log_maze_images(
        self,
        board: Any,
        visits: np.ndarray,
        q_values: np.ndarray,
        step: int,
        target: int | None = None,
        path: Sequence[int] = (),
        strokes: bool = True,
    ) -> None:
        """``maze/visits`` (heatmap, S_ss and the planned walk) and ``maze/policy`` images of
        any env with a grid of goals (a ``dashboards.Board``; values by goal id)."""
        from sshr_torch import dashboards  # matplotlib loads only once images are drawn

        heatmap = dashboards.visit_heatmap(board, visits, target=target, path=list(path))
        self.writer.add_image("maze/visits", heatmap, step, dataformats="HWC")
        policy = dashboards.policy_map(board, q_values, strokes=strokes)
        self.writer.add_image("maze/policy", policy, step, dataformats="HWC")

    def flush(self) -> None:
        """Everything written so far is on disk (before a checkpoint)."""
        self.writer.flush()

    def close(self) -> None:
        """Close the event file and episodes.csv."""
        self.writer.close()
        self.episodes.close()


def hparam_value(value: Any) -> Any:
    """A setting as TensorBoard's HParams take it: None and lists (or tuples) as text, a dict
    (``env_kwargs``) as its JSON."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if value is None or isinstance(value, (list, tuple)):
        return str(list(value) if isinstance(value, tuple) else value)
    return value


# --- shared by the sweep's two backends (local processes and Ray Tune trials) -------------------

# The metrics of a finished run written as TensorBoard scalars (at its last env step) and shown
# in the HParams dashboard: summary.json field -> tag.
FINAL_METRICS = {
    "eval_success_rate": "final/eval_success_rate",
    "goals_success": "final/goals_success",
    "first_success_step": "final/first_success_step",
    "success_rate_last_100": "final/success_rate_last_100",
    "env_steps": "final/env_steps",
}


def write_final_metrics(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """A finished run's FINAL_METRICS as TensorBoard scalars at its last env step, in its own
    event file in the run directory (a metric the run never reached, such as a first success,
    is left out)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir), filename_suffix=".final")
    for key, tag in FINAL_METRICS.items():
        if summary.get(key) is not None:
            writer.add_scalar(tag, float(summary[key]), int(summary["env_steps"]))
    writer.close()


class Storage(Protocol):
    """Reads and writes the files of a sweep directory; paths are relative to it."""

    def read_text(self, path: str) -> str | None:
        """The file's text, None if it cannot be read."""

    def write_text(self, path: str, text: str) -> None:
        """Write the file (a reader never sees half of it)."""

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write the file (a reader never sees half of it)."""


class LocalDirectory:
    """A sweep directory on this machine's disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read_text(self, path: str) -> str | None:
        """The file's text, None if it cannot be read."""
        try:
            return (self.root / path).read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def write_text(self, path: str, text: str) -> None:
        """Write the file atomically."""
        self.write_bytes(path, text.encode())

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write the file atomically (RunError on a full disk)."""
        _atomic_write(self.root / path, data, sync=False)


def run_state(
    config: dict[str, Any],
    progress: Progress,
    parts: dict[str, Any],
    env: Any,
    visits: np.ndarray | None,
) -> dict[str, Any]:
    """A run's checkpoint: config, progress, each part's ``state_dict()`` (``parts``: name ->
    object or None), the env's and torch's random streams and the visit counts."""
    return {
        "config": config,
        "progress": progress.to_dict(),
        **{name: None if part is None else part.state_dict() for name, part in parts.items()},
        "env_rng": env.unwrapped.np_random.bit_generator.state,
        "env_spaces_rng": _space_streams(env),
        "visits": visits,
        "torch_rng": torch.get_rng_state(),
    }


def restore_run_state(
    state: dict[str, Any],
    parts: dict[str, Any],
    env: Any,
    visits: np.ndarray | None,
    where: str,
) -> Progress:
    """Put a ``run_state`` checkpoint back into the parts; returns the progress.

    Raises RunError (naming ``where``) when the checkpoint does not fit them.
    """
    try:
        progress = Progress.from_dict(state["progress"])
        for name, part in parts.items():
            if part is not None:
                part.load_state_dict(state[name])
        # Reset once so the env is initialised, then put its random stream back.
        env.reset(seed=0)
        env.unwrapped.np_random.bit_generator.state = state["env_rng"]
        streams = _space_streams(env)
        for name, stream in state.get("env_spaces_rng", {}).items():
            if name not in streams:
                raise ValueError(f"the env has no seeded space {name!r}")
            getattr(env.unwrapped, name).np_random.bit_generator.state = stream
        if visits is not None:
            visits[:] = state["visits"]
        torch.set_rng_state(state["torch_rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise RunError(f"the checkpoint in {where} does not match this run ({error}).") from None
    return progress


def _space_streams(env: Any) -> dict[str, Any]:
    """The random streams of the env's spaces that have one, by attribute name: an env may
    draw from a space (SB3's BitFlippingEnv samples its start state from ``_obs_space``, which
    ``reset(seed=...)`` seeds), and a resume must draw what the run would have drawn."""
    return {
        name: value.np_random.bit_generator.state
        for name, value in vars(env.unwrapped).items()
        if isinstance(value, gymnasium.spaces.Space)
    }


def _wait_for_a_newer_event_file_name(run_dir: Path) -> None:
    """TensorBoard reads event files in name order, and names start with the time in whole
    seconds: a resumed run must not share the killed run's second, or its file (and the purge
    it starts with) could sort first."""
    names = (path.name.split(".") for path in run_dir.glob("events.out.tfevents.*"))
    stamps = [int(parts[3]) for parts in names if len(parts) > 3 and parts[3].isdigit()]
    if stamps and (wait := max(stamps) + 1 - time.time()) > 0:
        time.sleep(wait)


def _mean(values: Any) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan
