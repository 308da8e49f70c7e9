"""What a run needs of the machine, checked before it allocates: the device, the memory, and
the process-wide settings (torch's threads, flush-to-zero) that the run applies once.

Constructors change nothing outside themselves; ``apply_process_settings`` is the one place a
run changes the process, and config.json records what it set.
"""

from __future__ import annotations

import math
import os
from typing import Any

import gymnasium as gym
import torch
from gymnasium import spaces

from sshr_torch import build
from sshr_torch.agents import TabularAgent
from sshr_torch.config import ConfigError, TrainConfig
from sshr_torch.smart_start import distance_cache_bytes

__all__ = [
    "apply_process_settings",
    "available_memory",
    "check_device",
    "check_memory",
    "memory_estimates",
]


def apply_process_settings(config: TrainConfig) -> None:
    """The run's process-wide settings: torch's CPU threads and flush-to-zero of subnormals.

    Subnormal floats: in a real run many gradients are tiny and Adam's second moments decay
    below 1.2e-38, where x86 CPUs compute several times slower; values that small change
    nothing that Adam or the TD targets can see, so by default they are flushed to zero.
    """
    torch.set_num_threads(config.torch_threads)
    torch.set_flush_denormal(config.flush_denormal)


def check_device(device: str) -> None:
    """ConfigError unless ``device`` exists on this machine ('cpu' and 'auto' always do)."""
    if device in ("cpu", "auto"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device}: this machine has no CUDA device that torch can use; "
            "use --device cpu or auto."
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"numbered from 0."
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_estimates(
    config: TrainConfig, env: gym.Env, q_network: Any = None
) -> list[tuple[str, str, int]]:
    """What the run will allocate, as (flag and value, what, bytes), before allocating it.

    Upper bounds where the size depends on the run: the tabular Q table stores one entry per
    (state, goal) pair updated, at most 1 + k per env step and never more than states x goals.
    """
    space = env.observation_space
    obs_bytes = build.item_bytes(space["observation"])
    goal_bytes = build.item_bytes(space["desired_goal"])
    # obs, next_obs, goal, next achieved goal; action, reward, flags, episode bounds.
    per_transition = 2 * obs_bytes + 2 * goal_bytes + 8 + 4 + 2 + 16
    estimates = [
        (
            f"--buffer-size {config.buffer_size}",
            f"the replay buffer ({per_transition} bytes a transition)",
            config.buffer_size * per_transition,
        )
    ]
    relabels = config.her_k if config.her != "none" else 0
    if config.agent == "tabular":
        if not isinstance(space["observation"], spaces.Discrete):
            return estimates  # make_agent refuses it
        # episode_relabels(): k rows per step of an episode (obs, goal, action, reward, ...).
        per_row = 2 * obs_bytes + goal_bytes + 8 + 4 + 4 + 1
        estimates.append(
            (
                f"--her-k {config.her_k}",
                f"the HER relabels of one episode ({per_row} bytes a row)",
                relabels * config.max_episode_steps * per_row,
            )
        )
        episodes, steps = config.run_length
        budget = min(
            steps if steps is not None else math.inf,
            config.max_episode_steps * episodes if episodes is not None else math.inf,
        )
        length = f"--total-steps {steps}" if budget == steps else f"--episodes {episodes}"
        n_states = int(space["observation"].n)
        n_goals = int(getattr(space["desired_goal"], "n", n_states))
        entries = int(min(budget * (1 + relabels), n_states * n_goals))
        per_entry = TabularAgent.bytes_per_entry(int(env.action_space.n))
        estimates.append(
            (
                f"--agent tabular with {length} and --her-k {config.her_k}",
                f"the Q table (up to {entries:,} (state, goal) entries x {per_entry} bytes)",
                entries * per_entry,
            )
        )
    elif q_network is None:
        n_in = build.input_size(space["observation"]) + build.input_size(space["desired_goal"])
        sizes = [n_in, *config.hidden_sizes, int(env.action_space.n)]
        n_params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))
        hidden = " ".join(map(str, config.hidden_sizes))
        # weights, target network, gradients and Adam's two moments, float32.
        estimates.append(
            (f"--hidden-sizes {hidden}", f"the Q-network ({n_params:,} weights)", 20 * n_params)
        )
        # activations and their gradients for the online and target networks, float32.
        per_sample = 4 * 4 * sum(sizes[1:]) + per_transition
        estimates.append(
            (f"--batch-size {config.batch_size}", "one minibatch", config.batch_size * per_sample)
        )
    observation, goal = space["observation"], space["desired_goal"]
    if (
        config.agent == "dqn"
        and config.smart_start
        and config.model_values != "off"
        and config.model_goals == "all"
        and isinstance(observation, spaces.Discrete)
        and isinstance(goal, spaces.Discrete)
    ):
        n_states, n_goals = int(observation.n), int(goal.n)
        estimates.append(
            (
                "--model-goals all",
                f"the count model's distance cache (a row of {n_states:,} distances for each "
                f"of up to {n_goals:,} goals)",
                distance_cache_bytes(n_states, n_goals),
            )
        )
    if config.agent == "dqn" and config.n_step > 1:
        # The HER buffer's n-step windows: (batch, n) positions, slots, rewards, flags and
        # relabelled goals per minibatch, and its own (n,) offsets and powers of gamma.
        per_step = 8 + 8 + 8 + 4 + 4 + 1 + 1 + 1 + goal_bytes
        estimates.append(
            (
                f"--n-step {config.n_step} with --batch-size {config.batch_size}",
                f"the n-step windows of one minibatch ({per_step} bytes a step of a row)",
                (config.batch_size * per_step + 12) * config.n_step,
            )
        )
    return estimates


def check_memory(config: TrainConfig, env: gym.Env, q_network: Any = None) -> None:
    """ConfigError naming the flag when an allocation of the run cannot fit in memory."""
    available = available_memory()
    if available is None:
        return
    for flags, what, size in memory_estimates(config, env, q_network):
        if size > available:
            raise ConfigError(
                f"{flags}: {what} would need about {_gigabytes(size)}, more than the "
                f"{_gigabytes(available)} of memory available."
            )


def _gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.2f} GB"
