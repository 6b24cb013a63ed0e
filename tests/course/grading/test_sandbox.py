"""The worker's sandbox, layer by layer: a real worker tries each thing and fails.

The workers are started the way grading starts them (proxies.WorkerManager: a zygote forks
them, each confines itself) and try from inside, through the probes of worker/probes.py, what
the sandbox must refuse (confinement.py lists the layers). Where this machine does not offer a
layer (confinement.supported_layers: no namespaces in a container, an old kernel), its test
skips and says why. The shared zygote starts once for the module (seconds); each worker after
it in well under a second. The tests that start a grader of their own are marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from labs import REPO_ROOT
from labs.grader import confinement, reaping
from labs.grader.channel import Named
from labs.grader.trusted import sandbox_check
from labs.grader.trusted.proxies import WorkerManager

pytestmark = pytest.mark.skipif(not confinement.LINUX or not confinement.CAN_ISOLATE,
                                reason="the sandbox's layers are Linux's (namespaces, Landlock, seccomp)")
MiB = 2**20
SUPPORTED = confinement.supported_layers() if confinement.LINUX and confinement.CAN_ISOLATE else {}
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _probe(name: str) -> Named:
    return Named(f"labs.grader.worker.probes:{name}")


def _needs(*layers: str):
    missing = [layer for layer in layers if not SUPPORTED.get(layer)]
    return pytest.mark.skipif(bool(missing), reason=f"this machine does not offer {', '.join(missing)}")


@pytest.fixture(scope="module")
def workers():
    """A WorkerManager over a code folder laid out as grading lays it out; one zygote for the module."""
    root = Path(tempfile.mkdtemp(prefix="labs-code-"))
    manager = WorkerManager(sandbox_check.build_code_folder(root), REPO_ROOT, [REPO_ROOT], confinement.Limits(), 120.0,
                            root / "workers.log")
    yield manager
    manager.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def listeners():
    opened = sandbox_check.Listeners()
    yield opened
    opened.close()


def _fresh(workers: WorkerManager, name: str) -> dict:
    """Start a new worker (a new exercise); its record of its confinement."""
    workers.begin_test(f"sandbox {name} {time.monotonic()}")
    return sandbox_check.ask_confinement(workers)


@pytest.fixture(scope="module")
def tried(workers, listeners) -> dict:
    """One worker's try of everything, with what it said it applied and what the listeners got."""
    applied = _fresh(workers, "probe")
    targets = {
        "read": ["/etc/shadow", str(REPO_ROOT / "pyproject.toml"), str(REPO_ROOT / "solutions" / "basics.py"),
                 str(REPO_ROOT / "tests" / "conftest.py")],
        "write": [f"/tmp/labs-sandbox-test-{os.getpid()}", str(REPO_ROOT / "sandbox-test")],
        "signal": [os.getpid(), workers.zygote.process.pid],
        "run": [shutil.which("true") or "/usr/bin/true"],
        **listeners.targets(),
    }
    found = workers.current.call(_probe("sandbox_probe"), (targets,), {})
    return {"applied": applied, "targets": targets, **found, "received": listeners.received()}


def _refusals(tried: dict, keys: list[str]) -> dict[str, str]:
    """The tries among `keys` that were not refused, with what the worker got."""
    return {key: tried["tries"][key] for key in keys if not tried["tries"][key].startswith("refused")}


# ---------------------------------------------------------------- files


def test_a_worker_cannot_read_etc_shadow_the_checkout_or_the_solutions(tried):
    allowed = _refusals(tried, [f"read {path}" for path in tried["targets"]["read"]])
    assert not allowed, f"a worker read what it must not: {allowed}"


def test_a_worker_cannot_write_outside_its_scratch_folder_or_run_a_program(tried):
    keys = [f"write {path}" for path in tried["targets"]["write"]] + [f"run {path}" for path in tried["targets"]["run"]]
    allowed = _refusals(tried, keys)
    assert not allowed, f"a worker wrote outside its scratch folder or ran a program: {allowed}"


@_needs("mnt")
def test_the_checkout_is_not_even_in_the_workers_view(tried):
    assert tried["applied"]["view"] == "pivot_root", f"no view: {tried['applied']['missing']}"
    visible = {key: got for key, got in tried["tries"].items()
               if key.startswith("read ") and "pyproject" in key and "No such file" not in got}
    assert not visible, f"the checkout is in the worker's view (refused, but there): {visible}"


