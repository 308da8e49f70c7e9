"""Goal-conditioned DQN: the maths by hand and against autograd, checkpoints, and learning."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from goal_envs import BitFlipEnv, OpenRoomEnv, greedy_success_rate, make_buffer, train
from gymnasium import spaces

from sshr_torch.agents import Agent, DQNAgent, LinearSchedule
from sshr_torch.agents import dqn as dqn_module
from sshr_torch.her import Batch

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


def one_hot_inputs(values, space):
    """The float input a Linear layer on one-hot(s) (or the bits) would see."""
    if isinstance(space, int):
        return torch.nn.functional.one_hot(torch.as_tensor(values), space).float()
    return torch.as_tensor(values).float()


def linear_model(net):
    """An nn.Sequential of Linear/ReLU layers with the network's weights."""
    first = torch.nn.Linear(net.w1.shape[0], net.w1.shape[1])
    with torch.no_grad():
        first.weight.copy_(net.w1.t())
        first.bias.copy_(net.b1)
    modules = [first]
    for weight, bias in net.layers:
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        modules += [torch.nn.ReLU(), layer]
    return torch.nn.Sequential(*modules)


SPACES = [(7, 5), (spaces.MultiBinary(6), spaces.MultiBinary(6)), (7, spaces.MultiBinary(4))]


