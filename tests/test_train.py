"""The trainer and its command line: run directories, dashboards, resume, determinism, errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import goal_envs
import gymnasium
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sshr_torch import runlog
from sshr_torch.agents import DQNAgent
from sshr_torch.build import make_agent, make_env
from sshr_torch.config import LONG_PATHS, ConfigError, TrainConfig
from sshr_torch.her import Batch
from sshr_torch.maze import shortest_path_length
from sshr_torch.train import main
from sshr_torch.trainer import Trainer, resume_config, train

# A tiny, quick configuration: the 4x3 unscaled Easy maze, 30-step episodes.
TINY = [
    "--maze", "keulen_easy_unscaled", "--max-episode-steps", "30", "--episodes", "4",
    "--learning-starts", "20", "--batch-size", "16", "--hidden-sizes", "32",
    "--eval-interval", "2", "--eval-episodes", "2", "--image-interval", "2",
    "--checkpoint-interval", "2", "--quiet",
]  # fmt: skip


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    values = dict(
        maze="keulen_easy_unscaled",
        max_episode_steps=30,
        episodes=4,
        learning_starts=20,
        batch_size=16,
        hidden_sizes=(32,),
        eval_interval=2,
        eval_episodes=2,
        image_interval=0,
        checkpoint_interval=2,
        quiet=True,
        run_dir=str(tmp_path / "run"),
    )
    values.update(overrides)
    return TrainConfig(**values)


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / runlog.EPISODES_FILE).open() as file:
        return list(csv.DictReader(file))


def without_wall_clock(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def scalar_tags(run_dir: Path) -> set[str]:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"]) | set(accumulator.Tags()["images"])


@pytest.mark.parametrize("agent", ["dqn", "tabular"])
@pytest.mark.parametrize("her", ["none", "final", "future", "episode", "random"])
@pytest.mark.parametrize("smart_start", [True, False])
def test_command_line_writes_a_complete_run(tmp_path, agent, her, smart_start):
    run_dir = tmp_path / "run"
    flags = ["--agent", agent, "--her", her, "--run-dir", str(run_dir)]
    flags.append("--smart-start" if smart_start else "--no-smart-start")
    assert main(TINY + flags) == 0

    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["agent"], saved["her"], saved["smart_start"]) == (agent, her, smart_start)
    rows = read_rows(run_dir)
    assert [int(row["episode"]) for row in rows] == [0, 1, 2, 3]
    assert set(runlog.EPISODE_COLUMNS) <= set(rows[0])
    # Env steps add up the episode lengths, and no episode outlives the 30-step limit.
    lengths = [int(row["length"]) for row in rows]
    assert int(rows[-1]["env_steps"]) == sum(lengths)
    assert max(lengths) <= 30
    # Smart Start never runs in the first episode, and only when it is switched on.
    assert rows[0]["smart_start"] == "0"
    assert any(row["smart_start"] == "1" for row in rows) == smart_start

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["env_steps"] == sum(lengths)
    assert 0.0 <= summary["eval_success_rate"] <= 1.0
    assert (run_dir / "checkpoint.pt").is_file()

    tags = scalar_tags(run_dir)
    expected = {
        "rollout/episodic_return",
        "rollout/episodic_length",
        "rollout/success",
        "rollout/success_rate",
        "train/epsilon",
        "train/n_updates",
        "her/buffer_size",
        "eval/success_rate",
        "eval/mean_length",
        "time/sps",
        "maze/visits",
        "maze/policy",
    }
    if smart_start:
        expected |= {"smart_start/used", "smart_start/plan_length", "smart_start/reached"}
    if her != "none":
        expected.add("her/relabelled_fraction")
    assert expected <= tags, expected - tags


def test_tabular_with_smart_start_learns_the_easy_maze(tmp_path):
    """The paper's tabular setting finds the goal and ends with a greedy path close to optimal."""
    config = tiny_config(
        tmp_path,
        agent="tabular",
        maze="keulen_easy",
        max_episode_steps=1000,
        episodes=60,
        eval_interval=0,
        checkpoint_interval=60,
    )
    result = train(config)
    assert result.summary["first_success_step"] is not None
    assert result.summary["eval_success_rate"] == 1.0
    # The shortest path is 19 steps; the greedy path must be near it.
    assert result.summary["eval_mean_length"] <= 25


@pytest.mark.parametrize("agent", ["tabular", "dqn"])
def test_same_seed_gives_the_same_episodes(tmp_path, agent):
    first = train(tiny_config(tmp_path / "a", agent=agent, slip=0.1, episodes=5))
    second = train(tiny_config(tmp_path / "b", agent=agent, slip=0.1, episodes=5))
    other = train(tiny_config(tmp_path / "c", agent=agent, slip=0.1, episodes=5, seed=1))
    rows = without_wall_clock(read_rows(first.run_dir))
    assert rows == without_wall_clock(read_rows(second.run_dir))
    assert rows != without_wall_clock(read_rows(other.run_dir))


