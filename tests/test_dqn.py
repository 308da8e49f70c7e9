"""Goal-conditioned DQN: the network API, the maths by hand, both update paths, checkpoints,
and learning."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from goal_envs import BitFlipEnv, OpenRoomEnv, greedy_success_rate, make_buffer, train
from gymnasium import spaces
from torch import nn

from sshr_torch.agents import Agent, DQNAgent, LinearSchedule, targets
from sshr_torch.agents.networks import OneHotMLP, one_hot_inputs
from sshr_torch.her import Batch, HerReplayBuffer

torch.set_num_threads(1)


def random_batch(rng, obs_space, goal_space, n_actions, size=16):
    """A batch of random transitions for the given spaces."""

    def draw(space):
        if isinstance(space, int):
            return rng.integers(0, space, size)
        return rng.integers(0, 2, (size, space.n)).astype(np.uint8)

    return Batch(
        obs=draw(obs_space),
        goal=draw(goal_space),
        action=rng.integers(0, n_actions, size),
        reward=(rng.random(size) * 3).astype(np.float32),
        next_obs=draw(obs_space),
        terminal=(rng.random(size) < 0.3).astype(np.float32),
        relabelled=np.zeros(size, dtype=bool),
    )


def linear_model(net: OneHotMLP) -> nn.Sequential:
    """An nn.Sequential of Linear/ReLU layers on the dense one-hot input, with net's weights."""
    first = nn.Linear(net.n_inputs, net.sizes[0])
    with torch.no_grad():
        first.weight.copy_(net.first.weight.t())
        first.bias.copy_(net.bias)
    return nn.Sequential(first, *net.rest)


SPACES = [(7, 5), (spaces.MultiBinary(6), spaces.MultiBinary(6)), (7, spaces.MultiBinary(4))]


@pytest.mark.parametrize(("obs_space", "goal_space"), SPACES)
@pytest.mark.parametrize("hidden", [(256,), (32, 16), ()])
def test_default_network_is_an_mlp_on_the_one_hot_concat(obs_space, goal_space, hidden):
    agent = DQNAgent(obs_space, goal_space, 3, hidden_sizes=hidden, seed=4)
    net = agent.q_network
    assert isinstance(net, OneHotMLP) and isinstance(net.first, nn.EmbeddingBag)
    batch = random_batch(np.random.default_rng(0), obs_space, goal_space, 3)
    state = agent.tensors(batch.obs, agent.obs_spec)
    goal = agent.tensors(batch.goal, agent.goal_spec)
    x = one_hot_inputs(state, goal, agent.obs_spec, agent.goal_spec)
    model = linear_model(net)
    with torch.no_grad():
        torch.testing.assert_close(net.first_layer(state, goal), model[0](x))
        torch.testing.assert_close(net(state, goal), model(x))
    for row in range(4):  # one goal per call, as Smart Start asks
        q = agent.q_values(batch.obs, batch.goal[row])
        goals = agent.tensors(np.stack([batch.goal[row]] * len(batch.obs)), agent.goal_spec)
        with torch.no_grad():
            expected = model(one_hot_inputs(state, goals, agent.obs_spec, agent.goal_spec))
        np.testing.assert_allclose(q, expected.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(agent.max_q(batch.obs, batch.goal[row]), q.max(axis=1))
    assert agent.q_values(batch.obs, batch.goal[0]).shape == (16, 3)


def test_initial_weights_are_those_of_a_linear_layer_and_seeded():
    agent = DQNAgent(100, 100, 4, seed=0)
    weight = agent.q_network.first.weight
    bound = 1 / np.sqrt(200)
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert agent.q_network.rest[1].weight.abs().max() <= 1 / 16
    torch.testing.assert_close(agent.target_network.first.weight, weight)
    torch.testing.assert_close(DQNAgent(100, 100, 4, seed=0).q_network.first.weight, weight)
    assert not torch.equal(DQNAgent(100, 100, 4, seed=1).q_network.first.weight, weight)


def test_building_an_agent_changes_nothing_outside_it():
    flush = torch.set_flush_denormal(False)
    assert flush  # this CPU supports flush-to-zero
    tiny = torch.full((4,), 1e-37)
    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    DQNAgent(10, 10, 4, seed=3)
    assert (tiny * 0.01 > 0).all()  # subnormals still kept: no flush-to-zero turned on
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng_state)


def rigged_linear_agent(double_dqn=False, fast_path=True):
    """Discrete(2) states and goals, 2 actions, no hidden layer: Q = w1[s] + w1[2 + g] + b1."""
    agent = DQNAgent(
        2, 2, 2, hidden_sizes=(), gamma=0.9, double_dqn=double_dqn, seed=0, fast_path=fast_path
    )
    target, online = agent.target_network, agent.q_network
    with torch.no_grad():
        target.first.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
        target.bias.copy_(torch.tensor([0.1, -0.1]))
        online.first.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 5.0], [0.0, 0.0], [1.0, 0.0]]))
        online.bias.zero_()
    assert (agent.fast is not None) == fast_path
    return agent


