"""Many configs x seeds: local processes by default, a Ray cluster on request.

Every run of a sweep is a normal run directory under the sweep's directory, named from the
settings that vary (no time stamp), so a sweep that is started again skips the runs that already
finished and resumes those that were cut off. At the end the runs' summaries are collected into
``results.csv`` (one row per run) and their episodes into ``episodes.csv`` (one row per episode,
with the run's settings in front; an episode column named like a varying setting, such as
``smart_start``, is renamed ``episode_smart_start``).

    python -m sshr_torch.sweep --out runs/sweep_easy --seeds 10 \\
        --grid her=none,future --grid smart_start=true,false -- --agent tabular --episodes 300
    python -m sshr_torch.sweep --out s3://bucket/sweep_easy ... --backend ray --address head:6379
    python -m sshr_torch.sweep --out runs/my_env --seeds 3 \
        --grid 'env_kwargs={"size": 9},{"size": 13}' -- --env mypkg.envs:MyEnv-v0

Every run builds its env from its config (``build.make_env``: the maze, or any gymnasium id
given by ``--env``), on local processes and on Ray trials alike, so ``env`` and
``env_kwargs`` are sweep axes like any other (a ``--grid`` axis of JSON objects is one JSON
list without its brackets).

With ``--backend ray`` the runs are Ray Tune trials and ``--out`` is Tune's storage path (a local
path, or a URI such as ``s3://...`` on a cluster without a shared disk); a run whose node dies
resumes elsewhere from its last checkpoint (see sshr_torch.cluster). One
``tensorboard --logdir OUT`` lists the runs in its HParams dashboard, with the varying settings
as hyper-parameters and the final metrics (``final/...``) as metrics.

From Python (the experiments use this)::

    configs = grid(TrainConfig(agent="tabular", episodes=300), {"her": ["none", "future"]}, 10)
    table = run_sweep(configs, "runs/sweep_easy", workers=2)
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import dataclasses
import io
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn, get_args, get_origin, get_type_hints

from tqdm import tqdm

from sshr_torch import runlog
from sshr_torch.config import ConfigError, TrainConfig

RESULTS_FILE = "results.csv"
EPISODES_FILE = "episodes.csv"
SUMMARY_COLUMNS = (
    "episodes",
    "env_steps",
    "first_success_step",
    "success_rate_last_100",
    "mean_length_last_100",
    "eval_success_rate",
    "eval_mean_length",
    "goals_success",
    "goals_excess",
    "n_updates",
    "wall_s",
    "sps",
)
# The HParams dashboard's settings of the sweep, at the top of its directory.
HPARAMS_FILE = "events.out.tfevents.sweep_hparams"
# The sweep's runs (name -> settings), as the Ray backend writes it too (cluster.SWEEP_FILE): a
# rerun with another grid is refused, not mixed in.
SWEEP_FILE = "sweep.json"
# Fields that may differ between a run directory's saved config and the sweep's job for it: the
# run length (a longer budget continues the run), where it lives and how much it prints.
_MAY_DIFFER = ("episodes", "total_steps", "run_dir", "resume", "quiet")
# Linux's prctl option: the signal a process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def grid(
    base: TrainConfig, axes: Mapping[str, Sequence[Any]], seeds: int | Iterable[int]
) -> list[TrainConfig]:
    """Every combination of the ``axes`` values applied to ``base``, for every seed.

    Args:
        base: the settings shared by all runs.
        axes: field name -> the values it takes.
        seeds: a number of seeds (0..n-1) or the seeds themselves.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(axes) - names)
    if unknown:
        raise ConfigError(f"unknown sweep axis {', '.join(unknown)}.")
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not len(values):
            raise ConfigError(f"sweep axis {name} needs a non-empty list of values.")
    if "seed" in axes:
        raise ConfigError("seed is not a sweep axis; pass the seeds as `seeds`.")
    if "preset" in axes:
        # A preset fills in the settings a config is built without; the runs are copies of
        # `base`, built with all of them.
        raise ConfigError("preset is not a sweep axis; give it to the base config (after --).")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("a sweep needs at least one seed.")
    configs = []
    for values in itertools.product(*axes.values()):
        for seed in seed_list:
            settings = dict(zip(axes, values, strict=True), seed=seed)
            configs.append(dataclasses.replace(base, **settings).validate())
    return configs


