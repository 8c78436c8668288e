"""A fleet of stand-in hypervisor hosts on one machine, for testing kvmhv.qemu across hosts.

Each host h<i> is a network namespace kvf-h<i> (10.76.0.<10+i>/24 on the bridge
kvf-br0 in the root namespace, 10.76.0.1/24) plus a private mount and UTS
namespace held open by an "anchor" process. In there run the host's own sshd,
so everything Ansible starts over SSH lives in the host's namespaces: its own
/run/kvmhv, /srv/kvmhv and /opt/kvmhv (tmpfs), and /srv/kvmhv-shared, which
is one directory for all hosts. See README.md beside this file.

Shell:  python tests/fleet/fleet.py up [--hosts N] [--state DIR] | down | status | exec HOST -- CMD
Python: with Fleet(n=3) as fleet: fleet.exec("h1", ["ip", "-4", "addr"])
Runs as root; stdlib only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

BRIDGE = "kvf-br0"
NS_PREFIX = "kvf-h"  # namespaces and root-side veth ends: kvf-h1, kvf-h2, ...
SUBNET = "10.76.0"
GATEWAY = f"{SUBNET}.1"
MAX_HOSTS = 50
DEFAULT_STATE = Path("/run/kvmhv-fleet")
RUN_DIR = "/run/kvmhv"  # private tmpfs on each host
STORAGE_DIR = "/srv/kvmhv"  # private tmpfs on each host, size-limited
SHARED_DIR = "/srv/kvmhv-shared"  # <state>/shared, the same directory on every host
OPT_DIR = "/opt/kvmhv"  # private tmpfs on each host: what kvm_host installs there (its venv) is the host's own
# /root is a private, empty tmpfs on each host too: a stock root account. The machine's own ~/.bashrc (which
# bash runs for every SSH command; here it may start a pyenv rehash that takes a lock in the shared home, left
# stale when teardown kills a session) is none of the hosts' business, nor are ~/.ansible and ~/.ssh.
# Mount points the hosts need on the (shared) root filesystem; made if missing, removed by down.
MOUNT_POINTS = (RUN_DIR, STORAGE_DIR, SHARED_DIR, OPT_DIR, "/run/sshd")
NEEDED = {"/usr/sbin/sshd": "openssh-server", "/usr/bin/ssh-keygen": "openssh-client", "/usr/bin/python3": "python3"}
# Everything up writes into the state dir; down removes these names only (never the dir's other files).
STATE_ENTRIES = ("fleet.json", "inventory.yml", "ansible.cfg", "ssh_config", "known_hosts", "authorized_keys",
                 "id_ed25519", "id_ed25519.pub", "cm", "hosts", "shared")
DEADLINE = 20.0  # seconds for any one wait (sshd listening, processes dying)

# Runs inside the host's new network, mount and UTS namespaces; prints "ready" once the host is set up.
ANCHOR_SCRIPT = r"""
set -euo pipefail
host=$1 addr=$2 run_size=$3 srv_size=$4 shared=$5
echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 || true
ip addr add "$addr/24" dev eth0
ip link set lo up
ip link set eth0 up
mount -t tmpfs -o mode=0755,size="$run_size" "kvf-$host-run" /run/kvmhv
mount -t tmpfs -o mode=0755,size="$srv_size" "kvf-$host-srv" /srv/kvmhv
mount -t tmpfs -o mode=0755,size=256M "kvf-$host-opt" /opt/kvmhv
mount -t tmpfs -o mode=0700,size=64M "kvf-$host-home" /root
mount --bind "$shared" /srv/kvmhv-shared
hostname "$host"
echo ready
exec -a "kvf-anchor-$host" sleep infinity >/dev/null
"""

SSHD_CONFIG = """\
# Host {host} of the kvmhv fleet, written by tests/fleet/fleet.py.
ListenAddress {addr}:22
HostKey {dir}/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile {state}/authorized_keys
StrictModes yes
UsePAM no
AllowUsers root
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
PermitTunnel no
PrintMotd no
MaxStartups 64:30:128
MaxSessions 64
Subsystem sftp internal-sftp
"""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text capture; a failure names the command and its stderr."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def address(i: int) -> str:
    """Host h<i>'s address."""
    return f"{SUBNET}.{10 + i}"


