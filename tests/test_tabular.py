"""Tabular goal-conditioned Q-learning: the update by hand, lazy goal tables, HER learning."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from goal_envs import OpenRoomEnv, make_buffer

from sshr_torch.agents import Agent, TabularAgent
from sshr_torch.agents.base import Transition
from sshr_torch.her import Batch


def learn_one(agent, obs, goal, action, reward, next_obs, terminal):
    """The learner's online step on one real transition, as the trainer takes it."""
    buffer = make_buffer(OpenRoomEnv(3, 10), "none")  # not read for a real transition
    return agent.learn(buffer, 1, Transition(obs, goal, action, reward, next_obs, terminal))


def batch(rows):
    """A Batch from (s, g, a, r, s', terminal) rows."""
    s, g, a, r, s2, d = (np.array(column) for column in zip(*rows, strict=True))
    return Batch(
        obs=s.astype(np.int64),
        goal=g.astype(np.int64),
        action=a.astype(np.int64),
        reward=r.astype(np.float32),
        next_obs=s2.astype(np.int64),
        terminal=d.astype(np.float32),
        relabelled=np.zeros(len(s), dtype=bool),
    )


def test_update_equals_the_q_learning_rule():
    agent = TabularAgent(5, 3, alpha=0.1, gamma=0.9)
    state = agent.state_dict()
    state["goal"], state["state"] = np.array([4, 4]), np.array([2, 1])
    state["q"] = np.array([[0.5, 2.0, -1.0], [0.3, 0.0, 0.0]])  # Q(s' = 2, g = 4, .), Q(1, 4, .)
    agent.load_state_dict(state)
    out = agent.update(batch([(1, 4, 0, 1.0, 2, 0.0)]))
    # q + alpha (r + gamma max q' - q) = 0.3 + 0.1 (1 + 0.9 * 2 - 0.3) = 0.55
    assert agent.table(4)[1, 0] == pytest.approx(0.55)
    assert out["td_loss"] == pytest.approx(2.5**2)
    assert out["q_mean"] == pytest.approx(0.3)
    # Terminal: no bootstrap. 0.55 + 0.1 (1 - 0.55) = 0.595
    agent.update(batch([(1, 4, 0, 1.0, 2, 1.0)]))
    assert agent.table(4)[1, 0] == pytest.approx(0.595)


def test_rows_are_applied_in_order():
    agent = TabularAgent(3, 2, alpha=0.5, gamma=1.0)
    # Row 1 learns Q(1, g, 0) = 0.5; row 2 bootstraps from it: Q(0, g, 1) = 0.5 * 0.5 = 0.25.
    agent.update(batch([(1, 2, 0, 1.0, 2, 1.0), (0, 2, 1, 0.0, 1, 0.0)]))
    table = agent.table(2)
    assert table[1, 0] == pytest.approx(0.5)
    assert table[0, 1] == pytest.approx(0.25)
    # Same as one row at a time.
    other = TabularAgent(3, 2, alpha=0.5, gamma=1.0)
    learn_one(other, 1, 2, 0, 1.0, 2, True)
    learn_one(other, 0, 2, 1, 0.0, 1, False)
    np.testing.assert_array_equal(other.table(2), table)


def test_one_row_and_many_row_paths_agree():
    rng = np.random.default_rng(0)
    rows = [
        (int(rng.integers(6)), int(rng.integers(3)), int(rng.integers(4)), float(rng.random()))
        + (int(rng.integers(6)), float(rng.random() < 0.2))
        for _ in range(200)
    ]
    one, many = TabularAgent(6, 4, seed=1), TabularAgent(6, 4, seed=1)
    for row in rows:
        one.update(batch([row]))
    many.update(batch(rows))
    assert one.goals == many.goals
    for goal in one.goals:
        np.testing.assert_allclose(one.table(goal), many.table(goal), rtol=1e-12)


def test_memory_grows_with_the_updated_pairs():
    agent = TabularAgent(2457, 4)  # a 60x69 maze: 2457^2 x 4 floats would be 193 MB
    assert agent._q.nbytes <= 64 * 4 * 8
    assert agent.n_goals == agent.n_entries == 0
    np.testing.assert_array_equal(agent.max_q(np.arange(5), 17), 0.0)  # unseen goal: Q0
    assert agent.n_goals == agent.n_entries == 0  # reading does not allocate
    for goal in range(10):
        agent.update(batch([(0, goal, 0, 1.0, 1, 1.0)]))
    assert agent.n_goals == 10 and agent.goals == list(range(10)) and agent.n_entries == 10
    for goal in range(10):
        assert agent.table(goal)[0, 0] == pytest.approx(0.1)
        assert agent.table(goal)[1:].max() == 0.0  # never updated: Q0


