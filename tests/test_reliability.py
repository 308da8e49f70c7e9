"""Reliability (issue 13): what a hostile user, a second process, a Ctrl-C or a kill -9 does to a
run. Each case ends as a run promises (README, "What a run promises"): one line on stderr naming
the flag or file and exit status 2 for a user's error, a checkpoint after one Ctrl-C, and
episodes.csv equal to an uninterrupted run's after any number of kills and resumes.

    python -m pytest tests/test_reliability.py            # a few random kills
    python -m pytest tests/test_reliability.py --slow     # many
"""

from __future__ import annotations

import csv
import errno
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sshr_torch import resources, rollout, runlog, trainer
from sshr_torch.agents import DQNAgent, TabularAgent
from sshr_torch.build import make_env
from sshr_torch.maze import load_maze
from sshr_torch.rollout import evaluate
from sshr_torch.train import main

train_module = sys.modules[main.__module__]  # (the package's `train` is the function)
# The 4x3 unscaled Easy maze, 30-step episodes, a small DQN: a run of a few episodes in ~1 s.
TINY = [
    "--maze", "keulen_easy_unscaled", "--max-episode-steps", "30", "--episodes", "4",
    "--learning-starts", "20", "--batch-size", "16", "--hidden-sizes", "32",
    "--eval-interval", "2", "--eval-episodes", "2", "--image-interval", "0",
    "--checkpoint-interval", "2", "--quiet",
]  # fmt: skip
MAZE_TEXT = "S...\n.##.\n...G\n"
BY_STEPS = [flag for flag in TINY if flag not in ("--episodes", "4")]  # give --total-steps


def rows_without_wall_clock(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / runlog.EPISODES_FILE).open(newline="") as file:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(file)]


def one_line_error(capsys: pytest.CaptureFixture[str], status: int, *needles: str) -> str:
    """Check that a main() call failed as a user error should; return the line."""
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:"), err
    assert "error" not in captured.out
    for needle in needles:
        assert needle in err, err
    return err


def tiny_run(tmp_path: Path, *flags: str, name: str = "run") -> Path:
    run_dir = tmp_path / name
    assert main([*TINY, "--run-dir", str(run_dir), *flags]) == 0
    return run_dir


