"""Small goal-conditioned envs and a minimal DQN + HER training loop, for the learning tests.

Both envs follow the goal-env convention (Dict observation with ``observation``,
``achieved_goal``, ``desired_goal``; vectorised ``compute_reward(achieved, desired, info)``;
``info["is_success"]``), so they exercise the same code paths as the maze.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sshr_torch.agents import LinearSchedule
from sshr_torch.her import HerReplayBuffer


class BitFlipEnv(gym.Env):
    """Bit flipping (Andrychowicz et al. 2017, Sec. 3.1), n bits, n steps per episode.

    Observation: the bits (MultiBinary(n)), which are also the achieved goal; the desired goal is
    another uniformly random bit vector (never equal to the start). Action i flips bit i.
    Reward: 0 when the bits equal the goal, -1 otherwise, as in the HER paper; reaching the goal
    ends the episode (terminated, is_success); after n steps it is truncated.
    """

    def __init__(self, n_bits: int = 10) -> None:
        self.n_bits = n_bits
        bits = spaces.MultiBinary(n_bits)
        self.observation_space = spaces.Dict(
            {"observation": bits, "achieved_goal": bits, "desired_goal": bits}
        )
        self.action_space = spaces.Discrete(n_bits)
        self._state = np.zeros(n_bits, dtype=np.uint8)
        self._goal = np.zeros(n_bits, dtype=np.uint8)
        self._steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "observation": self._state.copy(),
            "achieved_goal": self._state.copy(),
            "desired_goal": self._goal.copy(),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Random start and a different random goal."""
        super().reset(seed=seed)
        self._state = self.np_random.integers(0, 2, self.n_bits, dtype=np.uint8)
        self._goal = self._state.copy()
        while np.array_equal(self._goal, self._state):
            self._goal = self.np_random.integers(0, 2, self.n_bits, dtype=np.uint8)
        self._steps = 0
        return self._obs(), {}

    def step(self, action: int):
        """Flip bit ``action``."""
        self._state[action] ^= 1
        self._steps += 1
        success = bool(np.array_equal(self._state, self._goal))
        reward = float(self.compute_reward(self._state, self._goal, None))
        return self._obs(), reward, success, self._steps >= self.n_bits, {"is_success": success}

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any) -> np.ndarray:
        """0 where all bits match, -1 elsewhere (vectorised over leading axes)."""
        differ = np.any(np.asarray(achieved_goal) != np.asarray(desired_goal), axis=-1)
        return -differ.astype(np.float32)


BitFlippingEnv = BitFlipEnv  # the name the trainer's tests use


class OpenRoomEnv(gym.Env):
    """An open size x size room without inner walls; random start and random goal (distinct).

    State and goal: cell index row * size + col (Discrete(size^2)). Actions: 0 up, 1 right,
    2 down, 3 left; the outer wall blocks. Reward 1 on reaching the goal (terminated), 0
    otherwise, as the maze; truncated after ``max_episode_steps``.
    """

    def __init__(self, size: int = 7, max_episode_steps: int = 30) -> None:
        self.size = size
        self.max_episode_steps = max_episode_steps
        cells = spaces.Discrete(size * size)
        self.observation_space = spaces.Dict(
            {"observation": cells, "achieved_goal": cells, "desired_goal": cells}
        )
        self.action_space = spaces.Discrete(4)
        self._cell = 0
        self._goal = 0
        self._steps = 0

    def _obs(self) -> dict[str, int]:
        return {"observation": self._cell, "achieved_goal": self._cell, "desired_goal": self._goal}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Random start, random different goal."""
        super().reset(seed=seed)
        n = self.size * self.size
        self._cell = int(self.np_random.integers(n))
        self._goal = int((self._cell + 1 + self.np_random.integers(n - 1)) % n)
        self._steps = 0
        return self._obs(), {}

    def step(self, action: int):
        """Move one cell; the outer wall blocks."""
        row, col = divmod(self._cell, self.size)
        d_row, d_col = ((-1, 0), (0, 1), (1, 0), (0, -1))[int(action)]
        row = min(max(row + d_row, 0), self.size - 1)
        col = min(max(col + d_col, 0), self.size - 1)
        self._cell = row * self.size + col
        self._steps += 1
        success = self._cell == self._goal
        truncated = not success and self._steps >= self.max_episode_steps
        return self._obs(), float(success), success, truncated, {"is_success": success}

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any) -> np.ndarray:
        """1 where the achieved cell is the desired one (vectorised)."""
        return (np.asarray(achieved_goal) == np.asarray(desired_goal)).astype(np.float32)


def make_buffer(env: gym.Env, strategy: str, *, capacity: int = 100_000, k: int = 4, seed: int = 0):
    """A HER buffer shaped for ``env``'s observation and goal spaces."""
    space = env.observation_space

    def shape_dtype(sub: spaces.Space):
        if isinstance(sub, spaces.Discrete):
            return (), np.int64
        return (int(np.prod(sub.shape)),), np.uint8

    obs_shape, obs_dtype = shape_dtype(space["observation"])
    goal_shape, goal_dtype = shape_dtype(space["desired_goal"])
    return HerReplayBuffer(
        capacity,
        lambda achieved, desired: env.compute_reward(achieved, desired, None),
        strategy=strategy,
        k=k,
        obs_shape=obs_shape,
        goal_shape=goal_shape,
        obs_dtype=obs_dtype,
        goal_dtype=goal_dtype,
        rng=seed,
    )


