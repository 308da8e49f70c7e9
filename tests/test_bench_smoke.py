"""Smoke tests of the issue-7 benchmark scripts: they run on tiny budgets (no timed asserts)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_our_arm_runs_its_budget_and_evaluates(tmp_path: Path) -> None:
    bench = _load("bench_vs_sb3")
    outcome = bench.run_ours(
        "keulen_easy",
        100,
        1_200,
        smart_start=True,
        seed=0,
        evaluate=True,
        runs_root=str(tmp_path),
    )
    assert outcome.reached_at is None or outcome.reached_at <= 1_200
    assert 0 < outcome.steps <= 1_200
    assert 0.0 <= outcome.last_success <= 1.0
    assert outcome.sps > 0


def test_sb3_arm_runs_on_our_env() -> None:
    pytest.importorskip("stable_baselines3")
    bench = _load("bench_vs_sb3")
    outcome = bench.run_sb3("keulen_easy", 100, 1_100, seed=0, evaluate=False)
    assert outcome.steps == 1_100


def test_scale_pieces_on_a_small_maze() -> None:
    scale = _load("bench_scale")
    assert scale.update_us("generated:11x11:seed=0", 20) > 0
    plan = scale.plan_ms("generated:21x21:seed=0", 10_000, 2)
    assert plan["n_visited"] == 241  # every free cell of the 21x21 perfect maze
    assert plan["plan_length_farthest"] > 0


def test_hard_exploration_runs_every_arm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hard = _load("hard_exploration")
    assert hard.main(["--budget", "1500", "--runs-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for arm in hard.ARMS:
        assert f"  {arm} " in out