# --- 1. one process per run directory ---------------------------------------------------------


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding the run directory's lock (as a running run does)."""
    code = (
        "import fcntl, sys, time\n"
        f"f = open({str(run_dir / runlog.LOCK_FILE)!r}, 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("agent", ["dqn", "tabular"])
def test_a_second_process_on_a_run_directory_is_refused_and_touches_nothing(
    tmp_path, capsys, agent
):
    run_dir = tiny_run(tmp_path, "--agent", agent)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    holder = _hold_lock(run_dir)
    try:
        status = main(["--resume", str(run_dir), "--episodes", "8", "--quiet"])
        one_line_error(capsys, status, "in use", str(run_dir))
        after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        assert after == before
        # A new run pointed at the same directory is refused as well.
        status = main([*TINY, "--run-dir", str(run_dir)])
        assert status == 2
    finally:
        holder.kill()
        holder.wait()
    # kill -9 of the holder released the lock: the resume goes ahead.
    assert main(["--resume", str(run_dir), "--episodes", "8", "--quiet"]) == 0
    assert len(rows_without_wall_clock(run_dir)) == 8


# --- 2. evaluation leaves the training streams alone ------------------------------------------


@pytest.mark.parametrize("agent", ["dqn", "tabular"])
def test_evaluation_draws_nothing_from_the_training_streams(agent):
    env = make_env(trainer.TrainConfig(maze="keulen_easy_unscaled", max_episode_steps=30))
    n = int(env.observation_space["observation"].n)
    learner = DQNAgent(n, n, 4, hidden_sizes=(8,)) if agent == "dqn" else TabularAgent(n, 4)
    rng_state, torch_state = learner.rng.bit_generator.state, torch.get_rng_state()
    evaluate(learner, env, 3, seed=5)
    assert learner.rng.bit_generator.state == rng_state
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_evaluation_restores_any_learners_torch_and_python_generators():
    class Learner(TabularAgent):
        def act(self, obs, goal, epsilon):
            noise = torch.rand(1, generator=self.torch_rng).item() + self.py_rng.random()
            return int(noise * 1000) % self.n_actions

    env = make_env(trainer.TrainConfig(maze="keulen_easy_unscaled", max_episode_steps=30))
    learner = Learner(int(env.observation_space["observation"].n), 4)
    learner.torch_rng = torch.Generator().manual_seed(1)
    learner.py_rng = random.Random(2)
    torch_state, py_state = learner.torch_rng.get_state(), learner.py_rng.getstate()
    evaluate(learner, env, 2, seed=5)
    assert torch.equal(learner.torch_rng.get_state(), torch_state)
    assert learner.py_rng.getstate() == py_state


@pytest.mark.parametrize("agent", ["dqn", "tabular"])
def test_extending_a_finished_run_is_the_uninterrupted_run(tmp_path, agent):
    # The case: keulen_hard, 100-step episodes, 30 then 60 episodes (tabular).
    flags = ["--agent", agent, "--maze", "keulen_hard", "--max-episode-steps", "100"]
    flags += ["--checkpoint-interval", "50", "--eval-interval", "20", "--quiet"]
    if agent == "dqn":
        flags += ["--hidden-sizes", "32", "--batch-size", "16", "--learning-starts", "100"]
        n_first, n_total = 6, 12
    else:
        n_first, n_total = 30, 60
    whole = tmp_path / "whole"
    assert main([*flags, "--episodes", str(n_total), "--run-dir", str(whole)]) == 0
    parts = tmp_path / "parts"
    assert main([*flags, "--episodes", str(n_first), "--run-dir", str(parts)]) == 0
    assert main(["--resume", str(parts), "--episodes", str(n_total), "--quiet"]) == 0
    assert rows_without_wall_clock(parts) == rows_without_wall_clock(whole)


@pytest.mark.parametrize(("agent", "maze"), [("dqn", "builtin"), ("tabular", "text")])
def test_extending_a_step_budget_plays_out_the_episode_the_first_budget_cut(tmp_path, agent, maze):
    # Issue 24: `--total-steps 47` then `--resume --total-steps 100`, against one run of 100
    # steps. The first budget cuts an episode 17 steps in; the longer run plays it out.
    if maze == "text":
        (tmp_path / "maze.txt").write_text(MAZE_TEXT)
    maze_flags = ["--maze", str(tmp_path / "maze.txt")] if maze == "text" else []
    flags = [*BY_STEPS, "--checkpoint-interval", "1", "--agent", agent, *maze_flags]
    whole = tmp_path / "whole"
    assert main([*flags, "--total-steps", "100", "--run-dir", str(whole)]) == 0
    parts = tmp_path / "parts"
    assert main([*flags, "--total-steps", "47", "--run-dir", str(parts)]) == 0
    short = rows_without_wall_clock(parts)
    assert short[-1]["env_steps"] == "47"
    assert short[-1] != rows_without_wall_clock(whole)[len(short) - 1]  # it was cut
    # The checkpoint's state is the run's last (the learner after all 47 steps).
    assert runlog.load_checkpoint(parts / runlog.CHECKPOINT_FILE)["progress"]["env_steps"] == 47
    assert main(["--resume", str(parts), "--total-steps", "100", "--quiet"]) == 0
    assert rows_without_wall_clock(parts) == rows_without_wall_clock(whole)
    summary = json.loads((parts / runlog.SUMMARY_FILE).read_text())
    assert summary["episodes"] == len(rows_without_wall_clock(whole))


def test_a_plain_resume_of_a_run_whose_budget_cut_an_episode_changes_nothing(tmp_path):
    flags = BY_STEPS
    run_dir = tmp_path / "run"
    assert main([*flags, "--total-steps", "47", "--run-dir", str(run_dir)]) == 0
    rows = rows_without_wall_clock(run_dir)
    summary = json.loads((run_dir / runlog.SUMMARY_FILE).read_text())
    assert main(["--resume", str(run_dir), "--quiet"]) == 0
    assert rows_without_wall_clock(run_dir) == rows
    again = json.loads((run_dir / runlog.SUMMARY_FILE).read_text())
    clock = ("wall_s", "sps", "goal_reach_s")  # seconds, not results
    assert {k: v for k, v in again.items() if k not in clock} == {
        k: v for k, v in summary.items() if k not in clock
    }


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--episodes", "1", "--episodes 1"),
    ("--total-steps", "10", "--total-steps 10"),
])  # fmt: skip
def test_shortening_a_run_below_its_last_checkpoint_is_refused(
    tmp_path, capsys, flag, value, needle
):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")  # checkpoints at episodes 2 and 4
    rows = (run_dir / runlog.EPISODES_FILE).read_bytes()
    checkpoint = (run_dir / runlog.CHECKPOINT_FILE).read_bytes()
    status = main(["--resume", str(run_dir), flag, value, "--quiet"])
    one_line_error(capsys, status, needle, "last checkpoint")
    assert (run_dir / runlog.EPISODES_FILE).read_bytes() == rows
    assert (run_dir / runlog.CHECKPOINT_FILE).read_bytes() == checkpoint


