# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start, stop and look at one instance's QEMU: the steps ``kvm_instance`` is made of.

The runtime file is written before QEMU starts and put back as it was if the
start fails, so a runtime file always describes what runs (or what ran, for
a stopped instance). A start opens everything QEMU needs, spawns it as the
QEMU user, records its pid and start time at once, and waits for the QMP
greeting (QEMU has created every device by then). A failed start kills only
the process it spawned itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.fixed import unstartable
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv as qargv
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import fixed, host, process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths, RunDir
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

START_TIMEOUT = 120.0
# The return path lets the target tell the source that loading failed, so
# the source never counts a migration as done that the target could not use.
MIGRATION_CAPS = [{"capability": "events", "state": True}, {"capability": "return-path", "state": True}]
STOPPED, INCOMING = "stopped", "incoming"


def base(path: str) -> str:
    return os.path.basename(path)


def locate(rd: RunDir, where: Paths) -> Paths:
    """How to reach the instance's QEMU: the one place that decides it.

    An adopted instance (its runtime file says ``adopted``) is reached through
    the QMP socket and pid file of the QEMU that something else started; every
    other instance through its own files in the runtime directory. Every
    operation calls this once, under the instance lock, and passes the result
    on; a start always uses the instance's own files (``Paths.own``).
    """
    own = where.own()
    try:
        text = rd.read_text(base(own.runtime))
        data = json.loads(text) if text else None
    except (KvmError, ValueError):
        return own  # whoever loads the runtime next reports what is wrong with it
    adopted = data.get("adopted") if isinstance(data, dict) else None
    if isinstance(adopted, dict) and all(isinstance(adopted.get(k), str) and adopted[k].startswith("/") for k in ("qmp", "pidfile")):
        started = adopted.get("started")
        return Paths(own.runtime_dir, own.name, adopted["qmp"], adopted["pidfile"], started if isinstance(started, int) else None)
    return own


def query_socket(rd: RunDir, where: Paths) -> str:
    """The read-only monitor when QEMU has one (instances started by this version), else the control one.

    An adopted QEMU has only its own single monitor: queries wait behind a long hotplug there.
    """
    if where.adopted:
        return where.qmp
    st = rd.lstat(base(where.qmp_ro))
    return where.qmp_ro if st is not None and stat.S_ISSOCK(st.st_mode) else where.qmp


async def _query_status(sock: str) -> str:
    async with qmp.connect(sock, timeout=5) as mon:
        return str((await mon.cmd("query-status"))["status"])


def status(rd: RunDir, where: Paths) -> tuple[str, int | None]:
    """(status, pid): QEMU's run state (running, paused, incoming, ...), or stopped, or absent.

    One QMP question on the read-only monitor, so a long hotplug or
    migration holding the control monitor never delays it.
    """
    pid = process.running_pid(rd, where)
    if pid:
        try:
            state = qmp.run(_query_status(query_socket(rd, where)))
        except KvmError:
            state = "unknown"
        return ("incoming" if state == "inmigrate" else state), pid
    return ("stopped" if rd.exists(base(where.runtime)) else "absent"), None


def settle_incoming(rd: RunDir, where: Paths, rt: Runtime, pid: int | None, write: bool) -> Runtime:
    """A migration target's mark: dropped once the guest runs here, an error while it cannot.

    The target cannot know when the source finished, so every writer asks
    QEMU: a target whose QEMU left ``inmigrate`` holds the instance now; one
    whose QEMU is gone failed, and the instance lives on the source. A
    ``copy_storage`` target then closes its NBD server and forgets which
    images it created: they are the instance's disks from now on.
    """
    if rt.get("mark") != INCOMING:
        return rt
    if pid is None:
        raise KvmError(
            f"instance {where.name} here was a migration target whose migration never completed "
            "(the instance lives on the source); remove it here with state=absent"
        )
    if status(rd, where)[0] == "incoming":
        raise KvmError(f"instance {where.name} here is a migration target still waiting for its migration")
    rt.pop("mark", None)
    created = rt.pop("created_images", None)
    if write:
        if created is not None:
            storage.unexport(where.qmp)
            storage.disown(created)  # before the record goes: a kill in between leaves a record that matches nothing
        runtime_file.save(rd, where.name, rt)
    return rt


