"""Writing a file so that readers see the old file or the complete new one, never half of it.

Used for checkpoints (training), results.json (the grader), feedback, grade sheets and reports
(class grading) and the Gradescope zip: one way, with a temporary name of its own for every
write, so that two runs writing into one folder never clash.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None], mode: int = 0o644) -> Path:
    """Call `write(file)` on a fresh temporary file beside `path`, flush it to disk, then rename it over `path`.

    os.replace is atomic on POSIX and Windows within one file system. If anything fails, the
    temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """`path` holds `text` (UTF-8), all of it or the file as it was."""
    data = text.encode("utf-8")
    return write_atomically(path, lambda file: file.write(data))


def write_json_atomically(path: str | Path, data: object) -> Path:
    """`path` holds `data` as indented JSON, all of it or the file as it was."""
    return write_text_atomically(path, json.dumps(data, indent=2) + "\n")
