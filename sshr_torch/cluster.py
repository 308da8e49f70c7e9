"""Sweeps on a Ray cluster through Ray Tune: results in storage, runs that survive lost nodes.

Each run of a sweep is one Tune trial. No disk shared by the nodes is assumed: the sweep's
``--out`` is Tune's storage (``RunConfig(storage_path=...)``), a local path on one machine or,
on a cluster, any URI that pyarrow's filesystems accept (``s3://bucket/sweeps/easy``,
``gs://...``, ``hdfs://...``; a path on NFS works as a plain path). A trial trains on its
node's local disk. When the trainer has written a checkpoint (at most every REPORT_EVERY_S),
the trial hands a copy of the run directory to Tune as a checkpoint
(``tune.report(..., checkpoint=...)``), which Tune copies to storage, keeping the last two.
When a node dies, Tune runs its trials again elsewhere (``FailureConfig``); a trial that gets a
checkpoint back (``tune.get_checkpoint()``) unpacks it and resumes the run, so its episodes.csv
holds every episode exactly once. When a run has finished, its directory goes into the trial's
working directory, which Tune uploads (trial artifacts), so storage ends up with the normal run
directory of every run::

    OUT/                          results.csv, episodes.csv, sweep.json, Tune's experiment state
    OUT/<run name>/               config.json, episodes.csv, summary.json, events, checkpoint.pt
    OUT/<run name>/checkpoint_N/  the run directory at a checkpoint (what a retry resumes from)

A sweep stopped midway (Ctrl-C, a killed driver) is started again by the same command: Tune
restores the experiment from storage (``Tuner.restore``), keeps the finished trials and resumes
the others from their checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ray import tune

from sshr_torch import runlog
from sshr_torch.config import ConfigError, TrainConfig

# The list of runs of the sweep in storage: a second start must ask for the same runs.
SWEEP_FILE = "sweep.json"
# How many times Tune starts a trial again after its worker or node died.
MAX_FAILURES = 3
# Seconds between a trial's looks for a checkpoint its trainer has just written.
POLL_S = 0.2
# A trial hands Tune a new checkpoint at most this often (seconds): each one is a copy of the
# run directory to storage and an update of Tune's experiment state there. A run whose node
# dies loses at most this much training, plus the trainer's --checkpoint-interval. It must stay
# well above the moment Tune takes between pruning old checkpoints and saving the experiment
# state that names the newest (back-to-back checkpoints let a killed driver's restore ask for
# a pruned one).
REPORT_EVERY_S = 10.0
# Seconds to wait for a TCP answer from --address before giving up.
CONNECT_TIMEOUT_S = 5.0


class ArrowStorage:
    """Files under a sweep's storage path (a local path or a URI), through pyarrow.fs: a
    ``runlog.Storage``."""

    def __init__(self, out: str) -> None:
        import pyarrow.fs

        self.uri = out if "://" in out else str(Path(out).resolve())
        try:
            self.fs, self.root = pyarrow.fs.FileSystem.from_uri(self.uri)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for bad URIs
            raise ConfigError(f"--out {out} is not a usable storage path ({error}).") from None

    def child(self, name: str) -> str:
        """The URI (or path) of ``name`` inside the storage path."""
        return f"{self.uri.rstrip('/')}/{name}"

    def check_writable(self) -> None:
        """ConfigError unless a file can be written (and removed) under the storage path."""
        probe = f"{self.root}/.write_test"
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(probe) as stream:
                stream.write(b"")
            self.fs.delete_file(probe)
        except Exception as error:  # OSError, or pyarrow's own errors for remote stores
            message = " ".join(str(getattr(error, "strerror", None) or error).split())
            raise ConfigError(f"cannot write --out {self.uri}: {message}.") from None

    def read_text(self, path: str) -> str | None:
        """The text of ``path`` (relative to the storage path), None if it cannot be read."""
        try:
            with self.fs.open_input_stream(f"{self.root}/{path}") as stream:
                return stream.read().decode()
        except (OSError, UnicodeDecodeError):
            return None

    def write_text(self, path: str, text: str) -> None:
        """Write ``path`` (relative to the storage path)."""
        self.write_bytes(path, text.encode())

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``path`` (relative to the storage path); object stores write it whole."""
        with self.fs.open_output_stream(f"{self.root}/{path}") as stream:
            stream.write(data)

    def exists(self, path: str) -> bool:
        """Whether ``path`` (relative to the storage path) exists."""
        import pyarrow.fs

        info = self.fs.get_file_info(f"{self.root}/{path}")
        return info.type != pyarrow.fs.FileType.NotFound