def arrived(rd: RunDir, where: Paths, rt: Runtime) -> bool | None:
    """For a runtime marked incoming: True once the guest runs here, False while it cannot, None if QEMU does not say."""
    state, pid = status(rd, where)
    if pid is None or state == "incoming":
        return False
    return None if state == "unknown" else True


def check_unix_target(path: str) -> None:
    """A unix migration socket may replace only a stale socket: never a file, a link or a live socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise KvmError(f"migration socket {path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: a stale socket left by an earlier target
        return
    except OSError as err:
        raise KvmError(f"migration socket {path}: {err.strerror}") from None
    finally:
        probe.close()
    raise KvmError(f"migration socket {path} is in use by another process")


async def _ready(sock: str, incoming_uri: str | None, nbd: tuple[str, int, list[dict[str, Any]]] | None = None) -> None:
    """Wait for QEMU's QMP greeting; a migration target is then told to listen (and to export its disks)."""
    async with qmp.connect(sock, timeout=START_TIMEOUT) as mon:
        if incoming_uri:
            await mon.cmd("migrate-set-capabilities", {"capabilities": MIGRATION_CAPS}, step="incoming")
            if nbd:
                await storage.export(mon, *nbd)
            await mon.cmd("migrate-incoming", {"uri": incoming_uri}, step="incoming")


def start(rd: RunDir, where: Paths, rt: Runtime, user: process.QemuUser, binary: str, incoming_uri: str | None = None,
          nbd: tuple[str, int, list[dict[str, Any]]] | None = None) -> int:
    """Write the runtime file, then start QEMU; on failure undo both. Returns QEMU's pid.

    The started QEMU is this collection's own: an ``adopted`` mark goes, the
    instance's own sockets and pid file are used. ``nbd`` (host, port, disks)
    makes a migration target export those disks over NBD before it listens for
    the migration (``copy_storage``). The program is ``binary`` (the
    module's ``qemu_binary``), whatever the runtime file's ``kvm_cmd`` names:
    a file from another host or from Ganeti never chooses what runs here.
    """
    reason = unstartable(rt)
    if reason:
        raise KvmError(f"cannot start {where.name}: {reason}")
    if orphan_listens(rd, where):
        raise KvmError(f"a QEMU of {where.name} without a pid file still serves {where.own().qmp} (a run was killed as it "
                       "started it); stop it first with state=stopped or state=absent")
    where = where.own()
    rt.pop("adopted", None)
    rt["kvm_cmd"] = [binary, *rt["kvm_cmd"][1:]]
    runtime_name = base(where.runtime)
    before = rd.read_text(runtime_name)
    logs_existed = {name: rd.exists(base(name)) for name in (where.serial, where.log)}
    rt.pop("mark", None)
    if incoming_uri:
        rt["mark"] = INCOMING
    runtime_file.save(rd, where.name, rt)
    rd.unlink(base(where.journal))  # hotplugs a previous QEMU left in flight went with it
    child: subprocess.Popen[bytes] | None = None
    log_fd = rd.open_append(base(where.log))
    offset = os.fstat(log_fd).st_size
    try:
        opened = host.open_for_start(rd, where, rt)
        try:
            child = process.spawn(qargv.launch_argv(rt, opened.fds, incoming=bool(incoming_uri)), opened.fds.all(), user, log_fd)
        finally:
            opened.close()
        process.write_pid(rd, where, child.pid)
        faults.point("start-spawned")
        try:
            qmp.run(_ready(where.qmp, incoming_uri, nbd))
        except KvmError as err:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
            if child.poll() is not None:
                reason = process.log_tail(rd, where, offset) or f"exit status {child.returncode}"
                if rt["hvparams"].get("accel") == "kvm" and "kvm" in reason.lower():
                    reason += f" (the QEMU user {user.name} needs /dev/kvm: the kvm_host role puts it in the kvm group; or use accel: tcg)"
                raise KvmError(f"QEMU failed to start: {reason}") from None
            raise err
    except BaseException:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        for name in (where.qmp, where.qmp_ro, where.pidfile):
            rd.unlink(base(name))
        if before is None:
            rd.unlink(runtime_name)
            for name, existed in logs_existed.items():
                if not existed:
                    rd.unlink(base(name))
        else:
            rd.write_atomic(runtime_name, before)
        raise
    finally:
        os.close(log_fd)
    return child.pid