def test_train_accepts_a_goal_env_that_is_not_a_maze(tmp_path):
    env = goal_envs.BitFlippingEnv(n_bits=4)
    config = tiny_config(tmp_path, episodes=6, learning_starts=8, image_interval=2)
    result = train(config, env=env)
    rows = read_rows(result.run_dir)
    assert len(rows) == 6
    assert all(int(row["length"]) <= 4 for row in rows)
    # Smart Start keys MultiBinary states by their bytes; its targets are logged as hex.
    assert any(row["ss_target"] for row in rows)
    assert not any(result.run_dir.glob("*.png"))
    assert "maze/visits" not in scalar_tags(result.run_dir)


def test_dqn_targets_clamped_to_the_maze_return_range_only(tmp_path):
    maze_env = make_env(tiny_config(tmp_path))
    plain = tiny_config(tmp_path, step_reward=0.0)
    assert make_agent(plain, maze_env, 0).target_range == (0.0, 1.0)
    # the defaults: reward -1 per step (0 at the goal), gamma 0.999: [-1 / (1 - gamma), 0]
    defaults = make_agent(tiny_config(tmp_path), maze_env, 0).target_range
    assert defaults == pytest.approx((-1000.0, 0.0))
    unclipped = make_agent(tiny_config(tmp_path, clip_target=False), maze_env, 0)
    assert unclipped.target_range is None
    # an env passed to train() has rewards we do not know: never clamped
    bits = goal_envs.BitFlippingEnv(n_bits=4)
    assert make_agent(tiny_config(tmp_path), bits, 0).target_range is None
    # a maze env with other rewards (all of them end the episode): their range
    misleading = gymnasium.make("sshr_torch/GridMazeMisleading-v0")
    assert make_agent(plain, misleading, 0).target_range == (-1.0, 100.0)


def test_step_reward_moves_the_clamp_and_n_step_runs(tmp_path):
    config = tiny_config(tmp_path, step_reward=-1.0, gamma=0.9, n_step=3)
    agent = make_agent(config, make_env(config), 0)
    assert agent.target_range == pytest.approx((-10.0, 0.0))  # [c / (1 - gamma), 0]
    result = train(config)
    assert result.summary["episodes"] == 4
    assert result.summary["n_updates"] > 0


def test_ss_value_zero_leaves_the_learner_out_of_eq_1(tmp_path, monkeypatch):
    def no_values(self, states, goal):
        raise AssertionError("Eq. 1 asked the learner for values")

    monkeypatch.setattr(DQNAgent, "max_q", no_values)
    zero = tiny_config(tmp_path, ss_value="zero", episodes=6, run_dir=str(tmp_path / "a"))
    train(zero)
    # Unset, the DQN's Eq. 1 is counts alone too; the tabular learner's uses its values.
    train(tiny_config(tmp_path, episodes=6, run_dir=str(tmp_path / "b")))
    assert tiny_config(tmp_path).eq1_value == "zero"
    assert tiny_config(tmp_path, agent="tabular").eq1_value == "learner"
    learner = tiny_config(tmp_path, ss_value="learner", episodes=6, run_dir=str(tmp_path / "c"))
    with pytest.raises(AssertionError, match="Eq. 1"):
        train(learner)


def _run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sshr_torch.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def _wait_for_rows(run_dir: Path, n_rows: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    path = run_dir / runlog.EPISODES_FILE
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) > n_rows:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("the run did not write enough episodes in time")


RESUMABLE = [
    "--agent", "tabular", "--maze", "keulen_easy", "--max-episode-steps", "200",
    "--episodes", "40", "--checkpoint-interval", "3", "--eval-interval", "5",
    "--image-interval", "0", "--slip", "0.1", "--quiet",
]  # fmt: skip