def test_shortening_a_killed_run_to_after_its_last_checkpoint_is_the_shorter_run(tmp_path):
    flags = [*BY_STEPS, "--agent", "tabular"]
    short = tmp_path / "short"
    assert main([*flags, "--total-steps", "40", "--run-dir", str(short)]) == 0
    # A run whose last checkpoint is at step 30 and whose episodes.csv goes on to step 100, as a
    # kill -9 after step 100 leaves it.
    killed = tmp_path / "killed"
    assert main([*flags, "--total-steps", "30", "--run-dir", str(killed)]) == 0
    checkpoint = (killed / runlog.CHECKPOINT_FILE).read_bytes()
    assert main(["--resume", str(killed), "--total-steps", "100", "--quiet"]) == 0
    (killed / runlog.CHECKPOINT_FILE).write_bytes(checkpoint)
    assert main(["--resume", str(killed), "--total-steps", "40", "--quiet"]) == 0
    assert rows_without_wall_clock(killed) == rows_without_wall_clock(short)


# --- 3. tabular memory ------------------------------------------------------------------------


def test_tabular_memory_grows_with_what_was_visited(tmp_path):
    run_dir = tiny_run(
        tmp_path,
        "--agent", "tabular", "--maze", "generated:201x201", "--episodes", "20",
        "--max-episode-steps", "100", "--checkpoint-interval", "10",
    )  # fmt: skip
    agent = runlog.load_checkpoint(run_dir / runlog.CHECKPOINT_FILE)["agent"]
    entries = len(agent["q"])
    assert 0 < entries <= 2000 * 5  # at most (1 + k) entries per env step
    # A dense table per goal would be 40,401 x 4 x 8 bytes = 1.3 MB for each goal reached.
    q_bytes = sum(value.nbytes for value in agent.values() if isinstance(value, np.ndarray))
    assert q_bytes <= entries * (4 * 8 + 16) < 1_000_000


def test_a_tabular_run_that_cannot_fit_fails_at_start_up(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 50_000_000)
    flags = ["--agent", "tabular", "--maze", "generated:201x201", "--total-steps", "1000000"]
    flags += ["--episodes", "1000000"]  # 30-step episodes: the step budget binds
    status = main([*TINY, *flags, "--run-dir", str(tmp_path / "run")])
    one_line_error(capsys, status, "--total-steps 1000000", "Q table", "GB")
    assert not (tmp_path / "run").exists()


# --- 4, 10. one line and exit status 2, naming the flag or file ----------------------------

