"""Sweeps on a multi-node Ray cluster, simulated on this machine with ray.cluster_utils.Cluster.

A head node without CPUs (so every run goes to a worker node) and two worker nodes of one CPU
each; every node and the driver start in a temporary working directory of their own, so nothing
relies on a shared current directory. The storage path is a separate directory (as a file://
URI in one test), the one place where runs and tables end up.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshr_torch import runlog
from sshr_torch.config import TrainConfig
from sshr_torch.sweep import grid, main, run_sweep

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")
from ray.cluster_utils import Cluster  # noqa: E402

from sshr_torch import cluster as cluster_module  # noqa: E402

# Tabular runs of a few seconds each (so that a node can be removed, or the driver killed, while
# one is running: at 1000 episodes a run took about 1.2 s, within a second of the checkpoint
# the killed-driver test waits for, and that test failed when every run ended first), a
# checkpoint every 50 episodes: 2 settings x 3 seeds.
BASE = TrainConfig(
    agent="tabular",
    maze="keulen_easy_unscaled",
    max_episode_steps=30,
    episodes=3000,
    eval_interval=0,
    eval_episodes=1,
    image_interval=0,
    checkpoint_interval=50,
)
CONFIGS = grid(BASE, {"her": ["none", "future"]}, 3)
RUN_FILES = (runlog.CONFIG_FILE, runlog.EPISODES_FILE, runlog.SUMMARY_FILE, runlog.CHECKPOINT_FILE)
# Columns that hold wall-clock time, which no two sweeps share.
CLOCK_COLUMNS = ("wall_s", "sps")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _without_clock(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS} for row in rows]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep on local processes, without Ray: what every cluster sweep must give."""
    out = tmp_path_factory.mktemp("baseline")
    run_sweep(CONFIGS, out, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A head node (no CPUs) and two worker nodes (one CPU each), each started in its own
    temporary working directory."""
    here = os.getcwd()
    nodes = tmp_path_factory.mktemp("nodes")
    try:
        os.chdir(nodes.joinpath("head").mkdir() or nodes / "head")
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": False,
                # Declare a removed node dead after about a second, not Ray's default 15 s.
                "_system_config": {
                    "health_check_period_ms": 500,
                    "health_check_failure_threshold": 2,
                },
            },
        )
        for name in ("worker1", "worker2"):
            os.chdir(nodes.joinpath(name).mkdir() or nodes / name)
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    finally:
        os.chdir(here)
    yield cluster
    cluster.shutdown()


def _check_runs_in_storage(out: Path, baseline: Path) -> None:
    """results.csv, episodes.csv and each run's directory are in storage and equal the
    baseline's; every run's episodes.csv holds episodes 0..n-1, each once."""
    results = _read_csv(out / "results.csv")
    assert len(results) == len(CONFIGS)
    assert all(row["error"] == "" and row["episodes"] == str(BASE.episodes) for row in results)
    assert _without_clock(results) == _without_clock(_read_csv(baseline / "results.csv"))
    assert _without_clock(_read_csv(out / "episodes.csv")) == _without_clock(
        _read_csv(baseline / "episodes.csv")
    )
    for row in results:
        run_dir = out / row["run"]
        assert all((run_dir / name).is_file() for name in RUN_FILES)
        assert list(run_dir.glob("events.out.tfevents.*"))
        episodes = _read_csv(run_dir / runlog.EPISODES_FILE)
        assert [int(episode["episode"]) for episode in episodes] == list(range(BASE.episodes))
        assert _without_clock(episodes) == _without_clock(
            _read_csv(baseline / row["run"] / runlog.EPISODES_FILE)
        )


def test_a_sweep_over_the_cluster_puts_every_run_in_storage(
    cluster: Cluster, baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.joinpath("driver").mkdir() or tmp_path / "driver")
    out = tmp_path / "storage" / "sweep"
    rows = run_sweep(CONFIGS, out, backend="ray", address=cluster.address, progress=False)
    assert [row["error"] for row in rows] == [""] * len(CONFIGS)
    _check_runs_in_storage(out, baseline)
    # The same command again finds the finished sweep in storage and trains nothing.
    stamps = {path: path.stat().st_mtime_ns for path in out.glob("*/summary.json")}
    again = run_sweep(CONFIGS, out, backend="ray", address=cluster.address, progress=False)
    assert again == rows
    assert {path: path.stat().st_mtime_ns for path in out.glob("*/summary.json")} == stamps


def test_a_run_whose_node_dies_resumes_from_its_checkpoint_on_another_node(
    cluster: Cluster, baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.joinpath("driver").mkdir() or tmp_path / "driver")
    # Runs of a few seconds: every checkpoint of theirs goes to Tune.
    monkeypatch.setattr(cluster_module, "REPORT_EVERY_S", 0.0)
    out = tmp_path / "storage" / "sweep"
    outcome: dict[str, object] = {}

    def sweep() -> None:
        try:
            outcome["rows"] = run_sweep(
                CONFIGS, f"file://{out}", backend="ray", address=cluster.address, progress=False
            )
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    driver = threading.Thread(target=sweep)
    driver.start()
    # Wait for a run that has a checkpoint in storage and is still running, then remove the
    # worker node it runs on (its process id is in its event files' names).
    removed = None
    deadline = time.monotonic() + 240
    while removed is None and driver.is_alive() and time.monotonic() < deadline:
        for packed in out.glob("*/checkpoint_*/events.out.packed-events.*"):
            run_dir = packed.parent.parent
            if (run_dir / runlog.SUMMARY_FILE).exists():
                continue  # finished
            pid = int(re.split(r"\.", packed.name)[-2])
            removed = _worker_node_of(cluster, pid)
            if removed is not None:
                cluster.remove_node(removed, allow_graceful=False)
                break
        time.sleep(0.05)
    driver.join(timeout=300)
    assert removed is not None, "no run was caught mid-way"
    assert "error" not in outcome, outcome.get("error")
    assert [row["error"] for row in outcome["rows"]] == [""] * len(CONFIGS)
    _check_runs_in_storage(out, baseline)
    # The run on the removed node resumed from its checkpoint on the other one: its run
    # directory holds event files written by two processes.
    writers = [
        {name.split(".")[5] for name in os.listdir(out / row["run"]) if "tfevents" in name}
        for row in outcome["rows"]
    ]
    assert max(len(pids) for pids in writers) == 2
    cluster.add_node(num_cpus=1)  # back to two workers for any test after this one


def test_a_killed_driver_is_resumed_by_the_same_command(
    cluster: Cluster, baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.joinpath("driver").mkdir() or tmp_path / "driver")
    out = tmp_path / "storage" / "sweep"
    argv = ["--out", str(out), "--seeds", "3", "--grid", "her=none,future", "--backend", "ray"]
    argv += ["--address", cluster.address, "--", "--agent", "tabular"]
    argv += ["--maze", BASE.maze, "--max-episode-steps", "30", "--episodes", str(BASE.episodes)]
    argv += ["--eval-interval", "0", "--eval-episodes", "1", "--image-interval", "0"]
    argv += ["--checkpoint-interval", "50"]
    # Checkpoints every second (not back to back), and the kill half a second after a new one
    # appears, not at that instant: when a checkpoint arrives Tune prunes the older ones
    # (keeping two) a moment before it saves the experiment state that names the newest, and
    # a driver killed in that moment restores from a pruned checkpoint. A driver that dies at a
    # random time hits it rarely; one killed as a checkpoint appears hits it often.
    script = (
        "import sys; import sshr_torch.cluster as c; c.REPORT_EVERY_S = 1.0; "
        "from sshr_torch.sweep import main; sys.exit(main(sys.argv[1:]))"
    )
    driver = subprocess.Popen([sys.executable, "-c", script, *argv], stderr=subprocess.DEVNULL)
    # Kill the driver once a run has finished and another one has a checkpoint in storage.
    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        finished = list(out.glob("*/summary.json"))
        cut_off = [
            p for p in out.glob("*/checkpoint_*") if not (p.parent / "summary.json").exists()
        ]
        if finished and cut_off:
            time.sleep(0.5)
            driver.kill()
            break
        time.sleep(0.05)
    assert driver.wait(timeout=60) == -signal.SIGKILL, "the sweep ended before it was killed"
    done = {path.parent: _run_files(path.parent) for path in out.glob("*/summary.json")}
    assert 0 < len(done) < len(CONFIGS)

    assert main(argv) == 0
    _check_runs_in_storage(out, baseline)
    # The runs that had finished were not trained again. (A cut-off run resumes from the last
    # checkpoint that Tune's saved experiment state knew of, or from the start: which one
    # depends on when the driver died, and the episodes are the same either way.)
    assert {run_dir: _run_files(run_dir) for run_dir in done} == done


def _run_files(run_dir: Path) -> dict[str, bytes]:
    """The files of a run directory (not its Tune checkpoints) and their contents."""
    return {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}


def _worker_node_of(cluster: Cluster, pid: int):
    """The worker node whose raylet started process ``pid`` (None if none, or it has ended)."""
    import psutil

    try:
        parents = {parent.pid for parent in psutil.Process(pid).parents()}
    except psutil.NoSuchProcess:
        return None
    for node in cluster.worker_nodes:
        raylets = node.all_processes.get(ray._private.ray_constants.PROCESS_TYPE_RAYLET, [])
        if any(info.process.pid in parents for info in raylets):
            return node
    return None


@pytest.mark.parametrize(
    ("out", "address", "message"),
    [
        ("{tmp}/sweep", "127.0.0.1:9", "error: cannot reach the Ray cluster at --address"),
        ("{tmp}/sweep", "no-such-host.invalid:6379", "error: cannot reach the Ray cluster"),
        ("{tmp}/a_file/sweep", None, "error: cannot write --out"),
        ("nosuchscheme://bucket/sweep", None, "is not a usable storage path"),
    ],
)
def test_bad_cluster_input_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    out: str,
    address: str | None,
    message: str,
) -> None:
    (tmp_path / "a_file").write_text("a file where the storage path's parent should be")
    own = ["--out", out.format(tmp=tmp_path), "--seeds", "1", "--backend", "ray"]
    own += ["--address", address] if address else []
    flags = ["--agent", "tabular", "--maze", "keulen_easy_unscaled", "--episodes", "2"]
    started = time.monotonic()
    assert main([*own, "--", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert time.monotonic() - started < 30
    assert not ray.is_initialized()


def test_a_sweep_over_the_cluster_builds_envs_named_by_id(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --env: a gymnasium id and its kwargs, a sweep axis; every trial builds its env from them
    base = TrainConfig(
        agent="tabular",
        env="sshr_torch/GridMaze-v0",
        max_episode_steps=30,
        episodes=40,
        eval_interval=0,
        eval_episodes=1,
        image_interval=0,
    )
    mazes = [{"maze": "keulen_easy_unscaled"}, {"maze": "keulen_medium_unscaled"}]
    configs = grid(base, {"env_kwargs": mazes}, 1)
    local = tmp_path / "local"
    run_sweep(configs, local, workers=1, progress=False)
    monkeypatch.chdir(tmp_path.joinpath("driver").mkdir() or tmp_path / "driver")
    out = tmp_path / "storage"
    rows = run_sweep(configs, out, backend="ray", address=cluster.address, progress=False)
    assert [row["error"] for row in rows] == ["", ""]
    results = _read_csv(out / "results.csv")
    assert [row["run"] for row in results] == [
        "env_kwargs=maze-keulen_easy_unscaled__seed=0",
        "env_kwargs=maze-keulen_medium_unscaled__seed=0",
    ]
    assert _without_clock(results) == _without_clock(_read_csv(local / "results.csv"))
    # two mazes, two worlds: the runs differ
    episodes = [_read_csv(out / row["run"] / runlog.EPISODES_FILE) for row in results]
    assert _without_clock(episodes[0]) != _without_clock(episodes[1])


def test_a_minigrid_sweep_over_the_cluster_equals_the_local_one(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("minigrid", reason="needs pip install -e '.[minigrid]' (CI has it)")
    # a MiniGrid world (the optional extra) through the Ray backend: two layouts (--env-seed)
    base = TrainConfig(
        agent="tabular",
        env="MiniGrid-FourRooms-v0",
        max_episode_steps=100,
        episodes=30,
        eval_interval=10,
        eval_episodes=1,
        image_interval=0,
    )
    configs = grid(base, {"env_seed": [0, 1]}, 1)
    local = tmp_path / "local"
    run_sweep(configs, local, workers=1, progress=False)
    monkeypatch.chdir(tmp_path.joinpath("driver").mkdir() or tmp_path / "driver")
    out = tmp_path / "storage"
    rows = run_sweep(configs, out, backend="ray", address=cluster.address, progress=False)
    assert [row["error"] for row in rows] == ["", ""]
    results = _read_csv(out / "results.csv")
    assert [row["run"] for row in results] == ["env_seed=0__seed=0", "env_seed=1__seed=0"]
    assert _without_clock(results) == _without_clock(_read_csv(local / "results.csv"))
    # goal reach works on MiniGrid's cells, and the two layouts are two worlds
    assert all(0.0 <= float(row["goals_success"]) <= 1.0 for row in results)
    episodes = [_read_csv(out / row["run"] / runlog.EPISODES_FILE) for row in results]
    assert _without_clock(episodes[0]) != _without_clock(episodes[1])
