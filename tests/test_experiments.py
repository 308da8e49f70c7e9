"""Each experiment script's --smoke run writes its tables (CSV + markdown) and figures."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from sshr_torch.config import TrainConfig

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


def test_paper_fig5_fig6_drawn_goals_with_the_librarys_dqn(tmp_path: Path) -> None:
    """A part of the grid (the DQN, drawn goals) with the library's DQN defaults and its own
    seed count; the tables cover only that part, and the report names the learner."""
    script = _script("paper_fig5_fig6")
    configs = script.build_configs(False, ["dqn"], ["drawn"], "defaults", 30)
    assert len(configs) == 30 * 2 * 2 * 2 and {c.seed for c in configs} == set(range(30))
    defaults = TrainConfig()
    for config in configs:
        assert config.agent == "dqn" and config.random_goal and config.explore == "epsilon"
        assert (config.n_step, config.step_reward, config.discount) == (
            defaults.n_step,
            defaults.step_reward,
            defaults.discount,
        )
        assert (config.model_values, config.model_goals) == ("q", "all")
    first_round = script.build_configs(False, ["dqn"], ["drawn"], "first_round", 5)
    assert {(c.n_step, c.model_values, c.discount) for c in first_round} == {(1, "off", 0.98)}
    argv = ["--smoke", "--out", str(tmp_path), "--workers", "1", "--learners", "dqn"]
    assert script.main([*argv, "--goals", "drawn", "--dqn", "defaults"]) == 0
    claims = _table(tmp_path / "claims.csv")
    assert {(r["learner"], r["goals"]) for r in claims} == {("dqn", "drawn")}
    assert len(claims) == 2 * 2 * 6
    assert len(_table(tmp_path / "greedy.csv")) == 4
    assert "the library's DQN defaults" in (tmp_path / "report.md").read_text()
    assert script.main([*argv, "--dqn-seeds", "0"]) == 2
    # --finished-only tabulates the seeds whose every run finished, and runs nothing.
    seed_1 = sorted((tmp_path / "sweep").glob("*seed=1"))
    assert len(seed_1) == 8
    summary = seed_1[0] / "summary.json"
    summary.write_text(summary.read_text().replace('"episodes": 4', '"episodes": 3'))
    part = [*argv, "--goals", "drawn", "--dqn", "defaults", "--finished-only"]
    assert script.main(part) == 0
    assert {r["seeds"] for r in _table(tmp_path / "claims.csv")} == {"1"}
    assert seed_1[0].exists() and summary.read_text().count('"episodes": 3') == 1
    for run in seed_1 + sorted((tmp_path / "sweep").glob("*seed=0")):
        (run / "summary.json").unlink()
    assert script.main(part) == 2
    seeds = script.build_configs(False, ["dqn"], ["drawn"], "defaults", range(15, 30))
    assert {c.seed for c in seeds} == set(range(15, 30))


def test_paper_fig5_fig6_smoke(tmp_path: Path) -> None:
    script = _script("paper_fig5_fig6")
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    arms = [
        (learner, str(steps), value, goals)
        for learner in ("tabular", "dqn")
        for steps in (1000, 100)
        for value in ("learner", "zero")
        for goals in ("fixed", "drawn")
    ]
    claims = _table(tmp_path / "claims.csv")
    per_arm = [
        ("2x reward early", "return"),
        ("2x reward early", "reward_per_step"),
        ("equal reward late", "return"),
        ("equal reward late", "reward_per_step"),
        ("30% fewer steps early", "steps"),
        ("5% fewer steps late", "steps"),
    ]
    assert [
        (r["learner"], r["steps_per_episode"], r["ss_value"], r["goals"], r["claim"], r["metric"])
        for r in claims
    ] == [(*arm, *claim) for arm in arms for claim in per_arm]
    assert {"ratio_her_over_ss", "ci95_low", "ci95_high", "paper", "verdict"} <= set(claims[0])
    assert all(row["seeds"] == "2" for row in claims)
    tabular_1000_steps_late = claims[5]
    # A few episodes in, Smart Start walks the tabular learner to the fixed goal in ~20-40 steps.
    assert float(tabular_1000_steps_late["ss_mean"]) < 200

    # The verdict table: one row per reading, one column per claim.
    verdicts = _table(tmp_path / "verdicts.csv")
    assert list(verdicts[0]) == [
        "learner",
        "steps_per_episode",
        "ss_value",
        "goals",
        "reward_metric",
        "2x reward early",
        "equal reward late",
        "30% fewer steps early",
        "5% fewer steps late",
        "claims_reproduced",
        "verdict",
    ]
    assert [
        (r["learner"], r["steps_per_episode"], r["ss_value"], r["goals"], r["reward_metric"])
        for r in verdicts
    ] == [(*arm, metric) for arm in arms for metric in ("return", "reward_per_step")]
    assert {r["verdict"] for r in verdicts} <= {
        "reproduced",
        "partly reproduced",
        "not reproduced",
    }
    assert all(r["2x reward early"].endswith((" yes", " no")) for r in verdicts)
    assert len(_markdown_rows(tmp_path / "verdicts.md")) == 1 + len(verdicts)
    report = (tmp_path / "report.md").read_text()
    assert "gamma 0.99" in report and "| tabular | 1000 | zero | drawn | return |" in report

    summary = _table(tmp_path / "summary.csv")  # the README's table
    assert [(r["learner"], r["steps"], r["V(s) in Eq. 1"], r["goals"]) for r in summary] == arms
    assert list(summary[0])[4:] == [
        "2x reward early return",
        "2x reward early reward/step",
        "equal reward late return",
        "equal reward late reward/step",
        "30% fewer steps early",
        "5% fewer steps late",
        "S_ss within 2 moves, SS / SS+HER",
    ]
    mechanism = _table(tmp_path / "mechanism.csv")
    mechanism_rows = [
        (r["learner"], r["steps_per_episode"], r["ss_value"], r["goals"], r["arm"])
        for r in mechanism
    ]
    assert mechanism_rows == [(*arm, label) for arm in arms for label in ("SS", "SS+HER")]
    shares = [float(r["share_within_2_moves"]) for r in mechanism]
    assert all(0.0 <= share <= 1.0 for share in shares)
    greedy = _table(tmp_path / "greedy.csv")
    assert [(r["learner"], r["steps_per_episode"], r["ss_value"]) for r in greedy] == [
        arm[:3] for arm in arms if arm[3] == "drawn"
    ]
    assert all(0.0 <= float(r["success_ss_her"]) <= 1.0 for r in greedy)
    for name in ("fig5_return", "fig5_reward_per_step", "fig6_steps"):
        _check_png(tmp_path / f"{name}.png")


def test_grid_distance_within_2_is_2_moves_on_keulen_easy() -> None:
    assert _script("paper_fig5_fig6").near_means_moves("keulen_easy")
    # On a maze with a one-cell wall between two free cells it is not.
    from sshr_torch.maze import parse_maze

    maze = parse_maze("S#.\n..G\n")
    assert maze.walls[0, 1]
    assert not _script("paper_fig5_fig6").near_means_moves(maze)


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
    # ... and its run stopped there (stop_success), before the budget
    (tabular_run,) = [row for row in runs if row["arm"] == "tabular"]
    assert int(tabular_run["env_steps"]) == int(tabular_run["steps_to_greedy"]) < 3000
    assert _markdown_rows(tmp_path / "long_mazes.md")[0][0] == "maze"
    _check_png(tmp_path / "long_mazes.png")


def test_large_mazes_smoke(tmp_path: Path) -> None:
    script = _script("large_mazes")
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    runs = _table(tmp_path / "large_mazes_runs.csv")
    assert {row["arm"] for row in runs} == set(script.ARMS)
    first = {row["arm"]: row["first_goal"] for row in runs}
    # the frontier explorer and the directed Smart Start find the goal of a 21x21 maze well
    # within the smoke budget; the directed walk within 1.5x of the reference's steps
    assert first["frontier"] and first["directed"]
    assert int(first["directed"]) <= 1.5 * int(first["frontier"])
    assert int(first["frontier"]) >= int(runs[0]["dfs_bound"]) / 2
    rows = _markdown_rows(tmp_path / "large_mazes.md")
    assert rows[0][:4] == ["maze", "free_cells", "episode_steps", "arm"]
    _check_png(tmp_path / "large_mazes.png")


def test_large_mazes_greedy_runs_of_the_long_path_settings() -> None:
    script = _script("large_mazes")
    jobs = script.greedy_configs(3, 101)
    assert sorted({(arm, config.seed) for _, arm, config in jobs}) == sorted(
        (arm, seed) for arm in script.GREEDY_ARMS for seed in range(3)
    )
    for size, arm, config in jobs:
        config.validate()
        assert size.side == 101 and config.maze == f"generated:101x101:seed={config.seed}"
        assert config.total_steps == 300_000 and config.max_episode_steps == 5000
        assert config.eval_interval == 2  # every 10k env steps
        long_paths = arm == "dqn_long_paths"
        assert (config.q_fit == "split") == long_paths
        assert (config.discount == 0.99999) == long_paths
        assert config.long_paths  # 5000-step episodes: unpinned, the defaults are long-path
    assert {config.eval_interval for _, _, config in script.greedy_configs(1)} == {10}


def test_frontier_explorer_stays_within_every_action_once_plus_the_walks_back() -> None:
    script = _script("large_mazes")
    # keulen_easy_unscaled: 8 free cells, G 7 moves from S along a corridor. Each (s, a) of
    # the 7 cells before G tried once is 28 steps; walks back to an untried action add at most
    # one move per cell left behind (a corridor has no side branches): 28 + 7 = 35.
    steps = [
        script.frontier_explorer("keulen_easy_unscaled", 1000, seed, 10_000) for seed in range(10)
    ]
    assert all(s is not None and 7 <= s <= 35 for s in steps) and len(set(steps)) > 1
    assert script.frontier_explorer("keulen_easy_unscaled", 1000, 0, 3) is None  # the budget


def test_goal_reach_smoke(tmp_path: Path) -> None:
    script = _script("goal_reach")
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    runs = _table(tmp_path / "goal_reach_runs.csv")
    assert [row["arm"] for row in runs] == ["dqn", "tabular"]
    assert all(0.0 <= float(row["goals_success"]) <= 1.0 for row in runs)
    # visited cells, and goal reach over every free cell (the same goals for every arm)
    n_free = len(script.load_maze("keulen_easy").free_cells)
    assert all(0 < int(row["visited"]) <= n_free for row in runs)
    assert all(0.0 <= float(row["goals_all"]) <= 1.0 for row in runs)
    assert all(0.0 <= float(row["greedy_1_24"]) <= 1.0 for row in runs)
    assert all(row["greedy_50_up"] == "" for row in runs)  # keulen_easy: no pair that far
    table = _table(tmp_path / "goal_reach.csv")
    dqn = next(row for row in table if row["arm"] == "dqn")
    assert dqn["target"].startswith("reach >= 0.95: ")  # measured against the main job's target
    assert _markdown_rows(tmp_path / "goal_reach.md")[0][:2] == ["task", "arm"]
    # A second call reads the finished runs instead of training them again.
    before = (tmp_path / "runs" / "easy__dqn__s1" / "summary.json").stat().st_mtime
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    assert (tmp_path / "runs" / "easy__dqn__s1" / "summary.json").stat().st_mtime == before


def test_path_agreement_follows_the_models_shortest_path(tmp_path: Path) -> None:
    # (sshr_torch.train, the command line module, shadows the package's train() once imported)
    from sshr_torch.config import TrainConfig
    from sshr_torch.trainer import train

    script = _script("path_agreement")
    run = train(TrainConfig(total_steps=4000, run_dir=str(tmp_path / "run"), quiet=True))
    result = script.path_agreement(str(run.run_dir))
    # keulen_easy's shortest path is 19 moves, and the model has found the goal by 4,000 steps
    assert run.summary["first_success_step"] is not None
    assert result.path_length == 19
    assert 0.0 <= result.agree_share <= 1.0 and result.median_error >= 0.0
    # the model ranks its actions on the path (an open room's two shortest moves tie: gap 0)
    assert 0.0 <= result.min_gap <= result.median_gap and result.median_gap > 0.0
    # by distance to the goal: its 19 states fall in the first two bands, 1-10 and 11-50
    assert [(band.low, band.high) for band in result.bands] == [(1, 10), (11, 50)]
    for band in result.bands:
        assert 0.0 <= band.agree_share <= 1.0
        assert band.median_error >= 0.0 and band.median_diff_error >= 0.0


def test_minigrid_worlds_smoke(tmp_path: Path) -> None:
    pytest.importorskip("minigrid", reason="needs pip install -e '.[minigrid]' (CI has it)")
    script = _script("minigrid_worlds")
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    runs = _table(tmp_path / "minigrid_runs.csv")
    assert {(r["task"], r["arm"]) for r in runs} == {
        (task, arm) for task in ("Empty6x6", "DoorKey5x5") for arm in script.ARMS
    }
    # the tabular learner solves both small worlds within the smoke budget
    assert all(float(r["final_success"]) >= 0.9 for r in runs if r["arm"] == "tabular")
    assert all(0.0 <= float(r["goal_reach"]) <= 1.0 for r in runs)
    rows = _markdown_rows(tmp_path / "minigrid.md")
    assert rows[0][:3] == ["task", "arm", "layouts"] and len(rows) == 1 + 6
    _check_png(tmp_path / "minigrid.png")
    # a rerun finds every run done and only rewrites the tables
    assert script.main(["--smoke", "--out", str(tmp_path), "--workers", "1"]) == 0
    assert len(_table(tmp_path / "minigrid_runs_log.csv")) == 6


def test_minigrid_worlds_bad_flag_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _script("minigrid_worlds")
    assert script.main(["--out", str(tmp_path), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--steps must be a positive integer" in err


class _DistanceAgent:
    """Q(s, g, a) = -(moves from a's next cell to g), except that ``wrong`` pairs (s, g)
    take the worst action: greedy moves are shortest-path moves on all other pairs."""

    def __init__(self, maze, next_cell, distances_to, wrong=frozenset()):
        self.next_cell, self.distances_to, self.wrong = next_cell, distances_to, wrong

    def pair_q_values(self, states, goals):
        q = np.stack(
            [
                -self.distances_to(int(g))[self.next_cell[s]]
                for s, g in zip(states, goals, strict=True)
            ]
        )
        q = np.where(np.isfinite(q), q, -1e9) - 1e-3 * np.arange(q.shape[1])  # no ties
        for row, (s, g) in enumerate(zip(states, goals, strict=True)):
            if (int(s), int(g)) in self.wrong:
                q[row] = -q[row]  # the worst move first
        return q


def test_greedy_move_shares_count_shortest_path_moves_by_distance() -> None:
    script = _script("goal_reach")
    from sshr_torch.env import GridMazeEnv
    from sshr_torch.goal_reach import maze_distances

    env = GridMazeEnv(script.load_maze("keulen_easy"))
    maze, next_cell = env.maze, env.next_cell
    distances_to = maze_distances(maze)
    perfect = script.greedy_move_shares(
        _DistanceAgent(maze, next_cell, distances_to), maze, next_cell
    )
    assert perfect["greedy_1_24"] == 1.0 and perfect["greedy_50_up"] is None
    # one wrong pair per goal at distance 1 (the step into the goal): the share falls by
    # exactly those pairs over the band's pairs
    cells = np.flatnonzero(np.isfinite(distances_to(maze.start_index)))
    wrong, in_band = set(), 0
    for goal in cells:
        to_goal = distances_to(int(goal))
        near = cells[(cells != goal) & (to_goal[cells] >= 1) & (to_goal[cells] <= 24)]
        in_band += len(near)
        wrong.add((int(cells[to_goal[cells] == 1][0]), int(goal)))
    agent = _DistanceAgent(maze, next_cell, distances_to, frozenset(wrong))
    shares = script.greedy_move_shares(agent, maze, next_cell)
    assert shares["greedy_1_24"] == pytest.approx(1 - len(wrong) / in_band, abs=1e-3)