def test_resume_after_sigkill_continues_the_same_episodes(tmp_path):
    reference = tmp_path / "reference"
    assert main(RESUMABLE + ["--run-dir", str(reference)]) == 0

    killed = tmp_path / "killed"
    process = _run_cli(RESUMABLE + ["--run-dir", str(killed)])
    _wait_for_rows(killed, 8, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (
        not (killed / "summary.json").exists()
        or json.loads((killed / "summary.json").read_text())["episodes"] < 40
    )

    assert main(["--resume", str(killed), "--quiet"]) == 0
    rows = read_rows(killed)
    assert [int(row["episode"]) for row in rows] == list(range(40))
    assert without_wall_clock(rows) == without_wall_clock(read_rows(reference))
    assert json.loads((killed / "summary.json").read_text())["episodes"] == 40
    # The TensorBoard curves continue: one env-step axis, no step written twice.
    accumulator = EventAccumulator(str(killed))
    accumulator.Reload()
    steps = [event.step for event in accumulator.Scalars("rollout/episodic_length")]
    assert steps == sorted(set(steps))
    assert steps[-1] == int(rows[-1]["env_steps"])


def test_resume_before_the_first_checkpoint_starts_over_with_the_same_episodes(tmp_path):
    config = tiny_config(tmp_path, agent="tabular", slip=0.1, episodes=4, checkpoint_interval=50)
    result = train(config)
    finished = without_wall_clock(read_rows(result.run_dir))
    # As if killed before any checkpoint: rows on disk, no checkpoint, no summary.
    (result.run_dir / "checkpoint.pt").unlink()
    (result.run_dir / "summary.json").unlink()
    assert main(["--resume", str(result.run_dir), "--quiet"]) == 0
    assert without_wall_clock(read_rows(result.run_dir)) == finished


def test_resume_can_extend_a_finished_run(tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(tmp_path, agent="tabular", episodes=3))
    assert main(["--resume", str(run_dir), "--episodes", "6", "--quiet"]) == 0
    assert [int(row["episode"]) for row in read_rows(run_dir)] == list(range(6))


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    args = RESUMABLE[:-1] + ["--episodes", "100000", "--run-dir", str(run_dir)]
    process = _run_cli(args)
    _wait_for_rows(run_dir, 3, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] is True
    checkpoint = runlog.load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["progress"]["episode"] == summary["episodes"] == len(read_rows(run_dir))


def _bad_maze(tmp_path: Path) -> str:
    path = tmp_path / "bad.txt"
    path.write_text("S..\n.#\n..G\n")
    return str(path)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--maze", "no_such_maze"], "no_such_maze"),
        (["--maze", "BAD_FILE"], "bad.txt"),
        (["--episodes", "0"], "--episodes"),
        (["--total-steps", "-5"], "--total-steps"),
        (["--her", "sometimes"], "--her"),
        (["--ss-value", "half"], "--ss-value"),
        (["--agent", "ppo"], "--agent"),
        (["--eta", "1.5"], "--eta"),
        (["--her-k", "0"], "--her-k"),
        (["--explore", "ucb1", "--no-smart-start"], "--explore ucb1"),
        (["--explore", "directed", "--no-smart-start"], "--explore directed"),
        (["--explore", "boltzmann"], "--explore"),
        (["--count-bonus", "-1"], "--count-bonus"),
        (["--off-policy-weight", "-0.5"], "--off-policy-weight"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--episodes", "many"], "--episodes"),
        (["--resume", "MISSING_DIR"], "missing"),
        (["--run-dir", "UNWRITABLE"], "blocker"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, args, needle):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    replacements = {
        "BAD_FILE": _bad_maze(tmp_path),
        "MISSING_DIR": str(tmp_path / "missing"),
        "UNWRITABLE": str(blocker / "run"),
    }
    args = [replacements.get(arg, arg) for arg in args]
    with pytest.raises(SystemExit) as exit_info:
        status = main(args + ["--quiet"])
        raise SystemExit(status)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:") and needle in err


def test_corrupt_checkpoint_is_reported_and_run_data_kept(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_config(tmp_path, agent="tabular", episodes=2))
    rows_before = (run_dir / runlog.EPISODES_FILE).read_text()
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["--resume", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint.pt" in err
    assert (run_dir / runlog.EPISODES_FILE).read_text() == rows_before


def test_resume_refuses_to_change_the_saved_settings(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_config(tmp_path, agent="tabular", episodes=2))
    assert main(["--resume", str(run_dir), "--her", "final"]) == 2
    assert "--her" in capsys.readouterr().err


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    process = _run_cli(["--maze", _bad_maze(tmp_path), "--quiet"])
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_help_explains_every_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("--her-k", "--smart-start", "--no-smart-start", "--c-ss", "--resume"):
        assert name in out
    assert "Exploration weight c_ss" in out
    assert "--ss-value {learner,zero}" in out
    assert "Through the experiment the value function will be zero" in " ".join(out.split())


@pytest.mark.parametrize("ss_value", ["learner", "zero"])
def test_smart_start_distance_to_the_goal_is_logged(tmp_path, ss_value):
    config = tiny_config(
        tmp_path, agent="tabular", ss_value=ss_value, random_goal=True, episodes=12
    )
    run_dir = train(config).run_dir
    rows = [row for row in read_rows(run_dir) if row["smart_start"] == "1"]
    assert rows and all(float(row["ss_target_distance"]) >= 0 for row in rows)
    assert json.loads((run_dir / "config.json").read_text())["ss_value"] == ss_value
    assert "smart_start/target_distance_to_goal" in scalar_tags(run_dir)


def test_random_until_goal_explores_at_random_until_the_goal_is_reached(tmp_path):
    settings = dict(
        episodes=10, epsilon_start=0.2, epsilon_end=0.2, eval_interval=0, explore="epsilon"
    )
    rows = read_rows(train(tiny_config(tmp_path, **settings)).run_dir)
    first = next(i for i, row in enumerate(rows) if row["success"] == "1")
    assert first < len(rows) - 1  # the goal was reached before the last episode
    # up to and including the episode that first reaches the goal: uniformly random moves
    assert [float(row["epsilon"]) for row in rows[: first + 1]] == [1.0] * (first + 1)
    assert {float(row["epsilon"]) for row in rows[first + 1 :]} == {0.2}
    plain = tiny_config(tmp_path, random_until_goal=False, run_dir=str(tmp_path / "b"), **settings)
    assert {float(row["epsilon"]) for row in read_rows(train(plain).run_dir)} == {0.2}


def test_episodes_over_1000_steps_give_the_dqn_the_long_path_defaults(tmp_path):
    """Unset, gamma and the model loss follow the episode limit for the DQN only; a value
    given wins; the learner is built with the resolved ones."""
    assert (TrainConfig().discount, TrainConfig().q_fit) == (0.999, "entries")
    long = TrainConfig(max_episode_steps=1001)
    assert (long.discount, long.q_fit) == (LONG_PATHS["gamma"], LONG_PATHS["model_loss"])
    assert (long.gamma, long.model_loss) == (None, None)  # config.json keeps them unset
    pinned = TrainConfig(max_episode_steps=5000, gamma=0.999, model_loss="entries")
    assert (pinned.discount, pinned.q_fit) == (0.999, "entries")
    assert TrainConfig(agent="tabular", max_episode_steps=5000).discount == 0.99
    trainer = Trainer(tiny_config(tmp_path, max_episode_steps=1500))
    try:
        assert trainer.agent.gamma == LONG_PATHS["gamma"]
        assert trainer.agent.model_loss == LONG_PATHS["model_loss"]
    finally:
        trainer.close()


def test_model_values_come_from_the_count_model(tmp_path):
    config = tiny_config(tmp_path, episodes=8, eval_interval=0)
    trainer = Trainer(config)
    try:
        assert trainer.agent.model_values is trainer.model_values is not None
        assert trainer.agent.model_mode == config.model_values == "q"
        assert config.model_loss is None and trainer.agent.model_loss == config.q_fit == "entries"
    finally:
        trainer.close()
    split = tiny_config(tmp_path, episodes=8, model_loss="split", run_dir=str(tmp_path / "s"))
    trainer = Trainer(split)
    try:
        assert trainer.agent.model_loss == "split"
    finally:
        trainer.close()
    with pytest.raises(ConfigError, match="--model-loss"):
        tiny_config(tmp_path, model_loss="rows").validate()
    result = train(tiny_config(tmp_path, episodes=8, eval_interval=0, run_dir=str(tmp_path / "b")))
    assert result.summary["first_success_step"] is not None
    assert "train/model_share" in scalar_tags(result.run_dir)
    floor = result.agent.model_values
    maze = make_env(config).unwrapped.maze
    start, goal = maze.start_index, maze.goal_index
    # A deterministic maze, reward -1 per step and 0 at the goal (the defaults): V = -(1 -
    # gamma^(d - 1)) / (1 - gamma) for the fewest moves d the model has seen from the start,
    # never more than the shortest path's value.
    value = float(floor(np.array([start]), np.array([goal]))[0])
    gamma = config.discount
    d = 1 + math.log(1 + value * (1 - gamma)) / math.log(gamma)
    assert d == pytest.approx(round(d), abs=1e-3) and round(d) >= shortest_path_length(maze)
    assert float(floor(np.array([start]), np.array([start]))[0]) == -math.inf  # another goal
    # Off, or where it does not apply (no Smart Start): none.
    for overrides in ({"model_values": "off"}, {"smart_start": False}):
        run_dir = str(tmp_path / str(overrides))
        trainer = Trainer(tiny_config(tmp_path, run_dir=run_dir, **overrides))
        try:
            assert trainer.agent.model_values is None and trainer.model_values is None
        finally:
            trainer.close()


def test_stop_success_ends_the_run_at_the_first_evaluation_that_meets_it(tmp_path):
    settings = dict(agent="tabular", episodes=200, eval_interval=2, eval_episodes=3)
    plain = train(tiny_config(tmp_path, run_dir=str(tmp_path / "a"), **settings))
    assert plain.summary["episodes"] == 200 and plain.summary["solved_step"] is None
    config = tiny_config(tmp_path, stop_success=1.0, stop_path_factor=1.0, **settings)
    result = train(config)
    solved, summary = result.summary["solved_step"], result.summary
    assert solved is not None and summary["episodes"] < 200 and summary["env_steps"] == solved
    # it stopped at the first evaluation of optimal greedy paths (the same run as above up to
    # there: the same seed), and that evaluation was all successes on the shortest path
    shortest = shortest_path_length(make_env(config).unwrapped.maze)
    curve = EventAccumulator(str(result.run_dir), size_guidance={"scalars": 0})
    curve.Reload()
    success = [(e.step, e.value) for e in curve.Scalars("eval/success_rate")]
    length = {e.step: e.value for e in curve.Scalars("eval/mean_length")}
    met = [step for step, rate in success if rate == 1.0 and length[step] <= shortest]
    assert met[0] == solved and [step for step, _ in success if step < solved]
    assert summary["eval_success_rate"] == 1.0 and summary["eval_mean_length"] == shortest
    with pytest.raises(ConfigError, match="--stop-success"):
        tiny_config(tmp_path, stop_success=0.0).validate()
    with pytest.raises(ConfigError, match="--stop-path-factor"):
        tiny_config(tmp_path, stop_path_factor=0.5).validate()


def test_a_resumed_dqn_continues_with_the_count_models_values(tmp_path):
    # The DQN regresses onto the count model's values for the goal of the last episode; a
    # resumed run must have them from its first update on, as the uninterrupted run has.
    settings = dict(eval_interval=0, checkpoint_interval=1, learning_starts=10)
    reference = train(tiny_config(tmp_path, episodes=10, run_dir=str(tmp_path / "a"), **settings))
    first = reference.summary["first_success_step"]
    assert first is not None and first < int(read_rows(reference.run_dir)[5]["env_steps"])
    train(tiny_config(tmp_path, episodes=6, run_dir=str(tmp_path / "b"), **settings))
    resumed = train(resume_config(tmp_path / "b", episodes=10))
    assert resumed.agent.model_values.goal == reference.agent.model_values.goal is not None
    rows, expected = read_rows(resumed.run_dir), read_rows(reference.run_dir)
    assert without_wall_clock(rows) == without_wall_clock(expected)


# --- issue 24: envs and networks passed to train() -------------------------------------------


def sb3_bit_flipping(n_bits: int = 4):
    """SB3's BitFlippingEnv with Discrete goals (skips without the bench extra, as the other
    SB3 tests do; the CI installs it)."""
    envs = pytest.importorskip(
        "stable_baselines3.common.envs", reason="needs pip install -e '.[bench]' (CI has it)"
    )
    BitFlippingEnv = envs.BitFlippingEnv

    return BitFlippingEnv(n_bits=n_bits, discrete_obs_space=True)


@pytest.mark.parametrize("agent", ["dqn", "tabular"])
def test_sb3_bit_flipping_with_discrete_goals_trains_and_resumes_as_one_run(tmp_path, agent):
    # Its compute_reward reads a batch of Discrete goals as one goal (one value for the batch);
    # its start states come from a space of its own, which reset(seed=...) seeds.
    settings = dict(agent=agent, step_reward=0.0, eval_interval=0, checkpoint_interval=5)
    whole = train(tiny_config(tmp_path / "a", episodes=30, **settings), env=sb3_bit_flipping())
    rows = read_rows(whole.run_dir)
    assert len(rows) == 30 and any(row["success"] == "1" for row in rows)
    train(tiny_config(tmp_path / "b", episodes=12, **settings), env=sb3_bit_flipping())
    resumed = train(resume_config(tmp_path / "b" / "run", episodes=30), env=sb3_bit_flipping())
    assert without_wall_clock(read_rows(resumed.run_dir)) == without_wall_clock(rows)


def test_relabelled_rewards_of_sb3_bit_flipping_are_per_goal(tmp_path):
    config = tiny_config(tmp_path, agent="tabular", episodes=1, step_reward=0.0)
    env = sb3_bit_flipping(n_bits=3)
    env.reset(seed=0)  # (its compute_reward reads the width of its state)
    trainer = Trainer(config, env=env)
    try:
        achieved = np.array([7, 7, 3, 0])
        desired = np.array([7, 3, 3, 7])
        assert trainer._compute_reward(achieved, desired).tolist() == [0.0, -1.0, 0.0, -1.0]
    finally:
        trainer.close()


@pytest.mark.parametrize(("step_reward", "arrival", "move"), [(0.0, 0.0, -1.0), (-1.0, -1.0, -2.0)])
def test_model_values_use_the_env_rewards_plus_step_reward(tmp_path, step_reward, arrival, move):
    # An env that pays -1 per step and 0 at the goal (README: step_reward=0 suits it): the
    # count model's rewards are what the learner sees, the env's plus step_reward.
    config = tiny_config(tmp_path, episodes=3, step_reward=step_reward, model_values="q")
    values = train(config, env=sb3_bit_flipping()).agent.model_values
    assert (values.goal_reward, values.step_reward) == (arrival, move)
    maze = train(tiny_config(tmp_path / "maze", episodes=3, step_reward=step_reward))
    assert (maze.agent.model_values.goal_reward, maze.agent.model_values.step_reward) == (
        1.0 + step_reward,
        step_reward,
    )


def test_a_run_on_its_own_env_resumed_from_the_command_line_says_how(tmp_path, capsys):
    result = train(tiny_config(tmp_path, episodes=2), env=goal_envs.BitFlippingEnv(n_bits=4))
    status = main(["--resume", str(result.run_dir), "--episodes", "4", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "BitFlipEnv" in err and "train(resume_config(" in err and "env=" in err, err
    assert len(read_rows(result.run_dir)) == 2


@pytest.mark.parametrize(
    ("setting", "flag"),
    [
        ({"slip": 0.1}, "--slip"),
        ({"random_goal": True}, "--random-goal"),
        ({"random_start": True}, "--random-start"),
        ({"stop_success": 1.0, "stop_path_factor": 1.5}, "--stop-path-factor"),
    ],
)
def test_maze_settings_with_an_env_of_ones_own_are_refused(tmp_path, setting, flag):
    config = tiny_config(tmp_path, **setting)
    with pytest.raises(ConfigError, match=flag):
        train(config, env=goal_envs.BitFlippingEnv(n_bits=4))
    assert not (tmp_path / "run").exists()


def test_max_episode_steps_applies_to_an_env_of_ones_own(tmp_path):
    config = tiny_config(tmp_path, episodes=6, max_episode_steps=2, n_step=2)
    result = train(config, env=goal_envs.BitFlippingEnv(n_bits=6))  # its own limit: 6 steps
    assert {row["length"] for row in read_rows(result.run_dir)} <= {"1", "2"}
    assert json.loads((result.run_dir / runlog.CONFIG_FILE).read_text())["max_episode_steps"] == 2
    with pytest.raises(ConfigError, match="--n-step 3"):
        train(
            tiny_config(tmp_path / "b", max_episode_steps=2, n_step=3),
            env=goal_envs.BitFlippingEnv(),
        )


class _Returns(torch.nn.Module):
    """A Q-network that returns what it is told to, whatever its inputs."""

    def __init__(self, make) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.make = make

    def forward(self, state, goal):
        return self.make(len(state)) + self.weight * 0


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda b: torch.zeros(b, 3), "shape (2, 3)"),
        (lambda b: torch.zeros(b), "shape (2,)"),
        (lambda b: torch.full((b, 4), math.nan), "not finite"),
        (lambda b: torch.full((b, 4), math.inf), "not finite"),
        (lambda b: torch.zeros(b, 4, dtype=torch.float64), "float64"),
        (lambda b: torch.zeros(b, 4, dtype=torch.int64), "int64"),
        (lambda b: [0.0] * 4, "list"),
    ],
)
def test_a_q_network_of_the_wrong_kind_is_refused_at_start_up(tmp_path, make, needle):
    network = _Returns(make)
    if needle == "int64":
        network.weight = torch.nn.Parameter(torch.zeros(1)).requires_grad_(False)
        network.forward = lambda state, goal: make(len(state))  # type: ignore[method-assign]
    with pytest.raises(
        ConfigError, match=r"q_network.*" + needle.replace("(", r"\(").replace(")", r"\)")
    ):
        train(tiny_config(tmp_path), q_network=network)
    assert not (tmp_path / "run").exists()


class _PaysNothing(goal_envs.OpenRoomEnv):
    """An open room whose rewards are all 0, the goal's included."""

    def step(self, action: int):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, 0.0, terminated, truncated, info

    def compute_reward(self, achieved_goal, desired_goal, info) -> np.ndarray:
        return np.zeros(np.shape(achieved_goal), dtype=np.float32)


def test_model_values_the_env_rewards_cannot_give_are_refused_at_start_up(tmp_path):
    # Reaching a goal pays what never reaching it pays: the count model's values say nothing.
    config = tiny_config(tmp_path, step_reward=0.0, model_values="q")
    with pytest.raises(ConfigError, match="--step-reward 0.0 with --model-values q"):
        train(config, env=_PaysNothing())
    assert not (tmp_path / "run").exists()
    result = train(tiny_config(tmp_path, step_reward=-1.0, episodes=2), env=_PaysNothing())
    assert (result.agent.model_values.goal_reward, result.agent.model_values.step_reward) == (
        -1.0,
        -1.0,
    )


# ---- directed exploration, the count bonus, stopping at the first goal -----------------------


def _first_goal_config(tmp_path: Path, name: str, **overrides) -> TrainConfig:
    """generated:21x21:seed=0 (241 free cells), 5000-step episodes, stop at the first goal."""
    values = dict(
        maze="generated:21x21:seed=0",
        max_episode_steps=5000,
        total_steps=60_000,
        eval_interval=0,
        stop_first_goal=True,
        run_dir=str(tmp_path / name),
    )
    return tiny_config(tmp_path, **{**values, **overrides})


def test_stop_first_goal_ends_the_run_with_the_first_successful_episode(tmp_path):
    result = train(tiny_config(tmp_path, agent="tabular", episodes=50, stop_first_goal=True))
    rows = read_rows(result.run_dir)
    assert [row["success"] for row in rows].count("1") == 1 and rows[-1]["success"] == "1"
    assert result.summary["first_success_step"] <= result.summary["env_steps"]
    assert result.summary["episodes"] == len(rows) < 50


def test_directed_exploration_reaches_the_first_goal_near_the_dfs_bound(tmp_path):
    maze = make_env(_first_goal_config(tmp_path, "x")).maze
    n_free = len(maze.free_cells)
    directed = dict(explore="directed")
    tabular = train(_first_goal_config(tmp_path, "tabular", agent="tabular", **directed))
    first = tabular.summary["first_success_step"]
    # In one long episode: every (s, a) of a perfect maze tried once is 4n steps (2(n - 1)
    # moves, the DFS bound, and about 2n wall bumps), plus walks back to the frontier.
    assert first is not None and first <= 6 * n_free
    # Before the goal is reached the exploration reads counts only: the DQN's first goal is
    # the tabular learner's, to the step.
    dqn = train(_first_goal_config(tmp_path, "dqn", **directed))
    assert dqn.summary["first_success_step"] == first
    # The paper's exploration (a random walk after the walk to S_ss) needs several times more.
    paper = train(_first_goal_config(tmp_path, "paper", agent="tabular", explore="epsilon"))
    assert (
        paper.summary["first_success_step"] is None
        or paper.summary["first_success_step"] > 2 * first
    )


def test_exploration_defaults_to_directed_where_it_applies(tmp_path):
    def made(name: str, env=None, **overrides) -> tuple[str, bool]:
        trainer = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / name), **overrides), env)
        try:
            frontier = trainer.controller is not None and trainer.controller.frontier
            return trainer.exploration, frontier
        finally:
            trainer.close()

    assert made("default") == ("directed", True)
    assert made("paper", explore="epsilon") == ("epsilon", False)
    assert made("ucb1", explore="ucb1") == ("ucb1", False)
    assert made("own", explore="directed", ss_frontier=False) == ("directed", False)
    assert made("frontier", explore="epsilon", ss_frontier=True) == ("epsilon", True)
    # where it does not apply, the default is the paper's: no Smart Start, goals not states
    assert made("no_ss", smart_start=False) == ("epsilon", False)
    assert made("bits", goal_envs.BitFlippingEnv(n_bits=4)) == ("epsilon", False)


