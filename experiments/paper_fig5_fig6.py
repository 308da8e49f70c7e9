"""The paper's Fig. 5 (reward per episode) and Fig. 6 (steps per episode): SS vs SS+HER.

    python experiments/paper_fig5_fig6.py --out runs/paper_fig5_fig6      # full, minutes
    python experiments/paper_fig5_fig6.py --smoke --out /tmp/fig56        # seconds

The paper's setting: keulen_easy (12x9), reward 1 only at the goal, Smart Start with eta 1
(every episode but the first) and c_ss 0.1, HER 'future' with k = 4, 300 episodes; compared with
the same without HER ("SS alone"). Run with the tabular learner and the DQN, 30 seeds each,
each at the paper's 1000-step episodes and at Keulen's 100-step ones.

Writes into --out: claims.csv/.md (the paper's two claims, each split into before and after
episode 100, with our ratios, bootstrap 95% intervals and a verdict), fig5_reward.png and
fig6_steps.png (mean over seeds with 95% t-bands; rows: learner, columns: episode length),
and the sweep's run directories under sweep/.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from _common import (
    Timer,
    band_plot,
    bootstrap_ratio,
    parse_args,
    per_seed_curves,
    read_episodes,
    save,
    write_table,
)

from sshr_torch.config import TrainConfig
from sshr_torch.sweep import grid, run_sweep

EPISODES = 300
SPLIT = 100  # the paper's claims change at episode 100
TABULAR_SEEDS = 30
DQN_SEEDS = 30
LEARNERS = ("tabular", "dqn")
EPISODE_STEPS = (1000, 100)
ARMS = {"none": "SS", "future": "SS+HER"}
SMOOTH = 5

# (quantity, part, the paper's HER/SS ratio, the band we accept as "about" it)
CLAIMS = (
    ("reward", "early", 2.0, (1.5, 2.5)),
    ("reward", "late", 1.0, (0.95, 1.05)),
    ("steps", "early", 0.70, (0.60, 0.80)),
    ("steps", "late", 0.95, (0.90, 1.00)),
)

SETTINGS = [
    "Maze keulen_easy (12x9, thesis code scale 3; the paper names 'the Easy grid world' without "
    "a size), fixed start and goal, no slip; reward 1 on reaching the goal, 0 otherwise.",
    "Smart Start: eta 1 (never in episode 0), c_ss 0.1 in the paper's Eq. 1 form "
    "max_a Q(s,a) + c_ss sqrt(ln N / C(s)), walk to the exact state (theta 0), guided steps "
    "learned from and counted in the episode's steps. HER: 'future', k = 4; goals are achieved "
    "goals of next states; a relabelled transition reaching its goal is terminal.",
    "Left open by the paper, Keulen's defaults used: tabular Q-learning alpha 0.1, gamma 0.99, "
    "epsilon-greedy 0.1 constant, Q0 = 0; the tabular learner learns online from each real "
    "transition and from the episode's k relabels per transition at its end.",
    "Left open by the paper, our DQN defaults used: one hidden layer of 256, Adam 1e-3, gamma "
    "0.98 (the HER paper's; with 0.99 our DQN's values drift above 1 on this maze), batch "
    "128, buffer 100k, one update per step after 1000 steps, hard target sync every "
    "500 updates, epsilon 1 -> 0.05 over 20k steps, Huber loss, gradient norm 10.",
    "Reward per episode = the episode's return (1 if the goal was reached). Steps per episode "
    "include the guided Smart Start steps. 'early' = episodes 0-99, 'late' = 100-299.",
    "Ratio = mean over seeds of SS+HER's per-seed average / the same for SS alone; 95% interval "
    "by percentile bootstrap over seeds (10,000 draws). Verdict 'reproduced' when our ratio is "
    "inside the stated band around the paper's figure and (for a claimed difference) the "
    "interval excludes 1. The paper gives no seed count and no error bars.",
]


def build_configs(smoke: bool) -> list[TrainConfig]:
    """SS and SS+HER for each learner and episode length, over their seeds."""
    base = TrainConfig(
        her_k=4,
        smart_start=True,
        eta=1.0,
        c_ss=0.1,
        ucb_form="paper",
        maze="keulen_easy",
        episodes=6 if smoke else EPISODES,
        alpha=0.1,
        gamma=None,  # each learner's default: 0.99 tabular (Keulen), 0.98 DQN (HER paper)
        tabular_epsilon=0.1,
        eval_interval=0,
        image_interval=0,
        checkpoint_interval=50,
    )
    configs: list[TrainConfig] = []
    for learner in LEARNERS:
        seeds = 2 if smoke else TABULAR_SEEDS if learner == "tabular" else DQN_SEEDS
        buffer = {"buffer_size": 10_000} if learner == "tabular" else {}
        learner_base = TrainConfig(**{**base.to_dict(), "agent": learner, **buffer})
        axes = {"max_episode_steps": list(EPISODE_STEPS), "her": list(ARMS)}
        configs += grid(learner_base, axes, seeds)
    return configs


def _curves(
    episodes: list[dict[str, str]], learner: str, steps: int, her: str, column: str, n: int
) -> np.ndarray:
    """(n_seeds, n) array of an episodes.csv column for one arm."""
    return per_seed_curves(
        episodes,
        lambda r: (
            r["agent"] == learner and r["max_episode_steps"] == str(steps) and r["her"] == her
        ),
        column,
        n,
    )


def claims_table(episodes: list[dict[str, str]], n_episodes: int, split: int) -> list[dict]:
    """One row per (learner, episode length, claim): ratio, interval, verdict."""
    rows = []
    for learner in LEARNERS:
        for steps in EPISODE_STEPS:
            curves = {
                (quantity, her): _curves(
                    episodes,
                    learner,
                    steps,
                    her,
                    "return" if quantity == "reward" else "length",
                    n_episodes,
                )
                for quantity in ("reward", "steps")
                for her in ARMS
            }
            for quantity, part, paper, (low_ok, high_ok) in CLAIMS:
                window = slice(0, split) if part == "early" else slice(split, n_episodes)
                her_means = curves[(quantity, "future")][:, window].mean(axis=1)
                ss_means = curves[(quantity, "none")][:, window].mean(axis=1)
                ratio, low, high = bootstrap_ratio(her_means, ss_means)
                inside = low_ok <= ratio <= high_ok
                differs = paper == 1.0 or not (low <= 1.0 <= high)
                rows.append(
                    {
                        "learner": learner,
                        "steps_per_episode": steps,
                        "claim": f"{quantity} {part}",
                        "episodes": f"{window.start}-{window.stop - 1}",
                        "ss_mean": round(float(ss_means.mean()), 3),
                        "ss_her_mean": round(float(her_means.mean()), 3),
                        "ratio_her_over_ss": round(ratio, 3),
                        "ci95_low": round(low, 3),
                        "ci95_high": round(high, 3),
                        "paper": paper,
                        "accepted_band": f"{low_ok}-{high_ok}",
                        "seeds": len(her_means),
                        "verdict": "reproduced" if inside and differs else "not reproduced",
                    }
                )
    return rows


def figures(out: Path, episodes: list[dict[str, str]], n_episodes: int) -> None:
    """fig5_reward.png and fig6_steps.png: rows learner, columns episode length."""
    for name, column, ylabel in (
        ("fig5_reward", "return", "reward per episode"),
        ("fig6_steps", "length", "steps per episode"),
    ):
        fig, axes = plt.subplots(len(LEARNERS), len(EPISODE_STEPS), figsize=(9, 6))
        for row, learner in enumerate(LEARNERS):
            for col, steps in enumerate(EPISODE_STEPS):
                curves = {
                    label: _curves(episodes, learner, steps, her, column, n_episodes)
                    for her, label in ARMS.items()
                }
                title = f"{learner}, keulen_easy, {steps}-step episodes"
                log = column == "length"
                floor = 1.0 if log else None
                band_plot(axes[row][col], curves, ylabel, title, smooth=SMOOTH, floor=floor)
                if log:
                    axes[row][col].set_yscale("log")
        save(fig, out / f"{name}.png")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep (finished runs are skipped), then write the claims table and figures."""
    args = parse_args(__doc__.split("\n\n")[0], argv)
    out = Path(args.out)
    configs = build_configs(args.smoke)
    n_episodes = configs[0].episodes or EPISODES
    split = n_episodes // 3 if args.smoke else SPLIT
    with Timer("paper_fig5_fig6 sweep") as timer:
        rows = run_sweep(configs, out / "sweep", workers=args.workers, progress=not args.smoke)
    failed = [row for row in rows if row["error"]]
    if failed:
        print(f"error: {len(failed)} runs failed, e.g. {failed[0]['run']}: {failed[0]['error']}")
        return 1
    episodes = read_episodes(out / "sweep")
    table = claims_table(episodes, n_episodes, split)
    seeds = {learner: len({c.seed for c in configs if c.agent == learner}) for learner in LEARNERS}
    notes = [
        *SETTINGS,
        f"Seeds: tabular 0-{seeds['tabular'] - 1}, DQN 0-{seeds['dqn'] - 1} per arm; "
        f"{n_episodes} episodes per run; figures smoothed over {SMOOTH} episodes. Wall time of "
        f"this call's sweep (finished runs skipped): {timer.seconds:.0f} s, {args.workers} "
        "worker(s)" + (" (smoke: 6 episodes, split at episode 2)." if args.smoke else "."),
    ]
    write_table(out, "claims", table, "The paper's Fig. 5/6 claims, SS+HER vs SS alone", notes)
    figures(out, episodes, n_episodes)
    print((out / "claims.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
