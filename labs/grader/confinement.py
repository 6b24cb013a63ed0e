"""Confinement of the worker process that runs a student's code, by the operating system.

Deny by default: a worker gets what running the student's code needs and nothing else, decided
here before it imports a line of that code, with mechanisms that code inside it cannot undo.
`confine` applies the layers in this order (the order matters: namespaces and mounts need
privileges that the later layers take away):

1. its own session and process group, killed as a whole when grading ends (reaping.py), and a
   death signal when its parent, the zygote, dies;
2. resource limits: CPU time, address space, file size, processes, open files, no core dumps;
3. namespaces of its own (Linux): IPC (no SysV IPC or POSIX message queue that another process
   can see), network (only a loopback that is down: no TCP, UDP or MPTCP anywhere, no abstract
   unix socket of anyone else's) and mount. As root they are created directly; otherwise inside
   a user namespace of its own, which maps only the grader's own user id;
4. in its mount namespace, a view of the filesystem (pivot_root) that holds only what it may
   read, read-only: the Python installation, the code folder, the shared libraries and a few
   named files of /etc, /proc and /sys; and its scratch folder, a tmpfs of `Limits.scratch_bytes`
   that is gone with the worker. The checkout, /tmp, /home, /run and every socket in them are
   not in the view at all;
5. when the grader runs as root: an unprivileged user id (one per grading run). The view makes
   the Python installation readable to it even under /root (mode 700), by holding /root's
   Python folder and nothing else of /root;
6. no capability left in any set (effective, permitted, inheritable, ambient, bounding), and
   no_new_privs, checked in /proc/self/status before going on;
7. on Linux 5.13+, Landlock (https://docs.kernel.org/userspace-api/landlock.html): read only the
   readable roots (and /proc/<its own pid>), write only its scratch folder, execute nothing,
   no TCP (6.7+), no signal to and no abstract unix socket of a process outside its sandbox (6.12+);
8. seccomp: system calls a worker never needs fail with EPERM: new sockets of any family (the
   channel is inherited; Landlock does not cover connecting to a unix socket by its path),
   SysV IPC, message queues, keyrings, io_uring, ptrace, mounting, new namespaces.

Each layer is tried on its own; one that the kernel or a container refuses is recorded in
`Confinement.missing` with the reason, and `confine` goes on with the others (a container that
forbids namespaces still gets Landlock and seccomp). What was applied goes back to the trusted
side (server.py's "confinement" request) and is checked by `python -m labs grade --check-sandbox`
(trusted/sandbox_check.py). Where a mechanism is missing (macOS, old kernels), `describe()`
says what protection is left.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import signal
import stat
import struct
import sys
from dataclasses import asdict, dataclass, field
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
    scratch_bytes: int = 256 * 2**20  # all of the scratch folder together
    scratch_files: int = 10_000  # files and folders in it


@dataclass
class Confinement:
    """What `confine` applied, layer by layer: plain data, so that it crosses the channel as it is."""

    namespaces: list[str] = field(default_factory=list)  # the worker's own: "user", "ipc", "net", "mnt"
    view: str = ""  # "pivot_root": it sees only the readable roots and its scratch; "": the machine's filesystem
    uid: int = -1
    gid: int = -1
    capabilities: dict[str, int] = field(default_factory=dict)  # CapInh .. CapAmb of /proc/self/status, after the switch
    no_new_privs: bool = False
    landlock: dict = field(default_factory=dict)  # {"abi", "fs", "tcp", "scopes"}; {} without Landlock
    seccomp: list[str] = field(default_factory=list)  # the system calls refused
    rlimits: dict[str, int] = field(default_factory=dict)
    scratch: dict = field(default_factory=dict)  # {"path", "quota_bytes", "quota_files", "enforced_by"}
    missing: dict[str, str] = field(default_factory=dict)  # layer -> why this machine did not give it

    def as_data(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def _libc():
    """The C library, loaded once: a child forked from a threaded process must not take the loader's lock."""
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")
    return result


# ---------------------------------------------------------------- what a worker may read

