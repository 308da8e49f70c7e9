"""MiniGrid worlds as discrete goal envs: one layout per run, the full state as a Discrete id.

``make_minigrid("MiniGrid-FourRooms-v0", env_seed=0)`` builds the MiniGrid env with
``gymnasium.make``, resets it once with ``env_seed`` (that draws the layout: walls, doors, key,
goal tile, the agent's start) and wraps that layout as a :class:`MiniGridGoalEnv`. Needs the
optional extra ``minigrid`` (``pip install "sshr_torch[minigrid]"``).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces

from sshr_torch.env import episode_return_range, goal_ids

__all__ = [
    "ACTION_NAMES",
    "DEFAULT_ACTIONS",
    "DEFAULT_MAX_STATES",
    "WRAPPER_KWARGS",
    "MiniGridGoalEnv",
    "is_minigrid_id",
    "make_minigrid",
]

#: MiniGrid's actions in its own order (``minigrid.core.actions.Actions``).
ACTION_NAMES: tuple[str, ...] = ("left", "right", "forward", "pickup", "drop", "toggle", "done")
#: The actions offered by default, before the ones that change no reachable state are dropped:
#: 'done' is a no-op in every MiniGrid task here, and 'drop' multiplies DoorKey-16x16's states
#: by about 130 (2,688 -> 359,136 on layout 0) while no task here needs it.
DEFAULT_ACTIONS: tuple[str, ...] = ("left", "right", "forward", "pickup", "toggle")
#: Refuse layouts with more reachable states than this: the DQN's input is one-hot(state).
DEFAULT_MAX_STATES = 300_000
#: Keys of ``make_minigrid``'s env_kwargs that configure this wrapper, not the MiniGrid env.
WRAPPER_KWARGS: tuple[str, ...] = ("actions", "one_way_doors", "max_states", "death_reward")

# MiniGrid's DIR_TO_VEC: direction 0 faces +x (right), 1 +y (down), 2 -x (left), 3 -y (up).
_DIR_TO_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))
# MiniGrid's door encoding: 0 open, 1 closed, 2 locked.
_OPEN, _CLOSED, _LOCKED = 0, 1, 2
_PREFIXES = ("MiniGrid-", "BabyAI-")


def is_minigrid_id(env_id: str) -> bool:
    """Whether ``env_id`` names a MiniGrid (or BabyAI) env, which ``make_minigrid`` builds."""
    return env_id.startswith(_PREFIXES)


def _import_minigrid() -> Any:
    """Import the ``minigrid`` package (registers its ids), or say which extra installs it."""
    try:
        import minigrid
    except ImportError:
        raise ImportError(
            "MiniGrid envs need the minigrid package: pip install 'sshr_torch[minigrid]'"
        ) from None
    return minigrid


def make_minigrid(env_id: str, env_seed: int, **env_kwargs: Any) -> MiniGridGoalEnv:
    """The MiniGrid env ``env_id`` with the layout of ``env_seed``, as a discrete goal env.

    Args:
        env_id: a registered MiniGrid id, e.g. "MiniGrid-DoorKey-16x16-v0".
        env_seed: seeds the one reset that draws the layout (every episode restores it).
        env_kwargs: passed to ``gymnasium.make`` (e.g. MultiRoom's ``minNumRooms``), except
            the wrapper's own settings :data:`WRAPPER_KWARGS` (see :class:`MiniGridGoalEnv`);
            ``render_mode`` goes to both.
    """
    _import_minigrid()
    own = {key: env_kwargs.pop(key) for key in WRAPPER_KWARGS if key in env_kwargs}
    if "render_mode" in env_kwargs:  # both draw: the wrapper with MiniGrid's renderer
        own["render_mode"] = env_kwargs["render_mode"]
    minigrid_env = gymnasium.make(env_id, **env_kwargs)
    return MiniGridGoalEnv(minigrid_env, env_seed, env_id=env_id, env_kwargs=env_kwargs, **own)


class MiniGridGoalEnv(gymnasium.Env):
    """One layout of a MiniGrid env as a goal env over its full state.

    ## Description

    The MiniGrid env is reset once with ``env_seed``; that layout and start are this env's only
    ones (every episode restores them). Its reachable full states are enumerated at
    construction by a breadth-first search from the start, with MiniGrid's own move rules
    (re-implemented exactly for speed, checked against MiniGrid's ``step`` in the tests). A
    full state is (agent cell, agent direction, the state of every door: open / closed /
    locked, the cell of every key and ball or "carried"); its id is its BFS order (0 is the
    start). MiniGrid's ``hash()`` is not used: it prints the agent's position, a tuple of Python
    ints after a reset with a fixed start and one of NumPy ints after a move, which NumPy 2
    prints differently, so one state has two hashes. Boxes (ObstructedMaze) are not modelled
    and refused.

    ## Action Space

    ``Discrete(len(actions))``: the kept MiniGrid actions in MiniGrid's order (``actions``
    lists them by name). By default :data:`DEFAULT_ACTIONS` less those that change no reachable
    state: FourRooms and LavaCrossing keep left, right, forward; MultiRoom adds toggle; DoorKey
    adds pickup and toggle. MiniGrid's 'done' is a no-op; 'drop' is left out by default.

    ## Observation

    A ``Dict`` of three Discrete ids (Python ints): ``observation`` the full-state id
    (``Discrete(n_states)``), ``achieved_goal`` the agent's cell and ``desired_goal`` the goal
    cell, cells numbered ``x + y * width`` (``Discrete(width * height)``, MiniGrid's x is the
    column and y the row).

    ## Rewards

    1 on arriving at the desired goal cell, ``death_reward`` (0, MiniGrid's) on stepping onto
    lava, else 0 (:meth:`compute_reward`, vectorised: the lava is told by the achieved cell);
    MiniGrid's own reward (1 - 0.9 t / max_steps at its goal tile) is not used. A learner that
    pays a cost per step (the DQN's default ``step_reward`` -1) finds in a death at 0 the
    cheapest end of an episode; ``death_reward`` -1 / (1 - gamma) (-1000 with gamma 0.999)
    makes a death cost what never reaching the goal costs.

    ## Episode End

    Terminated: the agent reaches the desired goal cell (``info["is_success"]``), or dies
    (steps onto lava; a goal-independent end). MiniGrid's goal tile ends an episode only when it
    is the desired goal. Truncated: MiniGrid's ``max_steps`` steps.

    Args:
        minigrid_env: a MiniGrid env (from ``gymnasium.make``), not yet reset.
        env_seed: the seed of its one reset (the layout).
        env_id, env_kwargs: how it was made (for the fingerprint).
        actions: the MiniGrid action names to keep; None: :data:`DEFAULT_ACTIONS` less the
            no-ops of this layout (given names are all kept).
        one_way_doors: toggling an open door does nothing (it cannot be closed again). Not
            MiniGrid's dynamics: it shrinks RIDE's 12-room MultiRoom from ~1.4M states to ~4.3k.
        max_states: refuse layouts with more reachable states (ValueError).
        death_reward: the reward of stepping onto lava (which ends the episode).
        render_mode: None or "rgb_array" (MiniGrid's full render of the current state).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        minigrid_env: gymnasium.Env,
        env_seed: int,
        *,
        env_id: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        actions: Sequence[str] | None = None,
        one_way_doors: bool = False,
        max_states: int = DEFAULT_MAX_STATES,
        death_reward: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not one of ['rgb_array']")
        self.render_mode = render_mode
        self.minigrid_env = minigrid_env
        self.env_id = env_id or (minigrid_env.spec.id if minigrid_env.spec else "MiniGrid")
        self.env_kwargs = dict(env_kwargs or {})
        self.env_seed = int(env_seed)
        self.one_way_doors = bool(one_way_doors)
        # float32, so that step() and the float32 compute_reward() agree exactly
        self.death_reward = float(np.float32(death_reward))
        minigrid_env.reset(seed=self.env_seed)
        grid_env = minigrid_env.unwrapped
        self._grid_env = grid_env
        self.width, self.height = int(grid_env.width), int(grid_env.height)
        self.n_cells = self.width * self.height
        self.max_episode_steps = int(grid_env.max_steps)
        self._read_layout()

        if actions is None:
            candidates, prune = DEFAULT_ACTIONS, True
        else:
            unknown = [name for name in actions if name not in ACTION_NAMES]
            if unknown or not actions:
                raise ValueError(f"actions must be MiniGrid action names {ACTION_NAMES}")
            candidates, prune = tuple(actions), False
        codes = sorted({ACTION_NAMES.index(name) for name in candidates})
        states, next_state, terminal = self._enumerate(codes, int(max_states))
        if prune:  # keep an action if it changes some non-terminal state
            ids = np.arange(len(states))[~terminal, None]
            keep = np.any(next_state[~terminal] != ids, axis=0)
            codes = [code for code, kept in zip(codes, keep, strict=True) if kept]
            next_state = next_state[:, keep]
        self.actions: tuple[str, ...] = tuple(ACTION_NAMES[code] for code in codes)
        self.minigrid_actions: tuple[int, ...] = tuple(codes)
        self.n_states = len(states)
        self._states = states
        self._ids = {state: i for i, state in enumerate(states)}
        self._next = next_state
        self._next.setflags(write=False)
        self._terminal = terminal
        self._terminal.setflags(write=False)
        cells = np.array([state[0] for state in states], dtype=np.int64)
        self._cell = cells
        self._cell.setflags(write=False)
        # Goal cells: the cells of reachable non-terminal states (walls, lava and cells out of
        # reach are none).
        self._is_goal_cell = np.zeros(self.n_cells, dtype=bool)
        self._is_goal_cell[cells[~terminal]] = True
        self._cell_rewards = np.where(self._lava, self.death_reward, 0.0).astype(np.float32)
        self._cell_reward_list = self._cell_rewards.tolist()  # step()'s, one look-up a step
        # Plain containers for step(): indexing them is cheaper than numpy's and gives ints.
        self._next_rows = next_state.tolist()
        self._cell_list = cells.tolist()
        self._terminal_list = terminal.tolist()

        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Discrete(self.n_states),
                "achieved_goal": spaces.Discrete(self.n_cells),
                "desired_goal": spaces.Discrete(self.n_cells),
            }
        )
        self.action_space = spaces.Discrete(len(self.actions))
        self.goal_reward = 1.0
        #: the cell of the layout's goal tile (None if it has none)
        self.goal_tile: int | None = self._goal_tile
        self._background: dict[int, np.ndarray] = {}
        #: the desired goal of an episode without a "goal" option
        self.default_goal: int = self._default_goal()
        self._goal = self.default_goal
        self._state = 0
        self._steps = 0

    # ----------------------------------------------------------------------------------------
    # the layout and its states

    def _read_layout(self) -> None:
        """Static cells, doors and movable objects of the layout, and the start state."""
        env, width = self._grid_env, self.width
        n = self.n_cells
        self._wall = [False] * n
        self._lava = [False] * n
        self._empty = [False] * n  # nothing static: an object can be dropped there
        self._door_at = [-1] * n
        self._door_objects: list[Any] = []
        self._door_colours: list[str] = []
        self._objects: list[Any] = []  # keys and balls
        self._goal_tile: int | None = None
        doors, positions = [], []
        for cell, obj in enumerate(env.grid.grid):  # MiniGrid's list is row-major: x + y * width
            kind = None if obj is None else obj.type
            if kind is None:
                self._empty[cell] = True
            elif kind == "wall":
                self._wall[cell] = True
            elif kind == "lava":
                self._lava[cell] = True
            elif kind == "door":
                self._door_at[cell] = len(self._door_objects)
                self._door_objects.append(obj)
                self._door_colours.append(obj.color)
                doors.append(_OPEN if obj.is_open else _LOCKED if obj.is_locked else _CLOSED)
            elif kind in ("key", "ball"):
                self._empty[cell] = True  # empty once the object is picked up
                self._objects.append(obj)
                positions.append(cell)
            elif kind == "goal":
                self._goal_tile = cell
            elif kind != "floor":
                raise ValueError(
                    f"{self.env_id}: its layout holds a {kind}, which MiniGridGoalEnv does not "
                    "model (it models walls, floor, goal, lava, doors, keys and balls)"
                )
        if env.carrying is not None:
            self._objects.append(env.carrying)
            positions.append(-1)
        x, y = (int(v) for v in env.agent_pos)
        self._start_state = (x + y * width, int(env.agent_dir), tuple(doors), tuple(positions))

    def _enumerate(
        self, codes: Sequence[int], max_states: int
    ) -> tuple[list[tuple], np.ndarray, np.ndarray]:
        """BFS over the reachable full states: (states, next (n, len(codes)), terminal (n,)).

        A terminal state (on lava) is not expanded: its row of ``next`` is itself.
        """
        width = self.width
        offsets = [dx + dy * width for dx, dy in _DIR_TO_VEC]
        wall, lava, empty, door_at = self._wall, self._lava, self._empty, self._door_at
        colours = self._door_colours
        keys = [obj.color if obj.type == "key" else None for obj in self._objects]
        one_way = self.one_way_doors
        start = self._start_state
        ids = {start: 0}
        states = [start]
        rows: list[list[int]] = []
        queue = deque([start])
        while queue:
            state = queue.popleft()
            cell, direction, doors, objects = state
            if lava[cell]:
                rows.append([ids[state]] * len(codes))
                continue
            front = cell + offsets[direction]
            carried = objects.index(-1) if -1 in objects else -1
            row = []
            for code in codes:
                nxt = state
                if code == 0:  # left: turn counter-clockwise
                    nxt = (cell, (direction - 1) % 4, doors, objects)
                elif code == 1:  # right: turn clockwise
                    nxt = (cell, (direction + 1) % 4, doors, objects)
                elif code == 2:  # forward: onto a cell that can be overlapped
                    door = door_at[front]
                    blocked = wall[front] or front in objects or (door >= 0 and doors[door])
                    if not blocked:
                        nxt = (front, direction, doors, objects)
                elif code == 3:  # pickup: a key or ball in front, hands empty
                    if carried < 0 and front in objects:
                        i = objects.index(front)
                        nxt = (cell, direction, doors, (*objects[:i], -1, *objects[i + 1 :]))
                elif code == 4:  # drop: onto an empty cell in front
                    if carried >= 0 and empty[front] and front not in objects:
                        i = carried
                        nxt = (cell, direction, doors, (*objects[:i], front, *objects[i + 1 :]))
                elif code == 5:  # toggle a door: a locked one opens with the key of its colour
                    door = door_at[front]
                    if door >= 0:
                        now = doors[door]
                        if now == _LOCKED:
                            has_key = carried >= 0 and keys[carried] == colours[door]
                            new = _OPEN if has_key else _LOCKED
                        elif now == _OPEN:
                            new = _OPEN if one_way else _CLOSED
                        else:
                            new = _OPEN
                        if new != now:
                            nxt = (
                                cell,
                                direction,
                                (*doors[:door], new, *doors[door + 1 :]),
                                objects,
                            )
                # code 6, done: a no-op
                index = ids.get(nxt)
                if index is None:
                    index = ids[nxt] = len(states)
                    if index >= max_states:
                        raise ValueError(
                            f"{self.env_id} (env seed {self.env_seed}) has more than {max_states} "
                            "reachable states; raise max_states, keep fewer actions, or set "
                            "one_way_doors"
                        )
                    states.append(nxt)
                    queue.append(nxt)
                row.append(index)
            rows.append(row)
        next_state = np.array(rows, dtype=np.int64).reshape(len(states), len(codes))
        terminal = np.array([lava[state[0]] for state in states], dtype=bool)
        return states, next_state, terminal

    def _default_goal(self) -> int:
        """The layout's goal tile, or (a layout without one) the cell farthest from the start."""
        if self._goal_tile is not None and self._is_goal_cell[self._goal_tile]:
            return self._goal_tile
        lengths = self.shortest_path_lengths(0)
        lengths[~np.isfinite(lengths)] = -1
        return int(np.argmax(lengths))

    # ----------------------------------------------------------------------------------------
    # gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, int], dict[str, Any]]:
        """Restore the layout's start; ``options`` may set "goal" (a cell id) and "start" (a
        non-terminal state id) for this episode."""
        super().reset(seed=seed)
        options = options or {}
        start = options.get("start")
        if start is None:
            start = 0
        elif not (0 <= int(start) < self.n_states) or self._terminal_list[int(start)]:
            raise ValueError(f"reset option start={start!r} is not a non-terminal state id")
        goal = options.get("goal")
        if goal is None:
            goal = self.default_goal
        elif not (0 <= int(goal) < self.n_cells) or not self._is_goal_cell[int(goal)]:
            raise ValueError(f"reset option goal={goal!r} is not a cell the agent can stand on")
        start, goal = int(start), int(goal)
        if self._cell_list[start] == goal:
            raise ValueError(f"the start state {start} is already on the goal cell {goal}")
        self._goal, self._state, self._steps = goal, start, 0
        cell = self._cell_list[start]
        return {"observation": start, "achieved_goal": cell, "desired_goal": goal}, {
            "is_success": False
        }

    def step(self, action: int) -> tuple[dict[str, int], SupportsFloat, bool, bool, dict[str, Any]]:
        """One MiniGrid action (the ``action``-th kept one); see the class docstring."""
        a = int(action)
        if not 0 <= a < len(self.actions):
            raise ValueError(f"action {action!r} is not one of 0..{len(self.actions) - 1}")
        state = self._next_rows[self._state][a]
        self._state = state
        self._steps += 1
        cell = self._cell_list[state]
        success = cell == self._goal
        terminated = success or self._terminal_list[state]
        truncated = not terminated and self._steps >= self.max_episode_steps
        obs = {"observation": state, "achieved_goal": cell, "desired_goal": self._goal}
        reward = 1.0 if success else self._cell_reward_list[cell]
        return obs, reward, terminated, truncated, {"is_success": success}

    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> np.ndarray:
        """1.0 where achieved == desired, else ``death_reward`` on a lava cell, else 0.0
        (float32, one per pair).

        Goals are cell ids: a scalar, a batch ``(batch,)``, or a batch with a trailing goal axis
        of size 1 (how Stable-Baselines3 stores a Discrete goal), which is reduced.
        """
        achieved, desired = goal_ids(achieved_goal), goal_ids(desired_goal)
        return np.where(achieved == desired, np.float32(1.0), self._cell_rewards[achieved])

    def render(self) -> np.ndarray | None:
        """MiniGrid's full render of the current state (agent drawn, no view highlight)."""
        if self.render_mode != "rgb_array":
            gymnasium.logger.warn('MiniGridGoalEnv.render() needs render_mode="rgb_array"')
            return None
        self.restore(self._state)
        return self._grid_env.get_frame(highlight=False, tile_size=16)

    def close(self) -> None:
        """Close the MiniGrid env."""
        self.minigrid_env.close()

    # ----------------------------------------------------------------------------------------
    # the env protocol (sshr_torch's optional methods)

    @property
    def start(self) -> int:
        """The id of the layout's start state (0)."""
        return 0

    @property
    def goal(self) -> int:
        """The current episode's goal cell."""
        return self._goal

    @property
    def state(self) -> int:
        """The current full-state id."""
        return self._state

    def goal_of_state(self, states: Any) -> np.ndarray:
        """The cell (achieved goal) of each state id, int64, same shape."""
        return self._cell[np.asarray(states, dtype=np.int64)]

    def transition_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(next (n_states, n_actions) int64, terminal (n_states,) bool), read-only.

        Terminal states (on lava) lead to themselves. MiniGrid's goal tile is not terminal
        here: reaching the desired goal ends an episode, whichever cell it is.
        """
        return self._next, self._terminal

    def shortest_path_lengths(self, state: int) -> np.ndarray:
        """Fewest actions from ``state`` to a state on each cell, float64 (n_cells,); inf for
        cells out of reach and cells that are no goal (walls, lava)."""
        state = int(state)
        distance = np.full(self.n_states, -1, dtype=np.int64)
        distance[state] = 0
        frontier = np.array([state], dtype=np.int64)
        depth = 0
        while frontier.size:
            depth += 1
            live = frontier[~self._terminal[frontier]]
            reached = np.unique(self._next[live].ravel())
            frontier = reached[distance[reached] < 0]
            distance[frontier] = depth
        lengths = np.full(self.n_cells, np.inf)
        ok = (distance >= 0) & ~self._terminal
        np.minimum.at(lengths, self._cell[ok], distance[ok].astype(np.float64))
        return lengths

    def goal_grid(self) -> np.ndarray:
        """int64 (height, width): the goal id (cell) of each grid cell, -1 where none."""
        ids = np.arange(self.n_cells, dtype=np.int64)
        return np.where(self._is_goal_cell, ids, -1).reshape(self.height, self.width)

    def background_image(self, cell_px: int) -> np.ndarray:
        """uint8 (height * cell_px, width * cell_px, 3): MiniGrid's own render of the layout at
        its start (doors and objects as they start), without the agent."""
        cell_px = int(cell_px)
        if cell_px not in self._background:
            self.restore(0)
            image = self._grid_env.grid.render(cell_px, agent_pos=(-1, -1), agent_dir=None)
            image.setflags(write=False)
            self._background[cell_px] = image
        return self._background[cell_px].copy()

    def return_range(self, step_reward: float = 0.0, gamma: float = 1.0) -> tuple[float, float]:
        """(lowest, highest) return of an episode, with ``step_reward`` added to every reward.

        Every nonzero reward (the goal's 1, a death's ``death_reward``) ends the episode, so a
        return is 0 or one of them; a step reward c <= 0 adds between c / (1 - gamma) (never
        ending) and c (ending at once).
        """
        return episode_return_range([0.0, self.goal_reward, self.death_reward], step_reward, gamma)

    def fingerprint(self) -> str:
        """sha256 of the env id, its kwargs, the env seed, the kept actions, the door rule and
        the layout's grid encoding and start."""
        self.restore(0)
        grid = self._grid_env.grid.encode()
        parts = {
            "env_id": self.env_id,
            "env_kwargs": {k: v for k, v in self.env_kwargs.items() if k != "render_mode"},
            "env_seed": self.env_seed,
            "actions": list(self.actions),
            "one_way_doors": self.one_way_doors,
            "death_reward": self.death_reward,
            "start": [int(v) for v in self._grid_env.agent_pos] + [int(self._grid_env.agent_dir)],
            "grid": grid.tolist(),
        }
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    # ----------------------------------------------------------------------------------------
    # MiniGrid's side

    def restore(self, state: int) -> None:
        """Put the MiniGrid env in full state ``state`` (agent, doors, objects, carrying)."""
        cell, direction, doors, objects = self._states[int(state)]
        env = self._grid_env
        env.agent_pos = (cell % self.width, cell // self.width)
        env.agent_dir = direction
        for obj, door in zip(self._door_objects, doors, strict=True):
            obj.is_open, obj.is_locked = door == _OPEN, door == _LOCKED
        grid = env.grid.grid
        for i, obj in enumerate(grid):  # lift every movable object, then put them back
            if obj is not None and any(obj is o for o in self._objects):
                grid[i] = None
        env.carrying = None
        for obj, position in zip(self._objects, objects, strict=True):
            if position < 0:
                env.carrying = obj
                obj.cur_pos = np.array([-1, -1])
            else:
                grid[position] = obj
                obj.cur_pos = (position % self.width, position // self.width)

    def state_of(self, grid_env: Any | None = None) -> int | None:
        """The full-state id of a MiniGrid env of this layout (default: the wrapped one), read
        from its agent, doors and objects; None for a state that is not reachable here."""
        env = grid_env if grid_env is not None else self._grid_env
        env = env.unwrapped
        x, y = (int(v) for v in env.agent_pos)
        doors, where = [], {}
        for cell, obj in enumerate(env.grid.grid):
            if obj is None:
                continue
            if obj.type == "door":
                doors.append(_OPEN if obj.is_open else _LOCKED if obj.is_locked else _CLOSED)
            elif obj.type in ("key", "ball"):
                where[(obj.type, obj.color, id(obj))] = cell
        if grid_env is None:
            objects = [where.get((o.type, o.color, id(o)), -1) for o in self._objects]
        else:  # another env instance: match its objects by kind and colour, in grid order
            own = [(o.type, o.color) for o in self._objects]
            found = sorted(where.items(), key=lambda item: item[1])
            objects = []
            for kind in own:
                match = next((k for k in found if k[0][:2] == kind), None)
                if match is None:
                    objects.append(-1)
                else:
                    found.remove(match)
                    objects.append(match[1])
        key = (x + y * self.width, int(env.agent_dir), tuple(doors), tuple(objects))
        return self._ids.get(key)
