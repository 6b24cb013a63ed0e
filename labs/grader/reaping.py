"""Ending every process that grading started, however it tried to escape, and removing what it wrote.

The trusted side, the zygote and class grading each end what they started the same way: kill
the process group, then the process, then every orphan that was reparented to us (a Linux
"child subreaper" adopts descendants that double-fork out of their group).

Scratch folders (`labs-scratch-*` in the temporary folder, one per zygote, a subfolder per
worker) go on every way a run ends: the zygote removes a worker's folder when it ends that
worker and all of them when it stops (also when the trusted side was killed: its control
socket closes). When the zygote itself was killed, its folder is marked with who owned it
(`claim_scratch_root`), and `sweep_scratch` at the next start removes every folder whose owner
has ended. A worker with a mount namespace writes into a tmpfs of its own, which is freed with
it: what it wrote never reaches the disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
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
    """The pids whose parent is `pid`: from its threads' `children` files, or by reading all of /proc."""
    if not LINUX:
        return []
    try:  # Linux 3.5+ (CONFIG_PROC_CHILDREN): no need to read the stat of every process on the machine
        return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    except (OSError, ValueError):
        pass
    found = []
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


def wait_for(pid: int, seconds: float = 2.0) -> dict[int, int]:
    """Reap the child `pid` as soon as it has ended (a killed worker takes milliseconds to go), for
    at most `seconds`: {pid: wait status}, and any other child that ended meanwhile; {} if it did not."""
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    while True:
        statuses.update(reap())
        if pid in statuses or time.monotonic() > deadline:
            return statuses
        time.sleep(0.0005)


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


# ---------------------------------------------------------------- scratch folders

SCRATCH_PREFIX = "labs-scratch-"
_OWNER = ".owner"  # in a scratch root: "pid start-time boot-id" of the zygote that uses it


def _identity(pid: int) -> str | None:
    """Names one process, also after its pid is reused or the machine restarted."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    after_name = fields[fields.rfind(")") + 2 :].split()  # from field 3, the state
    if after_name[0] in ("Z", "X"):  # a zombie has ended: only its exit status is left
        return None
    return f"{pid} {after_name[19]} {boot}"  # field 22, the start time


def claim_scratch_root(root: Path) -> None:
    """Mark `root` as this process's, so that a sweep removes it once this process is gone."""
    identity = _identity(os.getpid())
    if identity is None:
        return
    partial = root / f"{_OWNER}.{os.getpid()}"
    partial.write_text(identity)
    os.replace(partial, root / _OWNER)


def _owner_alive(root: Path) -> bool:
    try:
        claimed = (root / _OWNER).read_text().split()
        return _identity(int(claimed[0])) == " ".join(claimed)
    except (OSError, ValueError, IndexError):
        return True  # unmarked: its zygote has started no worker yet, so nothing was written there


def sweep_scratch(folder: Path | None = None, keep: Path | None = None) -> list[Path]:
    """Remove the scratch roots in `folder` (default: the temporary folder) whose owner has ended.

    Only this user's folders, never through a symbolic link; returns what it removed.
    """
    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    removed = []
    for entry in sorted(folder.glob(f"{SCRATCH_PREFIX}*")):
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or entry == keep or _owner_alive(entry):
            continue
        remove_tree(entry)
        removed.append(entry)
    return removed


def remove_tree(path: Path) -> None:
    """Remove a folder that a worker wrote, also where it took away its own permissions (chmod 000)."""
    for folder, dirs, _ in os.walk(path):
        for name in dirs:
            child = os.path.join(folder, name)
            try:
                if stat.S_ISDIR(os.lstat(child).st_mode):  # never a link's target
                    os.chmod(child, 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def scratch_use(folder: Path, most_entries: int) -> tuple[int, int]:
    """(bytes on disk, entries) under `folder`; counting stops past `most_entries`."""
    used, entries, pending = 0, 0, [str(folder)]
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                for entry in listing:
                    entries += 1
                    info = entry.stat(follow_symlinks=False)
                    used += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(entry.path)
                    if entries > most_entries:
                        return used, entries
        except OSError:
            continue
    return used, entries
