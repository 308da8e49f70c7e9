"""The env seam: what the trainer asks of an env beyond the goal-env convention.

Every env the trainer runs follows the goal-env convention (a Dict observation with
``observation``, ``achieved_goal`` and ``desired_goal``; a vectorised
``compute_reward(achieved_goal, desired_goal, info)``; ``info["is_success"]``). The features
below need more, and look it up here, once, on ``env.unwrapped``. Every name is optional; a
feature whose method is missing is refused at start-up with one line (``require``), or, where
the table says so, falls back. All ids are the env's Discrete ints (int64 arrays where
vectorised).

- ``goal_of_state(states)``: int64 array, the shape of ``states``, the achieved goal id of
  each state id. Used by the count model's values (``--model-values``, ``--model-goals``), goal
  reach, ``--explore ucb1/directed`` and random-until-goal ("goal never reached"), the images.
  Missing: the identity where the goal space equals the state space (the maze); otherwise
  those features are refused (at their defaults they are off).
- ``shortest_path_lengths(state)``: float64 (n_goals,), the fewest moves from ``state`` to any
  state achieving each goal, inf where unreachable. Used by ``--stop-path-factor``, goal
  reach's 1.5x rule and its image. Missing: ``--stop-path-factor`` refused; goal reach takes
  the count model's fewest moves and draws no image.
- ``transition_table()``: ``(next, terminal)``, int64 (n_states, n_actions) of a
  deterministic env and bool (n_states,) (a terminal state ends a walk); None where the env
  is not deterministic now. Used by goal reach's greedy walks. Missing (or None): the walks
  step copies of the env.
- ``goal_grid()``: int64 (rows, cols), the goal id drawn at each cell, -1 where none. Used by
  the dashboard images (with Discrete states and ``goal_of_state``). Missing: no images (they
  are a view of the run, not part of it: ``--image-interval`` is not refused).
- ``background_image(cell_px)``: uint8 (rows * cell_px, cols * cell_px, 3), the world drawn
  behind the images. Missing: a plain background.
- ``fingerprint()``: str, a stable digest of the world. Used by ``--resume``, which refuses
  another world. Missing: a resume checks the env's id, kwargs and class only.
- ``start`` (attribute): the fixed start state id, None where starts are drawn. Goal reach
  walks from it. Missing: the walks start from visited states.
- ``return_range(step_reward, gamma)``: (low, high) of an episode's return as the learner
  sees it (every reward plus ``step_reward``). Used by ``--clip-target``. Missing: the targets
  are not clamped.

``reset(options={"goal": g})`` (and ``{"start": s}`` where the env can) sets an episode's goal
(and start), as the maze does; goal reach's walks on env copies use it.

numpy and gymnasium only; nothing here imports torch or the trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sshr_torch.config import ConfigError

__all__ = [
    "BACKGROUND_IMAGE",
    "FINGERPRINT",
    "GOAL_GRID",
    "GOAL_OF_STATE",
    "METHODS",
    "RETURN_RANGE",
    "SHORTEST_PATH_LENGTHS",
    "START",
    "TRANSITION_TABLE",
    "fingerprint",
    "fixed_start",
    "goal_of_state",
    "goal_of_state_table",
    "goals_are_states",
    "has",
    "method",
    "require",
]

GOAL_OF_STATE = "goal_of_state"
SHORTEST_PATH_LENGTHS = "shortest_path_lengths"
TRANSITION_TABLE = "transition_table"
GOAL_GRID = "goal_grid"
BACKGROUND_IMAGE = "background_image"
FINGERPRINT = "fingerprint"
START = "start"
RETURN_RANGE = "return_range"
#: Every optional name of the protocol (``start`` is an attribute, the others methods).
METHODS = (
    GOAL_OF_STATE,
    SHORTEST_PATH_LENGTHS,
    TRANSITION_TABLE,
    GOAL_GRID,
    BACKGROUND_IMAGE,
    FINGERPRINT,
    START,
    RETURN_RANGE,
)


def method(env: gym.Env, name: str) -> Callable[..., Any] | None:
    """The protocol method ``name`` of ``env.unwrapped``, None where it has none (or it is
    set to None, the way a wrapper can switch one off)."""
    found = getattr(env.unwrapped, name, None)
    return found if callable(found) else None


def has(env: gym.Env, name: str) -> bool:
    """Whether ``env`` has the protocol method ``name`` (``goal_of_state`` counts as present
    where goals are states: the identity)."""
    if name == GOAL_OF_STATE:
        return goal_of_state(env) is not None
    if name == START:
        return fixed_start(env) is not None
    return method(env, name) is not None


def require(env: gym.Env, feature: str, name: str) -> Callable[..., Any]:
    """The protocol method ``name`` that ``feature`` (a flag, as the user wrote it) needs;
    ConfigError in one line naming both where ``env`` has none."""
    found = goal_of_state(env) if name == GOAL_OF_STATE else method(env, name)
    if found is None:
        env_name = type(env.unwrapped).__name__
        raise ConfigError(
            f"{feature} needs the env's {name}() (the env protocol, docs/envs.md), which "
            f"{env_name} does not have; leave {feature} out or add {name}() to the env."
        )
    return found


def goals_are_states(env: gym.Env) -> bool:
    """Whether the env's goals are its Discrete states (the same space, as the maze's)."""
    space = env.observation_space
    goal, state = space["desired_goal"], space["observation"]
    return isinstance(goal, spaces.Discrete) and goal == state


def _identity(states: Any) -> np.ndarray:
    """goal_of_state of an env whose goals are its states."""
    return np.asarray(states, dtype=np.int64)


def goal_of_state(env: gym.Env) -> Callable[[Any], np.ndarray] | None:
    """The env's ``goal_of_state``; the identity where goals are states and it has none; None
    where neither (its goal-needing features are then refused)."""
    found = method(env, GOAL_OF_STATE)
    if found is not None:
        return lambda states: np.asarray(found(np.asarray(states, dtype=np.int64)), np.int64)
    return _identity if goals_are_states(env) else None


def goal_of_state_table(env: gym.Env) -> np.ndarray | None:
    """(n_states,) int64: the achieved goal of every state of a Discrete state space; None
    where goals are the states themselves (the identity: no table needed, the callers take
    their faster paths) or the env has no goal_of_state."""
    found = goal_of_state(env)
    space = env.observation_space["observation"]
    if found is None or found is _identity or not isinstance(space, spaces.Discrete):
        return None
    table = found(np.arange(int(space.n), dtype=np.int64))
    if goals_are_states(env) and np.array_equal(table, np.arange(int(space.n))):
        return None
    table.setflags(write=False)
    return table


def fixed_start(env: gym.Env) -> int | None:
    """The env's fixed start state (its ``start``), None where starts are drawn or unknown."""
    start = getattr(env.unwrapped, START, None)
    if start is None or isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        return None
    return int(start)


def fingerprint(env: gym.Env) -> str | None:
    """The env's ``fingerprint()`` (a digest of its world), None where it has none."""
    found = method(env, FINGERPRINT)
    return None if found is None else str(found())