# Shared libraries that the Python installation links against (/bin, /sbin: a worker runs no program).
SYSTEM_FOLDERS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/nix")
# What Python, numpy and torch open in a worker (strace of a graded run): the loader's cache,
# time zone, users and groups (getpwuid), and /etc/alternatives for libraries linked through it.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf", "passwd", "group", "alternatives")
PROC_FILES = ("cpuinfo", "meminfo")  # and /proc/<its own pid>, which the worker grants itself
SYS_FOLDERS = ("/sys/devices/system/cpu", "/sys/devices/system/node")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def readable_roots(forbidden: list[Path]) -> list[Path]:
    """What a worker may read: the Python installation and the system files above, less `forbidden`.

    Never a checkout: besides `forbidden`, every project installed in editable mode (its
    direct_url.json, whatever the install mode) and every sys.path entry that is not the standard
    library or site-packages (a checkout put there by a .pth file or PYTHONPATH) are forbidden.
    Landlock only grants, so a granted folder that holds a forbidden one is replaced by its other
    entries. The Python installation is granted even inside a forbidden folder (a virtual
    environment in the checkout), but never a folder that holds a forbidden one. A symbolic
    link is listed with its target (/lib and /usr/lib), so that the worker's view can hold both.
    """
    forbidden = [f.resolve() for f in forbidden] + _editable_projects() + _unusual_sys_path()
    roots: list[Path] = []
    for prefix in sorted({Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix) if p}):
        roots += _grant(prefix, forbidden, inside_is_fine=True)
    system = [*SYSTEM_FOLDERS, *(f"/etc/{name}" for name in ETC_FILES), *(f"/proc/{name}" for name in PROC_FILES), *SYS_FOLDERS]
    for path in system:
        roots += _grant(Path(path), forbidden)
    return sorted(set(roots))


def _grant(path: Path, forbidden: list[Path], inside_is_fine: bool = False) -> list[Path]:
    if not path.exists():
        return []
    if path.is_symlink():  # the link itself, and what it points to
        return [path] + _grant(path.resolve(), forbidden, inside_is_fine)
    return _grant_around(path.resolve(), forbidden, inside_is_fine)


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


def _editable_projects() -> list[Path]:
    """The source folders of projects installed with `pip install -e` (PEP 610's direct_url.json)."""
    from importlib import metadata
    from urllib.parse import unquote, urlparse

    found = []
    for distribution in metadata.distributions():
        try:
            info = json.loads(distribution.read_text("direct_url.json") or "{}")
        except (OSError, ValueError):
            continue
        url = urlparse(str(info.get("url", "")))
        if info.get("dir_info", {}).get("editable") and url.scheme == "file":
            found.append(Path(unquote(url.path)).resolve())
    return found


