"""Goal-conditioned learners: tabular Q-learning (numpy) and a DQN (torch).

``DQNAgent`` is imported lazily, so ``from sshr_torch.agents import TabularAgent`` does not
import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sshr_torch.agents.base import Agent, LinearSchedule
from sshr_torch.agents.tabular import TabularAgent

if TYPE_CHECKING:
    from sshr_torch.agents.dqn import DQNAgent

__all__ = ["Agent", "DQNAgent", "LinearSchedule", "TabularAgent"]


def __getattr__(name: str) -> Any:
    """Import the torch-based ``DQNAgent`` on first use (PEP 562)."""
    if name == "DQNAgent":
        from sshr_torch.agents.dqn import DQNAgent

        return DQNAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