FLAG_CASES = [
    (["--hidden-sizes", "1000000000"], "--hidden-sizes"),
    (["--batch-size", "1000000000"], "--batch-size"),
    (["--batch-size", "100000000000000000000"], "--batch-size"),
    (["--buffer-size", "1000000000000"], "--buffer-size"),
    (["--agent", "tabular", "--her-k", "1000000000"], "--her-k"),
    (["--device", "cuda:abc"], "--device"),
    (["--device", "cuda:-1"], "--device"),
    (["--seed", "-1"], "--seed"),
    (["--learning-rate", "1e308"], "--learning-rate"),
    (["--agent", "tabular", "--alpha", "1e308"], "--alpha"),
    (["--agent", "tabular", "--alpha", "1.5"], "--alpha"),
    (["--torch-threads", "100000000000000000000"], "--torch-threads"),
    (["--resume", ""], "--resume"),
    # issue 24: an n-step window longer than an episode, or than memory holds
    (["--n-step", "1000000000"], "--n-step 1000000000"),
    (["--n-step", "10000000000"], "--n-step 10000000000"),
    (["--n-step", "300000000"], "--n-step 300000000"),
    (["--n-step", "100000", "--max-episode-steps", "1500"], "--n-step 100000"),
    (["--n-step", "1000000000", "--max-episode-steps", "2000000000"], "--n-step 1000000000"),
    # returns beyond what float32 targets hold, on either update path
    (["--step-reward=-1e37"], "--step-reward"),
    (["--step-reward=-1e308"], "--step-reward"),
    (["--step-reward=-1e37", "--no-fast-path"], "--step-reward"),
    (["--step-reward=-1e308", "--no-fast-path"], "--step-reward"),
]
if not torch.cuda.is_available():
    FLAG_CASES += [(["--device", "cuda"], "--device cuda"), (["--device", "cuda:0"], "cuda:0")]


@pytest.mark.parametrize(("flags", "needle"), FLAG_CASES)
def test_bad_flag_is_one_line_naming_it(tmp_path, capsys, flags, needle):
    status = main([*TINY, "--run-dir", str(tmp_path / "run"), *flags])
    one_line_error(capsys, status, needle)
    assert not (tmp_path / "run").exists()


def test_gamma_1_with_the_model_values_names_both_flags(tmp_path, capsys):
    status = main([*TINY, "--run-dir", str(tmp_path / "run"), "--gamma", "1.0"])
    one_line_error(capsys, status, "--gamma 1.0", "--model-values q")
    assert not (tmp_path / "run").exists()
    # without the model's values gamma 1 is a valid setting
    assert (
        main([*TINY, "--run-dir", str(tmp_path / "ok"), "--gamma", "1.0", "--model-values", "off"])
        == 0
    )


def test_n_step_is_in_the_memory_estimate(tmp_path):
    config = trainer.TrainConfig(n_step=10_000, max_episode_steps=100_000)
    env = make_env(config)
    small, large = (
        [size for flags, _, size in resources.memory_estimates(c, env) if "--n-step" in flags]
        for c in (config, trainer.TrainConfig(n_step=20_000, max_episode_steps=100_000))
    )
    assert small and large and large[0] == 2 * small[0] >= 128 * 10_000 * 8


def test_resume_with_a_bad_budget_names_the_flag(tmp_path, capsys):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    err = one_line_error(capsys, main(["--resume", str(run_dir), "--episodes", "0"]), "--episodes")
    assert "config.json" not in err


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("her_k", "4"),
        ("eta", "1.0"),
        ("maze", 5),
        ("maze", None),
        ("seed", "x"),
        ("seed", 3.0),
        ("hidden_sizes", ["a"]),
        ("total_steps", float("nan")),
        ("episodes", True),
    ],
)
def test_a_badly_edited_config_json_is_one_line_naming_the_field(tmp_path, capsys, field, value):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    path = run_dir / runlog.CONFIG_FILE
    config = json.loads(path.read_text())
    config[field] = value
    path.write_text(json.dumps(config))
    status = main(["--resume", str(run_dir), "--quiet"])
    one_line_error(capsys, status, "config.json", field)