def test_bytes_per_entry_is_an_upper_bound():
    rng = np.random.default_rng(0)
    agent = TabularAgent(4_004_001, 4)  # generated:2001x2001
    n = 50_000
    rows = Batch(
        obs=rng.integers(0, 4_004_001, n),
        goal=rng.integers(0, 50, n),
        action=rng.integers(0, 4, n),
        reward=np.zeros(n, dtype=np.float32),
        next_obs=rng.integers(0, 4_004_001, n),
        terminal=np.ones(n, dtype=np.float32),
        relabelled=np.zeros(n, dtype=bool),
    )
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        agent.update(rows)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert agent.n_entries > 0.99 * n
    assert used <= agent.n_entries * TabularAgent.bytes_per_entry(4)


def test_greedy_action_and_random_ties():
    agent = TabularAgent(4, 4, seed=0)
    assert {agent.act(0, 3, 0.0) for _ in range(200)} == {0, 1, 2, 3}  # all tied at Q0
    agent.update(batch([(0, 3, 2, 1.0, 1, 1.0)]))
    assert {agent.act(0, 3, 0.0) for _ in range(50)} == {2}
    agent.update(batch([(0, 3, 1, 1.0, 1, 1.0)]))  # now actions 1 and 2 tie
    assert {agent.act(0, 3, 0.0) for _ in range(200)} == {1, 2}
    assert {agent.act(0, 3, 1.0) for _ in range(200)} == {0, 1, 2, 3}
    np.testing.assert_allclose(agent.q_values([0, 1], 3), [[0, 0.1, 0.1, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(agent.max_q(np.array([0, 1]), 3), [0.1, 0.0])


def test_keulen_defaults_and_protocol():
    agent = TabularAgent(10, 4)
    assert (agent.alpha, agent.gamma, agent.q_init) == (0.1, 0.99, 0.0)
    assert isinstance(agent, Agent)


def test_learn_is_online_then_relabels_at_the_episode_end():
    env = OpenRoomEnv(3, 10)
    buffer = make_buffer(env, "final", k=1)
    agent = TabularAgent(9, 4, gamma=0.5)
    # One real step 0 -> 1 under goal 8 (reward 0), then 1 -> 2 (reward 0); the episode ends.
    for state, next_state in ((0, 1), (1, 2)):
        buffer.add(state, state, 8, 1, 0.0, next_state, next_state, False, False, False)
        metrics = agent.learn(buffer, next_state, Transition(state, 8, 1, 0.0, next_state, False))
        assert metrics == {"td_loss": 0.0, "q_mean": 0.0}  # Q was 0 and stays 0
    buffer.end_episode()
    # 'final', k = 1: both steps relabelled with goal 2, the last next state. Step 0 -> 1 is
    # learned first (target 0.5 * max Q(1, 2) = 0), then step 1 -> 2, a success (target 1).
    metrics = agent.learn(buffer, 2, None)
    assert metrics["td_loss"] == pytest.approx((0.0 + 1.0) / 2)
    assert agent.q_values(np.array([1]), 2)[0, 1] == pytest.approx(0.1)
    assert agent.q_values(np.array([0]), 2)[0, 1] == 0.0
    assert agent.learn(make_buffer(env, "none"), 2, None) == {}


def test_discrete_states_only():
    agent = TabularAgent(4, 2)
    bits = Batch(
        obs=np.zeros((1, 3), dtype=np.uint8),
        goal=np.zeros((1, 3), dtype=np.uint8),
        action=np.zeros(1, dtype=np.int64),
        reward=np.zeros(1, dtype=np.float32),
        next_obs=np.zeros((1, 3), dtype=np.uint8),
        terminal=np.zeros(1, dtype=np.float32),
        relabelled=np.zeros(1, dtype=bool),
    )
    with pytest.raises(ValueError, match="Discrete"):
        agent.update(bits)
    with pytest.raises(ValueError, match="Discrete"):
        agent.update(bits._replace(obs=np.zeros((2, 3)), action=np.zeros(2, dtype=np.int64)))
    with pytest.raises(ValueError, match="outside"):
        agent.update(batch([(4, 0, 0, 0.0, 0, 0.0)]))
    with pytest.raises(ValueError, match="outside"):
        agent.update(batch([(0, 0, 0, 0.0, 1, 0.0), (-1, 0, 0, 0.0, 0, 0.0)]))
    with pytest.raises(ValueError, match="Discrete"):
        agent.act(np.zeros(3), 0, 0.0)


def test_state_dict_round_trip():
    agent = TabularAgent(5, 2, seed=3)
    agent.update(batch([(0, 1, 0, 1.0, 1, 0.0), (2, 4, 1, 0.5, 3, 1.0)]))
    copy = TabularAgent(5, 2, seed=99)
    copy.load_state_dict(agent.state_dict())
    assert copy.goals == agent.goals
    for goal in agent.goals:
        np.testing.assert_array_equal(copy.table(goal), agent.table(goal))
    assert [copy.act(0, 3, 0.5) for _ in range(20)] == [agent.act(0, 3, 0.5) for _ in range(20)]
    with pytest.raises(ValueError, match="5 states"):
        TabularAgent(6, 2).load_state_dict(agent.state_dict())


def run_tabular(strategy: str, n_episodes: int, seed: int = 0) -> TabularAgent:
    """Online tabular learning on a 5x5 room: each real step, then the episode's relabels."""
    env = OpenRoomEnv(5, max_episode_steps=30)
    agent = TabularAgent(25, 4, seed=seed)
    buffer = make_buffer(env, strategy, capacity=10_000, seed=seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(n_episodes):
        done = False
        while not done:
            state, goal = obs["observation"], obs["desired_goal"]
            action = agent.act(state, goal, 0.1)
            obs, reward, terminated, truncated, info = env.step(action)
            buffer.add(
                state,
                state,
                goal,
                action,
                reward,
                obs["observation"],
                obs["achieved_goal"],
                terminated,
                truncated,
                info["is_success"],
            )
            transition = Transition(state, goal, action, reward, obs["observation"], terminated)
            agent.learn(buffer, 0, transition)
            done = terminated or truncated
        buffer.end_episode()
        agent.update(buffer.episode_relabels())
        obs, _ = env.reset()
    return agent


def greedy_success(agent: TabularAgent, size: int = 5) -> float:
    """Greedy success over every (start, goal) pair of the room."""
    env = OpenRoomEnv(size, max_episode_steps=30)
    env.reset(seed=0)
    successes = 0
    pairs = [(s, g) for s in range(size * size) for g in range(size * size) if s != g]
    for start, goal in pairs:
        env._cell, env._goal, env._steps = start, goal, 0
        done, success = False, False
        while not done:
            _, _, success, truncated, _ = env.step(agent.act(env._cell, goal, 0.0))
            done = success or truncated
        successes += success
    return successes / len(pairs)


def test_her_speeds_up_tabular_learning():
    # 100 episodes: with HER 0.95-0.96 of all (start, goal) pairs solved greedily over seeds
    # 0-2, plain Q-learning on the real goal 0.66-0.68 (a random walk already solves about half).
    with_her = greedy_success(run_tabular("future", 100))
    without = greedy_success(run_tabular("none", 100))
    assert with_her >= 0.9
    assert without <= with_her - 0.15


def test_tabular_module_does_not_import_torch():
    code = (
        "import sys, sshr_torch.agents.tabular; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_copied_agent_learns_on_its_own_tables():
    agent = TabularAgent(3, 2, alpha=0.5, gamma=1.0)
    learn_one(agent, 1, 2, 0, 1.0, 2, True)
    clone = pickle.loads(pickle.dumps(copy.deepcopy(agent)))
    learn_one(clone, 0, 2, 1, 0.0, 1, False)  # bootstraps from Q(1, 2, 0) = 0.5
    assert clone.table(2)[0, 1] == pytest.approx(0.25)
    assert agent.table(2)[0, 1] == 0.0  # the original is untouched
    with pytest.raises(ValueError, match="action"):
        learn_one(agent, 0, 2, 2, 0.0, 1, False)
