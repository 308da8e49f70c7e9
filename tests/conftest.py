"""pytest options: ``--slow`` runs the long forms of the tests that have one (e.g. many random
kills in tests/test_reliability.py instead of a few)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="run the long forms of the tests (many random kill-and-resume cases)",
    )


@pytest.fixture
def slow(request: pytest.FixtureRequest) -> bool:
    """True when pytest runs with --slow."""
    return bool(request.config.getoption("--slow"))