def td_target(agent, reward, discount, batch):
    """agent.td_target on a batch's next states and goals."""
    next_state = agent.tensors(batch.next_obs, agent.obs_spec)
    goal = agent.tensors(batch.goal, agent.goal_spec)
    return agent.td_target(torch.tensor(reward), torch.tensor(discount), next_state, goal)


# Row 0: s=0, g=0, a=1, r=1, s'=1, not terminal; row 1: s=1, g=1, a=0, r=0.5, s'=0, terminal.
TWO_ROWS = Batch(
    obs=np.array([0, 1]),
    goal=np.array([0, 1]),
    action=np.array([1, 0]),
    reward=np.array([1.0, 0.5], dtype=np.float32),
    next_obs=np.array([1, 0]),
    terminal=np.array([0.0, 1.0], dtype=np.float32),
    relabelled=np.zeros(2, dtype=bool),
)


@pytest.mark.parametrize(
    ("double_dqn", "expected_target", "expected_loss"),
    [
        # Q_target(s'=1, g=0, .) = [3 + 0.5 + 0.1, 0 + 0.5 - 0.1] = [3.6, 0.4]
        # y0 = 1 + 0.9 * max = 4.24; y1 = 0.5 (terminal).
        # Q(0, 0, a=1) = 0, Q(1, 1, a=0) = 0 + 1 = 1: Huber = ((4.24 - 0.5) + 0.5 * 0.5^2) / 2
        (False, [4.24, 0.5], (3.74 + 0.125) / 2),
        # Double DQN: the online net picks a* = argmax [0, 5] = 1 at (s'=1, g=0);
        # y0 = 1 + 0.9 * Q_target(1, 0, 1) = 1 + 0.9 * 0.4 = 1.36; Huber (0.86 + 0.125) / 2
        (True, [1.36, 0.5], (0.86 + 0.125) / 2),
    ],
)
@pytest.mark.parametrize("fast_path", [True, False])
def test_td_target_by_hand(double_dqn, expected_target, expected_loss, fast_path):
    agent = rigged_linear_agent(double_dqn, fast_path)
    target = td_target(agent, [1.0, 0.5], [0.9, 0.0], TWO_ROWS)
    np.testing.assert_allclose(target.numpy(), expected_target, rtol=1e-6)
    metrics = agent.update(TWO_ROWS)
    assert metrics["td_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert metrics["q_mean"] == pytest.approx(0.5)


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_batch_discount_column_replaces_gamma_times_not_terminal(fast_path):
    # An n-step batch (her.py) carries each row's bootstrap factor gamma^m (1 - d). Row 0
    # marked terminal with discount 0.45: y0 = 1 + 0.45 * 3.6 = 2.62 (the column wins);
    # row 1 discount 0: y1 = 0.5. Huber: ((2.62 - 0.5) + 0.125) / 2.
    batch = TWO_ROWS._replace(
        terminal=np.array([1.0, 0.0], dtype=np.float32),
        discount=np.array([0.45, 0.0], dtype=np.float32),
    )
    metrics = rigged_linear_agent(fast_path=fast_path).update(batch)
    assert metrics["td_loss"] == pytest.approx((2.12 + 0.125) / 2, rel=1e-6)


@pytest.mark.parametrize("fast_path", [True, False])
def test_model_values_as_floor_or_target_by_hand(fast_path):
    # Q_target(s'=1, g=0, .) max 3.6 (above); row 1 is terminal (discount 0): y1 = 0.5 always.
    # Q(0, 0, a=1) = 0, Q(1, 1, a=0) = 1: the Huber loss is ((y0 - 0.5) + 0.125) / 2.
    calls = []

    def model(value):
        def values(next_obs, goal):
            calls.append((next_obs.tolist(), goal.tolist()))
            return np.array([value, -np.inf], dtype=np.float32)

        return values

    def loss(mode, value):
        agent = rigged_linear_agent(fast_path=fast_path)
        agent.model_values, agent.model_mode = model(value), mode
        metrics = agent.update(TWO_ROWS)
        assert metrics["model_share"] == 0.5
        return metrics["td_loss"]

    def expected(y0):
        return pytest.approx((y0 - 0.5 + 0.125) / 2, rel=1e-6)

    # floor: max(3.6, 5) = 5 -> y0 = 1 + 0.9 * 5 = 5.5; max(3.6, 3) = 3.6 -> y0 = 4.24
    assert loss("floor", 5.0) == expected(5.5)
    assert loss("floor", 3.0) == expected(4.24)
    # target: the model's value wherever it has one, above or below the network's
    assert loss("target", 5.0) == expected(5.5)
    assert loss("target", 3.0) == expected(1 + 0.9 * 3.0)
    assert calls[0] == ([1, 0], [0, 1])  # asked for the rows' next states and goals
    # a row without a model value (-inf) keeps the network's: y0 = 4.24 in both modes
    for mode in ("floor", "target"):
        agent = rigged_linear_agent(fast_path=fast_path)
        agent.model_values, agent.model_mode = (lambda s, g: np.full(2, -np.inf, np.float32)), mode
        assert agent.update(TWO_ROWS)["td_loss"] == expected(4.24)
    with pytest.raises(ValueError, match="model_mode"):
        DQNAgent(2, 2, 2, model_mode="ceiling")


def test_td_target_clamped_into_target_range():
    agent = rigged_linear_agent()
    agent.target_range = (0.0, 1.0)
    # unclamped [4.24, 0.5] (test above): the first is cut to the top of the range
    target = td_target(agent, [1.0, 0.5], [0.9, 0.0], TWO_ROWS)
    np.testing.assert_allclose(target.numpy(), [1.0, 0.5], rtol=1e-6)
    target = td_target(agent, [-3.0, 0.5], [0.9, 0.0], TWO_ROWS)
    np.testing.assert_allclose(target.numpy(), [0.24, 0.5], rtol=1e-5)  # -3 + 3.24: inside
    agent.target_range = (0.3, 1.0)
    target = td_target(agent, [-3.0, 0.5], [0.9, 0.0], TWO_ROWS)
    np.testing.assert_allclose(target.numpy(), [0.3, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="target_range"):
        DQNAgent(2, 2, 2, target_range=(1.0, 0.0))


def test_greedy_action_with_rigged_weights_and_random_ties():
    agent = DQNAgent(3, 3, 4, hidden_sizes=(), seed=1)
    w1 = agent.q_network.first.weight
    with torch.no_grad():
        w1.zero_()
        agent.q_network.bias.zero_()
    # All tied: the greedy choice is uniform over the actions.
    assert {agent.act(1, 0, 0.0) for _ in range(200)} == {0, 1, 2, 3}
    with torch.no_grad():
        w1[1, 2] = 1.0  # state 1 prefers action 2 ...
        w1[3 + 0, 1] = 0.5  # ... goal 0 adds to action 1: Q(1, 0) = [0, .5, 1, 0]
    assert {agent.act(1, 0, 0.0) for _ in range(50)} == {2}
    with torch.no_grad():
        w1[3 + 0, 3] = 1.0  # actions 2 and 3 now tie
    assert {agent.act(1, 0, 0.0) for _ in range(200)} == {2, 3}
    assert {agent.act(1, 0, 1.0) for _ in range(200)} == {0, 1, 2, 3}
    # The fast path's numpy Q used by act agrees with the module's forward pass.
    big = DQNAgent(30, 30, 4, hidden_sizes=(64, 32), seed=2)
    for state, goal in ((0, 0), (5, 29), (17, 3)):
        torch_q = big.q_values([state], goal)[0]
        np.testing.assert_allclose(big.fast.q_one(state, goal), torch_q, rtol=1e-5, atol=1e-6)
        assert big.act(state, goal, 0.0) == int(np.argmax(torch_q))


@pytest.mark.parametrize(("tau", "interval"), [(1.0, 2), (0.25, 1)])
def test_target_sync(tau, interval):
    agent = DQNAgent(4, 4, 2, hidden_sizes=(8,), tau=tau, target_update_interval=interval)
    rng = np.random.default_rng(0)
    before = [p.clone() for p in agent.target_network.parameters()]
    agent.update(random_batch(rng, 4, 4, 2))
    if interval == 2:  # not yet: the target is the initial network
        for got, old in zip(agent.target_network.parameters(), before, strict=True):
            torch.testing.assert_close(got, old)
        agent.update(random_batch(rng, 4, 4, 2))
        for got, online in zip(
            agent.target_network.parameters(), agent.q_network.parameters(), strict=True
        ):
            torch.testing.assert_close(got, online)
    else:  # Polyak: target <- tau * online + (1 - tau) * target
        for got, online, old in zip(
            agent.target_network.parameters(), agent.q_network.parameters(), before, strict=True
        ):
            torch.testing.assert_close(got, tau * online + (1 - tau) * old)
            assert not torch.equal(got, online)


def moments(agent):
    """Every optimizer state tensor of the agent, by parameter name."""
    names = {id(p): name for name, p in agent.q_network.named_parameters()}
    out = {}
    for optimizer in agent.optimizers:
        for param, state in optimizer.state.items():
            for key in ("exp_avg", "exp_avg_sq"):
                out[f"{names[id(param)]}.{key}"] = state[key]
    return out


@pytest.mark.parametrize(
    ("hidden", "double_dqn", "max_grad_norm", "n_states", "alpha"),
    [
        ((256,), False, 10.0, 100, 0.0),
        ((16, 8), True, 0.05, 40, 0.0),
        ((), False, None, 10_000, 0.0),
        ((32,), False, 10.0, 60, 0.5),  # advantage learning
    ],
)
def test_fast_path_equals_the_autograd_path_over_200_updates(
    hidden, double_dqn, max_grad_norm, n_states, alpha
):
    """The same module trained both ways: weights, Adam moments and TD losses agree."""
    settings = dict(
        hidden_sizes=hidden,
        double_dqn=double_dqn,
        advantage_alpha=alpha,
        max_grad_norm=max_grad_norm,
        learning_rate=3e-3,
        target_update_interval=25,
        target_range=(0.0, 1.0),
        seed=5,
    )
    fast = DQNAgent(n_states, n_states, 4, **settings)
    general = DQNAgent(n_states, n_states, 4, fast_path=False, **settings)
    assert fast.fast is not None and general.fast is None
    rng = np.random.default_rng(1)
    for _ in range(200):
        batch = random_batch(rng, n_states, n_states, 4, size=64)
        batch = batch._replace(reward=(batch.reward > 2.7).astype(np.float32))
        got, expected = fast.update(batch), general.update(batch)
        for key in ("td_loss", "q_mean", "grad_norm"):
            assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    for (name, p_fast), p_general in zip(
        fast.q_network.named_parameters(), general.q_network.parameters(), strict=True
    ):
        torch.testing.assert_close(p_fast, p_general, rtol=1e-4, atol=1e-5, msg=name)
    fast_moments, general_moments = moments(fast), moments(general)
    assert fast_moments.keys() == general_moments.keys() and len(fast_moments) > 0
    for key, value in fast_moments.items():
        torch.testing.assert_close(value, general_moments[key], rtol=1e-3, atol=1e-8, msg=key)
    # The optimizers' step counts agree too (Adam's tensor, RowAdam's int).
    for opt_fast, opt_general in zip(fast.optimizers, general.optimizers, strict=True):
        for s_fast, s_general in zip(
            opt_fast.state.values(), opt_general.state.values(), strict=True
        ):
            assert float(s_fast["step"]) == float(s_general["step"]) == 200


BINARY_SPACES = [
    (spaces.MultiBinary(15), spaces.MultiBinary(15)),  # SB3's BitFlippingEnv, 15 bits
    (7, spaces.MultiBinary(4)),
    (spaces.MultiBinary(5), 9),
]


def copy_training_state(source: DQNAgent, into: DQNAgent) -> None:
    """Parameters (online and target) and Adam moments of ``source`` into ``into``'s own
    tensors, in place (the fast path holds views of them)."""
    with torch.no_grad():
        for net in ("q_network", "target_network"):
            pairs = zip(
                getattr(into, net).parameters(), getattr(source, net).parameters(), strict=True
            )
            for mine, theirs in pairs:
                mine.copy_(theirs)
        source_moments = moments(source)
        for key, value in moments(into).items():
            value.copy_(source_moments[key])


@pytest.mark.parametrize(("obs_space", "goal_space"), BINARY_SPACES)
@pytest.mark.parametrize(
    ("hidden", "double_dqn", "max_grad_norm"), [((256,), False, 10.0), ((16, 8), True, 0.05)]
)
def test_fast_path_equals_the_autograd_path_on_multibinary_inputs(
    obs_space, goal_space, hidden, double_dqn, max_grad_norm
):
    """Dense mode (a MultiBinary input): the fast path's update is the autograd path's.

    Each of 200 updates starts both paths from the autograd path's weights and moments and
    compares losses, weights and moments after it; the first 30 also run freely. (Left to
    run freely for longer, float32 rounding in a sum of gradients that nearly cancels, which
    Adam scales up to a full step, can part the two runs after 50-100 updates.)
    """
    settings = dict(
        hidden_sizes=hidden,
        double_dqn=double_dqn,
        max_grad_norm=max_grad_norm,
        learning_rate=3e-3,
        target_update_interval=25,
        target_range=(0.0, 1.0),
        seed=5,
    )
    n_actions = 15
    fast = DQNAgent(obs_space, goal_space, n_actions, **settings)
    general = DQNAgent(obs_space, goal_space, n_actions, fast_path=False, **settings)
    assert fast.fast is not None and not fast.fast.index_mode and general.fast is None
    rng = np.random.default_rng(1)
    for index in range(200):
        if index >= 30:
            copy_training_state(general, fast)
        batch = random_batch(rng, obs_space, goal_space, n_actions, size=64)
        batch = batch._replace(reward=(batch.reward > 2.7).astype(np.float32))
        got, expected = fast.update(batch), general.update(batch)
        for key in ("td_loss", "q_mean", "grad_norm"):
            assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), (index, key)
        for (name, p_fast), p_general in zip(
            fast.q_network.named_parameters(), general.q_network.parameters(), strict=True
        ):
            torch.testing.assert_close(p_fast, p_general, rtol=1e-4, atol=1e-5, msg=name)
        fast_moments, general_moments = moments(fast), moments(general)
        for key, value in fast_moments.items():
            torch.testing.assert_close(value, general_moments[key], rtol=1e-3, atol=1e-8)
    for opt_fast, opt_general in zip(fast.optimizers, general.optimizers, strict=True):
        for s_fast, s_general in zip(
            opt_fast.state.values(), opt_general.state.values(), strict=True
        ):
            assert float(s_fast["step"]) == float(s_general["step"]) == 200
    # Acting reads the same weights through numpy: the module's Q and its greedy action.
    probe = random_batch(rng, obs_space, goal_space, n_actions, size=5)
    for obs, goal in zip(probe.obs, probe.goal, strict=True):
        torch_q = fast.q_values(obs, goal)[0]
        np.testing.assert_allclose(fast.fast.q_obs(obs, goal), torch_q, rtol=1e-5, atol=1e-6)
        assert fast.act(obs, goal, 0.0) == int(np.argmax(torch_q))


def test_paths_take_over_from_each_other_mid_run():
    """Switching the fast path off and on between updates continues the same training."""
    rng = np.random.default_rng(2)
    batches = [random_batch(rng, 30, 30, 4, size=32) for _ in range(40)]
    reference = DQNAgent(30, 30, 4, hidden_sizes=(32,), seed=1, fast_path=False)
    switching = DQNAgent(30, 30, 4, hidden_sizes=(32,), seed=1)
    for index, batch in enumerate(batches):
        switching.use_fast_path = index % 10 < 5
        switching._build_fast_path()
        reference.update(batch)
        switching.update(batch)
    np.testing.assert_allclose(
        switching.q_values(np.arange(30), 3), reference.q_values(np.arange(30), 3), atol=1e-5
    )


@pytest.mark.parametrize("fast_path", [True, False])
def test_update_moves_only_the_batch_rows(fast_path):
    agent = DQNAgent(50, 50, 4, seed=0, fast_path=fast_path)
    weight = agent.q_network.first.weight
    before = weight.detach().clone()
    batch = random_batch(np.random.default_rng(3), 50, 50, 4, size=8)
    agent.update(batch)
    used = np.zeros(100, dtype=bool)
    used[batch.obs] = True
    used[50 + batch.goal] = True
    changed = (weight != before).any(dim=1).numpy()
    np.testing.assert_array_equal(changed, used)


def test_learning_rate_schedulers_and_adamw_work():
    """Torch's schedulers drive both paths alike; a custom optimizer takes the general path."""
    rng = np.random.default_rng(4)
    batches = [random_batch(rng, 20, 20, 4) for _ in range(12)]

    def halve_every_4(optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)

    agents = [
        DQNAgent(20, 20, 4, hidden_sizes=(16,), lr_scheduler=halve_every_4, fast_path=fast)
        for fast in (True, False)
    ]
    for batch in batches:
        for agent in agents:
            agent.update(batch)
    for agent in agents:
        assert [g["lr"] for opt in agent.optimizers for g in opt.param_groups] == [1.25e-4] * 2
    np.testing.assert_allclose(
        agents[0].q_values(np.arange(20), 1), agents[1].q_values(np.arange(20), 1), atol=1e-6
    )
    adamw = DQNAgent(
        20,
        20,
        4,
        hidden_sizes=(16,),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.5),
    )
    assert adamw.fast is None and type(adamw.optimizers[0]) is torch.optim.AdamW
    before = adamw.q_network.rest[1].weight.detach().clone()
    adamw.update(batches[0])
    after = adamw.q_network.rest[1].weight.detach()
    assert after.abs().sum() < before.abs().sum()  # weight decay shrank the layer


