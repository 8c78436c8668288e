# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Starting QEMU as an unprivileged user, and knowing it is still the same process.

The module (root) spawns QEMU itself, directly as the QEMU user (never
root, unless ``qemu_user: root`` asks for it), in a new session, with a
minimal environment and exactly the descriptors it needs. The module writes
the pid file itself, with the process's start time: a pid is only ever
signalled after the start time in ``/proc`` matched, through a pidfd, so a
recycled pid or a QEMU this module did not start is never killed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import select
import signal
import stat
import subprocess
from dataclasses import dataclass

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

DEFAULT_QEMU_USER = "kvmhv-qemu"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


@dataclass(frozen=True)
class QemuUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def resolve_user(name: str) -> QemuUser:
    """The account QEMU runs as; a missing one is a clear error naming the role that creates it."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise KvmError(
            f"QEMU user {name!r} does not exist on this host: create it with the kvmhv.qemu.kvm_host role "
            "(or set qemu_user: root to run QEMU as root, without the privilege separation)"
        ) from None
    groups = tuple(os.getgrouplist(name, entry.pw_gid))
    me = os.geteuid()
    if me not in (0, entry.pw_uid):
        raise KvmError(f"running QEMU as {name!r} needs root; the module runs as uid {me}")
    return QemuUser(name, entry.pw_uid, entry.pw_gid, groups)


def starttime(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def read_outside(path: str) -> str | None:
    """A pid file outside the runtime directory (an adopted QEMU's), opened without following a symlink.

    It must be a regular file of root or the module's user that no one else
    can write; None if it does not exist.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        why = "is a symlink; refusing to follow it" if err.errno == errno.ELOOP else err.strerror
        raise KvmError(f"pid file {path} {why}") from None
    with os.fdopen(fd, encoding="ascii", errors="replace") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KvmError(f"pid file {path} is not a regular file of root or the module's user that only its owner "
                           f"can write (uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); refusing to trust it")
        return handle.read(64)


def parse_pid(text: str | None, default_started: int | None = None) -> tuple[int, int | None] | None:
    """(pid, start time) from a pid file's text; the start time is ``default_started`` in files QEMU wrote itself."""
    if not text:
        return None
    parts = text.split()
    try:
        pid = int(parts[0])
        started = int(parts[1]) if len(parts) > 1 else default_started
    except (ValueError, IndexError):
        return None
    return (pid, started) if pid > 0 else None


def pid_text(pid: int) -> str:
    """What this module writes into a pid file: the pid and its start time (a recycled pid is never taken for QEMU)."""
    return f"{pid} {starttime(pid) or 0}\n"


def _cmdline_names(pid: int, path: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return path.encode() in handle.read().split(b"\0")
    except OSError:
        return False


def running_pid(found: tuple[int, int | None] | None, pidfile: str) -> int | None:
    """The pid of ``found`` (from ``parse_pid``) if that very process still runs.

    A pid file with a start time (written by this module) must match
    ``/proc``; one without (written by QEMU's ``-pidfile``, as earlier
    versions and Ganeti do) must name ``pidfile`` on the process's command line.
    """
    if found is None:
        return None
    pid, started = found
    now = starttime(pid)
    if now is None:
        return None
    if started is not None:
        return pid if now == started else None
    return pid if _cmdline_names(pid, pidfile) else None


def spawn(argv: list[str], pass_fds: list[int], user: QemuUser, log_fd: int) -> subprocess.Popen[bytes]:
    """Start QEMU as ``user`` with exactly ``pass_fds`` open; stdout and stderr go to ``log_fd``."""
    as_other = user.uid != os.geteuid()
    try:
        return subprocess.Popen(
            argv,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd="/",
            env=ENV,
            start_new_session=True,
            user=user.uid if as_other else None,
            group=user.gid if as_other else None,
            extra_groups=list(user.groups) if as_other else None,
        )
    except FileNotFoundError:
        raise KvmError(f"QEMU binary {argv[0]} not found; install qemu-system-x86 or set qemu_binary") from None
    except OSError as err:
        raise KvmError(f"cannot start QEMU ({argv[0]}): {err.strerror}") from None


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait (event-driven, via a pidfd) until ``pid`` exits; False at the deadline."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0]) or starttime(pid) is None
    finally:
        os.close(fd)


def kill_verified(pid: int, started: int | None, timeout: float = 10.0) -> bool:
    """SIGKILL ``pid`` only if it is still the process that started at ``started``; wait for it.

    The pidfd pins the process between the check and the signal, so a pid
    recycled in between is never hit. True if a process was killed.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        now = starttime(pid)
        if now is None or (started is not None and now != started):
            return False
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], timeout)
        return True
    finally:
        os.close(fd)


def last_line(text: str) -> str:
    """The last meaningful line of ``text`` (what QEMU said last in its log)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