def train(
    env: gym.Env,
    agent: Any,
    buffer: HerReplayBuffer,
    n_steps: int,
    *,
    epsilon: LinearSchedule,
    batch_size: int = 128,
    learning_starts: int = 200,
    seed: int = 0,
) -> None:
    """Play epsilon-greedy episodes for ``n_steps`` env steps, one gradient update per step."""
    obs, _ = env.reset(seed=seed)
    for step in range(n_steps):
        state, goal = obs["observation"], obs["desired_goal"]
        action = agent.act(state, goal, epsilon(step))
        next_obs, reward, terminated, truncated, info = env.step(action)
        buffer.add(
            state,
            obs["achieved_goal"],
            goal,
            action,
            reward,
            next_obs["observation"],
            next_obs["achieved_goal"],
            terminated,
            truncated,
            info["is_success"],
        )
        obs = next_obs
        if terminated or truncated:
            buffer.end_episode()
            obs, _ = env.reset()
        if step >= learning_starts and len(buffer) > 0:
            agent.update(buffer.sample(batch_size))


def greedy_success_rate(env: gym.Env, agent: Any, n_episodes: int, *, seed: int = 12345) -> float:
    """Fraction of greedy (epsilon 0) episodes that reach their goal."""
    successes = 0
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = agent.act(obs["observation"], obs["desired_goal"], 0.0)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        successes += bool(info["is_success"])
    return successes / n_episodes


HEADING_ROOM_ID = "HeadingRoom-v0"
"""Registered on import; by the ``module:Env-v0`` form: ``goal_envs:HeadingRoom-v0``."""


