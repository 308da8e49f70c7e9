"""The env seam: any goal env by name (--env), the env protocol, and what each method enables.

The user's own env here is goal_envs.HeadingRoomEnv (registered as ``HeadingRoom-v0`` when
goal_envs is imported, so ``goal_envs:HeadingRoom-v0`` names it): its goals are cells and its
states (cell, heading) pairs, so every feature goes through ``goal_of_state``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys

import goal_envs
import gymnasium as gym
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sshr_torch import build, protocol, runlog
from sshr_torch.config import ConfigError, TrainConfig
from sshr_torch.env import GridMazeEnv
from sshr_torch.goal_reach import maze_distances
from sshr_torch.maze import load_maze, maze_to_text
from sshr_torch.smart_start import CountModel, ModelGoalValues
from sshr_torch.sweep import grid, run_sweep
from sshr_torch.sweep import main as sweep_main
from sshr_torch.trainer import Trainer, resume_config, train

ROOM = "goal_envs:HeadingRoom-v0"
# A short run of the DQN on the room: its defaults (Smart Start, HER, model values, goal reach).
ROOM_FLAGS = [
    "--env", ROOM, "--env-kwargs", '{"size": 5}', "--total-steps", "1500", "--quiet",
    "--learning-starts", "100", "--batch-size", "32", "--hidden-sizes", "32",
    "--eval-interval", "10", "--eval-episodes", "2", "--image-interval", "20",
    "--checkpoint-interval", "10", "--max-episode-steps", "60", "--n-step", "4",
]  # fmt: skip


def room_config(tmp_path, **settings) -> TrainConfig:
    """The config of ROOM_FLAGS, from Python."""
    values = dict(
        env=ROOM,
        env_kwargs={"size": 5},
        total_steps=1500,
        quiet=True,
        learning_starts=100,
        batch_size=32,
        hidden_sizes=(32,),
        eval_interval=10,
        eval_episodes=2,
        image_interval=20,
        checkpoint_interval=10,
        max_episode_steps=60,
        n_step=4,
        run_dir=str(tmp_path / "run"),
    )
    return TrainConfig(**{**values, **settings})


def main(argv: list[str]) -> int:
    """The command line (imported here, not at collection: importing the module
    sshr_torch.train binds the package's name ``train`` to it, which other test modules
    import as the function)."""
    from sshr_torch.train import main as train_main

    return train_main(argv)


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


# --- the maze implements the protocol with its own arrays ----------------------------------


@pytest.mark.parametrize("spec", ["keulen_easy", "keulen_misleading", "generated:9x13:seed=2"])
def test_the_maze_protocol_agrees_with_the_mazes_own_arrays(spec):
    maze = load_maze(spec)
    env = GridMazeEnv(maze)
    cells = np.arange(maze.n_cells)
    assert np.array_equal(env.goal_of_state(cells), cells)
    assert protocol.goal_of_state_table(env) is None  # goals are states: no table needed
    for start in maze.free_cells[:: max(1, len(maze.free_cells) // 5)]:
        assert np.array_equal(env.shortest_path_lengths(int(start)), maze_distances(maze)(start))
    next_state, terminal = env.transition_table()
    assert next_state is env.next_cell
    assert np.flatnonzero(terminal).tolist() == sorted(maze.decoy_indices)
    # the digest the trainer saved in its checkpoints before the protocol
    assert env.fingerprint() == hashlib.sha256(maze_to_text(maze).encode()).hexdigest()
    grid_ = env.goal_grid()
    assert grid_.shape == maze.shape and (grid_[maze.walls] == -1).all()
    assert np.array_equal(grid_[~maze.walls], np.flatnonzero(~maze.walls.ravel()))
    assert env.background_image(4).shape == (4 * maze.n_rows, 4 * maze.n_cols, 3)
    assert env.start == maze.start_index == protocol.fixed_start(env)
    assert GridMazeEnv(maze, random_start=True).start is None
    assert GridMazeEnv(maze, slip=0.1).transition_table() is None


def test_require_names_the_feature_and_the_method():
    env = goal_envs.HeadingRoomEnv(without=("shortest_path_lengths",))
    with pytest.raises(ConfigError) as error:
        protocol.require(env, "--stop-path-factor 1.2", "shortest_path_lengths")
    message = str(error.value)
    assert "--stop-path-factor 1.2" in message and "shortest_path_lengths()" in message
    assert "HeadingRoomEnv" in message and "\n" not in message
    assert protocol.require(goal_envs.HeadingRoomEnv(), "x", "fingerprint")() == (
        goal_envs.HeadingRoomEnv().fingerprint()
    )
    # goals that are states: goal_of_state is the identity without the method
    assert protocol.has(GridMazeEnv(), protocol.GOAL_OF_STATE)
    assert not protocol.has(goal_envs.BitFlipEnv(4), protocol.GOAL_OF_STATE)


# --- the count model's values where goals are not states -----------------------------------


def test_model_values_of_a_goal_are_those_of_its_nearest_state():
    # states 0..5, goal = state // 2; a chain 0 -> 1 -> 2 -> 3 -> 4 -> 5 by action 0, and
    # action 1 from 0 straight to 5; goal 2 is achieved in states 4 and 5
    model = CountModel(2)
    for s in range(5):
        model.update(s, 0, 0.0, s + 1, False)
    model.update(0, 1, 0.0, 5, False)
    goal_of = np.arange(6) // 2
    gamma = 0.5
    for goals in ("env", "all"):
        values = ModelGoalValues(model, 6, gamma, goals=goals, goal_of=goal_of, n_goals=3)
        values.refresh(2)
        q = values.q_values(np.array([0, 2, 3]), np.array([2, 2, 2]))
        # Q(s, a) = gamma^(T - 1), T the moves into {4, 5}: from 0, action 0 takes 4 moves
        # (0 -> 4), action 1 one (0 -> 5); from 2 two, from 3 one; action 1 untried elsewhere
        assert q[0].tolist() == pytest.approx([gamma**3, 1.0])
        assert q[1].tolist() == pytest.approx([gamma, -np.inf])
        assert q[2].tolist() == pytest.approx([1.0, -np.inf])


def test_the_searched_values_agree_with_value_iteration_over_goal_regions():
    # a random deterministic model of 40 states and 3 actions, goal = state % 7: for the
    # refreshed goal the reverse search from all its states ('all') gives what value
    # iteration on the region gives ('env'), action by action
    rng = np.random.default_rng(5)
    model = CountModel(3)
    nxt = rng.integers(0, 40, size=(40, 3))
    for s in range(40):
        for a in range(3):
            if rng.random() < 0.8:
                model.update(s, a, 0.0, int(nxt[s, a]), False)
    goal_of = np.arange(40) % 7
    states = np.arange(40)
    for goal in range(7):
        both = []
        for goals in ("env", "all"):
            values = ModelGoalValues(
                model, 40, 0.9, goals=goals, goal_of=goal_of, n_goals=7, step_reward=-1.0
            )
            values.refresh(goal)
            both.append(values.q_values(states, np.full(40, goal)))
        region = goal_of == goal  # rows already at the goal: 'all' gives none (-inf)
        assert np.isfinite(both[1][~region]).any()
        np.testing.assert_allclose(both[1][~region], both[0][~region], rtol=1e-5)


# --- --env on the command line ---------------------------------------------------------------


def test_a_users_env_runs_through_env_with_every_feature(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*ROOM_FLAGS, "--run-dir", str(run_dir)]) == 0, capsys.readouterr().err
    summary = json.loads((run_dir / runlog.SUMMARY_FILE).read_text())
    saved = json.loads((run_dir / runlog.CONFIG_FILE).read_text())
    assert saved["env"] == ROOM and saved["env_kwargs"] == {"size": 5}
    assert summary["env_steps"] == 1500 and summary["first_success_step"] is not None
    assert summary["goals_success"] is not None  # goal reach, through goal_of_state
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert {"maze/visits", "maze/policy", "maze/goal_reach"} <= set(events.Tags()["images"])
    # the parts got the protocol: the count model's values over cells, the goal table
    trainer = Trainer(room_config(tmp_path, run_dir=str(tmp_path / "t")))
    try:
        assert trainer.agent.model_values is trainer.model_values is not None
        assert np.array_equal(trainer.model_values.goal_of, np.arange(100) // 4)
        assert trainer.exploration == "directed"
        assert trainer.agent.target_range == pytest.approx((-1 / (1 - 0.999), 0.0))
    finally:
        trainer.close()
    # a resume rebuilds the same env and continues
    status = main(["--resume", str(run_dir), "--total-steps", "2000", "--quiet"])
    assert status == 0, capsys.readouterr().err
    assert json.loads((run_dir / runlog.SUMMARY_FILE).read_text())["env_steps"] >= 2000


def test_a_resume_refuses_another_world(tmp_path, capsys, monkeypatch):
    config = room_config(tmp_path, total_steps=300)
    train(config)
    monkeypatch.setattr(goal_envs.HeadingRoomEnv, "fingerprint", lambda self: "another room")
    assert main(["--resume", config.run_dir, "--total-steps", "600"]) == 2
    assert "layout changed" in one_line_error(capsys)
    assert json.loads((tmp_path / "run" / runlog.SUMMARY_FILE).read_text())["env_steps"] == 300


def test_the_env_seed_seeds_the_first_reset_and_the_run_is_named_by_the_env(tmp_path):
    for seed, env_seed in ((0, None), (0, 5)):
        config = room_config(
            tmp_path, env_seed=env_seed, run_dir=None, runs_root=str(tmp_path / str(env_seed))
        )
        trainer = Trainer(config)
        try:
            derived = int(np.random.SeedSequence(seed).generate_state(4)[3])
            assert trainer._env_seed == (derived if env_seed is None else env_seed)
            assert trainer.run_dir.name.startswith("goal_envs-HeadingRoom-v0__dqn__")
        finally:
            trainer.close()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--env", "NoSuchEnv-v0"], ["--env NoSuchEnv-v0", "gymnasium cannot make it"]),
        (["--env", "no_such_module:Env-v0"], ["--env no_such_module:Env-v0"]),
        (["--env", ROOM, "--env-kwargs", "{size: 5}"], ["--env-kwargs", "not valid JSON"]),
        (["--env", ROOM, "--env-kwargs", "[5]"], ["--env-kwargs", "not a JSON object"]),
        (["--env", ROOM, "--env-kwargs", '{"colour": 5}'], ["--env " + ROOM, "TypeError"]),
        (["--env", ROOM, "--slip", "0.1"], ["--slip", "--env " + ROOM]),
        (["--env", ROOM, "--maze", "keulen_hard"], ["--maze"]),
        (["--env-kwargs", '{"size": 5}'], ["--env-kwargs needs --env"]),
        (["--env", ""], ["--env needs"]),
    ],
)
def test_a_bad_env_is_one_line_and_exit_2(tmp_path, capsys, flags, words):
    run_dir = tmp_path / "run"
    try:
        status = main([*flags, "--total-steps", "10", "--run-dir", str(run_dir)])
    except SystemExit as stop:  # argparse's own errors (a bad JSON value)
        status = stop.code
    assert status == 2
    err = one_line_error(capsys)
    assert all(word in err for word in words), err
    assert not run_dir.exists()


def test_minigrid_ids_go_to_the_wrapper_and_say_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sshr_torch.minigrid", None)  # as if not installed
    status = main(["--env", "MiniGrid-FourRooms-v0", "--run-dir", str(tmp_path / "run")])
    assert status == 2
    err = one_line_error(capsys)
    assert "pip install 'sshr_torch[minigrid]'" in err and "MiniGrid-FourRooms-v0" in err
    made = []

    class Wrapper:
        @staticmethod
        def make_minigrid(env_id, env_seed, **kwargs):
            made.append((env_id, env_seed, kwargs))
            return goal_envs.HeadingRoomEnv(**kwargs)

    monkeypatch.setitem(sys.modules, "sshr_torch.minigrid", Wrapper)
    config = TrainConfig(env="BabyAI-Room-v0", env_kwargs={"size": 5}, seed=7)
    env = build.make_env(config)
    assert made == [("BabyAI-Room-v0", 7, {"size": 5})]  # env_seed: the run's seed by default
    assert isinstance(env, gym.wrappers.TimeLimit)
    assert isinstance(env.unwrapped, goal_envs.HeadingRoomEnv)
    build.make_env(TrainConfig(env="MiniGrid-Empty-5x5-v0", env_seed=11))
    assert made[-1][:2] == ("MiniGrid-Empty-5x5-v0", 11)


# --- each protocol method missing: its features refused, or their stated fallback ----------------


@pytest.mark.parametrize(
    ("method", "flags"),
    [
        ("goal_of_state", ["--explore", "ucb1"]),
        ("goal_of_state", ["--explore", "directed"]),
        ("goal_of_state", ["--eval-goals", "5"]),
        ("goal_of_state", ["--model-values", "target"]),
        ("goal_of_state", ["--model-goals", "env"]),
        ("goal_of_state", ["--model-rows", "0.5"]),
        ("goal_of_state", ["--model-values", "off", "--all-actions"]),
        ("shortest_path_lengths", ["--stop-success", "1", "--stop-path-factor", "1.5"]),
    ],
)
def test_each_feature_is_refused_without_its_method(tmp_path, capsys, method, flags):
    run_dir = tmp_path / "run"
    kwargs = json.dumps({"size": 5, "without": [method]})
    argv = ["--env", ROOM, "--env-kwargs", kwargs, *flags, "--run-dir", str(run_dir)]
    assert main([*argv, "--total-steps", "10"]) == 2
    err = one_line_error(capsys)
    named = [flag for flag in flags if flag.startswith("--")][-1]  # the feature asked for
    assert named in err and f"{method}()" in err, err
    assert not run_dir.exists()
    # with the method the same flags run
    full = ["--env", ROOM, "--env-kwargs", '{"size": 5}', *flags, "--quiet"]
    assert main([*full, "--total-steps", "10", "--run-dir", str(tmp_path / "ok")]) == 0


def test_without_goal_of_state_the_goal_features_are_off_by_default(tmp_path):
    trainer = Trainer(room_config(tmp_path, env_kwargs={"size": 5, "without": ["goal_of_state"]}))
    try:
        assert trainer.model_values is None and trainer.goal_reach is None
        assert trainer.exploration == "epsilon" and trainer.visits is None
    finally:
        trainer.close()


def test_the_fallbacks_of_the_optional_methods(tmp_path):
    def run(name: str, without: list[str]):
        kwargs = {"size": 5, "without": without}
        run_dir = str(tmp_path / name)
        config = room_config(tmp_path, env_kwargs=kwargs, run_dir=run_dir, total_steps=800)
        return train(config)

    full = run("full", [])
    # no transition table: the walks step copies of the env, and find the same moves
    copies = run("copies", ["transition_table"])
    assert copies.summary["goals_success"] == full.summary["goals_success"] is not None
    assert copies.summary["goals_excess"] == full.summary["goals_excess"]
    # no shortest paths: goal reach takes the count model's fewest moves
    model = run("model", ["shortest_path_lengths"])
    assert model.summary["goals_success"] is not None
    # no goal grid: no images; no background: images on a plain one
    tags = {}
    for name, without in (("grid", ["goal_grid"]), ("plain", ["background_image"])):
        result = run(name, without)
        events = EventAccumulator(str(result.run_dir), size_guidance={"images": 0})
        events.Reload()
        tags[name] = set(events.Tags()["images"])
    assert tags["grid"] == set() and "maze/policy" in tags["plain"]
    # no fixed start: goal reach draws its starts from the visited states
    assert run("start", ["start"]).summary["goals_success"] is not None
    # no return range: targets are not clamped
    trainer = Trainer(room_config(tmp_path, env_kwargs={"size": 5, "without": ["return_range"]}))
    try:
        assert trainer.agent.target_range is None
    finally:
        trainer.close()
    # no fingerprint: a resume checks the env's id, kwargs and class only
    unprinted = run("unprinted", ["fingerprint"])
    resumed = train(resume_config(unprinted.run_dir, total_steps=900))
    assert resumed.summary["env_steps"] >= 900


# --- the sweep builds any env from the config ---------------------------------------------------


def test_a_sweep_runs_a_users_env_by_name(tmp_path):
    base = room_config(tmp_path, total_steps=300, run_dir=None, eval_goals=5)
    configs = grid(base, {"env_kwargs": [{"size": 5}, {"size": 6}]}, 1)
    rows = run_sweep(configs, tmp_path / "sweep", workers=2)
    assert [row["error"] for row in rows] == ["", ""]
    table = read_csv(tmp_path / "sweep" / "results.csv")
    assert [row["run"] for row in table] == [
        "env_kwargs=size-5__seed=0",
        "env_kwargs=size-6__seed=0",
    ]
    for row in table:
        summary = json.loads((tmp_path / "sweep" / row["run"] / runlog.SUMMARY_FILE).read_text())
        assert summary["env_steps"] == 300 and summary["goals_success"] is not None


def test_the_sweep_command_line_takes_env_axes(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "--out", str(out), "--seeds", "1", "--workers", "1",
        "--grid", 'env_kwargs={"size": 5},{"size": 6, "max_episode_steps": 40}',
        "--", *ROOM_FLAGS[4:], "--env", ROOM, "--total-steps", "200",
    ]  # fmt: skip
    assert sweep_main(argv) == 0, capsys.readouterr().err
    table = read_csv(out / "results.csv")
    assert len(table) == 2 and {row["error"] for row in table} == {""}
    assert table[1]["run"] == "env_kwargs=max_episode_steps-40_size-6__seed=0"


# --- features on by default that an env cannot have are reported, not dropped silently ----------


def test_features_an_env_cannot_have_are_listed_at_start_and_in_the_summary(tmp_path, capsys):
    lacking = ("goal_grid", "return_range", "fingerprint")
    env = goal_envs.HeadingRoomEnv(without=lacking)
    config = room_config(tmp_path, total_steps=300, quiet=False, env=None, env_kwargs={})
    trainer = Trainer(config, env)
    trainer.close()
    off = trainer.features_off
    assert off == {
        "images (--image-interval)": "goal_grid()",
        "clamped targets (--clip-target)": "return_range()",
        "the resume's check of the world beyond id, kwargs and class": "fingerprint()",
    }
    printed = capsys.readouterr().err
    assert printed.count("note: off on this env:") == 1
    assert all(f"no {method}()" in printed for method in lacking)
    # BitFlip has no Discrete state ids: every goal feature on by default is off, and said so.
    bits_config = room_config(tmp_path / "bits", total_steps=300, env=None, env_kwargs={})
    bits = Trainer(bits_config, goal_envs.BitFlipEnv(4))
    bits.close()
    goal_features = [name for name, why in bits.features_off.items() if "Discrete" in why]
    assert {"count-model values (--model-values)", "goal reach (--eval-goals)"} <= set(
        goal_features
    )
    # the maze has every method: nothing is off, and summary.json says so
    result = train(
        TrainConfig(total_steps=300, quiet=True, run_dir=str(tmp_path / "maze"), eval_interval=0)
    )
    assert result.summary["features_off"] == {}
    assert json.loads((result.run_dir / "summary.json").read_text())["features_off"] == {}
