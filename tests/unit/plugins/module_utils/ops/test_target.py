"""A migration target's mark: dropped only when QEMU says the guest arrived."""

from __future__ import annotations

import asyncio

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import target
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file

from ....builders import runtime, session_on
from ....fakes.qemu import FakeQemu, connect_to


def test_settle_incoming(rd, monkeypatch):
    plain = runtime([], [])
    assert asyncio.run(target.settle_incoming(session_on(rd), plain, None)) is plain and rd.listdir() == []
    marked = {**runtime([], []), "mark": "incoming"}
    with pytest.raises(KvmError, match=r"migration target whose migration never completed \(the instance lives on the source\)"):
        asyncio.run(target.settle_incoming(session_on(rd), dict(marked), None))
    fake = FakeQemu()
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)
    monkeypatch.setattr(qmp, "open_monitor", connect_to(fake))
    fake.status = "inmigrate"
    with pytest.raises(KvmError, match="still waiting for its migration"):
        asyncio.run(target.settle_incoming(session_on(rd), dict(marked), 4242))
    fake.status = "running"
    settled = asyncio.run(target.settle_incoming(session_on(rd, check=True), dict(marked), 4242))
    assert "mark" not in settled and rd.listdir() == []
    asyncio.run(target.settle_incoming(session_on(rd), dict(marked), 4242))
    assert "mark" not in runtime_file.load(rd, "vm1")[0]

    async def statuses() -> list[tuple[str, int | None]]:
        session = session_on(rd)
        seen = [await session.status()]
        fake.status = "inmigrate"
        seen.append(await session.status())
        fake.hang_up()
        seen.append(await session.status())
        return seen

    fake.status = "running"
    assert asyncio.run(statuses()) == [("running", 4242), ("incoming", 4242), ("unknown", 4242)]


def test_a_target_whose_qemu_does_not_answer_or_just_went_keeps_its_mark(rd, monkeypatch):
    """Only a QEMU that says it left inmigrate proves the guest arrived. A target QEMU ends when its incoming
    migration fails: while it goes, QMP no longer answers (unknown), then the process is gone. Dropping the mark
    then would make the next state=running "recover" a second copy of a guest that still runs on the source."""
    marked = {**runtime([], []), "mark": "incoming"}
    runtime_file.save(rd, "vm1", marked)
    fake = FakeQemu()
    monkeypatch.setattr(qmp, "open_monitor", connect_to(fake))
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)
    fake.hang_up()  # QEMU is going: QMP does not answer
    with pytest.raises(KvmError, match="does not answer QMP"):
        asyncio.run(target.settle_incoming(session_on(rd), dict(marked), 4242))
    assert runtime_file.load(rd, "vm1")[0].get("mark") == "incoming"
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: None)  # and now it is gone
    with pytest.raises(KvmError, match="migration never completed"):
        asyncio.run(target.settle_incoming(session_on(rd), dict(marked), 4242))
    assert runtime_file.load(rd, "vm1")[0].get("mark") == "incoming"
