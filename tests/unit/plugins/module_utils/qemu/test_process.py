"""Knowing QEMU is still the same process: start times, pid files, verified kills, the spawn itself.

Every process signalled here is a child this test started (``sleep``, ``sh``);
a pid that is gone is only ever passed with its real start time, so a
recycled pid belonging to someone else is never hit.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Iterator

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir, paths


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()


@pytest.fixture
def rd(tmp_path) -> Iterator[RunDir]:
    (tmp_path / "rt").mkdir(mode=0o700)
    with RunDir.open(str(tmp_path / "rt")) as opened:
        yield opened


def sleeper(children: list, *argv: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(list(argv) or ["sleep", "600"], stdin=subprocess.DEVNULL)
    children.append(child)
    return child


def zombie(children: list) -> subprocess.Popen[bytes]:
    """A child that has exited but is not reaped yet (its pid cannot be reused)."""
    child = subprocess.Popen(["true"])
    children.append(child)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # blocks until it exited, leaves it unreaped
    return child


def test_starttime_orders_processes_even_with_a_parenthesis_in_the_name(children, tmp_path):
    odd = tmp_path / "a) b c (d"
    odd.symlink_to("/bin/sleep")  # the kernel names the process after the file it executed
    first = sleeper(children)
    middle = sleeper(children, str(odd), "600")
    last = sleeper(children)
    times = [process.starttime(c.pid) for c in (first, middle, last)]
    assert all(isinstance(t, int) for t in times) and times == sorted(times)
    with open(f"/proc/{middle.pid}/comm", encoding="utf-8") as comm:
        assert comm.read().strip() == "a) b c (d"
    assert process.starttime(middle.pid) == times[1]  # stable while the process lives


def test_starttime_of_a_zombie_or_nothing_is_none(children):
    assert process.starttime(zombie(children).pid) is None
    assert process.starttime(0) is None and process.starttime(-1) is None


@pytest.mark.parametrize("text,found", [
    ("123 456\n", (123, 456)), ("123\n", (123, None)), ("  77  \n", (77, None)), ("", None), ("abc", None), ("1 x", None),
    ("0 5", None), ("-5", None),
])
def test_parse_pid(text, found):
    assert process.parse_pid(text) == found
    assert process.parse_pid(text, 9) == ((found[0], found[1] or 9) if found else None)


def session(rd: RunDir) -> Session:
    """The pid file is read and written through an instance session (ops.session), from the module's own files."""
    return Session(Call({}), rd, paths(rd.path, "vm1"), writer=True)


def test_write_pid_records_the_start_time(rd, children):
    paths(rd.path, "vm1")
    assert session(rd).pid_record() is None and session(rd).pid() is None
    child = sleeper(children)
    session(rd).write_pid(child.pid)
    assert rd.read_text("vm1.pid") == f"{child.pid} {process.starttime(child.pid)}\n"
    assert os.stat(rd.join("vm1.pid")).st_mode & 0o777 == 0o600
    assert session(rd).pid() == child.pid
    gone = zombie(children)
    session(rd).write_pid(gone.pid)
    assert rd.read_text("vm1.pid") == f"{gone.pid} 0\n" and session(rd).pid() is None


def test_running_pid_needs_the_same_start_time(rd, children):
    paths(rd.path, "vm1")
    child = sleeper(children)
    rd.write_atomic("vm1.pid", f"{child.pid} {process.starttime(child.pid) + 1}\n")
    assert session(rd).pid() is None  # a recycled pid: another process now


def test_a_pid_file_without_start_time_must_be_named_on_the_command_line(rd, children):
    where = paths(rd.path, "vm1")
    plain = sleeper(children)
    rd.write_atomic("vm1.pid", f"{plain.pid}\n")
    assert session(rd).pid() is None
    # like QEMU's -pidfile: the process names its pid file as an argument of its own
    named = subprocess.Popen(["sh", "-c", "read x", "sh", where.pidfile], stdin=subprocess.PIPE)
    children.append(named)
    rd.write_atomic("vm1.pid", f"{named.pid}\n")
    assert session(rd).pid() == named.pid
    other = subprocess.Popen(["sh", "-c", "read x", "sh", where.pidfile + "x"], stdin=subprocess.PIPE)
    children.append(other)
    rd.write_atomic("vm1.pid", f"{other.pid}\n")
    assert session(rd).pid() is None


