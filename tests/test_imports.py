"""The package has no import circle.

Which imports count: every ``import`` and ``from ... import`` statement in a module's source,
wherever it stands: at the top, inside a function (a lazy import), or under
``if TYPE_CHECKING:``. A statement is an edge from the module to each sshr_torch module it
names: ``from sshr_torch.agents import targets`` names the submodule ``sshr_torch.agents.targets``;
``from sshr_torch import TrainConfig`` names the package ``sshr_torch`` (its ``__init__``).
Not counted: that importing a submodule first runs its parents' ``__init__`` (every module
would otherwise "import" the top package, whose ``__init__`` lazily imports the trainer).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sshr_torch"


def module_names(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's __init__), for root's .py files."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        names[".".join(parts)] = (path, is_package)
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules its import statements name (see the module docstring)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: level 1 is this package, 2 its parent, ...
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                # `from a import b` names the submodule a.b if there is one, else a itself.
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                # `import a.b.c` names a.b.c; keep the longest prefix that is one of ours.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: each strongly connected component of more than one module (a module
    importing itself is skipped above), as a sorted list (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_package_has_no_import_circle():
    graph = import_graph(PACKAGE)
    # The graph is the real one: the modules and edges the circles used to run through.
    assert "sshr_torch.agents.fast_path" in graph["sshr_torch.agents.dqn"]
    assert "sshr_torch.agents.targets" in graph["sshr_torch.agents.fast_path"]
    assert "sshr_torch.cluster" in graph["sshr_torch.sweep"]  # a function-level import
    assert "sshr_torch.trainer" in graph["sshr_torch"]  # under TYPE_CHECKING and in a function
    assert find_cycles(graph) == []


def test_the_trainer_talks_to_envs_through_the_protocol_and_the_seam_points_down():
    graph = import_graph(PACKAGE)
    # the run is built from the parts of build, checked by resources, played by rollout
    assert {"sshr_torch.build", "sshr_torch.resources", "sshr_torch.rollout"} <= graph[
        "sshr_torch.trainer"
    ]
    assert "sshr_torch.protocol" in graph["sshr_torch.trainer"]
    assert "sshr_torch.protocol" in graph["sshr_torch.rollout"]
    # no maze inside the trainer: the maze is one env behind the protocol
    assert not {"sshr_torch.maze", "sshr_torch.env"} & graph["sshr_torch.trainer"]
    # the seam's modules sit below the trainer: none imports it (or the command line)
    seam = ("protocol", "build", "resources", "rollout", "goal_reach", "dashboards")
    for name in seam:
        assert not {"sshr_torch.trainer", "sshr_torch.train"} & graph[f"sshr_torch.{name}"]
    assert not graph["sshr_torch.protocol"] - {"sshr_torch.config"}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # a circle through a function-level import and a relative import
            {
                "__init__.py": "",
                "a.py": "from pkg import b\n",
                "b.py": "def f():\n    from . import c\n",
                "c.py": "import pkg.a\n",
            },
            [["pkg.a", "pkg.b", "pkg.c"]],
        ),
        (  # a circle through a TYPE_CHECKING import and the package's __init__
            {
                "__init__.py": "from pkg.sub.x import X\n",
                "sub/__init__.py": "",
                "sub/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from pkg import X\n",
            },
            [["pkg", "pkg.sub.x"]],
        ),
        (  # one way only: no circle
            {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "import os\n"},
            [],
        ),
    ],
)
def test_the_circle_finder_finds_circles(tmp_path, files, expected):
    root = tmp_path / "pkg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert find_cycles(import_graph(root)) == expected


def test_train_is_the_training_function_after_the_cli_module_is_imported(tmp_path):
    """``import sshr_torch.train`` (the command line's module) binds the module on the package,
    where ``from sshr_torch import train`` looks; called, it trains as the function does."""
    script = (
        "import sshr_torch.train\n"
        "from sshr_torch import TrainConfig, train\n"
        f"result = train(TrainConfig(episodes=1, max_episode_steps=20, quiet=True, "
        f"run_dir={str(tmp_path / 'run')!r}))\n"
        "print(type(result).__name__, result.summary['episodes'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["TrainResult", "1"]
