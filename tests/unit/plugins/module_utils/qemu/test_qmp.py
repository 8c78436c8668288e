"""Monitor.wait_for (the matching event, the deadline, a connection that drops mid-wait) and Monitor.batch.

The QMP client is faked (pure logic: which of the three endings wins); the
real QEMU side is in tests/integration/test_hotplug_faults.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from qemu.qmp import ExecuteError, Message, Runstate
from qemu.qmp.models import ErrorResponse

from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError


class FakeClient:
    def __init__(self) -> None:
        self.runstate = Runstate.RUNNING
        self._changed = asyncio.Event()

    async def runstate_changed(self) -> Runstate:
        await self._changed.wait()
        return self.runstate

    def hang_up(self) -> None:
        self.runstate = Runstate.DISCONNECTING
        self._changed.set()


class FakeListener:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()


def deleted(dev: str) -> dict[str, Any]:
    return {"event": "DEVICE_DELETED", "data": {"device": dev}}


def wait(mon: qmp.Monitor, listener: FakeListener, timeout: float = 5) -> Any:
    return mon.wait_for(listener, lambda ev: ev["data"]["device"] == "disk-1", timeout, "DEVICE_DELETED for disk-1")


def test_returns_the_first_matching_event() -> None:
    async def go() -> dict[str, Any]:
        mon, listener = qmp.Monitor(FakeClient()), FakeListener()
        listener.queue.put_nowait(deleted("disk-0"))
        listener.queue.put_nowait(deleted("disk-1"))
        return await wait(mon, listener)

    assert asyncio.run(go()) == deleted("disk-1")


def test_deadline_names_the_event() -> None:
    async def go() -> None:
        await wait(qmp.Monitor(FakeClient()), FakeListener(), timeout=0.05)

    with pytest.raises(KvmError, match=r"^no DEVICE_DELETED for disk-1 within 0.05s$"):
        asyncio.run(go())


def test_hang_up_ends_the_wait_at_once() -> None:
    async def go() -> float:
        client = FakeClient()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, client.hang_up)
        started = loop.time()
        with pytest.raises(qmp.QmpClosed, match="QEMU closed its QMP connection"):
            await wait(qmp.Monitor(client), FakeListener(), timeout=30)
        return loop.time() - started

    assert asyncio.run(go()) < 5


def test_an_event_that_came_with_the_hang_up_still_counts() -> None:
    async def go() -> dict[str, Any]:
        client, listener = FakeClient(), FakeListener()
        listener.queue.put_nowait(deleted("disk-1"))
        client.hang_up()
        return await wait(qmp.Monitor(client), listener)

    assert asyncio.run(go()) == deleted("disk-1")


class RefusingClient:
    """Answers ``query-*`` at once, refuses ``device_add``, never answers ``blockdev-add``."""

    async def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        if command.startswith("query-"):
            return [{"command": command}]
        if command == "device_add":
            sent = Message({"execute": command, "arguments": args or {}})
            reply = Message({"error": {"class": "GenericError", "desc": "Duplicate device ID 'd1'"}})
            raise ExecuteError(ErrorResponse(reply), sent, reply)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def test_each_command_gets_its_own_answer_in_order() -> None:
    async def go() -> list[Any]:
        mon = qmp.Monitor(RefusingClient())
        return await mon.batch([("blockdev-add", {"node-name": "d1"}), ("device_add", {"id": "d1"}), ("query-block", None)],
                               timeout=0.1)

    hung, refused, answered = asyncio.run(go())
    assert isinstance(hung, KvmError) and str(hung) == "blockdev-add: QEMU did not answer blockdev-add within 0.1s"
    assert isinstance(refused, KvmError) and refused.step == "device_add" and "Duplicate device ID 'd1'" in refused.msg
    assert answered == [{"command": "query-block"}]
