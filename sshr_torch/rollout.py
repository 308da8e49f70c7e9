"""Play one training episode: Smart Start phase -> exploration -> HER buffer -> learning.

One episode, as in the paper's Algorithm 1 read with the corrections of docs/design.md:

1. reset; with probability eta (never in the first episode) Smart Start picks S_ss by Eq. 1
   from the learner's values for this episode's goal, plans a walk there on the count model and
   supplies the actions until the agent is within theta of S_ss;
2. the learner's epsilon-greedy exploration takes the rest of the episode (while the
   episode's goal has never been reached, when the trainer asks for that with
   ``explore_at_random``: uniformly random moves, or the directed ``explorer``'s, UCB1 over
   the count model);
3. every transition, guided ones included, goes to the count model and the HER buffer (its
   reward plus ``count_bonus`` / sqrt(C(s, a)) when a count bonus is set; marked
   ``off_policy`` where the action was not the learner's), and
   the learner learns (``Agent.learn``) after each step and once more when the episode ends;
   the Smart Start phase counts against the episode's step limit.

It talks to any env that follows the goal-env convention (Dict observation with
``observation``, ``achieved_goal``, ``desired_goal``; ``info["is_success"]``).

Every env loop lives here: the training episode (``play_episode``), the greedy evaluation
(``evaluate``, in ``evaluation_streams`` that leave the training's random streams alone), and
goal reach's greedy walks to many goals at once (``greedy_walks``, stepped on the env's
transition table or on copies of the env: ``walk_stepper``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sshr_torch import protocol
from sshr_torch.agents.base import Agent, Transition
from sshr_torch.her import HerReplayBuffer
from sshr_torch.smart_start import CountModel, SmartStartController, SmartStartReport

__all__ = [
    "EpisodeResult",
    "env_step",
    "evaluate",
    "evaluation_streams",
    "greedy_choice",
    "greedy_walks",
    "pair_q_values",
    "play_episode",
    "table_step",
    "walk_stepper",
]


@dataclass
class EpisodeResult:
    """What one episode did.

    ``metrics`` holds every value the learner returned during the episode, by name (for the
    dashboards); ``td_loss`` is the mean of the ``td_loss`` of the learning calls after steps
    (NaN when none learned), ``n_learned`` their number. ``goal`` is the episode's desired goal.
    """

    episode_return: float = 0.0
    length: int = 0
    success: bool = False
    first_success_step: int | None = None
    epsilon: float = 0.0
    n_learned: int = 0
    td_loss: float = math.nan
    report: SmartStartReport | None = None
    metrics: dict[str, list[float]] = field(default_factory=dict)
    goal: Any = None


def play_episode(
    env: gym.Env,
    agent: Agent,
    buffer: HerReplayBuffer,
    *,
    env_steps: int,
    epsilon: Callable[[int], float],
    controller: SmartStartController | None = None,
    episode: int = 0,
    step_limit: float = math.inf,
    reset_seed: int | None = None,
    visits: np.ndarray | None = None,
    explore_at_random: Callable[[Any], bool] | None = None,
    explorer: Callable[[Any], int] | None = None,
    count_model: CountModel | None = None,
    count_bonus: float = 0.0,
) -> EpisodeResult:
    """Play one episode and learn from it; returns what happened.

    Args:
        env: a goal-env.
        agent: the learner; ``agent.learn`` is called after every step and at the end.
        buffer: the HER buffer every transition goes to.
        env_steps: env steps taken before this episode (the learner's and epsilon's clock).
        epsilon: the exploration schedule, epsilon(env_steps).
        controller: Smart Start, or None to explore from the start state.
        episode: this episode's number (Smart Start never guides episode 0).
        step_limit: stop after this many steps even if the env has not ended the episode.
        reset_seed: the seed of this episode's ``env.reset`` (None: the env's own stream).
        visits: per-state visit counts to add this episode's states to (Discrete states).
        explore_at_random: called with the episode's goal after the reset; when it returns
            True the learner's moves this episode are uniformly random (epsilon 1), e.g.
            while the goal has never been reached and the learner's values for it are
            extrapolation; or, with ``explorer``, those of the explorer.
        explorer: the action of a directed exploration in a state (e.g. UCB1 over the count
            model, :func:`~sshr_torch.smart_start.ucb1_action`), used in place of the
            uniformly random moves of an episode that ``explore_at_random`` marks.
        count_model: a count model to update with every transition here, for the count bonus when
            there is no ``controller`` (whose own model is updated and read otherwise).
        count_bonus: beta of the count bonus beta / sqrt(C(s, a)) added to the reward of every
            real transition (after counting it) that the buffer and the learner see
            (#Exploration / MBIE-EB style); 0: none. HER relabels recompute their rewards
            without it. The episode's return stays the env's.
    """
    obs, _ = env.reset(seed=reset_seed)
    state, goal, achieved = obs["observation"], obs["desired_goal"], obs["achieved_goal"]
    if controller is not None:
        controller.begin_episode(episode, state, lambda states: agent.max_q(states, goal), goal)
    result = EpisodeResult(goal=goal)
    directed = None
    if explore_at_random is not None and explore_at_random(goal):
        epsilon, directed = _always_random, explorer
    model = controller.model if controller is not None else count_model
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    td_sum = 0.0
    steps = env_steps
    while True:
        eps = epsilon(steps)
        action = controller.act(state) if controller is not None and controller.active else None
        learners = action is None and directed is None  # the learner's own (epsilon-greedy) move
        if action is None:
            action = agent.act(state, goal, eps) if directed is None else directed(state)
        obs, reward, terminated, truncated, info = env.step(action)
        next_state, next_achieved = obs["observation"], obs["achieved_goal"]
        success = bool(info.get("is_success", False))
        if controller is not None:
            controller.observe(state, action, reward, next_state, terminated)
        elif count_model is not None:
            count_model.update(state, action, reward, next_state, terminated)
        result.episode_return += float(reward)
        if count_bonus and model is not None:
            # r+ = r + beta / sqrt(C(s, a)), C counted with this step (>= 1)
            reward = float(reward) + count_bonus / math.sqrt(model.action_counts(state)[action])
        buffer.add(
            state,
            achieved,
            goal,
            action,
            reward,
            next_state,
            next_achieved,
            terminated,
            truncated,
            success,
            off_policy=not learners,
        )
        steps += 1
        if visits is not None:
            visits[state] += 1
        learned = agent.learn(
            buffer, steps, Transition(state, goal, action, reward, next_state, terminated)
        )
        if learned:
            result.n_learned += 1
            td_sum += learned.get("td_loss", 0.0)
            for key, value in learned.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
        if success and result.first_success_step is None:
            result.first_success_step = steps
        result.length += 1
        state, achieved = next_state, next_achieved
        if terminated or truncated or result.length >= step_limit:
            break
    buffer.end_episode()
    result.success, result.epsilon = success, eps
    if result.n_learned:
        result.td_loss = td_sum / result.n_learned
    # The step metrics as one mean per episode, then what the learner does at the episode end.
    result.metrics = {key: [sums[key] / counts[key]] for key in sums}
    for key, value in agent.learn(buffer, steps, None).items():
        result.metrics.setdefault(key, []).append(float(value))
    result.report = controller.end_episode() if controller is not None else None
    return result


def _always_random(env_steps: int) -> float:
    """The exploration schedule of an episode played at random: epsilon 1 at every step."""
    return 1.0


# ---- greedy walks to many goals at once (goal reach) -------------------------------------------

# (indices of the walks to advance, their actions) -> (next states, arrived, ended) for them
StepFunction = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def pair_q_values(agent: Agent, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Q(s_i, g_i, .) for each (state, goal) row, (n, n_actions): the agent's own
    ``pair_q_values`` where it has one (the DQN: one forward pass for all rows), else one
    ``q_values`` call per distinct goal."""
    method = getattr(agent, "pair_q_values", None)
    if method is not None:
        return np.asarray(method(states, goals))
    rows = []
    order = np.argsort(goals, kind="stable")
    for group in np.split(order, np.flatnonzero(np.diff(goals[order])) + 1):
        rows.append(np.asarray(agent.q_values(states[group], goals[group[0]]), np.float64))
    out = np.empty((len(goals), rows[0].shape[1]), dtype=np.float64)
    out[order] = np.concatenate(rows)
    return out


def greedy_choice(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """argmax_a q[i, a] for each row, exact ties broken uniformly at random, (n,) int64."""
    return _greedy_choice(q, rng)[0]


def _greedy_choice(q: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(greedy_choice, whether the row had a tie to break), each (n,)."""
    best = q == q.max(axis=1, keepdims=True)  # (n, n_actions)
    return np.argmax(rng.random(q.shape) * best, axis=1), best.sum(axis=1) > 1


def greedy_walks(
    agent: Agent,
    starts: np.ndarray,
    goals: np.ndarray,
    budgets: np.ndarray,
    step: StepFunction,
    rng: np.random.Generator,
) -> np.ndarray:
    """Walk greedily from each start to its goal, all walks together; returns the moves each
    took to arrive, (n,) int64, -1 where it did not arrive within its budget.

    Each step is one ``pair_q_values`` call for every walk still going (one forward pass of
    the DQN), then ``step`` advances those walks. A walk stops when it arrives, when ``step``
    says its episode ended, or after ``budgets[i]`` moves (a budget of 0 never starts).

    On a deterministic ``step`` (``table_step``) a walk that has broken no tie follows a fixed
    policy, so once it is back at a state it has been at it only goes round again: it stops
    there, not arrived (Brent's cycle detection: each walk's state at moves 1, 2, 4, 8, ... is
    kept and compared with, so a loop is found within 4x the moves to enter and go round it).
    The result is the same; an unlearnt network's walks end in a few moves, not the budget.
    """
    states = np.array(starts, dtype=np.int64)
    goals = np.asarray(goals, dtype=np.int64)
    budgets = np.asarray(budgets, dtype=np.int64)
    moves = np.full(len(goals), -1, dtype=np.int64)
    active = np.flatnonzero(budgets > 0)
    deterministic = bool(getattr(step, "deterministic", False))
    kept = states.copy()  # each walk's state at the last power of two of its moves
    tied = np.zeros(len(goals), dtype=bool)  # a tie broken: its walk may not repeat itself
    n_moves = 0
    while active.size:
        actions, ties = _greedy_choice(pair_q_values(agent, states[active], goals[active]), rng)
        next_states, arrived, ended = step(active, actions)
        n_moves += 1
        states[active] = next_states
        moves[active[arrived]] = n_moves
        if deterministic:
            tied[active] |= ties
            ended = ended | ((next_states == kept[active]) & ~tied[active])
            if n_moves & (n_moves - 1) == 0:
                kept[active] = next_states
        active = active[~(arrived | ended) & (budgets[active] > n_moves)]
    return moves


def table_step(
    next_state: np.ndarray,
    goals: np.ndarray,
    states: np.ndarray,
    stops: np.ndarray | None = None,
    goal_of: np.ndarray | None = None,
) -> StepFunction:
    """A ``greedy_walks`` step of a deterministic env given as a table ``next_state[s, a]``
    (the protocol's ``transition_table``, the maze's ``next_cell``): walk i is at
    ``states[i]`` (updated in place), arrives on a state whose goal (``goal_of[s]``; the state
    itself where None) is ``goals[i]`` and ends on a state of ``stops`` (bool by state: the
    maze's decoys)."""

    def step(index: np.ndarray, actions: np.ndarray):
        nxt = next_state[states[index], actions]
        states[index] = nxt
        arrived = (nxt if goal_of is None else goal_of[nxt]) == goals[index]
        ended = np.zeros_like(arrived) if stops is None else stops[nxt] & ~arrived
        return nxt, arrived, ended

    step.deterministic = True  # type: ignore[attr-defined]  # greedy_walks' loop check
    return step


def env_step(
    envs: list[gym.Env], starts: np.ndarray, goals: np.ndarray, fixed_start: int | None = None
) -> StepFunction:
    """A ``greedy_walks`` step on copies of an env, one per walk, each reset with
    ``options={"start": starts[i], "goal": goals[i]}`` (the maze's reset options; "start" left
    out where it is the env's ``fixed_start``); a walk arrives when ``info["is_success"]`` and
    ends when its episode does."""
    for env, start, goal in zip(envs, starts, goals, strict=True):
        options = {"goal": int(goal)}
        if fixed_start is None or int(start) != fixed_start:
            options["start"] = int(start)
        env.reset(options=options)

    def step(index: np.ndarray, actions: np.ndarray):
        nxt = np.empty(len(index), dtype=np.int64)
        arrived = np.zeros(len(index), dtype=bool)
        ended = np.zeros(len(index), dtype=bool)
        for j, (i, action) in enumerate(zip(index.tolist(), actions.tolist(), strict=True)):
            obs, _, terminated, truncated, info = envs[i].step(action)
            nxt[j] = obs["observation"]
            arrived[j] = bool(info.get("is_success", False))
            ended[j] = terminated or truncated
        return nxt, arrived, ended

    return step


# (starts, goals) -> the step function of walks between them
StepperFactory = Callable[[np.ndarray, np.ndarray], StepFunction]


def walk_stepper(env: gym.Env) -> StepperFactory:
    """How goal reach's walks move on ``env``: by its ``transition_table`` (the env protocol)
    where it has one (None: not deterministic, as the maze with slip), else on copies of the env
    (made as a call asks for more walks than there are, kept for the next walks), reset to each
    walk's start and goal."""
    method = protocol.method(env, protocol.TRANSITION_TABLE)
    table = None if method is None else method()
    if table is not None:
        next_state, terminal = table
        goal_of = protocol.goal_of_state_table(env)
        return lambda starts, goals: table_step(
            next_state, goals, np.array(starts, dtype=np.int64), stops=terminal, goal_of=goal_of
        )
    copies: list[gym.Env] = []
    fixed_start = protocol.fixed_start(env)

    def make(starts: np.ndarray, goals: np.ndarray) -> StepFunction:
        while len(copies) < len(goals):
            copies.append(copy.deepcopy(env))
        return env_step(copies[: len(goals)], starts, goals, fixed_start)

    return make


# ---- greedy evaluation -------------------------------------------------------------------------


def evaluate(
    agent: Agent,
    env: gym.Env,
    n_episodes: int,
    seed: int,
    episodes: list[tuple[Any, Any]] | None = None,
) -> tuple[float, float]:
    """Greedy (epsilon 0) episodes; returns (success rate, mean episode length).

    It draws nothing from the training's random streams: the agent's tie-breaks use a
    generator seeded from ``seed`` (see ``evaluation_streams``). ``episodes``: a list to
    append each episode's (start state, desired goal) to (the path-factor stop's shortest
    paths).
    """
    with evaluation_streams(agent, seed):
        successes, lengths = 0, 0
        for index in range(n_episodes):
            obs, _ = env.reset(seed=seed if index == 0 else None)
            state, goal = obs["observation"], obs["desired_goal"]
            if episodes is not None:
                episodes.append((state, goal))
            length, done = 0, False
            while not done:
                obs, _, terminated, truncated, info = env.step(agent.act(state, goal, 0.0))
                state, length = obs["observation"], length + 1
                done = terminated or truncated
            successes += bool(info.get("is_success", False))
            lengths += length
        return successes / n_episodes, lengths / n_episodes


@contextlib.contextmanager
def evaluation_streams(agent: Any, seed: int) -> Iterator[None]:
    """While it lasts, each numpy Generator attribute of ``agent`` (the DQN's and the tabular
    learner's ``rng``) is replaced by one seeded from ``seed``; its torch.Generator and
    random.Random attributes and torch's global random state are put back after it. An
    evaluation so leaves the training's random streams as it found them: a run interrupted and
    resumed (or extended) plays the episodes an uninterrupted run plays.
    """
    attributes = getattr(agent, "__dict__", {})
    swapped = {k: v for k, v in attributes.items() if isinstance(v, np.random.Generator)}
    restored = [
        (value, value.get_state() if isinstance(value, torch.Generator) else value.getstate())
        for value in attributes.values()
        if isinstance(value, (torch.Generator, random.Random))
    ]
    torch_state = torch.get_rng_state()
    try:
        for index, name in enumerate(swapped):
            setattr(agent, name, np.random.default_rng([seed, index]))
        yield
    finally:
        for name, value in swapped.items():
            setattr(agent, name, value)
        for generator, state in restored:
            if isinstance(generator, torch.Generator):
                generator.set_state(state)
            else:
                generator.setstate(state)
        torch.set_rng_state(torch_state)
