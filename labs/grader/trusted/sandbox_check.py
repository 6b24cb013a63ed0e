"""The sandbox self-check: does a worker on this machine get the confinement it should?

Starts real workers the way grading does (proxies.WorkerManager: a zygote forks them, each
confines itself with confinement.confine) and, from inside them, tries what the sandbox must
refuse (worker/probes.py: `sandbox_probe`, `sysv_shm`, `fill_scratch`): reading /etc/shadow,
the checkout and its solutions; UDP, TCP and MPTCP to 127.0.0.1, a unix socket under /tmp, an
abstract unix socket (all to listeners of this process, which must receive nothing); SysV and
POSIX IPC, seen from a second worker; writing past the scratch quota; signalling the zygote and
this process; running a program. It also reads the worker's capabilities and namespaces.

`check_sandbox()` returns the report, one line a layer ("ok", "FAIL", or "n/a" where this
machine does not offer the layer: confinement.supported_layers, tried in a throwaway process),
and whether every layer this machine supports applied and nothing got through.
`python -m labs.grader.trusted.sandbox_check` prints it and exits 1 when not ok.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from labs import REPO_ROOT
from labs.grader import confinement
from labs.grader.channel import Encoder, Named
from labs.grader.trusted.proxies import WorkerLost, WorkerManager

MiB = 2**20


def _probe(name: str) -> Named:
    return Named(f"labs.grader.worker.probes:{name}")


def build_code_folder(root: Path) -> Path:
    """A code folder as grading lays one out (the course's labs/, readable by the worker's user)."""
    code = root / "code"
    shutil.copytree(REPO_ROOT / "labs", code / "labs", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".backup"))
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(Path(folder) / name, 0o644)
    return code


def ask_confinement(manager: WorkerManager) -> dict:
    """The current worker's record of its confinement (ask before its first import of student code)."""
    connection = manager.current
    result, decoder = connection.request({"op": "confinement"}, Encoder(connection.name_object))
    return decoder.decode(result)


def sysv_ids() -> set[str]:
    """The SysV shared memory segments of this machine's IPC namespace (what `ipcs -m` lists)."""
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {line.split()[1] for line in lines if line.split()}


class Listeners:
    """Sockets a sandboxed worker must not reach: UDP and TCP on 127.0.0.1, a unix socket path, an abstract name."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.folder = Path(tempfile.mkdtemp(prefix="labs-sandbox-check-"))
        os.chmod(self.folder, 0o755)  # reachable by any user: only the sandbox may keep a worker out
        self.unix_path = str(self.folder / "listener.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(8)
        self.abstract_name = f"labs-sandbox-check-{os.getpid()}-{id(self):x}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(8)
        for sock in (self.udp, self.tcp, self.unix, self.abstract):
            sock.setblocking(False)

    def targets(self) -> dict:
        return {"udp_port": self.udp.getsockname()[1], "tcp_port": self.tcp.getsockname()[1],
                "unix_socket": self.unix_path, "abstract_socket": self.abstract_name}

    def received(self) -> list[str]:
        """Which listeners something reached."""
        reached = []
        for label, sock, datagram in (("UDP", self.udp, True), ("TCP", self.tcp, False), ("unix socket", self.unix, False),
                                      ("abstract unix socket", self.abstract, False)):
            try:
                if datagram:
                    sock.recvfrom(4096)
                else:
                    sock.accept()[0].close()
                reached.append(label)
            except (BlockingIOError, OSError):
                pass
        return reached

    def close(self) -> None:
        for sock in (self.udp, self.tcp, self.unix, self.abstract):
            sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def run_in_workers(quota_overshoot: int = 64 * MiB) -> dict:
    """Everything the check needs from two real workers: their records, the probe's findings, the IPC and scratch tries."""
    listeners = Listeners()
    root = Path(tempfile.mkdtemp(prefix="labs-code-"))
    key = 0x1AB5_0000 + os.getpid() % 0xFFFF
    found: dict = {"ipc before": sysv_ids()}
    try:
        code = build_code_folder(root)
        limits = confinement.Limits()
        manager = WorkerManager(code, REPO_ROOT, [REPO_ROOT], limits, 120.0, root / "workers.log")
        try:
            manager.begin_test("sandbox check")
            found["confinement"] = ask_confinement(manager)
            connection = manager.current
            solutions = REPO_ROOT / "solutions" / "basics.py"
            targets = {
                "read": ["/etc/shadow", str(REPO_ROOT / "pyproject.toml"), str(solutions), str(REPO_ROOT / "tests" / "conftest.py")],
                "list": ["/", "/proc", "/tmp", str(REPO_ROOT)],
                "write": [f"/tmp/labs-sandbox-check-{os.getpid()}", str(code / "labs" / "sandbox-check"), str(REPO_ROOT / "sandbox-check")],
                "signal": [os.getpid(), manager.zygote.process.pid],
                "run": [shutil.which("true") or "/usr/bin/true"],
                **listeners.targets(),
            }
            found["targets"] = targets
            found["probe"] = connection.call(_probe("sandbox_probe"), (targets,), {})
            found["shm created"] = connection.call(_probe("sysv_shm"), (key, True), {})
            found["fill"] = fill_past_quota(manager, limits.scratch_bytes + quota_overshoot)
            manager.begin_test("sandbox check, a second worker")
            found["shm seen later"] = manager.current.call(_probe("sysv_shm"), (key, False), {})
            found["zygote"] = manager.zygote.process.pid
        finally:
            manager.close()
        found["scratch left"] = Path(found["confinement"]["scratch"]["path"]).parent.exists() if "confinement" in found else None
        found["received"] = listeners.received()
        found["ipc after"] = sysv_ids()
    finally:
        listeners.close()
        shutil.rmtree(root, ignore_errors=True)
    found["quota"] = limits.scratch_bytes
    found["our namespaces"] = {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in ("ipc", "net", "mnt", "user")}
    return found


