# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small face over qemu.qmp's async ``QMPClient``: the ``Monitor``.

A module call crosses from sync to async once (``common.run``); below that
everything that talks to QEMU is a coroutine on one ``Monitor`` per call
(``ops.session``), which sends commands and waits for events. Every qemu.qmp error becomes a one-line
KvmError naming the step and QEMU's own message. Waits are event-driven with
deadlines: no polling, no sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import traceback
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence, TypeAlias, TypedDict, cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout, QmpClosed

try:
    from qemu.qmp import ConnectError, ExecuteError, Message, QMPClient, QMPError, Runstate

    HAS_QMP = True
    QMP_IMPORT_ERROR: str | None = None
except ImportError:  # reported by the modules with missing_required_lib; nothing below runs then
    HAS_QMP = False
    QMP_IMPORT_ERROR = traceback.format_exc()

if TYPE_CHECKING:
    from qemu.qmp.events import EventListener as Listener  # what ``Monitor.events`` yields


Command: TypeAlias = "tuple[str, Mapping[str, object] | None]"  # a QMP command and its arguments (JSON)


class Event(TypedDict):
    """A QMP event as the waits read it: its name and its data (whose keys depend on the event)."""

    event: str
    data: dict[str, Any]


if HAS_QMP:  # the sanity import test imports this file without qemu.qmp

    class _Client(QMPClient):
        """qemu.qmp's client, without formatting every message for a debug log nobody reads.

        qemu.qmp's message hooks pretty-print each message (``json.dumps(...,
        indent=2)``) before they ask whether debug logging is on: with a hundred
        devices, the answers to query-block and query-pci cost milliseconds per
        hotplug that way (profiled, benchmarks/README.md). The hooks log only when
        the logger would.
        """

        def _cb_outbound(self, msg: Message) -> Message:
            return super()._cb_outbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg

        def _cb_inbound(self, msg: Message) -> Message:
            return super()._cb_inbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg


CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0


