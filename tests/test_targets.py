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
