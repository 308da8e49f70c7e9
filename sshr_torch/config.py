"""TrainConfig: the one source of truth for a training run.

Every field has a docstring right under it; the command line (sshr_torch.train) turns each field
into a kebab-case flag whose ``--help`` text is that docstring, and experiments build the
dataclass directly. ``validate()`` checks every value a user can get wrong and raises
``ConfigError`` with one sentence that names the flag.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sshr_torch.her import StrategyName as HerName
from sshr_torch.smart_start import ExploreName, ModelGoals, ModelLoss, ModelMode, SsValue, UcbForm

AgentName = Literal["dqn", "tabular"]
LossName = Literal["huber", "mse"]
ModelValuesName = Literal["off", ModelMode]
PresetName = Literal["paper"]
QHeadName = Literal["mlp", "distance"]

# The default run length when neither `episodes` nor `total_steps` is set: enough for the DQN
# with Smart Start and HER to learn a greedy path on keulen_easy in a minute or two on a
# 2-core CPU.
DEFAULT_TOTAL_STEPS = 50_000
# Discount factors when `gamma` is unset: Keulen's 0.99 for tabular Q-learning; 0.999 for the
# DQN, with its reward -1 per step (`step_reward`): neighbouring values then differ by
# gamma^d, 0.6 at d = 520 moves, where with the HER paper's 0.98 and reward 1 at the goal they
# differ by 6e-7, below what a network fits (docs/long_mazes.md).
DEFAULT_GAMMA = {"tabular": 0.99, "dqn": 0.999}
# The DQN's defaults for episodes longer than this (paths the paper's 1,000-step limit cannot
# hold): at 0.999 the count model's one-move gap gamma^d is 0.10 beyond 2,000 moves, the size of
# the fit's error, and no greedy path was learnt on 101x101 mazes; gamma 0.99999 keeps it
# >= 0.92 up to 7,894 moves, and the 'split' loss fits those gaps whatever the values' size
# (greedy shortest paths of 2,054-2,382 moves: docs/large_mazes.md).
LONG_EPISODE_STEPS = 1000
LONG_PATHS: dict[str, Any] = {"gamma": 0.99999, "model_loss": "split"}
# Eq. 1's value term when `ss_value` is unset (docs/long_mazes.md has the DQN's measurements).
DEFAULT_SS_VALUE = {"tabular": "learner", "dqn": "zero"}
# More torch threads than this is a typo, not a machine (torch overflows on huge counts).
MAX_TORCH_THREADS = 4096
# The largest magnitude of a return (step_reward over an episode) the DQN takes: the squared
# TD errors of a minibatch stay far inside float32's range (3.4e38).
MAX_RETURN = 1e9

# The settings the paper states (Sec. V, Algorithm 1): every default agrees with them.
PAPER_SETTINGS: dict[str, Any] = {
    "maze": "keulen_easy",  # the Easy grid world of Keulen's thesis (Fig. 2)
    "max_episode_steps": 1000,  # "the limit of steps per episode which is 1000"
    "smart_start": True,
    "eta": 1.0,  # "Smart Start each episode ... eta = 1" (never in the first episode)
    "c_ss": 0.1,  # "a value of c_ss = 0.1 is utilized"
    "ucb_form": "paper",  # Eq. 1: c_ss * sqrt(log N / C(s))
    "her": "future",  # "the second strategy is used": goals from later in the same episode
    "her_k": 4,  # the HER paper's k = 4 for 'future' (the paper cites it [20] for HER)
}
# This project's defaults where the paper gives no setting (its learner is unnamed and it
# states no DQN settings) or where they depart from its text, with why; the evidence for the
# DQN's is docs/long_mazes.md. Flag value -> why.
PROJECT_CHOICES: dict[str, str] = {
    "--n-step 10": "DQN: 1-step targets overestimate the values far from the goal 2-3x",
    "--gamma 0.999": "DQN (tabular 0.99, Keulen's): values 520 moves out still differ; "
    "episodes over 1,000 steps get 0.99999 and --model-loss split (LONG_PATHS: greedy paths of "
    "2,000+ moves, docs/large_mazes.md)",
    "--step-reward -1": "DQN: values like negative distances, not 1e-6 apart",
    "--model-values q": "DQN: the count model's values carry the credit beyond ~100 moves",
    "--model-goals all": "DQN: those values for every goal of a batch, HER's too, not only the "
    "episode's (goal reach 1.00 where it was 0.11: docs/goal_reach.md)",
    "--ss-value zero": "DQN: Eq. 1 from counts alone, as the paper's text (tabular: learner, "
    "Keulen's code)",
    "--random-until-goal": "DQN: random moves until a goal is first reached, as the tabular "
    "learner's ties, not the untrained network's argmax",
    "--explore directed": "with Smart Start, until the goal is first reached: UCB1 over the "
    "counts and walks to the nearest untried action, not a random walk (first goal 0.7-1.2x a "
    "frontier explorer's steps, not 9-51x: docs/large_mazes.md)",
}
# The paper's setting as written, beyond PAPER_SETTINGS: the defaults' readings and choices
# replaced by the paper's text (see docs/design.md for each reading).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        **PAPER_SETTINGS,
        # Sec. V: "Through the experiment the value function will be zero": Eq. 1 from counts.
        "ss_value": "zero",
        # The reward of Sec. V, 1 at the goal and 0 otherwise, as the learner sees it.
        "step_reward": 0.0,
        # Plain 1-step TD targets, no count-model values in them: the paper adds none.
        "n_step": 1,
        "model_values": "off",
        # pi_explore: epsilon-greedy from the first step, the one exploration rule the paper
        # mentions (Sec. III.A) and Keulen's code's; the paper names no schedule.
        "random_until_goal": False,
        "explore": "epsilon",
        "ss_frontier": False,
        # The paper states no discount; 0.99 is Keulen's, whose Smart Start and mazes it takes.
        "gamma": 0.99,
    },
}


# Settings of the maze env (the --maze shortcut): an env named by --env brings its own.
MAZE_FIELDS = ("maze", "slip", "random_start", "random_goal")


class ConfigError(ValueError):
    """A configuration value a user gave is invalid; the message names the flag."""


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a training run (Smart Start + HER on a goal-conditioned learner)."""

    # --- what is trained -------------------------------------------------------------------
    preset: PresetName | None = None
    """A named set of settings applied first, when the config is built ('paper': the paper's
    setting as written: Eq. 1 from counts alone, reward 1 at the goal and 0 per step, 1-step
    targets, no count-model values, epsilon-greedy from the first step, gamma 0.99, and the
    paper's maze, episode limit, eta, c_ss and HER). Settings given explicitly (flags, or
    keyword arguments of TrainConfig) win over the preset's; config.json records the preset
    and every resolved value, and a resume reads those back as they are."""
    agent: AgentName = "dqn"
    """Learner: 'dqn' (goal-conditioned DQN, torch) or 'tabular' (goal-conditioned Q-learning)."""
    her: HerName = "future"
    """HER goal-selection strategy: none, final, future, episode or random."""
    her_k: int = 4
    """HER relabels per real transition (k)."""
    smart_start: bool = True
    """Use Smart Start: walk to the UCB-chosen state S_ss before exploring (paper Sec. III.A)."""
    eta: float = 1.0
    """Probability that an episode (after the first) starts with a Smart Start phase."""
    c_ss: float = 0.1
    """Exploration weight c_ss of the UCB rule that chooses S_ss (paper Eq. 1)."""
    ucb_form: UcbForm = "paper"
    """Where c_ss sits: 'paper' c*sqrt(ln N / C(s)), or 'keulen' sqrt(c * ln N / C(s))."""
    ss_value: SsValue | None = None
    """The value term of Eq. 1 that Smart Start adds to the count bonus when it picks S_ss:
    'learner', the learner's max_a Q(s, g) for the episode's goal (Keulen's code); 'zero', counts
    alone, as the paper's text says (Sec. V): "Through the experiment the value function will be
    zero. This makes the Smart Start parameter c_ss irrelevant". Unset: 'learner' for the
    tabular learner (Keulen's code), 'zero' for the DQN (its untrained values are noise, and its
    learnt ones keep every walk on the path it knows: docs/long_mazes.md)."""
    theta: float = 0.0
    """The guided walk ends within this grid distance of S_ss (0: the exact state, as Keulen)."""
    replan: bool = False
    """Replan the walk to S_ss when a stochastic step leaves the planned path."""
    explore: ExploreName | None = None
    """What the learner does after the guided walk while the episode's goal has never been
    reached (envs that know the goal of a state: docs/envs.md): 'epsilon', the paper's
    epsilon-greedy (uniformly random moves: the tabular learner's values are then all 0, and
    the DQN's with random_until_goal); 'ucb1', UCB1 over Smart Start's counts C(s, a), untried
    actions first, then the least-tried (Keulen's UCB1 learner with the values of a goal never
    reached, 0); 'directed', UCB1, and where no untried action is left a guided walk to the
    nearest frontier state (one with an untried action): Smart Start again, mid-episode (a
    departure from Algorithm 1; the first goal 10-50x sooner on 41x41-201x201 perfect mazes,
    docs/large_mazes.md). Once the goal has been reached, the learner's epsilon-greedy in every
    case. Unset: 'directed' with Smart Start on such an env, 'epsilon' otherwise."""
    ss_frontier: bool | None = None
    """Eq. 1 chooses S_ss among the frontier only, the states that still have an untried
    action (those never left score highest: the walk resumes where the last episode stopped),
    while there is one; off: among all visited states, as the paper's Algorithm 1. Unset: on
    with the 'directed' exploration (--explore, set or by default), off otherwise."""

    # --- environment -----------------------------------------------------------------------
    env: str | None = None
    """A gymnasium env id to train on instead of the maze: any registered id, 'module:Env-v0'
    (imports the module that registers it), or a MiniGrid id ('MiniGrid-...', 'BabyAI-...';
    the optional extra sshr_torch[minigrid]). It must follow the goal-env convention; what else
    the run uses is the env protocol (docs/envs.md). Unset: the maze (--maze)."""
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """With --env: keyword arguments of the env's constructor, as a JSON object
    ('{"size": 9}')."""
    env_seed: int | None = None
    """With --env: the env's seed (MiniGrid: its layout, given at construction; other envs:
    the seed of the first reset). Unset: derived from the run's --seed."""
    maze: str = "keulen_easy"
    """Maze: a built-in name, a path to a text file, or 'generated:HxW[:seed=N][:kind=K]'
    (the shortcut for the maze env; with --env it is not used)."""
    max_episode_steps: int = 1000
    """Episode step limit (the paper uses 1000; Keulen's code 100). Guided steps count. An env
    passed to train() gets it as a TimeLimit (its own limit holds where shorter)."""
    slip: float = 0.0
    """Probability that a move is replaced by a random other move (stochastic mazes)."""
    random_start: bool = False
    """Draw a random start cell every episode."""
    random_goal: bool = False
    """Draw a random goal cell every episode (goal-conditioned training)."""

    # --- run length and bookkeeping --------------------------------------------------------
    episodes: int | None = None
    """Episodes to train (both this and total_steps unset: the default run of 50,000 steps)."""
    total_steps: int | None = None
    """Env steps to train; with episodes also set, training stops at whichever comes first."""
    seed: int = 0
    """The one seed every random number of the run comes from."""
    run_dir: str | None = None
    """Run directory (default runs/{maze}__{agent}__her-{her}__ss-{0|1}__s{seed}__{time})."""
    runs_root: str = "runs"
    """Parent directory of the default run directory."""
    resume: str | None = None
    """Continue the run in this directory from its last checkpoint, with its saved config."""
    device: str = "cpu"
    """Torch device for the DQN: 'cpu', 'cuda', or 'auto' (CUDA when present)."""
    torch_threads: int = 1
    """Torch CPU threads, set for the whole process by the run (1 is fastest for these small
    networks)."""
    flush_denormal: bool = True
    """Flush subnormal floats to zero on the CPU, for the whole process (x86 computes several
    times slower on them, and Adam's second moments decay into that range in long runs)."""
    quiet: bool = False
    """No progress bar and no closing summary on the terminal."""

    # --- DQN -------------------------------------------------------------------------------
    hidden_sizes: tuple[int, ...] = (256,)
    """DQN hidden layer sizes (the HER paper: one layer of 256)."""
    q_head: QHeadName = "mlp"
    """DQN: the Q-network. 'mlp': an MLP on one-hot(state) || one-hot(goal); 'distance':
    Q(s, g, a) = -d(x_a(s), y(g)), a quasimetric distance between an embedding of the state
    per action and one of the goal (a metric residual network: a learnt way from s to m and
    from m to g bounds the way from s to g), encoders of one hidden layer of hidden_sizes[0];
    off the fast path (docs/goal_reach.md measures it)."""
    batch_size: int = 128
    """DQN minibatch size."""
    learning_rate: float = 1e-3
    """DQN Adam learning rate."""
    lr_half_life: int = 0
    """DQN: halve the learning rate every this many gradient updates (exponential decay, for
    a fit that keeps getting finer over long runs); 0: constant."""
    loss: LossName = "huber"
    """DQN TD loss: 'huber' (smooth L1, beta 1) or 'mse'."""
    fast_path: bool = True
    """DQN: use the hand-derived update of the default network on the CPU where it applies (the
    same maths as the autograd + torch.optim path, several times faster at batch 128)."""
    gamma: float | None = None
    """Discount factor (unset: 0.99 for tabular as Keulen; 0.999 for the DQN, 0.99999 when
    episodes are longer than 1,000 steps: LONG_PATHS)."""
    train_freq: int = 1
    """DQN: one gradient update every this many env steps."""
    learning_starts: int = 1000
    """DQN: env steps before the first gradient update."""
    buffer_size: int = 100_000
    """HER replay buffer capacity, in transitions."""
    target_update_interval: int = 500
    """DQN: gradient updates between hard target-network syncs."""
    tau: float = 1.0
    """DQN target update rate: 1 is a hard sync, < 1 is Polyak averaging every update."""
    n_step: int = 10
    """DQN: n-step returns from the HER buffer, the relabelled goal's rewards recomputed over
    the window and the window cut where that goal is achieved (1: one-step TD). With 1-step
    targets the values of states far from the goal are 2-3x too high (docs/long_mazes.md)."""
    n_step_cut: bool = False
    """DQN: an n-step window ends before a step whose action was not the learner's (Smart
    Start's guided walks, the directed exploration's moves), so the sums only run over the
    learner's own moves (docs/goal_reach.md measures it)."""
    off_policy_weight: float = 1.0
    """DQN: the relative weight with which a replay batch draws a step whose action was not the
    learner's (Smart Start's guided walks, the directed exploration's moves); 1: uniform over
    all stored steps, 0: never, > 1: more often (docs/goal_reach.md measures it)."""
    all_actions: bool = False
    """DQN with Smart Start and --model-values off, on envs that know the goal of a state:
    regress every action the count model has seen in a replay row's state (deterministic
    moves), not only the taken one, onto its one-step target r + gamma max_b Q_target(s'_a,
    g, b) from the network's own values (the taken action keeps its n-step target), in the
    loss of --model-loss (docs/goal_reach.md measures it)."""
    priority_alpha: float = 0.0
    """DQN with --model-values off: prioritised replay (Schaul et al. 2016) where above 0, in
    [0, 1]: a stored step is drawn with probability proportional to its last |TD error| to
    this power (the goal it was replayed for, real or relabelled), with importance weights
    (beta 0.4) in the loss; 0: uniform. The general update, not the fast path
    (docs/goal_reach.md measures it)."""
    model_rows: float = 0.0
    """DQN with Smart Start, on envs that know the goal of a state: the share of each replay
    batch drawn from Smart Start's count model instead of the buffer (Dyna-style one-step rows:
    a move (s, a, s') uniform over the moves the model has seen, a goal uniform over the states
    it has seen, rewarded and ended as a relabelled step), so that every (state, goal) pair the
    model knows is fitted, not only those replay's episodes pair up; 0: off, below 1
    (docs/goal_reach.md measures it)."""
    step_reward: float = -1.0
    """DQN: added to every reward the learner sees, real and relabelled (-1 with the maze's
    goal reward 1: 0 at the goal, -1 per other step, values like negative distances). <= 0."""
    model_values: ModelValuesName = "q"
    """DQN with Smart Start, on envs that know the goal of a state (docs/envs.md): use the
    values of Smart Start's count model for the env's goal (value iteration in the env's
    rewards, refreshed after each episode; where the model knows a path). 'q': regress the
    network's Q(s, g, .) onto the model's Q(s, g, a) for every action the model knows in the
    batch's states (rows with that goal; the TD target elsewhere); 'target': bootstrap those
    rows from the model's V(s', g); 'floor': from max(Q_target(s', g), V_model(s', g)); 'off':
    the pure DQN + HER targets. docs/long_mazes.md measures each."""
    model_loss: ModelLoss | None = None
    """With model_values 'q': how the loss weighs a row's targets. 'entries': Huber over every
    entry with a target; 'split': Huber over each row's mean error plus over the errors about it,
    so that the differences between a state's actions (one move) are fitted even where the
    values (thousands of moves) are off by more than Huber's 1 (docs/large_mazes.md). Unset:
    'entries', and 'split' when episodes are longer than 1,000 steps (LONG_PATHS)."""
    model_goals: ModelGoals = "all"
    """With model_values: the goals the count model gives values for. 'all': every goal of a
    batch, HER's relabelled ones included, from the fewest moves the model has seen into each
    (a cached reverse breadth-first search per goal, while every move the model has seen is
    deterministic; the env's goal alone otherwise); 'env': the episode's goal only.
    docs/goal_reach.md measures both."""
    count_bonus: float = 0.0
    """beta of a count bonus beta / sqrt(C(s, a)) added to the reward of every real transition
    the learner and the replay buffer see (#Exploration / MBIE-EB style; HER relabels get
    none); 0: off. A baseline to run without Smart Start (--no-smart-start)."""
    random_until_goal: bool = True
    """DQN with Smart Start and --explore epsilon, on envs that know the goal of a state:
    while an episode's goal has never been reached, explore after the guided walk with uniformly
    random moves, as the tabular learner does (its values for such a goal are all 0, its ties
    random), not with the network's argmax, which is then extrapolation (docs/long_mazes.md)."""
    double_dqn: bool = False
    """DQN: use the Double DQN target."""
    advantage_alpha: float = 0.0
    """DQN: advantage learning's alpha in [0, 1) (Bellemare et al. 2016): each TD target less
    alpha times the taken action's gap to the best one under the target network, which widens
    the gaps between a state's actions; 0: off (docs/goal_reach.md measures it)."""
    max_grad_norm: float = 10.0
    """DQN: gradient-norm clipping threshold."""
    clip_target: bool = True
    """DQN: clamp TD targets to the env's range of returns (the env protocol's return_range:
    the maze's is [0, 1] with the default rewards, the goal's reward 1, or a decoy's smaller
    one, ends the episode), as the HER paper clips targets to its return range. Without it the
    Q-values of a goal never reached drift far above 1 when gamma is near 1, and swamp the count
    bonus of Smart Start's Eq. 1. Envs without return_range are never clamped."""
    epsilon_start: float = 1.0
    """DQN: epsilon of the linear exploration schedule at step 0."""
    epsilon_end: float = 0.05
    """DQN: epsilon at the end of the schedule."""
    epsilon_decay_steps: int = 20_000
    """DQN: env steps over which epsilon falls linearly from start to end."""

    # --- tabular ---------------------------------------------------------------------------
    alpha: float = 0.1
    """Tabular: learning rate (Keulen: 0.1)."""
    tabular_epsilon: float = 0.1
    """Tabular: constant epsilon of epsilon-greedy (Keulen: 0.1)."""

    # --- evaluation, dashboards, checkpoints -----------------------------------------------
    eval_interval: int = 20
    """Greedy evaluation every this many episodes (0: only the final one)."""
    eval_episodes: int = 5
    """Greedy episodes per evaluation."""
    eval_goals: int | None = None
    """Goal reach: each evaluation also walks greedily to this many goals at once, drawn once
    per run from the states the run has visited (from random starts too, where the env draws
    its start at random); a goal counts as reached on arrival within 1.5x its shortest path
    (the env's own, else the count model's). Logged as eval/goals_success and
    eval/goals_excess, in summary.json and as the maze/goal_reach image. Unset: 50 on envs
    that know the goal of a state (the maze; docs/envs.md), off elsewhere; 0: off."""
    image_interval: int = 100
    """Heatmap and policy images to TensorBoard every this many episodes (0: only at the end)."""
    checkpoint_interval: int = 50
    """Checkpoint every this many episodes (and always at the end)."""
    stop_success: float | None = None
    """Stop the run at the first greedy evaluation whose success rate is at least this (unset:
    play the whole budget); summary.json's solved_step is its env step."""
    stop_path_factor: float | None = None
    """With stop_success: the evaluation must also have a mean episode length of at most this
    times the mean shortest path of its episodes (1.2: near-optimal paths; needs the env's
    shortest_path_lengths, docs/envs.md)."""
    stop_first_goal: bool = False
    """Stop the run after the first training episode that reaches the goal (first-goal
    measurements); summary.json's first_success_step is its env step."""

    def validate(self) -> TrainConfig:
        """Check every value; raise ConfigError naming the flag. Returns self."""
        for name, value in dataclasses.asdict(self).items():
            _check_type(name, value, f"--{flag(name)}")
        for name in ("her_k", "max_episode_steps", "batch_size", "train_freq", "buffer_size"):
            _positive(name, getattr(self, name))
        for name in ("target_update_interval", "eval_episodes", "torch_threads", "n_step"):
            _positive(name, getattr(self, name))
        if self.eval_goals is not None and self.eval_goals < 0:
            raise ConfigError(f"--eval-goals must be >= 0, got {self.eval_goals}.")
        for name in ("episodes", "total_steps"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        for name in (
            "learning_starts",
            "epsilon_decay_steps",
            "eval_interval",
            "image_interval",
            "lr_half_life",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{flag(name)} must be >= 0, got {getattr(self, name)}.")
        _positive("checkpoint_interval", self.checkpoint_interval)
        for name in ("eta", "slip", "epsilon_start", "epsilon_end", "tabular_epsilon", "tau"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"--{flag(name)} must be in [0, 1], got {value}.")
        if self.stop_success is not None and not 0.0 < self.stop_success <= 1.0:
            raise ConfigError(f"--stop-success must be in (0, 1], got {self.stop_success}.")
        if self.stop_path_factor is not None and not self.stop_path_factor >= 1.0:
            raise ConfigError(f"--stop-path-factor must be >= 1, got {self.stop_path_factor}.")
        if self.tau == 0.0:
            raise ConfigError("--tau must be in (0, 1], got 0.")
        if not (self.step_reward <= 0.0 and math.isfinite(self.step_reward)):
            raise ConfigError(
                f"--step-reward must be a finite number <= 0, got {self.step_reward}."
            )
        if self.gamma is not None and not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"--gamma must be in [0, 1], got {self.gamma}.")
        # The DQN's lowest return: c / (1 - gamma) at most, c per step for a whole episode
        # when gamma is 1. Its TD targets and squared errors are float32 (max 3.4e38).
        gamma = self.discount
        horizon = 1.0 / (1.0 - gamma) if gamma < 1.0 else float(self.max_episode_steps)
        if self.agent == "dqn" and abs(self.step_reward) * horizon > MAX_RETURN:
            raise ConfigError(
                f"--step-reward {self.step_reward:g} with --gamma {gamma:g}: returns reach "
                f"{self.step_reward * horizon:.3g}, beyond the -{MAX_RETURN:.0e} that the DQN's "
                "float32 targets hold; use a step reward nearer 0."
            )
        for name in ("c_ss", "theta", "max_grad_norm", "count_bonus", "off_policy_weight"):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise ConfigError(f"--{flag(name)} must be a finite number >= 0, got {value}.")
        if self.q_head == "distance" and len(self.hidden_sizes) != 1:
            raise ConfigError(
                f"--q-head distance has encoders of one hidden layer; give one --hidden-sizes, "
                f"got {self.hidden_sizes}."
            )
        if not 0.0 <= self.advantage_alpha < 1.0:
            raise ConfigError(f"--advantage-alpha must be in [0, 1), got {self.advantage_alpha}.")
        if not 0.0 <= self.priority_alpha <= 1.0:
            raise ConfigError(f"--priority-alpha must be in [0, 1], got {self.priority_alpha}.")
        if self.priority_alpha:
            clashes = [
                f"--{flag(n)}" for n in ("off_policy_weight", "model_rows") if self.given([n])
            ]
            if self.agent != "dqn" or self.model_values != "off" or clashes:
                raise ConfigError(
                    f"--priority-alpha {self.priority_alpha:g} prioritises the DQN's TD loss: "
                    "it needs --agent dqn and --model-values off, without "
                    "--off-policy-weight or --model-rows."
                )
        if self.all_actions and (
            self.agent != "dqn" or not self.smart_start or self.model_values != "off"
        ):
            raise ConfigError(
                "--all-actions takes every action's next state from Smart Start's count model "
                "and its values from the network: it needs --agent dqn, Smart Start and "
                "--model-values off (the model's values already cover every action)."
            )
        if not 0.0 <= self.model_rows < 1.0:
            raise ConfigError(f"--model-rows must be in [0, 1), got {self.model_rows}.")
        if self.model_rows and (self.agent != "dqn" or not self.smart_start):
            raise ConfigError(
                f"--model-rows {self.model_rows:g} draws rows from Smart Start's count model "
                "for the DQN's batches; it needs --agent dqn and Smart Start."
            )
        for name in ("learning_rate", "alpha"):
            # Above 1 a step overshoots its target: Q diverges to inf and NaN.
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"--{flag(name)} must be in (0, 1], got {value}.")
        if self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed}.")
        if self.torch_threads > MAX_TORCH_THREADS:
            raise ConfigError(
                f"--torch-threads must be at most {MAX_TORCH_THREADS}, got {self.torch_threads}."
            )
        if self.env is not None and self.env.strip() == "":
            raise ConfigError("--env needs a gymnasium env id, got an empty string.")
        if any(not isinstance(key, str) for key in self.env_kwargs):
            raise ConfigError(f"--env-kwargs must be a JSON object, got {self.env_kwargs!r}.")
        if self.env is None and self.env_kwargs:
            raise ConfigError("--env-kwargs needs --env (the maze takes its own flags).")
        if self.env is None and self.env_seed is not None:
            raise ConfigError("--env-seed needs --env (the maze's seed is --seed).")
        if self.env_seed is not None and self.env_seed < 0:
            raise ConfigError(f"--env-seed must be a non-negative integer, got {self.env_seed}.")
        if self.env is not None:
            given = self.given(MAZE_FIELDS)
            if given:
                flags = ", ".join(f"--{flag(name)}" for name in given)
                raise ConfigError(
                    f"{flags}: settings of the maze env, which --env {self.env} does not use; "
                    "leave them out (configure the env with --env-kwargs)."
                )
        if self.resume is not None and self.resume.strip() == "":
            raise ConfigError("--resume needs a run directory, got an empty string.")
        if not self.hidden_sizes or any(size <= 0 for size in self.hidden_sizes):
            raise ConfigError(f"--hidden-sizes must be positive integers, got {self.hidden_sizes}.")
        for name, kind in (
            ("agent", AgentName),
            ("her", HerName),
            ("ucb_form", UcbForm),
            ("loss", LossName),
            ("model_values", ModelValuesName),
            ("model_goals", ModelGoals),
            ("q_head", QHeadName),
        ):
            _choice(name, getattr(self, name), get_args(kind))
        if self.model_loss is not None:
            _choice("model_loss", self.model_loss, get_args(ModelLoss))
        if self.explore is not None:
            _choice("explore", self.explore, get_args(ExploreName))
        if self.explore not in (None, "epsilon") and not self.smart_start:
            raise ConfigError(
                f"--explore {self.explore} explores over Smart Start's count model; it needs "
                "Smart Start (drop --no-smart-start, or use --explore epsilon)."
            )
        if self.ss_value is not None:
            _choice("ss_value", self.ss_value, get_args(SsValue))
        if re.fullmatch(r"cpu|auto|cuda(:[0-9]+)?", self.device) is None:
            raise ConfigError(f"--device must be cpu, cuda, cuda:N or auto, got {self.device!r}.")
        return self

    @property
    def run_length(self) -> tuple[int | None, int | None]:
        """(episodes, total_steps) to train; None means unlimited on that axis."""
        if self.episodes is None and self.total_steps is None:
            return None, DEFAULT_TOTAL_STEPS
        return self.episodes, self.total_steps

    @property
    def eq1_value(self) -> str:
        """Eq. 1's value term in use: ``ss_value``, or the learner's default when unset."""
        return DEFAULT_SS_VALUE[self.agent] if self.ss_value is None else self.ss_value

    def given(self, names: Iterable[str]) -> list[str]:
        """The fields of ``names`` set away from their defaults, in that order."""
        defaults = TrainConfig()
        return [name for name in names if getattr(self, name) != getattr(defaults, name)]

    @property
    def long_paths(self) -> bool:
        """Whether the DQN's long-path defaults (``LONG_PATHS``) fill what is unset: episodes
        longer than ``LONG_EPISODE_STEPS``."""
        return self.agent == "dqn" and self.max_episode_steps > LONG_EPISODE_STEPS

    @property
    def discount(self) -> float:
        """The discount factor in use: ``gamma``, or the learner's default when unset."""
        if self.gamma is not None:
            return self.gamma
        return LONG_PATHS["gamma"] if self.long_paths else DEFAULT_GAMMA[self.agent]

    @property
    def q_fit(self) -> ModelLoss:
        """The model-value loss in use: ``model_loss``, or the default when unset."""
        if self.model_loss is not None:
            return self.model_loss
        return LONG_PATHS["model_loss"] if self.long_paths else "entries"

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of to_dict; unknown keys and values of the wrong type (a config.json edited
        by hand: ``"her_k": "4"``, ``"maze": null``) raise ConfigError naming the field."""
        if not isinstance(values, dict):
            raise ConfigError(f"a config is a JSON object of fields, not {type(values).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}.")
        values = dict(values)
        for name, value in values.items():
            _check_type(name, value, f"field {name!r}")
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(values["hidden_sizes"])
        return cls(**values)


def preset_settings(name: str | None) -> dict[str, Any]:
    """The settings of the preset ``name`` ({} for None); ConfigError for an unknown name."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}; got {name!r}.")
    return dict(PRESETS[name])


