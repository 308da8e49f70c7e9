"""n-step returns and the step reward of the HER buffer, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sshr_torch.her import HerReplayBuffer

GAMMA = 0.5


def equal_reward(achieved, desired):
    """1 where achieved == desired, else 0 (vectorised)."""
    return (np.asarray(achieved) == np.asarray(desired)).astype(np.float32)


def add_episode(buffer, states, goal=99, *, reward=0.0, success=False):
    """Walk ``states`` (achieved goal = state). The episode is truncated at its end, or, with
    ``success``, terminated there by reaching the real goal with reward 1."""
    for t in range(len(states) - 1):
        last = t == len(states) - 2
        r = 1.0 if success and last else reward
        buffer.add(states[t], states[t], goal, 0, r, states[t + 1], states[t + 1],
                   success and last, last and not success, success and last)  # fmt: skip
    buffer.end_episode()


def make(n_step=3, *, k=4, capacity=1000, strategy="future", step_reward=0.0, gamma=GAMMA):
    return HerReplayBuffer(
        capacity,
        equal_reward,
        strategy=strategy,
        k=k,
        rng=0,
        n_step=n_step,
        gamma=gamma,
        step_reward=step_reward,
    )


def expected_row(episode, t, goal, relabelled, n, *, stored_reward=0.0, step_reward=0.0):
    """(reward, next_obs, terminal, discount) of step t of a truncated ``episode`` (a list of
    states, achieved goal = state), worked out step by step."""
    total, m, terminal = 0.0, 0, 0.0
    for j in range(n):
        if t + j >= len(episode) - 1:  # the episode's end: bootstrap from its last state
            break
        reached = relabelled and episode[t + j + 1] == goal
        r = (1.0 if reached else 0.0) if relabelled else stored_reward
        total += GAMMA**j * (r + step_reward)
        m = j + 1
        if reached:
            terminal = 1.0
            break
    return total, episode[t + m], terminal, GAMMA**m * (1.0 - terminal)


EPISODE = [10, 11, 12, 13, 14, 15, 16]  # six transitions; goal 99 never reached


@pytest.mark.parametrize("n_step", [1, 2, 3, 10])
def test_relabelled_and_real_rows_match_hand_worked_windows(n_step):
    buffer = make(n_step, k=3, step_reward=-0.25)
    add_episode(buffer, EPISODE, reward=-2.0)
    batch = buffer.sample(512)
    assert 0 < batch.relabelled.sum() < 512  # both kinds of rows present
    for row in range(512):
        t = int(batch.obs[row]) - 10
        relabelled = bool(batch.relabelled[row])
        reward, next_obs, terminal, discount = expected_row(
            EPISODE, t, int(batch.goal[row]), relabelled, n_step,
            stored_reward=-2.0, step_reward=-0.25,
        )  # fmt: skip
        assert batch.reward[row] == pytest.approx(reward), row
        assert batch.next_obs[row] == next_obs
        assert batch.terminal[row] == terminal
        assert batch.discount[row] == pytest.approx(discount)


def test_window_is_cut_where_the_substitute_goal_is_achieved():
    # The walk reaches 12 at step t = 1, leaves and reaches it again at t = 3. From t = 0 with
    # goal 12 the window ends at its first achievement even with n = 5: 2 steps, reward
    # gamma^1 * 1, terminal, no bootstrap (discount 0).
    buffer = make(5, k=10**6)
    add_episode(buffer, [10, 11, 12, 11, 12, 13])
    batch = buffer.sample(2048)
    rows = batch.relabelled & (batch.obs == 10) & (batch.goal == 12)
    assert rows.any()
    np.testing.assert_allclose(batch.reward[rows], GAMMA)
    np.testing.assert_array_equal(batch.next_obs[rows], 12)
    np.testing.assert_array_equal(batch.terminal[rows], 1.0)
    np.testing.assert_array_equal(batch.discount[rows], 0.0)


def test_windows_never_cross_an_episode_boundary():
    buffer = make(4, k=1)
    first, second = [10, 11, 12], [20, 21, 22, 23, 24]
    add_episode(buffer, first)
    add_episode(buffer, second)
    batch = buffer.sample(1024)
    from_first = batch.obs < 20
    assert from_first.any()
    # Rows of the first episode bootstrap from its last state at the latest (truncated there).
    assert set(batch.next_obs[from_first].tolist()) <= {11, 12}
    last = batch.obs == 11
    np.testing.assert_array_equal(batch.next_obs[last], 12)
    np.testing.assert_allclose(batch.discount[last & ~batch.relabelled], GAMMA)
    assert set(batch.next_obs[~from_first].tolist()) <= set(second[1:])


def test_real_goal_success_ends_the_window_without_bootstrap():
    buffer = make(10, k=0, strategy="none")
    add_episode(buffer, [10, 11, 12, 13], goal=13, success=True)
    batch = buffer.sample(256)
    for t, expected in ((0, GAMMA**2), (1, GAMMA), (2, 1.0)):
        rows = batch.obs == 10 + t
        np.testing.assert_allclose(batch.reward[rows], expected)
        np.testing.assert_array_equal(batch.next_obs[rows], 13)
        np.testing.assert_array_equal(batch.terminal[rows], 1.0)
        np.testing.assert_array_equal(batch.discount[rows], 0.0)


def test_windows_read_the_right_slots_after_the_ring_wraps():
    buffer = make(3, k=2, capacity=7)
    add_episode(buffer, [10, 11, 12, 13, 14])  # positions 0-3
    add_episode(buffer, [20, 21, 22, 23, 24])  # positions 4-7: slots 4, 5, 6, 0
    assert buffer.n_episodes == 1
    batch = buffer.sample(512)
    episode = [20, 21, 22, 23, 24]
    for row in range(512):
        t = int(batch.obs[row]) - 20
        reward, next_obs, terminal, discount = expected_row(
            episode, t, int(batch.goal[row]), bool(batch.relabelled[row]), 3
        )
        assert batch.reward[row] == pytest.approx(reward)
        assert batch.next_obs[row] == next_obs
        assert batch.discount[row] == pytest.approx(discount)


def test_one_step_with_gamma_is_the_plain_batch_plus_a_discount_column():
    plain = HerReplayBuffer(100, equal_reward, k=4, rng=3)
    with_gamma = HerReplayBuffer(100, equal_reward, k=4, rng=3, n_step=1, gamma=0.9)
    for buffer in (plain, with_gamma):
        add_episode(buffer, EPISODE, reward=0.0)
        add_episode(buffer, [30, 31, 32], goal=32, success=True)
    a, b = plain.sample(256), with_gamma.sample(256)
    assert a.discount is None
    for name in ("obs", "goal", "action", "reward", "next_obs", "terminal", "relabelled"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(b.discount, 0.9 * (1.0 - a.terminal))


def test_step_reward_without_gamma_shifts_every_reward():
    plain = HerReplayBuffer(100, equal_reward, k=4, rng=3)
    shifted = HerReplayBuffer(100, equal_reward, k=4, rng=3, step_reward=-1.0)
    for buffer in (plain, shifted):
        add_episode(buffer, EPISODE)
    a, b = plain.sample(128), shifted.sample(128)
    np.testing.assert_array_equal(b.reward, a.reward - 1.0)
    assert set(b.reward.tolist()) <= {-1.0, 0.0}  # 0 at the goal, -1 elsewhere
    relabels = shifted.episode_relabels()
    assert set(relabels.reward.tolist()) <= {-1.0, 0.0}


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="n_step"):
        HerReplayBuffer(10, equal_reward, n_step=0)
    with pytest.raises(ValueError, match="gamma"):
        HerReplayBuffer(10, equal_reward, n_step=3)


@pytest.mark.parametrize("cut", [False, True])
def test_windows_end_before_an_off_policy_step_when_cut(cut):
    # Steps t = 0, 1 are a guided walk (off-policy), t = 2.. the learner's own. With the cut a
    # window may start on a guided step (its own action is what is learnt) but never runs into
    # one after its first step: from t = 0 the window is 1 step (t = 1 is guided), from t = 1
    # it runs on over the learner's steps; without the cut every window is the plain n-step one.
    buffer = HerReplayBuffer(1000, equal_reward, strategy="future", k=3, rng=0, n_step=4,
                             gamma=GAMMA, step_reward=-1.0, cut_off_policy=cut)  # fmt: skip
    states = [10, 11, 12, 13, 14, 15, 16]
    for t in range(6):
        buffer.add(states[t], states[t], 99, 0, 0.0, states[t + 1], states[t + 1], False,
                   t == 5, False, off_policy=t < 2)  # fmt: skip
    buffer.end_episode()
    batch = buffer.sample(1024)
    for row in range(1024):
        t = int(batch.obs[row]) - 10
        relabelled = bool(batch.relabelled[row])
        reward, next_obs, terminal, discount = expected_row(
            states, t, int(batch.goal[row]), relabelled, 1 if cut and t == 0 else 4,
            step_reward=-1.0,
        )  # fmt: skip
        assert batch.next_obs[row] == next_obs, row
        assert batch.reward[row] == pytest.approx(reward), row
        assert batch.discount[row] == pytest.approx(discount), row
    first = batch.obs == 10
    assert first.any()
    # the cut's effect: every t = 0 row bootstraps from 11 with it; without, from further on
    assert (batch.next_obs[first] == 11).all() == cut


def test_off_policy_flags_survive_a_checkpoint_and_old_ones_load():
    buffer = HerReplayBuffer(100, equal_reward, n_step=3, gamma=GAMMA, cut_off_policy=True)
    for t in range(4):
        buffer.add(t, t, 9, 0, 0.0, t + 1, t + 1, False, t == 3, False, off_policy=t == 1)
    buffer.end_episode()
    state = buffer.state_dict()
    restored = HerReplayBuffer(100, equal_reward, n_step=3, gamma=GAMMA, cut_off_policy=True)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored._off_policy[:4], [False, True, False, False])
    del state["off_policy"]  # a checkpoint written before the flag existed
    restored.load_state_dict(state)
    assert not restored._off_policy.any()
