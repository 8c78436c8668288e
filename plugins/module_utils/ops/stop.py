# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stop an instance's QEMU and remove its files: powerdown with a deadline, then quit, then SIGKILL.

Only this collection's own plumbing is removed: an adopted QEMU's socket and
pid file belong to whoever started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp

QUIT_TIMEOUT = 5.0


def orphan_listens(session: Session) -> bool:
    """Whether a QEMU of this instance serves its own QMP socket without a pid file.

    A module killed between spawning QEMU and writing its pid file leaves
    one: the socket (made by the module, in the trusted runtime directory)
    still answers. It must be stopped, never joined by a second QEMU on the
    same disks.
    """
    own = session.where.own()
    if session.rd.lstat(own.names.qmp) is None:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(own.qmp)
        return True
    except OSError:
        return False
    finally:
        probe.close()


async def stop(session: Session, timeout: float, graceful: bool = True) -> bool:
    """Stop QEMU: ACPI powerdown with a deadline (or ``quit``), then SIGKILL. True if one ran."""
    pid = session.pid()
    if not pid:
        orphan = orphan_listens(session)
        if orphan:
            with contextlib.suppress(KvmError):
                async with qmp.connect(session.where.own().qmp, timeout=QUIT_TIMEOUT) as mon:
                    await mon.try_cmd("quit")
        remove_plumbing(session)
        return orphan
    with contextlib.suppress(KvmError):
        mon = await session.monitor(QUIT_TIMEOUT if not graceful else qmp.CONNECT_TIMEOUT)
        if graceful:
            await mon.try_cmd("system_powerdown")
            exited = await asyncio.get_running_loop().run_in_executor(None, process.wait_exit, pid, timeout)
            if not exited:
                await mon.try_cmd("quit")
        else:
            await mon.try_cmd("quit")
    await session.hang_up()
    if not process.wait_exit(pid, 10):
        session.kill()
    remove_plumbing(session)
    return True


def remove_plumbing(session: Session) -> None:
    """Sockets and pid file of a QEMU that is gone (only this collection's own: an adopted QEMU's stay)."""
    names = session.where.names
    for name in (names.qmp, names.qmp_ro, names.pid):
        session.rd.unlink(name)


def remove_all(session: Session) -> None:
    """Every file of the instance (the lock goes when its holder releases it)."""
    session.rd.remove_temps(session.name)
    for name in session.where.all_names():
        if not name.endswith(".lock"):
            session.rd.unlink(name)
    session.forget()