def fill_past_quota(manager: WorkerManager, total: int) -> dict:
    """Write `total` bytes into the current worker's scratch folder and keep them there.

    {"written", "error"}: a tmpfs refuses the write (ENOSPC); without one, the zygote's watcher
    kills the worker within a second (error "killed ..."); an empty error means nothing stopped it.
    """
    connection = manager.current
    try:
        fill = connection.call(_probe("fill_scratch"), (total,), {"keep": True})
        if fill["error"]:
            return fill
        for _ in range(8):  # the watcher looks twice a second
            time.sleep(0.25)
            connection.call(_probe("builtin_len"), ([],), {})
    except WorkerLost as lost:
        return {"written": None, "error": f"the worker was killed ({lost})"}
    return fill


def _refused(tries: dict, key: str) -> bool:
    return tries.get(key, "ALLOWED (not tried)").startswith("refused")


def judge(found: dict, supported: dict) -> list[tuple[str, str, str]]:
    """(mark, layer, what the worker got) for each layer; mark is "ok", "FAIL" or "n/a"."""
    applied, probe = found["confinement"], found["probe"]
    tries, status, spaces = probe["tries"], probe["status"], probe["namespaces"]
    targets, ours = found["targets"], found["our namespaces"]
    root = bool(supported.get("root"))
    lines = []

    def layer(name: str, offered: bool, held: bool, detail: str, why_not: str = "not on this machine") -> None:
        mark = "ok" if held else ("FAIL" if offered else "n/a")
        lines.append((mark, name, detail if held or offered else why_not))

    for name, label in (("ipc", "IPC namespace"), ("net", "network namespace"), ("mnt", "mount namespace")):
        own = spaces.get(name) != ours[name]
        extra = f", interfaces {probe['interfaces']}" if name == "net" else ""
        layer(label, bool(supported.get(name)), own, f"{'its own' if own else 'SHARED with the grader'}{extra}",
              applied["missing"].get(name, "not on this machine"))
    if not root:
        own = spaces.get("user") != ours["user"]
        layer("user namespace", bool(supported.get("user")), own, "its own (maps only the grader's user)" if own else "shared",
              applied["missing"].get("user", "not on this machine"))
    uid = int(status["Uid"].split()[0])
    if root:
        layer("unprivileged user", True, uid != 0, f"uid {uid}")
    hidden = [path for path in targets["read"][1:] if "No such file" in tries[f"read {path}"]]
    layer("filesystem view", bool(supported.get("mnt")), applied["view"] == "pivot_root" and len(hidden) == len(targets["read"]) - 1,
          f"{applied['view'] or 'none'}: the checkout is not in it" if hidden else f"{applied['view'] or 'none'}: the checkout is visible",
          applied["missing"].get("view", "no mount namespace"))
    caps = {key: int(status[key], 16) for key in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd")}
    none_held = not any(caps[key] for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"))
    bounding_offered = root or bool(supported.get("user"))
    why = applied["missing"].get("capabilities") or applied["missing"].get("bounding set")
    layer("capabilities", True, none_held and (caps["CapBnd"] == 0 or not bounding_offered),
          ", ".join(f"{key} {value:#x}" for key, value in caps.items()) + (f" ({why})" if why else ""))
    layer("no_new_privs", True, status.get("NoNewPrivs") == "1", f"NoNewPrivs {status.get('NoNewPrivs')}")
    denied = tries.get("new AF_VSOCK socket", "")
    layer("seccomp", bool(supported.get("seccomp")), status.get("Seccomp") == "2" and "Operation not permitted" in denied,
          f"Seccomp {status.get('Seccomp')}, {len(applied['seccomp'])} system calls refused; new AF_VSOCK socket: {denied}",
          applied["missing"].get("seccomp", "not on this machine"))
    abi = int(supported.get("landlock") or 0)
    run = f"run {targets['run'][0]}"
    held = applied["landlock"].get("abi") == abi and _refused(tries, "list /proc") and _refused(tries, run)
    layer("Landlock", abi > 0, held, f"ABI {applied['landlock'].get('abi')}, scopes {applied['landlock'].get('scopes')}; "
          f"listing /proc: {tries['list /proc']}; running a program: {tries[run]}", "this kernel has no Landlock (Linux 5.13+)")
    files_offered = abi > 0 or bool(supported.get("mnt"))
    read = [path for path in targets["read"] if not _refused(tries, f"read {path}")]
    written = [path for path in targets["write"] if not _refused(tries, f"write {path}")]
    layer("files", files_offered, not read and not written,
          f"/etc/shadow, the checkout, its solutions and tests: {'READ ' + str(read) if read else 'not readable'}; "
          f"outside the scratch folder: {'WROTE ' + str(written) if written else 'not writable'}",
          "neither Landlock nor a mount namespace here")
    net_keys = ["UDP to 127.0.0.1", "UDP to ::1", "TCP to 127.0.0.1", "MPTCP to 127.0.0.1", f"unix socket {targets['unix_socket']}",
                "abstract unix socket"]
    through = [key for key in net_keys if not _refused(tries, key)] + [f"the {label} listener" for label in found["received"]]
    layer("sockets", bool(supported.get("net") or supported.get("seccomp")), not through,
          f"UDP, TCP, MPTCP to 127.0.0.1, a unix socket in /tmp, an abstract one: {'THROUGH ' + str(through) if through else 'all refused'}",
          "no network namespace and no seccomp here")
    ipc_keys = ["SysV shmget", "SysV msgget", "SysV semget", "POSIX shm_open", "POSIX mq_open"]
    left = found["ipc after"] - found["ipc before"]
    shared = found["shm seen later"] == "found" or bool(left)
    layer("IPC", bool(supported.get("ipc") or supported.get("seccomp")), not shared,
          f"segment created: {found['shm created']}; a later worker: {found['shm seen later']}; left after grading: {len(left)}; "
          f"allowed in the worker: {[key for key in ipc_keys if not _refused(tries, key)] or 'nothing'}",
          "no IPC namespace and no seccomp here")
    signalled = [key for key in tries if key.startswith("signal ") and not _refused(tries, key)]
    layer("signals", root or abi >= 6, not signalled, f"to the zygote and the grader: {'SENT ' + str(signalled) if signalled else 'refused'}",
          "neither another user nor Landlock 6 (Linux 6.12+)")
    fill, quota = found["fill"], found["quota"]
    stopped = bool(fill["error"]) and (fill["written"] is None or fill["written"] <= quota)  # killed: an overshoot of up to half a second
    layer("scratch quota", True, stopped, f"{applied['scratch']['enforced_by']}, {quota // MiB} MiB: wrote "
          f"{'?' if fill['written'] is None else fill['written'] // MiB} MiB, then {fill['error'] or 'nothing stopped it'}")
    layer("scratch removal", True, found["scratch left"] is False, "removed when the workers ended" if found["scratch left"] is False
          else "the scratch folder is still there")
    return lines


def check_sandbox() -> tuple[list[str], bool]:
    """Report lines (layer by layer) and whether the sandbox holds everywhere this machine allows."""
    if not confinement.CAN_ISOLATE:
        return ["this system cannot fork: the code runs inside the test process, with no sandbox"], False
    supported = confinement.supported_layers()
    found = run_in_workers()
    verdicts = judge(found, supported)
    width = max(len(name) for _, name, _ in verdicts)
    lines = [f"Sandbox check ({confinement.describe()})", ""]
    lines += [f"  {mark:>4}  {name:<{width}}  {detail}" for mark, name, detail in verdicts]
    failed = [name for mark, name, _ in verdicts if mark == "FAIL"]
    missing = found["confinement"]["missing"]
    if missing:
        lines += ["", "Layers this worker did not get: " + "; ".join(f"{name}: {why}" for name, why in missing.items())]
    lines += ["", f"FAILED: {', '.join(failed)}" if failed else "ok: every layer this machine offers applied"]
    return lines, not failed


def main() -> int:
    lines, ok = check_sandbox()
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
