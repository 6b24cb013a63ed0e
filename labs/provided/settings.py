"""Environment switches shared by notebooks, recipes and tests.

    LABS_FAST=1        shrink data and epochs so a notebook or a recipe runs in seconds (CI)
    LABS_DATA_DIR=DIR  where datasets live (default: the repository's data/ folder)
    LABS_DEVICE=NAME   force a device ("cpu", "cuda", "cuda:1", "mps")
"""

import os
from pathlib import Path

from labs import REPO_ROOT


def fast_mode() -> bool:
    """True when LABS_FAST is set to 1/true/yes: use small data and few epochs."""
    return os.environ.get("LABS_FAST", "").strip().lower() in {"1", "true", "yes"}


def data_dir() -> Path:
    """The dataset folder: LABS_DATA_DIR, or data/ at the repository root."""
    return Path(os.environ.get("LABS_DATA_DIR") or REPO_ROOT / "data").expanduser()