async def _powerdown(sock: str, pid: int, timeout: float) -> None:
    """Ask the guest to power off; wait for QEMU to exit, else quit it."""
    async with qmp.connect(sock) as mon:
        await mon.try_cmd("system_powerdown")
        loop = asyncio.get_running_loop()
        exited = await loop.run_in_executor(None, process.wait_exit, pid, timeout)
        if not exited:
            await mon.try_cmd("quit")


async def _quit(sock: str) -> None:
    async with qmp.connect(sock, timeout=5) as mon:
        await mon.try_cmd("quit")


def orphan_listens(rd: RunDir, where: Paths) -> bool:
    """Whether a QEMU of this instance serves its own QMP socket without a pid file.

    A module killed between spawning QEMU and writing its pid file leaves
    one: the socket (made by the module, in the trusted runtime directory)
    still answers. It must be stopped, never joined by a second QEMU on the
    same disks.
    """
    own = where.own()
    if rd.lstat(base(own.qmp)) is None:
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


def stop(rd: RunDir, where: Paths, timeout: float, graceful: bool = True) -> bool:
    """Stop QEMU: ACPI powerdown with a deadline (or ``quit``), then SIGKILL. True if one ran."""
    pid = process.running_pid(rd, where)
    if not pid:
        orphan = orphan_listens(rd, where)
        if orphan:
            with contextlib.suppress(KvmError):
                qmp.run(_quit(where.own().qmp))
        remove_plumbing(rd, where)
        return orphan
    with contextlib.suppress(KvmError):
        qmp.run(_powerdown(where.qmp, pid, timeout) if graceful else _quit(where.qmp))
    if not process.wait_exit(pid, 10):
        process.stop_hard(rd, where)
    remove_plumbing(rd, where)
    return True


def remove_plumbing(rd: RunDir, where: Paths) -> None:
    """Sockets and pid file of a QEMU that is gone (only this collection's own: an adopted QEMU's stay)."""
    where = where.own()
    for name in (where.qmp, where.qmp_ro, where.pidfile):
        rd.unlink(base(name))


def remove_all(rd: RunDir, where: Paths) -> None:
    """Every file of the instance (the lock goes when its holder releases it)."""
    rd.remove_temps(where.name)
    for name in where.all_names():
        if not name.endswith(".lock"):
            rd.unlink(name)


def illustrative_argv(rt: Runtime, incoming: bool = False) -> list[str]:
    """The argv a start would use; descriptor numbers are placeholders (each start gets its own)."""
    disks = {d["hvinfo"]["id"]: (10 + i, False) for i, d in enumerate(rt["disks"])}
    taps = {n["hvinfo"]["id"]: 100 + i for i, n in enumerate(rt["nics"]) if (n.get("network") or {}).get("type") == "tap"}
    fixed_disks, fixed_taps = fixed.placeholder_fds(rt)
    return qargv.launch_argv(rt, qargv.HostFds(3, 4, 5, {**disks, **fixed_disks}, {**taps, **fixed_taps}), incoming)


def public(rt: Runtime, where: Paths, state: str, pid: int | None) -> dict[str, Any]:
    """The ``instance`` a module returns."""
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
