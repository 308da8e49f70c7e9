"""Compiled CPU kernels for the DQN's sparse first layer (numba; no torch import).

An update touches only the batch's rows of the first-layer weight ``w1`` (see the DQN module's
docstring). With torch ops, stepping those rows by Adam means gathering the rows of ``w1`` and
of both Adam moments (three ``index_select``), stepping the copies, and scattering them back:
each row crosses memory three times. These kernels do it in place, one pass per row, on numpy
views of the same CPU tensors:

- ``stage_rows``: a batch's rows of w1 and the unique ones among them, in place of about ten
  numpy calls (rows, range checks, coalescing);
- ``sum_rows``: the summed gradient of each unique row (its state entries and its goal entries),
  in place of zeroing a tensor and two ``index_add_``;
- ``lazy_adam_rows``: Adam on just those rows, in place.

and one for the layers after it:

- ``relu_backward``: zeroes the gradient where the ReLU was off, in place (torch's
  ``masked_fill_`` with the mask ``h <= 0`` took two passes and a bool tensor, and several
  times longer at batch 128).

``error_model="numpy"`` lets LLVM vectorise the division (numba's default "python" model adds
a zero check per element, which stops the vectorisation); arithmetic is float32 throughout,
as in torch. docs/performance.md has the measured figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

__all__ = ["lazy_adam_rows", "relu_backward", "stage_rows", "sum_rows"]


def _jit(function: Callable[..., Any]) -> Callable[..., Any]:
    """numba.njit, caching the compiled code on disk when there is somewhere to write it.

    numba caches next to this file, else in its user-wide cache directory (NUMBA_CACHE_DIR or
    ~/.cache); where neither is writable (a read-only install and home) it refuses to cache at
    all, so the kernels are compiled in each process instead (about a second).
    """
    options = {"nogil": True, "error_model": "numpy"}
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(cache=False, **options)(function)


@_jit
def stage_rows(
    obs: np.ndarray,
    goal: np.ndarray,
    next_obs: np.ndarray,
    n_states: int,
    n_goals: int,
    pairs: np.ndarray,
    slot: np.ndarray,
    rank: np.ndarray,
    unique: np.ndarray,
) -> int:
    """A batch's rows of w1 (states first, then goals) and the unique rows among them.

    obs, goal, next_obs: (B,) int64 values. Writes pairs (2, B, 2): pairs[0, i] = (s_i,
    n_states + g_i), pairs[1, i] = (s'_i, n_states + g_i); rank (2, B): the position of pairs[0,
    i, 0] (row 0) and of pairs[0, i, 1] (row 1) among the unique rows; unique (>= 2B,): the
    unique rows of pairs[0] in order of first use (the first R entries). ``slot`` is scratch with
    one entry per row of w1. Returns R, or -1 when a value is out of range (nothing is usable).
    """
    n = obs.shape[0]
    for i in range(n):
        s, g, s_next = obs[i], goal[i], next_obs[i]
        if not (0 <= s < n_states and 0 <= s_next < n_states and 0 <= g < n_goals):
            return -1
        pairs[0, i, 0], pairs[0, i, 1] = s, n_states + g
        pairs[1, i, 0], pairs[1, i, 1] = s_next, n_states + g
    for column in range(2):  # mark the batch's rows as not yet numbered
        for i in range(n):
            slot[pairs[0, i, column]] = -1
    n_rows = 0
    for column in range(2):
        for i in range(n):
            row = pairs[0, i, column]
            if slot[row] < 0:
                slot[row] = n_rows
                unique[n_rows] = row
                n_rows += 1
            rank[column, i] = slot[row]
    return n_rows


@_jit
def sum_rows(
    grad: np.ndarray, row_of_state: np.ndarray, row_of_goal: np.ndarray, out: np.ndarray
) -> None:
    """out[r] = sum of grad[i] over the entries i whose state row or goal row is r.

    grad: (B, H) d loss / d z1; row_of_state, row_of_goal: (B,) indices into out's rows;
    out: (R, H), overwritten.
    """
    out[:] = 0.0
    for i in range(grad.shape[0]):
        state_row, goal_row, g = out[row_of_state[i]], out[row_of_goal[i]], grad[i]
        for j in range(g.shape[0]):
            state_row[j] += g[j]
        for j in range(g.shape[0]):
            goal_row[j] += g[j]


@_jit
def lazy_adam_rows(
    param: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    rows: np.ndarray,
    grad: np.ndarray,
    beta1: float,
    beta2: float,
    step_size: float,
    eps: float,
) -> None:
    """Adam on rows ``rows`` of ``param`` and its moments, in place; other rows are untouched.

    For each r = rows[i], with g = grad[i]:
        m <- m + (1 - beta1) (g - m);  v <- beta2 v + (1 - beta2) g^2;
        p <- p - step_size * m / (sqrt(v) + eps)
    The caller folds the bias corrections into step_size and eps (step_size = lr sqrt(1 -
    beta2^t) / (1 - beta1^t), eps = adam_eps sqrt(1 - beta2^t)), which is torch's Adam.
    """
    f32 = np.float32
    one_minus_b1, b2 = f32(1.0 - beta1), f32(beta2)
    one_minus_b2, lr, eps_ = f32(1.0 - beta2), f32(step_size), f32(eps)
    for i in range(rows.shape[0]):
        r = rows[i]
        p, m, v, g = param[r], exp_avg[r], exp_avg_sq[r], grad[i]
        for j in range(p.shape[0]):
            gj = g[j]
            mj = m[j] + one_minus_b1 * (gj - m[j])
            vj = b2 * v[j] + one_minus_b2 * gj * gj
            m[j] = mj
            v[j] = vj
            p[j] -= lr * mj / (np.sqrt(vj) + eps_)


@_jit
def relu_backward(grad: np.ndarray, hidden: np.ndarray) -> None:
    """grad <- grad * [hidden > 0], in place: d loss / d z of h = relu(z) from d loss / d h.

    grad, hidden: (B, H) float32; hidden is relu(z), so hidden <= 0 exactly where z <= 0.
    """
    for i in range(grad.shape[0]):
        g, h = grad[i], hidden[i]
        for j in range(g.shape[0]):
            if h[j] <= 0.0:
                g[j] = 0.0
