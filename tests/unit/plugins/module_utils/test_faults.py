"""Fault points: nothing without the variables, a marker for named steps, SIGSTOP only for KVMHV_FAULT_STOP steps.

The stop is never raised on the test process: in-process the signal call is
recorded instead; the real stop is shown on a child process started here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults

COLLECTIONS = faults.__file__.rsplit("/ansible_collections/", 1)[0]  # where this process imports the collection from


@pytest.fixture
def signals(monkeypatch):
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    for name in ("KVMHV_FAULT_STOP", "KVMHV_FAULT_MARK", "KVMHV_FAULT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return sent


def test_without_the_variables_nothing_happens(tmp_path, signals, monkeypatch):
    monkeypatch.chdir(tmp_path)
    faults.point("journalled")
    assert signals == [] and os.listdir(tmp_path) == []


def test_marker_only_for_named_steps(tmp_path, signals, monkeypatch):
    monkeypatch.setenv("KVMHV_FAULT_MARK", "plugged,journalled")
    monkeypatch.setenv("KVMHV_FAULT_DIR", str(tmp_path))
    faults.point("journal")  # a prefix of a named step is not that step
    faults.point("committed")
    assert os.listdir(tmp_path) == []
    faults.point("journalled")
    marker = tmp_path / f"journalled.{os.getpid()}"
    assert os.listdir(tmp_path) == [marker.name] and marker.read_text() == f"{os.getpid()}\n"
    assert signals == []  # marking never stops


def test_marker_without_a_directory_is_skipped(tmp_path, signals, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KVMHV_FAULT_MARK", "plugged")
    faults.point("plugged")
    assert signals == [] and os.listdir(tmp_path) == []


def test_stop_marks_first_then_stops_itself(tmp_path, signals, monkeypatch):
    monkeypatch.setenv("KVMHV_FAULT_STOP", "locked")
    monkeypatch.setenv("KVMHV_FAULT_DIR", str(tmp_path))
    faults.point("lock-wait")
    assert signals == []

    def marked_then_signalled(pid: int, sig: int) -> None:
        assert (tmp_path / f"locked.{os.getpid()}").exists()  # the marker is there before the stop
        signals.append((pid, sig))

    monkeypatch.setattr(faults.os, "kill", marked_then_signalled)
    faults.point("locked")
    assert signals == [(os.getpid(), signal.SIGSTOP)]


def test_a_child_really_stops_at_its_step(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": COLLECTIONS, "KVMHV_FAULT_STOP": "fds-passed",
           "KVMHV_FAULT_DIR": str(tmp_path)}
    code = ("from ansible_collections.kvmhv.qemu.plugins.module_utils import faults\n"
            "faults.point('plugged')\nfaults.point('fds-passed')\nprint('continued', flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    try:
        _pid, status = os.waitpid(child.pid, os.WUNTRACED)  # returns when the child stops (or ends)
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP
        assert os.listdir(tmp_path) == [f"fds-passed.{child.pid}"]
        os.kill(child.pid, signal.SIGCONT)
        out, _err = child.communicate(timeout=30)
        assert out == b"continued\n" and child.returncode == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
