"""MiniGridGoalEnv: full-state ids, agreement with MiniGrid's own step, goals, the protocol."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import gymnasium
import matplotlib.pyplot as plt
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sshr_torch.config import TrainConfig
from sshr_torch.minigrid import ACTION_NAMES, MiniGridGoalEnv, is_minigrid_id, make_minigrid
from sshr_torch.trainer import Trainer, train

pytest.importorskip("minigrid", reason="needs pip install -e '.[minigrid]' (CI has it)")

# Empty-5x5: interior cells x, y in 1..3, the agent starts at (1, 1) facing right (+x), the
# goal tile is at (3, 3); cells are x + 5 y.
EMPTY = "MiniGrid-Empty-5x5-v0"


def cell(x: int, y: int, width: int = 5) -> int:
    return x + y * width


def forward(env: MiniGridGoalEnv) -> int:
    return env.actions.index("forward")


def test_ids_follow_the_bfs_and_one_state_has_one_id() -> None:
    env = make_minigrid(EMPTY, 0)
    # 9 interior cells x 4 directions; the goal tile is not terminal (any cell can be the goal)
    assert env.n_states == 36
    assert env.actions == ("left", "right", "forward")  # pickup and toggle change nothing here
    assert len(set(env._states)) == env.n_states
    assert env.start == 0 and env.goal_of_state(0) == cell(1, 1)
    # The NumPy-2 hash case: after reset MiniGrid's agent_pos (fixed start) holds Python ints,
    # after a move NumPy ints; one state, one id.
    grid_env = gymnasium.make(EMPTY).unwrapped
    grid_env.reset(seed=0)
    first = env.state_of(grid_env)
    for _ in range(4):
        grid_env.step(0)
    assert env.state_of(grid_env) == first == 0
    grid_env.step(2)  # forward, then turn round and come back facing right
    assert env.state_of(grid_env) != first
    for action in (0, 0, 2, 0, 0):
        grid_env.step(action)
    assert env.state_of(grid_env) == first


def test_ids_are_stable_across_resets_and_instances() -> None:
    env, twin = (
        make_minigrid("MiniGrid-DoorKey-5x5-v0", 3),
        make_minigrid("MiniGrid-DoorKey-5x5-v0", 3),
    )
    rng = np.random.default_rng(0)
    actions = rng.integers(env.action_space.n, size=60)
    walks = []
    for _ in range(2):
        obs, _ = env.reset()
        walk = [obs["observation"]]
        for a in actions:
            obs, _, terminated, truncated, _ = env.step(a)
            walk.append(obs["observation"])
            if terminated or truncated:
                break
        walks.append(walk)
    assert walks[0] == walks[1] and walks[0][0] == 0
    assert len(set(walks[0])) > 5  # the walk went somewhere
    assert np.array_equal(env.transition_table()[0], twin.transition_table()[0])
    assert env.fingerprint() == twin.fingerprint()


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("MiniGrid-DoorKey-6x6-v0", {"actions": ACTION_NAMES}),  # key, locked door, drop, done
        ("MiniGrid-MultiRoom-N4-S5-v1", {}),  # closed doors that open and close
        ("MiniGrid-LavaCrossingS9N1-v0", {}),  # lava
    ],
)
def test_transition_table_agrees_with_minigrid_step(env_id: str, kwargs: dict) -> None:
    env = make_minigrid(env_id, 1, **kwargs)
    next_state, terminal = env.transition_table()
    grid_env = gymnasium.make(env_id).unwrapped
    rng = np.random.default_rng(1)
    n_actions, checked, seen = len(env.actions), 0, set()
    for _ in range(12):  # random walks of MiniGrid itself from the layout's start
        grid_env.reset(seed=1)
        state = env.state_of(grid_env)
        assert state == 0
        for _ in range(250):
            a = int(rng.integers(n_actions))
            _, _, done, _, _ = grid_env.step(env.minigrid_actions[a])
            new = env.state_of(grid_env)
            assert new == next_state[state, a], (state, env.actions[a])
            checked += 1
            seen.add(new)
            state = new
            at_goal_tile = env.goal_of_state(state) == env.goal_tile
            assert done == (bool(terminal[state]) or at_goal_tile)
            if done:
                break
    assert checked > 500 and len(seen) > 20


def test_shortest_paths_by_hand() -> None:
    env = make_minigrid(EMPTY, 0)
    lengths = env.shortest_path_lengths(env.start)
    assert lengths.shape == (25,) and lengths.dtype == np.float64
    assert lengths[cell(1, 1)] == 0
    assert lengths[cell(2, 1)] == 1  # forward
    assert lengths[cell(1, 2)] == 2  # right, forward
    assert lengths[cell(3, 1)] == 2
    assert lengths[cell(3, 3)] == 5  # forward, forward, right, forward, forward
    assert lengths[cell(1, 3)] == 3  # right, forward, forward
    assert np.isinf(lengths[cell(0, 0)]) and np.isinf(lengths[cell(4, 2)])  # walls


def test_goal_reward_and_termination() -> None:
    env = make_minigrid(EMPTY, 0)
    left, right, fwd = 0, 1, 2
    obs, info = env.reset()
    assert obs == {"observation": 0, "achieved_goal": cell(1, 1), "desired_goal": cell(3, 3)}
    assert info["is_success"] is False
    rewards = []
    for a in (fwd, fwd, right, fwd):
        obs, reward, terminated, truncated, info = env.step(a)
        rewards.append(reward)
        assert not terminated and not truncated and not info["is_success"]
    obs, reward, terminated, truncated, info = env.step(fwd)
    assert (reward, terminated, truncated, info["is_success"]) == (1.0, True, False, True)
    assert obs["achieved_goal"] == cell(3, 3) and rewards == [0.0] * 4
    # Another goal: the goal tile is then an ordinary cell, and the new goal ends the episode.
    env.reset(options={"goal": cell(2, 3)})
    for a in (fwd, fwd, right, fwd, fwd, right, left, right):  # over the goal tile (3, 3)
        _, reward, terminated, _, _ = env.step(a)
        assert not terminated and reward == 0.0
    _, reward, terminated, _, info = env.step(fwd)
    assert (reward, terminated, info["is_success"]) == (1.0, True, True)
    # compute_reward, vectorised: (batch,) and SB3's (batch, 1)
    achieved, desired = np.array([7, 18, 6]), np.array([7, 7, 6])
    assert env.compute_reward(achieved, desired, None).tolist() == [1.0, 0.0, 1.0]
    assert env.compute_reward(achieved[:, None], desired[:, None], None).shape == (3,)
    assert env.compute_reward(18, 18, None) == 1.0
    with pytest.raises(ValueError, match="goal"):
        env.reset(options={"goal": cell(0, 0)})  # a wall
    with pytest.raises(ValueError, match="already on the goal"):
        env.reset(options={"goal": cell(1, 1)})


def test_truncation_at_minigrid_max_steps() -> None:
    env = make_minigrid(EMPTY, 0, max_steps=7)
    env.reset()
    ends = [env.step(0)[2:4] for _ in range(7)]  # turning on the spot
    assert ends == [(False, False)] * 6 + [(False, True)]


def test_lava_ends_the_episode_whatever_the_goal() -> None:
    env = make_minigrid("MiniGrid-LavaGapS5-v0", 0)
    next_state, terminal = env.transition_table()
    assert terminal.any()
    fwd = forward(env)
    before = int(np.flatnonzero(terminal[next_state[:, fwd]] & ~terminal)[0])
    lava_cell = int(env.goal_of_state(next_state[before, fwd]))
    assert env.goal_grid().ravel()[lava_cell] == -1  # lava is no goal
    assert np.isinf(env.shortest_path_lengths(0)[lava_cell])
    env.reset(options={"start": before})
    obs, reward, terminated, truncated, info = env.step(fwd)
    assert obs["achieved_goal"] == lava_cell
    assert (reward, terminated, truncated, info["is_success"]) == (0.0, True, False, False)
    # death_reward: paid on the lava, by step() and compute_reward() alike (HER relabels)
    costly = make_minigrid("MiniGrid-LavaGapS5-v0", 0, death_reward=-1000)
    costly.reset(options={"start": before})
    _, reward, terminated, _, _ = costly.step(fwd)
    assert (reward, terminated) == (-1000.0, True)
    goals = np.array([costly.default_goal, costly.default_goal])
    rewards = costly.compute_reward(np.array([lava_cell, costly.default_goal]), goals, None)
    assert rewards.tolist() == [-1000.0, 1.0]
    assert costly.fingerprint() != env.fingerprint()
    assert env.return_range() == (0.0, 1.0) and costly.return_range() == (-1000.0, 1.0)
    low, high = costly.return_range(-1.0, 0.99)
    assert (low, high) == pytest.approx((-1.0 / 0.01 - 1000.0, 0.0))


def test_layout_is_seeded_by_env_seed() -> None:
    a, b, c = (make_minigrid("MiniGrid-FourRooms-v0", seed) for seed in (0, 0, 1))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert np.array_equal(a.goal_grid(), b.goal_grid())
    assert (a.default_goal, a.goal_of_state(0)) != (c.default_goal, c.goal_of_state(0))
    other = make_minigrid("MiniGrid-FourRooms-v0", 0, max_steps=50)
    assert other.fingerprint() != a.fingerprint()  # the kwargs are part of it


def test_protocol_methods() -> None:
    env = make_minigrid("MiniGrid-DoorKey-5x5-v0", 0)
    states = np.arange(6).reshape(2, 3)
    cells = env.goal_of_state(states)
    assert cells.dtype == np.int64 and cells.shape == states.shape
    next_state, terminal = env.transition_table()
    assert next_state.shape == (env.n_states, env.action_space.n) and next_state.dtype == np.int64
    assert terminal.shape == (env.n_states,) and terminal.dtype == bool
    grid = env.goal_grid()
    assert grid.shape == (5, 5) and grid.dtype == np.int64
    assert (grid[0] == -1).all() and (grid[:, 0] == -1).all()  # the outer walls
    assert set(grid[grid >= 0].ravel()) == set(env.goal_of_state(np.flatnonzero(~terminal)))
    image = env.background_image(8)
    assert image.shape == (40, 40, 3) and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 3  # walls, floor, goal, door, key
    assert isinstance(env.fingerprint(), str) and len(env.fingerprint()) == 64
    assert env.actions == ("left", "right", "forward", "pickup", "toggle")
    assert is_minigrid_id("MiniGrid-FourRooms-v0") and is_minigrid_id("BabyAI-GoToObj-v0")
    assert not is_minigrid_id("sshr_torch/GridMaze-v0")


def test_render_draws_the_agent_where_the_state_is() -> None:
    env = make_minigrid(EMPTY, 0, render_mode="rgb_array")
    env.reset()
    first = env.render()
    env.step(forward(env))
    assert first.shape == (80, 80, 3) and not np.array_equal(first, env.render())


def test_one_way_doors_and_refusals() -> None:
    free = make_minigrid("MiniGrid-MultiRoom-N4-S5-v1", 0)
    one_way = make_minigrid("MiniGrid-MultiRoom-N4-S5-v1", 0, one_way_doors=True)
    assert one_way.n_states < free.n_states
    with pytest.raises(ValueError, match="more than 100 reachable states"):
        make_minigrid("MiniGrid-DoorKey-6x6-v0", 0, max_states=100)
    with pytest.raises(ValueError, match="box"):
        make_minigrid("MiniGrid-UnlockPickup-v0", 0)
    with pytest.raises(ValueError, match="action names"):
        make_minigrid(EMPTY, 0, actions=("jump",))


@pytest.mark.parametrize("env_id", [EMPTY, "MiniGrid-DoorKey-5x5-v0", "MiniGrid-LavaGapS5-v0"])
def test_gymnasium_and_sb3_checkers(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any gymnasium checker warning fails the test
        check_env(make_minigrid(env_id, 0), skip_render_check=True)  # no gymnasium spec
    sb3_checker = pytest.importorskip(
        "stable_baselines3.common.env_checker",
        reason="Stable-Baselines3 is not installed (pip install -e '.[bench]'; CI installs it)",
    )
    sb3_checker.check_env(make_minigrid(env_id, 0), warn=True)


def test_smart_start_her_dqn_learns_a_small_minigrid(tmp_path: Path) -> None:
    env = make_minigrid("MiniGrid-Empty-8x8-v0", 0)
    assert env.shortest_path_lengths(0)[env.default_goal] == 11  # 5 forward, right, 5 forward
    config = TrainConfig(
        total_steps=5000,
        torch_threads=1,
        run_dir=str(tmp_path / "run"),
        eval_episodes=5,
        eval_interval=10,
        seed=0,
        learning_starts=500,
        epsilon_decay_steps=3000,
        stop_success=1.0,
    )
    result = train(config, env)
    # solved: every greedy episode of an evaluation reached the goal within the budget
    assert result.summary["eval_success_rate"] == 1.0
    assert result.summary["solved_step"] is not None and result.summary["solved_step"] <= 5000


def test_minigrid_from_the_command_line_with_every_feature(tmp_path: Path, capsys) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sshr_torch.train import main

    run_dir = tmp_path / "run"
    flags = [
        "--env", "MiniGrid-Empty-6x6-v0", "--env-seed", "0", "--total-steps", "2000",
        "--learning-starts", "300", "--eval-interval", "10", "--eval-episodes", "2",
        "--image-interval", "10", "--max-episode-steps", "144", "--quiet",
    ]  # fmt: skip
    assert main([*flags, "--run-dir", str(run_dir)]) == 0, capsys.readouterr().err
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env"] == "MiniGrid-Empty-6x6-v0" and config["env_seed"] == 0
    assert summary["eval_success_rate"] == 1.0  # Smart Start + HER + model values learn it
    assert summary["goals_success"] is not None and summary["goals_success"] > 0.5
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert {"maze/visits", "maze/policy", "maze/goal_reach"} <= set(events.Tags()["images"])
    image = plt.imread(io.BytesIO(events.Images("maze/visits")[-1].encoded_image_string))
    pixels = (image[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    # MiniGrid's walls (grey 100, 100, 100) are the background of the dashboard images
    assert (pixels == np.array([100, 100, 100], dtype=np.uint8)).all(axis=1).mean() > 0.1
    # the trainer got every part of the protocol
    trainer = Trainer(TrainConfig(**{**config, "run_dir": str(tmp_path / "t")}))
    try:
        assert trainer.model_values is not None and trainer.exploration == "directed"
    finally:
        trainer.close()
    # a resume rebuilds the same layout and continues
    assert main(["--resume", str(run_dir), "--total-steps", "2300", "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] >= 2300


def test_a_sweep_over_minigrid_layouts(tmp_path: Path, capsys) -> None:
    from sshr_torch.sweep import main as sweep_main

    out = tmp_path / "sweep"
    argv = [
        "--out", str(out), "--seeds", "1", "--workers", "1", "--grid", "env_seed=0,1",
        "--", "--env", "MiniGrid-FourRooms-v0", "--total-steps", "300", "--quiet",
        "--learning-starts", "100", "--eval-episodes", "1", "--max-episode-steps", "100",
    ]  # fmt: skip
    assert sweep_main(argv) == 0, capsys.readouterr().err
    with (out / "results.csv").open() as file:
        table = list(csv.DictReader(file))
    assert [row["error"] for row in table] == ["", ""]
    configs = [json.loads((out / row["run"] / "config.json").read_text()) for row in table]
    assert [config["env_seed"] for config in configs] == [0, 1]
    summaries = [json.loads((out / row["run"] / "summary.json").read_text()) for row in table]
    assert all(summary["env_steps"] == 300 for summary in summaries)