def test_clip_grad_norm_counts_sparse_rows_once():
    from sshr_torch.agents.dqn import clip_grad_norm

    bag = nn.EmbeddingBag(4, 2, mode="sum", sparse=True)
    linear = nn.Linear(2, 1)
    # Row 1 appears twice: its gradient is summed before the norm, as a dense one would be.
    bag(torch.tensor([[1, 1]])).sum().backward()
    linear(torch.ones(1, 2)).sum().backward()
    norm = clip_grad_norm([bag.weight, *linear.parameters()], max_norm=1.0)
    # dense gradient of row 1: [2, 2]; linear: weight [1, 1], bias 1 -> sqrt(8 + 3)
    assert norm == pytest.approx(math.sqrt(11.0))
    dense = bag.weight.grad.to_dense()
    np.testing.assert_allclose(dense[1].numpy(), [2 / math.sqrt(11)] * 2, rtol=1e-5)


@pytest.mark.parametrize("fast_path", [True, False])
def test_state_dict_round_trip_through_torch_load_weights_only(fast_path):
    rng = np.random.default_rng(0)
    settings = dict(hidden_sizes=(16,), target_update_interval=3)
    agent = DQNAgent(20, 20, 4, seed=3, fast_path=fast_path, **settings)
    for _ in range(5):
        agent.update(random_batch(rng, 20, 20, 4))
    stream = io.BytesIO()
    torch.save(agent.state_dict(), stream)
    stream.seek(0)
    state = torch.load(stream, weights_only=True)
    # The other path resumes it: checkpoints hold the module's and optimizers' state_dicts.
    copy = DQNAgent(20, 20, 4, seed=99, fast_path=not fast_path, **settings)
    copy.load_state_dict(state)
    assert copy.n_updates == 5
    np.testing.assert_array_equal(copy.q_values(np.arange(20), 7), agent.q_values(np.arange(20), 7))
    assert [copy.act(1, 2, 0.5) for _ in range(30)] == [agent.act(1, 2, 0.5) for _ in range(30)]
    for _ in range(4):  # crosses a target refresh
        batch = random_batch(rng, 20, 20, 4)
        got, expected = copy.update(batch), agent.update(batch)
        assert got["td_loss"] == pytest.approx(expected["td_loss"], rel=1e-5)
    np.testing.assert_allclose(
        copy.q_values(np.arange(20), 7), agent.q_values(np.arange(20), 7), atol=1e-6
    )
    with pytest.raises(ValueError, match="does not match"):
        DQNAgent(20, 20, 4, hidden_sizes=(8,)).load_state_dict(state)
    with pytest.raises(ValueError, match="checkpoint format 1"):
        agent.load_state_dict({"q_net": [], "settings": {}})


