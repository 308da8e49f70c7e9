"""``RowAdam``: lazy Adam for sparse (row) gradients, as a ``torch.optim.Optimizer``.

The semantics are ``torch.optim.SparseAdam``'s, as documented: only the rows present in the
gradient move, and only their moments are updated on that step (the other rows' moments are
not decayed); the step count t is the parameter's number of ``step()`` calls. For each row r
of the gradient g (duplicates summed):

    m_r <- b1 m_r + (1 - b1) g_r;   v_r <- b2 v_r + (1 - b2) g_r^2
    p_r <- p_r - lr sqrt(1 - b2^t) / (1 - b1^t) * m_r / (sqrt(v_r) + eps)

(eps enters before the bias correction, as in SparseAdam; ``torch.optim.Adam`` adds it
after). Unlike SparseAdam it also takes a dense gradient, as a gradient of every row, and it
steps float32 CPU parameters in place with a compiled kernel, one pass per row
(``_row_kernels.lazy_adam_rows``): SparseAdam gathers, steps and scatters each row's three
tensors. On other devices it uses torch ops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from sshr_torch.agents import _row_kernels

__all__ = ["RowAdam"]


class RowAdam(torch.optim.Optimizer):
    """Lazy Adam on the rows of sparse gradients (``torch.optim.SparseAdam``'s semantics).

    Args:
        params: parameters (or parameter groups) to optimise; a 1-D parameter is one row.
        lr: step size.
        betas: (b1, b2), the moments' decay rates.
        eps: added to sqrt(v) before the bias correction, as SparseAdam does.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0.0:
            raise ValueError(f"lr must be > 0, got {lr}.")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}.")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}.")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    def state_of(self, param: torch.Tensor) -> dict[str, Any]:
        """The parameter's state (``step``, ``exp_avg``, ``exp_avg_sq``), created if new."""
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One step on every parameter that has a gradient (sparse or dense)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    grad = grad if grad.is_coalesced() else grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()  # (R,), (R, ...)
                else:
                    rows = torch.arange(param.shape[0] if param.dim() else 1, device=param.device)
                    values = grad.reshape(len(rows), -1)
                self.step_rows(param, rows, values.reshape(len(rows), -1), group)
        return loss

    def advance(self, param: torch.Tensor, group: dict[str, Any]) -> float:
        """Count one more step of ``param``; its step size lr sqrt(1 - b2^t) / (1 - b1^t)."""
        state = self.state_of(param)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        t = state["step"]
        return group["lr"] * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)

    def step_rows(
        self,
        param: torch.Tensor,
        rows: torch.Tensor,
        grad_rows: torch.Tensor,
        group: dict[str, Any] | None = None,
    ) -> None:
        """Step rows ``rows`` (unique, (R,)) of ``param`` with their gradients (R, row size).

        ``group``: the parameter's group (found when None); its lr, betas and eps are used.
        """
        if group is None:
            group = next(g for g in self.param_groups if any(p is param for p in g["params"]))
        step_size = self.advance(param, group)
        state = self.state[param]
        beta1, beta2 = group["betas"]
        table = param.data.view(param.shape[0] if param.dim() > 1 else 1, -1)  # (rows, size)
        moments = [state[key].view(table.shape) for key in ("exp_avg", "exp_avg_sq")]
        if _kernel_applies(table, grad_rows):
            _row_kernels.lazy_adam_rows(
                table.numpy(),
                moments[0].numpy(),
                moments[1].numpy(),
                rows.numpy(),
                grad_rows.numpy(),
                beta1,
                beta2,
                step_size,
                group["eps"],
            )
            return
        p, m, v = (torch.index_select(t_, 0, rows) for t_ in (table, *moments))
        m.lerp_(grad_rows, 1.0 - beta1)
        v.mul_(beta2).addcmul_(grad_rows, grad_rows, value=1.0 - beta2)
        p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-step_size)
        for full, new in zip((table, *moments), (p, m, v), strict=True):
            full.index_copy_(0, rows, new)


def _kernel_applies(table: torch.Tensor, grad_rows: torch.Tensor) -> bool:
    """The compiled kernel takes contiguous float32 CPU tensors (numpy views of them)."""
    return (
        table.device.type == "cpu"
        and table.dtype == torch.float32
        and grad_rows.dtype == torch.float32
        and table.is_contiguous()
        and grad_rows.is_contiguous()
        and not table.requires_grad
    )
