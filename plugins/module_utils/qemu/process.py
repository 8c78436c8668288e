# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Starting QEMU and telling whether it still runs.

QEMU is started daemonized from an argv list (no shell); its parent exits
only once the VM is set up, so a bad option or a missing file is an error
here, with QEMU's own message. Liveness is the pid file's process being a
QEMU that still has our pid file on its command line.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv as cmdline
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.runtime_file import Paths, ensure_dir

START_TIMEOUT = 120


def read_pid(where: Paths) -> int | None:
    try:
        with open(where.pidfile, encoding="ascii") as handle:
            return int(handle.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None, where: Paths) -> bool:
    """True if ``pid`` is a live process whose command line names our pid file."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        return False
    return where.pidfile.encode() in argv


def running_pid(where: Paths) -> int | None:
    pid = read_pid(where)
    return pid if pid_alive(pid, where) else None


def start(runtime: dict[str, Any], where: Paths, incoming: str | None = None) -> tuple[int, list[str]]:
    """Launch QEMU for ``runtime`` on this host; return (pid, argv).

    On failure nothing is left behind: no process, socket or pid file.
    """
    ensure_dir(where.runtime_dir)
    for stale in (where.qmp, where.pidfile):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    argv = cmdline.launch_argv(runtime, where.qmp, where.pidfile, where.serial, incoming)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=START_TIMEOUT, check=False)
    except FileNotFoundError:
        raise KvmError(f"QEMU binary {argv[0]} not found; install qemu-system-x86 or set qemu_binary") from None
    except subprocess.TimeoutExpired:
        cleanup(where)
        raise KvmError(f"QEMU did not finish starting within {START_TIMEOUT}s") from None
    pid = read_pid(where)
    if done.returncode != 0 or not pid_alive(pid, where):
        cleanup(where)
        lines = [ln.strip() for ln in (done.stderr or "").splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise KvmError(f"QEMU failed to start: {reason}")
    os.chmod(where.qmp, 0o600)
    return pid, argv


def kill(where: Paths) -> None:
    """Hard stop (SIGKILL) of the instance's QEMU, if it runs."""
    pid = running_pid(where)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def cleanup(where: Paths) -> None:
    """Kill a QEMU that still runs and remove socket and pid file."""
    kill(where)
    for stale in (where.qmp, where.pidfile):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait (event-driven, via a pidfd) until ``pid`` exits; False at the deadline."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def stop_hard(where: Paths, timeout: float = 10.0) -> bool:
    """SIGKILL the instance's QEMU and wait for it to be gone; True if one ran."""
    pid = running_pid(where)
    if not pid:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)
    wait_exit(pid, timeout)
    return True


def remove_files(where: Paths, keep_runtime: bool = True) -> None:
    """Remove socket and pid file (and the runtime file, serial log and lock unless kept)."""
    files = [where.qmp, where.pidfile]
    if not keep_runtime:
        files += [where.runtime, where.serial, where.lock]
    for name in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
