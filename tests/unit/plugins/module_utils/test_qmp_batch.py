"""Monitor.batch: one answer per command, in order, even when QEMU refuses one or never answers.

The QMP client is faked (pure logic); the real bursts run in the hotplug
integration tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from qemu.qmp import ExecuteError, Message
from qemu.qmp.models import ErrorResponse

from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError


class FakeClient:
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
        mon = qmp.Monitor(FakeClient(), "sock")
        return await mon.batch([("blockdev-add", {"node-name": "d1"}), ("device_add", {"id": "d1"}), ("query-block", None)],
                               timeout=0.1)

    hung, refused, answered = asyncio.run(go())
    assert isinstance(hung, KvmError) and str(hung) == "blockdev-add: QEMU did not answer blockdev-add within 0.1s"
    assert isinstance(refused, KvmError) and refused.step == "device_add" and "Duplicate device ID 'd1'" in refused.msg
    assert answered == [{"command": "query-block"}]
