"""Tests for sshr_torch.env.GridMazeEnv."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sshr_torch.env import (
    COLOURS,
    ENV_ID,
    MISLEADING_ENV_ID,
    MISLEADING_REWARDS,
    Action,
    GridMazeEnv,
)
from sshr_torch.maze import BUILTIN_MAZES, MazeError, parse_maze

# Hand-checked maze: S(0,0), walls at (0,2) and (1,1), G(1,2); index = row * 3 + col.
#   S . #
#   . # G
#   . . .
SMALL = parse_maze("S.#\n.#G\n...\n", name="small")
U, R, D, L = Action.UP, Action.RIGHT, Action.DOWN, Action.LEFT


def rollout(env: GridMazeEnv, n_steps: int, seed: int) -> list[tuple]:
    """(obs, reward, terminated, truncated, is_success) of n_steps random steps, resetting."""
    actions = np.random.default_rng(seed).integers(4, size=n_steps)
    obs, _ = env.reset(seed=seed)
    out = [(obs["observation"], obs["desired_goal"])]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs["observation"], obs["desired_goal"], reward, terminated, truncated))
        out[-1] += (info["is_success"],)
        if terminated or truncated:
            obs, _ = env.reset()
            out.append((obs["observation"], obs["desired_goal"]))
    return out


@pytest.mark.parametrize("name", BUILTIN_MAZES)
def test_check_env_every_builtin(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any gymnasium checker warning fails the test
        env = gymnasium.make(ENV_ID, maze=name, render_mode="rgb_array")
        check_env(env.unwrapped)
        obs, _ = env.reset(seed=0)  # through the PassiveEnvChecker and OrderEnforcing wrappers
        for _ in range(5):
            obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)


@pytest.mark.parametrize(
    "env_id, maze",
    [(ENV_ID, name) for name in BUILTIN_MAZES]
    + [(ENV_ID, "generated:15x21:seed=2:kind=rooms"), (MISLEADING_ENV_ID, "keulen_misleading")],
)
def test_sb3_check_env(env_id: str, maze: str) -> None:
    # Stable-Baselines3's checker tests what gymnasium's does not: compute_reward on its
    # (batch, 1) Discrete goals must return (batch,) rewards equal to step()'s.
    sb3_checker = pytest.importorskip(
        "stable_baselines3.common.env_checker",
        reason="Stable-Baselines3 is not installed (pip install -e '.[bench]'; CI installs it)",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any SB3 checker warning fails the test
        env = gymnasium.make(env_id, maze=maze).unwrapped
        env.action_space.seed(0)
        sb3_checker.check_env(env, warn=True)
        check_env(env)  # and gymnasium's own checker on the same instance


@pytest.mark.parametrize(
    "kwargs",
    [
        {"slip": 0.3, "random_start": True, "random_goal": True, "render_mode": "ansi"},
        {"maze": "generated:15x21:seed=2:kind=rooms", "random_goal": True},
        {"maze": "keulen_misleading", **MISLEADING_REWARDS},
    ],
)
def test_check_env_options(kwargs: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gymnasium.make(ENV_ID, **kwargs).unwrapped)


def test_make_extreme_and_misleading() -> None:
    env = gymnasium.make(ENV_ID, maze="keulen_extreme")
    obs, info = env.reset(seed=0)
    assert obs["observation"] == 58 * 69 + 1 and obs["desired_goal"] == 1 * 69 + 67
    obs, reward, terminated, truncated, info = env.step(int(Action.UP))
    assert obs["observation"] == 57 * 69 + 1 and reward == 0.0 and not info["is_success"]
    misleading = gymnasium.make(MISLEADING_ENV_ID).unwrapped
    assert misleading.maze.name == "keulen_misleading"
    assert (misleading.goal_reward, misleading.decoy_reward, misleading.wall_reward) == (
        100.0,
        1.0,
        -1.0,
    )


def test_walls_and_edges_block() -> None:
    env = GridMazeEnv(SMALL)
    obs, _ = env.reset()
    assert obs == {"observation": 0, "achieved_goal": 0, "desired_goal": 5}
    # (action, expected cell): the edge blocks UP and LEFT at (0,0), the wall at (0,2) blocks
    # RIGHT from (0,1), the wall at (1,1) blocks DOWN from (0,1) and RIGHT from (1,0)
    for action, cell in [(U, 0), (L, 0), (R, 1), (R, 1), (D, 1), (U, 1), (L, 0), (D, 3)]:
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs["observation"] == obs["achieved_goal"] == cell
        assert (reward, terminated, truncated, info["is_success"]) == (0.0, False, False, False)
    for action, cell in [(R, 3), (L, 3), (D, 6), (D, 6), (L, 6), (R, 7), (U, 7), (R, 8)]:
        obs, *_ = env.step(action)
        assert obs["observation"] == cell
    assert env.elapsed_steps == 16
    # the goal (1,2) from (2,2)
    obs, reward, terminated, truncated, info = env.step(U)
    assert obs["observation"] == 5
    assert (reward, terminated, truncated, info["is_success"]) == (1.0, True, False, True)


def test_next_cell_table_by_hand() -> None:
    env = GridMazeEnv(SMALL)
    # rows: cell 0..8; columns: UP, RIGHT, DOWN, LEFT
    assert env.next_cell[0].tolist() == [0, 1, 3, 0]
    assert env.next_cell[1].tolist() == [1, 1, 1, 0]
    assert env.next_cell[5].tolist() == [5, 5, 8, 5]
    assert env.next_cell[7].tolist() == [7, 8, 7, 6]


def test_truncation_at_limit() -> None:
    env = GridMazeEnv(SMALL, max_episode_steps=5)
    env.reset()
    for step in range(1, 6):
        obs, reward, terminated, truncated, _ = env.step(U)  # into the edge: stays
        assert obs["observation"] == 0 and not terminated
        assert truncated == (step == 5)
    # reaching the goal on the last step terminates and does not truncate
    env = GridMazeEnv(SMALL, max_episode_steps=5)
    env.reset()
    results = [env.step(a)[1:4] for a in (D, D, R, R, U)]
    assert results[-1] == (1.0, True, False)
    assert GridMazeEnv().max_episode_steps == 1000


def test_decoy_and_wall_rewards() -> None:
    # misleading maze: start (5,2), decoy (1,2) four moves up
    env = GridMazeEnv("keulen_misleading", **MISLEADING_REWARDS)
    env.reset()
    obs, reward, terminated, truncated, info = env.step(L)
    assert (reward, terminated) == (0.0, False)
    for _ in range(3):
        assert env.step(U)[1:3] == (0.0, False)
    obs, reward, terminated, truncated, info = env.step(U)
    assert obs["observation"] == 1 * 15 + 1
    # from (5,1) four ups reach (1,1), not the decoy; one RIGHT steps on it
    obs, reward, terminated, truncated, info = env.step(R)
    assert obs["observation"] == 1 * 15 + 2
    assert (reward, terminated, truncated, info["is_success"]) == (1.0, True, False, False)
    # a wall or the grid edge ends the episode with wall_reward
    env.reset()
    obs, reward, terminated, _, info = env.step(D)  # (6,2)
    assert (reward, terminated) == (0.0, False)
    obs, reward, terminated, _, info = env.step(D)  # edge
    assert (obs["observation"], reward, terminated) == (6 * 15 + 2, -1.0, True)
    env.reset()
    env.step(R)
    env.step(R)  # (5,4)
    obs, reward, terminated, _, _ = env.step(R)  # wall at (5,5)
    assert (obs["observation"], reward, terminated) == (5 * 15 + 4, -1.0, True)
    # without wall_reward the same move only blocks
    plain = GridMazeEnv("keulen_misleading")
    plain.reset()
    assert plain.step(D)[1:3] == (0.0, False) and plain.step(D)[1:3] == (0.0, False)


@pytest.mark.parametrize("slip", [0.0, 0.25])
def test_same_seed_same_rollout(slip: float) -> None:
    kwargs = {"maze": "keulen_medium", "slip": slip, "random_start": True, "random_goal": True}
    first = rollout(GridMazeEnv(**kwargs, max_episode_steps=50), 600, seed=7)
    second = rollout(GridMazeEnv(**kwargs, max_episode_steps=50), 600, seed=7)
    assert first == second
    assert rollout(GridMazeEnv(**kwargs, max_episode_steps=50), 600, seed=8) != first
    # reseeding the same object reproduces it too
    env = GridMazeEnv(**kwargs, max_episode_steps=50)
    rollout(env, 123, seed=1)
    assert rollout(env, 600, seed=7) == first


def test_restoring_np_random_continues_the_same_episodes() -> None:
    kwargs = {"maze": "keulen_easy", "slip": 0.3, "random_goal": True, "max_episode_steps": 30}
    env = GridMazeEnv(**kwargs)
    rollout(env, 200, seed=4)
    state = env.np_random.bit_generator.state  # a checkpoint between episodes
    expected = rollout_on(env, 500)
    resumed = GridMazeEnv(**kwargs)
    resumed.reset(seed=0)
    resumed.np_random.bit_generator.state = state
    assert rollout_on(resumed, 500) == expected


def rollout_on(env: GridMazeEnv, n_steps: int) -> list[tuple]:
    """Like rollout() but without reseeding: resets continue env.np_random."""
    obs, _ = env.reset()
    out = [(obs["observation"], obs["desired_goal"])]
    for a in np.arange(n_steps) % 4:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append((obs["observation"], reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append((obs["observation"], obs["desired_goal"]))
    return out


def test_slip_takes_other_moves_uniformly() -> None:
    env = GridMazeEnv("generated:5x5:kind=rooms", slip=1.0)  # an open 5 x 5 room
    counts = np.zeros(4, dtype=int)
    env.reset(seed=0, options={"start": (2, 2), "goal": (0, 0)})
    for _ in range(3000):
        env._pos = 12  # the centre: every move is open
        obs, *_ = env.step(R)
        moved_to = env.maze.cell_position(obs["observation"])
        counts[{(1, 2): 0, (2, 3): 1, (3, 2): 2, (2, 1): 3}[moved_to]] += 1
    assert counts[R] == 0
    assert counts[[U, D, L]].min() > 900  # each about 1000
    # a little slip: most moves go where asked
    env = GridMazeEnv("generated:5x5:kind=rooms", slip=0.1)
    env.reset(seed=0, options={"start": (2, 2), "goal": (0, 0)})
    hits = 0
    for _ in range(2000):
        env._pos = 12
        hits += env.step(R)[0]["observation"] == 13
    assert 1700 < hits < 1900


def test_random_start_and_goal() -> None:
    env = GridMazeEnv("keulen_misleading", random_start=True, random_goal=True)
    decoy = 1 * 15 + 2
    pairs = set()
    for episode in range(200):
        obs, _ = env.reset(seed=episode if episode == 0 else None)
        start, goal = obs["observation"], obs["desired_goal"]
        assert start != goal
        for cell in (start, goal):
            assert not env.maze.walls.flat[cell] and cell != decoy
        pairs.add((start, goal))
    assert len(pairs) > 150
    only_goal = GridMazeEnv("keulen_easy", random_goal=True)
    goals = {only_goal.reset(seed=s)[0]["desired_goal"] for s in range(50)}
    assert len(goals) > 20 and only_goal.maze.start_index not in goals
    # options override for one episode
    obs, _ = env.reset(options={"start": 0, "goal": (6, 14)})
    assert (obs["observation"], obs["desired_goal"]) == (0, 6 * 15 + 14)
    with pytest.raises(ValueError, match="free, non-decoy"):
        env.reset(options={"goal": decoy})
    with pytest.raises(ValueError, match="free, non-decoy"):
        env.reset(options={"start": (0, 5)})  # a wall


def test_compute_reward_matches_step() -> None:
    env = GridMazeEnv("keulen_misleading", slip=0.2, random_start=True, max_episode_steps=40)
    env.reset(seed=3)
    achieved, desired, rewards = [], [], []
    rng = np.random.default_rng(3)
    n_terminal = 0
    for _ in range(3000):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        achieved.append(obs["achieved_goal"])
        desired.append(obs["desired_goal"])
        rewards.append(reward)
        assert env.compute_reward(obs["achieved_goal"], obs["desired_goal"], info) == reward
        if terminated or truncated:
            n_terminal += terminated
            env.reset()
    batch = env.compute_reward(np.array(achieved), np.array(desired), None)
    assert batch.dtype == np.float32 and batch.shape == (3000,)
    assert np.array_equal(batch, np.array(rewards, dtype=np.float32))
    assert n_terminal > 5 and {0.0, 1.0, env.decoy_reward} <= set(rewards)  # goals and decoys
    # relabelled goals: equal -> goal reward; a decoy achieved -> decoy reward
    assert env.compute_reward([3, 17, 40], [3, 5, 41]).tolist() == [1.0, env.decoy_reward, 0.0]
    assert env.decoy_reward == pytest.approx(0.1)


def test_compute_reward_goal_shapes() -> None:
    # keulen_misleading: cell 17 is a decoy, 3 and 40 are plain free cells
    env = GridMazeEnv("keulen_misleading")
    achieved, desired = [3, 17, 40], [3, 5, 41]
    expected = [1.0, env.decoy_reward, 0.0]
    scalar = env.compute_reward(3, 3)
    assert scalar.shape == () and scalar.dtype == np.float32 and scalar == 1.0
    assert env.compute_reward(np.int64(17), 5) == np.float32(env.decoy_reward)
    for shape in [(3,), (3, 1)]:  # ours, and how Stable-Baselines3 stores Discrete goals
        rewards = env.compute_reward(np.reshape(achieved, shape), np.reshape(desired, shape))
        assert rewards.shape == (3,) and rewards.dtype == np.float32
        assert rewards.tolist() == expected
    # the two arguments may come in different ones of those shapes
    assert env.compute_reward(np.reshape(achieved, (3, 1)), desired).tolist() == expected
    assert env.compute_reward(achieved, np.reshape(desired, (3, 1))).tolist() == expected
    assert env.compute_reward(np.reshape(achieved, (3, 1)), 3).tolist() == expected
    # any leading batch shape; the trailing goal axis of 1 is reduced
    grid = env.compute_reward(np.array([achieved, achieved])[..., None], np.full((2, 3, 1), 3))
    assert grid.shape == (2, 3) and grid.tolist() == [expected] * 2
    # a 1-d array of length 1 is a batch of one (one reward per row, as our HER buffer needs)
    assert env.compute_reward(np.array([17]), np.array([17])).shape == (1,)
    assert env.compute_reward(np.array([[17]]), np.array([[5]])).tolist() == [env.decoy_reward]
    # SB3 check_env's vectorised call: (2, 1) goals, an array of infos, (2,) rewards
    rewards = env.compute_reward(np.full((2, 1), 40), np.full((2, 1), 40), np.array([{}, {}]))
    assert rewards.shape == (2,) and rewards.tolist() == [1.0, 1.0]


def test_distance() -> None:
    env = GridMazeEnv(SMALL)
    assert env.distance(0, 8) == 4 and env.distance(5, 3) == 2 and env.distance(4, 4) == 0
    assert isinstance(env.distance(np.int64(0), 8), int)
    assert env.distance(np.array([0, 1, 2]), 8).tolist() == [4, 3, 2]
    assert env.distance(np.array([[0], [6]]), np.array([2, 8])).tolist() == [[2, 4], [4, 2]]


def test_render_ansi_and_rgb() -> None:
    env = GridMazeEnv(SMALL, render_mode="ansi")
    env.reset()
    env.step(D)
    assert env.render() == "S.#\nA#G\n...\n"
    env = GridMazeEnv("keulen_misleading", render_mode="rgb_array")
    env.reset()
    image = env.render()
    px = env.cell_px
    assert px == 8 and image.shape == (7 * px, 15 * px, 3) and image.dtype == np.uint8

    def colour(row: int, col: int, inset: int = 0) -> tuple:
        return tuple(image[row * px + inset, col * px + inset])

    assert colour(0, 5) == COLOURS["wall"] and colour(0, 0) == COLOURS["free"]
    assert colour(1, 2) == COLOURS["decoy"] and colour(1, 12) == COLOURS["goal"]
    assert colour(5, 2, 0) == COLOURS["start"] and colour(5, 2, 3) == COLOURS["agent"]
    env.step(R)
    image = env.render()
    assert colour(5, 2, 3) == COLOURS["start"] and colour(5, 3, 3) == COLOURS["agent"]
    big = GridMazeEnv("generated:201x201", render_mode="rgb_array")
    big.reset()
    assert big.render().shape == (201 * 5, 201 * 5, 3)
    with pytest.warns(UserWarning, match="render_mode"):
        assert GridMazeEnv(SMALL).render() is None


def test_bad_arguments() -> None:
    env = GridMazeEnv(SMALL)
    env.reset()
    with pytest.raises(ValueError, match="action"):
        env.step(4)
    with pytest.raises(ValueError, match="slip"):
        GridMazeEnv(slip=1.5)
    with pytest.raises(ValueError, match="max_episode_steps"):
        GridMazeEnv(max_episode_steps=0)
    with pytest.raises(ValueError, match="render_mode"):
        GridMazeEnv(render_mode="human")
    with pytest.raises(MazeError, match="built-in"):
        gymnasium.make(ENV_ID, maze="no_such_maze")