def test_kill_verified_kills_only_the_process_that_started_then(children):
    child = sleeper(children)
    started = process.starttime(child.pid)
    assert process.kill_verified(child.pid, started + 1) is False
    assert child.poll() is None  # untouched
    assert process.kill_verified(child.pid, started) is True
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert process.kill_verified(child.pid, started) is False  # reaped: nothing left to kill


def test_kill_verified_without_start_time_and_on_a_zombie(children):
    child = sleeper(children)
    assert process.kill_verified(child.pid, None) is True and child.wait(timeout=10) == -signal.SIGKILL
    dead = zombie(children)
    assert process.kill_verified(dead.pid, None) is False


def test_wait_exit(children):
    child = sleeper(children)
    assert process.wait_exit(child.pid, 0.05) is False
    child.kill()
    assert process.wait_exit(child.pid, 10) is True  # the pidfd says so, reaped or not
    child.wait()


def test_stop_hard(rd, children):
    where = paths(rd.path, "vm1")
    assert session(rd).kill() is False
    child = sleeper(children)
    session(rd).write_pid(child.pid)
    assert session(rd).kill() is True and child.wait(timeout=10) == -signal.SIGKILL
    named = subprocess.Popen(["sh", "-c", "read x", "sh", where.pidfile], stdin=subprocess.PIPE)
    children.append(named)
    rd.write_atomic("vm1.pid", f"{named.pid}\n")  # QEMU's own pid file: the start time is read from /proc
    assert session(rd).kill() is True and named.wait(timeout=10) == -signal.SIGKILL


def test_last_line():
    assert process.last_line("") == ""
    text = "old error\n\nqemu-system-x86_64: -device x: Bus 'pci.3' not found\n  \n"
    assert process.last_line(text) == "qemu-system-x86_64: -device x: Bus 'pci.3' not found"
    assert process.last_line(text[len("old error\n\nqemu-system-x86_64: -device x: Bus 'pci.3' not found\n"):]) == ""


def test_users():
    root = process.resolve_user("root")
    assert (root.name, root.uid, root.gid) == ("root", 0, 0) and 0 in root.groups
    with pytest.raises(KvmError, match=r"QEMU user 'kvmhv-nobody-here' does not exist on this host: create it with the kvmhv\.qemu\.kvm_host"):
        process.resolve_user("kvmhv-nobody-here")


def test_spawn_hands_over_exactly_the_descriptors_and_a_minimal_environment(rd):
    log_fd = rd.open_append("vm1.qemu.log")
    read_end, write_end = os.pipe()
    script = (f'echo "sid=$(cut -d" " -f6 /proc/$$/stat) pid=$$ cwd=$(pwd)"; env | sort; ls /proc/self/fd; '
              f"echo pass > /proc/self/fd/{write_end}")
    try:
        child = process.spawn(["sh", "-c", script], [write_end], process.resolve_user("root"), log_fd)
        assert child.wait(timeout=30) == 0
    finally:
        os.close(log_fd)
        os.close(write_end)
    with os.fdopen(read_end) as got:
        assert got.read() == "pass\n"
    out = rd.read_text("vm1.qemu.log").split()
    assert f"sid={child.pid}" in out and f"pid={child.pid}" in out and "cwd=/" in out  # a session of its own, in /
    env = [w for w in out if "=" in w and not w.startswith(("sid=", "pid=", "cwd="))]
    assert env == ["LC_ALL=C", f"PATH={process.ENV['PATH']}", "PWD=/"]
    fds = sorted(int(w) for w in out if w.isdigit())
    assert fds[:3] == [0, 1, 2] and write_end in fds and len(fds) == 5  # stdio, the passed fd, and ls's own directory fd


def test_a_missing_binary_is_named():
    with pytest.raises(KvmError, match="QEMU binary /nonexistent/qemu not found; install qemu-system-x86 or set qemu_binary"):
        process.spawn(["/nonexistent/qemu"], [], process.resolve_user("root"), 2)
