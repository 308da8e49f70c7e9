"""The pure target functions on a few rows, with the expected values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sshr_torch.agents import targets

INF = float("inf")


def test_bootstrap_discount_is_gamma_unless_terminal_or_given():
    # gamma (1 - terminal): 0.9 for a row that goes on (or was truncated), 0 for a terminal one.
    got = targets.bootstrap_discount(0.9, np.array([0.0, 1.0]))
    np.testing.assert_allclose(got, [0.9, 0.0])
    assert got.dtype == np.float32
    # An n-step batch carries its own: gamma^m (1 - terminal), e.g. 0.9^3 and 0.
    got = targets.bootstrap_discount(0.9, np.array([0.0, 1.0]), np.array([0.729, 0.0]))
    np.testing.assert_allclose(got, [0.729, 0.0])


def test_greedy_value_max_and_double_dqn():
    q_next = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 0.0]])  # Q_target(s', g, .)
    assert targets.greedy_value(q_next).tolist() == [3.0, 0.5]
    # Double DQN: the online network picks actions 2 and 1, the target network values them.
    online = torch.tensor([[0.0, 1.0, 9.0], [0.0, 4.0, 1.0]])
    assert targets.greedy_value(q_next, online).tolist() == [2.0, -1.0]


def test_bootstrap_value_floor_and_target_modes():
    value = torch.tensor([1.0, 2.0, 3.0])
    model = torch.tensor([1.5, -INF, 0.5])  # -inf: the model knows no value for row 1
    assert targets.bootstrap_value(value, model, "floor").tolist() == [1.5, 2.0, 3.0]
    assert targets.bootstrap_value(value, model, "target").tolist() == [1.5, 2.0, 0.5]
    with pytest.raises(ValueError, match="'q'"):
        targets.bootstrap_value(value, model, "q")


def test_td_target_and_its_clamp():
    reward, discount = torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.9, 0.0, 0.5])
    value = torch.tensor([2.0, 7.0, -4.0])
    # y = r + discount * V: 1 + 1.8, 0.5 + 0, -1 - 2
    assert targets.td_target(reward, discount, value).tolist() == pytest.approx([2.8, 0.5, -3.0])
    clamped = targets.td_target(reward, discount, value, (0.0, 1.0))
    assert clamped.tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_model_q_targets_fill_the_taken_action_only_where_the_model_has_none():
    model_q = torch.tensor([[2.0, -INF, -INF], [-INF, 4.0, 1.0]])
    action = torch.tensor([1, 2])
    target = torch.tensor([0.5, 9.0])
    got = targets.model_q_targets(model_q, action, target)
    # Row 0: the model knows action 0 only; the taken action 1 gets its TD target 0.5; action
    # 2 has no target. Row 1: the model knows the taken action 2, so its value 1 stays.
    assert got.tolist() == [[2.0, 0.5, -INF], [-INF, 4.0, 1.0]]


def test_split_model_loss_by_hand_and_its_written_out_gradient():
    # Row 0: targets [10, 11, -inf], Q [13, 13, 0]: errors 3 and 2, mean 2.5, about it +-0.5.
    # Row 1: one target (a TD row): error -0.5, about it 0. Two rows with an entry.
    q = torch.tensor([[13.0, 13.0, 0.0], [1.0, 2.0, 3.0]], requires_grad=True)
    wanted = torch.tensor([[10.0, 11.0, -INF], [-INF, 2.5, -INF]])
    # H(2.5) = 2; H(0.5) = H(-0.5) = 0.125; H(-0.5) = 0.125: (2 + 0.25 + 0.125) / 2
    loss = targets.model_q_loss(q, wanted, "split")
    assert loss.item() == pytest.approx(2.375 / 2)
    loss.backward()
    value, grad = targets.model_q_grad(q.detach(), wanted, "split")
    assert value.item() == pytest.approx(2.375 / 2)
    torch.testing.assert_close(grad, q.grad)
    # Row 0: H'(2.5) / 2 = 0.5 for each, plus H'(c) - mean H'(c) = +-0.5: [1.0, 0.0] / 2 rows.
    # Row 1: H'(-0.5) = -0.5 / 2 rows. The argmax of row 0 is wrong (the first action should
    # be 1 lower), and only 'split' pushes the two entries apart; 'entries' moves both alike.
    assert grad.tolist() == [[0.5, 0.0, 0.0], [0.0, -0.25, 0.0]]
    _, same = targets.model_q_grad(q.detach(), wanted, "entries")
    assert same[0, 0] == same[0, 1] == pytest.approx(1.0 / 3)


@pytest.mark.parametrize("mode", ["split", "entries"])
def test_model_q_grad_equals_autograd_of_the_loss(mode):
    gen = torch.Generator().manual_seed(0)
    q = (torch.randn(64, 4, generator=gen) * 3).requires_grad_()
    wanted = torch.randn(64, 4, generator=gen) * 3
    wanted[torch.rand(64, 4, generator=gen) < 0.4] = -INF
    wanted[5] = -INF  # a row without any target
    loss = targets.model_q_loss(q, wanted, mode)
    loss.backward()
    value, grad = targets.model_q_grad(q.detach(), wanted, mode)
    assert value.item() == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(grad, q.grad)
    assert grad[5].abs().sum() == 0.0
    with pytest.raises(ValueError, match="'split' or 'entries'"):
        targets.model_q_grad(q.detach(), wanted, "rows")