def ensure_packages() -> None:
    """Install what the hosts need, without starting Debian's own ssh service (policy-rc.d exits 101)."""
    missing = sorted({pkg for path, pkg in NEEDED.items() if not os.path.exists(path)})
    if not missing:
        return
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# kvmhv fleet: installing packages, start no service\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "-q"]
        run([*apt, "update"], env=env, timeout=900)
        run([*apt, "install", "--no-install-recommends", *missing], env=env, timeout=900)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def fleet_namespaces() -> list[str]:
    """Fleet namespaces that exist now, from this run or an earlier one (ip netns list)."""
    out = run(["ip", "netns", "list"]).stdout
    names = (line.split()[0] for line in out.splitlines() if line.strip())
    return [name for name in names if re.fullmatch(rf"{NS_PREFIX}\d+", name)]


def fleet_links() -> list[str]:
    """The bridge and any root-side veth end of the fleet that exist now."""
    out = run(["ip", "-o", "link", "show"]).stdout
    names = (line.split(":")[1].strip().split("@")[0] for line in out.splitlines())
    return [name for name in names if name == BRIDGE or re.fullmatch(rf"{NS_PREFIX}\d+", name)]


def namespace_pids(namespaces: Iterable[str]) -> set[int]:
    """Every live process inside the given network namespaces (ip netns pids; zombies are not listed)."""
    pids: set[int] = set()
    for ns in namespaces:
        pids.update(int(pid) for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split())
    pids.discard(os.getpid())
    return pids


def master_pids(state_dir: Path) -> set[int]:
    """SSH ControlMaster processes using this fleet's ControlPath directory (their title is 'ssh: <path> [mux]')."""
    prefix = f"ssh: {state_dir / 'cm'}/".encode()
    pids = set()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if (proc / "cmdline").read_bytes().startswith(prefix):
                pids.add(int(proc.name))
    return pids


def kill_and_wait(pids: Iterable[int], deadline: float) -> None:
    """SIGKILL the processes and wait (pidfd, no polling) until each has exited."""
    fds = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        fds.append(fd)
    try:
        for fd in fds:
            select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        for fd in fds:
            os.close(fd)


def cleanup(state_dir: Path = DEFAULT_STATE, children: Iterable[subprocess.Popen] = ()) -> None:
    """Remove all a fleet may leave, after a clean run, an exception or a crash; repeating it does nothing.

    Order matters: ControlMasters first (they would hang on a vanished host),
    then every process in the hosts' namespaces (that also ends the mount
    namespaces and so frees their tmpfs and bind mounts), then the
    namespaces, links, mount points and the files up wrote.
    """
    state_dir = Path(state_dir)
    deadline = time.monotonic() + DEADLINE
    for sock in sorted((state_dir / "cm").glob("*")):
        run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "fleet"], check=False, timeout=10)
    kill_and_wait(master_pids(state_dir), deadline)
    namespaces = fleet_namespaces()
    for _attempt in range(50):  # processes may fork while being killed: repeat until none is left
        pids = namespace_pids(namespaces)
        if not pids:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes in the fleet's namespaces survive SIGKILL: {sorted(pids)}")
        kill_and_wait(pids, deadline)
    for child in children:  # our own children: reap them, no zombies in a long pytest run
        child.kill()
        child.wait(timeout=max(1.0, deadline - time.monotonic()))
    for ns in namespaces:
        run(["ip", "netns", "delete", ns], check=False)
    for link in fleet_links():
        run(["ip", "link", "delete", link], check=False)
    with contextlib.suppress(OSError, ValueError):
        for path in json.loads((state_dir / "fleet.json").read_text()).get("created_dirs", []):
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only if empty: nothing but the fleet used it
    for name in STATE_ENTRIES:
        path = state_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state_dir.rmdir()


