"""Taps: a missing bridge is named, a failing ip or ioctl closes the descriptor again.

No tap is created here: the ioctl that would create one is replaced, and
/dev/net/tun is only opened.
"""

from __future__ import annotations

import fcntl
import os
import subprocess

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import tap


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def open_fds() -> set[int]:
    """The descriptors open in this process (probed one by one: listing /proc/self/fd would open one more)."""
    return {fd for fd in range(4096) if is_open(fd)}


def test_exists_looks_at_sysfs():
    assert tap.exists("lo") and not tap.exists("kvmhv-none0")


def test_a_missing_bridge_is_named_before_anything_is_opened(monkeypatch):
    monkeypatch.setattr(tap.os, "open", lambda *a, **k: pytest.fail("opened /dev/net/tun"))
    with pytest.raises(KvmError) as err:
        tap.open_tap("tap0", "kvmhv-nobr0")
    assert str(err.value) == "tap: bridge kvmhv-nobr0 does not exist" and err.value.step == "tap"


@pytest.fixture
def fake_ioctl(monkeypatch):
    calls: list[tuple[int, bytes]] = []
    monkeypatch.setattr(tap.fcntl, "ioctl", lambda fd, request, arg: calls.append((request, arg)))
    return calls


def test_a_failing_ip_closes_the_descriptor(monkeypatch, fake_ioctl):
    ran: list[list[str]] = []

    def ip(argv, **_kw):
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 2, "", "RTNETLINK answers: Operation not permitted\n")

    monkeypatch.setattr(tap.subprocess, "run", ip)
    before = open_fds()
    with pytest.raises(KvmError) as err:
        tap.open_tap("kvmhv-t0", "lo")
    assert str(err.value) == "tap: ip link set dev kvmhv-t0 master lo: RTNETLINK answers: Operation not permitted"
    assert ran == [["ip", "link", "set", "dev", "kvmhv-t0", "master", "lo"]]
    assert open_fds() == before
    assert fake_ioctl == [(tap.TUNSETIFF, b"kvmhv-t0".ljust(16, b"\0") + (tap.IFF_TAP | tap.IFF_NO_PI | tap.IFF_VNET_HDR).to_bytes(2, "little"))]


def test_without_a_bridge_only_link_up_runs(monkeypatch, fake_ioctl):
    ran: list[list[str]] = []
    monkeypatch.setattr(tap.subprocess, "run", lambda argv, **_kw: ran.append(argv) or subprocess.CompletedProcess(argv, 0, "", ""))
    fd, created = tap.open_tap("kvmhv-t1", None)
    os.close(fd)
    assert ran == [["ip", "link", "set", "dev", "kvmhv-t1", "up"]] and created is True
    fd, created = tap.open_tap("lo", None)
    os.close(fd)
    assert created is False  # an existing interface is only opened


def test_a_failing_ioctl_closes_the_descriptor(monkeypatch):
    def refuse(fd, request, arg):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(tap.fcntl, "ioctl", refuse)
    before = open_fds()
    with pytest.raises(KvmError, match=r"^tap: cannot open tap kvmhv-t2: Operation not permitted$"):
        tap.open_tap("kvmhv-t2", None)
    assert open_fds() == before


def test_no_tun_device_is_a_clear_error(monkeypatch):
    def missing(*_a, **_k):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(tap.os, "open", missing)
    with pytest.raises(KvmError, match=r"^tap: cannot open /dev/net/tun: No such file or directory$"):
        tap.open_tap("kvmhv-t3", None)
