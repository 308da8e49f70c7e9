"""``--preset paper`` / ``TrainConfig(preset="paper")``: the paper's setting, explicit flags win."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sshr_torch.config import PAPER_SETTINGS, PRESETS, PROJECT_CHOICES, ConfigError, TrainConfig
from sshr_torch.sweep import grid
from sshr_torch.train import build_parser, config_from_args, main
from sshr_torch.trainer import Trainer, train

ROOT = Path(__file__).resolve().parents[1]
PAPER = PRESETS["paper"]


def test_the_paper_preset_is_the_papers_setting_as_written():
    config = TrainConfig(preset="paper").validate()
    # The paper's text: Eq. 1 from counts alone, reward 1 at the goal and 0 otherwise, and the
    # learner without this project's additions (n-step, count-model values, random moves).
    assert config.eq1_value == "zero" and config.ucb_form == "paper"
    assert config.step_reward == 0.0 and config.n_step == 1
    assert config.model_values == "off" and config.random_until_goal is False
    assert config.discount == 0.99
    # After the guided walk, the paper's epsilon-greedy, not the directed exploration.
    assert config.explore == "epsilon" and config.ss_frontier is False
    for name, value in PAPER_SETTINGS.items():
        assert getattr(config, name) == value, name
    # Each of the preset's settings differs from the DQN's defaults, or is a paper setting.
    default = TrainConfig()
    for name, value in PAPER.items():
        assert name in PAPER_SETTINGS or getattr(default, name) != value, name


def test_explicit_settings_win_and_copies_keep_the_resolved_values():
    config = TrainConfig(preset="paper", n_step=10, gamma=0.95, agent="tabular")
    assert (config.n_step, config.gamma, config.agent) == (10, 0.95, "tabular")
    assert config.step_reward == 0.0 and config.ss_value == "zero"  # the rest is the preset's
    # An explicit value equal to the project default still wins over the preset.
    assert TrainConfig(preset="paper", model_values="q").model_values == "q"
    # config.json's round trip and dataclasses.replace pass every field: nothing is re-applied.
    assert TrainConfig.from_dict(config.to_dict()) == config
    copy = dataclasses.replace(config, seed=3)
    assert copy.n_step == 10 and copy.seed == 3 and copy.preset == "paper"
    # Without a preset, nothing changes.
    assert TrainConfig() == TrainConfig(preset=None)
    assert TrainConfig().n_step == 10


def test_a_bad_preset_is_one_clear_error(capsys):
    with pytest.raises(ConfigError, match="--preset"):
        TrainConfig(preset="keulen").validate()
    with pytest.raises(SystemExit) as stop:
        main(["--preset", "keulen"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--preset" in err and len(err.strip().splitlines()) == 1


def test_the_command_line_applies_the_preset_under_explicit_flags():
    config = config_from_args(["--preset", "paper", "--n-step", "3", "--maze", "keulen_medium"])
    assert config.preset == "paper" and config.n_step == 3 and config.maze == "keulen_medium"
    assert config.step_reward == 0.0 and config.model_values == "off"


def test_python_m_train_preset_paper_runs_and_config_json_records_it(tmp_path):
    """The command as a user types it (a short run): exit 0, and config.json holds the preset
    and every resolved value, the explicit flag over the preset's."""
    run_dir = tmp_path / "paper"
    command = [sys.executable, "-m", "sshr_torch.train", "--preset", "paper"]
    command += ["--total-steps", "1500", "--learning-starts", "200", "--eval-interval", "0"]
    command += ["--run-dir", str(run_dir), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["preset"] == "paper"
    for name, value in PAPER.items():
        assert saved[name] == value, name
    assert saved["learning_starts"] == 200  # the explicit flag
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == 1500 and summary["n_updates"] > 0


def test_a_preset_run_trains_the_plain_learner(tmp_path):
    config = TrainConfig(
        preset="paper",
        total_steps=1200,
        learning_starts=100,
        eval_interval=0,
        run_dir=str(tmp_path / "r"),
        quiet=True,
    )
    result = train(config)
    agent = result.agent
    assert agent.gamma == 0.99 and agent.model_values is None
    assert agent.target_range == (0.0, 1.0)  # reward 1 at the goal: returns in [0, 1]


def test_resume_keeps_the_preset_and_refuses_a_new_one(tmp_path):
    run_dir = tmp_path / "r"
    assert main(["--preset", "paper", "--agent", "tabular", "--episodes", "2"]
                + ["--run-dir", str(run_dir), "--quiet"]) == 0  # fmt: skip
    config = config_from_args(["--resume", str(run_dir), "--episodes", "3"])
    assert config.preset == "paper" and config.n_step == 1 and config.agent == "tabular"
    assert main(["--resume", str(run_dir), "--preset", "paper"]) == 2


def test_a_preset_is_not_a_sweep_axis():
    with pytest.raises(ConfigError, match="preset is not a sweep axis"):
        grid(TrainConfig(), {"preset": [None, "paper"]}, 1)
    # The base config of a sweep takes it.
    (config,) = grid(TrainConfig(preset="paper"), {"her": ["none"]}, 1)
    assert config.preset == "paper" and config.n_step == 1 and config.her == "none"


def test_help_says_which_defaults_are_the_papers_and_which_are_choices(tmp_path):
    text = " ".join(build_parser().format_help().split())  # unwrapped
    for name in PAPER_SETTINGS:
        assert f"--{name.replace('_', '-')}" in text.split("Defaults:")[1]
    for choice in PROJECT_CHOICES:
        assert choice in text
        # Each stated choice is the default it names.
        flag, _, value = choice.partition(" ")
        default = getattr(TrainConfig(), flag[2:].replace("-", "_"))
        if flag == "--gamma":
            default = TrainConfig().discount
        elif flag == "--ss-value":
            default = TrainConfig().eq1_value
        elif flag == "--explore":
            # Unset, it is resolved for the env: the default run's maze gets this.
            trainer = Trainer(TrainConfig(run_dir=str(tmp_path / "explore"), quiet=True))
            default = trainer.exploration
            trainer.close()
        if isinstance(default, bool):
            assert default is True and value == "", choice
        elif isinstance(default, (int, float)):
            assert default == float(value), choice
        else:
            assert default == value, choice
