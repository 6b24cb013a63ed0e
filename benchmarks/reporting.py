"""What the benchmark scripts share: where results go, how a device is named, how a result is saved.

Importing this module puts the repository root on sys.path, so that a script run as
`python benchmarks/bench_<name>.py` can import `labs`.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def device_name(device: torch.device) -> str:
    """The GPU's name ("NVIDIA H100 80GB HBM3"), or the processor's ("x86_64") for a CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def device_slug(device: torch.device) -> str:
    """For file names: "cpu", or the GPU's name in lower case with dashes ("nvidia-h100-80gb-hbm3")."""
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def utc_timestamp() -> str:
    """Now, in UTC, as "2026-11-24T04:26:20Z"."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def save_json(path: Path, result: dict, prefix: str = "") -> None:
    """Write `result` to `path` as indented JSON (creating its folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    shown = path.resolve().relative_to(REPO_ROOT) if path.resolve().is_relative_to(REPO_ROOT) else path
    print(f"{prefix}saved {shown}")