def leftovers(state_dir: Path = DEFAULT_STATE) -> list[str]:
    """What of a fleet exists now (empty after down): namespaces, links, processes, mounts, sockets."""
    state_dir = Path(state_dir)
    found = [f"namespace {ns}" for ns in fleet_namespaces()]
    found += [f"link {link}" for link in fleet_links()]
    found += [f"process {pid} in a fleet namespace" for pid in namespace_pids(fleet_namespaces())]
    found += [f"ControlMaster process {pid}" for pid in master_pids(state_dir)]
    found += [f"socket {sock}" for sock in (state_dir / "cm").glob("*")]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if "kvf-" in line or str(state_dir) in line:
            found.append(f"mount {line}")
    return found


def safe_path_problem(path: Path) -> str | None:
    """Why sshd's StrictModes would refuse keys under path (a group/world-writable or foreign ancestor), if it would."""
    for part in [path, *path.parents]:
        st = part.stat()
        if st.st_uid != 0 or st.st_mode & 0o022:
            return f"{part} is not root-owned or is group/world-writable"
    return None


class Fleet:
    """N stand-in hypervisor hosts reachable over SSH; a context manager (up on enter, down on exit)."""

    def __init__(self, n: int = 3, state_dir: Path | str = DEFAULT_STATE, *, storage_size: str = "2G",
                 small_hosts: Mapping[int, str] | None = None, python: str = "/usr/bin/python3",
                 log: Callable[[str], None] | None = None) -> None:
        if not 1 <= n <= MAX_HOSTS:
            raise ValueError(f"n must be 1..{MAX_HOSTS}, not {n}")
        unknown = set(small_hosts or {}) - set(range(1, n + 1))
        if unknown:
            raise ValueError(f"small_hosts names hosts that do not exist: {sorted(unknown)}")
        self.n = n
        self.state_dir = Path(state_dir).absolute()
        self.storage_size = storage_size
        self.small_hosts = dict(small_hosts or {})
        self.python = python
        self.log = log or (lambda _msg: None)
        self.anchors: dict[str, int] = {}
        self._children: list[subprocess.Popen] = []
        # ssh puts a 17-character suffix after the ControlPath while binding; sun_path holds 107 bytes.
        if len(str(self.state_dir / "cm" / ("x" * 40))) + 17 > 107:
            raise ValueError(f"state dir {self.state_dir} is too long for ssh's ControlPath socket")

    # -- what a test needs ---------------------------------------------------
    @property
    def hosts(self) -> list[str]:
        """Inventory names, h1..hN."""
        return [f"h{i}" for i in range(1, self.n + 1)]

    @property
    def addresses(self) -> dict[str, str]:
        """Host name -> address on the fleet bridge."""
        return {f"h{i}": address(i) for i in range(1, self.n + 1)}

    @property
    def inventory(self) -> Path:
        return self.state_dir / "inventory.yml"

    @property
    def ansible_cfg(self) -> Path:
        return self.state_dir / "ansible.cfg"

    @property
    def env(self) -> dict[str, str]:
        """Environment for ansible/ansible-playbook: merge into os.environ."""
        return {"ANSIBLE_CONFIG": str(self.ansible_cfg), "ANSIBLE_INVENTORY": str(self.inventory), "ANSIBLE_PIPELINING": "True"}

    @property
    def ssh_options(self) -> list[tuple[str, str]]:
        """The ssh client options, shared by the inventory, ssh_config and ssh()."""
        return [("StrictHostKeyChecking", "yes"), ("UserKnownHostsFile", str(self.state_dir / "known_hosts")),
                ("IdentityFile", str(self.state_dir / "id_ed25519")), ("IdentitiesOnly", "yes"), ("BatchMode", "yes"),
                ("ControlMaster", "auto"), ("ControlPersist", "60s"), ("ControlPath", str(self.state_dir / "cm" / "%C"))]

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """argv that runs a command in the host's network, mount and UTS namespaces (nsenter, no ssh)."""
        return ["nsenter", f"--target={self.anchors[host]}", "--net", "--mount", "--uts", "--wd=/", "--", *argv]

    def exec(self, host: str, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host's namespaces and return its output."""
        return run(self.exec_argv(host, argv), check=check, timeout=timeout, input=input)

    def ssh_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """argv that runs a command on the host over SSH, the way Ansible reaches it."""
        opts = [arg for key, value in self.ssh_options for arg in ("-o", f"{key}={value}")]
        return ["ssh", "-F", "/dev/null", *opts, f"root@{self.addresses[host]}", "--", shlex.join(argv)]

    def ssh(self, host: str, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command on the host over SSH and return its output."""
        return run(self.ssh_argv(host, argv), check=check, timeout=timeout, input=input)

    def anchor_alive(self, host: str) -> bool:
        """Whether the process holding the host's namespaces still runs (its argv[0] names the host)."""
        try:
            return Path(f"/proc/{self.anchors[host]}/cmdline").read_bytes().startswith(f"kvf-anchor-{host}".encode())
        except (KeyError, OSError):
            return False

    def path(self, host: str, path: str) -> Path:
        """The controller's view of a path as the host sees it (through /proc/<anchor>/root)."""
        return Path(f"/proc/{self.anchors[host]}/root") / path.lstrip("/")

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> Fleet:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.down()

    def up(self) -> None:
        """Clean what an earlier run left, then build the fleet; on any failure undo it and re-raise."""
        started = time.monotonic()
        if os.geteuid() != 0:
            raise PermissionError("the fleet needs root (namespaces, mounts, sshd)")
        ensure_packages()
        cleanup(self.state_dir)
        try:
            self._make_state()
            self._make_network()
            self.log(f"network ready: {BRIDGE} {GATEWAY}/24, {self.n} hosts")
            self._start_anchors()
            self.log("hosts' namespaces ready")
            self._start_sshds()
            self.log("sshd listening on every host")
            self._write_client_files()
        except BaseException:
            self.down()
            raise
        self.log(f"up in {time.monotonic() - started:.2f}s; inventory {self.inventory}")

    def down(self) -> None:
        """Tear the fleet down (idempotent)."""
        children, self._children = self._children, []
        cleanup(self.state_dir, children)
        self.anchors = {}

    def _save(self, **fields: object) -> None:
        """Merge fields into fleet.json, which down and attach read (a crashed run's record too)."""
        path = self.state_dir / "fleet.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(fields)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)

    def _make_state(self) -> None:
        """State dir (0700), mount points, keys; fleet.json is written first so a crash here is cleaned too."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        problem = safe_path_problem(self.state_dir)
        if problem:
            raise ValueError(f"sshd (StrictModes) would refuse keys in {self.state_dir}: {problem}")
        self._save(n=self.n, created_dirs=[p for p in MOUNT_POINTS if not os.path.isdir(p)])
        for path in MOUNT_POINTS:
            os.makedirs(path, mode=0o755, exist_ok=True)
        for sub in ("cm", "shared", *(f"hosts/{h}" for h in self.hosts)):
            (self.state_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.state_dir / "shared").chmod(0o755)
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        run([*keygen, "-C", "kvmhv-fleet", "-f", str(self.state_dir / "id_ed25519")])
        pub = (self.state_dir / "id_ed25519.pub").read_text().strip()
        (self.state_dir / "authorized_keys").write_text(f'from="{SUBNET}.0/24" {pub}\n')
        (self.state_dir / "authorized_keys").chmod(0o600)
        known = []
        for host, addr in self.addresses.items():
            key = self.state_dir / "hosts" / host / "ssh_host_ed25519_key"
            run([*keygen, "-C", host, "-f", str(key)])
            known.append(f"{addr} {' '.join(key.with_suffix('.pub').read_text().split()[:2])}\n")
        (self.state_dir / "known_hosts").write_text("".join(known))

    def _make_network(self) -> None:
        """Bridge with the controller's address, one namespace and veth pair per host (IPv6 off: nothing but IPv4 here)."""
        lines = [f"link add {BRIDGE} type bridge"]
        for i in range(1, self.n + 1):
            lines += [f"netns add {NS_PREFIX}{i}", f"link add {NS_PREFIX}{i} type veth peer name eth0 netns {NS_PREFIX}{i}"]
        run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")
        for link in fleet_links():
            with contextlib.suppress(FileNotFoundError):
                Path(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6").write_text("1")
        lines = [f"addr add {GATEWAY}/24 dev {BRIDGE}", f"link set {BRIDGE} up"]
        lines += [f"link set {NS_PREFIX}{i} master {BRIDGE} up" for i in range(1, self.n + 1)]
        run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")

    def _start_anchors(self) -> None:
        """One process per host that creates and holds its mount/UTS namespaces; wait for each to say ready."""
        procs = {}
        for i, host in enumerate(self.hosts, start=1):
            size = self.small_hosts.get(i, self.storage_size)
            argv = ["ip", "netns", "exec", f"{NS_PREFIX}{i}", "unshare", "--mount", "--uts", "--propagation", "private",
                    "bash", "-c", ANCHOR_SCRIPT, "anchor", host, address(i), "64M", size, str(self.state_dir / "shared")]
            with open(self.state_dir / "hosts" / host / "anchor.log", "wb") as err:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                        cwd="/", start_new_session=True)
            self._children.append(proc)
            procs[host] = proc
            self.anchors[host] = proc.pid  # ip and unshare exec, not fork: this pid ends as the anchor
        self._save(anchors=self.anchors)
        deadline = time.monotonic() + DEADLINE
        for host, proc in procs.items():
            assert proc.stdout is not None
            ready = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
            line = proc.stdout.readline() if ready else b""
            proc.stdout.close()
            if line.strip() != b"ready":
                log = (self.state_dir / "hosts" / host / "anchor.log").read_text().strip()
                raise RuntimeError(f"{host}: namespace setup failed: {log or 'no ready in time'}")

    def _start_sshds(self) -> None:
        """Start each host's sshd in its namespaces, then wait until each accepts TCP on its address."""
        procs = {}
        for host, addr in self.addresses.items():
            hdir = self.state_dir / "hosts" / host
            (hdir / "sshd_config").write_text(SSHD_CONFIG.format(host=host, addr=addr, dir=hdir, state=self.state_dir))
            with open(hdir / "sshd.log", "wb") as log:
                argv = self.exec_argv(host, ["/usr/sbin/sshd", "-D", "-e", "-f", str(hdir / "sshd_config")])
                procs[host] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            self._children.append(procs[host])
        deadline = time.monotonic() + DEADLINE
        for host, proc in procs.items():
            while not self._accepts(self.addresses[host]):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.state_dir / "hosts" / host / "sshd.log").read_text().strip()
                    raise RuntimeError(f"{host}: sshd is not listening: {log or 'no output'}")

    @staticmethod
    def _accepts(addr: str) -> bool:
        """One TCP connect to addr:22 (the wait for sshd is a bounded loop of these)."""
        try:
            with socket.create_connection((addr, 22), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)  # poll interval: a refused connect returns at once, don't spin a core
            return False

    def _write_client_files(self) -> None:
        """Inventory, ansible.cfg and an ssh_config for people (ssh -F <state>/ssh_config h1)."""
        common = "-F /dev/null " + " ".join(f"-o {key}={shlex.quote(value)}" for key, value in self.ssh_options)
        hosts = "".join(f"    {host}:\n      ansible_host: {addr}\n" for host, addr in self.addresses.items())
        (self.state_dir / "inventory.yml").write_text(
            "# The kvmhv fleet, written by tests/fleet/fleet.py up (removed by down).\n"
            f"fleet:\n  hosts:\n{hosts}  vars:\n"
            "    ansible_connection: ssh\n    ansible_user: root\n"
            f"    ansible_ssh_private_key_file: {json.dumps(str(self.state_dir / 'id_ed25519'))}\n"
            f"    ansible_ssh_common_args: {json.dumps(common)}\n"
            "    ansible_pipelining: true\n"
            f"    ansible_python_interpreter: {json.dumps(self.python)}\n"
            f"    kvmhv_fleet_storage_dir: {STORAGE_DIR}\n    kvmhv_fleet_shared_dir: {SHARED_DIR}\n")
        (self.state_dir / "ansible.cfg").write_text(
            f"[defaults]\ninventory = {self.inventory}\nhost_key_checking = True\n\n[ssh_connection]\npipelining = True\n")
        opts = "".join(f"  {key} {value}\n" for key, value in self.ssh_options)
        blocks = "".join(f"Host {host}\n  HostName {addr}\n" for host, addr in self.addresses.items())
        (self.state_dir / "ssh_config").write_text(f"{blocks}Host *\n  User root\n{opts}")

    @classmethod
    def attach(cls, state_dir: Path | str = DEFAULT_STATE) -> Fleet:
        """A Fleet for one that `up` (e.g. the CLI) started: exec/ssh/path work, down tears it down."""
        data = json.loads((Path(state_dir) / "fleet.json").read_text())
        fleet = cls(data["n"], state_dir)
        fleet.anchors = data.get("anchors", {})
        return fleet


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="clean leftovers, then start N hosts")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--storage-size", default="2G", help="tmpfs size of /srv/kvmhv on each host (default 2G)")
    up.add_argument("--small-host", action="append", default=[], metavar="I:SIZE",
                    help="give host I a smaller /srv/kvmhv, e.g. 3:32M (repeatable)")
    up.add_argument("--python", default="/usr/bin/python3", help="ansible_python_interpreter of the hosts")
    sub.add_parser("down", help="remove everything the fleet (or a crashed run) left")
    sub.add_parser("status", help="show the hosts, or what is left over")
    ex = sub.add_parser("exec", help="run a command in a host's namespaces: exec h1 -- ip -4 addr")
    ex.add_argument("host")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    for p in sub.choices.values():
        p.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state dir (default {DEFAULT_STATE})")
    args = parser.parse_args(argv)

    def say(msg: str) -> None:
        print(f"fleet: {msg}", file=sys.stderr, flush=True)

    if args.cmd == "up":
        small = {int(i): size for i, size in (spec.split(":", 1) for spec in args.small_host)}
        fleet = Fleet(args.hosts, args.state, storage_size=args.storage_size, small_hosts=small, python=args.python, log=say)
        fleet.up()
        for host, addr in fleet.addresses.items():
            print(f"{host} {addr}")
        print(f"inventory: {fleet.inventory}\nansible:   ANSIBLE_CONFIG={fleet.ansible_cfg} ansible fleet -m ping")
        print(f"ssh:       ssh -F {args.state}/ssh_config h1")
        return 0
    if args.cmd == "down":
        started = time.monotonic()
        cleanup(args.state)
        say(f"down in {time.monotonic() - started:.2f}s")
        return 0
    if args.cmd == "exec":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        fleet = Fleet.attach(args.state)
        return subprocess.run(fleet.exec_argv(args.host, command), check=False).returncode
    # status
    if not (args.state / "fleet.json").exists():
        left = leftovers(args.state)
        print("no fleet" + "".join(f"\n  left over: {item}" for item in left))
        return 1 if left else 0
    fleet = Fleet.attach(args.state)
    for host, addr in fleet.addresses.items():
        namespaces = "up" if fleet.anchor_alive(host) else "DOWN"
        print(f"{host} {addr} namespaces={namespaces} sshd={'up' if Fleet._accepts(addr) else 'DOWN'}")
    print(f"inventory: {fleet.inventory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
