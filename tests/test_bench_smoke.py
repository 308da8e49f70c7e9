"""Smoke tests of the issue-7 benchmark scripts: they run on tiny budgets (no timed asserts).

Also: the SB3 arm of bench_vs_sb3 learns from the same rewards as ours (issue 16).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from goal_envs import make_buffer

from sshr_torch.env import GridMazeEnv

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _load(name: str) -> ModuleType:
    if str(EXPERIMENTS) not in sys.path:  # the scripts import experiments/_common.py
        sys.path.insert(0, str(EXPERIMENTS))
    folder = EXPERIMENTS / "benchmarks" if name.startswith("bench_") else EXPERIMENTS
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_our_arm_runs_its_budget_and_evaluates(tmp_path: Path) -> None:
    bench = _load("bench_vs_sb3")
    outcome = bench.run_ours(
        "keulen_easy",
        100,
        1_200,
        smart_start=True,
        seed=0,
        evaluate=True,
        runs_root=str(tmp_path),
    )
    assert outcome.reached_at is None or outcome.reached_at <= 1_200
    assert 0 < outcome.steps <= 1_200
    assert 0.0 <= outcome.last_success <= 1.0
    assert outcome.sps > 0


def test_sb3_arm_runs_on_our_env() -> None:
    pytest.importorskip("stable_baselines3")
    bench = _load("bench_vs_sb3")
    outcome = bench.run_sb3("keulen_easy", 100, 1_100, seed=0, evaluate=False)
    assert outcome.steps == 1_100


def _record_episode(env: GridMazeEnv) -> list[tuple]:
    """The first seeded random-action episode that ends on a decoy, as its transitions.

    Each transition is (obs, action, reward, next_obs, terminated, truncated, is_success).
    Ending on a decoy puts all three rewards of the env (0, decoy, goal by relabelling) in it.
    """
    for seed in range(100):
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        episode, done = [], False
        while not done:
            action = int(rng.integers(4))
            next_obs, reward, terminated, truncated, info = env.step(action)
            episode.append(
                (obs, action, reward, next_obs, terminated, truncated, info["is_success"])
            )
            obs, done = next_obs, terminated or truncated
        if terminated and not info["is_success"]:
            return episode
    raise AssertionError("no random episode of 100 ended on a decoy")


def test_sb3_her_rewards_equal_ours_on_a_recorded_episode() -> None:
    pytest.importorskip(
        "stable_baselines3",
        reason="Stable-Baselines3 is not installed (pip install -e '.[bench]'; CI installs it)",
    )
    bench = _load("bench_vs_sb3")
    env = GridMazeEnv("keulen_misleading", max_episode_steps=200)
    episode = _record_episode(env)
    real_goal = episode[0][0]["desired_goal"]
    decoys = set(env.maze.decoy_indices.tolist())

    # The bench's own SB3 model: its HerReplayBuffer computes relabelled rewards through the
    # env (env_method("compute_reward", (batch, 1) goals)). Fill it as SB3's rollout would.
    model = bench.make_sb3_model(env, 1_000, seed=0)
    sb3_buffer = model.replay_buffer
    ours = make_buffer(env, "future", k=bench.SHARED["her_k"], seed=0)  # the trainer's call
    for obs, action, reward, next_obs, terminated, truncated, success in episode:
        sb3_buffer.add(
            {key: np.array([value]) for key, value in obs.items()},
            {key: np.array([value]) for key, value in next_obs.items()},
            np.array([action]),
            np.array([reward], dtype=np.float32),
            np.array([terminated or truncated]),
            [{"is_success": success, "TimeLimit.truncated": truncated}],
        )
        ours.add(
            obs["observation"],
            obs["achieved_goal"],
            obs["desired_goal"],
            action,
            reward,
            next_obs["observation"],
            next_obs["achieved_goal"],
            terminated,
            truncated,
            success,
        )
    ours.end_episode()

    samples = sb3_buffer.sample(4096)
    achieved = samples.next_observations["achieved_goal"].numpy()  # (batch, 1)
    goal = samples.observations["desired_goal"].numpy()  # (batch, 1)
    sb3_rewards = samples.rewards.numpy()  # (batch, 1) float32
    assert achieved.shape == goal.shape == sb3_rewards.shape == (4096, 1)
    achieved, goal, sb3_rewards = achieved[:, 0], goal[:, 0], sb3_rewards[:, 0]
    relabelled = goal != real_goal
    assert relabelled.sum() > 2048  # SB3's her ratio is k / (k + 1) = 0.8
    # What our HER buffer computes for the same pairs, and the rule worked out by hand.
    assert np.array_equal(sb3_rewards, ours.compute_reward(achieved, goal))
    by_hand = [
        env.goal_reward if a == g else env.decoy_reward if a in decoys else 0.0
        for a, g in zip(achieved.tolist(), goal.tolist(), strict=True)
    ]
    assert np.array_equal(sb3_rewards, np.array(by_hand, dtype=np.float32))
    # Real (not relabelled) samples carry step()'s reward.
    step_reward = {next_obs["achieved_goal"]: reward for _, _, reward, next_obs, *_ in episode}
    for a, r in zip(achieved[~relabelled].tolist(), sb3_rewards[~relabelled].tolist(), strict=True):
        assert r == np.float32(step_reward[a])
    assert {0.0, 1.0, np.float32(env.decoy_reward)} <= set(sb3_rewards.tolist())

    # Our buffer's own samples agree with SB3's pair by pair.
    batch = ours.sample(4096)
    sb3_pairs = zip(achieved.tolist(), goal.tolist(), strict=True)
    sb3_by_pair = dict(zip(sb3_pairs, sb3_rewards.tolist(), strict=True))
    our_pairs = zip(batch.next_obs.tolist(), batch.goal.tolist(), strict=True)
    ours_by_pair = dict(zip(our_pairs, batch.reward.tolist(), strict=True))
    shared = sb3_by_pair.keys() & ours_by_pair.keys()
    assert len(shared) > 0.5 * len(sb3_by_pair)
    assert all(sb3_by_pair[pair] == ours_by_pair[pair] for pair in shared)
    assert sum(a == g != real_goal for a, g in shared) > 0  # relabelled successes compared


def test_scale_pieces_on_a_small_maze() -> None:
    scale = _load("bench_scale")
    assert scale.update_us("generated:11x11:seed=0", 20) > 0
    plan = scale.plan_ms("generated:21x21:seed=0", 10_000, 2)
    assert plan["n_visited"] == 241  # every free cell of the 21x21 perfect maze
    assert plan["plan_length_farthest"] > 0


def test_hard_exploration_runs_every_arm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hard = _load("hard_exploration")
    assert hard.main(["--budget", "1500", "--runs-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for arm in hard.ARMS:
        assert f"  {arm} " in out


def test_bench_dqn_defaults_compares_the_two_arms(capsys) -> None:
    bench = _load("bench_dqn_defaults")
    # the 'before' arm is the first round's DQN: its settings differ from the defaults
    assert bench.ARMS["before"]["n_step"] == 1 and bench.ARMS["before"]["model_values"] == "off"
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    rates = [float(line.split()[3]) for line in out.splitlines() if line.startswith("  round")]
    assert len(rates) == 3 and all(rate > 0 for rate in rates)
    # The printed ratios are of the unrounded rates, the printed rates rounded to whole steps:
    # compare within that rounding (a ratio of 0.915 may print as 0.91 or 0.92).
    for label, ratio in (("before", rates[2] / rates[0]), ("env_goal", rates[2] / rates[1])):
        printed = float(out.split(f"now / {label} ")[1].split()[0])
        assert abs(printed - ratio) <= 0.006 + 1.0 / min(rates), (label, printed, ratio)


def test_bench_model_goals_prints_the_cost_against_the_target(capsys) -> None:
    bench = _load("bench_model_goals")
    assert bench.main(["--smoke"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "ms a batch" in line]
    assert len(lines) == 2  # keulen_hard, a fixed and a growing model
    assert all(f"target <= {bench.TARGET_MS} ms" in line for line in lines)
    assert all(int(line.split("(")[1].split()[0]) > 0 for line in lines)  # it searched
    assert bench.main(["--batches", "0"]) == 2


def test_bench_bitflip_prints_both_arms_and_the_ratio(capsys) -> None:
    pytest.importorskip("stable_baselines3")
    bench = _load("bench_bitflip")
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    rates = {
        line.split()[2]: float(line.split()[3])
        for line in out.splitlines()
        if line.startswith("  round")
    }
    assert rates.keys() == {"sb3", "ours"} and all(rate > 0 for rate in rates.values())
    printed = float(out.split("ours / SB3 ")[1].split("x")[0])
    ratio = rates["ours"] / rates["sb3"]
    assert abs(printed - ratio) <= 0.006 + 1.0 / min(rates.values()), (printed, ratio)
    assert f"target >= {bench.TARGET_RATIO}x" in out
    assert bench.main(["--steps", "1000"]) == 2  # no update would run


def test_bench_minigrid_vs_sb3_runs_every_arm(capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("minigrid", reason="needs pip install -e '.[minigrid]' (CI has it)")
    pytest.importorskip("stable_baselines3", reason="needs pip install -e '.[bench]' (CI has it)")
    bench = _load("bench_minigrid_vs_sb3")
    assert bench.main(["--steps", "300", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for arm in bench.ARMS:
        assert f"round 1 {arm}" in out
    assert "ours+ss" in out and "ratio to SB3" in out and "reference >= 2.5x" in out
