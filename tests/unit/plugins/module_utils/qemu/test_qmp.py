"""The Monitor over fake QMP clients: batches, refusals, timeouts, events, descriptors (the shared FakeQemu is tests/unit/fakes/qemu.py)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from qemu.qmp import ExecuteError, Message, Runstate
from qemu.qmp.models import ErrorResponse

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout, QmpClosed
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp


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
        await asyncio.Event().wait()  # never answers
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


# -- the Monitor's faces over the fake QEMU --------------------------------------------------


def test_refusals_keep_qemus_class_and_name_the_step(fake):
    async def go() -> list[KvmError]:
        mon = qmp.Monitor(fake)
        found = []
        for step in (None, "rollback"):
            try:
                await mon.cmd("device_del", {"id": "ghost"}, step=step)
            except KvmError as err:
                found.append(err)
        return found

    plain, named = asyncio.run(go())
    assert str(plain) == "device_del: QEMU refused device_del: Device 'ghost' not found"
    assert (plain.error_class, named.step, named.error_class) == ("DeviceNotFound", "rollback", "DeviceNotFound")


def test_a_silent_qemu_is_a_timeout_and_a_dropped_connection_is_qmp_closed(fake):
    fake.hang.add("query-block")
    fake.drop_on.add("quit")

    async def go() -> tuple[Any, Any, Any]:
        mon = qmp.Monitor(fake)
        with pytest.raises(KvmTimeout) as late:
            await mon.cmd("query-block", timeout=0.05, step="verify")
        with pytest.raises(QmpClosed) as gone:
            await mon.cmd("quit")
        after = await mon.batch([("query-status", None)])
        return late.value, gone.value, after

    late, gone, after = asyncio.run(go())
    assert str(late) == "verify: QEMU did not answer query-block within 0.05s"
    assert str(gone) == "quit: lost the QMP connection during quit: Disconnected"
    assert isinstance(after[0], QmpClosed)


def test_try_cmd_swallows_refusals_and_silence(fake, monkeypatch):
    fake.hang.add("query-status")
    monkeypatch.setattr(qmp, "COMMAND_TIMEOUT", 0.05)

    async def go() -> list[Any]:
        mon = qmp.Monitor(fake)
        return [await mon.try_cmd("remove-fd", {"fdset-id": 9}), await mon.try_cmd("query-status"), await mon.try_cmd("query-fdsets")]

    assert asyncio.run(go()) == [None, None, []]


def test_events_are_heard_only_inside_the_block(fake):
    async def go() -> tuple[Any, int]:
        mon = qmp.Monitor(fake)
        with mon.events(["DEVICE_DELETED"]) as listener:
            await fake.emit("MIGRATION", {"status": "active"})  # not listened for
            await fake.emit("DEVICE_DELETED", {"device": "d1"})
            event = await mon.wait_for(listener, lambda ev: True, 1, "DEVICE_DELETED")
        await fake.emit("DEVICE_DELETED", {"device": "d2"})
        return event, len(fake.listeners)

    event, listening = asyncio.run(go())
    assert (event["event"], event["data"]) == ("DEVICE_DELETED", {"device": "d1"}) and listening == 0


def test_send_fd_hands_qemu_its_own_copy(fake, tmp_path):
    image = tmp_path / "a.img"
    image.write_bytes(b"x")

    async def go() -> Any:
        mon = qmp.Monitor(fake)
        fd = os.open(image, os.O_RDONLY)
        try:
            mon.send_fd(fd)
        finally:
            os.close(fd)
        return await mon.cmd("add-fd", {"opaque": "disk-1"})

    answer = asyncio.run(go())
    held = fake.fdsets[answer["fdset-id"]][0]["fd"]
    assert os.path.samestat(os.fstat(held), os.stat(image)) and answer["fdset-id"] == 2


def test_an_empty_batch_has_no_answers(fake):
    assert asyncio.run(qmp.Monitor(fake).batch([])) == []
