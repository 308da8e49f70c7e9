"""What a run leaves on disk: its directory, episodes.csv, dashboards, JSON and checkpoints.

A run directory holds config.json, episodes.csv (one row per finished episode, appended and
flushed as the episode ends), summary.json, TensorBoard event files and checkpoint.pt.
``RunLogger`` writes episodes.csv and the dashboards; ``run_state`` / ``restore_run_state``
turn a run's parts into a checkpoint and back.

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
import math
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CONFIG_FILE = "config.json"
EPISODES_FILE = "episodes.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 2  # 2: the DQN as an nn.Module with torch.optim state (was 1)
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
    if not isinstance(state, dict) or "version" not in state:
        raise RunError(f"{path} is not a sshr_torch checkpoint.")
    if state["version"] != CHECKPOINT_VERSION:
        raise RunError(
            f"{path} is a sshr_torch checkpoint of version {state['version']}; this version of "
            f"sshr_torch reads version {CHECKPOINT_VERSION} only."
        )
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

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint."""
        values = dict(self.__dict__)
        values["successes"], values["lengths"] = list(self.successes), list(self.lengths)
        return values

    @staticmethod
    def from_dict(values: dict[str, Any]) -> Progress:
        """Inverse of to_dict; KeyError / TypeError on a malformed dict."""
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

        values = {
            key: (str(value) if value is None or isinstance(value, list) else value)
            for key, value in config.items()
        }
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
        add("rollout/success_rate", _mean(progress.successes), step)
        add("rollout/episodes", progress.episode, step)
        add("train/epsilon", rows[-1]["epsilon"], step)
        add("train/n_updates", progress.n_updates, step)
        for key in ("td_loss", "q_mean", "grad_norm"):
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

    def log_maze_images(
        self,
        maze: Any,
        visits: np.ndarray,
        q_values: np.ndarray,
        step: int,
        target: int | None = None,
        path: Sequence[int] = (),
    ) -> None:
        """``maze/visits`` (heatmap, S_ss and the planned walk) and ``maze/policy`` images."""
        from sshr_torch import dashboards  # matplotlib loads only once images are drawn

        heatmap = dashboards.visit_heatmap(maze, visits, target=target, path=list(path))
        self.writer.add_image("maze/visits", heatmap, step, dataformats="HWC")
        policy = dashboards.policy_map(maze, q_values)
        self.writer.add_image("maze/policy", policy, step, dataformats="HWC")

    def flush(self) -> None:
        """Everything written so far is on disk (before a checkpoint)."""
        self.writer.flush()

    def close(self) -> None:
        """Close the event file and episodes.csv."""
        self.writer.close()
        self.episodes.close()


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
        if visits is not None:
            visits[:] = state["visits"]
        torch.set_rng_state(state["torch_rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise RunError(f"the checkpoint in {where} does not match this run ({error}).") from None
    return progress


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