class Monitor:
    """One connection to an instance's QMP socket."""

    def __init__(self, client: QMPClient, socket_path: str = "") -> None:
        self.client = client
        self.socket_path = socket_path

    async def close(self) -> None:
        """Hang up (best effort: QEMU may be gone already)."""
        with contextlib.suppress(Exception):
            await self.client.disconnect()

    async def _execute(self, command: str, args: Mapping[str, object] | None, step: str | None) -> Any:
        """Execute ``command`` (no deadline); QEMU's refusal becomes KvmError(step or command) with its class."""
        try:
            return await self.client.execute(command, args)
        except ExecuteError as err:
            raise KvmError(f"QEMU refused {command}: {err}", step or command, err.error_class) from None
        except QMPError as err:
            raise QmpClosed(f"lost the QMP connection during {command}: {err or type(err).__name__}", step or command) from None

    async def cmd(self, command: str, args: Mapping[str, object] | None = None, step: str | None = None,
                  timeout: float = COMMAND_TIMEOUT) -> Any:
        """Execute ``command`` with a deadline; any failure is a KvmError naming ``step`` (or the command)."""
        try:
            return await asyncio.wait_for(self._execute(command, args, step), timeout)
        except asyncio.TimeoutError:
            raise KvmTimeout(f"QEMU did not answer {command} within {timeout:g}s", step or command) from None

    async def batch(self, commands: Sequence[Command], timeout: float = COMMAND_TIMEOUT) -> list[Any]:
        """Send ``commands`` back to back without waiting in between (one round trip).

        QEMU executes them in order. Each answer is the command's result or
        the KvmError it raised (one deadline for the whole burst), so the
        caller sees exactly what happened and what to undo. No commands, no
        answers (asyncio.wait refuses an empty set).
        """
        if not commands:
            return []
        tasks = [asyncio.ensure_future(self._execute(cmd, args, None)) for cmd, args in commands]
        await asyncio.wait(tasks, timeout=timeout)
        answers: list[Any] = []
        for (cmd, _args), task in zip(commands, tasks, strict=True):
            if not task.done():
                task.cancel()
                answers.append(KvmTimeout(f"QEMU did not answer {cmd} within {timeout:g}s", cmd))
            else:
                answers.append(task.exception() or task.result())
        return answers

    async def try_cmd(self, command: str, args: Mapping[str, object] | None = None) -> Any:
        """Best effort (rollback, cleanup): errors are swallowed, result or None."""
        try:
            return await asyncio.wait_for(self.client.execute(command, args), COMMAND_TIMEOUT)
        except (QMPError, asyncio.TimeoutError):
            return None

    def send_fd(self, fd: int) -> None:
        self.client.send_fd_scm(fd)

    @contextlib.contextmanager
    def events(self, names: Iterable[str]) -> Iterator[Listener]:
        """Listen for ``names`` from now on (enter *before* sending the command)."""
        with self.client.listener(tuple(names)) as listener:
            yield listener

    async def closed(self) -> None:
        """Return once the connection is down (QEMU exited or hung up)."""
        while self.client.runstate == Runstate.RUNNING:
            await self.client.runstate_changed()

    async def wait_for(self, listener: Listener, match: Callable[[Event], bool], timeout: float, what: str) -> Event:
        """The first event from ``listener`` that ``match``es.

        KvmTimeout at the deadline, and QmpClosed as soon as the connection
        drops: a QEMU that dies during the wait is reported at once, not at
        the deadline.
        """

        async def first() -> Event:
            while True:
                event = cast(Event, await listener.get())  # a Message: a mapping with these keys
                if match(event):
                    return event

        waiter = asyncio.ensure_future(first())
        closed = asyncio.ensure_future(self.closed())
        try:
            done, _pending = await asyncio.wait((waiter, closed), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closed.cancel()
        if waiter in done:  # an event that arrived together with the hang-up still counts
            return waiter.result()
        if closed in done:
            raise QmpClosed(f"QEMU closed its QMP connection (it exited) while waiting for {what}")
        raise KvmTimeout(f"no {what} within {timeout:g}s")


def _pin(socket_path: str) -> int:
    """An ``O_PATH`` descriptor of the socket itself: a symlink is never followed, another user's socket never used."""
    try:
        fd = os.open(socket_path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise KvmError(f"cannot connect to QMP socket {socket_path}: {err.strerror}") from None
    st = os.fstat(fd)
    problem = None
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symlink; refusing to follow it"
    elif not stat.S_ISSOCK(st.st_mode):
        problem = "is not a socket"
    elif st.st_uid not in (0, os.geteuid()):
        problem = f"belongs to uid {st.st_uid}, not to root or the module's user"
    if problem:
        os.close(fd)
        raise KvmError(f"QMP socket {socket_path} {problem}")
    return fd


async def open_monitor(socket_path: str, timeout: float = CONNECT_TIMEOUT) -> Monitor:
    """A QMP session to ``socket_path``; KvmError if nothing listens there. The caller closes it.

    The connection goes through ``/proc/self/fd`` to the socket pinned by
    ``_pin``: exactly the inode that was checked, whatever the path becomes
    meanwhile (it matters for an adopted QEMU's socket outside the runtime
    directory).
    """
    client = _Client("kvmhv")
    pinned = _pin(socket_path)
    try:
        await asyncio.wait_for(client.connect(f"/proc/self/fd/{pinned}"), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise KvmTimeout(f"cannot connect to QMP socket {socket_path}: timed out after {timeout:g}s "
                         "(another client may hold it)") from None
    except (ConnectError, OSError) as err:
        with contextlib.suppress(Exception):
            await client.disconnect()
        reason = getattr(err, "exc", None) or err
        raise KvmError(f"cannot connect to QMP socket {socket_path}: {getattr(reason, 'strerror', None) or reason}") from None
    finally:
        os.close(pinned)
    return Monitor(client, socket_path)


@contextlib.asynccontextmanager
async def connect(socket_path: str, timeout: float = CONNECT_TIMEOUT) -> AsyncIterator[Monitor]:
    """``open_monitor`` as a context: closed on the way out."""
    mon = await open_monitor(socket_path, timeout)
    try:
        yield mon
    finally:
        await mon.close()
