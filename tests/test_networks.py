"""Bring your own network: modules defined here train through train(TrainConfig(...))."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sshr_torch import TrainConfig, train
from sshr_torch.agents.networks import InputSpec, one_hot_inputs
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