def test_settings_errors_and_protocol():
    agent = DQNAgent(spaces.Discrete(5), spaces.Discrete(5), 4)
    assert isinstance(agent, Agent)
    assert agent.device.type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert DQNAgent(5, 5, 4, device="auto").device.type == expected
    with pytest.raises(ValueError, match="Discrete or MultiBinary"):
        DQNAgent(spaces.Box(0, 1, (2,)), 5, 4)
    for fast in (True, False):
        agent = DQNAgent(5, 5, 4, fast_path=fast)
        with pytest.raises((ValueError, IndexError), match="outside|out of range"):
            agent.update(random_batch(np.random.default_rng(0), 6, 5, 4))
        negative_goal = random_batch(np.random.default_rng(0), 5, 5, 4)
        negative_goal.goal[3] = -1  # would read a state's row if not caught
        with pytest.raises(ValueError, match="outside"):
            agent.update(negative_goal)
    with pytest.raises(ValueError, match="Discrete"):
        agent.act(5, 0, 0.0)
    with pytest.raises(ValueError, match="tau"):
        DQNAgent(5, 5, 4, tau=0.0)


def test_linear_schedule():
    schedule = LinearSchedule(1.0, 0.1, 100)
    assert schedule(0) == 1.0 and schedule(50) == pytest.approx(0.55)
    assert schedule(100) == pytest.approx(0.1) and schedule(10**6) == pytest.approx(0.1)
    assert LinearSchedule(0.1, 0.1, 0)(0) == 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_update_matches_cpu():
    rng = np.random.default_rng(0)
    batches = [random_batch(rng, 30, 30, 4, size=32) for _ in range(3)]
    results = []
    for device in ("cpu", "cuda"):
        agent = DQNAgent(30, 30, 4, hidden_sizes=(32,), device=device, seed=0)
        for batch in batches:
            agent.update(batch)
        results.append(agent.q_values(np.arange(30), 4))
        assert agent.act(3, 4, 0.0) in range(4)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_no_private_torch_api_in_the_package():
    package = Path(__file__).resolve().parents[1] / "sshr_torch"
    pattern = re.compile(r"torch\._|aten\.")
    hits = [
        f"{path.name}:{number}"
        for path in package.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def learn(env, strategy, n_steps, seed, **settings):
    """Train a DQN with HER ``strategy`` on ``env`` for ``n_steps``; its greedy success."""
    space = env.observation_space
    agent = DQNAgent(
        space["observation"], space["desired_goal"], env.action_space.n, seed=seed, **settings
    )
    buffer = make_buffer(env, strategy, seed=seed)
    train(env, agent, buffer, n_steps, epsilon=LinearSchedule(1.0, 0.1, 1500), seed=seed)
    return greedy_success_rate(env, agent, 200)


@pytest.mark.parametrize("seed", [0])
def test_her_solves_the_open_room_with_random_goals(seed):
    # 7x7 room, random start and goal, 30-step episodes, 6000 env steps (one update each).
    # Seeds 0-2: 'future' 0.945-0.965 greedy success, 'none' 0.18-0.30.
    settings = dict(gamma=0.9, learning_rate=3e-3, target_update_interval=100)
    with_her = learn(OpenRoomEnv(7, 30), "future", 6000, seed, **settings)
    without = learn(OpenRoomEnv(7, 30), "none", 6000, seed, **settings)
    assert with_her >= 0.9
    assert without <= 0.5


@pytest.mark.parametrize("seed", [0])
def test_her_solves_bit_flipping_where_plain_dqn_fails(seed):
    # n = 10, 10-step episodes, 3000 env steps: 'future' solves every goal (seeds 0-1 reach
    # 1.0 after 2000 steps), plain DQN 0.0-0.01.
    settings = dict(gamma=0.98, learning_rate=1e-3, target_update_interval=100)
    with_her = learn(BitFlipEnv(10), "future", 3000, seed, **settings)
    without = learn(BitFlipEnv(10), "none", 3000, seed, **settings)
    assert with_her >= 0.9
    assert without <= 0.1


class TableModel:
    """Model values for tests: V and Q tables by state, for one goal."""

    def __init__(self, v, q, goal):
        self.v, self.q, self.goal = np.asarray(v, np.float32), np.asarray(q, np.float32), goal

    def __call__(self, states, goals):
        return np.where(goals == self.goal, self.v[states], -np.inf).astype(np.float32)

    def q_values(self, states, goals):
        out = self.q[states].copy()
        out[goals != self.goal] = -np.inf
        return out


@pytest.mark.parametrize("fast_path", [True, False])
def test_q_mode_regresses_every_known_action_onto_the_model_by_hand(fast_path):
    # Rows (above): s=0, g=0, a=1 (TD target 4.24) and s=1, g=1, a=0 (y = 0.5, terminal).
    # Q(0, 0, .) = [w1[0] + w1[2] + b1] = [0, 0]; Q(1, 1, .) = [0 + 1, 5 + 0] = [1, 5].
    # The model knows goal 0 only: Q_model(0, 0, .) = [2, -inf]: action 0 gets target 2, the
    # taken action 1 (unknown to the model) its TD target 4.24; row 1 (goal 1): y = 0.5.
    # Huber over the 3 entries: (0.5 * 2^2 -> 2 - 0.5 = 1.5) + (4.24 - 0.5) + (0.5 * 0.5^2).
    model = TableModel(v=[0.0, 0.0], q=[[2.0, -np.inf], [7.0, 7.0]], goal=0)
    agent = rigged_linear_agent(fast_path=fast_path)
    agent.model_values, agent.model_mode = model, "q"
    metrics = agent.update(TWO_ROWS)
    assert metrics["td_loss"] == pytest.approx((1.5 + 3.74 + 0.125) / 3, rel=1e-6)
    assert metrics["model_share"] == 0.5
    # The model's value for the taken action replaces its TD target: |0 - 3| -> 2.5
    model.q[0] = [2.0, 3.0]
    agent = rigged_linear_agent(fast_path=fast_path)
    agent.model_values, agent.model_mode = model, "q"
    assert agent.update(TWO_ROWS)["td_loss"] == pytest.approx((1.5 + 2.5 + 0.125) / 3, rel=1e-6)


@pytest.mark.parametrize("model_loss", ["entries", "split"])
def test_q_mode_fast_path_equals_the_autograd_path(model_loss):
    rng = np.random.default_rng(3)
    n = 30
    q = rng.normal(size=(n, 4)).astype(np.float32) * 3.0  # errors on both sides of Huber's 1
    q[rng.random((n, 4)) < 0.4] = -np.inf
    model = TableModel(v=q.max(axis=1), q=q, goal=3)
    settings = dict(
        hidden_sizes=(16,),
        seed=2,
        target_update_interval=7,
        learning_rate=3e-3,
        model_loss=model_loss,
    )
    fast = DQNAgent(n, n, 4, model_values=model, model_mode="q", **settings)
    general = DQNAgent(n, n, 4, model_values=model, model_mode="q", fast_path=False, **settings)
    assert fast.fast is not None and general.fast is None
    for _ in range(60):
        batch = random_batch(rng, n, n, 4, size=32)
        batch = batch._replace(goal=np.where(rng.random(32) < 0.5, 3, batch.goal))
        got, expected = fast.update(batch), general.update(batch)
        for key in ("td_loss", "q_mean", "grad_norm", "model_share"):
            assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    for p_fast, p_general in zip(
        fast.q_network.parameters(), general.q_network.parameters(), strict=True
    ):
        torch.testing.assert_close(p_fast, p_general, rtol=1e-4, atol=1e-5)


def test_advantage_target_subtracts_alpha_times_the_taken_actions_gap():
    target = torch.tensor([1.0, 1.0, -5.0])
    q_state = torch.tensor([[3.0, 1.0], [3.0, 1.0], [0.0, 4.0]])
    action = torch.tensor([0, 1, 0])
    got = targets.advantage_target(target.clone(), q_state, action, 0.5)
    # gaps: 0 (the best action), 2, 4
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, -7.0]))
    clamped = targets.advantage_target(target.clone(), q_state, action, 0.5, (-6.0, 0.5))
    torch.testing.assert_close(clamped, torch.tensor([0.5, 0.0, -6.0]))


