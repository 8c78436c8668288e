# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One module call's hold on one instance: its files, the trusted runtime dir, the lock, one QMP connection.

Every operation opens exactly one ``Session`` per instance (``open_session``)
and does everything through it: the runtime file is read once, QEMU is
reached through one monitor opened on first use, and the instance lock is
held from before the instance is located until the last write. A session
that writes (``writer``: not check mode) holds the lock and talks on the
control monitor; one that only reads (check mode, ``kvm_instance_info``)
takes no lock and uses the read-only monitor, so it never waits behind a
long hotplug or migration.

How to reach QEMU is decided here (``locate``): an adopted instance (its
runtime file says ``adopted``) is reached through the QMP socket and pid file
of the QEMU that something else started; every other instance through its
own files in the runtime directory.
"""

from __future__ import annotations

import contextlib
import stat
from typing import AsyncIterator

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths, RunDir, open_rundir, paths
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

STATUS_TIMEOUT = 5.0


def locate(where: Paths, rt: Runtime | None) -> Paths:
    """The instance's own files, or an adopted QEMU's socket and pid file when ``rt`` records an adoption."""
    own = where.own()
    adopted = rt.get("adopted") if rt is not None else None
    if not isinstance(adopted, dict):
        return own
    qmp_socket, pidfile, started = adopted.get("qmp"), adopted.get("pidfile"), adopted.get("started")
    if isinstance(qmp_socket, str) and qmp_socket.startswith("/") and isinstance(pidfile, str) and pidfile.startswith("/"):
        return Paths(own.runtime_dir, own.name, qmp_socket, pidfile, started if isinstance(started, int) else None)
    return own


class Session:
    """The instance as one module call sees it (module docstring)."""

    def __init__(self, call: Call, rd: RunDir, where: Paths, writer: bool) -> None:
        self.call = call
        self.rd = rd
        self.where = where
        self.writer = writer
        self._read = False
        self._runtime: Runtime | None = None
        self.stored_version: int | None = None  # the format version the file was stored in, once read
        self._mon: qmp.Monitor | None = None

    @property
    def name(self) -> str:
        return self.where.name

    @property
    def check(self) -> bool:
        return self.call.check

    # -- the runtime file ------------------------------------------------

    def load(self) -> Runtime | None:
        """The runtime file through the upgrader (read once per call), or None when there is none."""
        if not self._read:
            found = runtime_file.load(self.rd, self.name)
            self._runtime, self._read = (found[0] if found else None), True
            self.stored_version = found[1] if found else None
        return self._runtime

    def save(self, rt: Runtime) -> None:
        """Write ``rt`` atomically as the instance's runtime file (never in check mode)."""
        if self.check:
            return
        runtime_file.save(self.rd, self.name, rt)
        self._runtime, self._read = rt, True
        self.stored_version = rt["version"]

    def forget(self) -> None:
        """The runtime file went (``absent``) or was put back by a failed start: read it again when asked."""
        self._runtime, self._read, self.stored_version = None, False, None

    # -- the process -----------------------------------------------------

    def pid_record(self) -> tuple[int, int | None] | None:
        """(pid, start time) from the pid file (an adopted QEMU's outside the runtime dir)."""
        where = self.where
        text = process.read_outside(where.pidfile) if where.adopted_pidfile else self.rd.read_text(where.names.pid)
        return process.parse_pid(text, where.adopted_started)

    def pid(self) -> int | None:
        """The pid of the instance's QEMU if that very process still runs."""
        return process.running_pid(self.pid_record(), self.where.pidfile)

    def write_pid(self, pid: int) -> None:
        self.rd.write_atomic(self.where.names.pid, process.pid_text(pid))

    def kill(self, timeout: float = 10.0) -> bool:
        """SIGKILL the instance's QEMU if that very process still runs, and wait for it."""
        found = self.pid_record()
        pid = process.running_pid(found, self.where.pidfile)
        if not pid or not found:
            return False
        return process.kill_verified(pid, found[1] if found[1] is not None else process.starttime(pid), timeout)

    # -- QMP -------------------------------------------------------------

    def query_socket(self) -> str:
        """The read-only monitor when QEMU has one (instances started by this version), else the control one.

        An adopted QEMU has only its own single monitor: queries wait behind a long hotplug there.
        """
        where = self.where
        if where.adopted:
            return where.qmp
        st = self.rd.lstat(where.names.qmp_ro)
        return where.qmp_ro if st is not None and stat.S_ISSOCK(st.st_mode) else where.qmp

    async def monitor(self, timeout: float = qmp.CONNECT_TIMEOUT) -> qmp.Monitor:
        """The call's one QMP connection, opened on first use: the control monitor for a writer, else the read-only one."""
        if self._mon is None:
            self._mon = await qmp.open_monitor(self.where.qmp if self.writer else self.query_socket(), timeout)
        return self._mon

    async def hang_up(self) -> None:
        """Close the connection (QEMU quit, or a new QEMU is about to replace it)."""
        if self._mon is not None:
            mon, self._mon = self._mon, None
            await mon.close()

    async def status(self) -> tuple[str, int | None]:
        """(status, pid): QEMU's run state (running, paused, incoming, postmigrate, ...), or stopped, or absent.

        ``unknown`` when a QEMU runs but does not answer QMP in time.
        """
        pid = self.pid()
        if pid:
            try:
                mon = await self.monitor(STATUS_TIMEOUT)
                state = str((await mon.cmd("query-status", timeout=STATUS_TIMEOUT))["status"])
            except KvmError:
                state = "unknown"
            return ("incoming" if state == "inmigrate" else state), pid
        return ("stopped" if self.rd.exists(self.where.names.runtime) else "absent"), None


@contextlib.asynccontextmanager
async def attach(call: Call, rd: RunDir, where: Paths, writer: bool) -> AsyncIterator[Session]:
    """A session on an open runtime dir: locked (a writer) and located; the monitor is closed on the way out."""
    lock = rd.lock(where.name, keep_if=where.names.runtime) if writer else contextlib.nullcontext()
    with lock:
        session = Session(call, rd, where.own(), writer)
        try:
            session.where = locate(where, session.load())
        except KvmError:
            session.forget()  # a damaged runtime file: whoever loads it next reports what is wrong with it
        try:
            yield session
        finally:
            await session.hang_up()


@contextlib.asynccontextmanager
async def open_session(call: Call, name: str, create: bool = False) -> AsyncIterator[Session]:
    """The session of instance ``name`` in the call's ``runtime_dir`` (see ``attach``).

    Bad names and untrusted directories fail before anything is created or
    locked; a runtime dir that does not exist (and is not to be created)
    yields a session that finds no files, without a lock.
    """
    where = paths(call.params["runtime_dir"], name)
    rd = open_rundir(where.runtime_dir, create=create and not call.check)
    with rd:
        async with attach(call, rd, where, writer=not call.check and not rd.missing) as session:
            yield session
