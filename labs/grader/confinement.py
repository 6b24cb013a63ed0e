"""Confinement of the worker process that runs a student's code, by the operating system.

What the worker may do is decided here, before it imports a line of student code, with
mechanisms that code inside the worker cannot undo:

- its own session and process group, killed as a whole when grading ends (reaping.py: its
  parent is a "child subreaper", so processes that escape the group by double forking are
  still found and killed);
- resource limits: CPU time, address space, file size, processes, open files, no core dumps;
- when the grader runs as root (as on Gradescope): a switch to an unprivileged user id;
- on Linux 5.13+, Landlock (https://docs.kernel.org/userspace-api/landlock.html): read-only
  access to the Python installation and system folders, write access to the worker's own
  scratch folder only, no TCP, and (Linux 6.12+) no signals to processes outside the sandbox.
  The grader's checkout (solutions, tests) and its results are outside, so they can be
  neither read nor written.

Where a mechanism is missing (macOS, old kernels), `describe()` says what protection is left.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

LINUX = sys.platform.startswith("linux")
# Workers are forked from a zygote and handed their channel over a Unix socket: POSIX only.
CAN_ISOLATE = hasattr(os, "fork") and hasattr(__import__("socket"), "send_fds")
UNPRIVILEGED_UIDS = range(61000, 65000)  # one per grading run, so two runs' workers cannot signal each other


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 3600
    memory_bytes: int = 6 * 2**30  # on top of what the worker has mapped when it starts
    file_bytes: int = 64 * 2**20
    processes: int = 64  # beyond those the user already runs
    open_files: int = 256


# ---------------------------------------------------------------- Landlock

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_PR_SET_NO_NEW_PRIVS, _PR_SET_PDEATHSIG = 38, 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ALL_ABI1 = (1 << 13) - 1  # execute .. make_sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where there is none."""
    if not LINUX:
        return 0
    version = _libc().syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def _landlock(read_only: list[Path], read_write: list[Path], devices: list[Path]) -> int:
    """Restrict this process (and its future children) to the given folders; returns the ABI used."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    handled = _FS_ALL_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) | (_FS_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(handled, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0, (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    read = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
    everything = handled
    try:
        for paths, access in ((read_only, read), (read_write, everything), (devices, _FS_READ_FILE | _FS_WRITE_FILE)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # a folder that does not exist needs no rule
                try:
                    allowed = access & handled
                    if not os.path.isdir(path):
                        allowed &= _FILE_ONLY
                    rule = _PathBeneathAttr(allowed, fd)
                    if libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                        raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
                finally:
                    os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


def readable_roots(forbidden: list[Path]) -> list[Path]:
    """Folders the worker may read: the Python installation and system folders, less `forbidden`.

    Landlock only grants, so a granted folder that contains a forbidden one (a parent of the
    checkout, say) is replaced by its other entries. The Python installation is granted even
    inside a forbidden folder (a virtual environment in the checkout), but never a folder that
    holds a forbidden one.
    """
    python = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path) if p}
    # not /opt, /home, /srv or /tmp: other students' submissions may be there (conda in /opt is sys.prefix above)
    system = {Path(p) for p in ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/nix")}
    forbidden = [f.resolve() for f in forbidden]
    roots: list[Path] = []
    for candidates, inside_is_fine in ((python, True), (system, False)):
        for candidate in sorted(candidates):
            try:
                candidate = candidate.resolve()
            except OSError:
                continue
            if candidate.exists():
                roots += _grant_around(candidate, forbidden, inside_is_fine)
    return sorted(set(roots))


def _grant_around(folder: Path, forbidden: list[Path], inside_is_fine: bool = False) -> list[Path]:
    if folder in forbidden or (not inside_is_fine and any(f in folder.parents for f in forbidden)):
        return []
    if not any(folder in f.parents for f in forbidden):  # holds nothing forbidden: all of it
        return [folder]
    granted = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            granted += _grant_around(entry, forbidden, inside_is_fine)
        elif entry not in forbidden:
            granted.append(entry)
    return granted


# ---------------------------------------------------------------- the worker confines itself


def confine(scratch: Path, readable: list[Path], limits: Limits, uid: int | None) -> list[str]:
    """Called in the freshly forked worker, before any student code. Returns what was applied."""
    applied = []
    os.setsid()
    if LINUX:
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the worker dies with its parent
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized file fails with an error instead
    address_space = _mapped_bytes() + limits.memory_bytes
    for name, value in (
        ("RLIMIT_CPU", limits.cpu_seconds),
        ("RLIMIT_AS", address_space if LINUX else None),
        ("RLIMIT_FSIZE", limits.file_bytes),
        ("RLIMIT_NOFILE", limits.open_files),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_NPROC", limits.processes + (0 if uid is not None else _processes_of(os.getuid()))),
    ):
        if value is None or not hasattr(resource, name):
            continue
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            applied.append(name.removeprefix("RLIMIT_").lower())
        except (ValueError, OSError):
            pass
    abi = landlock_abi()
    if uid is not None and os.geteuid() == 0:
        os.chown(scratch, uid, uid)
        keep_reading = LINUX and abi >= 1
        if keep_reading:  # Landlock decides what may be read, so the Python installation under /root stays readable
            _libc().prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if keep_reading:
            _keep_only_capability(_CAP_DAC_READ_SEARCH)
        applied.append(f"uid {uid}")
    abi = _landlock(readable, [scratch], [Path("/dev/null"), Path("/dev/urandom"), Path("/dev/zero")])
    if abi:
        applied.append(f"landlock v{abi}")
    return applied


_PR_SET_KEEPCAPS, _CAP_DAC_READ_SEARCH, _CAPABILITY_VERSION_3 = 8, 2, 0x20080522


def _keep_only_capability(capability: int) -> None:
    """After the switch to an unprivileged user: keep one capability, drop every other."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)(Data(1 << capability, 1 << capability, 0), Data(0, 0, 0))
    if _libc().capset(ctypes.byref(Header(_CAPABILITY_VERSION_3, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _mapped_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _processes_of(uid: int) -> int:
    if not LINUX:
        return 512
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count


def sandbox_uid() -> int | None:
    """The unprivileged user id for this grading run's workers when running as root, else None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    return UNPRIVILEGED_UIDS[os.getpid() % len(UNPRIVILEGED_UIDS)]


def describe() -> str:
    """One line on the protection this machine gives, for the grader's header."""
    if not CAN_ISOLATE:
        return "the code ran inside the test process (this system cannot fork): fine for your own code; grade others' on Linux or macOS"
    parts = ["own process group", "resource limits"]
    if sandbox_uid() is not None:
        parts.append("unprivileged user")
    abi = landlock_abi()
    if abi >= 6:
        parts.append("Landlock (files, network, signals)")
    elif abi >= 1:
        parts.append("Landlock (files)")
    else:
        parts.append("no Landlock: the worker can read what your user can read")
    return "the code ran in confined worker processes: " + ", ".join(parts)