def test_readable_roots_never_hold_the_checkout_even_when_sys_path_names_it(monkeypatch):
    """As with `pip install -e . --config-settings editable_mode=compat`: a .pth file puts the checkout on sys.path."""
    monkeypatch.setattr(sys, "path", [*sys.path, str(REPO_ROOT), ""])
    monkeypatch.chdir(REPO_ROOT)
    roots = confinement.readable_roots([])
    venv = Path(sys.prefix).resolve()
    in_venv = lambda root: root.resolve() == venv or venv in root.resolve().parents  # noqa: E731 - the venv may live in the checkout (or a link to it)
    holding = [root for root in roots if root == REPO_ROOT or root in REPO_ROOT.parents or (REPO_ROOT in root.parents and not in_venv(root))]
    assert not holding, f"readable roots that hold or are inside the checkout {REPO_ROOT}: {holding}"
    assert any(root == venv or root in venv.parents for root in roots), f"the Python installation {venv} is not readable: {roots}"


# ---------------------------------------------------------------- sockets


def test_a_worker_sends_nothing_by_udp_to_localhost(tried):
    allowed = _refusals(tried, ["UDP to 127.0.0.1", "UDP to ::1"])
    assert not allowed and "UDP" not in tried["received"], f"UDP left the worker: {allowed}, listeners got {tried['received']}"


def test_a_worker_cannot_connect_by_tcp_or_as_ipproto_mptcp(tried):
    allowed = _refusals(tried, ["TCP to 127.0.0.1", "MPTCP to 127.0.0.1"])
    assert not allowed and "TCP" not in tried["received"], f"TCP/MPTCP left the worker: {allowed}, listeners got {tried['received']}"


def test_a_worker_cannot_reach_a_unix_socket_in_tmp_or_an_abstract_one(tried):
    allowed = _refusals(tried, [f"unix socket {tried['targets']['unix_socket']}", "abstract unix socket"])
    reached = [label for label in tried["received"] if "unix" in label]
    assert not allowed and not reached, f"a unix socket was reached: {allowed}, listeners got {reached}"


@_needs("net")
def test_a_workers_network_namespace_holds_only_a_loopback(tried):
    assert tried["namespaces"]["net"] != os.stat("/proc/self/ns/net").st_ino, "the worker shares the grader's network namespace"
    assert tried["interfaces"] == ["lo"], f"the worker sees these network interfaces: {tried['interfaces']}"


# ---------------------------------------------------------------- IPC


def _segments_with_key(key: int) -> list[str]:
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return []
    return [line for line in lines if line.split() and int(line.split()[0]) == key]


def test_sysv_shared_memory_of_one_worker_is_not_seen_by_the_next_and_none_is_left(workers):
    key = 0x1AB5_1000 + os.getpid() % 0xFFFF
    _fresh(workers, "shm create")
    created = workers.current.call(_probe("sysv_shm"), (key, True), {})
    _fresh(workers, "shm look")
    seen = workers.current.call(_probe("sysv_shm"), (key, False), {})
    workers.begin_test(None)  # ends that worker too
    assert seen != "found", f"a segment that one worker created ({created}) was found by the next"
    assert not _segments_with_key(key), f"the segment outlived its worker (ipcs -m): {_segments_with_key(key)}"


def test_a_worker_gets_no_posix_shared_memory_or_message_queue(tried):
    allowed = _refusals(tried, ["POSIX shm_open", "POSIX mq_open", "SysV shmget", "SysV msgget", "SysV semget"])
    if SUPPORTED.get("seccomp"):
        assert not allowed, f"a worker got IPC objects: {allowed}"
    elif allowed:  # then they must at least be its own
        assert tried["namespaces"]["ipc"] != os.stat("/proc/self/ns/ipc").st_ino, f"shared IPC objects: {allowed}"


# ---------------------------------------------------------------- privileges


