"""Does the trained DQN walk the count model's greedy path? A diagnosis of long greedy paths.

    python experiments/path_agreement.py RUN_DIR       # a finished maze run (its checkpoint)

Follows the count model's greedy path (its Q(s, g, a) for the env's goal, the values the DQN's
``--model-values q`` regresses onto) from the maze's start and, at each state, compares the
network's greedy action and value with the model's. Prints: the path's length, the share of its
states where the network's argmax is the model's, the median |Q_net - Q_model| at the model's
action, and the model's gap between its best and second-best action (median and min); then the
same by band of distance to the goal, with the median error of the differences between actions
(|(Q_net(a) - Q_net(a*)) - (Q_model(a) - Q_model(a*))| over the actions the model knows, a* its
best), which is what decides the argmax. A greedy walk of d moves needs agreement on every
state; it fails where the error of the differences exceeds the gap (docs/large_mazes.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from sshr_torch.trainer import Trainer, resume_config


@dataclass(frozen=True)
class Agreement:
    """What the network does along the model's greedy path."""

    path_length: int
    agree_share: float
    median_error: float
    median_gap: float
    min_gap: float
    bands: tuple[Band, ...] = ()
    """The same by band of moves to the goal, nearest first (bands without a state left out)."""


@dataclass(frozen=True)
class Band:
    """Agreement on the path's states ``low`` to ``high`` moves from the goal."""

    low: int
    high: int
    agree_share: float
    median_error: float
    median_diff_error: float
    median_gap: float


BAND_EDGES = (1, 11, 51, 201, 501, 1001, 2001, 5001, 10_001)


def path_agreement(run_dir: str, max_moves: int = 100_000) -> Agreement:
    """Walk the count model's greedy path to the env's goal; compare the network on it."""
    trainer = Trainer(resume_config(run_dir, quiet=True))
    try:
        env = trainer.env.unwrapped
        obs, _ = trainer.env.reset(seed=0)
        state, goal = int(obs["observation"]), int(obs["desired_goal"])
        model = trainer.agent.model_values
        if model is None:
            raise SystemExit(f"{run_dir}: the run has no count-model values (--model-values).")
        # The model searches goals within a credit of states per call (SEARCH_STATES_PER_BATCH):
        # ask until the goal's distances are in (a search of a large maze spans a few calls).
        for _ in range(1000):
            if np.isfinite(model.q_values(np.array([state]), np.array([goal]))).any():
                break
        moves, agree, errors, gaps, diff_errors = 0, [], [], [], []
        while state != goal and moves < max_moves:
            moves += 1
            q_model = model.q_values(np.array([state]), np.array([goal]))[0]  # (n_actions,)
            q_net = trainer.agent.q_values(np.array([state]), goal)[0]  # (n_actions,)
            known = np.isfinite(q_model)
            action = int(np.argmax(np.where(known, q_model, -np.inf)))
            agree.append(np.argmax(q_net) == action)
            errors.append(abs(float(q_net[action] - q_model[action])))
            best = np.sort(q_model[known])
            gaps.append(float(best[-1] - best[-2]) if len(best) > 1 else np.nan)
            others = known & (np.arange(len(q_model)) != action)
            diff = (q_net - q_net[action]) - (q_model - q_model[action])
            diff_errors.append(float(np.median(np.abs(diff[others]))) if others.any() else np.nan)
            state = int(env.next_cell[state, action])  # the maze is deterministic here
        to_goal = moves - np.arange(moves)  # moves from each state of the path to the goal
        return Agreement(
            moves,
            float(np.mean(agree)) if agree else 0.0,
            float(np.median(errors)) if errors else 0.0,
            _median(gaps),
            float(np.nanmin(gaps)) if np.isfinite(gaps).any() else 0.0,
            tuple(
                Band(
                    low,
                    high - 1,
                    float(np.mean(np.asarray(agree)[rows])),
                    float(np.median(np.asarray(errors)[rows])),
                    _median(np.asarray(diff_errors)[rows]),
                    _median(np.asarray(gaps)[rows]),
                )
                for low, high in zip(BAND_EDGES[:-1], BAND_EDGES[1:], strict=False)
                if (rows := (to_goal >= low) & (to_goal < high)).any()
            ),
        )
    finally:
        trainer.close()


def _median(values: list[float] | np.ndarray) -> float:
    """The median of the finite values, 0 where there is none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a maze run of the DQN with --model-values")
    args = parser.parse_args(argv)
    result = path_agreement(args.run_dir)
    print(
        f"path {result.path_length} moves; network's argmax = model's on "
        f"{result.agree_share:.1%} of its states; median |Q_net - Q_model| "
        f"{result.median_error:.3f}; model's best-second gap median {result.median_gap:.3f}, "
        f"min {result.min_gap:.3f}"
    )
    print("moves to goal | argmax = model's | median |Q err| | median diff err | median gap")
    for band in result.bands:
        print(
            f"{band.low}-{band.high} | {band.agree_share:.1%} | {band.median_error:.3f} | "
            f"{band.median_diff_error:.3f} | {band.median_gap:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