class HeadingRoomEnv(gym.Env):
    """A room of size x size cells split by a wall with one gap, walked MiniGrid-style: the
    agent has a heading and turns or moves forward. A user's own goal env for the env seam.

    State: ``cell * 4 + heading`` (heading 0 up, 1 right, 2 down, 3 left), Discrete(4 * cells);
    goal and achieved goal: the cell (Discrete(cells)), so goals are not states (the env
    protocol's ``goal_of_state`` is ``state // 4``). Actions: 0 turn left, 1 turn right,
    2 forward (a wall or the edge blocks). Start: cell (0, 0) facing right, fixed; goal: a
    random free cell other than the start's, or ``reset(options={"goal": cell})``.
    Reward 1 on reaching the goal cell (terminated), 0 otherwise; truncated after
    ``max_episode_steps``. It implements every method of the env protocol (sshr_torch.protocol);
    ``without`` switches some off (set to None), to test the features that need them.
    """

    def __init__(
        self, size: int = 5, max_episode_steps: int = 60, without: tuple[str, ...] = ()
    ) -> None:
        self.size, self.max_episode_steps = int(size), int(max_episode_steps)
        self.n_cells = self.size * self.size
        walls = np.zeros((self.size, self.size), dtype=bool)
        walls[: self.size - 1, self.size // 2] = True  # a wall down the middle, a gap at the end
        self.walls = walls
        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Discrete(4 * self.n_cells),
                "achieved_goal": spaces.Discrete(self.n_cells),
                "desired_goal": spaces.Discrete(self.n_cells),
            }
        )
        self.action_space = spaces.Discrete(3)
        self._next = self._table()
        self._free = np.flatnonzero(~walls.ravel())
        self._state, self._goal, self._steps = 1, self.n_cells - 1, 0
        self.start: int | None = 1
        """The env protocol's fixed start state: cell 0 facing right."""
        for name in without:
            setattr(self, name, None)

    def _table(self) -> np.ndarray:
        """(4 * cells, 3): the state each action leads to."""
        table = np.empty((4 * self.n_cells, 3), dtype=np.int64)
        moves = ((-1, 0), (0, 1), (1, 0), (0, -1))
        for state in range(4 * self.n_cells):
            cell, heading = divmod(state, 4)
            row, col = divmod(cell, self.size)
            table[state, 0] = cell * 4 + (heading - 1) % 4
            table[state, 1] = cell * 4 + (heading + 1) % 4
            r, c = row + moves[heading][0], col + moves[heading][1]
            inside = 0 <= r < self.size and 0 <= c < self.size
            forward = r * self.size + c if inside and not self.walls[r, c] else cell
            table[state, 2] = forward * 4 + heading
        return table

    def _obs(self) -> dict[str, int]:
        cell = self._state // 4
        return {"observation": self._state, "achieved_goal": cell, "desired_goal": self._goal}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """The fixed start; the goal drawn, or ``options["goal"]`` (``options["start"]``: a
        start state)."""
        super().reset(seed=seed)
        options = options or {}
        self._state = int(options.get("start", 1))
        goal = options.get("goal")
        if goal is None:
            candidates = self._free[self._free != self._state // 4]
            goal = candidates[self.np_random.integers(len(candidates))]
        self._goal, self._steps = int(goal), 0
        return self._obs(), {"is_success": False}

    def step(self, action: int):
        """Turn or move forward."""
        self._state = int(self._next[self._state, int(action)])
        self._steps += 1
        success = self._state // 4 == self._goal
        truncated = not success and self._steps >= self.max_episode_steps
        return self._obs(), float(success), success, truncated, {"is_success": success}

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any) -> np.ndarray:
        """1 where the achieved cell is the desired one (vectorised)."""
        return (np.asarray(achieved_goal) == np.asarray(desired_goal)).astype(np.float32)

    # the env protocol

    def goal_of_state(self, states: Any) -> np.ndarray:
        """The cell of each state."""
        return np.asarray(states, dtype=np.int64) // 4

    def shortest_path_lengths(self, state: int) -> np.ndarray:
        """(cells,) fewest actions from ``state`` to any heading on each cell (BFS)."""
        dist = np.full(4 * self.n_cells, np.inf)
        dist[int(state)], frontier, depth = 0.0, [int(state)], 0
        while frontier:
            depth += 1
            reached = np.unique(self._next[frontier].ravel())
            frontier = reached[np.isinf(dist[reached])].tolist()
            dist[frontier] = depth
        return dist.reshape(self.n_cells, 4).min(axis=1)

    def transition_table(self) -> tuple[np.ndarray, np.ndarray]:
        """The deterministic moves; no state ends a walk."""
        return self._next, np.zeros(4 * self.n_cells, dtype=bool)

    def goal_grid(self) -> np.ndarray:
        """Cell ids, -1 on the wall."""
        grid = np.arange(self.n_cells, dtype=np.int64).reshape(self.size, self.size)
        grid[self.walls] = -1
        return grid

    def background_image(self, cell_px: int) -> np.ndarray:
        """Walls dark, the floor light."""
        cells = np.where(self.walls[:, :, None], 40, 230).astype(np.uint8).repeat(3, axis=2)
        return cells.repeat(cell_px, axis=0).repeat(cell_px, axis=1)

    def fingerprint(self) -> str:
        """The room's size and wall."""
        return f"heading-room:{self.size}:{np.flatnonzero(self.walls).tolist()}"

    def return_range(self, step_reward: float = 0.0, gamma: float = 1.0) -> tuple[float, float]:
        """The goal's 1 ends the episode: returns in [0, 1], shifted by the step reward."""
        if step_reward == 0.0:
            return 0.0, 1.0
        low = -np.inf if gamma >= 1.0 else step_reward / (1.0 - gamma)
        return low, max(0.0, step_reward + 1.0)


if HEADING_ROOM_ID not in gym.registry:
    gym.register(id=HEADING_ROOM_ID, entry_point=f"{__name__}:HeadingRoomEnv")
