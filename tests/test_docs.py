"""Every file the code and the docs cite exists, and the README stays short.

Scanned: the package's and the experiments' Python files, README.md, docs/*.md and the mazes'
README. Cited are (1) repository paths written out, such as ``docs/design.md``,
``experiments/long_mazes.py`` or ``sshr_torch/mazes/README.md`` (relative to the repository's
root), and (2) the targets of markdown links, ``[text](target#anchor)`` (relative to the file
that holds the link; web addresses are not checked). A link's ``#anchor`` into a markdown file
must name one of its headings (GitHub's slugs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = sorted(
    [
        *ROOT.glob("sshr_torch/**/*.py"),
        *ROOT.glob("experiments/**/*.py"),
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        ROOT / "sshr_torch" / "mazes" / "README.md",
    ]
)
# A path from the repository's root: a top folder, then a file name with an extension.
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|experiments|sshr_torch|tests)/[\w./-]*\w\.\w+)")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
README_MAX_LINES = 250


def cited(path: Path) -> list[tuple[str, Path, str]]:
    """(as written, the file it names, anchor or '') for every citation in ``path``."""
    text = path.read_text()
    found = [(match, ROOT / match, "") for match in REPO_PATH.findall(text)]
    if path.suffix == ".md":
        for target in MARKDOWN_LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:, ...
                continue
            name, _, anchor = target.partition("#")
            found.append((target, path.parent / name if name else path, anchor))
    return found


def slugs(markdown: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    anchors = set()
    for line in markdown.read_text().splitlines():
        heading = re.match(r"#+\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_the_scan_sees_citations():
    """The patterns find the kinds of citation this test is for (it could pass vacuously)."""
    readme = {written for written, _, _ in cited(ROOT / "README.md")}
    assert "docs/design.md" in readme and "sshr_torch/mazes/README.md" in readme
    assert any(anchor for _, _, anchor in cited(ROOT / "README.md"))
    assert any("docs/design.md" in w for f in SCANNED if f.suffix == ".py" for w, _, _ in cited(f))


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_file_exists(path):
    missing = []
    for written, target, anchor in cited(path):
        if not target.exists():
            missing.append(written)
        elif anchor and target.suffix == ".md" and anchor not in slugs(target):
            missing.append(f"{written} (no such heading)")
    assert missing == [], f"{path.relative_to(ROOT)} cites what does not exist: {missing}"


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_cites_files_outside_the_repository(path):
    text = path.read_text()
    assert "../shared" not in text and "/work/" not in text


def test_the_readme_is_short_and_its_results_link_to_docs():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    results = lines[lines.index("## Results") :]
    rows = [line for line in results if line.startswith("| ") and not line.startswith("| result")]
    assert len(rows) >= 5
    for row in rows:
        assert "](docs/" in row, row


def test_the_readme_states_the_defaults_that_help_states():
    """The README's "Defaults" section and the end of --help name the same choices."""
    from sshr_torch.config import PAPER_SETTINGS, PROJECT_CHOICES

    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Defaults") :]
    section = section[: section.index("\n## ")]
    for choice in PROJECT_CHOICES:  # e.g. "--n-step 10"
        assert f"`{choice}`" in section, choice
    for name in ("eta", "c_ss", "ucb_form", "her_k"):
        value = PAPER_SETTINGS[name]
        shown = f"{value:g}" if isinstance(value, float) else str(value)  # 1.0 -> 1
        assert f"`--{name.replace('_', '-')} {shown}`" in section, name
    assert PAPER_SETTINGS["maze"] in section and "--preset paper" in section