def _rewrite_checkpoint(run_dir: Path, change) -> None:
    path = run_dir / runlog.CHECKPOINT_FILE
    state = runlog.load_checkpoint(path)
    change(state)
    runlog.save_checkpoint(path, {k: v for k, v in state.items() if k != "version"})


@pytest.mark.parametrize(
    "change",
    [
        lambda state: state.pop("config"),
        lambda state: state["progress"].update(episode="abc"),
        lambda state: state["progress"].update(episode=-3),
        lambda state: state.update(config=[1, 2]),
    ],
    ids=["no-config", "episode-abc", "episode-negative", "config-a-list"],
)
def test_a_malformed_checkpoint_is_one_line(tmp_path, capsys, change):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    _rewrite_checkpoint(run_dir, change)
    status = main(["--resume", str(run_dir), "--quiet"])
    one_line_error(capsys, status, str(run_dir))


def test_a_full_disk_is_named_and_the_checkpoint_stands(tmp_path, capsys, monkeypatch):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    before = (run_dir / runlog.CHECKPOINT_FILE).read_bytes()

    def full(path, data, sync):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runlog, "_write_file", full)
    status = main(["--resume", str(run_dir), "--episodes", "8", "--quiet"])
    one_line_error(capsys, status, "disk full", str(run_dir))
    monkeypatch.undo()
    assert (run_dir / runlog.CHECKPOINT_FILE).read_bytes() == before
    assert not list(run_dir.glob(".*.tmp"))
    assert main(["--resume", str(run_dir), "--episodes", "8", "--quiet"]) == 0


def test_a_binary_episodes_csv_is_named(tmp_path, capsys):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    (run_dir / runlog.EPISODES_FILE).write_bytes(bytes(range(256)) * 4)
    status = main(["--resume", str(run_dir), "--quiet"])
    one_line_error(capsys, status, "episodes.csv")


@pytest.mark.parametrize("kind", ["directory", "text"])
def test_a_checkpoint_that_is_not_one_is_named_clearly(tmp_path, capsys, kind):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    path = run_dir / runlog.CHECKPOINT_FILE
    path.unlink()
    if kind == "directory":
        path.mkdir()
    else:
        path.write_text("hello, I am a text file\n")
    status = main(["--resume", str(run_dir), "--quiet"])
    err = one_line_error(capsys, status, "checkpoint.pt")
    assert "does not exist" not in err and "(101)" not in err
    assert ("directory" in err) if kind == "directory" else ("not a checkpoint" in err)


# --- 5. changes between run and resume ----------------------------------------------------------


def test_a_maze_file_edited_before_the_resume_is_refused(tmp_path, capsys):
    maze = tmp_path / "maze.txt"
    maze.write_text(MAZE_TEXT)
    run_dir = tiny_run(tmp_path, "--agent", "tabular", "--maze", str(maze))
    maze.write_text(MAZE_TEXT.replace(".##.", "..#."))
    status = main(["--resume", str(run_dir), "--episodes", "8", "--quiet"])
    one_line_error(capsys, status, "maze.txt", "changed")


def test_a_deleted_episodes_csv_is_refused(tmp_path, capsys):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    (run_dir / runlog.EPISODES_FILE).unlink()
    status = main(["--resume", str(run_dir), "--episodes", "8", "--quiet"])
    one_line_error(capsys, status, "episodes.csv", "missing")


