"""The fleet harness itself: hosts are isolated where they should be, share what they should, are
reachable over SSH and Ansible, and teardown (clean, after an exception, after a crash) leaves nothing."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet import DEFAULT_STATE, Fleet, cleanup, leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root")

FLEET_PY = Path(__file__).with_name("fleet.py")
ANSIBLE = shutil.which("ansible", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}") or "ansible"

LISTENER = """
import socket
s = socket.create_server((%r, 7001))
print("listening", flush=True)
conn, peer = s.accept()
conn.sendall(("hello from " + socket.gethostname() + " to " + peer[0] + "\\n").encode())
conn.close()
"""
CONNECTOR = """
import socket
with socket.create_connection((%r, 7001), timeout=10) as c:
    print(c.makefile().readline().strip())
"""


def readline(stream, timeout: float = 20) -> str:
    """One line from a child's pipe, or '' at the deadline (no test waits forever)."""
    ready = select.select([stream], [], [], timeout)[0]
    return stream.readline().decode() if ready else ""


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for its (new) parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_in(netns: str) -> list[tuple[int, str]]:
    """(pid, command line) of each process in a network namespace."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False).stdout
    found = []
    for pid in map(int, out.split()):
        try:
            found.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:
            continue
    return found


def assert_clean(pids: set[int] = frozenset()) -> None:
    """Nothing of a fleet is left, checked without trusting the harness: namespaces, links, processes, mounts, files."""
    assert "kvf-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "kvf-" not in subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert [pid for pid in pids if alive(pid)] == []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        assert b"kvf-anchor" not in cmdline and str(DEFAULT_STATE).encode() + b"/" not in cmdline, cmdline
    mounts = Path("/proc/self/mountinfo").read_text()
    for needle in ("kvf-", "/run/kvmhv", "/srv/kvmhv", "/run/netns/kvf"):
        assert needle not in mounts
    assert not DEFAULT_STATE.exists()
    assert leftovers() == []


@pytest.fixture(scope="class")
def fleet() -> Iterator[Fleet]:
    """Three hosts, the third with a 32 MiB /srv/kvmhv; torn down after the class."""
    with Fleet(3, small_hosts={3: "32M"}) as fleet:
        yield fleet


class TestFleet:
    """What a test of the collection relies on: one fleet shared by these tests."""

    def test_ssh_lands_in_the_hosts_namespaces(self, fleet: Fleet) -> None:
        for host, addr in fleet.addresses.items():
            out = fleet.ssh(host, ["sh", "-c", "hostname; ip -4 -o addr show dev eth0; findmnt -no SOURCE,FSTYPE /run/kvmhv;"
                                   " readlink /proc/self/ns/net /proc/self/ns/mnt; findmnt -no SOURCE /opt/kvmhv"]).stdout.split("\n")
            assert out[0] == host
            assert f"inet {addr}/24" in out[1]
            assert out[2].split() == [f"kvf-{host}-run", "tmpfs"]
            anchor = fleet.anchors[host]
            assert out[3:5] == [os.readlink(f"/proc/{anchor}/ns/net"), os.readlink(f"/proc/{anchor}/ns/mnt")]
            assert out[5] == f"kvf-{host}-opt"  # the host's own /opt/kvmhv (kvm_host's venv goes there)

    def test_storage_is_per_host_and_the_shared_dir_is_shared(self, fleet: Fleet) -> None:
        for host in ("h1", "h2"):
            fleet.ssh(host, ["sh", "-c", f"echo {host} > /srv/kvmhv/x.img"])
        assert fleet.ssh("h1", ["cat", "/srv/kvmhv/x.img"]).stdout == "h1\n"
        assert fleet.ssh("h2", ["cat", "/srv/kvmhv/x.img"]).stdout == "h2\n"
        assert fleet.path("h1", "/srv/kvmhv/x.img").read_text() == "h1\n"
        assert fleet.exec("h3", ["ls", "/srv/kvmhv"]).stdout == ""

        fleet.ssh("h1", ["sh", "-c", "echo written-on-h1 > /srv/kvmhv-shared/x.img"])
        assert fleet.ssh("h2", ["cat", "/srv/kvmhv-shared/x.img"]).stdout == "written-on-h1\n"
        inodes = {fleet.ssh(h, ["stat", "-c", "%d:%i", "/srv/kvmhv-shared/x.img"]).stdout for h in fleet.hosts}
        assert len(inodes) == 1
        assert (fleet.state_dir / "shared" / "x.img").read_text() == "written-on-h1\n"

    def test_small_host_runs_out_of_storage(self, fleet: Fleet) -> None:
        write = ["dd", "if=/dev/zero", "of=/srv/kvmhv/big", "bs=1M", "count=40"]
        assert fleet.ssh("h1", write, check=False).returncode == 0
        full = fleet.ssh("h3", write, check=False)
        assert full.returncode != 0
        assert "No space left on device" in full.stderr
        for host in ("h1", "h3"):
            fleet.ssh(host, ["rm", "/srv/kvmhv/big"])

    def test_host_to_host_tcp(self, fleet: Fleet) -> None:
        listener = subprocess.Popen(fleet.ssh_argv("h2", ["python3", "-c", LISTENER % fleet.addresses["h2"]]),
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert readline(listener.stdout) == "listening\n"
            out = fleet.ssh("h1", ["python3", "-c", CONNECTOR % fleet.addresses["h2"]], timeout=20).stdout
            assert out == f"hello from h2 to {fleet.addresses['h1']}\n"
            assert listener.wait(timeout=20) == 0
        finally:
            listener.kill()
            listener.wait()
            listener.stdout.close()

    def test_ansible_reaches_every_host_over_ssh(self, fleet: Fleet) -> None:
        env = {**os.environ, **fleet.env}
        ping = subprocess.run([ANSIBLE, "fleet", "-m", "ping", "-f", "3"], env=env, capture_output=True, text=True, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert sorted(line.split()[0] for line in ping.stdout.splitlines() if "SUCCESS" in line) == fleet.hosts
        mounts = subprocess.run([ANSIBLE, "fleet", "-m", "command", "-a", "findmnt -no SOURCE /srv/kvmhv"],
                                env=env, capture_output=True, text=True, check=True).stdout
        for host in fleet.hosts:
            assert f"kvf-{host}-srv" in mounts


def test_down_leaves_nothing_even_with_processes_inside() -> None:
    with Fleet(2) as fleet:
        fleet.ssh("h1", ["true"])  # leaves a ControlMaster behind, as Ansible does
        masters = {int(p) for p in subprocess.run(["pgrep", "-f", f"^ssh: {fleet.state_dir}/cm/"], capture_output=True,
                                                  text=True, check=False).stdout.split()}
        assert masters
        if shutil.which("qemu-system-x86_64"):
            stray = ["qemu-system-x86_64", "-M", "none", "-display", "none", "-daemonize", "-pidfile", "/run/kvmhv/stray.pid"]
        else:
            stray = ["sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /run/kvmhv/stray.pid"]
        fleet.ssh("h2", stray)
        stray_pid = int(fleet.path("h2", "/run/kvmhv/stray.pid").read_text())
        pids = {stray_pid, *masters, *fleet.anchors.values()}
        assert all(alive(pid) for pid in pids)
    assert_clean(pids)
    cleanup()  # down is idempotent
    assert_clean()


def test_exception_inside_the_fleet_still_tears_down() -> None:
    with pytest.raises(RuntimeError, match="boom"), Fleet(1):
        raise RuntimeError("boom")
    assert_clean()


def test_failed_up_tears_down() -> None:
    with pytest.raises(RuntimeError, match="h2: namespace setup failed"):
        Fleet(2, small_hosts={2: "not-a-size"}).up()
    assert_clean()


def test_up_after_a_crash_mid_up() -> None:
    cmd = [sys.executable, str(FLEET_PY)]
    crashed = subprocess.Popen([*cmd, "up", "--hosts", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while "namespaces ready" not in (line := readline(crashed.stderr)):
            assert line, "up never got as far as the hosts' namespaces"
        crashed.send_signal(signal.SIGKILL)
    finally:
        crashed.wait()
        crashed.stderr.close()
    assert any(item.startswith("namespace ") for item in leftovers())  # the crash did leave something
    crashed_pids = {pid for host in ("h1", "h2", "h3") for pid, _cmd in processes_in(f"kvf-{host}")}

    subprocess.run([*cmd, "up", "--hosts", "3"], check=True, capture_output=True)
    assert [pid for pid in crashed_pids if alive(pid)] == []
    fleet = Fleet.attach()
    for host in fleet.hosts:  # one anchor and one sshd listener each: this run's
        cmds = [cmd for _pid, cmd in processes_in(f"kvf-{host}")]
        assert sum(cmd.startswith(f"kvf-anchor-{host}") for cmd in cmds) == 1
        assert sum(cmd.startswith("sshd: ") and "[listener]" in cmd for cmd in cmds) == 1
        assert fleet.ssh(host, ["hostname"]).stdout == f"{host}\n"
    started = time.monotonic()
    subprocess.run([*cmd, "down"], check=True, capture_output=True)
    assert time.monotonic() - started < 30
    assert_clean()
