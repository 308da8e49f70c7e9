"""Shared helpers of the experiment scripts: command line, statistics, tables and figures.

Statistics are over seeds (one value per seed): means with Student-t 95% intervals, medians
with ranges, and ratios of means with percentile-bootstrap 95% intervals (seeds resampled with
replacement, 10,000 draws, a fixed bootstrap seed so the tables are the same on every rerun).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import matplotlib
import numpy as np
from scipy import stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BOOTSTRAP_DRAWS = 10_000
BOOTSTRAP_SEED = 12345
# The DQN's settings in the tables published before its long-maze defaults (issue 12): 1-step
# targets, Eq. 1 with the learner's values, reward 1 at the goal only, gamma 0.98 (the HER
# paper's), no count-model values in the targets, the epsilon schedule from the first step.
FIRST_ROUND_DQN: dict[str, Any] = {
    "n_step": 1,
    "ss_value": "learner",
    "step_reward": 0.0,
    "gamma": 0.98,
    "model_values": "off",
    "random_until_goal": False,
    "explore": "epsilon",
}
# The paper's exploration after the guided walk (Algorithm 1: the learner's epsilon-greedy),
# pinned by the paper experiments whatever the library's default.
PAPER_EXPLORATION: dict[str, Any] = {"explore": "epsilon"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help).\n")


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The flags every experiment takes: --out DIR, --smoke, --workers N; ``extra`` adds an
    experiment's own."""
    parser = _Parser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--out", required=True, help="directory for the tables and figures")
    parser.add_argument("--smoke", action="store_true", help="a tiny version that runs in seconds")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="local worker processes (default 2, the results' own)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.exit(2, f"error: --workers must be a positive integer, got {args.workers}.\n")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.exit(2, f"error: cannot create --out {out}: {error.strerror or error}.\n")
    return args


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and Student-t 95% interval along ``axis``: (mean, low, high)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=axis, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def bootstrap_ratio(
    numerator: np.ndarray, denominator: np.ndarray, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float, float]:
    """mean(numerator) / mean(denominator) and its percentile-bootstrap 95% interval.

    The two samples are independent (different runs), so each is resampled on its own.
    """
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    rng = np.random.default_rng(seed)
    num = rng.choice(numerator, (BOOTSTRAP_DRAWS, len(numerator))).mean(axis=1)
    den = rng.choice(denominator, (BOOTSTRAP_DRAWS, len(denominator))).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = num / den  # nan where both are 0 (e.g. no success in either arm)
        ratio = numerator.mean() / denominator.mean()
    finite = ratios[~np.isnan(ratios)]
    if not len(finite):
        return float(ratio), math.nan, math.nan
    # No interpolation: a resample whose denominator is 0 gives an infinite ratio.
    low, high = np.quantile(finite, [0.025, 0.975], method="inverted_cdf")
    return float(ratio), float(low), float(high)


def bootstrap_median_ratio(
    numerator: np.ndarray, denominator: float, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float, float]:
    """median(numerator) / a fixed reference and its percentile-bootstrap 95% interval."""
    numerator = np.asarray(numerator, float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(numerator, (BOOTSTRAP_DRAWS, len(numerator))), axis=1)
    low, high = np.percentile(medians / denominator, [2.5, 97.5])
    return float(np.median(numerator) / denominator), float(low), float(high)


def median_range(values: Sequence[float | None]) -> str:
    """'median (min-max)' over seeds; runs that never succeeded (None) count as never.

    All never: 'never (0/n)'; some never: the median over all (never sorts last) and 'k/n'.
    """
    n = len(values)
    reached = sorted(v for v in values if v is not None)
    if not reached:
        return f"never (0/{n})"
    ordered: list[float] = reached + [math.inf] * (n - len(reached))
    median = float(np.median(ordered))
    shown = "never" if math.isinf(median) else f"{median:.0f}"
    high = "never" if len(reached) < n else f"{reached[-1]:.0f}"
    text = f"{shown} ({reached[0]:.0f}-{high})"
    return text if len(reached) == n else f"{text}, {len(reached)}/{n} reached"


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` significant figures, None as 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def write_table(
    out: Path, name: str, rows: Sequence[Mapping[str, Any]], title: str, notes: Sequence[str] = ()
) -> Path:
    """Write ``name``.csv and ``name``.md (a title, a markdown table, then the notes)."""
    columns = list(rows[0]) if rows else []
    with (out / f"{name}.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    lines.extend("| " + " | ".join(fmt(row[c]) for c in columns) + " |" for row in rows)
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    path = out / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_episodes(sweep_dir: Path) -> list[dict[str, str]]:
    """The sweep's collected episodes.csv as dicts of strings."""
    with (sweep_dir / "episodes.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def per_seed_curves(
    episodes: Sequence[Mapping[str, str]],
    keep: Callable[[Mapping[str, str]], bool],
    column: str,
    n_episodes: int,
) -> np.ndarray:
    """(n_seeds, n_episodes) array of ``column`` for the episodes that ``keep`` selects."""
    by_seed: dict[int, list[float]] = {}
    for row in episodes:
        if keep(row):
            by_seed.setdefault(int(row["seed"]), []).append(number(row[column]))
    curves = [by_seed[seed][:n_episodes] for seed in sorted(by_seed)]
    if not curves or any(len(curve) < n_episodes for curve in curves):
        raise RuntimeError(f"some runs have fewer than {n_episodes} episodes of {column}.")
    return np.asarray(curves)  # (n_seeds, n_episodes)


def number(text: str) -> float:
    """An episodes.csv cell as a float (booleans as 0/1, whichever way they are written)."""
    if text in ("True", "False"):
        return float(text == "True")
    return float(text)


def band_plot(
    ax: Any,
    curves: Mapping[str, np.ndarray],
    ylabel: str,
    title: str,
    smooth: int = 1,
    floor: float | None = None,
) -> None:
    """Mean over seeds with its 95% t-band per label, episodes on x, drawn on ``ax``.

    ``smooth`` > 1 first averages each seed's curve over a moving window of that many episodes;
    ``floor`` clips the band from below (for a log axis, where a t-band can reach below 0).
    """
    for label, values in curves.items():
        if smooth > 1 and values.shape[1] >= smooth:
            kernel = np.ones(smooth) / smooth
            values = np.asarray([np.convolve(v, kernel, mode="valid") for v in values])
        mean, low, high = mean_ci(values)
        if floor is not None:
            low = np.maximum(low, floor)
        x = np.arange(len(mean)) + (smooth - 1) / 2
        ax.plot(x, mean, label=f"{label} (n={len(values)})", lw=1.2)
        ax.fill_between(x, low, high, alpha=0.25)
    ax.set_xlabel("episode")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def save(fig: Any, path: Path) -> None:
    """Save a figure as a small PNG and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class Timer:
    """Wall time of a block, printed and kept in ``seconds``."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        print(f"{self.label}: {self.seconds:.0f} s", file=sys.stderr)