def test_a_worker_holds_no_capability_at_all(tried):
    caps = {key: int(tried["status"][key], 16) for key in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd")}
    if not (ROOT or SUPPORTED.get("user")):
        caps.pop("CapBnd")  # only CAP_SETPCAP can empty it; no_new_privs keeps it unusable
    held = {key: hex(value) for key, value in caps.items() if value}
    assert not held, f"a worker holds capabilities: {held} ({tried['applied']['missing']})"
    assert tried["status"]["NoNewPrivs"] == "1", "no_new_privs is not set"


@pytest.mark.skipif(not ROOT, reason="the switch to an unprivileged user happens when the grader runs as root")
def test_a_worker_runs_as_an_unprivileged_user(tried):
    uid = int(tried["status"]["Uid"].split()[0])
    assert uid in confinement.UNPRIVILEGED_UIDS, f"the worker runs as uid {uid}"


def test_a_worker_cannot_signal_the_grader_or_the_zygote(tried):
    if not ROOT and confinement.landlock_abi() < 6:
        pytest.skip("same user and no Landlock signal scope (Linux 6.12+)")
    allowed = _refusals(tried, [f"signal {pid}" for pid in tried["targets"]["signal"]])
    assert not allowed, f"a worker could signal: {allowed}"


@_needs("ipc", "net", "mnt")
def test_a_worker_has_its_own_ipc_network_and_mount_namespaces(tried):
    shared = [name for name in ("ipc", "net", "mnt") if tried["namespaces"][name] == os.stat(f"/proc/self/ns/{name}").st_ino]
    assert not shared, f"the worker shares these namespaces with the grader: {shared}"


@_needs("seccomp")
def test_a_worker_cannot_make_a_socket_of_any_family(tried):
    allowed = _refusals(tried, [key for key in tried["tries"] if key.startswith("new ")])
    assert not allowed, f"a worker made sockets: {allowed}"
    assert tried["status"]["Seccomp"] == "2", f"no seccomp filter: {tried['status']}"


# ---------------------------------------------------------------- what confine reports


def test_the_confinement_reply_says_what_was_applied(tried):
    applied = tried["applied"]
    assert set(applied) == {"namespaces", "view", "uid", "gid", "capabilities", "no_new_privs", "landlock", "seccomp",
                            "rlimits", "scratch", "missing"}, f"unexpected shape: {sorted(applied)}"
    assert applied["uid"] == int(tried["status"]["Uid"].split()[0]), f"claimed uid {applied['uid']}, has {tried['status']['Uid']}"
    assert applied["capabilities"]["CapEff"] == int(tried["status"]["CapEff"], 16)
    assert applied["landlock"].get("abi", 0) == confinement.landlock_abi()
    for name in ("ipc", "net", "mnt"):
        own = tried["namespaces"][name] != os.stat(f"/proc/self/ns/{name}").st_ino
        assert (name in applied["namespaces"]) == own, f"claims {applied['namespaces']}, but its own {name} namespace: {own}"
        assert own or name in applied["missing"], f"no {name} namespace and no reason given: {applied['missing']}"
    assert applied["rlimits"]["fsize"] == confinement.Limits().file_bytes


# ---------------------------------------------------------------- scratch


def test_a_480_mb_write_into_scratch_is_refused(workers):
    applied = _fresh(workers, "fill")
    quota = confinement.Limits().scratch_bytes
    fill = sandbox_check.fill_past_quota(workers, 480 * 10**6)
    assert fill["error"], f"480 MB went into the scratch folder ({applied['scratch']})"
    assert fill["written"] is None or fill["written"] <= quota, f"wrote {fill['written']:,} bytes past the quota of {quota:,}"


def test_the_scratch_folder_is_removed_when_the_manager_closes():
    root = Path(tempfile.mkdtemp(prefix="labs-code-"))
    manager = WorkerManager(sandbox_check.build_code_folder(root), REPO_ROOT, [REPO_ROOT], confinement.Limits(), 60.0,
                            root / "workers.log")
    try:
        scratch = Path(_fresh(manager, "removed")["scratch"]["path"])
        manager.current.call(_probe("fill_scratch"), (4 * MiB,), {"keep": True})
        manager.begin_test("the next exercise")
        assert not scratch.exists(), f"the first worker's scratch folder outlived it: {scratch}"
    finally:
        manager.close()
        shutil.rmtree(root, ignore_errors=True)
    assert not scratch.parent.exists(), f"the scratch root is still there after close: {sorted(scratch.parent.rglob('*'))}"


_TRUSTED_SIDE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from labs import REPO_ROOT
from labs.grader import confinement
from labs.grader.channel import Named
from labs.grader.trusted import sandbox_check
from labs.grader.trusted.proxies import WorkerManager
root = Path(sys.argv[2])
manager = WorkerManager(sandbox_check.build_code_folder(root), REPO_ROOT, [REPO_ROOT], confinement.Limits(), 60.0, root / "log")
manager.begin_test("left behind")
applied = sandbox_check.ask_confinement(manager)
manager.current.call(Named("labs.grader.worker.probes:fill_scratch"), (2**20,), {"keep": True})
print(json.dumps({"scratch": applied["scratch"]["path"], "tmpfs": applied["scratch"]["enforced_by"] == "tmpfs",
                  "zygote": manager.zygote.process.pid, "worker": manager.current.pid}), flush=True)
time.sleep(600)
"""


def _trusted_side_with_a_worker() -> tuple[subprocess.Popen, dict]:
    """A trusted side in a process of its own, whose worker wrote a file into its scratch folder."""
    code = Path(tempfile.mkdtemp(prefix="labs-code-"))
    process = subprocess.Popen([sys.executable, "-c", _TRUSTED_SIDE, str(REPO_ROOT), str(code)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line, "the trusted side did not start its worker"
    return process, {**json.loads(line), "code": code}


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _wait_for(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.slow
def test_the_scratch_folder_is_removed_after_the_trusted_side_is_killed():
    process, started = _trusted_side_with_a_worker()
    scratch = Path(started["scratch"])
    try:
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert _wait_for(lambda: not scratch.parent.exists()), f"the zygote left {scratch.parent} behind: {list(scratch.parent.rglob('*'))}"
        assert _wait_for(lambda: _gone(started["zygote"]) and _gone(started["worker"])), "the zygote or its worker outlived the trusted side"
    finally:
        shutil.rmtree(started["code"], ignore_errors=True)


@pytest.mark.slow
def test_a_killed_zygotes_scratch_folder_is_swept_at_the_next_start():
    process, started = _trusted_side_with_a_worker()
    scratch = Path(started["scratch"])
    try:
        os.kill(started["zygote"], signal.SIGKILL)  # nobody is left to clean up
        assert _wait_for(lambda: _gone(started["worker"])), "the worker outlived its zygote"
        process.send_signal(signal.SIGKILL)
        process.wait()
        if started["tmpfs"]:  # the worker wrote into a tmpfs of its own: nothing of it reached the disk
            assert not list(scratch.rglob("labs-fill-*")), f"a worker's file is on the disk: {list(scratch.rglob('*'))}"
        assert scratch.parent.exists(), "expected the killed zygote's scratch root to be left for the sweep"
        removed = reaping.sweep_scratch(scratch.parent.parent)
        assert scratch.parent in removed and not scratch.parent.exists(), f"the sweep left {scratch.parent} (removed {removed})"
    finally:
        shutil.rmtree(started["code"], ignore_errors=True)


def test_a_sweep_removes_only_this_users_folders_whose_owner_has_ended(tmp_path):
    alive, dead, unmarked = (tmp_path / f"{reaping.SCRATCH_PREFIX}{name}" for name in ("alive", "dead", "unmarked"))
    for folder in (alive, dead, unmarked):
        (folder / "worker").mkdir(parents=True)
        (folder / "worker" / "file").write_text("x")
    reaping.claim_scratch_root(alive)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (dead / ".owner").write_text(f"{finished.stdout.strip()} 1 {Path('/proc/sys/kernel/random/boot_id').read_text().strip()}")
    target = tmp_path / "not-ours"
    target.mkdir()
    (target / "precious").write_text("x")
    os.symlink(target, tmp_path / f"{reaping.SCRATCH_PREFIX}link")
    removed = reaping.sweep_scratch(tmp_path)
    assert removed == [dead], f"the sweep removed {removed}, expected only the dead owner's folder"
    assert alive.exists() and unmarked.exists() and (target / "precious").exists()


# ---------------------------------------------------------------- seccomp's program, read by hand


def _run_bpf(program: list[tuple[int, int, int, int]], number: int, arch: int) -> int:
    """Classic BPF as the kernel runs it on seccomp_data {int nr; u32 arch; ...}: the action returned."""
    data, accumulator, pc = struct.pack("<iI", number, arch) + bytes(56), 0, 0
    while True:
        code, jump_true, jump_false, k = program[pc]
        if code == 0x20:  # ld [k]
            accumulator, pc = struct.unpack_from("<I", data, k)[0], pc + 1
        elif code in (0x15, 0x35):  # jeq, jge
            matched = accumulator == k if code == 0x15 else accumulator >= k
            pc += 1 + (jump_true if matched else jump_false)
        else:  # ret
            return k


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_seccomp_program_refuses_exactly_the_listed_system_calls(machine):
    program = confinement.seccomp_program(machine)
    arch, column = confinement._AUDIT_ARCH[machine]
    refuse, allow = 0x00050001, 0x7FFF0000
    denied = {numbers[column] for numbers in confinement.DENIED_SYSCALLS.values()}
    wrong = {n: hex(_run_bpf(program, n, arch)) for n in range(460) if _run_bpf(program, n, arch) != (refuse if n in denied else allow)}
    assert not wrong, f"{machine}: system calls with the wrong answer: {wrong}"
    assert _run_bpf(program, 0, 0x40000003) == refuse, "a 32-bit (i386) system call was allowed"
    if machine == "x86_64":
        assert _run_bpf(program, 0x40000000, arch) == refuse, "an x32 system call was allowed"


# ---------------------------------------------------------------- the sandbox check


@pytest.mark.slow
def test_the_sandbox_check_is_ok_on_this_machine():
    lines, ok = sandbox_check.check_sandbox()
    assert ok, "the sandbox check failed:\n" + "\n".join(lines)


_AS_ANOTHER_USER = r"""
import ctypes, os, stat, sys
from pathlib import Path
# A private mount namespace in which the Python installation is reachable by any user (a folder
# above it, like /root, may be mode 700): that folder becomes a tmpfs that holds only it.
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), what)
check(libc.unshare(0x00020000), "unshare(CLONE_NEWNS)")
check(libc.mount(None, b"/", None, ctypes.c_ulong(16384 | (1 << 18)), None), "make / private")
uid, home, python = int(sys.argv[1]), sys.argv[2], [Path(p).resolve() for p in sys.argv[3].split(":")]
for installation in python:
    closed = next((f for f in [*reversed(installation.parents)][1:] if not f.stat().st_mode & stat.S_IXOTH), None)
    if closed is None:
        continue
    inside = [p for p in python if closed in p.parents]
    fds = [os.open(p, os.O_PATH) for p in inside]
    check(libc.mount(b"none", str(closed).encode(), b"tmpfs", ctypes.c_ulong(2 | 4), b"mode=0755"), f"tmpfs on {closed}")
    for path, fd in zip(inside, fds):
        path.mkdir(parents=True, exist_ok=True)
        check(libc.mount(f"/proc/self/fd/{fd}".encode(), str(path).encode(), None, ctypes.c_ulong(4096 | 16384), None), f"bind {path}")