def test_advantage_learning_widens_the_action_gap_on_a_chain():
    # From state 0, action 1 reaches the goal (state 1: reward 0, terminal), action 0 stays
    # (reward -1). V(0) = Q(0, 1) = 0 either way; Q(0, 0) = -1 + 0.9 V(0) = -1 plain, and
    # under advantage learning Q(0, 0) = -1 + 0.9 V(0) - alpha (V(0) - Q(0, 0)) = -1 / (1 - alpha).
    results = {}
    for alpha in (0.0, 0.5):
        agent = DQNAgent(2, 2, 2, hidden_sizes=(16,), gamma=0.9, learning_rate=1e-2,
                         target_update_interval=10, advantage_alpha=alpha, seed=0)  # fmt: skip
        batch = Batch(
            obs=np.array([0, 0]),
            goal=np.array([1, 1]),
            action=np.array([0, 1]),
            reward=np.array([-1.0, 0.0], dtype=np.float32),
            next_obs=np.array([0, 1]),
            terminal=np.array([0.0, 1.0], dtype=np.float32),
            relabelled=np.zeros(2, dtype=bool),
        )
        for _ in range(3000):
            agent.update(batch)
        q = agent.q_values(np.array([0]), np.array([1]))[0]
        results[alpha] = q[1] - q[0]
    assert results[0.0] == pytest.approx(1.0, abs=0.1)
    assert results[0.5] == pytest.approx(2.0, abs=0.15)


