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
    y         <- y - alpha (max_b Q_target(s, g, b)   advantage_target (advantage learning,
                 - Q_target(s, g, a)), clamped      alpha > 0; off by default)
    targets   = Q_model(s, g, .), y for the taken   model_q_targets ('q' mode)
                action where the model has none
    loss      = Huber over the entries with one,    'entries' (model_q_loss, its gradient
                or over each row's mean error and   model_q_grad for the fast path)
                the errors about it                 'split'

All tensors are (B,) per row unless a shape is given; -inf marks "no model value".
"""

from __future__ import annotations

import numpy as np
import torch

from sshr_torch.smart_start import ModelLoss, ModelMode

__all__ = [
    "ModelLoss",
    "advantage_target",
    "bootstrap_discount",
    "bootstrap_value",
    "greedy_value",
    "model_q_grad",
    "model_q_loss",
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


def advantage_target(
    target: torch.Tensor,
    q_state: torch.Tensor,
    action: torch.Tensor,
    alpha: float,
    target_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Advantage learning's target (Baird 1999; Bellemare et al. 2016, "Increasing the action
    gap"): the TD ``target`` (B,) less ``alpha`` times the taken ``action``'s (B,) gap to the
    best action under the target network at the row's own state, ``q_state`` = Q_target(s, g,
    .) (B, n_actions): y - alpha (max_b Q(s, g, b) - Q(s, g, a)). Its fixed point keeps each
    greedy value and pushes the other actions down by alpha / (1 - gamma) times their gap, so
    a greedy choice survives errors in the fit of values that are close. Clamped into
    ``target_range`` when set."""
    gap = q_state.amax(dim=1) - q_state.gather(1, action.unsqueeze(1)).squeeze(1)  # (B,) >= 0
    target = target - alpha * gap
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


def _split_errors(
    q: torch.Tensor, wanted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(known (B, A), entries per row n (B,), the rows' mean errors m (B,), the errors about
    them c (B, A), 0 where unknown) of q (B, A) against ``wanted`` (B, A, -inf: none)."""
    known = wanted > -torch.inf
    n = known.sum(dim=1)  # (B,)
    error = torch.where(known, q - wanted, 0.0)  # (B, A)
    mean = error.sum(dim=1) / n.clamp(min=1)  # (B,)
    centred = torch.where(known, error - mean.unsqueeze(1), 0.0)  # (B, A)
    return known, n, mean, centred


def model_q_loss(
    q: torch.Tensor,
    wanted: torch.Tensor,
    mode: ModelLoss = "entries",
    loss_fn=torch.nn.functional.smooth_l1_loss,
) -> torch.Tensor:
    """'q' mode's loss of the network's Q (B, n_actions) against ``wanted``
    (``model_q_targets``, -inf: no target), differentiable, with ``loss_fn(x, y)`` a mean
    (default Huber, beta 1).

    'entries': loss_fn over the K entries with a target (the mean of their Huber terms).

    'split': for row i with n_i entries, errors e_ia = Q - target, their mean m_i and the errors
    about it c_ia = e_ia - m_i (which decide the row's argmax, whatever m_i is):

        loss = (1 / R) sum_i [ H(m_i) + sum_a H(c_ia) ]      (R rows with an entry)

    Huber's gradient is clamped at 1: with values of thousands and a fit error of a few, every
    entry of a row has an error beyond 1 of the same sign, and 'entries' gives each the same
    gradient, so the differences between a state's actions (1 move) get none. 'split' fits them
    on their own (docs/large_mazes.md). A row with one entry (a TD target) has c = 0: its loss
    is H(e), as with 'entries'.
    """
    if mode == "entries":
        known = wanted > -torch.inf
        return loss_fn(q[known], wanted[known])
    if mode != "split":
        raise ValueError(f"the model's loss is 'split' or 'entries', not {mode!r}.")
    known, n, mean, centred = _split_errors(q, wanted)
    rows = n > 0
    n_rows = int(rows.sum())
    n_known = int(known.sum())
    zero = torch.zeros((), dtype=q.dtype, device=q.device)
    total = loss_fn(mean[rows], zero.expand(n_rows)) * n_rows
    total = total + loss_fn(centred[known], zero.expand(n_known)) * n_known
    return total / max(n_rows, 1)


def model_q_grad(
    q: torch.Tensor, wanted: torch.Tensor, mode: ModelLoss = "entries"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Huber (beta 1) ``model_q_loss`` (a 0-d tensor) and its gradient d loss / d q
    (B, n_actions), written out for the fast path. With H'(x) = clamp(x, -1, 1):

        'entries':  H'(e_ia) / K
        'split':    [ H'(m_i) / n_i + H'(c_ia) - (1 / n_i) sum_b H'(c_ib) ] / R

    on the entries with a target, 0 elsewhere.
    """

    def huber(x: torch.Tensor) -> torch.Tensor:  # elementwise, beta 1
        size = x.abs()
        clipped = size.clamp(max=1.0)
        return clipped * (size - 0.5 * clipped)

    if mode == "entries":
        known = wanted > -torch.inf
        n_known = max(int(known.sum()), 1)
        error = torch.where(known, q - wanted, 0.0)
        loss = huber(error).sum() / n_known
        return loss, error.clamp(-1.0, 1.0).mul_(1.0 / n_known)  # as before the split mode
    if mode != "split":
        raise ValueError(f"the model's loss is 'split' or 'entries', not {mode!r}.")
    known, n, mean, centred = _split_errors(q, wanted)
    n_rows = max(int((n > 0).sum()), 1)
    loss = (huber(mean).sum() + huber(centred).sum()) / n_rows  # rows/entries without: 0
    slope_c = centred.clamp(-1.0, 1.0)  # (B, A), 0 where unknown
    per_row = (mean.clamp(-1.0, 1.0) - slope_c.sum(dim=1)) / n.clamp(min=1)  # (B,)
    grad = torch.where(known, slope_c + per_row.unsqueeze(1), 0.0).div_(n_rows)
    return loss, grad
