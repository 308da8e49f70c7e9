"""Goal-conditioned DQN on one-hot(s) || one-hot(g), trained with explicit gradients.

Network: Q(s, g, .) = MLP(one-hot(s) || one-hot(g)), hidden sizes a setting (default one hidden
layer of 256, as in the HER paper), ReLU between layers. A Linear layer on a one-hot vector is a
sum of rows of its weight, so the first layer is computed as a lookup:

    z1 = W1[s] + W1[n_s + g] + b1                        (Discrete state and goal: index mode)
    z1 = [x_s, x_g] @ W1 + b1                            (a MultiBinary input: dense mode)

with ``W1`` of shape (n_inputs, hidden_1) equal to ``nn.Linear(n_inputs, hidden_1).weight.T``.
In index mode nothing of size n_inputs is touched per update, only the batch's rows, so the cost
of an update hardly grows with the maze (what does grow is the time to fetch rows that are no
longer in the CPU cache).

Speed: an update is a fixed, short sequence of tensor operations with the gradients written out
by hand (the network is a plain MLP, so backpropagation is a few matrix products): at batch 128
the per-call overhead of autograd and ``torch.optim`` would cost more than the arithmetic. In
index mode the rows of W1 are updated by a *lazy* Adam, as ``torch.optim.SparseAdam`` does: only
rows in the batch move, the moments of the other rows are not decayed on that step, and bias
correction uses the global step (eps enters as in ``torch.optim.Adam``, after the bias
correction; SparseAdam adds it before). All other parameters live in one flat tensor updated
by ordinary Adam, with torch's fused Adam kernel when this torch has one for the device and the
same update written out otherwise. On the CPU the batch's rows of W1 are staged, their
gradients summed and their Adam step taken in place by numba kernels (``_row_kernels``); on
other devices by torch ops that gather the rows, step them and write them back (tests check
every path against autograd and ``torch.optim``).

Subnormal floats: in a real run many gradients are tiny, and Adam's second moments decay
into the subnormal range (below 1.2e-38), where x86 CPUs compute several times slower: on
keulen_easy the fused Adam step went from ~40 to ~360 us per update after a few thousand
updates. A CPU agent therefore turns on flush-to-zero (``torch.set_flush_denormal(True)``) for
the thread that builds it; values that small change nothing that Adam or the TD targets can
see.

Target network: a copy refreshed every ``target_update_interval`` updates, by a hard copy
(tau = 1) or Polyak averaging, target <- tau * online + (1 - tau) * target (tau < 1). A refresh
costs O(all parameters), W1 included: Polyak averaging every update is slow on a big maze, so
prefer hard updates there. Loss: Huber (smooth L1, beta 1) on the TD error; the gradient's
global norm is clipped (duplicate rows of W1 summed first, as a dense gradient would have them).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from sshr_torch.agents import _row_kernels
from sshr_torch.agents.base import LinearSchedule
from sshr_torch.her import Batch

__all__ = ["DQNAgent", "GoalQNetwork", "InputSpec", "LinearSchedule"]

_CHUNK = 8192  # rows per forward pass in q_values / max_q (bounds the memory for big mazes)


@dataclass(frozen=True)
class InputSpec:
    """One input of the network: a Discrete space of ``size`` values, or ``size`` binary bits."""

    kind: str  # "discrete" or "binary"
    size: int

    @staticmethod
    def of(space: spaces.Space | int) -> InputSpec:
        """The spec of a gymnasium Discrete / MultiBinary space, or of an int n (Discrete(n))."""
        if isinstance(space, int | np.integer):
            return InputSpec("discrete", int(space))
        if isinstance(space, spaces.Discrete):
            if int(space.start) != 0:
                raise ValueError(f"Discrete spaces must start at 0, got start={space.start}.")
            return InputSpec("discrete", int(space.n))
        if isinstance(space, spaces.MultiBinary):
            return InputSpec("binary", int(np.prod(space.shape)))
        raise ValueError(
            f"the DQN takes Discrete or MultiBinary observations and goals, got {space}."
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one observation: () for Discrete, (bits,) for MultiBinary."""
        return () if self.kind == "discrete" else (self.size,)