def test_importance_weights_weigh_each_rows_loss_and_errors_become_priorities():
    rng = np.random.default_rng(0)
    batch = random_batch(rng, 20, 20, 4, size=32)
    weight = rng.random(32).astype(np.float32)
    plain, weighted = (
        DQNAgent(20, 20, 4, hidden_sizes=(16,), seed=3, fast_path=False) for _ in range(2)
    )
    plain.update(batch._replace(weight=None))
    got = weighted.update(batch._replace(weight=weight))
    errors = plain.last_td_errors  # the same network before the step: the same errors
    np.testing.assert_allclose(weighted.last_td_errors, errors, rtol=1e-5)
    huber = np.where(np.abs(errors) < 1, 0.5 * errors**2, np.abs(errors) - 0.5)
    assert got["td_loss"] == pytest.approx(np.mean(weight * huber), rel=1e-5)
    # learn() hands the errors to a prioritised buffer as its rows' priorities
    buffer = HerReplayBuffer(100, lambda a, d: (a == d).astype(np.float32), strategy="none",
                             k=0, rng=1, priority_alpha=0.6)  # fmt: skip
    for t in range(10):
        buffer.add(t, t, 19, t % 4, 0.0, t + 1, t + 1, False, t == 9, False)
    buffer.end_episode()
    agent = DQNAgent(20, 20, 4, hidden_sizes=(16,), batch_size=8, learning_starts=0, seed=3)
    agent.learn(buffer, 5, transition=object())
    drawn = buffer._drawn % buffer.capacity
    np.testing.assert_allclose(buffer._priority[drawn], np.abs(agent.last_td_errors) + 1e-6)


