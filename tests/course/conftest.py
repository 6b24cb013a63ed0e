"""The course checks' tiers: `-m "not slow and not gpu"` is the fast one, run after each change.

A check is slow when it grades whole submissions, trains, or executes notebooks. Those that
share a module-scoped grading run (the fixtures below) are marked here, once; the others carry
`@pytest.mark.slow` themselves.
"""

import pytest

SLOW_FIXTURES = {
    "runs",  # grading/test_grader.py: 17 full gradings
    "graded",  # grading/test_adversarial.py: every attack graded
    "graded_class",  # instructor/test_class_grading.py: grade-class, interrupted and resumed
    "package", "autograded",  # instructor/test_gradescope_zip.py: the zip built and run_autograder run
    "mnist_dir",  # training on the real digits
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
