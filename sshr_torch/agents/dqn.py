"""Goal-conditioned DQN: any Q-network module, autograd, torch.optim; a verified fast path.

The Q-network is any ``torch.nn.Module`` whose ``forward(state, goal)`` returns Q(s, g, .) of
shape (B, n_actions) (see ``networks``); the default is ``OneHotMLP``, one hidden layer of 256
on one-hot(s) || one-hot(g) as in the HER paper. An update is the textbook one:

    y = r + discount * Q_target(s', g, a*),  a* = argmax_a Q_target(s', g, a)
        (Double DQN: argmax_a Q_online(s', g, a)); discount = gamma (1 - terminal)
    loss = loss_fn(Q(s, g, a), y)                       (default: Huber, smooth_l1_loss)
    loss.backward(); clip the global gradient norm; optimizer.step() for each optimizer

with ``y`` clamped into ``target_range`` when set (the HER paper clips targets to the range of
returns). With ``model_values`` (values known from elsewhere, e.g. Smart Start's count model:
``smart_start.ModelGoalValues``; -inf where none is known), by ``model_mode``:

- 'floor': a row's bootstrapped value is max(Q_target(s', g, a*), V_model(s', g)) (a lower bound
  on a deterministic env);
- 'target': it is V_model(s', g) where the model has one;
- 'q': the model's Q_model(s, g, a) is the target of every action a of the row's state that the
  model knows (the taken one's TD target where it does not): the network is regressed onto
  the model's values for its goal. ``model_loss`` 'entries' takes the loss over those
  entries; 'split' over each row's mean error and the errors about it, so that the
  differences between a state's actions are fitted however large its values
  (``targets.model_q_loss``).

Parameters with sparse gradients (an ``nn.Embedding`` / ``nn.EmbeddingBag`` with
``sparse=True``, as the default module's first layer) are stepped by ``RowAdam`` (lazy Adam,
``torch.optim.SparseAdam``'s semantics); all others by ``torch.optim.Adam`` (fused where torch
has a fused kernel for the device), or by any optimizer a factory builds. A learning-rate
scheduler factory is applied to each optimizer and stepped after each update.

Target network: a deep copy refreshed every ``target_update_interval`` updates, by a hard copy
(tau = 1) or Polyak averaging, target <- tau * online + (1 - tau) * target (tau < 1).

The target maths (bootstrap values, TD targets, model targets) are the pure functions of
``targets``. For the default module on the CPU the same update runs through
``fast_path.FastUpdate``, a specialisation with the backward pass written out and Adam steps
taken by compiled kernels (several times faster at batch 128, where the framework's per-call
overhead dominates). It is built from a ``fast_path.FastSpec`` (the module, its target copy and
the optimizers: it reads and writes their parameters and state), calls the same target
functions, is selected automatically when it applies (``fast_path.why_not_fast``), and
``fast_path=False`` turns it off; tests train the same module both ways and find the same
weights, moments and losses.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, get_args

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from sshr_torch.agents import targets
from sshr_torch.agents.base import LinearSchedule, Transition
from sshr_torch.agents.fast_path import FastSpec, FastUpdate, why_not_fast
from sshr_torch.agents.networks import InputSpec, OneHotMLP, QNetworkFactory, discrete_index
from sshr_torch.agents.optim import RowAdam
from sshr_torch.her import Batch, HerReplayBuffer
from sshr_torch.smart_start import ModelMode

__all__ = ["DQNAgent", "InputSpec", "LinearSchedule", "clip_grad_norm"]

CHECKPOINT_FORMAT = 2  # 1: the flat-tensor network of sshr_torch before the nn.Module API
_CHUNK = 8192  # states per forward pass in q_values / max_q (bounds the memory for big mazes)

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (states (B,), goals (B,)) -> (next states (B, A), -1 unknown; rewards (B, A); terminal (B, A))
ActionTargets = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class ModelValues(Protocol):
    """Values from a model of the env for (state, goal) rows, -inf where it knows none."""

    def __call__(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """(B,) V_model(s, g)."""
        ...

    def q_values(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """(B, n_actions) Q_model(s, g, a)."""
        ...


class DQNAgent:
    """Goal-conditioned DQN with a target network, optional Double DQN, clipping and replay.

    Args:
        obs_space: the observation space: Discrete(n), MultiBinary(n), or an int n.
        goal_space: the goal space, same kinds.
        n_actions: number of discrete actions.
        q_network: the Q-network: an ``nn.Module`` (moved to ``device``), or a factory
            ``(obs_spec, goal_spec, n_actions) -> nn.Module``; None builds ``OneHotMLP`` with
            ``hidden_sizes``, its weights drawn from ``seed``.
        hidden_sizes: the default network's hidden layer widths; () makes Q linear.
        learning_rate: the optimizers' step size.
        gamma: discount.
        loss: loss(q_taken, target) -> scalar; default ``nn.functional.smooth_l1_loss``.
        optimizer: factory for the optimizer of the dense parameters; default
            ``torch.optim.Adam`` (fused where available).
        sparse_optimizer: factory for the parameters with sparse gradients; default ``RowAdam``.
        lr_scheduler: factory of a scheduler for each optimizer, stepped after every update.
        batch_size, learning_starts, train_freq: ``learn`` samples a batch of ``batch_size``
            every ``train_freq`` env steps once ``learning_starts`` steps are done.
        target_update_interval: updates between target-network refreshes.
        tau: 1.0 for a hard copy at each refresh, < 1 for Polyak averaging.
        double_dqn: choose the next action with the online network, value it with the target.
        advantage_alpha: advantage learning's alpha in [0, 1) (``targets.advantage_target``);
            0: the plain TD target.
        max_grad_norm: clip the global gradient norm to this (None: no clipping).
        target_range: (low, high) to clamp TD targets into (the range of returns); None: none.
        device: "cpu" (default), "cuda", "auto" (CUDA when available) or a torch.device.
        seed: seeds the default network's weights and the generator for exploration and
            tie-breaks (torch's global random state is not touched).
        adam_betas, adam_eps: the default optimizers' other settings (torch's defaults).
        fast_path: use the fast path where it applies (see the module docstring).
        model_values: values of states for goals from elsewhere (see the module docstring);
            the trainer sets Smart Start's count-model values here (``TrainConfig.model_values``).
        model_mode: 'floor', 'target' or 'q': how ``model_values`` enter the targets.
        model_loss: 'q' mode's loss, 'split' or 'entries' (``targets.model_q_loss``).
        action_targets: without ``model_values``, ``action_targets(states, goals)`` -> (next
            states (B, A), -1 where unknown; rewards (B, A); terminal flags (B, A)) of every
            action of each row's state, e.g. from a count model of the env: each known action
            other than the taken one is regressed onto its one-step target r + gamma (1 -
            terminal) max_b Q_target(s'_a, g, b), in 'q' mode's loss (the taken one keeps its
            n-step target); None: the taken action only.
    """

    def __init__(
        self,
        obs_space: spaces.Space | int,
        goal_space: spaces.Space | int,
        n_actions: int,
        *,
        q_network: nn.Module | QNetworkFactory | None = None,
        hidden_sizes: Sequence[int] = (256,),
        learning_rate: float = 1e-3,
        gamma: float = 0.98,
        loss: LossFunction = nn.functional.smooth_l1_loss,
        optimizer: OptimizerFactory | None = None,
        sparse_optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        batch_size: int = 128,
        learning_starts: int = 1000,
        train_freq: int = 1,
        target_update_interval: int = 500,
        tau: float = 1.0,
        double_dqn: bool = False,
        advantage_alpha: float = 0.0,
        max_grad_norm: float | None = 10.0,
        target_range: tuple[float, float] | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        fast_path: bool = True,
        model_values: ModelValues | None = None,
        model_mode: ModelMode = "q",
        model_loss: targets.ModelLoss = "entries",
        action_targets: ActionTargets | None = None,
    ) -> None:
        for name, value in (
            ("target_update_interval", target_update_interval),
            ("n_actions", n_actions),
            ("batch_size", batch_size),
            ("train_freq", train_freq),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if model_mode not in get_args(ModelMode):
            modes = get_args(ModelMode)
            raise ValueError(f"model_mode must be one of {modes}, got {model_mode!r}.")
        if model_loss not in get_args(targets.ModelLoss):
            losses = get_args(targets.ModelLoss)
            raise ValueError(f"model_loss must be one of {losses}, got {model_loss!r}.")
        if not 0.0 <= advantage_alpha < 1.0:
            raise ValueError(f"advantage_alpha must be in [0, 1), got {advantage_alpha}.")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}.")
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
        self.loss_fn = loss
        self.batch_size = int(batch_size)
        self.learning_starts = int(learning_starts)
        self.train_freq = int(train_freq)
        self.target_update_interval = int(target_update_interval)
        self.tau = float(tau)
        self.double_dqn = bool(double_dqn)
        self.advantage_alpha = float(advantage_alpha)
        self.max_grad_norm = float("inf") if max_grad_norm is None else float(max_grad_norm)
        self.target_range = (
            None if target_range is None else (float(target_range[0]), float(target_range[1]))
        )
        self.adam_betas = (float(adam_betas[0]), float(adam_betas[1]))
        self.adam_eps = float(adam_eps)
        self.device = _device(device)
        self.rng = np.random.default_rng(seed)
        self.n_updates = 0
        self.last_td_errors = np.zeros(0, dtype=np.float32)
        """Q(s, g, a) - y of each row of the last autograd update (prioritised replay)."""
        self.model_values = model_values
        self.model_mode = model_mode
        self.model_loss = model_loss
        self.action_targets = action_targets

        if q_network is None:
            generator = torch.Generator().manual_seed(seed)
            q_network = OneHotMLP(
                self.obs_spec,
                self.goal_spec,
                self.n_actions,
                self.hidden_sizes,
                generator=generator,
            )
        elif not isinstance(q_network, nn.Module):
            q_network = q_network(self.obs_spec, self.goal_spec, self.n_actions)
        self.q_network = q_network.to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self._parameters = list(self.q_network.parameters())

        sparse_params, dense_params = _split_by_gradient_kind(self.q_network)
        lr, betas, eps = self.learning_rate, self.adam_betas, self.adam_eps
        if optimizer is None:
            optimizer = lambda params: _adam(params, lr, betas, eps, self.device)  # noqa: E731
        if sparse_optimizer is None:
            sparse_optimizer = lambda params: RowAdam(params, lr, betas, eps)  # noqa: E731
        self.optimizers = [optimizer(dense_params)] if dense_params else []
        if sparse_params:
            self.optimizers.append(sparse_optimizer(sparse_params))
        self.schedulers = [lr_scheduler(opt) for opt in self.optimizers] if lr_scheduler else []
        self.use_fast_path = bool(fast_path)
        self.fast: FastUpdate | None = None
        self._build_fast_path()

    def _build_fast_path(self) -> None:
        """(Re)build the fast path on the current parameters and optimizer state, if it applies."""
        self.fast = None
        if not self.use_fast_path:
            return
        if why_not_fast(self.q_network, self.device, self.loss_fn, self.optimizers) is None:
            # why_not_fast checked the types: an OneHotMLP, then Adam and RowAdam.
            adam, row_adam = self.optimizers
            net, target = self.q_network, self.target_network
            self.fast = FastUpdate(FastSpec(net, target, adam, row_adam))  # type: ignore[arg-type]

    # --- inputs ---------------------------------------------------------------------------

    def tensors(self, values: Any, spec: InputSpec) -> torch.Tensor:
        """Stacked observations as the network reads them, on the device.

        Discrete: int64 (n,); MultiBinary: float32 (n, bits).
        """
        array = _stack(values, spec)
        dtype = torch.int64 if spec.kind == "discrete" else torch.float32
        return torch.as_tensor(array, dtype=dtype, device=self.device)

    # --- acting ---------------------------------------------------------------------------

    def q_values(self, states: Any, goal: Any) -> np.ndarray:
        """Q(s, goal, a) for each stacked state (one goal for all), (n, n_actions) float32."""
        states = _stack(states, self.obs_spec)
        goal = _stack(goal, self.goal_spec)[:1]
        if len(goal) == 0:
            raise ValueError("q_values needs one goal.")
        return self.pair_q_values(states, np.repeat(goal, len(states), axis=0))

    def pair_q_values(self, states: Any, goals: Any) -> np.ndarray:
        """Q(s_i, g_i, a) for each stacked (state, goal) row, (n, n_actions) float32: one forward
        pass for all rows (in chunks of ``_CHUNK``), as goal reach walks many goals at once."""
        states = _stack(states, self.obs_spec)
        goals = _stack(goals, self.goal_spec)
        if len(states) != len(goals):
            raise ValueError(f"{len(states)} states but {len(goals)} goals.")
        out = np.empty((len(states), self.n_actions), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(states), _CHUNK):
                chunk = slice(start, start + _CHUNK)
                state = self.tensors(states[chunk], self.obs_spec)
                goal = self.tensors(goals[chunk], self.goal_spec)
                out[chunk] = self.q_network(state, goal).float().cpu().numpy()
        return out

    def max_q(self, states: Any, goal: Any) -> np.ndarray:
        """max_a Q(s, goal, a) for each stacked state, shape (n,) (Smart Start's Eq. 1)."""
        return self.q_values(states, goal).max(axis=1)

    def act(self, obs: Any, goal: Any, epsilon: float) -> int:
        """Epsilon-greedy action; the greedy choice breaks exact ties at random."""
        rng = self.rng
        if epsilon > 0.0 and rng.random() < epsilon:
            return int(rng.integers(self.n_actions))
        if self.fast is None:
            q = self.q_values(obs, goal)[0]  # (n_actions,)
        elif self.fast.index_mode:
            s = discrete_index(obs, self.obs_spec.size)
            q = self.fast.q_one(s, discrete_index(goal, self.goal_spec.size))  # (n_actions,)
        else:
            q = self.fast.q_obs(obs, goal)  # (n_actions,)
        best = np.flatnonzero(q == q.max())
        return int(best[0]) if len(best) == 1 else int(rng.choice(best))

    # --- learning -------------------------------------------------------------------------

    def learn(
        self, buffer: HerReplayBuffer, env_steps: int, transition: Transition | None
    ) -> dict[str, float]:
        """After a step: an update on a replay batch every ``train_freq`` steps once
        ``learning_starts`` steps are done (and the buffer holds a finished episode); nothing
        at the end of an episode. Returns the update's metrics and ``relabelled_fraction``."""
        if (
            transition is None
            or env_steps < self.learning_starts
            or env_steps % self.train_freq
            or len(buffer) == 0
        ):
            return {}
        batch = buffer.sample(self.batch_size)
        metrics = self.update(batch)
        if batch.weight is not None:  # prioritised replay: the rows' new priorities
            buffer.update_priorities(self.last_td_errors)
        metrics["relabelled_fraction"] = np.count_nonzero(batch.relabelled) / len(batch.action)
        return metrics

    def discounts(self, batch: Batch) -> np.ndarray:
        """The factor of each row's bootstrapped value, float32 (B,): the batch's own (n-step
        returns: gamma^m (1 - terminal) for an m-step window), else gamma (1 - terminal)
        (``targets.bootstrap_discount``)."""
        return targets.bootstrap_discount(self.gamma, batch.terminal, batch.discount)

    def td_target(
        self,
        reward: torch.Tensor,
        discount: torch.Tensor,
        next_state: torch.Tensor,
        goal: torch.Tensor,
        model: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """y = r + discount * V(s'), clamped into ``target_range``; (B,). V(s') is
        Q_target(s', g, a*), combined with ``model`` (B,), the model's values (-inf where a row
        has none), in ``model_mode`` (see ``targets``)."""
        with torch.no_grad():
            q_next = self.target_network(next_state, goal)  # (B, n_actions)
            online_next = self.q_network(next_state, goal) if self.double_dqn else None
            value = targets.greedy_value(q_next, online_next)  # (B,)
            if model is not None:
                value = targets.bootstrap_value(value, model, self.model_mode)
            return targets.td_target(reward, discount, value, self.target_range)

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on a batch; refreshes the target network on schedule.

        Returns ``td_loss`` (the loss before the step), ``q_mean`` (mean Q(s, g, a) before
        it) and ``grad_norm`` (the global gradient norm before clipping); with a
        ``model_values``, ``model_share``, the share of rows with a model value (> -inf).
        """
        discount = self.discounts(batch)
        model = model_q = None
        if self.model_values is not None and self.model_mode == "q":
            model_q = np.asarray(self.model_values.q_values(batch.obs, batch.goal), np.float32)
        elif self.model_values is not None:
            model = np.asarray(self.model_values(batch.next_obs, batch.goal), dtype=np.float32)
        elif self.action_targets is not None:
            model_q = self._action_q_targets(batch)
        if batch.weight is not None and model_q is not None:
            raise ValueError("importance-weighted batches take the TD loss, not 'q' mode's.")
        if self.fast is not None and batch.weight is None:
            metrics = self.fast.update(
                batch,
                discount,
                model,
                model_q,
                double_dqn=self.double_dqn,
                max_grad_norm=self.max_grad_norm,
                target_range=self.target_range,
                model_mode=self.model_mode,
                model_loss=self.model_loss,
                advantage_alpha=self.advantage_alpha,
            )
        else:
            metrics = self._autograd_update(batch, discount, model, model_q)
        if model is not None:
            metrics["model_share"] = np.count_nonzero(model > -np.inf) / len(model)
        elif model_q is not None:
            known = (model_q > -np.inf).any(axis=1)
            metrics["model_share"] = np.count_nonzero(known) / len(known)
        if self.schedulers:
            with warnings.catch_warnings():
                # The fast path steps the optimizers' parameters without calling their step(),
                # which a scheduler takes for a skipped step on its first call.
                warnings.filterwarnings(
                    "ignore", re.escape("Detected call of `lr_scheduler.step()`")
                )
                for scheduler in self.schedulers:
                    scheduler.step()
        self.n_updates += 1
        if self.n_updates % self.target_update_interval == 0:
            self.refresh_target()
        return metrics

    def _action_q_targets(self, batch: Batch) -> np.ndarray:
        """``action_targets``' one-step targets of every known action of each row, float32
        (B, n_actions), -inf for the unknown ones and the taken one (its n-step target stays):
        r + gamma (1 - terminal) max_b Q_target(s'_a, g, b), clamped into ``target_range``."""
        assert self.action_targets is not None
        states = np.asarray(batch.obs)
        next_states, reward, terminal = self.action_targets(states, np.asarray(batch.goal))
        out = np.full(next_states.shape, -np.inf, dtype=np.float32)
        known = next_states >= 0
        known[np.arange(len(known)), np.asarray(batch.action)] = False
        rows, actions = np.nonzero(known)
        if not len(rows):
            return out
        goal = np.asarray(batch.goal)[rows]
        with torch.no_grad():
            value = self.target_network(
                self.tensors(next_states[rows, actions], self.obs_spec),
                self.tensors(goal, self.goal_spec),
            ).amax(dim=1)
        value = value.float().cpu().numpy()
        target = reward[rows, actions] + self.gamma * (1.0 - terminal[rows, actions]) * value
        if self.target_range is not None:
            target = np.clip(target, *self.target_range)
        out[rows, actions] = target
        return out

    def _autograd_update(
        self,
        batch: Batch,
        discount: np.ndarray,
        model: np.ndarray | None = None,
        model_q: np.ndarray | None = None,
    ) -> dict[str, float]:
        """The general update: autograd, the loss, clipping, the optimizers."""
        device = self.device
        state = self.tensors(batch.obs, self.obs_spec)
        goal = self.tensors(batch.goal, self.goal_spec)
        next_state = self.tensors(batch.next_obs, self.obs_spec)
        action = torch.as_tensor(np.asarray(batch.action), dtype=torch.int64, device=device)
        reward = torch.as_tensor(np.asarray(batch.reward, dtype=np.float32), device=device)
        target = self.td_target(
            reward,
            torch.as_tensor(discount, device=device),
            next_state,
            goal,
            None if model is None else torch.as_tensor(model, device=device),
        )
        if self.advantage_alpha:
            with torch.no_grad():
                q_state = self.target_network(state, goal)  # (B, n_actions)
            target = targets.advantage_target(
                target, q_state, action, self.advantage_alpha, self.target_range
            )
        q = self.q_network(state, goal)  # (B, n_actions)
        q_taken = q.gather(1, action.unsqueeze(1)).squeeze(1)  # (B,)
        self.last_td_errors = (q_taken - target).detach().cpu().numpy()
        if batch.weight is not None:  # importance weights: the weighted mean of the row losses
            weight = torch.as_tensor(batch.weight, dtype=q.dtype, device=device)
            loss = (weight * self.loss_fn(q_taken, target, reduction="none")).mean()
        elif model_q is None:
            loss = self.loss_fn(q_taken, target)
        else:
            model_q_t = torch.as_tensor(model_q, device=device)
            wanted = targets.model_q_targets(model_q_t, action, target)  # (B, n_actions)
            loss = targets.model_q_loss(q, wanted, self.model_loss, self.loss_fn)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_grad_norm(self._parameters, self.max_grad_norm)
        for optimizer in self.optimizers:
            optimizer.step()
        return {
            "td_loss": loss.item(),
            "q_mean": q_taken.detach().mean().item(),
            "grad_norm": grad_norm,
        }

    @torch.no_grad()
    def refresh_target(self) -> None:
        """target <- tau * online + (1 - tau) * target (a hard copy when tau = 1)."""
        target_net, online_net = self.target_network, self.q_network
        pairs = zip(
            [*target_net.parameters(), *target_net.buffers()],
            [*online_net.parameters(), *online_net.buffers()],
            strict=True,
        )
        for target, online in pairs:
            if self.tau >= 1.0 or not target.is_floating_point():
                target.copy_(online)
            else:
                target.lerp_(online, self.tau)

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The module's and target's ``state_dict()``, the optimizers' and schedulers', the
        counters, settings and generator state: tensors, python scalars and containers only,
        so a checkpoint loads with ``torch.load(weights_only=True)``."""

        def cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {key: value.detach().cpu().clone() for key, value in state.items()}

        return {
            "format": CHECKPOINT_FORMAT,
            "q_network": cpu(self.q_network.state_dict()),
            "target_network": cpu(self.target_network.state_dict()),
            "optimizers": [copy.deepcopy(opt.state_dict()) for opt in self.optimizers],
            "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
            "n_updates": self.n_updates,
            "settings": self.settings(),
            "rng_state": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict()`` (tensors on any device); the network must match."""
        found = state.get("format", 1)
        if found != CHECKPOINT_FORMAT:
            raise ValueError(
                f"the DQN state is in checkpoint format {found}; this version of sshr_torch "
                f"reads format {CHECKPOINT_FORMAT} (retrain, or use the version that wrote it)."
            )
        saved, mine = state["settings"], self.settings()
        structural = ("obs_spec", "goal_spec", "n_actions", "network")
        if any(saved[key] != mine[key] for key in structural):
            describe = lambda d: ", ".join(f"{key}={d[key]}" for key in structural)  # noqa: E731
            raise ValueError(
                f"the checkpoint's network ({describe(saved)}) does not match this agent's "
                f"({describe(mine)})."
            )
        self.q_network.load_state_dict(state["q_network"])
        self.target_network.load_state_dict(state["target_network"])
        for optimizer, saved_state in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved_state)
        for scheduler, saved_state in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved_state)
        self.n_updates = int(state["n_updates"])
        self.rng.bit_generator.state = state["rng_state"]
        self._build_fast_path()  # the optimizers' state tensors were replaced

    def settings(self) -> dict[str, Any]:
        """The agent's settings as plain python values (``network``: the module's repr)."""
        return {
            "obs_spec": [self.obs_spec.kind, self.obs_spec.size],
            "goal_spec": [self.goal_spec.kind, self.goal_spec.size],
            "n_actions": self.n_actions,
            "network": repr(self.q_network),
            "learning_rate": self.learning_rate,
            "gamma": self.gamma,
            "target_update_interval": self.target_update_interval,
            "tau": self.tau,
            "double_dqn": self.double_dqn,
            "advantage_alpha": self.advantage_alpha,
            "max_grad_norm": self.max_grad_norm,
        }


# --- helpers ---------------------------------------------------------------------------------


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_`` that also takes sparse gradients; the norm before.

    Sparse gradients are coalesced first (duplicate rows summed, as the dense gradient has
    them), then their values count in the global L2 norm and are scaled with the rest.
    """
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    grads = []
    for param in params:
        if param.grad.is_sparse:
            if not param.grad.is_coalesced():
                param.grad = param.grad.coalesce()
            grads.append(param.grad.values())  # a view: scaling it scales the gradient
        else:
            grads.append(param.grad)
    total = torch.nn.utils.get_total_norm(grads)
    if float(total) > max_norm:
        scale = max_norm / (float(total) + 1e-6)
        for grad in grads:
            grad.mul_(scale)
    return float(total)


def _split_by_gradient_kind(
    module: nn.Module,
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(parameters with sparse gradients, the others): sparse embeddings' weights first."""
    sparse = [
        m.weight
        for m in module.modules()
        if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse
    ]
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in module.parameters() if id(p) not in sparse_ids and p.requires_grad]
    return sparse, dense


def _adam(
    params: list[nn.Parameter],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    device: torch.device,
) -> torch.optim.Adam:
    """torch.optim.Adam, fused where torch has a fused kernel for the device."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)


def _device(device: str | torch.device) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _stack(values: Any, spec: InputSpec) -> np.ndarray:
    """One observation or a stack of them as an array (n, *spec.shape)."""
    array = np.asarray(values)
    if spec.kind == "discrete":
        array = array.reshape(-1).astype(np.int64, copy=False)
        if len(array) and (array.min() < 0 or array.max() >= spec.size):
            raise ValueError(f"a value is outside Discrete({spec.size}).")
        return array
    return array.reshape(-1, spec.size)
