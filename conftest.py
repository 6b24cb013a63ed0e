"""The `--impl` option of the test suite (see tests/conftest.py for what it does).

It is declared here, at the repository root, because pytest 9 reads `--impl solutions` with
`solutions` (an existing folder) as a test path and then loads only the conftest files above
that path before parsing options (pytest issue #13913); this one is always among them.
"""

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        choices=("labs", "solutions"),
        default=os.environ.get("LABS_IMPL", "labs"),
        help="which implementation the graded tests import as `labs.<module>` (default: labs, your code)",
    )