def test_ucb1_alone_explores_without_walks_to_the_frontier(tmp_path):
    # UCB1 alone is a local rule: once every action around it was tried it wanders by
    # least-tried actions, where the directed exploration walks to the frontier
    ucb1 = train(_first_goal_config(tmp_path, "ucb1", agent="tabular", explore="ucb1"))
    directed = train(_first_goal_config(tmp_path, "directed", agent="tabular", explore="directed"))
    first = directed.summary["first_success_step"]
    assert ucb1.summary["first_success_step"] is None or ucb1.summary["first_success_step"] > first


def test_ucb1_needs_goals_that_are_states(tmp_path):
    with pytest.raises(ConfigError, match="--explore ucb1"):
        Trainer(tiny_config(tmp_path, explore="ucb1"), env=goal_envs.BitFlippingEnv(n_bits=4))


def test_count_bonus_is_added_to_the_stored_rewards_and_checkpointed(tmp_path):
    config = tiny_config(tmp_path, smart_start=False, count_bonus=0.5, episodes=3)
    result = train(config)
    trainer_counts = runlog.load_checkpoint(result.run_dir / "checkpoint.pt")["counts"]
    assert trainer_counts["n_steps"] == result.summary["env_steps"]
    # the same run, its buffer read: r + 0.5 / sqrt(C(s, a)) on the real rewards
    trainer = Trainer(dataclasses.replace(config, run_dir=str(tmp_path / "again")))
    trainer.run()
    buffer, n = trainer.buffer, result.summary["env_steps"]
    assert trainer.counts is not None and trainer.counts.n_steps == n
    stored = buffer._reward[:n].astype(np.float64)
    assert stored[0] == pytest.approx(0.5)  # the first step: C(s, a) = 1, env reward 0
    counts: dict[tuple[int, int], int] = {}
    expected = []
    for obs, action in zip(buffer._obs[:n], buffer._action[:n], strict=True):
        key = (int(obs), int(action))
        counts[key] = counts.get(key, 0) + 1
        expected.append(0.5 / math.sqrt(counts[key]))
    env_rewards = stored - np.array(expected)
    assert np.allclose(env_rewards[env_rewards > 0.5], 1.0)  # the goal's reward, where reached
    assert np.allclose(env_rewards[env_rewards <= 0.5], 0.0, atol=1e-6)
    # the episode's return stays the env's
    returns = [float(row["return"]) for row in read_rows(result.run_dir)]
    assert set(returns) <= {0.0, 1.0}