def test_action_targets_regress_every_known_action_but_the_taken_one_onto_one_step_targets():
    # state 0's actions lead to 1, 2, nowhere known, and 3 (reaching goal 3: terminal)
    def action_targets(states, goals):
        next_states = np.tile(np.array([1, 2, -1, 3]), (len(states), 1))
        reward = np.tile(np.array([-1.0, -1.0, -1.0, 0.0], dtype=np.float32), (len(states), 1))
        terminal = (next_states == goals[:, None]).astype(np.float32)
        return next_states, reward, terminal

    agent = DQNAgent(5, 5, 4, hidden_sizes=(16,), gamma=0.9, seed=2, target_range=(-9.0, 0.0),
                     action_targets=action_targets)  # fmt: skip
    batch = Batch(obs=np.array([0, 0]), goal=np.array([3, 3]), action=np.array([0, 1]),
                  reward=np.zeros(2, np.float32), next_obs=np.array([1, 2]),
                  terminal=np.zeros(2, np.float32), relabelled=np.zeros(2, bool))  # fmt: skip
    got = agent._action_q_targets(batch)
    value = agent.target_network(torch.tensor([1, 2]), torch.tensor([3, 3])).amax(1).detach()
    expected = np.array(
        [
            [-np.inf, -1.0 + 0.9 * value[1].item(), -np.inf, 0.0],  # the taken action: -inf
            [-1.0 + 0.9 * value[0].item(), -np.inf, -np.inf, 0.0],
        ],
        dtype=np.float32,
    )
    clipped = np.where(np.isfinite(expected), np.clip(expected, -9.0, 0.0), -np.inf)
    np.testing.assert_allclose(got, clipped, rtol=1e-6)
    metrics = agent.update(batch)  # 'q' mode's loss over them, on the fast path
    assert agent.fast is not None and np.isfinite(metrics["td_loss"])