def run_names(configs: Sequence[TrainConfig]) -> list[str]:
    """The run directory name of each config of a sweep (``run_name`` over the settings that
    vary across ``configs``)."""
    varying = _varying_fields(configs)
    return [run_name(config, varying) for config in configs]


def run_name(config: TrainConfig, varying: Iterable[str]) -> str:
    """A run directory name from the settings that vary across the sweep (seed last)."""
    parts = [f"{name}={_label(getattr(config, name))}" for name in varying if name != "seed"]
    parts.append(f"seed={config.seed}")
    return "__".join(parts).replace("/", "-").replace(":", "-")


def run_sweep(
    configs: Sequence[TrainConfig],
    out_dir: str | Path,
    *,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every config (skipping finished ones), then write and return the results table.

    Args:
        configs: the runs; their run_dir is set to ``out_dir / run_name(...)``.
        out_dir: the sweep directory.
        workers: parallel local processes (default: the CPU count).
        backend: 'local' (processes on this machine) or 'ray'.
        address: the Ray cluster to join; None starts a local Ray.
        progress: show a progress bar over runs.

    Returns:
        One dict per run: the settings that vary, ``run`` (the run directory's name), then the
        summary fields; a failed run has an ``error`` message and empty summary fields.

    Raises:
        ConfigError: a bad backend or worker count, two identical runs, or a run directory
            already holding a run with other settings.

    With backend 'ray', ``out_dir`` is Ray Tune's storage path: a local path, or any URI that
    pyarrow's filesystems accept (for a cluster whose nodes share no disk); every run's
    directory and the tables end up there (see sshr_torch.cluster).
    """
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend must be local or ray, got {backend!r}.")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers}.")
    if not configs:
        raise ConfigError("a sweep needs at least one config.")
    varying = _varying_fields(configs)
    names = run_names(configs)
    if len(set(names)) != len(names):
        raise ConfigError("two runs of the sweep have the same settings and seed.")
    if backend == "ray":
        try:
            from sshr_torch import cluster
        except ImportError:
            raise ConfigError('--backend ray needs Ray Tune: pip install -e ".[ray]".') from None
        storage: runlog.Storage = cluster.ArrowStorage(str(out_dir))
        storage.check_writable()
        cluster.check_address(address)
        jobs = [
            dataclasses.replace(config, run_dir=storage.child(name), quiet=True)
            for config, name in zip(configs, names, strict=True)
        ]
        errors = cluster.run_trials(
            jobs, storage, workers=workers, address=address, progress=progress
        )
        return collect(jobs, out_dir, varying, errors, storage=storage)
    if "://" in str(out_dir):
        raise ConfigError(f"--out {out_dir} is a URI: storage URIs need --backend ray.")
    out_dir = Path(out_dir).resolve()
    _check_not_a_run(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # One driver per sweep directory: its lock also refuses a directory a live run holds.
    lock = runlog.lock_run_dir(out_dir, other="--out")
    try:
        _check_same_sweep(out_dir, names)
        jobs = [
            dataclasses.replace(config, run_dir=str(out_dir / name), quiet=True)
            for config, name in zip(configs, names, strict=True)
        ]
        for job in jobs:
            _check_same_settings(job)
        runlog.write_json(
            out_dir / SWEEP_FILE,
            {name: job.to_dict() for name, job in zip(names, jobs, strict=True)},
        )
        todo = [job for job in jobs if not _finished(job)]
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="run", disable=not progress)
        errors: dict[str, str] = {}
        try:
            for run_dir, error in _run_local(todo, workers):
                if error:
                    errors[run_dir] = error
                bar.update(1)
                bar.set_postfix(failed=len(errors), refresh=False)
        finally:
            bar.close()
        return collect(jobs, out_dir, varying, errors)
    finally:
        lock.close()


def _check_not_a_run(out_dir: Path) -> None:
    """ConfigError when ``out_dir`` holds a run (its tables would overwrite the run's files)."""
    for name in (runlog.CONFIG_FILE, runlog.CHECKPOINT_FILE):
        if (out_dir / name).exists() and not (out_dir / SWEEP_FILE).exists():
            raise ConfigError(
                f"--out {out_dir} holds a run ({name}), not a sweep; use another --out."
            )


def _check_same_sweep(out_dir: Path, names: Sequence[str]) -> None:
    """ConfigError when ``out_dir`` holds another sweep: other runs than ``names`` (a different
    grid or seeds), whose tables this sweep's would replace."""
    path = out_dir / SWEEP_FILE
    if not path.exists():
        return
    saved = runlog.read_json(path)
    if not isinstance(saved, dict) or set(saved) != set(names):
        count = len(saved) if isinstance(saved, dict) else "unknown"
        raise ConfigError(
            f"--out {out_dir} holds another sweep ({count} runs, not this grid's {len(names)}: "
            "other --grid values or --seeds); use another --out."
        )


def collect(
    configs: Sequence[TrainConfig],
    out_dir: Path,
    varying: Sequence[str],
    errors: Mapping[str, str] | None = None,
    storage: runlog.Storage | None = None,
) -> list[dict[str, Any]]:
    """Gather the runs' summary.json and episodes.csv into results.csv and episodes.csv.

    Also writes the HParams dashboard's settings (HPARAMS_FILE): the varying settings as
    hyper-parameters, runlog.FINAL_METRICS as metrics.

    Args:
        configs: the runs, each with its ``run_dir`` set to ``out_dir/<run name>``.
        out_dir: where the runs are and results.csv and episodes.csv are written.
        varying: the settings that tell the runs apart (the tables' first columns).
        errors: run_dir -> error message of the runs that failed.
        storage: reads and writes ``out_dir``'s files (default: the local directory).

    Returns:
        The rows of results.csv: the varying settings, ``run``, SUMMARY_COLUMNS and ``error``
        (empty for a run that finished; a run without summary.json counts as failed).
    """
    errors = errors or {}
    storage = storage or runlog.LocalDirectory(Path(out_dir))
    rows, episode_rows = [], []
    columns = [*varying, "run", *SUMMARY_COLUMNS, "error"]
    for config in configs:
        if config.run_dir is None:
            raise ConfigError("collect() needs configs with run_dir set.")
        run = PurePosixPath(config.run_dir).name
        prefix = {name: _label(getattr(config, name)) for name in varying}
        row: dict[str, Any] = {**prefix, "run": run}
        summary = _parse_json(storage.read_text(f"{run}/{runlog.SUMMARY_FILE}"))
        if config.run_dir in errors or summary is None:
            row.update(dict.fromkeys(SUMMARY_COLUMNS))
            row["error"] = errors.get(config.run_dir, "no summary.json")
        else:
            row.update({key: summary.get(key) for key in SUMMARY_COLUMNS})
            row["error"] = ""
            text = storage.read_text(f"{run}/{runlog.EPISODES_FILE}") or ""
            episode_rows.extend(
                {**prefix, **{_episode_column(k, varying): v for k, v in episode.items()}}
                for episode in csv.DictReader(io.StringIO(text, newline=""))
            )
        rows.append(row)
    storage.write_text(RESULTS_FILE, _csv_text(rows, columns))
    episode_columns = [*varying, *(_episode_column(k, varying) for k in runlog.EPISODE_COLUMNS)]
    storage.write_text(EPISODES_FILE, _csv_text(episode_rows, episode_columns))
    storage.write_bytes(HPARAMS_FILE, _hparams_config(configs, varying))
    return rows


def _hparams_config(configs: Sequence[TrainConfig], varying: Sequence[str]) -> bytes:
    """An event file with the HParams dashboard's experiment: the varying settings (with the
    values they take) as hyper-parameters, runlog.FINAL_METRICS as metrics."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    values = {name: [runlog.hparam_value(getattr(c, name)) for c in configs] for name in varying}
    domains = {
        name: sorted(set(column), key=str)
        for name, column in values.items()
        if all(isinstance(v, (str, bool)) for v in column) or name == "seed"
    }
    first = {name: column[0] for name, column in values.items()}
    experiment, _, _ = hparams(first, dict.fromkeys(runlog.FINAL_METRICS.values(), 0.0), domains)
    with tempfile.TemporaryDirectory() as tmp:
        writer = SummaryWriter(tmp)
        writer.file_writer.add_summary(experiment)
        writer.close()
        (path,) = Path(tmp).glob("events.out.tfevents.*")
        return path.read_bytes()


def _episode_column(name: str, varying: Sequence[str]) -> str:
    """An episodes.csv column's name in the sweep's table: ``episode_smart_start`` (whether
    this episode began with a Smart Start phase) when a setting of the same name varies."""
    return f"episode_{name}" if name in varying else name


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / runlog.SUMMARY_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _parse_json(text: str | None) -> dict[str, Any] | None:
    try:
        return None if text is None else json.loads(text)
    except json.JSONDecodeError:
        return None


def _finished(job: TrainConfig) -> bool:
    """Whether the job's run spent its whole budget or met its ``stop_success`` rule.

    The trainer rewrites summary.json at every checkpoint, so a summary alone does not mean the
    run finished: a killed run leaves one too. The budget decides.
    """
    summary = _read_summary(Path(job.run_dir))
    if summary is None or summary.get("interrupted", False):
        return False
    if job.stop_success is not None and summary.get("solved_step") is not None:
        return True  # it met its stop rule
    max_episodes, max_steps = job.run_length
    return (max_episodes is not None and summary.get("episodes", 0) >= max_episodes) or (
        max_steps is not None and summary.get("env_steps", 0) >= max_steps
    )


def _check_same_settings(job: TrainConfig) -> None:
    """A run directory that already holds a run must hold this job's run (budget aside)."""
    config_path = Path(job.run_dir) / runlog.CONFIG_FILE
    if not config_path.exists():
        return
    try:
        saved = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # unreadable: the run is started again from scratch
    wanted = job.to_dict()
    differ = sorted(
        name
        for name, value in wanted.items()
        if name not in _MAY_DIFFER and saved.get(name, value) != value
    )
    if differ:
        raise ConfigError(
            f"{job.run_dir} holds a run with other settings ({', '.join(differ)}); "
            "use another --out."
        )


def _train_one(config_dict: dict[str, Any]) -> tuple[str, str | None]:
    """Run (or resume) one config; returns (run_dir, error or None). Runs in a worker."""
    from sshr_torch.trainer import resume_config, train

    config = TrainConfig.from_dict(config_dict)
    run_dir = Path(config.run_dir)
    try:
        if (run_dir / runlog.CHECKPOINT_FILE).exists():
            config = resume_config(
                run_dir, episodes=config.episodes, total_steps=config.total_steps, quiet=True
            )
        elif (run_dir / runlog.CONFIG_FILE).exists():
            # Cut off before its first checkpoint: nothing to resume from; start it afresh so
            # that it plays the same episodes as an uninterrupted run.
            shutil.rmtree(run_dir)
        result = train(config)
        runlog.write_final_metrics(result.run_dir, result.summary)
    except Exception as error:  # one failed run must not stop the sweep; it is reported
        return config.run_dir, f"{type(error).__name__}: {' '.join(str(error).split())}"
    return config.run_dir, None


def _run_local(
    jobs: Sequence[TrainConfig], workers: int | None
) -> Iterable[tuple[str, str | None]]:
    if not jobs:
        return
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers == 1:
        for job in jobs:
            yield _train_one(job.to_dict())
        return
    # 'spawn' gives each worker a clean interpreter: no torch threads inherited across fork.
    with ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_end_with_driver,
        initargs=(os.getpid(),),
    ) as pool:
        futures = {pool.submit(_train_one, job.to_dict()): job.run_dir for job in jobs}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # a worker that died (killed, out of memory)
                yield futures[future], f"{type(error).__name__}: {error}"


def _end_with_driver(driver: int) -> None:
    """A worker's initializer: the worker ends when the sweep's driver process ``driver``
    dies, however it dies (a kill -9 included), so that no worker trains on, takes queued
    runs, or holds a run's lock that a rerun of the sweep needs.

    On Linux the kernel kills the worker when its parent dies (prctl PR_SET_PDEATHSIG); a
    thread that checks the parent's process id twice a second does it everywhere else.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the thread below still ends the worker
    if os.getppid() != driver:  # the driver died before the prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_driver, args=(driver,), daemon=True).start()


def _watch_driver(driver: int) -> None:
    while os.getppid() == driver:
        time.sleep(0.5)
    os._exit(1)


def _varying_fields(configs: Sequence[TrainConfig]) -> list[str]:
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("run_dir",)]
    varying = [name for name in fields if len({repr(getattr(c, name)) for c in configs}) > 1]
    return [name for name in varying if name != "seed"] + ["seed"]


def _label(value: Any) -> Any:
    if isinstance(value, tuple):
        return "-".join(map(str, value))
    if isinstance(value, dict):  # env_kwargs: k-v pairs, safe in a directory name
        text = "_".join(f"{key}-{value[key]}" for key in sorted(value)) or "none"
        return "".join(char if char.isalnum() or char in "._=-" else "-" for char in text)
    return value


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --- command line ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help).\n")


def _parse_axis(text: str, types: Mapping[str, Callable[[str], Any]]) -> tuple[str, list[Any]]:
    name, _, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not values or name not in types or name in ("seed", "run_dir", "resume"):
        raise ConfigError(f"--grid {text!r} must be FIELD=V1,V2,... with a TrainConfig field.")
    try:
        if types[name] is _json_objects:  # JSON objects hold commas: parse them as one list
            return name, _json_objects(values)
        return name, [types[name](value.strip()) for value in values.split(",")]
    except ValueError:
        raise ConfigError(f"--grid {text!r}: a value is not a valid {name}.") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sshr_torch.sweep``: flags after ``--`` are train flags shared by all runs."""
    from sshr_torch.train import build_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    shared = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = _Parser(prog="python -m sshr_torch.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        required=True,
        help="sweep directory (runs + results.csv); with --backend ray, Ray Tune's storage path: "
        "a local path or a URI such as s3://bucket/sweep",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per config")
    parser.add_argument(
        "--grid", action="append", default=[], help="FIELD=V1,V2 (repeat for more axes)"
    )
    parser.add_argument("--workers", type=int, default=None, help="local processes (CPU count)")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join, HEAD:6379 (default: a local Ray)"
    )
    args = parser.parse_args(own)
    try:
        base_args = vars(build_parser().parse_args(shared))
        if {"resume", "run_dir"} & set(base_args):
            raise ConfigError("--resume and --run-dir cannot be used in a sweep (it names runs).")
        if "hidden_sizes" in base_args:
            base_args["hidden_sizes"] = tuple(base_args["hidden_sizes"])
        base = TrainConfig(**base_args).validate()
        types = {name: _caster(hint) for name, hint in get_type_hints(TrainConfig).items()}
        axes: dict[str, list[Any]] = {}
        for text in args.grid:  # a repeated axis takes the values of each --grid
            name, values = _parse_axis(text, types)
            known = axes.setdefault(name, [])
            known.extend(value for value in values if value not in known)
        if args.seeds <= 0:
            raise ConfigError(f"--seeds must be a positive integer, got {args.seeds}.")
        configs = grid(base, axes, args.seeds)
        rows = run_sweep(
            configs, args.out, workers=args.workers, backend=args.backend, address=args.address
        )
    except (ValueError, OSError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    failed = [row for row in rows if row["error"]]
    table = f"{args.out.rstrip('/')}/{RESULTS_FILE}"
    print(f"{len(rows) - len(failed)}/{len(rows)} runs done; table: {table}")
    for row in failed:
        print(f"failed: {row['run']}: {row['error']}", file=sys.stderr)
    return 1 if failed else 0


def _caster(hint: Any) -> Callable[[str], Any]:
    """The parser of one --grid value for a field of type ``hint`` ('none' is None if allowed)."""
    args = get_args(hint)
    optional = type(None) in args
    if optional:
        (hint,) = [arg for arg in args if arg is not type(None)]
    if get_origin(hint) is dict:
        return _json_objects
    if get_origin(hint) is Literal:
        parse: Callable[[str], Any] = str  # 'none' is a value of --her, not None
    elif get_origin(hint) is tuple:
        parse = lambda text: tuple(int(part) for part in text.split("-"))  # noqa: E731
    elif hint is bool:
        parse = _boolean
    else:
        parse = hint  # int, float or str
    if not optional:
        return parse
    return lambda text: None if text.lower() == "none" else parse(text)


def _json_objects(text: str) -> list[dict[str, Any]]:
    """The values of a --grid axis of JSON objects (``env_kwargs``): '{"size": 5},{"size": 7}'."""
    values = json.loads(f"[{text}]")  # a JSONDecodeError is a ValueError
    if not all(isinstance(value, dict) for value in values):
        raise ValueError("not JSON objects")
    return values


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{text!r} is not a boolean (true/false).")


if __name__ == "__main__":
    sys.exit(main())