@pytest.mark.parametrize("explore", ["epsilon", "directed"])
def test_guided_steps_are_stored_as_off_policy(tmp_path, explore):
    # With --explore epsilon (and no random moves until the goal) every step that is not Smart
    # Start's guided walk is the learner's own: the buffer's off-policy steps are exactly the
    # guided ones. The directed exploration's moves are off-policy too: at least as many.
    config = tiny_config(
        tmp_path,
        episodes=6,
        explore=explore,
        random_until_goal=False,
        off_policy_weight=0.5,
        n_step_cut=True,
    )
    trainer = Trainer(config)
    trainer.run()
    trainer.close()
    guided = sum(int(row["ss_steps"]) for row in read_rows(tmp_path / "run"))
    buffer = trainer.buffer
    flags = buffer._off_policy[: buffer._head]
    assert guided > 0
    if explore == "epsilon":
        assert int(flags.sum()) == guided
    else:
        assert int(flags.sum()) >= guided
    assert not flags.all()


def test_lr_half_life_halves_the_learning_rate_every_that_many_updates(tmp_path):
    maze_env = make_env(tiny_config(tmp_path))
    agent = make_agent(tiny_config(tmp_path, lr_half_life=4, learning_rate=1e-3), maze_env, 0)
    constant = make_agent(tiny_config(tmp_path), maze_env, 0)
    assert agent.fast is not None  # the fast path reads the scheduled rate too
    rng = np.random.default_rng(0)
    n = maze_env.observation_space["observation"].n
    for _ in range(8):
        states = rng.integers(n, size=16)
        batch = Batch(
            obs=states,
            goal=rng.integers(n, size=16),
            action=rng.integers(4, size=16),
            reward=np.full(16, -1.0, np.float32),
            next_obs=states,
            terminal=np.zeros(16, np.float32),
            relabelled=np.zeros(16, bool),
        )
        agent.update(batch)
        constant.update(batch)
    for optimizer in agent.optimizers:  # 8 updates, half-life 4: a quarter
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert all(opt.param_groups[0]["lr"] == 1e-3 for opt in constant.optimizers)
    with pytest.raises(ConfigError, match="--lr-half-life"):
        tiny_config(tmp_path, lr_half_life=-1).validate()