class GoalQNetwork:
    """The Q-network's tensors and its forward pass (no autograd: see the module docstring).

    Attributes:
        w1: (n_inputs, hidden_1) first-layer weight; row r is the weight of input unit r
            (``nn.Linear.weight.T``); the state's units come first, then the goal's.
        b1: (hidden_1,) first-layer bias.
        layers: [(weight (out, in), bias (out,)), ...] for the layers after the first; the last
            one outputs n_actions. Empty when there is no hidden layer.
        flat: one tensor holding every parameter except ``w1`` in index mode (all of them in
            dense mode); ``b1`` and ``layers`` (and dense ``w1``) are views into it.
    """

    def __init__(
        self,
        n_inputs: int,
        sizes: Sequence[int],
        *,
        index_mode: bool,
        device: torch.device,
    ) -> None:
        # sizes = (hidden_1, ..., hidden_L, n_actions); sizes[0] is the first layer's width.
        self.n_inputs = int(n_inputs)
        self.sizes = tuple(int(s) for s in sizes)
        self.index_mode = bool(index_mode)
        self._bag_offsets: torch.Tensor | None = None  # embedding-bag offsets, one per batch row
        self.flat = torch.zeros(sum(math.prod(s) for s in self.flat_shapes()), device=device)
        views = _split(self.flat, self.flat_shapes())
        if self.index_mode:
            self.w1 = torch.zeros(self.n_inputs, self.sizes[0], device=device)
        else:
            self.w1 = views.pop(0)
        self.b1 = views[0]
        self.layers = [(views[i], views[i + 1]) for i in range(1, len(views), 2)]

    def flat_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the tensors inside ``flat``, in order: [w1 (dense mode)], b1, W2, c2, ..."""
        sizes = self.sizes
        shapes: list[tuple[int, ...]] = [] if self.index_mode else [(self.n_inputs, sizes[0])]
        shapes.append((sizes[0],))
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            shapes += [(n_out, n_in), (n_out,)]
        return shapes

    def parameters(self) -> list[torch.Tensor]:
        """The storage tensors: [w1, flat] in index mode, [flat] in dense mode."""
        return [self.w1, self.flat] if self.index_mode else [self.flat]

    def copy_from(self, other: GoalQNetwork, tau: float = 1.0) -> None:
        """self <- tau * other + (1 - tau) * self (a hard copy when tau = 1)."""
        for mine, theirs in zip(self.parameters(), other.parameters(), strict=True):
            if tau >= 1.0:
                mine.copy_(theirs)
            else:
                mine.lerp_(theirs, tau)

    def first_layer(self, inputs: torch.Tensor) -> torch.Tensor:
        """z1 = (one-hot(s) || one-hot(g)) @ w1 + b1, shape (B, hidden_1).

        ``inputs``: index mode, (B, 2) int64 rows of ``w1`` (s, n_s + g); dense mode, (B,
        n_inputs) float32 inputs.
        """
        if not self.index_mode:
            return torch.mm(inputs, self.w1).add_(self.b1)  # (B, hidden_1)
        # One embedding-bag sum per entry over its two rows (s, n_s + g): faster than gathering
        # both rows and adding them (about 18 vs 27 us at batch 128).
        n = inputs.shape[0]
        if self._bag_offsets is None or self._bag_offsets.shape[0] != n:
            self._bag_offsets = torch.arange(0, 2 * n, 2, device=inputs.device)
        pairs = inputs.reshape(-1)  # (2B,) s_0, g_0, s_1, g_1, ... (a view: no copy)
        return torch.embedding_bag(self.w1, pairs, self._bag_offsets, False, 0)[0].add_(self.b1)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q values (B, n_actions) and the hidden activations after ReLU, first to last."""
        z = self.first_layer(inputs)  # (B, hidden_1)
        hidden: list[torch.Tensor] = []
        for weight, bias in self.layers:
            h = z.relu_()  # (B, in); z is a fresh tensor, so in place saves an allocation
            hidden.append(h)
            # mm then add_: about 13 us where addmm takes 22 us for (128, 256) x (256, 4)
            z = torch.mm(h, weight.t()).add_(bias)  # (B, out)
        return z, hidden

    def q(self, inputs: torch.Tensor) -> torch.Tensor:
        """Q values only, shape (B, n_actions)."""
        return self.forward(inputs)[0]