os.setgroups([])
os.setgid(uid)
os.setuid(uid)
os.execve(sys.executable, [sys.executable, "-m", "labs.grader.trusted.sandbox_check"],
          {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "PYTHONPATH": sys.argv[4]})
"""


@pytest.mark.slow
@pytest.mark.skipif(not ROOT, reason="as an ordinary user already: test_the_sandbox_check_is_ok_on_this_machine covers it")
def test_the_sandbox_check_is_ok_for_an_ordinary_user():
    """The same check with the grader run by an ordinary user: user namespaces instead of root's own."""
    if not confinement._reachable_by_others(REPO_ROOT / "labs" / "__init__.py"):
        pytest.skip(f"the checkout {REPO_ROOT} is not readable by other users")
    uid = 60123  # outside confinement.UNPRIVILEGED_UIDS
    home = Path(tempfile.mkdtemp(prefix="labs-ordinary-user-"))
    try:
        os.chown(home, uid, uid)
        os.chmod(home, 0o755)
        python = ":".join(sorted({sys.prefix, sys.base_prefix}))
        done = subprocess.run([sys.executable, "-c", _AS_ANOTHER_USER, str(uid), str(home), python, str(REPO_ROOT)],
                              capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert done.returncode == 0, f"the sandbox check failed for uid {uid}:\n{done.stdout}\n{done.stderr[-3000:]}"
    assert "ok  user namespace" in done.stdout, f"the workers got no user namespace of their own:\n{done.stdout}"