def test_model_rows_draw_the_count_models_moves_and_end_at_decoys(tmp_path):
    # keulen_misleading's decoy 'g' ends an episode without success: the count model's rows
    # that arrive there end, with the failure tail, for every goal but the decoy's cell
    config = tiny_config(tmp_path, maze="keulen_misleading", episodes=40, max_episode_steps=60,
                         model_rows=0.5, model_values="off")  # fmt: skip
    trainer = Trainer(config)
    trainer.run()
    model, buffer = trainer.controller.model, trainer.buffer
    decoys = set(trainer.env.unwrapped.maze.decoy_indices.tolist())
    failed = set(np.flatnonzero(trainer._failed_ends).tolist())
    assert failed and failed <= decoys
    seen = {
        (int(s), int(a), int(s2))
        for s, a, s2 in zip(*model.sample_transitions(20_000, buffer.rng), strict=True)
    }
    observations = np.asarray(model.observations())
    seen = {(int(observations[s]), a, int(observations[s2])) for s, a, s2 in seen}
    batch = buffer.sample(4000)
    rows = slice(len(batch.obs) - int(np.round(0.5 * 4000)) + 50, None)  # surely the model's
    for s, a, s2 in zip(batch.obs[rows], batch.action[rows], batch.next_obs[rows], strict=True):
        assert (int(s), int(a), int(s2)) in seen
    assert set(batch.goal[rows].tolist()) <= set(observations.tolist())
    ends = np.isin(batch.next_obs[rows], list(failed)) & (batch.goal[rows] != batch.next_obs[rows])
    assert ends.any()
    assert (batch.terminal[rows][ends] == 1.0).all()
    assert (batch.reward[rows][ends] < config.step_reward).all()  # the failure tail
    assert trainer._state()["failed_ends"] == sorted(failed)


