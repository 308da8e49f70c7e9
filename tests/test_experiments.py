"""Each experiment script's --smoke run writes its tables (CSV + markdown) and figures."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _script(name: str) -> ModuleType:
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    return importlib.import_module(name)


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _markdown_rows(path: Path) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 5_000 < path.stat().st_size < 400_000  # a real, small figure


def test_keulen_first_goal_smoke(tmp_path: Path) -> None:
    script = _script("keulen_first_goal")
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    table = _table(tmp_path / "first_goal.csv")
    assert [(row["maze"], row["steps_per_episode"]) for row in table] == [
        (maze, str(steps)) for maze in script.MAZES for steps in (100, 500)
    ]
    assert list(table[0]) == [
        "maze",
        "steps_per_episode",
        "without_ss_ours",
        "without_ss_keulen",
        "with_ss_ours",
        "with_ss_keulen",
        "ss_faster_ours",
        "ss_faster_keulen",
        "us_per_step_ss_ours",
        "us_per_step_ss_keulen",
        "us_per_step_plain_ours",
    ]
    easy_100 = table[0]
    assert easy_100["with_ss_keulen"] == "708 (391-1060)"
    # Smart Start finds the goal of keulen_easy within the 2k-step smoke budget, 2/2 seeds.
    assert "never" not in easy_100["with_ss_ours"]
    assert 0 < float(easy_100["us_per_step_ss_ours"]) < 1000
    claims = _table(tmp_path / "claims.csv")
    assert len(claims) == 1 + 6 and claims[0]["claim"].startswith("issue 3 target")
    assert {row["verdict"] for row in claims} <= {"reproduced", "not reproduced"}
    markdown = (tmp_path / "first_goal.md").read_text()
    assert "alpha 0.1" in markdown and "Budget: 2,000 env steps" in markdown
    assert len(_markdown_rows(tmp_path / "first_goal.md")) == 1 + 6
    _check_png(tmp_path / "first_goal.png")
    # The sweep's own tables are there too: 3 mazes x 2 lengths x SS on/off x 2 seeds.
    assert len(_table(tmp_path / "sweep" / "results.csv")) == 24


def test_paper_fig5_fig6_smoke(tmp_path: Path) -> None:
    script = _script("paper_fig5_fig6")
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    claims = _table(tmp_path / "claims.csv")
    expected = [
        (learner, str(steps), claim)
        for learner in ("tabular", "dqn")
        for steps in (1000, 100)
        for claim in ("reward early", "reward late", "steps early", "steps late")
    ]
    assert [(r["learner"], r["steps_per_episode"], r["claim"]) for r in claims] == expected
    assert {"ratio_her_over_ss", "ci95_low", "ci95_high", "paper", "verdict"} <= set(claims[0])
    tabular_1000_steps_late = claims[3]
    # After a few episodes Smart Start walks the tabular learner to the goal in ~20-40 steps.
    assert float(tabular_1000_steps_late["ss_mean"]) < 200
    assert all(row["seeds"] == "2" for row in claims)
    assert "gamma 0.99" in (tmp_path / "claims.md").read_text()
    _check_png(tmp_path / "fig5_reward.png")
    _check_png(tmp_path / "fig6_steps.png")


def test_ablation_smoke(tmp_path: Path) -> None:
    script = _script("ablation")
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    table = _table(tmp_path / "ablation.csv")
    assert [(r["learner"], r["maze"], r["arm"]) for r in table] == [
        (learner, maze, arm)
        for learner in ("tabular", "dqn")
        for maze in ("keulen_easy", "generated:41x41 loops")
        for arm in ("plain", "HER", "SS", "SS+HER")
    ]
    assert [r["shortest"] for r in table[:8:4]] == ["19", "106"]
    assert {r["env_steps"] for r in table} == {"1500", "500"}
    assert all(0.0 <= float(r["greedy_success"]) <= 1.0 for r in table)
    _check_png(tmp_path / "success_tabular.png")
    _check_png(tmp_path / "success_dqn.png")


@pytest.mark.parametrize("name", ["keulen_first_goal", "paper_fig5_fig6", "ablation"])
def test_bad_flags_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    script = _script(name)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--out", str(tmp_path), "--workers", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--workers must be a positive integer" in err


def test_long_mazes_smoke(tmp_path: Path) -> None:
    script = _script("long_mazes")
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    table = _table(tmp_path / "long_mazes.csv")
    assert [row["arm"] for row in table] == list(script.ARMS)
    runs = _table(tmp_path / "long_mazes_runs.csv")
    assert len(runs) == len(script.ARMS)
    assert all(int(row["shortest"]) == 19 for row in runs)  # keulen_easy
    tabular = next(row for row in table if row["arm"] == "tabular")
    # The tabular learner walks keulen_easy greedily within the 3k-step smoke budget.
    assert tabular["seeds_reached"] == "1/1"
    assert _markdown_rows(tmp_path / "long_mazes.md")[0][0] == "maze"
    _check_png(tmp_path / "long_mazes.png")