@pytest.mark.parametrize(("obs_space", "goal_space"), SPACES)
@pytest.mark.parametrize("hidden", [(256,), (32, 16), ()])
def test_first_layer_is_a_linear_layer_on_the_one_hot_concat(obs_space, goal_space, hidden):
    agent = DQNAgent(obs_space, goal_space, 3, hidden_sizes=hidden, seed=4)
    batch = random_batch(np.random.default_rng(0), obs_space, goal_space, 3)
    x = torch.cat([one_hot_inputs(batch.obs, obs_space), one_hot_inputs(batch.goal, goal_space)], 1)
    model = linear_model(agent.q_net)
    with torch.no_grad():
        expected_z1 = model[0](x)
        expected_q = model(x)
    z1 = agent.q_net.first_layer(agent.encode(batch.obs, batch.goal))
    torch.testing.assert_close(z1, expected_z1)
    for row in range(4):  # one goal per call, as Smart Start asks
        q = agent.q_values(batch.obs, batch.goal[row])
        x_row = torch.cat(
            [
                one_hot_inputs(batch.obs, obs_space),
                one_hot_inputs(np.stack([batch.goal[row]] * len(batch.obs)), goal_space),
            ],
            1,
        )
        with torch.no_grad():
            np.testing.assert_allclose(q, model(x_row).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(agent.max_q(batch.obs, batch.goal[row]), q.max(axis=1))
    assert expected_q.shape == (16, 3)


def test_initial_weights_are_those_of_a_linear_layer():
    agent = DQNAgent(100, 100, 4, seed=0)
    bound = 1 / np.sqrt(200)
    assert agent.q_net.w1.abs().max() <= bound and agent.q_net.w1.abs().max() > 0.9 * bound
    assert agent.q_net.layers[0][0].abs().max() <= 1 / 16
    torch.testing.assert_close(agent.target_net.w1, agent.q_net.w1)


def rigged_linear_agent(double_dqn=False):
    """Discrete(2) states and goals, 2 actions, no hidden layer: Q = w1[s] + w1[2 + g] + b1."""
    agent = DQNAgent(2, 2, 2, hidden_sizes=(), gamma=0.9, double_dqn=double_dqn, seed=0)
    with torch.no_grad():
        agent.target_net.w1.copy_(torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
        agent.target_net.b1.copy_(torch.tensor([0.1, -0.1]))
        agent.q_net.w1.copy_(torch.tensor([[0.0, 0.0], [0.0, 5.0], [0.0, 0.0], [1.0, 0.0]]))
        agent.q_net.b1.zero_()
    return agent


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
def test_td_target_by_hand(double_dqn, expected_target, expected_loss):
    agent = rigged_linear_agent(double_dqn)
    discount = torch.tensor([0.9, 0.0])
    next_inputs = agent.encode(TWO_ROWS.next_obs, TWO_ROWS.goal)
    target = agent.td_target(torch.tensor([1.0, 0.5]), discount, next_inputs)
    np.testing.assert_allclose(target.numpy(), expected_target, rtol=1e-6)
    metrics = agent.update(TWO_ROWS)
    assert metrics["td_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert metrics["q_mean"] == pytest.approx(0.5)


def test_a_batch_discount_column_replaces_gamma_times_not_terminal():
    # An n-step batch (her.py) carries each row's bootstrap factor gamma^m (1 - d). Row 0
    # marked terminal with discount 0.45: y0 = 1 + 0.45 * 3.6 = 2.62 (the column wins);
    # row 1 discount 0: y1 = 0.5. Huber: ((2.62 - 0.5) + 0.125) / 2.
    batch = TWO_ROWS._replace(
        terminal=np.array([1.0, 0.0], dtype=np.float32),
        discount=np.array([0.45, 0.0], dtype=np.float32),
    )
    metrics = rigged_linear_agent().update(batch)
    assert metrics["td_loss"] == pytest.approx((2.12 + 0.125) / 2, rel=1e-6)


def test_td_target_clamped_into_target_range():
    agent = rigged_linear_agent()
    agent.target_range = (0.0, 1.0)
    discount = torch.tensor([0.9, 0.0])
    next_inputs = agent.encode(TWO_ROWS.next_obs, TWO_ROWS.goal)
    # unclamped [4.24, 0.5] (test above): the first is cut to the top of the range
    target = agent.td_target(torch.tensor([1.0, 0.5]), discount, next_inputs)
    np.testing.assert_allclose(target.numpy(), [1.0, 0.5], rtol=1e-6)
    target = agent.td_target(torch.tensor([-3.0, 0.5]), discount, next_inputs)
    np.testing.assert_allclose(target.numpy(), [0.24, 0.5], rtol=1e-5)  # -3 + 3.24: inside
    agent.target_range = (0.3, 1.0)
    target = agent.td_target(torch.tensor([-3.0, 0.5]), discount, next_inputs)
    np.testing.assert_allclose(target.numpy(), [0.3, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="target_range"):
        DQNAgent(2, 2, 2, target_range=(1.0, 0.0))


def test_greedy_action_with_rigged_weights_and_random_ties():
    agent = DQNAgent(3, 3, 4, hidden_sizes=(), seed=1)
    with torch.no_grad():
        agent.q_net.w1.zero_()
        agent.q_net.b1.zero_()
    # All tied: the greedy choice is uniform over the actions.
    assert {agent.act(1, 0, 0.0) for _ in range(200)} == {0, 1, 2, 3}
    with torch.no_grad():
        agent.q_net.w1[1, 2] = 1.0  # state 1 prefers action 2 ...
        agent.q_net.w1[3 + 0, 1] = 0.5  # ... goal 0 adds to action 1: Q(1, 0) = [0, .5, 1, 0]
    assert {agent.act(1, 0, 0.0) for _ in range(50)} == {2}
    with torch.no_grad():
        agent.q_net.w1[3 + 0, 3] = 1.0  # actions 2 and 3 now tie
    assert {agent.act(1, 0, 0.0) for _ in range(200)} == {2, 3}
    assert {agent.act(1, 0, 1.0) for _ in range(200)} == {0, 1, 2, 3}
    # The numpy path used by act on the CPU agrees with the torch forward pass.
    big = DQNAgent(30, 30, 4, hidden_sizes=(64, 32), seed=2)
    for state, goal in ((0, 0), (5, 29), (17, 3)):
        torch_q = big.q_values([state], goal)[0]
        np.testing.assert_allclose(big._q_one_numpy(state, goal), torch_q, rtol=1e-5, atol=1e-6)
        assert big.act(state, goal, 0.0) == int(np.argmax(torch_q))


@pytest.mark.parametrize(("tau", "interval"), [(1.0, 2), (0.25, 1)])
def test_target_sync(tau, interval):
    agent = DQNAgent(4, 4, 2, hidden_sizes=(8,), tau=tau, target_update_interval=interval)
    rng = np.random.default_rng(0)
    before = [p.clone() for p in agent.target_net.parameters()]
    agent.update(random_batch(rng, 4, 4, 2))
    if interval == 2:  # not yet: the target is the initial network
        for got, old in zip(agent.target_net.parameters(), before, strict=True):
            torch.testing.assert_close(got, old)
        agent.update(random_batch(rng, 4, 4, 2))
        for got, online in zip(
            agent.target_net.parameters(), agent.q_net.parameters(), strict=True
        ):
            torch.testing.assert_close(got, online)
    else:  # Polyak: target <- tau * online + (1 - tau) * target
        for got, online, old in zip(
            agent.target_net.parameters(), agent.q_net.parameters(), before, strict=True
        ):
            torch.testing.assert_close(got, tau * online + (1 - tau) * old)
            assert not torch.equal(got, online)


class ReferenceNet(torch.nn.Module):
    """The same network with autograd: a sparse nn.Embedding for index mode, else dense."""

    def __init__(self, agent):
        super().__init__()
        net = agent.q_net
        self.index_mode = agent.index_mode
        if self.index_mode:
            self.embedding = torch.nn.Embedding(*net.w1.shape, sparse=True)
            with torch.no_grad():
                self.embedding.weight.copy_(net.w1)
        else:
            self.w1 = torch.nn.Parameter(net.w1.clone())
        self.b1 = torch.nn.Parameter(net.b1.clone())
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(w.clone()) for w, _ in net.layers]
        )
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(c.clone()) for _, c in net.layers])

    def forward(self, inputs):
        if self.index_mode:
            z = self.embedding(inputs[:, 0]) + self.embedding(inputs[:, 1]) + self.b1
        else:
            z = inputs @ self.w1 + self.b1
        for weight, bias in zip(self.weights, self.biases, strict=True):
            z = torch.relu(z) @ weight.t() + bias
        return z

    def first_weight(self):
        return self.embedding.weight if self.index_mode else self.w1