def test_model_rows_need_the_dqn_and_smart_start(tmp_path):
    for overrides in ({"agent": "tabular"}, {"smart_start": False}):
        with pytest.raises(ConfigError, match="--model-rows"):
            tiny_config(tmp_path, model_rows=0.5, **overrides).validate()
    with pytest.raises(ConfigError, match="--model-rows must be in"):
        tiny_config(tmp_path, model_rows=1.0).validate()


def test_q_head_distance_trains_a_distance_network_and_needs_one_hidden_size(tmp_path):
    from sshr_torch.agents.networks import DistanceQNetwork

    trainer = Trainer(tiny_config(tmp_path, q_head="distance", episodes=2))
    trainer.run()
    agent = trainer.agent
    assert isinstance(agent.q_network, DistanceQNetwork) and agent.fast is None
    assert agent.n_updates > 0
    q = agent.pair_q_values(np.arange(5), np.arange(5, 10))
    assert (q <= 0).all()  # minus a distance
    with pytest.raises(ConfigError, match="--q-head distance"):
        tiny_config(tmp_path, q_head="distance", hidden_sizes=(32, 32)).validate()


def test_priority_alpha_prioritises_the_runs_buffer_and_refuses_what_it_cannot_weigh(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, priority_alpha=0.6, model_values="off"))
    trainer.run()
    buffer = trainer.buffer
    assert buffer.priority_alpha == 0.6
    stored = np.arange(buffer._tail, buffer._running_start) % buffer.capacity
    # the learner's TD errors replaced the first priority (1) of the steps it replayed
    assert np.count_nonzero(buffer._priority[stored] != 1.0) > 0
    for overrides in ({}, {"model_values": "off", "model_rows": 0.5}, {"agent": "tabular"}):
        with pytest.raises(ConfigError, match="--priority-alpha"):
            tiny_config(tmp_path, priority_alpha=0.6, **overrides).validate()


