"""HER replay buffer: exact relabelling on hand-made episodes, ring wrap, and the known HER bugs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sshr_torch.her import Batch, GoalSelectionStrategy, HerReplayBuffer, ModelRows

STRATEGIES = [s.value for s in GoalSelectionStrategy]
RELABELLING = [s for s in STRATEGIES if s != "none"]


def equal_reward(achieved, desired):
    """1 where achieved == desired, else 0 (vectorised)."""
    return (np.asarray(achieved) == np.asarray(desired)).astype(np.float32)


def asymmetric_reward(achieved, desired):
    """Depends on which argument is which, so a swap shows: 1[a == d] + 0.01 a - 0.0001 d."""
    achieved, desired = np.asarray(achieved), np.asarray(desired)
    return (achieved == desired) + 0.01 * achieved - 0.0001 * desired


def add_episode(buffer, states, goal=99, *, terminated=False, truncated=True, success=False):
    """Add an episode visiting ``states`` (achieved goal = state); returns the transitions."""
    for t in range(len(states) - 1):
        last = t == len(states) - 2
        buffer.add(
            states[t],
            states[t],
            goal,
            t % 4,
            -1.0,
            states[t + 1],
            states[t + 1],
            terminated and last,
            truncated and last,
            success and last,
        )
    buffer.end_episode()


# The hand-made episode: s_0..s_4 = 10, 11, 12, 13, 14, so transition t goes s_t -> s_{t+1} and
# its next achieved goal is 11 + t. The real goal 99 is never reached (truncated at the end).
EPISODE = [10, 11, 12, 13, 14]
NEXT_ACHIEVED = np.array([11, 12, 13, 14])


def allowed_goals(strategy: str, t: int, stored: set[int]) -> set[int]:
    """The substitute goals a strategy may give transition t of EPISODE."""
    if strategy == "future":
        return set(NEXT_ACHIEVED[t:].tolist())  # includes t itself, never earlier steps
    if strategy == "final":
        return {14}  # the last *next* achieved goal, ag(s_4), not ag(s_3)
    if strategy == "episode":
        return set(NEXT_ACHIEVED.tolist())
    if strategy == "random":
        return stored
    raise AssertionError(strategy)


def make(strategy="future", *, capacity=1000, k=4, reward=asymmetric_reward, seed=0, **kwargs):
    return HerReplayBuffer(capacity, reward, strategy=strategy, k=k, rng=seed, **kwargs)


@pytest.mark.parametrize("strategy", RELABELLING)
def test_episode_relabels_exact_goals_rewards_terminals(strategy):
    buffer = make(strategy, k=64)
    add_episode(buffer, [50, 51, 52])  # another episode, so 'random' has more to choose from
    add_episode(buffer, EPISODE)
    batch = buffer.episode_relabels()
    stored = {51, 52, 11, 12, 13, 14}
    assert len(batch.action) == 4 * 64
    assert batch.relabelled.all()
    t = np.repeat(np.arange(4), 64)  # rows come as k rows for t = 0, then t = 1, ...
    np.testing.assert_array_equal(batch.obs, np.array(EPISODE)[t])
    np.testing.assert_array_equal(batch.next_obs, np.array(EPISODE)[t + 1])
    np.testing.assert_array_equal(batch.action, t % 4)
    for step in range(4):
        goals = set(batch.goal[t == step].tolist())
        # With 64 draws every allowed goal shows up (the chance to miss one is < 4 * 0.75^64).
        assert goals == allowed_goals(strategy, step, stored), (step, goals)
    achieved = NEXT_ACHIEVED[t]
    np.testing.assert_allclose(batch.reward, asymmetric_reward(achieved, batch.goal), rtol=1e-6)
    # Terminal exactly where the substitute goal is the step's own next achieved goal.
    np.testing.assert_array_equal(batch.terminal, (batch.goal == achieved).astype(np.float32))
    assert batch.reward.dtype == np.float32 and batch.terminal.dtype == np.float32


def test_final_strategy_hand_worked():
    buffer = make("final", k=2)
    add_episode(buffer, EPISODE)
    batch = buffer.episode_relabels()
    np.testing.assert_array_equal(batch.goal, [14] * 8)
    np.testing.assert_array_equal(batch.terminal, [0, 0, 0, 0, 0, 0, 1, 1])
    expected = [0.11 - 0.0014] * 2 + [0.12 - 0.0014] * 2 + [0.13 - 0.0014] * 2 + [1.14 - 0.0014] * 2
    np.testing.assert_allclose(batch.reward, expected, rtol=1e-6)


def test_none_strategy_never_relabels():
    buffer = make("none")
    add_episode(buffer, EPISODE)
    empty = buffer.episode_relabels()
    assert len(empty.action) == 0 and empty.obs.dtype == np.int64 and empty.goal.shape == (0,)
    batch = buffer.sample(256)
    assert not batch.relabelled.any()
    np.testing.assert_array_equal(batch.goal, 99)
    np.testing.assert_array_equal(batch.reward, -1.0)


@pytest.mark.parametrize("strategy", RELABELLING)
def test_sample_relabels_with_the_strategy(strategy):
    buffer = make(strategy)
    add_episode(buffer, [50, 51, 52])
    add_episode(buffer, EPISODE)
    stored = {51, 52, 11, 12, 13, 14}
    n_relabelled = 0
    for _ in range(50):
        batch = buffer.sample(64)
        n_relabelled += batch.relabelled.sum()
        for row in range(64):
            obs, goal = int(batch.obs[row]), int(batch.goal[row])
            if obs >= 50:  # the 2-step episode: just check membership
                assert not batch.relabelled[row] or goal in stored
                continue
            step = obs - 10
            achieved = int(NEXT_ACHIEVED[step])
            if batch.relabelled[row]:
                assert goal in allowed_goals(strategy, step, stored)
                assert batch.terminal[row] == float(goal == achieved)
            else:
                assert goal == 99 and batch.terminal[row] == 0.0 and batch.reward[row] == -1.0
            if batch.relabelled[row]:
                expected = asymmetric_reward(achieved, goal)
                assert batch.reward[row] == pytest.approx(expected, rel=1e-6)
    # k / (k + 1) = 0.8 of the rows are relabelled (exact in expectation).
    assert n_relabelled / (50 * 64) == pytest.approx(0.8, abs=0.02)


def test_relabelled_fraction_follows_k():
    for k, fraction in ((1, 0.5), (4, 0.8), (0, 0.0)):
        buffer = make("future", k=k)
        add_episode(buffer, EPISODE)
        relabelled = np.mean([buffer.sample(10).relabelled.mean() for _ in range(2000)])
        assert relabelled == pytest.approx(fraction, abs=0.01)


def test_compute_reward_gets_achieved_then_desired():
    calls = []

    def recording(achieved, desired):
        calls.append((np.array(achieved), np.array(desired)))
        return np.zeros(len(achieved), dtype=np.float32)

    buffer = make("final", k=1, reward=recording)
    add_episode(buffer, EPISODE)
    buffer.episode_relabels()
    achieved, desired = calls[-1]
    np.testing.assert_array_equal(achieved, NEXT_ACHIEVED)  # ag(s_{t+1}) of each transition
    np.testing.assert_array_equal(desired, [14, 14, 14, 14])  # the substitute goal


def test_truncation_is_never_terminal():
    buffer = make("future", k=4)
    add_episode(buffer, EPISODE, truncated=True)
    for _ in range(20):
        batch = buffer.sample(64)
        real = ~batch.relabelled
        assert (batch.terminal[real] == 0.0).all()
        # Relabelled rows are terminal only where the substitute goal is reached.
        reached = batch.goal == NEXT_ACHIEVED[batch.obs - 10]
        np.testing.assert_array_equal(batch.terminal[batch.relabelled], reached[batch.relabelled])


def test_real_success_terminal_but_not_under_another_goal():
    # The episode reaches its real goal 14 at the last step: terminated, is_success.
    buffer = make("episode", k=64)
    add_episode(buffer, EPISODE, goal=14, terminated=True, truncated=False, success=True)
    real = buffer.sample(512)
    last = real.obs == 13
    assert (real.terminal[last & ~real.relabelled] == 1.0).all()
    assert (real.terminal[~last & ~real.relabelled] == 0.0).all()
    relabels = buffer.episode_relabels()
    last = relabels.obs == 13
    # Under a substitute goal other than 14, reaching 14 is not the end of anything.
    np.testing.assert_array_equal(relabels.terminal[last], (relabels.goal[last] == 14))
    assert (relabels.goal[last] != 14).any()


def test_goal_independent_termination_stays_terminal():
    # Terminated without success (e.g. a wall that ends the episode): terminal under any goal.
    buffer = make("episode", k=64)
    add_episode(buffer, EPISODE, terminated=True, truncated=False, success=False)
    relabels = buffer.episode_relabels()
    assert (relabels.terminal[relabels.obs == 13] == 1.0).all()
    np.testing.assert_array_equal(
        relabels.terminal[relabels.obs < 13],
        relabels.goal[relabels.obs < 13] == relabels.obs[relabels.obs < 13] + 1,
    )


def test_sampling_before_an_episode_ends_is_a_clear_error():
    buffer = make("future")
    with pytest.raises(RuntimeError, match="before an episode has ended"):
        buffer.sample(4)
    buffer.add(1, 1, 9, 0, 0.0, 2, 2, False, False, False)
    with pytest.raises(RuntimeError, match="before an episode has ended"):
        buffer.sample(4)
    with pytest.raises(RuntimeError, match="no finished episode"):
        buffer.episode_relabels()
    assert len(buffer) == 0 and buffer.n_episodes == 0
    buffer.end_episode()
    assert len(buffer) == 1 and buffer.n_episodes == 1
    assert buffer.sample(4).obs.tolist() == [1, 1, 1, 1]


def test_running_episode_is_never_sampled():
    buffer = make("random", k=4)
    add_episode(buffer, [10, 11, 12])
    for t in range(3):  # a running episode, not ended
        buffer.add(70 + t, 70 + t, 99, 0, 0.0, 71 + t, 71 + t, False, False, False)
    for _ in range(20):
        batch = buffer.sample(64)
        assert (batch.obs < 70).all()
        assert ((batch.goal < 70) | (batch.goal == 99)).all()


@pytest.mark.parametrize("strategy", RELABELLING)
def test_ring_wrap_keeps_episodes_whole(strategy):
    capacity = 50
    buffer = make(strategy, capacity=capacity, k=4, seed=3)
    rng = np.random.default_rng(1)
    lengths = []
    for episode in range(200):  # about 24 times the capacity
        length = int(rng.integers(1, 12))
        lengths.append(length)
        # state = 100 * episode id + step: goals and states name their episode.
        add_episode(buffer, [100 * episode + t for t in range(length + 1)])
        # The buffer keeps the newest episodes, whole: its size is the sum of their lengths.
        stored = set(range(episode + 1 - buffer.n_episodes, episode + 1))
        assert len(buffer) == sum(lengths[e] for e in stored) <= capacity
        batch = buffer.sample(64)
        episodes = batch.obs // 100
        assert set(episodes.tolist()) <= stored
        relabelled = batch.relabelled
        goal_episodes = batch.goal[relabelled] // 100
        if strategy == "random":
            assert set(goal_episodes.tolist()) <= stored
        else:
            np.testing.assert_array_equal(goal_episodes, episodes[relabelled])
        if strategy == "future":
            assert (batch.goal[relabelled] > batch.obs[relabelled]).all()
        relabels = buffer.episode_relabels()
        assert len(relabels.action) == 4 * length
        assert (relabels.obs // 100 == episode).all()
        if strategy != "random":
            assert (relabels.goal // 100 == episode).all()
    assert sum(lengths) > 20 * capacity


def test_episode_longer_than_capacity_is_a_clear_error():
    buffer = make("future", capacity=5)
    add_episode(buffer, [0, 1, 2])
    with pytest.raises(ValueError, match="longer than the buffer capacity"):
        add_episode(buffer, list(range(10, 17)))


def test_multibinary_goals():
    n_bits = 4
    buffer = HerReplayBuffer(
        100,
        lambda a, d: -np.any(a != d, axis=-1).astype(np.float32),
        strategy="future",
        k=16,
        obs_shape=(n_bits,),
        goal_shape=(n_bits,),
        obs_dtype=np.uint8,
        goal_dtype=np.uint8,
        rng=0,
    )
    states = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=np.uint8)
    goal = np.ones(n_bits, dtype=np.uint8)
    for t in range(3):
        buffer.add(
            states[t], states[t], goal, t, -1.0, states[t + 1], states[t + 1], False, t == 2, False
        )
    buffer.end_episode()
    batch = buffer.episode_relabels()
    assert batch.goal.shape == (48, n_bits) and batch.goal.dtype == np.uint8
    step = np.repeat(np.arange(3), 16)
    achieved = states[step + 1]
    reached = (batch.goal == achieved).all(axis=1)
    np.testing.assert_array_equal(batch.terminal, reached)
    np.testing.assert_array_equal(batch.reward, np.where(reached, 0.0, -1.0))
    # 'future' goals are next states of this step or later: bit count >= step + 1.
    assert (batch.goal.sum(axis=1) >= step + 1).all()
    sample = buffer.sample(32)
    assert sample.obs.shape == (32, n_bits) and sample.goal.shape == (32, n_bits)


class _CountingArray(np.ndarray):
    """An ndarray that counts the elements it hands out or takes in through indexing/ufuncs."""

    touched = 0

    def __getitem__(self, index):
        result = super().__getitem__(index)
        _CountingArray.touched += np.size(result)
        return result.view(np.ndarray) if isinstance(result, np.ndarray) else result

    def __setitem__(self, index, value):
        _CountingArray.touched += np.size(value)
        super().__setitem__(index, value)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for item in inputs:
            if isinstance(item, _CountingArray):
                _CountingArray.touched += item.size
        plain = [i.view(np.ndarray) if isinstance(i, _CountingArray) else i for i in inputs]
        return getattr(ufunc, method)(*plain, **kwargs)


@pytest.mark.parametrize("strategy", RELABELLING)
def test_sampling_cost_does_not_grow_with_the_buffer(strategy):
    touched = []
    for n_episodes in (10, 3000):
        buffer = make(strategy, capacity=20 * n_episodes, reward=equal_reward)
        for episode in range(n_episodes):
            add_episode(buffer, [episode * 20 + t for t in range(11)])
        for name, value in vars(buffer).items():
            if isinstance(value, np.ndarray):
                setattr(buffer, name, value.view(_CountingArray))
        _CountingArray.touched = 0
        buffer.sample(128)
        touched.append(_CountingArray.touched)
    assert touched[0] == touched[1] or abs(touched[0] - touched[1]) <= 8  # random n_her rounding
    assert touched[1] < 30 * 128  # a few arrays read at the batch's rows, nothing buffer-sized


def test_state_dict_round_trip():
    buffer = make("future", capacity=30, k=4, seed=5)
    for episode in range(12):
        add_episode(buffer, [100 * episode + t for t in range(5)])
    buffer.add(7, 7, 99, 0, 0.0, 8, 8, False, False, False)  # a running episode
    state = buffer.state_dict()
    copy = make("future", capacity=30, k=4, seed=123)
    copy.load_state_dict(state)
    assert len(copy) == len(buffer) and copy.n_episodes == buffer.n_episodes
    for got, expected in zip(copy.sample(64), buffer.sample(64), strict=True):
        np.testing.assert_array_equal(got, expected)
    # The running episode resumes where it was.
    for target in (buffer, copy):
        target.add(8, 8, 99, 1, 0.0, 9, 9, False, True, False)
        target.end_episode()
    for got, expected in zip(copy.episode_relabels(), buffer.episode_relabels(), strict=True):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="capacity"):
        make("future", capacity=31).load_state_dict(state)


def test_strategy_names_and_errors():
    assert make(GoalSelectionStrategy.FINAL).strategy is GoalSelectionStrategy.FINAL
    assert make("episode").strategy is GoalSelectionStrategy.EPISODE
    with pytest.raises(ValueError, match="unknown HER strategy 'fut'"):
        make("fut")
    with pytest.raises(ValueError, match="capacity"):
        HerReplayBuffer(0, equal_reward)
    assert Batch._fields == (
        "obs",
        "goal",
        "action",
        "reward",
        "next_obs",
        "terminal",
        "relabelled",
        "discount",
        "weight",
    )


def test_her_module_does_not_import_torch():
    code = "import sys, sshr_torch.her; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0, 3.0])
def test_off_policy_steps_are_drawn_with_their_weight(weight):
    # 2 off-policy steps (states 0, 1) and 6 of the learner's (2..7): a row is off-policy with
    # probability 2w / (2w + 6).
    buffer = HerReplayBuffer(100, equal_reward, strategy="none", k=0, rng=1,
                             off_policy_weight=weight)  # fmt: skip
    for t in range(8):
        buffer.add(t, t, 99, 0, 0.0, t + 1, t + 1, False, t == 7, False, off_policy=t < 2)
    buffer.end_episode()
    obs = buffer.sample(20_000).obs
    share = np.mean(obs < 2)
    assert share == pytest.approx(2 * weight / (2 * weight + 6), abs=0.01)
    # within each kind the draw stays uniform
    for kind in (obs[obs < 2], obs[obs >= 2]):
        if len(kind):
            counts = np.bincount(kind)[kind.min() :]
            assert counts.min() > 0.9 * counts.mean()


def test_off_policy_weight_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="off_policy_weight"):
        HerReplayBuffer(10, equal_reward, off_policy_weight=-0.5)


@pytest.mark.parametrize("n_step", [1, 3])
def test_an_end_without_the_goal_gets_the_failure_tail(n_step):
    # EPISODE ends terminated without success on its last step (13 -> 14: a death): under the
    # real goal, and under every substitute goal but 14 itself, that step's reward gains the
    # tail; every other step, and the step that reaches its substitute goal, does not.
    gamma, tail = 0.5, -7.0
    settings = {"n_step": n_step, "gamma": gamma} if n_step > 1 else {}
    buffer = make("episode", k=4, reward=equal_reward, failure_tail=tail, **settings)
    add_episode(buffer, EPISODE, terminated=True, truncated=False, success=False)
    relabels = buffer.episode_relabels()
    last = relabels.obs == 13
    failed = last & (relabels.goal != 14)
    assert failed.any() and (last & ~failed).any()
    # relabelled rewards are compute_reward's: 0 off the substitute goal, 1 on it
    np.testing.assert_array_equal(relabels.reward[failed], 0.0 + tail)
    np.testing.assert_array_equal(relabels.reward[last & ~failed], 1.0)
    assert (relabels.reward[~last] >= 0.0).all()
    batch = buffer.sample(256)
    real_last = ~batch.relabelled & (batch.obs == 13)
    assert real_last.any()
    np.testing.assert_array_equal(batch.reward[real_last], -1.0 + tail)
    if n_step > 1:  # a window from 12 ends at the death: r_12 + gamma (r_13 + tail)
        real_12 = ~batch.relabelled & (batch.obs == 12)
        assert real_12.any()
        np.testing.assert_allclose(batch.reward[real_12], -1.0 + gamma * (-1.0 + tail))
    # a success is no failure: the same episode ending on its goal gets no tail
    won = make("episode", k=4, reward=equal_reward, failure_tail=tail, **settings)
    add_episode(won, EPISODE, goal=14, terminated=True, truncated=False, success=True)
    assert (won.sample(256).reward >= -1.0 / (1.0 - gamma)).all()


def model_rows(states, goals, failed=()):
    """A ModelRows source that hands out the moves s -> s + 1 of ``states`` and ``goals``
    cyclically (achieved goal = state), with ``failed`` next states."""

    def draw(n):
        s = np.resize(np.asarray(states), n)
        return ModelRows(
            s, s % 4, s + 1, s + 1, np.resize(np.asarray(goals), n), np.isin(s + 1, failed)
        )

    return draw


@pytest.mark.parametrize("n_step", [1, 3])
def test_model_rows_fill_their_share_with_rewards_and_ends_for_their_goals(n_step):
    gamma, tail = 0.5, -7.0
    settings = {"n_step": n_step, "gamma": gamma} if n_step > 1 else {}
    buffer = make("future", k=4, reward=equal_reward, step_reward=-1.0, failure_tail=tail,
                  model_rows=model_rows([0, 1, 2], [1, 9, 9], failed=[3]), model_share=0.25,
                  **settings)  # fmt: skip
    add_episode(buffer, EPISODE)
    shares = []
    for _ in range(200):
        batch = buffer.sample(30)
        from_model = batch.obs < 10  # the stored episode's states are 10..13
        shares.append(from_model.mean())
        # the model's rows come last, all marked relabelled
        assert not from_model[: len(from_model) - from_model.sum()].any()
        assert batch.relabelled[from_model].all()
    assert np.mean(shares) == pytest.approx(0.25, abs=0.01)
    rows = buffer.transition_rows(model_rows([0, 1, 2], [1, 9, 9], failed=[3])(3))
    # 0 -> 1 reaches goal 1: reward 1 - 1, terminal; 1 -> 2 for goal 9: -1, bootstraps;
    # 2 -> 3 for goal 9 ends at a failed state: -1 + the tail, terminal
    np.testing.assert_array_equal(rows.reward, [0.0, -1.0, -1.0 + tail])
    np.testing.assert_array_equal(rows.terminal, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(rows.next_obs, [1, 2, 3])
    if n_step > 1:
        np.testing.assert_allclose(rows.discount, [0.0, gamma, 0.0])
    else:
        assert rows.discount is None


def test_model_share_needs_a_source_and_stays_below_one():
    with pytest.raises(ValueError, match="model_share"):
        HerReplayBuffer(10, equal_reward, model_share=0.5)
    with pytest.raises(ValueError, match="model_share"):
        HerReplayBuffer(10, equal_reward, model_rows=model_rows([0], [1]), model_share=1.0)


def test_last_end_reports_a_failed_end():
    buffer = make("future")
    assert buffer.last_end() is None
    add_episode(buffer, EPISODE, terminated=True, truncated=False, success=False)
    next_obs, failed = buffer.last_end()
    assert int(next_obs) == 14 and failed
    add_episode(buffer, [20, 21], terminated=True, truncated=False, success=True)
    next_obs, failed = buffer.last_end()
    assert int(next_obs) == 21 and not failed


def test_prioritised_replay_draws_by_priority_with_importance_weights():
    buffer = HerReplayBuffer(100, equal_reward, strategy="none", k=0, rng=3,
                             priority_alpha=0.5, priority_beta=0.4)  # fmt: skip
    for t in range(4):  # steps 0..3 of one episode
        buffer.add(t, t, 99, 0, 0.0, t + 1, t + 1, False, t == 3, False)
    buffer.end_episode()
    first = buffer.sample(4)
    np.testing.assert_array_equal(first.weight, 1.0)  # every new step at the top priority
    # give the drawn rows the priorities 16 * (1 + their state): drawn often as p^0.5
    buffer.update_priorities(16.0 * (1 + first.obs) - 1e-6)
    priority = np.full(4, 1.0)  # steps never drawn keep the first priority, 1
    priority[first.obs] = 16.0 * (1 + first.obs)
    expected = priority**0.5 / (priority**0.5).sum()
    counts = np.zeros(4)
    for _ in range(2000):  # draws only, priorities unchanged
        batch = buffer._sample_stored(16, len(buffer))
        np.add.at(counts, batch.obs, 1)
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.01)
    weight = (4 * expected[batch.obs]) ** -0.4
    np.testing.assert_allclose(batch.weight, weight / weight.max(), rtol=1e-5)
    # a new step starts at the largest priority so far
    buffer.add(9, 9, 99, 0, 0.0, 10, 10, False, True, False)
    buffer.end_episode()
    assert buffer._priority[4] == pytest.approx(priority.max())
    state = buffer.state_dict()
    again = HerReplayBuffer(100, equal_reward, strategy="none", k=0, priority_alpha=0.5)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again._priority, buffer._priority)
    with pytest.raises(ValueError, match="errors for a batch"):
        buffer.update_priorities(np.ones(3))
    with pytest.raises(ValueError, match="neither"):
        HerReplayBuffer(10, equal_reward, priority_alpha=0.5, off_policy_weight=2.0)
