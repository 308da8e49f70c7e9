"""The DQN's target maths as pure functions: bootstrap values, TD targets, model targets.

In the style of rlax's ``q_learning(q_tm1, a_tm1, r_t, discount_t, q_t)``: each function takes
tensors (or arrays) and settings and returns a tensor; none reads an agent. ``DQNAgent``'s
autograd update and the fast path (``fast_path.FastUpdate``) both call them, so the two paths
compute their targets with the same code and neither imports the other's owner.

For a replay row (s, g, a, r, s', discount) the chain is:

    discount  = gamma^m (1 - terminal)              bootstrap_discount; m = 1, or the window
                                                    length of an n-step row (the HER buffer
                                                    sums the window's rewards, see sshr_torch.her)
    V(s')     = max_a Q_target(s', g, a)            greedy_value (Double DQN: Q_target at
                                                    argmax_a Q_online(s', g, a))
    V(s')     <- combined with V_model(s', g)       bootstrap_value ('floor', 'target')
    y         = r + discount * V(s'), clamped       td_target
    targets   = Q_model(s, g, .), y for the taken   model_q_targets ('q' mode)
                action where the model has none

All tensors are (B,) per row unless a shape is given; -inf marks "no model value".
"""

from __future__ import annotations

import numpy as np
import torch

from sshr_torch.smart_start import ModelMode

__all__ = [
    "bootstrap_discount",
    "bootstrap_value",
    "greedy_value",
    "model_q_targets",
    "td_target",
]


def bootstrap_discount(
    gamma: float, terminal: np.ndarray, discount: np.ndarray | None = None
) -> np.ndarray:
    """The factor of each row's bootstrap value, float32 (B,).

    ``discount`` when the batch carries one (n-step rows: gamma^m (1 - terminal) for an m-step
    window, computed by the HER buffer), else gamma (1 - terminal): a terminal row does not
    bootstrap; a truncated one (terminal 0) does.
    """
    if discount is not None:
        return np.asarray(discount, dtype=np.float32)
    not_terminal = 1.0 - np.asarray(terminal, dtype=np.float32)
    return (gamma * not_terminal).astype(np.float32, copy=False)


def greedy_value(q_next: torch.Tensor, online_next: torch.Tensor | None = None) -> torch.Tensor:
    """V(s') (B,) from the target network's Q(s', g, .) (B, n_actions).

    max_a Q_target(s', g, a); with ``online_next`` (B, n_actions), the online network's Q of
    the same rows, Double DQN's Q_target(s', g, argmax_a Q_online(s', g, a)).
    """
    if online_next is None:
        return q_next.amax(dim=1)
    best = online_next.argmax(dim=1, keepdim=True)  # (B, 1)
    return q_next.gather(1, best).squeeze(1)


def bootstrap_value(value: torch.Tensor, model: torch.Tensor, mode: ModelMode) -> torch.Tensor:
    """The network's bootstrap value (B,) combined with the model's V_model(s', g) (B,).

    'floor': max(value, model), a lower bound on a deterministic env; 'target': the model's
    value where it has one (> -inf), else the network's. ('q' mode does not combine values:
    see ``model_q_targets``.)
    """
    if mode == "floor":
        return torch.maximum(value, model)
    if mode == "target":
        return torch.where(model > -torch.inf, model, value)
    raise ValueError(f"bootstrap_value combines values in 'floor' or 'target' mode, not {mode!r}.")


def td_target(
    reward: torch.Tensor,
    discount: torch.Tensor,
    value: torch.Tensor,
    target_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """y = r + discount * V(s') (B,), clamped into ``target_range`` (low, high) when set (the
    HER paper clips targets to the range of returns)."""
    target = torch.addcmul(reward, discount, value)  # (B,)
    if target_range is not None:
        target = target.clamp_(*target_range)
    return target


def model_q_targets(
    model_q: torch.Tensor, action: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """'q' mode's targets (B, n_actions): the model's Q_model(s, g, a) where it has one; for
    the taken ``action`` (B,) where it has none, the TD ``target`` (B,); -inf: no target for
    that entry (the loss is the mean over the entries with one)."""
    taken = model_q.gather(1, action.unsqueeze(1))  # (B, 1)
    filled = torch.where(taken > -torch.inf, taken, target.unsqueeze(1))
    return model_q.scatter(1, action.unsqueeze(1), filled)
