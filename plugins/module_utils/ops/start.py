# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start an instance's QEMU from its runtime: the one way a QEMU of this collection comes to life.

The runtime file is written before QEMU starts and put back as it was if the
start fails, so a runtime file always describes what runs (or what ran, for
a stopped instance). A start opens everything QEMU needs, spawns it as the
QEMU user, records its pid and start time at once, and waits for the QMP
greeting (QEMU has created every device by then); that connection becomes
the session's monitor. A failed start kills only the process it spawned.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.fixed import unstartable
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.stop import orphan_listens
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv as qargv
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import fixed, host, process
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import Instance
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import INCOMING, Runtime

START_TIMEOUT = 120.0
# The return path lets the target tell the source that loading failed, so
# the source never counts a migration as done that the target could not use.
MIGRATION_CAPS = [{"capability": "events", "state": True}, {"capability": "return-path", "state": True}]


async def _ready(session: Session, incoming_uri: str | None, nbd: storage.NbdExport | None) -> None:
    """Wait for QEMU's QMP greeting; a migration target is then told to listen (and to export its disks)."""
    mon = await session.monitor(START_TIMEOUT)
    if incoming_uri:
        await mon.cmd("migrate-set-capabilities", {"capabilities": MIGRATION_CAPS}, step="incoming")
        if nbd:
            await storage.export(mon, nbd)
        await mon.cmd("migrate-incoming", {"uri": incoming_uri}, step="incoming")


async def start(session: Session, rt: Runtime, user: process.QemuUser, binary: str, incoming_uri: str | None = None,
                nbd: storage.NbdExport | None = None) -> int:
    """Write the runtime file, then start QEMU; on failure undo both. Returns QEMU's pid.

    The started QEMU is this collection's own: an ``adopted`` mark goes, the
    instance's own sockets and pid file are used. ``nbd`` makes a migration
    target export those disks over NBD before it listens for the migration
    (``copy_storage``). The program is ``binary`` (the module's
    ``qemu_binary``), whatever the runtime file's ``kvm_cmd`` names: a file
    from another host or from Ganeti never chooses what runs here.
    """
    reason = unstartable(rt)
    if reason:
        raise KvmError(f"cannot start {session.name}: {reason}")
    rd = session.rd
    if orphan_listens(session):
        raise KvmError(f"a QEMU of {session.name} without a pid file still serves {session.where.own().qmp} (a run was "
                       "killed as it started it); stop it first with state=stopped or state=absent")
    await session.hang_up()
    where = session.where = session.where.own()
    rt.pop("adopted", None)
    rt["kvm_cmd"] = [binary, *rt["kvm_cmd"][1:]]
    names = where.names
    before = rd.read_text(names.runtime)
    logs_existed = {name: rd.exists(name) for name in (names.serial, names.log)}
    rt.pop("mark", None)
    if incoming_uri:
        rt["mark"] = INCOMING
    session.save(rt)
    rd.unlink(names.journal)  # hotplugs a previous QEMU left in flight went with it
    child: subprocess.Popen[bytes] | None = None
    log_fd = rd.open_append(names.log)
    offset = os.fstat(log_fd).st_size
    try:
        sockets = [rd.listen(names.qmp)]
        try:
            sockets.append(rd.listen(names.qmp_ro))
            serial = rd.open_append(names.serial)
        except BaseException:
            for sock in sockets:  # open_for_start closes them from here on
                sock.close()
            raise
        opened = host.open_for_start(sockets, serial, rt)
        try:
            child = process.spawn(qargv.launch_argv(rt, opened.fds, incoming=bool(incoming_uri)), opened.fds.all(), user, log_fd)
        finally:
            opened.close()
        session.write_pid(child.pid)
        faults.point("start-spawned")
        try:
            await _ready(session, incoming_uri, nbd)
        except KvmError as err:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
            if child.poll() is not None:
                reason = process.last_line((rd.read_text(names.log) or "")[offset:])
                reason = reason or f"exit status {child.returncode}"
                if rt["hvparams"].get("accel") == "kvm" and "kvm" in reason.lower():
                    reason += f" (the QEMU user {user.name} needs /dev/kvm: the kvm_host role puts it in the kvm group; or use accel: tcg)"
                raise KvmError(f"QEMU failed to start: {reason}") from None
            raise err
    except BaseException:
        await session.hang_up()
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        for name in (names.qmp, names.qmp_ro, names.pid):
            rd.unlink(name)
        if before is None:
            rd.unlink(names.runtime)
            for name, existed in logs_existed.items():
                if not existed:
                    rd.unlink(name)
        else:
            rd.write_atomic(names.runtime, before)
        session.forget()
        raise
    finally:
        os.close(log_fd)
    return child.pid


def illustrative_argv(rt: Runtime, incoming: bool = False) -> list[str]:
    """The argv a start would use; descriptor numbers are placeholders (each start gets its own)."""
    disks = {d["hvinfo"]["id"]: (10 + i, False) for i, d in enumerate(rt["disks"])}
    taps = {n["hvinfo"]["id"]: 100 + i for i, n in enumerate(rt["nics"]) if (n.get("network") or {}).get("type") == "tap"}
    fixed_disks, fixed_taps = fixed.placeholder_fds(rt)
    return qargv.launch_argv(rt, qargv.HostFds(3, 4, 5, {**disks, **fixed_disks}, {**taps, **fixed_taps}), incoming)


def public(session: Session, rt: Runtime, state: str, pid: int | None) -> Instance:
    """The ``instance`` a module returns."""
    where = session.where
    return {
        "name": where.name,
        "uuid": rt.get("uuid"),
        "status": state,
        "pid": pid,
        "qmp_socket": where.qmp,
        "runtime_file": where.runtime,
        "serial_log": where.serial,
        "disks": [devices.public(dict(d)) for d in rt["disks"]],
        "nics": [devices.public(dict(n)) for n in rt["nics"]],
        "cmdline": illustrative_argv(rt),
    }
