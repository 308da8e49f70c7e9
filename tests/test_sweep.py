"""The sweep runner: grid(), run_sweep() on local processes and on Ray, resuming, the CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from sshr_torch import runlog
from sshr_torch.config import ConfigError, TrainConfig
from sshr_torch.runlog import FINAL_METRICS
from sshr_torch.sweep import HPARAMS_FILE, grid, main, run_name, run_sweep

# A tiny tabular run: a 4x3 maze, 30-step episodes, a few episodes (well under a second).
TINY = TrainConfig(
    agent="tabular",
    maze="keulen_easy_unscaled",
    max_episode_steps=30,
    episodes=4,
    eval_interval=0,
    eval_episodes=1,
    image_interval=0,
    checkpoint_interval=2,
)
TRAIN_FLAGS = ["--agent", "tabular", "--maze", "keulen_easy_unscaled"]
TRAIN_FLAGS += ["--max-episode-steps", "30", "--episodes", "3", "--eval-interval", "0"]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _without_wall_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def test_grid_every_combination_for_every_seed() -> None:
    configs = grid(TINY, {"her": ["none", "future"], "smart_start": [True, False]}, 3)
    assert len(configs) == 12
    combos = {(c.her, c.smart_start, c.seed) for c in configs}
    assert combos == {
        (her, ss, seed) for her in ("none", "future") for ss in (True, False) for seed in range(3)
    }
    # Settings that are not axes stay the base's.
    assert all(c.maze == "keulen_easy_unscaled" and c.episodes == 4 for c in configs)
    assert [c.seed for c in grid(TINY, {}, [7, 11])] == [7, 11]


def test_grid_rejects_bad_axes() -> None:
    with pytest.raises(ConfigError, match="unknown sweep axis"):
        grid(TINY, {"not_a_field": [1]}, 1)
    with pytest.raises(ConfigError, match="non-empty list"):
        grid(TINY, {"her": "future"}, 1)
    with pytest.raises(ConfigError, match="--eta"):
        grid(TINY, {"eta": [2.0]}, 1)  # every config is validated


def test_run_name_from_the_varying_settings() -> None:
    config = dataclasses.replace(TINY, her="future", maze="generated:9x9:seed=1", seed=4)
    assert (
        run_name(config, ["her", "maze", "seed"]) == "her=future__maze=generated-9x9-seed=1__seed=4"
    )


def test_run_sweep_writes_results_and_episodes(tmp_path: Path) -> None:
    configs = grid(TINY, {"her": ["none", "future"]}, 2)
    rows = run_sweep(configs, tmp_path, workers=1, progress=False)
    assert [(row["her"], row["seed"]) for row in rows] == [
        ("none", 0),
        ("none", 1),
        ("future", 0),
        ("future", 1),
    ]
    assert all(row["error"] == "" and row["episodes"] == 4 for row in rows)
    results = _read_csv(tmp_path / "results.csv")
    assert list(results[0])[:3] == ["her", "seed", "run"]
    assert {"first_success_step", "env_steps", "eval_success_rate", "sps"} <= set(results[0])
    assert [int(row["env_steps"]) for row in results] == [row["env_steps"] for row in rows]
    episodes = _read_csv(tmp_path / "episodes.csv")
    assert len(episodes) == 4 * 4
    assert list(episodes[0])[:4] == ["her", "seed", "episode", "env_steps"]
    # Each run's episodes are its own episodes.csv with the settings in front.
    run_dir = tmp_path / rows[3]["run"]
    own = _read_csv(run_dir / runlog.EPISODES_FILE)
    collected = [
        {k: v for k, v in row.items() if k not in ("her", "seed")}
        for row in episodes
        if row["her"] == "future" and row["seed"] == "1"
    ]
    assert collected == own
    # The budget is per run: env steps add up from the run's episode lengths.
    assert int(own[-1]["env_steps"]) == sum(int(row["length"]) for row in own)


def test_run_sweep_same_result_with_one_or_two_workers(tmp_path: Path) -> None:
    configs = grid(TINY, {"smart_start": [True, False]}, 2)
    one = run_sweep(configs, tmp_path / "one", workers=1, progress=False)
    two = run_sweep(configs, tmp_path / "two", workers=2, progress=False)
    keys = ("smart_start", "seed", "env_steps", "first_success_step", "success_rate_last_100")
    assert [[row[k] for k in keys] for row in one] == [[row[k] for k in keys] for row in two]
    assert all(row["error"] == "" and row["episodes"] == 4 for row in two)
    assert _read_csv(tmp_path / "two" / "results.csv")[3]["run"] == "smart_start=False__seed=1"
    episodes = _read_csv(tmp_path / "two" / "episodes.csv")
    assert _without_wall_time(episodes) == _without_wall_time(
        _read_csv(tmp_path / "one" / "episodes.csv")
    )
    # The setting smart_start and the episode's own smart_start column both survive.
    assert {row["smart_start"] for row in episodes} == {"True", "False"}
    off = {row["episode_smart_start"] for row in episodes if row["smart_start"] == "False"}
    on = {row["episode_smart_start"] for row in episodes if row["smart_start"] == "True"}
    assert off == {"0"} and "1" in on


def test_second_call_skips_finished_runs(tmp_path: Path) -> None:
    configs = grid(TINY, {"her": ["none", "future"]}, 1)
    first = run_sweep(configs, tmp_path, workers=1, progress=False)
    run_files = sorted(path for path in tmp_path.glob("*/*") if path.is_file())
    stamps = {path: path.stat().st_mtime_ns for path in run_files}
    second = run_sweep(configs, tmp_path, workers=1, progress=False)
    assert second == first
    assert sorted(path for path in tmp_path.glob("*/*") if path.is_file()) == run_files
    assert {path: path.stat().st_mtime_ns for path in run_files} == stamps


def test_cut_off_runs_resume_and_match_an_uninterrupted_sweep(tmp_path: Path) -> None:
    configs = grid(dataclasses.replace(TINY, episodes=6), {"her": ["none", "future"]}, 1)
    whole = run_sweep(configs, tmp_path / "whole", workers=1, progress=False)
    # Run 1 was cut off after 3 episodes: a checkpoint (at 2), and a summary short of its budget,
    # as the trainer leaves at every checkpoint. Run 2 was cut off before its first checkpoint:
    # config.json and a half-written episodes.csv, nothing else.
    out = tmp_path / "resumed"
    from sshr_torch.trainer import train

    names = [run_name(config, ["her", "seed"]) for config in configs]
    train(dataclasses.replace(configs[0], episodes=3, run_dir=str(out / names[0]), quiet=True))
    second = out / names[1]
    second.mkdir(parents=True)
    saved = dataclasses.replace(configs[1], run_dir=str(second)).to_dict()
    (second / runlog.CONFIG_FILE).write_text(json.dumps(saved))
    (second / runlog.EPISODES_FILE).write_text("episode,env_steps\n0,30\n")

    resumed = run_sweep(configs, out, workers=1, progress=False)
    assert [row["episodes"] for row in resumed] == [6, 6]
    keys = ("env_steps", "first_success_step", "success_rate_last_100")
    assert [[row[k] for k in keys] for row in resumed] == [[row[k] for k in keys] for row in whole]
    assert _without_wall_time(_read_csv(out / "episodes.csv")) == _without_wall_time(
        _read_csv(tmp_path / "whole" / "episodes.csv")
    )


def test_a_run_dir_with_other_settings_is_refused(tmp_path: Path) -> None:
    configs = grid(TINY, {"her": ["none", "future"]}, 1)
    run_sweep(configs, tmp_path, workers=1, progress=False)
    other = [dataclasses.replace(config, alpha=0.5) for config in configs]
    with pytest.raises(ConfigError, match="other settings \\(alpha\\)"):
        run_sweep(other, tmp_path, workers=1, progress=False)


def test_a_failed_run_is_reported_not_fatal(tmp_path: Path) -> None:
    configs = grid(TINY, {"her": ["none", "future"]}, 1)
    # A plain file where the second run's directory should be: that run cannot start.
    (tmp_path / run_name(configs[1], ["her", "seed"])).write_text("in the way")
    rows = run_sweep(configs, tmp_path, workers=1, progress=False)
    assert rows[0]["error"] == "" and rows[0]["episodes"] == 4
    assert rows[1]["error"] and rows[1]["episodes"] is None
    assert len(_read_csv(tmp_path / "results.csv")) == 2


def test_cli_runs_a_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--seeds", "2", "--grid", "her=none,future", "--workers", "1"]
    assert main([*argv, "--", *TRAIN_FLAGS]) == 0
    assert "4/4 runs done" in capsys.readouterr().out
    results = _read_csv(tmp_path / "results.csv")
    assert [(row["her"], row["seed"], row["episodes"]) for row in results] == [
        ("none", "0", "3"),
        ("none", "1", "3"),
        ("future", "0", "3"),
        ("future", "1", "3"),
    ]
    config = json.loads((tmp_path / results[0]["run"] / runlog.CONFIG_FILE).read_text())
    assert config["maze"] == "keulen_easy_unscaled" and config["max_episode_steps"] == 30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid", "nope=1,2"], "--grid 'nope=1,2' must be FIELD=V1,V2"),
        (["--grid", "her_k=four"], "a value is not a valid her_k"),
        (["--grid", "her=none,sometimes"], "--her must be one of"),
        (["--seeds", "0"], "--seeds must be a positive integer"),
        (["--workers", "0"], "--workers must be a positive integer"),
        (["--", "--resume", "runs/x"], "--resume and --run-dir cannot be used"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    own, shared = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :])
        if "--" in argv
        else (
            argv,
            [],
        )
    )
    assert main(["--out", str(tmp_path / "sweep"), *own, "--", *TRAIN_FLAGS, *shared]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "sweep" / "results.csv").exists()


def test_ray_backend_gives_the_local_table(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    configs = grid(TINY, {"her": ["none", "future"]}, 1)
    local = run_sweep(configs, tmp_path / "local", workers=1, progress=False)
    # No address: run_sweep starts a local Ray with one CPU and shuts it down at the end.
    on_ray = run_sweep(configs, tmp_path / "ray", workers=1, backend="ray", progress=False)
    keys = ("her", "seed", "env_steps", "first_success_step", "success_rate_last_100", "error")
    assert [[row[k] for k in keys] for row in on_ray] == [[row[k] for k in keys] for row in local]
    assert _without_wall_time(_read_csv(tmp_path / "ray" / "episodes.csv")) == _without_wall_time(
        _read_csv(tmp_path / "local" / "episodes.csv")
    )


def test_tensorboard_hparams_of_the_sweep(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    configs = grid(TINY, {"her": ["none", "future"]}, 2)
    rows = run_sweep(configs, tmp_path, workers=1, progress=False)
    # At the top of the sweep: the HParams experiment, with the varying settings (and the
    # values they take) as hyper-parameters and the final metrics as metrics.
    events = list(EventFileLoader(str(tmp_path / HPARAMS_FILE)).Load())
    (value,) = [v for e in events if e.HasField("summary") for v in e.summary.value]
    assert value.tag == metadata.EXPERIMENT_TAG
    experiment = metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
    assert [info.name for info in experiment.hparam_infos] == ["her", "seed"]
    her_values = experiment.hparam_infos[0].domain_discrete.values
    assert sorted(v.string_value for v in her_values) == ["future", "none"]
    assert [info.name.tag for info in experiment.metric_infos] == list(FINAL_METRICS.values())
    # In each run: the final metrics as scalars at its last env step.
    for row in rows:
        accumulator = EventAccumulator(str(tmp_path / row["run"]))
        accumulator.Reload()
        (point,) = accumulator.Scalars("final/env_steps")
        assert point.step == point.value == row["env_steps"]
        if row["first_success_step"] is not None:
            (first,) = accumulator.Scalars("final/first_success_step")
            assert first.value == row["first_success_step"]


def test_the_local_backend_needs_no_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sshr_torch

    for name in [n for n in sys.modules if n.split(".")[0] == "ray" or n == "sshr_torch.cluster"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(sshr_torch, "cluster", raising=False)  # as if never imported
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    configs = grid(TINY, {"her": ["none", "future"]}, 1)
    rows = run_sweep(configs, tmp_path / "local", workers=1, progress=False)
    assert [row["error"] for row in rows] == ["", ""]
    with pytest.raises(ConfigError, match="--backend ray needs Ray Tune"):
        run_sweep(configs, tmp_path / "ray", backend="ray", progress=False)


# --- issue 24: sweeps over run directories, killed drivers, reruns ----------------------------


def _one_line(capsys: pytest.CaptureFixture[str], status: int, *needles: str) -> None:
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def test_a_sweep_refuses_an_out_that_holds_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sshr_torch.trainer import resume_config, train

    run_dir = tmp_path / "run"
    train(dataclasses.replace(TINY, run_dir=str(run_dir), quiet=True))
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    status = main(["--out", str(run_dir), "--seeds", "1", "--workers", "1", "--", *TRAIN_FLAGS])
    _one_line(capsys, status, "holds a run", "--out")
    after = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert after == before
    train(resume_config(run_dir, episodes=6, quiet=True))  # still resumable
    assert len(_read_csv(run_dir / runlog.EPISODES_FILE)) == 6


def test_a_sweep_refuses_another_sweeps_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--seeds", "1", "--workers", "1"]
    assert main([*argv, "--grid", "her=none,future", "--", *TRAIN_FLAGS]) == 0
    results = (tmp_path / "results.csv").read_bytes()
    capsys.readouterr()
    status = main([*argv, "--grid", "her_k=1,2", "--", *TRAIN_FLAGS])
    _one_line(capsys, status, "holds another sweep", "--out")
    assert (tmp_path / "results.csv").read_bytes() == results
    assert not list(tmp_path.glob("her_k=*"))


def test_a_sweep_respects_the_lock_of_a_live_run_or_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    tmp_path.mkdir(exist_ok=True)
    code = (
        "import fcntl, os, time\n"
        f"f = open({str(tmp_path / runlog.LOCK_FILE)!r}, 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.write(f'{os.getpid()}\\n'); f.flush()\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        status = main(
            ["--out", str(tmp_path), "--seeds", "1", "--workers", "1", "--", *TRAIN_FLAGS]
        )
        _one_line(capsys, status, f"in use by process {holder.pid}", "--out")
        assert not (tmp_path / "results.csv").exists()
        assert not list(tmp_path.glob("seed=*"))
    finally:
        holder.kill()
        holder.wait()


def test_runs_that_met_their_stop_rule_are_finished_on_a_rerun(tmp_path: Path) -> None:
    base = dataclasses.replace(TINY, episodes=200, eval_interval=5, stop_success=1.0)
    configs = grid(base, {"her": ["none", "future"]}, 1)
    first = run_sweep(configs, tmp_path, workers=1, progress=False)
    assert all(row["episodes"] < 200 for row in first)  # each stopped at its stop rule
    run_files = sorted(path for path in tmp_path.glob("*/*") if path.is_file())
    stamps = {path: path.stat().st_mtime_ns for path in run_files}
    assert run_sweep(configs, tmp_path, workers=1, progress=False) == first
    assert sorted(path for path in tmp_path.glob("*/*") if path.is_file()) == run_files
    assert {path: path.stat().st_mtime_ns for path in run_files} == stamps
    assert len(list(tmp_path.glob("*/*.final"))) == 2


def test_a_repeated_grid_axis_runs_every_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--seeds", "1", "--workers", "1"]
    grids = ["--grid", "her=none", "--grid", "her=future", "--grid", "her=none"]
    assert main([*argv, *grids, "--", *TRAIN_FLAGS]) == 0
    results = _read_csv(tmp_path / "results.csv")
    assert [row["her"] for row in results] == ["none", "future"]


def test_a_sweep_rerun_with_a_larger_step_budget_is_one_longer_sweep(tmp_path: Path) -> None:
    by_steps = dataclasses.replace(TINY, episodes=None, checkpoint_interval=1)
    longer = grid(dataclasses.replace(by_steps, total_steps=100), {"her": ["none", "future"]}, 1)
    whole = run_sweep(longer, tmp_path / "whole", workers=1, progress=False)
    shorter = [dataclasses.replace(config, total_steps=47) for config in longer]
    run_sweep(shorter, tmp_path / "parts", workers=1, progress=False)
    extended = run_sweep(longer, tmp_path / "parts", workers=1, progress=False)
    assert [row["episodes"] for row in extended] == [row["episodes"] for row in whole]
    assert _without_wall_time(_read_csv(tmp_path / "parts" / "episodes.csv")) == _without_wall_time(
        _read_csv(tmp_path / "whole" / "episodes.csv")
    )


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_driver_ends_its_workers_and_a_rerun_finishes_the_sweep(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import time

    flags = ["--agent", "tabular", "--maze", "keulen_easy_unscaled", "--max-episode-steps", "30"]
    flags += ["--episodes", "400", "--eval-interval", "0", "--checkpoint-interval", "5"]
    argv = ["--seeds", "2", "--grid", "her=none,future", "--", *flags]
    reference = tmp_path / "reference"
    assert main(["--out", str(reference), "--workers", "1", *argv]) == 0

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "sshr_torch.sweep", "--out", str(out), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    driver = subprocess.Popen([*command, *argv], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/" + runlog.CHECKPOINT_FILE)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.poll() is None, "the sweep ended before the kill"
    workers = _children(driver.pid)
    assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)], "processes left behind by the driver"

    rerun = subprocess.run([*command, *argv], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _without_wall_time(_read_csv(out / "episodes.csv")) == _without_wall_time(
        _read_csv(reference / "episodes.csv")
    )
