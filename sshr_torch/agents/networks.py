"""Goal-conditioned Q-networks: ``nn.Module``s mapping (state, goal) to Q(s, g, .).

Any ``torch.nn.Module`` whose ``forward(state, goal)`` returns Q-values of shape
(B, n_actions) can be handed to ``DQNAgent``. Inputs arrive as the env gives them, batched and
on the agent's device:

    Discrete(n)      int64 (B,)       the value, in [0, n)
    MultiBinary(n)   float32 (B, n)   the bits

``one_hot_inputs`` turns them into the float vector one-hot(s) || one-hot(g) (bits as they
are) that a plain ``nn.Linear`` stack reads; ``InputSpec`` describes one input.

The default network, ``OneHotMLP``, is that MLP with its first Linear layer computed as an
embedding lookup: a Linear layer on a one-hot vector is a sum of rows of its weight,

    z1 = W1[s] + W1[n_s + g] + b1                       (Discrete state and goal)

with ``W1`` of shape (n_inputs, hidden_1) equal to ``nn.Linear(n_inputs, hidden_1).weight.T``,
held by an ``nn.EmbeddingBag`` (mode 'sum', sparse gradients). Only the batch's rows are read
and get a gradient, so the cost of an update hardly grows with the maze. A MultiBinary input
uses the same lookup over all of its units, weighted by its bits (per-sample weights).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.nn.utils import skip_init

__all__ = [
    "DistanceQNetwork",
    "InputSpec",
    "OneHotMLP",
    "QNetworkFactory",
    "discrete_index",
    "one_hot_inputs",
    "quasimetric",
]


@dataclass(frozen=True)
class InputSpec:
    """One input of a Q-network: a Discrete space of ``size`` values, or ``size`` binary bits."""

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


# (obs_spec, goal_spec, n_actions) -> a Q-network module; DQNAgent builds it on its device.
QNetworkFactory = Callable[[InputSpec, InputSpec, int], nn.Module]


def discrete_index(value: Any, size: int) -> int:
    """One Discrete value (an int, or an array holding one) as an int in [0, size); a
    ValueError naming the space otherwise."""
    try:
        index = operator.index(value)
    except TypeError:
        index = int(np.asarray(value).reshape(-1)[0]) if np.size(value) == 1 else -1
    if not 0 <= index < size:
        raise ValueError(f"{value!r} is not a value of Discrete({size}).")
    return index


def one_hot_inputs(
    state: torch.Tensor, goal: torch.Tensor, obs_spec: InputSpec, goal_spec: InputSpec
) -> torch.Tensor:
    """one-hot(state) || one-hot(goal), float32 (B, obs_spec.size + goal_spec.size).

    A Discrete input becomes its one-hot vector, a MultiBinary one is taken as it is.
    """

    def encode(values: torch.Tensor, spec: InputSpec) -> torch.Tensor:
        if spec.kind == "discrete":
            return nn.functional.one_hot(values.long(), spec.size).float()  # (B, size)
        return values.float()  # (B, size)

    return torch.cat([encode(state, obs_spec), encode(goal, goal_spec)], dim=1)


class OneHotMLP(nn.Module):
    """Q(s, g, .) = MLP(one-hot(s) || one-hot(g)), the first layer as an embedding lookup.

    Args:
        obs_spec, goal_spec: the two inputs (``InputSpec.of(space)``).
        n_actions: outputs.
        hidden_sizes: widths of the hidden layers (ReLU after each); () makes Q linear in the
            one-hot inputs.
        generator: draws the initial weights (a seeded one makes them reproducible without
            touching torch's global random state).

    Attributes:
        first: ``nn.EmbeddingBag(n_inputs, sizes[0], mode='sum', sparse=True)``; its weight's
            row r is the first layer's weight of input unit r (``nn.Linear.weight.T``), the
            state's units first, then the goal's.
        bias: (sizes[0],) the first layer's bias.
        rest: ``nn.Sequential`` of (ReLU, Linear) pairs after the first layer (empty when
            ``hidden_sizes`` is ()).

    Initial weights are ``nn.Linear``'s, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases, the first layer's fan_in being the width of the one-hot input, exactly as a Linear
    layer on one-hot(s) || one-hot(g) would start.
    """

    def __init__(
        self,
        obs_spec: InputSpec,
        goal_spec: InputSpec,
        n_actions: int,
        hidden_sizes: Sequence[int] = (256,),
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.obs_spec, self.goal_spec = obs_spec, goal_spec
        self.n_inputs = obs_spec.size + goal_spec.size
        self.sizes = (*(int(h) for h in hidden_sizes), int(n_actions))
        self.index_mode = obs_spec.kind == "discrete" and goal_spec.kind == "discrete"
        # skip_init: built without drawing from torch's global generator; reset_parameters
        # draws the initial weights from ``generator``.
        self.first = skip_init(
            nn.EmbeddingBag, self.n_inputs, self.sizes[0], mode="sum", sparse=True
        )
        self.bias = nn.Parameter(torch.empty(self.sizes[0]))
        layers: list[nn.Module] = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            layers += [nn.ReLU(), skip_init(nn.Linear, n_in, n_out)]
        self.rest = nn.Sequential(*layers)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from ``generator``."""
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.n_inputs)
            for tensor in (self.first.weight, self.bias):
                nn.init.uniform_(tensor, -bound, bound, generator=generator)
            for layer in self.linear_layers():
                bound = 1.0 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)

    def linear_layers(self) -> list[nn.Linear]:
        """The Linear layers after the first, in order."""
        return [module for module in self.rest if isinstance(module, nn.Linear)]

    def rows(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The first layer's rows (s, n_s + g) of each entry, int64 (B, 2) (Discrete inputs)."""
        return torch.stack([state.long(), goal.long() + self.obs_spec.size], dim=1)

    def first_layer(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """z1 = (one-hot(s) || one-hot(g)) @ W1 + b1, shape (B, sizes[0])."""
        if self.index_mode:
            return self.first(self.rows(state, goal)) + self.bias  # (B, sizes[0])
        # Every unit of the input, weighted by its value: one index with weight 1 for a
        # Discrete input, every bit with its value for a MultiBinary one.
        x = one_hot_inputs(state, goal, self.obs_spec, self.goal_spec)  # (B, n_inputs)
        units = torch.arange(self.n_inputs, device=x.device).expand_as(x)  # (B, n_inputs)
        return self.first(units, per_sample_weights=x) + self.bias

    def forward(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Q-values, shape (B, n_actions)."""
        return self.rest(self.first_layer(state, goal))

    def extra_repr(self) -> str:
        return f"obs={self.obs_spec}, goal={self.goal_spec}, sizes={self.sizes}"


def quasimetric(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d(x, y) = ||u_x - u_y||_2 + max_i relu(w_x,i - w_y,i) over the last axis (broadcast),
    u the first half of a point's coordinates, w the second: >= 0, 0 at x = y, and
    d(x, z) <= d(x, y) + d(y, z) (a Euclidean metric plus a max of one-sided gaps)."""
    dim = x.shape[-1] // 2
    diff = x - y
    sym, asym = diff[..., :dim], diff[..., dim:]
    # sqrt with a floor: its gradient at 0 (d(x, x)) would be inf
    return (sym.square().sum(-1) + 1e-12).sqrt() + asym.relu().amax(-1)


class DistanceQNetwork(nn.Module):
    """Q(s, g, a) = -d(x_a(s), y(g)): a head that represents the distance to the goal
    directly, as a quasimetric (the metric residual network of Liu et al. 2022, "Metric
    Residual Networks for Sample Efficient Goal-Conditioned Reinforcement Learning").

    Each input goes through its own one-hidden-layer encoder (an embedding row per Discrete
    value, a Linear layer over MultiBinary bits; ReLU; Linear): the state to one point
    x_a(s) per action, the goal to one point y(g), each of 2 * ``dim`` coordinates, split
    into halves u (symmetric) and w (asymmetric):

        d(x, y) = ||u_x - u_y||_2 + max_i relu(w_x,i - w_y,i)

    d >= 0, d(x, x) = 0 and d obeys the triangle inequality, so a learnt short way from s to
    m and from m to g bounds the way from s to g: with rewards -1 per move and 0 on arrival,
    -Q is the number of moves left (for gamma near 1). Trained by the DQN's TD loss like any
    network (the autograd update; the fast path takes only ``OneHotMLP``).

    Args:
        obs_spec, goal_spec: the two inputs (``InputSpec.of(space)``).
        n_actions: outputs.
        hidden: the encoders' hidden width.
        dim: coordinates of each half (u, w) of a point.
        generator: draws the initial weights.
    """

    def __init__(
        self,
        obs_spec: InputSpec,
        goal_spec: InputSpec,
        n_actions: int,
        hidden: int = 256,
        dim: int = 32,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.obs_spec, self.goal_spec = obs_spec, goal_spec
        self.n_actions, self.hidden, self.dim = int(n_actions), int(hidden), int(dim)
        self.state_in = self._encoder_input(obs_spec)
        self.goal_in = self._encoder_input(goal_spec)
        self.state_out = skip_init(nn.Linear, self.hidden, self.n_actions * 2 * self.dim)
        self.goal_out = skip_init(nn.Linear, self.hidden, 2 * self.dim)
        self.reset_parameters(generator)

    def _encoder_input(self, spec: InputSpec) -> nn.Module:
        if spec.kind == "discrete":
            return skip_init(nn.Embedding, spec.size, self.hidden)
        return skip_init(nn.Linear, spec.size, self.hidden)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every weight and bias (an embedding row's
        fan_in taken as its input's size, as a Linear layer on its one-hot vector)."""
        with torch.no_grad():
            for module, fan_in in (
                (self.state_in, self.obs_spec.size),
                (self.goal_in, self.goal_spec.size),
                (self.state_out, self.hidden),
                (self.goal_out, self.hidden),
            ):
                bound = 1.0 / math.sqrt(fan_in)
                for tensor in module.parameters():
                    nn.init.uniform_(tensor, -bound, bound, generator=generator)

    def _encode(self, values: torch.Tensor, spec: InputSpec, first: nn.Module) -> torch.Tensor:
        x = first(values.long()) if spec.kind == "discrete" else first(values.float())
        return torch.relu(x)  # (B, hidden)

    def forward(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Q-values -d(x_a(s), y(g)), shape (B, n_actions)."""
        x = self.state_out(self._encode(state, self.obs_spec, self.state_in))
        x = x.view(-1, self.n_actions, 2 * self.dim)  # (B, A, 2 dim)
        y = self.goal_out(self._encode(goal, self.goal_spec, self.goal_in)).unsqueeze(1)
        return -quasimetric(x, y)

    def extra_repr(self) -> str:
        return (
            f"obs={self.obs_spec}, goal={self.goal_spec}, n_actions={self.n_actions}, "
            f"hidden={self.hidden}, dim={self.dim}"
        )