def test_a_checkpoint_altered_inside_a_tensor_is_refused(tmp_path, capsys):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    path = run_dir / runlog.CHECKPOINT_FILE
    with zipfile.ZipFile(path) as archive:
        info = max(
            (i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size
        )
    data = bytearray(path.read_bytes())
    name_length, extra_length = np.frombuffer(data, "<u2", 2, info.header_offset + 26)
    offset = info.header_offset + 30 + int(name_length) + int(extra_length) + info.file_size // 2
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    status = main(["--resume", str(run_dir), "--episodes", "8", "--quiet"])
    one_line_error(capsys, status, "checkpoint.pt", "damaged")


# --- 6, 8, 9. paths and files ----------------------------------------------------------------


def test_resume_from_another_working_directory(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "here" / "my_maze.txt").write_text(MAZE_TEXT)
    monkeypatch.chdir(tmp_path / "here")
    assert main([*TINY, "--agent", "tabular", "--maze", "my_maze.txt", "--run-dir", "run"]) == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    run_dir = tmp_path / "here" / "run"
    assert main(["--resume", str(run_dir), "--episodes", "8", "--quiet"]) == 0
    assert len(rows_without_wall_clock(run_dir)) == 8


def test_a_maze_file_named_like_the_generator_loads_by_bare_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("generated_maze.txt").write_text(MAZE_TEXT)
    assert load_maze("generated_maze.txt").n_cells == 12


def test_episodes_csv_has_one_line_ending_and_stale_temporaries_go(tmp_path):
    run_dir = tiny_run(tmp_path, "--agent", "tabular")
    stale = run_dir / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert main(["--resume", str(run_dir), "--episodes", "8", "--quiet"]) == 0
    assert b"\r" not in (run_dir / runlog.EPISODES_FILE).read_bytes()
    assert not stale.exists()


class _Hung(Exception):
    """Raised by an alarm in a test that would otherwise wait forever."""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_the_maze_is_refused_not_waited_on(tmp_path, capsys):
    fifo = tmp_path / "maze.fifo"
    os.mkfifo(fifo)

    def hung(signum, frame):
        raise _Hung("the maze FIFO was opened and waited on")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        status = main([*TINY, "--maze", str(fifo), "--run-dir", str(tmp_path / "run")])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    one_line_error(capsys, status, "maze.fifo", "not a regular file")


# --- 7. Ctrl-C ---------------------------------------------------------------------------------


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_one_ctrl_c_during_start_up_ends_with_a_checkpoint(tmp_path, capsys, monkeypatch):
    original = resources.apply_process_settings

    def interrupted(config):
        _ctrl_c()
        original(config)

    monkeypatch.setattr(resources, "apply_process_settings", interrupted)
    run_dir = tmp_path / "run"
    assert main([*TINY, "--agent", "tabular", "--run-dir", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "Interrupted" in captured.err and "error" not in captured.out + captured.err
    assert json.loads((run_dir / runlog.SUMMARY_FILE).read_text())["interrupted"] is True
    assert runlog.load_checkpoint(run_dir / runlog.CHECKPOINT_FILE)["progress"]["episode"] == 0


def test_one_ctrl_c_while_the_flags_are_read_ends_with_a_checkpoint(tmp_path, capsys, monkeypatch):
    original = train_module.config_from_args

    def interrupted(argv):
        _ctrl_c()  # before torch and the trainer are imported
        return original(argv)

    monkeypatch.setattr(train_module, "config_from_args", interrupted)
    run_dir = tmp_path / "run"
    assert main([*TINY, "--agent", "tabular", "--run-dir", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "Interrupted" in captured.err and "error" not in captured.out + captured.err
    assert json.loads((run_dir / runlog.SUMMARY_FILE).read_text())["interrupted"] is True


@pytest.mark.parametrize("agent", ["dqn", "tabular"])
def test_one_ctrl_c_during_the_final_evaluation_ends_with_a_checkpoint(
    tmp_path, capsys, monkeypatch, agent
):
    original = rollout.evaluate

    def evaluate_interrupted(*args, **kwargs):
        _ctrl_c()  # every evaluation: the final one included
        return original(*args, **kwargs)

    monkeypatch.setattr(rollout, "evaluate", evaluate_interrupted)
    run_dir = tmp_path / "run"
    status = main([*TINY, "--agent", agent, "--eval-interval", "0", "--run-dir", str(run_dir)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Interrupted" in captured.err and "error" not in captured.out + captured.err
    checkpoint = runlog.load_checkpoint(run_dir / runlog.CHECKPOINT_FILE)
    assert checkpoint["progress"]["episode"] == 4


def test_a_second_ctrl_c_says_so_on_stderr(tmp_path, capsys, monkeypatch):
    original = rollout.evaluate

    def evaluate_interrupted_twice(*args, **kwargs):
        _ctrl_c()
        _ctrl_c()
        return original(*args, **kwargs)

    monkeypatch.setattr(rollout, "evaluate", evaluate_interrupted_twice)
    status = main([*TINY, "--agent", "tabular", "--run-dir", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert status == 130
    assert "second Ctrl-C" in captured.err and "error" not in captured.out


# --- the kill-and-resume property ---------------------------------------------------------------

KILL_FLAGS = [
    "--maze", "keulen_easy_unscaled", "--max-episode-steps", "30", "--episodes", "24",
    "--learning-starts", "20", "--batch-size", "16", "--hidden-sizes", "32",
    "--eval-interval", "3", "--eval-episodes", "2", "--image-interval", "5",
    "--checkpoint-interval", "2", "--quiet",
]  # fmt: skip
LEARNERS = [(agent, ss) for agent in ("dqn", "tabular") for ss in (True, False)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kill_case" in metafunc.fixturenames:
        slow = metafunc.config.getoption("--slow")
        # (agent, smart start, seed of the kill times): each learner with and without Smart
        # Start, one case each by default (two kills), 8 each with --slow (up to five kills).
        cases = [(*learner, seed) for learner in LEARNERS for seed in range(8 if slow else 1)]
        metafunc.parametrize("kill_case", cases, ids=[f"{a}-ss{int(s)}-{n}" for a, s, n in cases])


def _main_in_child(argv: list[str]) -> None:
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the child exits)
    os._exit(main(argv))


def test_kill_9_then_resume_gives_the_uninterrupted_episodes(tmp_path, slow, kill_case):
    agent, smart_start, seed = kill_case
    flags = [*KILL_FLAGS, "--agent", agent, "--smart-start" if smart_start else "--no-smart-start"]
    reference = tmp_path / "reference"
    started = time.perf_counter()
    assert main([*flags, "--run-dir", str(reference)]) == 0
    duration = time.perf_counter() - started

    rng = np.random.default_rng([seed, agent == "dqn", smart_start])
    run_dir = tmp_path / "killed"
    context = multiprocessing.get_context("fork")  # no re-import of torch: ~ms per start
    for kill in range(int(rng.integers(2, 6)) if slow else 2):
        resumable = (run_dir / runlog.CONFIG_FILE).exists()
        argv = ["--resume", str(run_dir), "--quiet"] if resumable else flags
        if not resumable:
            argv = [*flags, "--run-dir", str(run_dir)]
        child = context.Process(target=_main_in_child, args=(argv,))
        child.start()
        child.join(timeout=float(rng.uniform(0.0, 1.2 * duration)))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode in (0, -signal.SIGKILL), (kill, child.exitcode)
    if (run_dir / runlog.CONFIG_FILE).exists():
        assert main(["--resume", str(run_dir), "--quiet"]) == 0
    else:
        assert main([*flags, "--run-dir", str(run_dir)]) == 0
    assert rows_without_wall_clock(run_dir) == rows_without_wall_clock(reference)


def test_extending_the_default_dqn_equals_one_longer_run(tmp_path):
    # The defaults' count-model values for every goal come from a cache of searches made
    # within a credit per batch; a resume that lost that schedule gave other values, then
    # other losses and moves (the issue's own case: 1537 steps, then 3000).
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["--run-dir", str(whole), "--total-steps", "3000", "--quiet"]) == 0
    assert main(["--run-dir", str(parts), "--total-steps", "1537", "--quiet"]) == 0
    assert main(["--resume", str(parts), "--total-steps", "3000", "--quiet"]) == 0
    assert rows_without_wall_clock(parts) == rows_without_wall_clock(whole)