@pytest.mark.parametrize("adam_path", ["row kernels", "fused", "written out"])
@pytest.mark.parametrize(("obs_space", "goal_space"), SPACES)
@pytest.mark.parametrize(("hidden", "double_dqn"), [((32,), False), ((16, 8), True), ((), False)])
@pytest.mark.parametrize("max_grad_norm", [None, 0.05])
def test_update_matches_autograd_and_torch_adam(
    monkeypatch, adam_path, obs_space, goal_space, hidden, double_dqn, max_grad_norm
):
    """Three updates equal autograd + torch.optim (SparseAdam on the embedding in index mode).

    SparseAdam adds eps to sqrt(v) before bias correction, Adam after; with a tiny eps both are
    m / sqrt(v) up to rounding, which is what the lazy Adam here must match. Each way of
    stepping w1's rows is checked: numba's kernels (the CPU default), and the torch ops used
    on a GPU, with torch's fused Adam kernel or written out.
    """
    if adam_path != "written out" and not hasattr(torch, "_fused_adam_"):
        pytest.skip("this torch has no fused Adam")
    monkeypatch.setattr(dqn_module, "_FUSED_ADAM", adam_path != "written out")
    monkeypatch.setattr(dqn_module, "_ROW_KERNELS", adam_path == "row kernels")
    agent = DQNAgent(
        obs_space,
        goal_space,
        3,
        hidden_sizes=hidden,
        double_dqn=double_dqn,
        learning_rate=1e-2,
        max_grad_norm=max_grad_norm,
        target_update_interval=1000,
        seed=1,
        adam_eps=1e-30,
    )
    assert agent._row_kernels == (adam_path == "row kernels" and agent.index_mode)
    reference = ReferenceNet(agent)
    dense = [p for name, p in reference.named_parameters() if not name.startswith("embedding")]
    optimizers = [torch.optim.Adam(dense, lr=1e-2, eps=1e-30)]
    if agent.index_mode:
        sparse = torch.optim.SparseAdam([reference.embedding.weight], lr=1e-2, eps=1e-30)
        optimizers.append(sparse)
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = random_batch(rng, obs_space, goal_space, 3)
        inputs = agent.encode(batch.obs, batch.goal)
        next_inputs = agent.encode(batch.next_obs, batch.goal)
        with torch.no_grad():
            discount = agent.gamma * (1 - torch.as_tensor(batch.terminal))
            target = agent.td_target(torch.as_tensor(batch.reward), discount, next_inputs)
        q = reference(inputs).gather(1, torch.as_tensor(batch.action)[:, None]).squeeze(1)
        loss = torch.nn.functional.smooth_l1_loss(q, target)
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        first = reference.first_weight()
        if agent.index_mode:
            first.grad = first.grad.coalesce()
            grads = [first.grad.values()] + [p.grad for p in dense]
        else:
            grads = [p.grad for p in reference.parameters()]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if max_grad_norm is not None and norm > max_grad_norm:
            for g in grads:
                g.mul_(max_grad_norm / (norm + 1e-6))
        for optimizer in optimizers:
            optimizer.step()
        metrics = agent.update(batch)
        assert metrics["td_loss"] == pytest.approx(loss.item(), rel=1e-5)
        assert metrics["grad_norm"] == pytest.approx(norm.item(), rel=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(agent.q_net.w1, first.detach(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(agent.q_net.b1, reference.b1, rtol=1e-5, atol=1e-6)
            for (weight, bias), w_ref, b_ref in zip(
                agent.q_net.layers, reference.weights, reference.biases, strict=True
            ):
                torch.testing.assert_close(weight, w_ref, rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(bias, b_ref, rtol=1e-5, atol=1e-6)


def test_update_moves_only_the_batch_rows():
    agent = DQNAgent(50, 50, 4, seed=0)
    before = agent.q_net.w1.clone()
    batch = random_batch(np.random.default_rng(3), 50, 50, 4, size=8)
    agent.update(batch)
    used = np.zeros(100, dtype=bool)
    used[batch.obs] = True
    used[50 + batch.goal] = True
    changed = (agent.q_net.w1 != before).any(dim=1).numpy()
    np.testing.assert_array_equal(changed, used)


def test_state_dict_round_trip_through_torch_load_weights_only():
    rng = np.random.default_rng(0)
    agent = DQNAgent(20, 20, 4, hidden_sizes=(16,), seed=3, target_update_interval=3)
    for _ in range(5):
        agent.update(random_batch(rng, 20, 20, 4))
    stream = io.BytesIO()
    torch.save(agent.state_dict(), stream)
    stream.seek(0)
    state = torch.load(stream, weights_only=True)
    copy = DQNAgent(20, 20, 4, hidden_sizes=(16,), seed=99, target_update_interval=3)
    copy.load_state_dict(state)
    assert copy.n_updates == 5
    np.testing.assert_array_equal(copy.q_values(np.arange(20), 7), agent.q_values(np.arange(20), 7))
    assert [copy.act(1, 2, 0.5) for _ in range(30)] == [agent.act(1, 2, 0.5) for _ in range(30)]
    for _ in range(4):  # crosses a target refresh
        batch = random_batch(rng, 20, 20, 4)
        assert copy.update(batch) == agent.update(batch)
    np.testing.assert_array_equal(copy.q_values(np.arange(20), 7), agent.q_values(np.arange(20), 7))
    with pytest.raises(ValueError, match="does not match"):
        DQNAgent(20, 20, 4, hidden_sizes=(8,)).load_state_dict(state)


def test_settings_errors_and_protocol():
    agent = DQNAgent(spaces.Discrete(5), spaces.Discrete(5), 4)
    assert isinstance(agent, Agent) and agent.online is False
    assert agent.device.type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert DQNAgent(5, 5, 4, device="auto").device.type == expected
    with pytest.raises(ValueError, match="Discrete or MultiBinary"):
        DQNAgent(spaces.Box(0, 1, (2,)), 5, 4)
    with pytest.raises(ValueError, match="outside"):
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


def test_cpu_agent_flushes_subnormal_floats_to_zero():
    # Adam's moments decay into the subnormal range in real runs, where x86 CPUs are slow
    torch.set_flush_denormal(False)
    tiny = torch.full((4,), 1e-37)
    assert (tiny * 0.01 > 0).all()  # 1e-39: subnormal, kept
    DQNAgent(4, 4, 2)
    assert (tiny * 0.01 == 0).all()  # flushed to zero