class DQNAgent:
    """Goal-conditioned DQN: target network, optional Double DQN, Huber loss, Adam, clipping.

    Args:
        obs_space: the observation space: Discrete(n), MultiBinary(n), or an int n.
        goal_space: the goal space, same kinds.
        n_actions: number of discrete actions.
        hidden_sizes: widths of the hidden layers; () makes Q linear in the one-hot inputs.
        learning_rate: Adam step size.
        gamma: discount.
        target_update_interval: updates between target-network refreshes.
        tau: 1.0 for a hard copy at each refresh, < 1 for Polyak averaging.
        double_dqn: choose the next action with the online network, value it with the target.
        max_grad_norm: clip the global gradient norm to this (None: no clipping).
        target_range: (low, high) to clamp TD targets into: the range of returns, as the HER
            paper clips targets. Without it, the Q-values of a goal never reached can drift
            far outside that range with gamma near 1 (the max in the target feeds on its own
            overestimates). None: no clamping.
        device: "cpu" (default), "cuda", "auto" (CUDA when available) or a torch.device.
        seed: seeds the initial weights and the generator for exploration and tie-breaks.
        adam_betas, adam_eps: Adam's other settings (torch's defaults).

    Initial weights are ``nn.Linear``'s, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases, with the first layer's fan_in the width of the one-hot input (n_inputs), exactly as
    a Linear layer on one-hot(s) || one-hot(g) would start.

    ``act`` on the CPU runs the forward pass in numpy on views of the same weights (a single
    input costs a few us that way, against tens of us through torch).
    """

    online: bool = False

    def __init__(
        self,
        obs_space: spaces.Space | int,
        goal_space: spaces.Space | int,
        n_actions: int,
        *,
        hidden_sizes: Sequence[int] = (256,),
        learning_rate: float = 1e-3,
        gamma: float = 0.98,
        target_update_interval: int = 500,
        tau: float = 1.0,
        double_dqn: bool = False,
        max_grad_norm: float | None = 10.0,
        target_range: tuple[float, float] | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
    ) -> None:
        if target_update_interval < 1:
            raise ValueError(f"target_update_interval must be >= 1, got {target_update_interval}.")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}.")
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions}.")
        if target_range is not None and not target_range[0] <= target_range[1]:
            raise ValueError(
                f"target_range must be (low, high) with low <= high, got {target_range}."
            )
        self.obs_spec = InputSpec.of(obs_space)
        self.goal_spec = InputSpec.of(goal_space)
        self.n_actions = int(n_actions)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.learning_rate = float(learning_rate)
        self.gamma = float(gamma)
        self.target_update_interval = int(target_update_interval)
        self.tau = float(tau)
        self.double_dqn = bool(double_dqn)
        self.max_grad_norm = math.inf if max_grad_norm is None else float(max_grad_norm)
        self.target_range = (
            None if target_range is None else (float(target_range[0]), float(target_range[1]))
        )
        self.adam_betas = (float(adam_betas[0]), float(adam_betas[1]))
        self.adam_eps = float(adam_eps)
        self.device = _device(device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # see the module docstring: subnormal floats
        self.rng = np.random.default_rng(seed)
        self.n_updates = 0

        # Index mode: both inputs Discrete; the first layer is a row lookup with sparse updates.
        self.index_mode = self.obs_spec.kind == "discrete" and self.goal_spec.kind == "discrete"
        self.n_inputs = self.obs_spec.size + self.goal_spec.size
        sizes = (*self.hidden_sizes, self.n_actions)
        self.q_net = GoalQNetwork(
            self.n_inputs, sizes, index_mode=self.index_mode, device=self.device
        )
        self.target_net = GoalQNetwork(
            self.n_inputs, sizes, index_mode=self.index_mode, device=self.device
        )
        self._initialise(seed)
        self.target_net.copy_from(self.q_net)
        # Adam moments, one pair per storage tensor of q_net, and the step count t as a tensor.
        self._adam_m = [torch.zeros_like(p) for p in self.q_net.parameters()]
        self._adam_v = [torch.zeros_like(p) for p in self.q_net.parameters()]
        self._adam_t = torch.zeros((), device=self.device)
        self._grad_flat = torch.zeros_like(self.q_net.flat)
        self._grad_views = _split(self._grad_flat, self.q_net.flat_shapes())
        # Scratch for coalescing the batch's rows of w1 on the host (O(n_inputs) memory once,
        # O(batch) work per update).
        self._row_slot = np.zeros(self.n_inputs if self.index_mode else 0, dtype=np.int64)
        self._staging: _Staging | None = None
        self._numpy_net = _numpy_views(self.q_net) if self.device.type == "cpu" else None
        # On the CPU in index mode, w1's rows are summed and stepped by compiled kernels on
        # numpy views of w1 and its Adam moments (see _row_kernels); elsewhere by torch ops.
        self._row_kernels = _ROW_KERNELS and self.index_mode and self.device.type == "cpu"
        self._w1_tables = (
            tuple(t.numpy() for t in (self.q_net.w1, self._adam_m[0], self._adam_v[0]))
            if self._row_kernels
            else ()
        )

    # --- set-up --------------------------------------------------------------------------

    def _initialise(self, seed: int) -> None:
        """nn.Linear's init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases."""
        generator = torch.Generator().manual_seed(seed)
        net = self.q_net

        def uniform(tensor: torch.Tensor, fan_in: int) -> None:
            bound = 1.0 / math.sqrt(fan_in)
            values = torch.rand(tensor.shape, generator=generator) * (2 * bound) - bound
            tensor.copy_(values)

        uniform(net.w1, self.n_inputs)
        uniform(net.b1, self.n_inputs)
        for weight, bias in net.layers:
            uniform(weight, weight.shape[1])
            uniform(bias, weight.shape[1])

    # --- inputs --------------------------------------------------------------------------

    def encode(self, states: Any, goals: Any) -> torch.Tensor:
        """Network inputs for stacked states and goals (one goal is broadcast), on the device.

        Index mode: (n, 2) int64 rows of w1, (s, n_s + g); dense mode: (n, n_inputs) float32.
        """
        states = _stack(states, self.obs_spec)
        goals = np.broadcast_to(_stack(goals, self.goal_spec), (len(states), *self.goal_spec.shape))
        if self.index_mode:
            rows = np.empty((len(states), 2), dtype=np.int64)
            rows[:, 0] = states
            np.add(goals, self.obs_spec.size, out=rows[:, 1])
            return torch.from_numpy(rows).to(self.device)
        x = np.zeros((len(states), self.n_inputs), dtype=np.float32)
        _write_input(x, 0, self.obs_spec, states)
        _write_input(x, self.obs_spec.size, self.goal_spec, goals)
        return torch.from_numpy(x).to(self.device)

    # --- acting --------------------------------------------------------------------------

    def q_values(self, states: Any, goal: Any) -> np.ndarray:
        """Q(s, goal, a) for each stacked state, shape (n, n_actions), float32."""
        states = _stack(states, self.obs_spec)
        out = np.empty((len(states), self.n_actions), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(states), _CHUNK):
                inputs = self.encode(states[start : start + _CHUNK], goal)
                out[start : start + _CHUNK] = self.q_net.q(inputs).cpu().numpy()
        return out

    def max_q(self, states: Any, goal: Any) -> np.ndarray:
        """max_a Q(s, goal, a) for each stacked state, shape (n,) (Smart Start's Eq. 1)."""
        return self.q_values(states, goal).max(axis=1)

    def act(self, obs: Any, goal: Any, epsilon: float) -> int:
        """Epsilon-greedy action; the greedy choice breaks exact ties at random."""
        rng = self.rng
        if epsilon > 0.0 and rng.random() < epsilon:
            return int(rng.integers(self.n_actions))
        if self._numpy_net is not None and self.index_mode:
            q = self._q_one_numpy(obs, goal)  # (n_actions,)
        else:
            q = self.q_values(obs, goal)[0]  # (n_actions,)
        best = np.flatnonzero(q == q.max())
        return int(best[0]) if len(best) == 1 else int(rng.choice(best))

    def _q_one_numpy(self, obs: Any, goal: Any) -> np.ndarray:
        """Q(obs, goal, .) for one Discrete state and goal, in numpy on the CPU weights."""
        s, g = _as_index(obs, self.obs_spec.size), _as_index(goal, self.goal_spec.size)
        w1, b1, layers = self._numpy_net
        z = w1[s] + w1[self.obs_spec.size + g] + b1  # (hidden_1,)
        for weight, bias in layers:
            z = weight @ np.maximum(z, 0.0) + bias  # (out,)
        return z

    # --- learning ------------------------------------------------------------------------

    def td_target(
        self, reward: torch.Tensor, discount: torch.Tensor, next_inputs: torch.Tensor
    ) -> torch.Tensor:
        """y = r + discount * Q_target(s', g, a*), discount = gamma * (1 - terminal); (B,).

        a* = argmax_a Q_target(s', g, a), or argmax_a Q_online(s', g, a) with Double DQN.
        With ``target_range`` (low, high), y is clamped into it.
        """
        q_next = self.target_net.q(next_inputs)  # (B, n_actions)
        if self.double_dqn:
            best = self.q_net.q(next_inputs).argmax(dim=1, keepdim=True)  # (B, 1)
            value = q_next.gather(1, best).squeeze(1)  # (B,)
        else:
            value = q_next.amax(dim=1)  # (B,)
        target = torch.addcmul(reward, discount, value)  # (B,)
        if self.target_range is not None:
            target.clamp_(*self.target_range)
        return target

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on a batch: Huber loss on the TD error, clipping, Adam.

        Returns ``td_loss`` (the Huber loss before the step), ``q_mean`` (mean Q(s, g, a)
        before it) and ``grad_norm`` (before clipping). The target network is refreshed every
        ``target_update_interval`` updates.
        """
        stage = self._stage(batch)
        net = self.q_net
        target = self.td_target(stage.reward, stage.discount, stage.next_inputs)  # (B,)
        q, hidden = net.forward(stage.inputs)  # (B, n_actions), [(B, hidden), ...]
        q_taken = q.gather(1, stage.action).squeeze(1)  # (B,)
        # d loss / d q_taken for the mean Huber loss (beta 1): clamp(q - y, -1, 1) / B.
        grad_taken = torch.sub(q_taken, target).clamp_(-1.0, 1.0).mul_(1.0 / stage.n)  # (B,)
        grad_q = torch.zeros_like(q).scatter_(1, stage.action, grad_taken.unsqueeze(1))
        grad_z1 = self._backward(hidden, grad_q)  # (B, hidden_1)
        grad_rows = self._first_layer_grad(stage, grad_z1)  # (R, hidden_1) or None
        grad_norm = self._clip(grad_rows)
        self._adam_step(stage, grad_rows)
        self.n_updates += 1
        if self.n_updates % self.target_update_interval == 0:
            self.target_net.copy_from(net, self.tau)
        # Metrics on the host: a few numpy operations on B values are cheaper than torch ones.
        q_np = q_taken.cpu().numpy()
        size = np.abs(q_np - target.cpu().numpy())  # |q - y|
        clipped = np.minimum(size, 1.0)
        td_loss = float(np.dot(clipped, size - 0.5 * clipped)) / stage.n  # Huber (beta 1) mean
        return {"td_loss": td_loss, "q_mean": float(q_np.sum()) / stage.n, "grad_norm": grad_norm}

    def _backward(self, hidden: list[torch.Tensor], grad_z: torch.Tensor) -> torch.Tensor:
        """Backpropagate d loss / d q through the layers after the first.

        Writes their gradients (and b1's) into ``_grad_flat``; returns d loss / d z1. For a
        layer z = h W^T + c with h = relu(z_prev):
            dW = dz^T h,  dc = sum_batch dz,  dz_prev = (dz W) * [z_prev > 0].
        """
        views = self._grad_views
        first = 0 if self.index_mode else 1  # index of b1's gradient in views
        for index in range(len(hidden) - 1, -1, -1):
            weight, _ = self.q_net.layers[index]
            h = hidden[index]  # (B, in)
            torch.mm(grad_z.t(), h, out=views[first + 1 + 2 * index])  # (out, in)
            torch.sum(grad_z, 0, out=views[first + 2 + 2 * index])  # (out,)
            grad_h = torch.mm(grad_z, weight)  # (B, in)
            # (B, in): 0 where h = 0; written over grad_h (an allocation fewer)
            grad_z = torch.ops.aten.threshold_backward.grad_input(grad_h, h, 0.0, grad_input=grad_h)
        torch.sum(grad_z, 0, out=views[first])  # d loss / d b1, (hidden_1,)
        return grad_z

    def _first_layer_grad(self, stage: _Staging, grad_z1: torch.Tensor) -> torch.Tensor | None:
        """d loss / d w1: dense into ``_grad_flat``, or the summed gradient of each batch row.

        Index mode returns (R, hidden_1): row r of w1 gets the sum of grad_z1 over the batch
        entries that use it (its state rows and its goal rows).
        """
        if not self.index_mode:
            torch.mm(stage.inputs.t(), grad_z1, out=self._grad_views[0])  # (n_inputs, hidden_1)
            return None
        if self._row_kernels:
            grad_rows = stage.grad_rows[: stage.n_rows]  # (R, hidden_1)
            _row_kernels.sum_rows(grad_z1.numpy(), stage.ints[1], stage.ints[2], grad_rows.numpy())
            return grad_rows
        grad_rows = grad_z1.new_zeros((stage.n_rows, grad_z1.shape[1]))  # (R, hidden_1)
        grad_rows.index_add_(0, stage.row_of_state, grad_z1)  # state units
        grad_rows.index_add_(0, stage.row_of_goal, grad_z1)  # goal units
        return grad_rows

    def _clip(self, grad_rows: torch.Tensor | None) -> float:
        """Scale all gradients so that their global L2 norm is <= max_grad_norm; the norm."""
        norm = torch.linalg.vector_norm(self._grad_flat).item()
        if grad_rows is not None:
            norm = math.hypot(norm, torch.linalg.vector_norm(grad_rows).item())
        if norm > self.max_grad_norm:
            scale = self.max_grad_norm / (norm + 1e-6)
            self._grad_flat.mul_(scale)
            if grad_rows is not None:
                grad_rows.mul_(scale)
        return norm

    def _adam_step(self, stage: _Staging, grad_rows: torch.Tensor | None) -> None:
        """Adam on ``flat``, and lazy Adam on the batch's rows of w1 (index mode)."""
        params, grads = [self.q_net.flat], [self._grad_flat]
        moments_m, moments_v = [self._adam_m[-1]], [self._adam_v[-1]]
        tables = (self.q_net.w1, self._adam_m[0], self._adam_v[0])
        gather = grad_rows is not None and not self._row_kernels
        if gather:
            # Without the kernels (on a GPU): gather the batch's rows of w1 and their moments,
            # step them with the rest, write them back.
            gathered = [torch.index_select(table, 0, stage.rows) for table in tables]
            params.append(gathered[0])  # (R, hidden_1)
            grads.append(grad_rows)
            moments_m.append(gathered[1])
            moments_v.append(gathered[2])
        self._adam_t.add_(1.0)
        _adam(params, grads, moments_m, moments_v, self._adam_t, self)
        if gather:
            for table, new_rows in zip(tables, gathered, strict=True):
                table.index_copy_(0, stage.rows, new_rows)
        elif grad_rows is not None:
            # In place, one pass per row: about 20 us at 100 states where gathering, stepping
            # and writing back the three tables took about 150 us.
            _row_kernels.lazy_adam_rows(
                *self._w1_tables,
                stage.unique_rows[: stage.n_rows],
                grad_rows.numpy(),
                *self.adam_betas,
                *_bias_corrected(self),
            )

    def _stage(self, batch: Batch) -> _Staging:
        """Copy a batch into the reusable buffers (one host-to-device copy per buffer)."""
        n = len(batch.action)
        stage = self._staging
        if stage is None or stage.n != n:
            stage = self._staging = _Staging(self, n)
        stage.fill(self, batch)
        return stage

    # --- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Weights, target weights, Adam moments, counters, settings and generator state.

        Tensors (CPU copies), python scalars and plain containers only, so a checkpoint loads
        with ``torch.load(weights_only=True)``.
        """

        def cpu(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.detach().cpu().clone() for t in tensors]

        return {
            "q_net": cpu(self.q_net.parameters()),
            "target_net": cpu(self.target_net.parameters()),
            "adam_m": cpu(self._adam_m),
            "adam_v": cpu(self._adam_v),
            "n_updates": self.n_updates,
            "settings": self.settings(),
            "rng_state": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict()`` (tensors on any device); the network must match."""
        saved, mine = state["settings"], self.settings()
        structural = ("obs_spec", "goal_spec", "n_actions", "hidden_sizes")
        if any(saved[key] != mine[key] for key in structural):
            describe = lambda d: ", ".join(f"{key}={d[key]}" for key in structural)  # noqa: E731
            raise ValueError(
                f"the checkpoint's network ({describe(saved)}) does not match this agent's "
                f"({describe(mine)})."
            )
        groups = (
            (self.q_net.parameters(), state["q_net"]),
            (self.target_net.parameters(), state["target_net"]),
            (self._adam_m, state["adam_m"]),
            (self._adam_v, state["adam_v"]),
        )
        for tensors, values in groups:
            for tensor, value in zip(tensors, values, strict=True):
                tensor.copy_(torch.as_tensor(value))
        self.n_updates = int(state["n_updates"])
        self._adam_t.fill_(float(self.n_updates))
        self.rng.bit_generator.state = state["rng_state"]

    def settings(self) -> dict[str, Any]:
        """The agent's settings as plain python values."""
        return {
            "obs_spec": [self.obs_spec.kind, self.obs_spec.size],
            "goal_spec": [self.goal_spec.kind, self.goal_spec.size],
            "n_actions": self.n_actions,
            "hidden_sizes": list(self.hidden_sizes),
            "learning_rate": self.learning_rate,
            "gamma": self.gamma,
            "target_update_interval": self.target_update_interval,
            "tau": self.tau,
            "double_dqn": self.double_dqn,
            "max_grad_norm": self.max_grad_norm,
        }


class _Staging:
    """Reusable host buffers (and device tensors) for batches of one size.

    ``ints`` (5, B) int64: row 0 the actions; index mode also rows 1-2, for each entry the
    position of its state row and of its goal row among the batch's unique rows of w1, and rows
    3-4 those unique rows (the first n_rows entries). ``floats`` (2, B): rewards and
    gamma * (1 - terminal). ``x`` (2, ...): the network's inputs and next inputs, index mode
    (2, B, 2) int64 rows of w1, (s, n_s + g) and (s', n_s + g); dense mode (2, B, n_inputs)
    float32.
    """

    def __init__(self, agent: DQNAgent, n: int) -> None:
        self.n = n
        self.n_rows = 0
        self.index_mode = agent.index_mode
        on_cpu = agent.device.type == "cpu"
        pin = not on_cpu and torch.cuda.is_available()
        shapes = [
            ((5 if self.index_mode else 1, n), torch.int64),
            ((2, n), torch.float32),
            ((2, n, 2), torch.int64)
            if self.index_mode
            else ((2, n, agent.n_inputs), torch.float32),
        ]
        # Host tensors (pinned for a GPU) with numpy views on them: filling the numpy arrays
        # fills the tensors. On the CPU they are the tensors the update reads.
        self.host = [torch.zeros(shape, dtype=dtype, pin_memory=pin) for shape, dtype in shapes]
        self.ints, self.floats, self.x = (t.numpy() for t in self.host)
        # A non-blocking copy may still be running when fill() returns; the update's .item()
        # waits for the device, so the next fill never overwrites a buffer still being read.
        self.device = self.host if on_cpu else [t.to(agent.device) for t in self.host]
        self.copy_needed = not on_cpu
        ints, floats, x = self.device
        self.action = ints[0].view(n, 1)  # (B, 1)
        self.reward, self.discount = floats[0], floats[1]  # (B,), (B,)
        self.inputs, self.next_inputs = x[0], x[1]  # (B, 2) or (B, n_inputs)
        if self.index_mode:
            self.row_of_state, self.row_of_goal = ints[1], ints[2]  # (B,), (B,)
            self._rows = ints[3:5].view(-1)  # (2B,), the first n_rows used
            self.unique_rows = self.ints[3:5].reshape(-1)  # numpy view of the same
        # Summed gradients of the batch's rows of w1 (the first n_rows used), for the kernels.
        self.grad_rows = torch.empty(2 * n, agent.q_net.sizes[0]) if agent._row_kernels else None

    @property
    def rows(self) -> torch.Tensor:
        """The unique rows of w1 in the batch, shape (n_rows,)."""
        return self._rows[: self.n_rows]

    def fill(self, agent: DQNAgent, batch: Batch) -> None:
        """Write ``batch`` into the buffers (then copy them to the device if not the CPU)."""
        ints, floats, x = self.ints, self.floats, self.x
        n_s = agent.obs_spec.size
        ints[0] = batch.action
        if self.index_mode:
            self.n_rows = _row_kernels.stage_rows(
                *(np.asarray(v, dtype=np.int64) for v in (batch.obs, batch.goal, batch.next_obs)),
                n_s,
                agent.goal_spec.size,
                x,
                agent._row_slot,
                ints[1:3],
                self.unique_rows,
            )
            if self.n_rows < 0:
                raise ValueError(
                    f"a batch holds a state outside Discrete({n_s}) or a goal outside "
                    f"Discrete({agent.goal_spec.size})."
                )
        else:
            x.fill(0.0)
            _write_input(x[0], 0, agent.obs_spec, batch.obs)
            _write_input(x[1], 0, agent.obs_spec, batch.next_obs)
            _write_input(x[0], n_s, agent.goal_spec, batch.goal)
            x[1, :, n_s:] = x[0, :, n_s:]
        floats[0] = batch.reward
        if batch.discount is not None:  # per-row bootstrap factor (n-step: gamma^m (1 - d))
            floats[1] = batch.discount
        else:
            np.subtract(1.0, batch.terminal, out=floats[1])
            floats[1] *= agent.gamma
        if self.copy_needed:
            for device_tensor, host_tensor in zip(self.device, self.host, strict=True):
                device_tensor.copy_(host_tensor, non_blocking=True)


# --- helpers ---------------------------------------------------------------------------------


def _adam(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    moments_m: list[torch.Tensor],
    moments_v: list[torch.Tensor],
    step: torch.Tensor,
    agent: DQNAgent,
) -> None:
    """Adam, in place, with ``step`` = t (already incremented):

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    Groups whose four tensors are contiguous go to torch's fused kernel when there is one (it
    reads strided tensors as if contiguous, so the others are stepped by the written-out form).
    """
    global _FUSED_ADAM
    beta1, beta2 = agent.adam_betas
    groups = list(zip(params, grads, moments_m, moments_v, strict=True))
    if _FUSED_ADAM:
        fused = [group for group in groups if all(t.is_contiguous() for t in group)]
        if fused:
            try:
                torch._fused_adam_(
                    *(list(tensors) for tensors in zip(*fused, strict=True)),
                    [],
                    [step] * len(fused),
                    lr=agent.learning_rate,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=0.0,
                    eps=agent.adam_eps,
                    amsgrad=False,
                    maximize=False,
                )
                groups = [group for group in groups if not all(t.is_contiguous() for t in group)]
            except (RuntimeError, NotImplementedError):  # no fused kernel for this torch/device
                _FUSED_ADAM = False
    step_size, eps = _bias_corrected(agent)
    for p, g, m, v in groups:
        m.lerp_(g, 1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        # torch's sqrt of exact zeros is slow on some CPUs; where v = 0, m = 0 too, so the
        # floor changes nothing.
        p.addcdiv_(m, v.clamp_min(1e-30).sqrt_().add_(eps), value=-step_size)


def _bias_corrected(agent: DQNAgent) -> tuple[float, float]:
    """(step size, eps) of the Adam step about to be taken, bias corrections folded in.

    With t = n_updates + 1, the update p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) +
    eps) is p <- p - step_size * m / (sqrt(v) + eps') with sqrt(1 - b2^t) moved to the
    numerator: step_size = lr sqrt(1 - b2^t) / (1 - b1^t), eps' = eps sqrt(1 - b2^t).
    """
    beta1, beta2 = agent.adam_betas
    t = agent.n_updates + 1
    root_c2 = math.sqrt(1.0 - beta2**t)
    return agent.learning_rate * root_c2 / (1.0 - beta1**t), agent.adam_eps * root_c2


_FUSED_ADAM = hasattr(
    torch, "_fused_adam_"
)  # torch's fused Adam kernel (what Adam(fused=True) runs)
_ROW_KERNELS = True  # step w1's rows by numba's kernels on the CPU (tests also run the torch ops)


def _device(device: str | torch.device) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _split(flat: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Consecutive views of ``flat`` with the given shapes."""
    views, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[offset : offset + size].view(*shape))
        offset += size
    return views


def _numpy_views(net: GoalQNetwork) -> tuple[np.ndarray, np.ndarray, list]:
    """numpy arrays sharing memory with a CPU network's tensors (updated in place, so live)."""
    layers = [(weight.numpy(), bias.numpy()) for weight, bias in net.layers]
    return net.w1.numpy(), net.b1.numpy(), layers


def _as_index(value: Any, size: int) -> int:
    """A Discrete value as an int in [0, size); a clear error otherwise."""
    try:
        index = operator.index(value)
    except TypeError:
        index = int(np.asarray(value).reshape(-1)[0]) if np.size(value) == 1 else -1
    if not 0 <= index < size:
        raise ValueError(f"{value!r} is not a value of Discrete({size}).")
    return index


def _stack(values: Any, spec: InputSpec) -> np.ndarray:
    """One observation or a stack of them as an array (n, *spec.shape)."""
    array = np.asarray(values)
    if spec.kind == "discrete":
        array = array.reshape(-1).astype(np.int64, copy=False)
        if len(array) and (array.min() < 0 or array.max() >= spec.size):
            raise ValueError(f"a value is outside Discrete({spec.size}).")
        return array
    return array.reshape(-1, spec.size)


def _write_input(x: np.ndarray, offset: int, spec: InputSpec, values: Any) -> None:
    """Write one input's encoding into columns [offset, offset + size) of zeroed ``x``."""
    if spec.kind == "discrete":
        values = _stack(values, spec)
        x[np.arange(len(x)), offset + values] = 1.0
    else:
        x[:, offset : offset + spec.size] = np.asarray(values).reshape(len(x), spec.size)