def _apply_preset(init: Any) -> Any:
    """Wrap the dataclass's ``__init__`` so that a ``preset`` fills in the settings that the
    caller did not give: TrainConfig(preset="paper", n_step=10) has the paper's settings but
    10-step targets. ``from_dict`` and ``dataclasses.replace`` pass every field, so a saved or
    copied config keeps its resolved values."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]

    @functools.wraps(init)
    def __init__(self: TrainConfig, *args: Any, **kwargs: Any) -> None:
        given = {**dict(zip(names, args, strict=False)), **kwargs}
        preset = given.get("preset")
        if isinstance(preset, str) and preset in PRESETS:  # validate() reports a bad one
            given = {**PRESETS[preset], **given}
        init(self, **given)

    return __init__


TrainConfig.__init__ = _apply_preset(TrainConfig.__init__)  # type: ignore[method-assign]


def flag(name: str) -> str:
    """The command-line spelling of a field name (kebab case)."""
    return name.replace("_", "-")


def field_docs(cls: type = TrainConfig) -> dict[str, str]:
    """Each dataclass field's docstring (the string literal right under it), by field name."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = following.value.value.strip()
    return docs


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _check_type(name: str, value: Any, where: str) -> None:
    """ConfigError unless ``value`` has the type of TrainConfig's field ``name``."""
    hint = _hints()[name]
    if not _has_type(value, hint):
        raise ConfigError(f"{where} must be {_describe(hint)}, got {value!r}.")


def _has_type(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return isinstance(value, str) and value in args
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is tuple:
        return "a list of integers" if args[0] is int else f"a list of {_describe(args[0])}"
    if origin is dict:
        return "a JSON object"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, "null" if hint is type(None) else getattr(hint, "__name__", str(hint))
    )


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"--{flag(name)} must be a positive integer, got {value}.")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{flag(name)} must be one of {', '.join(choices)}; got {value!r}.")