def _unusual_sys_path() -> list[Path]:
    """sys.path entries that are not the standard library or site-packages: a checkout, the current folder."""
    import site
    import sysconfig

    standard = {Path(p).resolve() for p in site.getsitepackages() if p}
    for scheme in (sysconfig.get_paths(), sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})):
        standard |= {Path(scheme[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in scheme}
    unusual = []
    for entry in sys.path:
        path = Path(entry or os.getcwd()).resolve()
        if path.suffix == ".zip" or any(path == s or s in path.parents for s in standard):
            continue
        unusual.append(path)
    return unusual


# ---------------------------------------------------------------- namespaces

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWNET, _CLONE_NEWUSER = 0x00020000, 0x08000000, 0x40000000, 0x10000000
_NAMESPACES = {"ipc": _CLONE_NEWIPC, "net": _CLONE_NEWNET, "mnt": _CLONE_NEWNS}


def _unshare(applied: Confinement) -> None:
    """Namespaces of the worker's own: directly as root, in a user namespace of its own otherwise."""
    libc = _libc()
    if os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        try:
            _check(libc.unshare(_CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
            Path("/proc/self/setgroups").write_text("deny")  # needed before gid_map; and no group can be added back
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")  # only the grader's own user exists inside
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
            applied.namespaces.append("user")
        except OSError as error:
            for name in ("user", *_NAMESPACES):
                applied.missing[name] = f"no user namespace ({error.strerror or error}), so no namespace at all (not root)"
            return
    for name, flag in _NAMESPACES.items():  # one at a time: a container may allow some and not others
        if libc.unshare(flag) == 0:
            applied.namespaces.append(name)
        else:
            applied.missing[name] = f"unshare refused: {os.strerror(ctypes.get_errno())}"


# ---------------------------------------------------------------- the worker's view of the filesystem

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 1024, 2048, 1 << 21
_ST_NOEXEC, _ST_NOATIME, _ST_NODIRATIME, _ST_RELATIME = 8, 1024, 2048, 4096
_MNT_DETACH = 2
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def _mount(source: str | Path | None, target: str | Path, kind: str | None, flags: int, options: str | None = None) -> None:
    encode = lambda value: None if value is None else os.fsencode(str(value))  # noqa: E731
    _check(_libc().mount(encode(source), encode(target), encode(kind), ctypes.c_ulong(flags), encode(options)), f"mount {target}")


def _bind_read_only(source: Path, target: Path) -> None:
    """`source` at `target`, read-only; the flags a user namespace may not clear (nosuid, noexec, atime) kept."""
    _mount(source, target, None, _MS_BIND | _MS_REC)
    kept = os.statvfs(target).f_flag
    flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
    flags |= (_MS_NOEXEC if kept & _ST_NOEXEC else 0) | (_MS_NOATIME if kept & _ST_NOATIME else 0)
    flags |= (_MS_NODIRATIME if kept & _ST_NODIRATIME else 0) | (_MS_RELATIME if kept & _ST_RELATIME else 0)
    _mount(None, target, None, flags)


def _outermost(paths: list[Path]) -> list[Path]:
    """The paths that are not inside another one of them (symbolic links are no folders)."""
    kept: list[Path] = []
    for path in sorted(paths):
        if not any(k in path.parents and not k.is_symlink() for k in kept):
            kept.append(path)
    return kept


def _scratch_tmpfs(target: Path, limits: Limits, uid: int, gid: int) -> None:
    options = f"size={limits.scratch_bytes},nr_inodes={limits.scratch_files},mode=0700,uid={uid},gid={gid}"
    _mount("labs-scratch", target, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options)


def _build_view(scratch: Path, readable: list[Path], limits: Limits, uid: int, gid: int) -> None:
    """Make the worker's root a tmpfs that holds only `readable` (read-only), the devices, /proc and scratch.

    Built on top of the scratch folder (any empty folder would do), then pivot_root into it; the
    old root is detached, so that nothing else of the machine can be reached by any path.
    """
    new = scratch
    if Path("/") in readable:
        raise OSError(0, "the readable roots hold / itself: a view would show everything")
    _mount("labs-view", new, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=4m,nr_inodes=65536")
    os.umask(0o022)
    for path in _outermost([p for p in readable if Path("/proc") not in p.parents]):
        target = new / path.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            os.symlink(os.readlink(path), target)
            continue
        if not path.exists():
            continue
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            target.touch()
        _bind_read_only(path, target)
    for device in DEVICES:
        if os.path.exists(device):
            target = new / device.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
            _mount(device, target, None, _MS_BIND)
    proc = new / "proc"
    proc.mkdir(exist_ok=True)
    try:  # a procfs of its own, where processes of other users are invisible (root only: needs no pid namespace)
        _mount("proc", proc, "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "hidepid=invisible")
    except OSError:
        _mount("/proc", proc, None, _MS_BIND | _MS_REC)
    inside = new / scratch.relative_to("/")
    inside.mkdir(parents=True, exist_ok=True)
    _scratch_tmpfs(inside, limits, uid, gid)
    _mount(None, new, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chdir(new)
    if _libc().syscall(_SYS_PIVOT_ROOT[os.uname().machine], b".", b".") == 0:
        # The old root now lies on top of the new one: past this point a failure must end the worker.
        if _libc().umount2(b".", _MNT_DETACH) != 0:
            raise RuntimeError(f"pivot_root done, but the old root stays: {os.strerror(ctypes.get_errno())}")
    else:  # the root is no mount (an initramfs): chroot, which the worker cannot leave without CAP_SYS_CHROOT
        os.chroot(".")
    os.chdir(scratch)


def _filesystem_view(scratch: Path, readable: list[Path], limits: Limits, uid: int, gid: int, applied: Confinement) -> None:
    if "mnt" not in applied.namespaces:
        applied.missing["view"] = "no mount namespace"
        return
    try:
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing mounted here may reach the machine's namespace
    except OSError as error:
        applied.missing["view"] = applied.missing["scratch quota"] = str(error)
        return
    if os.uname().machine not in _SYS_PIVOT_ROOT:
        applied.missing["view"] = f"pivot_root's number on {os.uname().machine} is not known here"
    else:
        try:
            _build_view(scratch, readable, limits, uid, gid)
            applied.view = "pivot_root"
            applied.scratch["enforced_by"] = "tmpfs"
            return
        except OSError as error:
            applied.missing["view"] = str(error)
            _libc().umount2(os.fsencode(str(scratch)), _MNT_DETACH)
            os.chdir(scratch)
    try:  # at least the quota
        _scratch_tmpfs(scratch, limits, uid, gid)
        os.chdir(scratch)
        applied.scratch["enforced_by"] = "tmpfs"
    except OSError as error:
        applied.missing["scratch quota"] = str(error)


def _reachable_by_others(path: Path) -> bool:
    """Whether a user that owns nothing can read `path` (every folder above it searchable by others)."""
    try:
        for folder in [*reversed(path.parents), path]:
            mode = folder.stat().st_mode
            needed = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
            if not mode & needed:
                return False
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- capabilities

_PR_SET_PDEATHSIG, _PR_SET_KEEPCAPS, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 8, 24, 38
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAP_DAC_READ_SEARCH, _CAPABILITY_VERSION_3 = 2, 0x20080522


def _drop_bounding_set(keep: int = 0) -> bool:
    """Drop every capability from the bounding set but `keep` (a mask); False without CAP_SETPCAP."""
    libc = _libc()
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # needs no privilege
    for capability in range(64):
        if not keep & (1 << capability) and libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            if ctypes.get_errno() == 1:  # EPERM; EINVAL past the last capability this kernel knows
                return False
    return True


def _set_capabilities(keep: int) -> None:
    """Effective and permitted: exactly `keep` (a mask of the first 32); inheritable: none."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)(Data(keep, keep, 0), Data(0, 0, 0))
    _check(_libc().capset(ctypes.byref(Header(_CAPABILITY_VERSION_3, 0)), data), "capset")


def _status() -> dict[str, str]:
    """/proc/self/status as {field: value}."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _switch_user(uid: int | None, scratch: Path, applied: Confinement) -> None:
    """Give up root (to `uid`) or the user namespace's capabilities; then check that none is left."""
    keep = 0
    if uid is not None and os.geteuid() == 0:
        if not applied.view and not all(_reachable_by_others(Path(p)) for p in (sys.prefix, sys.base_prefix)):
            # No view to make the Python installation under /root readable: the one capability that can.
            keep = 1 << _CAP_DAC_READ_SEARCH
            applied.missing["capabilities"] = ("kept CAP_DAC_READ_SEARCH: the Python installation is not readable by other "
                                               "users and there is no mount namespace for a view (Landlock still limits reading)")
        if applied.scratch.get("enforced_by") != "tmpfs":
            os.chown(scratch, uid, uid)
        _drop_bounding_set(keep)
        if keep:
            _libc().prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        _set_capabilities(keep)
    elif "user" in applied.namespaces:  # every capability the new user namespace gave
        _drop_bounding_set()
        _set_capabilities(0)
    elif not _drop_bounding_set():
        applied.missing["bounding set"] = "kept: no CAP_SETPCAP outside a user namespace (no_new_privs keeps it unusable)"
    applied.uid, applied.gid = os.getuid(), os.getgid()
    status = _status()
    applied.capabilities = {key: int(status.get(key, "0"), 16) for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        if applied.capabilities[key] & ~keep:
            raise RuntimeError(f"the worker still holds capabilities after the switch: {key} {status[key]}")  # never run code so


# ---------------------------------------------------------------- seccomp

# System calls that no worker needs, as (x86_64, aarch64) numbers.
DENIED_SYSCALLS = {
    "socket": (41, 198),  # the channel is inherited; socketpair stays allowed
    "shmget": (29, 194), "semget": (64, 190), "msgget": (68, 186), "mq_open": (240, 180),
    "add_key": (248, 217), "request_key": (249, 218), "keyctl": (250, 219),  # keyrings outlive a process
    "io_uring_setup": (425, 425),  # io_uring opens sockets and files without these system calls
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282), "memfd_create": (319, 279),
    "unshare": (272, 97), "setns": (308, 268), "open_by_handle_at": (304, 265),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
}
_AUDIT_ARCH = {"x86_64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1)}  # seccomp's architecture, column above
_X32_SYSCALL_BIT = 0x40000000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO, _EPERM = 0x7FFF0000, 0x00050000, 1


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]]:
    """The classic-BPF filter: another ABI (32-bit calls, x32) gets EPERM for everything, DENIED_SYSCALLS too."""
    arch, column = _AUDIT_ARCH[machine]
    refuse = _SECCOMP_RET_ERRNO | _EPERM
    checks = [(_BPF_JGE_K, _X32_SYSCALL_BIT)] if machine == "x86_64" else []
    checks += [(_BPF_JEQ_K, numbers[column]) for numbers in DENIED_SYSCALLS.values()]
    program = [(_BPF_LD_W_ABS, 0, 0, 4), (_BPF_JEQ_K, 1, 0, arch), (_BPF_RET_K, 0, 0, refuse), (_BPF_LD_W_ABS, 0, 0, 0)]
    for index, (code, value) in enumerate(checks):
        program.append((code, len(checks) - index, 0, value))  # on a match: past the other checks and "allow"
    return program + [(_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW), (_BPF_RET_K, 0, 0, refuse)]


def _seccomp(applied: Confinement) -> None:
    machine = os.uname().machine
    if machine not in _AUDIT_ARCH or struct.calcsize("P") != 8:
        applied.missing["seccomp"] = f"no filter written for {machine} ({struct.calcsize('P') * 8}-bit Python)"
        return
    program = seccomp_program(machine)
    filters = (_SockFilter * len(program))(*[_SockFilter(*instruction) for instruction in program])
    fprog = _SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    if _libc().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        applied.missing["seccomp"] = f"prctl(PR_SET_SECCOMP) refused: {os.strerror(ctypes.get_errno())}"
        return
    applied.seccomp = sorted(DENIED_SYSCALLS)


# ---------------------------------------------------------------- Landlock

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
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


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where there is none."""
    if not LINUX:
        return 0
    version = _libc().syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def _landlock(read_only: list[Path], read_write: list[Path], devices: list[Path]) -> int:
    """Restrict this process (and its future children) to the given paths; returns the ABI used.

    Nothing is executable: a worker runs no program (shared libraries load without the right).
    """
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    handled = _FS_ALL_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) | (_FS_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(handled, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0, (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _check(libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)),
                     "landlock_create_ruleset")
    try:
        for paths, access in ((read_only, _FS_READ_FILE | _FS_READ_DIR), (read_write, handled & ~_FS_EXECUTE),
                              (devices, _FS_READ_FILE | _FS_WRITE_FILE)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # a path that does not exist needs no rule
                try:
                    allowed = access & handled
                    if not os.path.isdir(path):
                        allowed &= _FILE_ONLY
                    rule = _PathBeneathAttr(allowed, fd)
                    _check(libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0)),
                           f"landlock_add_rule for {path}")
                finally:
                    os.close(fd)
        _check(libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


# ---------------------------------------------------------------- the worker confines itself


def confine(scratch: Path, readable: list[Path], limits: Limits, uid: int | None) -> Confinement:
    """Called in the freshly forked worker, before any student code. Returns what was applied.

    `readable`: the trusted side's `readable_roots` (and the code folder); `uid`: the unprivileged
    user to become when running as root (`sandbox_uid()`), else None.
    """
    applied = Confinement(scratch={"path": str(scratch), "quota_bytes": limits.scratch_bytes,
                                   "quota_files": limits.scratch_files, "enforced_by": "the zygote's watcher"})
    parent = os.getppid()
    os.setsid()
    _limit_resources(limits, uid, applied)
    if not LINUX:
        applied.missing.update(namespaces="not Linux", landlock="not Linux", seccomp="not Linux")
        if uid is not None and os.geteuid() == 0:
            os.chown(scratch, uid, uid)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        applied.uid, applied.gid = os.getuid(), os.getgid()
        return applied
    _unshare(applied)
    switching = uid is not None and os.geteuid() == 0
    owner, group = (uid, uid) if switching else (os.geteuid(), os.getegid())  # of the scratch tmpfs
    _filesystem_view(scratch, readable, limits, owner, group, applied)
    _switch_user(uid, scratch, applied)
    libc = _libc()
    # After the switch: changing credentials clears the death signal.
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the zygote died before the signal was set
        os._exit(70)
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    applied.no_new_privs = True
    own = [Path(f"/proc/{os.getpid()}")]  # /proc/self, whatever else /proc holds
    abi = _landlock([*readable, *own], [scratch], [Path(d) for d in DEVICES])
    if abi:
        scopes = ["abstract_unix_socket", "signal"] if abi >= 6 else []
        applied.landlock = {"abi": abi, "fs": True, "tcp": abi >= 4, "scopes": scopes}
    else:
        applied.missing["landlock"] = "this kernel has no Landlock (Linux 5.13+)"
    _seccomp(applied)
    return applied


def _limit_resources(limits: Limits, uid: int | None, applied: Confinement) -> None:
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
            applied.rlimits[name.removeprefix("RLIMIT_").lower()] = value
        except (ValueError, OSError) as error:
            applied.missing[name.lower()] = str(error)


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


# ---------------------------------------------------------------- what this machine allows


@functools.lru_cache(maxsize=1)
def supported_layers() -> dict[str, bool | int]:
    """Which layers this machine allows, tried in a throwaway child process (a few milliseconds).

    {"user", "ipc", "net", "mnt": the namespace can be created (as root: "user" is not needed),
    "landlock": the ABI, "seccomp": a filter can be installed}. The sandbox check compares a
    worker's `Confinement` with this, so that a layer that silently failed is caught.
    """
    found: dict[str, bool | int] = {"landlock": landlock_abi(), "root": hasattr(os, "geteuid") and os.geteuid() == 0}
    if not LINUX or not CAN_ISOLATE:
        return {**found, "user": False, "ipc": False, "net": False, "mnt": False, "seccomp": False}
    _libc()  # loaded here, before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # nothing of Python's teardown: os._exit
        answer = {}
        try:
            os.close(read)
            applied = Confinement()
            _unshare(applied)
            answer = {name: name in applied.namespaces for name in ("user", "ipc", "net", "mnt")}
            if "mnt" in applied.namespaces:
                _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
            _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            _seccomp(applied)
            answer["seccomp"] = bool(applied.seccomp)
        except BaseException:  # noqa: BLE001 - whatever failed is not supported
            pass
        os.write(write, json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    import select

    with os.fdopen(read, "rb") as stream:
        ready = select.select([stream], [], [], 10.0)[0]  # a child stuck in a lock the fork copied says nothing
        answer = json.loads(stream.read() or b"{}") if ready else {}
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return {**found, **{name: bool(answer.get(name)) for name in ("user", "ipc", "net", "mnt", "seccomp")}}


def describe() -> str:
    """One line on the protection this machine gives, for the grader's header."""
    if not CAN_ISOLATE:
        return "the code ran inside the test process (this system cannot fork): fine for your own code; grade others' on Linux or macOS"
    parts = ["own process group", "resource limits"]
    if sandbox_uid() is not None:
        parts.append("unprivileged user")
    if LINUX:
        layers = supported_layers()
        namespaces = [label for name, label in (("ipc", "IPC"), ("net", "network"), ("mnt", "mount")) if layers.get(name)]
        if namespaces:
            parts.append(f"own {', '.join(namespaces)} namespaces")
        if layers.get("mnt"):
            parts.append("a read-only view of the Python installation")
        python_closed = not all(_reachable_by_others(Path(p)) for p in (sys.prefix, sys.base_prefix))
        if sandbox_uid() is not None and not layers.get("mnt") and python_closed:
            parts.append("one capability kept (CAP_DAC_READ_SEARCH, to read the Python installation)")
        else:
            parts.append("no capabilities")
        if layers.get("seccomp"):
            parts.append("seccomp")
    abi = landlock_abi()
    if abi >= 6:
        parts.append("Landlock (files, network, signals)")
    elif abi >= 1:
        parts.append("Landlock (files)")
    elif not (LINUX and supported_layers().get("mnt")):
        parts.append("no Landlock: the worker can read what your user can read")
    return "the code ran in confined worker processes: " + ", ".join(parts)