def check_address(address: str | None) -> None:
    """ConfigError unless something answers at the Ray cluster address (host:port)."""
    if address is None or address == "auto":
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address} must be HOST:PORT or ray://HOST:PORT.")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = " ".join(str(error.strerror or error).split())
        raise ConfigError(
            f"cannot reach the Ray cluster at --address {address}: {reason}."
        ) from None


def run_trials(
    jobs: Sequence[TrainConfig],
    storage: ArrowStorage,
    *,
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Run the jobs as Tune trials with ``storage`` as Tune's storage path.

    Args:
        jobs: the runs; ``PurePosixPath(job.run_dir).name`` names each run in storage.
        storage: the sweep's storage path (checked writable before Ray is started).
        workers: CPUs of the local Ray started when ``address`` is None (default: all).
        address: the Ray cluster to join; None starts a local Ray.
        progress: show a progress bar over runs.

    Returns:
        run_dir -> a one-line error message, for the runs that failed for good.
    """
    import ray
    from tqdm import tqdm

    names = {PurePosixPath(job.run_dir).name: job for job in jobs}
    wanted = {name: job.to_dict() for name, job in names.items()}
    _check_same_sweep(storage, wanted)
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"address": address, "include_dashboard": False}
        if address is None and workers:
            options["num_cpus"] = workers
        try:
            ray.init(**options, log_to_driver=False, logging_level="ERROR")
        except Exception as error:  # ConnectionError, a version mismatch (RuntimeError), ...
            lines = [line for line in str(error).splitlines() if line.strip()] or [repr(error)]
            raise ConfigError(
                f"cannot join the Ray cluster at --address {address}: {lines[0].strip()}"
            ) from None
    storage.write_text(SWEEP_FILE, json.dumps(wanted, indent=1) + "\n")
    path, parent, experiment = storage.uri.rstrip("/"), *_split(storage.uri)
    trainable = tune.with_resources(_run_trial, {"cpu": 1})
    # A run's files reach the top of its directory in storage only when it has finished.
    done = sum(storage.exists(f"{name}/{runlog.SUMMARY_FILE}") for name in names)
    bar = tqdm(total=len(jobs), initial=done, unit="run", disable=not progress)
    global _BAR
    _BAR = bar
    try:
        with _without_tune_loggers():
            if tune.Tuner.can_restore(path):
                tuner = tune.Tuner.restore(
                    path, trainable, resume_unfinished=True, resume_errored=True
                )
            else:
                tuner = tune.Tuner(
                    trainable,
                    param_space={
                        "run": tune.grid_search(
                            [{"name": n, "config": c} for n, c in wanted.items()]
                        ),
                        "report_every_s": REPORT_EVERY_S,
                    },
                    tune_config=tune.TuneConfig(
                        trial_name_creator=_trial_name,
                        trial_dirname_creator=_trial_name,
                        # A worker process runs trial after trial: imports and compiled
                        # kernels are paid once per process, not once per run.
                        reuse_actors=True,
                    ),
                    run_config=tune.RunConfig(
                        name=experiment,
                        storage_path=parent,
                        failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                        # Two: Tune saves its experiment state (which names each trial's
                        # latest checkpoint) every num_to_keep trial checkpoints, so the one
                        # a restore asks for is still there however the driver died.
                        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                        sync_config=tune.SyncConfig(
                            sync_artifacts=True, sync_artifacts_on_checkpoint=False
                        ),
                        callbacks=[_ProgressCallback()],
                        verbose=0,
                    ),
                )
            results = tuner.fit()
    finally:
        _BAR = None
        bar.close()
        if started_here:
            ray.shutdown()
    errors = {}
    for result in results:
        job = names[result.config["run"]["name"]]
        if result.error is not None:
            lines = [line for line in str(result.error).splitlines() if line.strip()]
            errors[job.run_dir] = " ".join((lines or [type(result.error).__name__])[-1].split())
        elif not storage.exists(f"{PurePosixPath(job.run_dir).name}/{runlog.SUMMARY_FILE}"):
            # Tune stops the sweep on Ctrl-C, keeping what it has in storage.
            errors[job.run_dir] = "interrupted; the same command resumes it"
    return errors


def _split(uri: str) -> tuple[str, str]:
    """(parent, name) of a storage path: Tune's storage_path and experiment name."""
    scheme, sep, rest = uri.rstrip("/").rpartition("://")
    parent, _, name = rest.rpartition("/")
    return f"{scheme}{sep}{parent or '/'}", name


def _check_same_sweep(storage: ArrowStorage, wanted: Mapping[str, Any]) -> None:
    """A storage path holding a sweep must hold this one (same runs, same settings)."""
    text = storage.read_text(SWEEP_FILE)
    if text is None:
        return
    try:
        saved = json.loads(text)
    except json.JSONDecodeError:
        return
    if saved == wanted:
        return
    if set(saved) != set(wanted):
        raise ConfigError(f"{storage.uri} holds a sweep with other runs; use another --out.")
    differ = sorted(
        {
            key
            for name in wanted
            for key in wanted[name]
            if wanted[name][key] != saved[name].get(key)
        }
        - {"run_dir"}
    )
    raise ConfigError(
        f"{storage.uri} holds a sweep with other settings ({', '.join(differ)}); use another --out."
    )


def _trial_name(trial: Any) -> str:
    return trial.config["run"]["name"]


# The progress bar of the sweep now running in this driver. Tune pickles its callbacks into
# the experiment state (Tuner.restore brings them back), so the callback holds no bar itself.
_BAR: Any = None


class _ProgressCallback(tune.Callback):
    """Advances the driver's progress bar as trials end."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _BAR is not None:
            _BAR.update(1)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _BAR is not None:
            _BAR.update(1)
            _BAR.set_postfix(failed=sum(t.status == "ERROR" for t in trials), refresh=False)


@contextlib.contextmanager
def _without_tune_loggers() -> Iterator[None]:
    """Tune's default loggers write their own TensorBoard events (and hparams) into each trial
    directory, which is the run directory here: switched off so TensorBoard shows ours. Tune's
    console tables too (the legacy reporter at verbose=0 prints nothing): the sweep has its bar.
    """
    settings = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
    before = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


# --- on a cluster node ----------------------------------------------------------------------

# TensorBoard reads every file whose name holds "tfevents", checkpoint directories included: in
# a checkpoint the run's event files carry this name instead, so each run shows up once.
_EVENTS, _PACKED_EVENTS = "tfevents", "packed-events"
# The key of a Tune checkpoint's metadata that says the run had finished.
_FINISHED = "sshr_run_finished"


def _run_trial(params: dict[str, Any]) -> None:
    """One run as a Tune trial, on whichever node Tune placed it.

    The run trains in a node-local directory beside the trial's working directory. The trainer
    runs in a thread of its own; this thread watches for the checkpoints it writes and reports
    each one to Tune, with a copy of the run directory as the Tune checkpoint. At the end the
    finished run directory goes into the trial's working directory, which Tune uploads to
    storage as the trial's artifacts once the trial returns (so storage never holds a file the
    trainer was still writing).
    """
    from sshr_torch.trainer import resume_config, train

    job = TrainConfig.from_dict(params["run"]["config"])
    if ArrowStorage(job.run_dir).exists(runlog.SUMMARY_FILE):
        # The run's directory is in storage, so it had finished when the sweep was stopped,
        # before Tune's saved state (from which it was restored) saw it end.
        return
    # Tune runs a trial in its node-local working directory, .../working_dirs/<trial name>.
    trial_dir = Path.cwd()
    if trial_dir.parent.name != "working_dirs":
        raise RuntimeError(
            f"a trial runs in {trial_dir}, not in Tune's working directory for it; "
            "leave RAY_CHDIR_TO_TRIAL_DIR unset."
        )
    run_dir = trial_dir.parent / f".{trial_dir.name}.live"
    # What an earlier attempt on this node left behind goes.
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    for path in trial_dir.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(run_dir))
        for path in run_dir.glob(f"*{_PACKED_EVENTS}*"):
            path.rename(path.with_name(path.name.replace(_PACKED_EVENTS, _EVENTS)))
        if checkpoint.get_metadata().get(_FINISHED):
            # It had finished, but the driver stopped before Tune uploaded the run directory:
            # the copy in its final checkpoint goes to storage instead.
            _copy_run_files(run_dir, trial_dir)
            shutil.rmtree(run_dir)
            return
        config = resume_config(
            run_dir, episodes=job.episodes, total_steps=job.total_steps, quiet=True
        )
    else:
        config = dataclasses.replace(job, run_dir=str(run_dir))
    outcome: dict[str, Any] = {}

    def train_run() -> None:
        try:
            outcome["summary"] = train(config).summary
        except BaseException as error:  # re-raised in the trial's thread below
            outcome["error"] = error

    trainer = threading.Thread(target=train_run, name="sshr-train", daemon=True)
    reported, reported_at = _stamp(run_dir), time.monotonic()
    trainer.start()
    while trainer.is_alive():
        trainer.join(POLL_S)
        stamp = _stamp(run_dir)
        due = time.monotonic() - reported_at >= params["report_every_s"]
        if trainer.is_alive() and due and stamp is not None and stamp != reported:
            _report(run_dir)
            reported, reported_at = stamp, time.monotonic()
    if "error" in outcome:
        raise outcome["error"]
    runlog.write_final_metrics(run_dir, outcome["summary"])
    _copy_run_files(run_dir, trial_dir)
    shutil.rmtree(run_dir)
    _report(trial_dir, finished=True)


def _stamp(run_dir: Path) -> int | None:
    """When the run's checkpoint was last replaced (None: no checkpoint yet)."""
    try:
        return (run_dir / runlog.CHECKPOINT_FILE).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _copy_run_files(run_dir: Path, destination: Path, pack_events: bool = False) -> None:
    """Copy the run directory's files, checkpoint first, leaving out the runlog's temporary
    files (their names start with '.').

    Checkpoint first: the trainer appends an episode's row before the checkpoint that counts
    it, so the copied episodes.csv holds at least the checkpoint's episodes (a resume cuts it
    back to them, and purge_step hides TensorBoard events written after the checkpoint).
    """
    shutil.copy2(run_dir / runlog.CHECKPOINT_FILE, destination / runlog.CHECKPOINT_FILE)
    for path in run_dir.iterdir():
        if path.name.startswith(".") or path.name == runlog.CHECKPOINT_FILE or not path.is_file():
            continue
        name = path.name.replace(_EVENTS, _PACKED_EVENTS) if pack_events else path.name
        with contextlib.suppress(FileNotFoundError):  # replaced while we looked
            shutil.copy2(path, destination / name)


def _report(run_dir: Path, finished: bool = False) -> None:
    """Report the run's summary to Tune, with a copy of the run directory as its checkpoint.

    The checkpoint of a finished run says so in its metadata. (Its summary.json alone cannot:
    the trainer writes one at its last checkpoint too, before the final evaluation.)
    """
    with tempfile.TemporaryDirectory(prefix="sshr-checkpoint-") as tmp:
        _copy_run_files(run_dir, Path(tmp), pack_events=True)
        try:
            summary = json.loads((Path(tmp) / runlog.SUMMARY_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            summary = {}
        metrics = {
            key: value
            for key, value in summary.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        checkpoint = tune.Checkpoint.from_directory(tmp)
        checkpoint.set_metadata({_FINISHED: finished})
        tune.report(metrics, checkpoint=checkpoint)
