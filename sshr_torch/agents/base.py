"""What the trainer needs from a learner (the ``Agent`` Protocol) and an epsilon schedule.

numpy only: importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from sshr_torch.her import Batch, HerReplayBuffer

__all__ = ["Agent", "LinearSchedule", "Transition"]


class Transition(NamedTuple):
    """One real transition, as the env gave it (the argument of ``Agent.learn`` after a step)."""

    obs: Any
    goal: Any
    action: int
    reward: float
    next_obs: Any
    terminal: bool


@runtime_checkable
class Agent(Protocol):
    """A goal-conditioned learner; the DQN and the tabular learner both satisfy it.

    States and goals are observations as the env gives them: ints for Discrete spaces, uint8
    arrays for MultiBinary ones.
    """

    def act(self, obs: Any, goal: Any, epsilon: float) -> int:
        """Epsilon-greedy action for ``obs`` under ``goal``; greedy ties broken at random."""
        ...

    def max_q(self, states: np.ndarray, goal: Any) -> np.ndarray:
        """max_a Q(s, goal, a) for each stacked state, shape (n,) (Smart Start's Eq. 1)."""
        ...

    def q_values(self, states: np.ndarray, goal: Any) -> np.ndarray:
        """Q(s, goal, a) for each stacked state, shape (n, n_actions)."""
        ...

    def learn(
        self, buffer: HerReplayBuffer, env_steps: int, transition: Transition | None
    ) -> dict[str, float]:
        """Learn what this learner learns at this point of the run; its metrics, or {}.

        Called after every env step with that step's real ``transition`` (already in
        ``buffer``; ``env_steps`` counts it), and with ``transition`` None when an episode has
        ended (``buffer.end_episode()`` done). The tabular learner learns online from each
        real transition and from the episode's HER relabels at its end; the DQN samples a
        replay batch every ``train_freq`` steps once ``learning_starts`` steps are done. A
        call that learned returns ``td_loss`` among its metrics.
        """
        ...

    def update(self, batch: Batch) -> dict[str, float]:
        """Learn from a batch of transitions; returns scalar metrics (e.g. ``td_loss``)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume learning."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict()``."""
        ...


class LinearSchedule:
    """A value going linearly from ``start`` to ``end`` over ``duration`` steps, then constant.

    value(step) = start + (end - start) * min(step / duration, 1)
    """

    def __init__(self, start: float, end: float, duration: int) -> None:
        if duration < 0:
            raise ValueError(f"duration must be >= 0, got {duration}.")
        self.start = float(start)
        self.end = float(end)
        self.duration = int(duration)

    def __call__(self, step: int) -> float:
        """The value after ``step`` steps."""
        if self.duration == 0 or step >= self.duration:
            return self.end
        return self.start + (self.end - self.start) * max(step, 0) / self.duration

    def __repr__(self) -> str:
        return f"LinearSchedule(start={self.start}, end={self.end}, duration={self.duration})"
