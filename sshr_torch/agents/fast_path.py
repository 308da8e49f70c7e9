"""The DQN update of the default ``OneHotMLP`` on the CPU, with gradients derived by hand.

A specialisation of ``DQNAgent``'s general update (autograd, ``smooth_l1_loss``, gradient
clipping, ``torch.optim.Adam`` and ``RowAdam``), as torch's ``Adam(fused=True)`` is of
``Adam``: the same maths on the module's own parameters and the optimizers' own state (no
second copy of anything), so either path can take over from the other at any update. A test
trains the same module both ways and finds the same weights, moments and losses.

Why: at batch 128 the network's arithmetic is small, and the per-call overhead of the
framework (autograd's graph, ``zero_grad``, the optimizers' Python loops) costs more than it.
Here an update is a short fixed sequence: the target and online forward passes, the backward
pass written out (the network is a plain MLP, so backpropagation is a few matrix products),
the global-norm clip, and Adam steps taken in place by compiled kernels (``_row_kernels``):
``lazy_adam_rows`` on the batch's unique rows of the first layer's weight, and on every row of
the other (small) parameters.

Inputs: with a Discrete state and goal (index mode) an entry reads two rows of the first
layer's weight, and only the batch's rows get a gradient and an Adam step. With a MultiBinary
input (dense mode: the module's lookup then runs over every unit, weighted by its value) the
first layer is the dense product z1 = x W1 + b1 with x = one-hot(s) || one-hot(g) (bits as
they are); its gradient x^T dz1 has every row (the module's sparse gradient lists every unit of
every entry, so ``RowAdam`` steps every row there too), and the kernel steps them all.

It applies when every part is the default one (``why_not_fast`` says which is not): an
``OneHotMLP`` (Discrete or MultiBinary inputs), float32 on the CPU, Huber loss, the agent's own
``torch.optim.Adam`` (no weight decay, amsgrad or maximize) and ``RowAdam``. Learning rates
are read from the optimizers at every update, so learning-rate schedulers work on both paths.

It is built from an explicit ``FastSpec`` (the modules and optimizers it updates) and takes the
update's settings (Double DQN, clipping, target range, model mode) with every call; the
targets come from the pure functions of ``targets``, which the autograd path calls too. It
never reads the agent that owns it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sshr_torch.agents import _row_kernels, targets
from sshr_torch.agents.networks import InputSpec, OneHotMLP, discrete_index
from sshr_torch.agents.optim import RowAdam
from sshr_torch.her import Batch
from sshr_torch.smart_start import ModelMode

__all__ = ["FastSpec", "FastUpdate", "why_not_fast"]


def why_not_fast(
    q_network: nn.Module,
    device: torch.device,
    loss: Callable[..., torch.Tensor],
    optimizers: Sequence[torch.optim.Optimizer],
) -> str | None:
    """None when the fast path computes the update of ``q_network`` (on ``device``, with the
    ``loss`` and the ``optimizers``) exactly; else the reason it cannot."""
    net = q_network
    if type(net) is not OneHotMLP:
        return "the Q-network is not the default OneHotMLP"
    if device.type != "cpu":
        return "the device is not the CPU"
    if any(p.dtype != torch.float32 for p in net.parameters()):
        return "a parameter is not float32"
    if loss is not nn.functional.smooth_l1_loss:
        return "the loss is not smooth_l1_loss"
    if len(optimizers) != 2:
        return "the optimizers are not one Adam and one RowAdam"
    dense, sparse = optimizers
    if type(dense) is not torch.optim.Adam or type(sparse) is not RowAdam:
        return "the optimizers are not torch.optim.Adam and RowAdam"
    if len(dense.param_groups) != 1 or len(sparse.param_groups) != 1:
        return "an optimizer has more than one parameter group"
    for group in dense.param_groups:
        if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
            return "Adam has weight decay, amsgrad or maximize"
        if group.get("differentiable") or group.get("capturable"):
            return "Adam is differentiable or capturable"
    return None


@dataclass(frozen=True)
class FastSpec:
    """What the fast path updates, in place: the default module, its target copy, and the
    ``torch.optim.Adam`` of its dense parameters and the ``RowAdam`` of its first layer (the
    pair ``why_not_fast`` accepts)."""

    q_network: OneHotMLP
    target_network: OneHotMLP
    adam: torch.optim.Adam
    row_adam: RowAdam


class FastUpdate:
    """The DQN update and greedy Q for one state, specialised to the default module."""

    def __init__(self, spec: FastSpec) -> None:
        net, target = spec.q_network, spec.target_network
        self.w1 = net.first.weight
        self.b1 = net.bias
        self.layers = [(layer.weight, layer.bias) for layer in net.linear_layers()]
        self.target_w1 = target.first.weight
        self.target_b1 = target.bias
        self.target_layers = [(layer.weight, layer.bias) for layer in target.linear_layers()]
        self.n_states = net.obs_spec.size
        self.n_goals = net.goal_spec.size
        self.index_mode = net.index_mode
        # Each input's spec and its first row in w1: the state's units first, then the goal's.
        self._inputs = ((net.obs_spec, 0), (net.goal_spec, self.n_states))
        dense, sparse = spec.adam, spec.row_adam
        self.adam, self.row_adam = dense, sparse
        # The dense parameters in backward order of their gradients' scratch: b1, then each
        # layer's weight and bias; each gets a (rows, size) view for the kernel.
        self.dense = [self.b1, *(t for pair in self.layers for t in pair)]
        self.grads = [torch.zeros_like(p) for p in self.dense]
        self._dense_tables = []
        for param, grad in zip(self.dense, self.grads, strict=True):
            state = _adam_state(dense, param)
            rows = param.shape[0] if param.dim() > 1 else 1
            views = [t.detach().view(rows, -1).numpy() for t in (param, state["exp_avg"])]
            views.append(state["exp_avg_sq"].view(rows, -1).numpy())
            every_row = np.arange(rows, dtype=np.int64)
            self._dense_tables.append((views, every_row, grad.view(rows, -1).numpy(), state))
        state = sparse.state_of(self.w1)
        self._w1_tables = (
            self.w1.detach().numpy(),
            state["exp_avg"].numpy(),
            state["exp_avg_sq"].numpy(),
        )
        self._slot = np.zeros(net.n_inputs, dtype=np.int64)  # scratch of stage_rows
        self._every_row = np.arange(net.n_inputs, dtype=np.int64)  # dense mode steps them all
        self._size = -1
        # numpy views of the online weights for act(): live, since every update is in place.
        self._numpy_layers = [(w.detach().numpy(), b.detach().numpy()) for w, b in self.layers]
        self._numpy_b1 = self.b1.detach().numpy()

    # --- acting ---------------------------------------------------------------------------

    def q_one(self, s: int, g: int) -> np.ndarray:
        """Q(s, g, .) for one Discrete state and goal, in numpy (a few us; torch takes tens)."""
        w1 = self._w1_tables[0]
        return self._q_from_z1(w1[s] + w1[self.n_states + g] + self._numpy_b1)

    def q_obs(self, obs: Any, goal: Any) -> np.ndarray:
        """Q(s, g, .) for one state and goal as the env gives them (a Discrete value or the
        bits of a MultiBinary one), in numpy: z1 = b1 + the row of each Discrete input + bits
        @ the rows of each MultiBinary one."""
        w1 = self._w1_tables[0]
        z = self._numpy_b1.copy()  # (hidden_1,)
        for value, (spec, first) in zip((obs, goal), self._inputs, strict=True):
            block = w1[first : first + spec.size]  # (size, hidden_1)
            if spec.kind == "discrete":
                z += block[discrete_index(value, spec.size)]
            else:
                z += np.asarray(value, dtype=np.float32).reshape(spec.size) @ block
        return self._q_from_z1(z)

    def _q_from_z1(self, z: np.ndarray) -> np.ndarray:
        """The layers after the first on z1 (hidden_1,): Q (n_actions,)."""
        for weight, bias in self._numpy_layers:
            z = weight @ np.maximum(z, 0.0) + bias  # (out,)
        return z

    # --- learning -------------------------------------------------------------------------

    def _buffers(self, n: int) -> None:
        """Reusable host buffers for batches of ``n`` rows (numpy views of tensors)."""
        self._size = n
        hidden = self.w1.shape[1]
        self.pairs = torch.zeros((2, n, 2), dtype=torch.int64)  # (s, n_s + g), (s', n_s + g)
        self.ranks = torch.zeros((2, n), dtype=torch.int64)  # each entry's unique state/goal row
        self.unique = torch.zeros(2 * n, dtype=torch.int64)  # the batch's unique rows of w1
        self.action = torch.zeros((n, 1), dtype=torch.int64)
        self.floats = torch.zeros((2, n))  # rewards; bootstrap discounts
        if self.index_mode:
            self.grad_rows = torch.zeros((2 * n, hidden))
        else:
            n_inputs = self.w1.shape[0]
            self.dense_inputs = torch.zeros((2, n, n_inputs))  # x(s, g); x(s', g)
            self.grad_rows = torch.zeros((n_inputs, hidden))  # every row of w1

    def _stage_dense(self, batch: Batch) -> None:
        """x(s, g) and x(s', g) of the batch into ``dense_inputs`` (dense mode)."""
        x = self.dense_inputs.numpy()  # (2, B, n_inputs)
        (obs_spec, _), (goal_spec, first) = self._inputs
        _encode(batch.obs, obs_spec, x[0, :, :first])
        _encode(batch.next_obs, obs_spec, x[1, :, :first])
        _encode(batch.goal, goal_spec, x[0, :, first:])
        x[1, :, first:] = x[0, :, first:]

    def _forward(self, w1, b1, layers, inputs) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q (B, n_actions) and the hidden activations after ReLU, first to last; ``inputs``:
        the rows (B, 2) of each entry (index mode) or x (B, n_inputs) (dense mode)."""
        if self.index_mode:
            z = nn.functional.embedding_bag(inputs, w1, mode="sum").add_(b1)  # (B, hidden_1)
        else:
            z = torch.addmm(b1, inputs, w1)  # (B, hidden_1)
        hidden: list[torch.Tensor] = []
        for weight, bias in layers:
            h = z.relu_()  # (B, in); z is a fresh tensor, so in place saves an allocation
            hidden.append(h)
            z = torch.mm(h, weight.t()).add_(bias)  # (B, out)
        return z, hidden

    @torch.no_grad()
    def update(
        self,
        batch: Batch,
        discount: np.ndarray,
        model: np.ndarray | None = None,
        model_q: np.ndarray | None = None,
        *,
        double_dqn: bool = False,
        max_grad_norm: float = math.inf,
        target_range: tuple[float, float] | None = None,
        model_mode: ModelMode = "q",
        model_loss: targets.ModelLoss = "entries",
        advantage_alpha: float = 0.0,
    ) -> dict[str, float]:
        """One Huber-loss step on ``batch``; ``discount`` (B,) multiplies the bootstrap value,
        combined with the model's values ``model`` (B,) by ``targets.bootstrap_value`` in
        ``model_mode``; with ``model_q`` (B, n_actions) the loss is 'q' mode's
        (``targets.model_q_targets``; ``targets.model_q_grad`` in ``model_loss``); with
        ``advantage_alpha`` > 0 the TD target is advantage learning's
        (``targets.advantage_target``). The global
        gradient norm is clipped to ``max_grad_norm``. Returns ``td_loss``, ``q_mean`` and
        ``grad_norm`` (before clipping).
        """
        n = len(batch.action)
        if n != self._size:
            self._buffers(n)
        if self.index_mode:
            n_rows = _row_kernels.stage_rows(
                *(np.asarray(v, dtype=np.int64) for v in (batch.obs, batch.goal, batch.next_obs)),
                self.n_states,
                self.n_goals,
                self.pairs.numpy(),
                self._slot,
                self.ranks.numpy(),
                self.unique.numpy(),
            )
            if n_rows < 0:
                raise ValueError(
                    f"a batch holds a state outside Discrete({self.n_states}) or a goal "
                    f"outside Discrete({self.n_goals})."
                )
            inputs, next_inputs = self.pairs[0], self.pairs[1]
        else:
            self._stage_dense(batch)
            inputs, next_inputs = self.dense_inputs[0], self.dense_inputs[1]
        self.action.numpy()[:, 0] = batch.action
        floats = self.floats.numpy()
        floats[0] = batch.reward
        floats[1] = discount
        reward, discount_t = self.floats[0], self.floats[1]

        # y = r + discount * max_a Q_target(s', g, a) (Double DQN: the online argmax), clamped.
        q_next, _ = self._forward(
            self.target_w1, self.target_b1, self.target_layers, next_inputs
        )  # (B, n_actions)
        online_next = None
        if double_dqn:
            online_next, _ = self._forward(self.w1, self.b1, self.layers, next_inputs)
        value = targets.greedy_value(q_next, online_next)  # (B,)
        if model is not None:
            value = targets.bootstrap_value(value, torch.from_numpy(model), model_mode)
        target = targets.td_target(reward, discount_t, value, target_range)  # (B,)
        if advantage_alpha:
            q_state, _ = self._forward(self.target_w1, self.target_b1, self.target_layers, inputs)
            target = targets.advantage_target(
                target, q_state, self.action[:, 0], advantage_alpha, target_range
            )

        q, hidden = self._forward(self.w1, self.b1, self.layers, inputs)
        q_taken = q.gather(1, self.action).squeeze(1)  # (B,)
        if model_q is None:
            # d loss / d q_taken of the mean Huber loss (beta 1): clamp(q - y, -1, 1) / B.
            grad_taken = torch.sub(q_taken, target).clamp_(-1.0, 1.0).mul_(1.0 / n)  # (B,)
            grad_z = torch.zeros_like(q).scatter_(1, self.action, grad_taken.unsqueeze(1))
        else:
            wanted = targets.model_q_targets(
                torch.from_numpy(model_q), self.action[:, 0], target
            )  # (B, n_actions)
            model_loss_value, grad_z = targets.model_q_grad(q, wanted, model_loss)
        # Back through the layers after the first; for z = h W^T + c with h = relu(z_prev):
        # dW = dz^T h, dc = sum_batch dz, dz_prev = (dz W) * [z_prev > 0].
        for index in range(len(hidden) - 1, -1, -1):
            weight, _ = self.layers[index]
            h = hidden[index]  # (B, in)
            torch.mm(grad_z.t(), h, out=self.grads[1 + 2 * index])  # (out, in)
            torch.sum(grad_z, 0, out=self.grads[2 + 2 * index])  # (out,)
            grad_z = torch.mm(grad_z, weight)  # (B, in)
            _row_kernels.relu_backward(grad_z.numpy(), h.numpy())
        torch.sum(grad_z, 0, out=self.grads[0])  # d loss / d b1
        if self.index_mode:
            # Row r of w1 gets the sum of grad_z1 over the entries that use it (state or goal).
            grad_rows = self.grad_rows[:n_rows]  # (R, hidden_1)
            ranks = self.ranks.numpy()
            _row_kernels.sum_rows(grad_z.numpy(), ranks[0], ranks[1], grad_rows.numpy())
            rows = self.unique.numpy()[:n_rows]
        else:
            # dW1 = x^T dz1, every row of w1 (n_inputs, hidden_1).
            grad_rows = torch.mm(inputs.t(), grad_z, out=self.grad_rows)
            rows = self._every_row

        # get_total_norm's arithmetic, the norm of the per-tensor norms (the same bits), without
        # its grouping of the tensors by device and dtype (they share both).
        norms = [torch.linalg.vector_norm(grad) for grad in (*self.grads, grad_rows)]
        grad_norm = torch.linalg.vector_norm(torch.stack(norms)).item()
        if grad_norm > max_grad_norm:  # as clip_grad_norm_: scale by max / (norm + 1e-6)
            scale = max_grad_norm / (grad_norm + 1e-6)
            for grad in (*self.grads, grad_rows):
                grad.mul_(scale)
        self._adam_steps()
        # RowAdam's step on the rows with a gradient (the batch's; every row in dense mode), on
        # the views of w1 and its moments made once.
        group = self.row_adam.param_groups[0]
        step_size = self.row_adam.advance(self.w1, group)
        _row_kernels.lazy_adam_rows(
            *self._w1_tables,
            rows,
            grad_rows.numpy(),
            *group["betas"],
            step_size,
            group["eps"],
        )

        # Metrics on the host: a few numpy operations on B values are cheaper than torch ones.
        q_np = q_taken.numpy()
        if model_q is None:
            size = np.abs(q_np - target.numpy())  # |q - y|
            clipped = np.minimum(size, 1.0)
            td_loss = float(np.dot(clipped, size - 0.5 * clipped)) / n  # Huber (beta 1) mean
        else:
            td_loss = float(model_loss_value)
        return {"td_loss": td_loss, "q_mean": float(q_np.sum()) / n, "grad_norm": grad_norm}

    def _adam_steps(self) -> None:
        """torch.optim.Adam's step on each dense parameter, by the row kernel on all its rows.

        Adam's p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) is the kernel's
        p <- p - step_size * m / (sqrt(v) + eps') with step_size = lr sqrt(1 - b2^t) / (1 - b1^t)
        and eps' = eps sqrt(1 - b2^t).
        """
        group = self.adam.param_groups[0]
        beta1, beta2 = group["betas"]
        for (param, m, v), rows, grad, state in self._dense_tables:
            state["step"] += 1
            t = float(state["step"])
            root_c2 = math.sqrt(1.0 - beta2**t)
            step_size = group["lr"] * root_c2 / (1.0 - beta1**t)
            _row_kernels.lazy_adam_rows(
                param, m, v, rows, grad, beta1, beta2, step_size, group["eps"] * root_c2
            )


def _encode(values: Any, spec: InputSpec, out: np.ndarray) -> None:
    """A batch of one input into ``out`` (B, spec.size) float32: one-hot rows of Discrete
    values (ValueError naming the space when one is outside it), the bits of MultiBinary ones
    as they are."""
    if spec.kind == "binary":
        out[:] = np.asarray(values).reshape(len(out), spec.size)
        return
    index = np.asarray(values, dtype=np.int64).reshape(-1)  # (B,)
    if len(index) and (index.min() < 0 or index.max() >= spec.size):
        raise ValueError(f"a batch holds a value outside Discrete({spec.size}).")
    out[:] = 0.0
    out[np.arange(len(out)), index] = 1.0


def _adam_state(adam: torch.optim.Adam, param: torch.Tensor) -> dict[str, Any]:
    """Adam's state of ``param``, created as ``Adam.step`` would create it if still empty."""
    state = adam.state[param]
    if not state:
        group = next(g for g in adam.param_groups if any(p is param for p in g["params"]))
        on_device = group["fused"] or group["capturable"]
        state["step"] = torch.zeros(
            (), dtype=torch.float32, device=param.device if on_device else None
        )
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return state
