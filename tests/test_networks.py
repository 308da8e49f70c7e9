"""Bring your own network: modules defined here train through train(TrainConfig(...))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sshr_torch import TrainConfig, train
from sshr_torch.agents import DQNAgent
from sshr_torch.agents.networks import DistanceQNetwork, InputSpec, one_hot_inputs, quasimetric
from sshr_torch.her import Batch
from sshr_torch.maze import load_maze, shortest_path_length
from sshr_torch.trainer import Callback

torch.set_num_threads(1)


class DuelingQ(nn.Module):
    """Q = V + A - mean(A), on one-hot(s) || one-hot(g) (Wang et al., 2016)."""

    def __init__(self, obs_spec: InputSpec, goal_spec: InputSpec, n_actions: int) -> None:
        super().__init__()
        self.specs = (obs_spec, goal_spec)
        self.body = nn.Sequential(nn.Linear(obs_spec.size + goal_spec.size, 256), nn.ReLU())
        self.value = nn.Linear(256, 1)
        self.advantage = nn.Linear(256, n_actions)

    def forward(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        h = self.body(one_hot_inputs(state, goal, *self.specs))  # (B, 256)
        advantage = self.advantage(h)  # (B, n_actions)
        return self.value(h) + advantage - advantage.mean(dim=1, keepdim=True)


class TwoLayerQ(nn.Module):
    """Two hidden layers of 128 on one-hot(s) || one-hot(g)."""

    def __init__(self, obs_spec: InputSpec, goal_spec: InputSpec, n_actions: int) -> None:
        super().__init__()
        self.specs = (obs_spec, goal_spec)
        sizes = (obs_spec.size + goal_spec.size, 128, 128)
        layers = [
            m
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            for m in (nn.Linear(a, b), nn.ReLU())
        ]
        self.mlp = nn.Sequential(*layers, nn.Linear(128, n_actions))

    def forward(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return self.mlp(one_hot_inputs(state, goal, *self.specs))  # (B, n_actions)


class StopWhenGreedyOptimal(Callback):
    """Ends the run at the first evaluation that walks the shortest path every time."""

    def __init__(self, shortest: int) -> None:
        self.shortest, self.solved_at = shortest, None

    def on_evaluation(self, trainer, success_rate: float, mean_length: float) -> None:
        if success_rate == 1.0 and mean_length == self.shortest and self.solved_at is None:
            self.solved_at = trainer.progress.env_steps

    def should_stop(self, trainer) -> bool:
        return self.solved_at is not None


@pytest.mark.parametrize("network", [DuelingQ, TwoLayerQ])
def test_own_network_solves_keulen_easy_in_the_main_jobs_budget(network, tmp_path):
    maze = load_maze("keulen_easy")
    shortest = shortest_path_length(maze)
    stop = StopWhenGreedyOptimal(shortest)
    # The main job's settings and budget (50,000 env steps), stopped once solved.
    config = TrainConfig(run_dir=str(tmp_path / "run"), quiet=True, eval_interval=10)
    result = train(config, q_network=network, callbacks=[stop])
    assert isinstance(result.agent.q_network, network)
    assert result.agent.fast is None  # not the default module: the general path trains it
    assert stop.solved_at is not None and stop.solved_at <= 50_000
    assert result.summary["eval_success_rate"] == 1.0
    assert result.summary["eval_mean_length"] == shortest


def test_quasimetric_is_zero_on_the_diagonal_nonnegative_and_obeys_the_triangle_inequality():
    generator = torch.Generator().manual_seed(0)
    x, y, z = (torch.randn(500, 8, generator=generator) for _ in range(3))
    assert torch.allclose(quasimetric(x, x), torch.zeros(500), atol=1e-5)
    assert (quasimetric(x, y) >= 0).all()
    assert (quasimetric(x, z) <= quasimetric(x, y) + quasimetric(y, z) + 1e-5).all()
    # asymmetric: a one-sided gap counts one way only
    a, b = torch.tensor([0.0, 0.0, 2.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 0.0])
    assert quasimetric(a, b).item() == pytest.approx(2.0)
    assert quasimetric(b, a).item() == pytest.approx(0.0, abs=1e-5)


def test_distance_head_learns_the_moves_left_on_a_corridor():
    # A corridor of 6 cells, actions 0 (left) and 1 (right); every (state, goal, action) row
    # with reward -1 per move and 0 on arrival (terminal). -Q of the best action is the
    # number of moves to the goal; the greedy action points towards it.
    n = 6
    rows = [
        (s, g, a, max(0, min(n - 1, s + (1 if a else -1))))
        for s in range(n) for g in range(n) for a in (0, 1) if s != g
    ]  # fmt: skip
    s, g, a, s2 = (np.array(column) for column in zip(*rows, strict=True))
    reached = s2 == g
    batch = Batch(s, g, a, np.where(reached, 0.0, -1.0).astype(np.float32), s2,
                  reached.astype(np.float32), np.zeros(len(s), dtype=bool))  # fmt: skip
    network = DistanceQNetwork(InputSpec.of(n), InputSpec.of(n), 2, hidden=32, dim=8,
                               generator=torch.Generator().manual_seed(0))  # fmt: skip
    agent = DQNAgent(n, n, 2, q_network=network, gamma=0.999, learning_rate=3e-3,
                     target_update_interval=20, batch_size=len(s), seed=0)  # fmt: skip
    assert agent.fast is None  # the autograd update
    for _ in range(3000):
        agent.update(batch)
    states, goals = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    states, goals = states.ravel(), goals.ravel()
    away = states != goals
    q = agent.pair_q_values(states[away], goals[away])
    moves = np.abs(states[away] - goals[away])
    np.testing.assert_allclose(-q.max(axis=1), moves - 1, atol=0.3)  # the best move's value
    np.testing.assert_array_equal(q.argmax(axis=1), (goals[away] > states[away]).astype(int))
    assert (q <= 0).all()