def test_all_actions_takes_each_moves_next_state_and_reward_from_the_count_model(tmp_path):
    config = tiny_config(tmp_path, all_actions=True, model_values="off", episodes=6)
    trainer = Trainer(config)
    trainer.run()
    assert trainer.agent.action_targets is not None
    env = trainer.env.unwrapped
    table = trainer._successor_table
    tried = trainer.controller.model.state_action_counts > 0  # (n_model, A)
    states = np.asarray(trainer.controller.model.observations())
    # every tried move of the maze's deterministic table is known, and nothing else
    np.testing.assert_array_equal(table[states] >= 0, tried)
    np.testing.assert_array_equal(table[states][tried], env.next_cell[states][tried])
    goals = np.full(len(states), env.next_cell[states[0], 0])
    next_states, reward, terminal = trainer._action_rows(states, goals)
    reached = (next_states == goals[:, None]) & tried
    np.testing.assert_array_equal(terminal[tried], reached[tried])
    np.testing.assert_array_equal(reward[tried], np.where(reached[tried], 0.0, -1.0))
    with pytest.raises(ConfigError, match="--all-actions"):
        tiny_config(tmp_path, all_actions=True).validate()  # with the model's values


@pytest.mark.parametrize(
    "lever",
    [
        {"model_rows": 0.5, "maze": "keulen_misleading"},  # its decoy ends are checkpointed
        {"all_actions": True},
        {"priority_alpha": 0.6},
        {"advantage_alpha": 0.9},
    ],
    ids=["model_rows", "all_actions", "priority_alpha", "advantage_alpha"],
)
def test_a_resumed_run_with_a_lever_continues_as_the_uninterrupted_one(tmp_path, lever):
    settings = dict(eval_interval=0, checkpoint_interval=1, learning_starts=10,
                    model_values="off", max_episode_steps=40, **lever)  # fmt: skip
    reference = train(tiny_config(tmp_path, episodes=10, run_dir=str(tmp_path / "a"), **settings))
    train(tiny_config(tmp_path, episodes=6, run_dir=str(tmp_path / "b"), **settings))
    resumed = train(resume_config(tmp_path / "b", episodes=10))
    rows, expected = read_rows(resumed.run_dir), read_rows(reference.run_dir)
    assert len(rows) == 10 and without_wall_clock(rows) == without_wall_clock(expected)
