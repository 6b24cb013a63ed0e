"""Ending every process that grading started, however it tried to escape.

The trusted side, the zygote and class grading each end what they started the same way: kill
the process group, then the process, then every orphan that was reparented to us (a Linux
"child subreaper" adopts descendants that double-fork out of their group).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LINUX = sys.platform.startswith("linux")
_PR_SET_CHILD_SUBREAPER = 36


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)



def become_subreaper() -> bool:
    """Orphaned descendants are reparented to this process, so that `kill_children` finds them."""
    if not LINUX:
        return False
    return _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def children_of(pid: int) -> list[int]:
    found = []
    if not LINUX:
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (name) "
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_children(keep: set[int] = frozenset(), rounds: int = 50) -> None:
    """SIGKILL every child of this process (but `keep`) and reap it, until none is left.

    Killing a child reparents its own children here (we are a subreaper), so repeat.
    """
    for _ in range(rounds):
        children = [pid for pid in children_of(os.getpid()) if pid not in keep]
        if not children:
            return
        for pid in children:
            kill_group(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reap()
        time.sleep(0.01)


def reap() -> dict[int, int]:
    """Collect finished children without blocking: {pid: wait status}."""
    statuses = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        statuses[pid] = status
    return statuses


def kill_process(process: subprocess.Popen) -> None:
    """Kill a process started in a session of its own (start_new_session=True): its whole group, then it."""
    if hasattr(os, "killpg"):  # not on Windows
        kill_group(process.pid)
    process.kill()


def end_process(process: subprocess.Popen) -> None:
    """`kill_process`, then reap it."""
    kill_process(process)
    process.wait()
