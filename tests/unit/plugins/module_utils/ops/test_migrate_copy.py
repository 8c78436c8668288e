"""The source's copy_storage sequence against a scripted QMP peer: what it does, the order QEMU needs, and the rollback after each failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import uri as uris
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import migrate, storage

from ....fakes.qemu import in_order, is_query

DISKS = [{"path": "/srv/a.img", "format": "raw", "mode": "rw", "hvinfo": {"id": "disk-aaaaaaaa"}},
         {"path": "/srv/b.img", "format": "raw", "mode": "rw", "hvinfo": {"id": "disk-bbbbbbbb"}}]
TARGET = uris.parse("tcp:10.76.0.12:49152", "target_uri")


def job_event(name: str, job: str, **data: Any) -> dict[str, Any]:
    return {"event": name, "data": {"device": job, **data}}


def migration(status: str) -> dict[str, Any]:
    return {"event": "MIGRATION", "data": {"status": status}}


class Peer:
    """A QMP peer: each command answers from ``answers`` and queues the events ``emits`` says it causes."""

    def __init__(self, answers: dict[str, Any] | None = None, emits: dict[str, Any] | None = None) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.answers = {"query-status": {"running": True, "status": "running"}, "query-migrate": {"status": "none"},
                        "query-block-jobs": [], **(answers or {})}
        self.emits = emits or {}
        self.events: deque[dict[str, Any]] = deque()

    def _do(self, command: str, args: Any) -> Any:
        self.sent.append((command, args))
        started = {c for c, _a in self.sent}
        if command == "query-migrate" and "migrate" not in started:
            return {}  # as QEMU answers before any migration (what a run asks first, for a killed run's leftovers)
        if command in ("query-block-jobs", "query-named-block-nodes") and "blockdev-mirror" not in started:
            return []
        emit = self.emits.get(command)
        if callable(emit):
            emit = emit(args)
        self.events.extend(emit or [])
        answer = self.answers.get(command, {})
        answer = answer(args) if callable(answer) else answer
        if isinstance(answer, KvmError):
            raise answer
        return answer

    async def cmd(self, command: str, args: Any = None, step: str | None = None, timeout: float = 0) -> Any:
        return self._do(command, args)

    async def try_cmd(self, command: str, args: Any = None) -> Any:
        try:
            return self._do(command, args)
        except KvmError:
            return None

    @contextlib.contextmanager
    def events_cm(self, names: Any) -> Any:
        yield self

    async def wait_for(self, listener: Any, match: Any, timeout: float, what: str) -> dict[str, Any]:
        while self.events:
            event = self.events.popleft()
            if match(event):
                return event
        raise KvmTimeout(f"no {what} within {timeout:g}s")

    def commands(self) -> list[str]:
        return [f"{cmd} {args.get('device') or args.get('node-name') or args.get('state') or ''}".strip()
                if isinstance(args, dict) and cmd != "migrate-set-capabilities" else cmd for cmd, args in self.sent]

    def changes(self) -> list[str]:
        """``commands()`` without the queries: what the run did to QEMU."""
        return [command for command in self.commands() if not is_query(command.split()[0])]

    def args_of(self, command: str) -> list[Any]:
        return [args for cmd, args in self.sent if cmd == command]


@pytest.fixture
def go(monkeypatch):
    def _go(peer: Peer) -> dict[str, Any]:
        nbd = storage.NbdExport(TARGET.host or "", 49153, DISKS)
        return asyncio.run(migrate._migrate_copy(Monitorish(peer), TARGET.uri, nbd, 60, 0))  # type: ignore[arg-type]
    return _go


class Monitorish:
    """The Monitor interface the migration uses, forwarding to a Peer."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.cmd = peer.cmd
        self.try_cmd = peer.try_cmd
        self.wait_for = peer.wait_for

    @contextlib.contextmanager
    def events(self, names: Any) -> Any:
        yield None


def ready_on_mirror(args: dict[str, Any]) -> list[dict[str, Any]]:
    return [job_event("BLOCK_JOB_READY", args["job-id"])]


def completed_on_cancel(args: dict[str, Any]) -> list[dict[str, Any]]:
    return [job_event("BLOCK_JOB_COMPLETED", args["device"])]


HAPPY = {"blockdev-mirror": ready_on_mirror, "migrate": [migration("setup"), migration("active"), migration("pre-switchover")],
         "block-job-cancel": completed_on_cancel, "migrate-continue": [migration("device"), migration("completed")]}


def test_the_whole_sequence_in_order(go):
    peer = Peer({"query-migrate": {"status": "completed", "downtime": 120, "total-time": 900, "ram": {}}}, HAPPY)
    result = go(peer)
    changes = peer.changes()
    assert sorted(changes) == sorted([  # each once, nothing else: every node added is deleted again, every mirror ends
        "migrate-set-capabilities", "blockdev-add kvmhv-nbd0", "blockdev-mirror disk-aaaaaaaa", "blockdev-add kvmhv-nbd1",
        "blockdev-mirror disk-bbbbbbbb", "migrate", "block-job-cancel kvmhv-mirror0", "block-job-cancel kvmhv-mirror1",
        "blockdev-del kvmhv-nbd0", "blockdev-del kvmhv-nbd1", "migrate-continue pre-switchover", "quit"])
    assert in_order(changes, "migrate-set-capabilities", "migrate")  # the pause before switchover is on before RAM moves
    for n, disk in enumerate(("disk-aaaaaaaa", "disk-bbbbbbbb")):
        # the target's disk, then the mirror into it, before RAM moves; the final sync (cancelling the ready mirror) in the
        # pause before switchover, then the switchover and the end of the source; a node goes only once its job has ended
        assert in_order(changes, f"blockdev-add kvmhv-nbd{n}", f"blockdev-mirror {disk}", "migrate", f"block-job-cancel kvmhv-mirror{n}",
                        "migrate-continue pre-switchover", "quit")
        assert in_order(changes, f"block-job-cancel kvmhv-mirror{n}", f"blockdev-del kvmhv-nbd{n}")
    caps = {c["capability"]: c["state"] for c in peer.args_of("migrate-set-capabilities")[0]["capabilities"]}
    assert caps == {"events": True, "return-path": True, "pause-before-switchover": True}
    assert result["downtime_ms"] == 120 and result["storage"]["disks"] == ["disk-aaaaaaaa", "disk-bbbbbbbb"]
    assert [args["server"] for args in peer.args_of("blockdev-add")] == [{"type": "inet", "host": "10.76.0.12", "port": "49153"}] * 2


def test_a_mirror_failing_before_ready_rolls_back_without_touching_the_guest(go):
    failing = {**HAPPY, "blockdev-mirror": lambda args: [job_event("BLOCK_JOB_ERROR", args["job-id"], operation="write"),
                                                         job_event("BLOCK_JOB_COMPLETED", args["job-id"], error="No space left on device")]}
    peer = Peer(emits=failing)
    with pytest.raises(KvmError) as err:
        go(peer)
    assert str(err.value) == ("copy_storage: the copy of disk disk-aaaaaaaa (/srv/a.img) to 10.76.0.12:49153 failed while copying: "
                              "No space left on device; rolled back, the source keeps running on its own disks")
    changes = peer.changes()
    assert {"blockdev-del kvmhv-nbd0", "blockdev-del kvmhv-nbd1"} <= set(changes)  # the target's disks are let go
    assert "migrate" not in changes and "cont" not in changes and "quit" not in changes  # the guest was never paused nor moved


def test_a_failed_final_sync_cancels_the_migration_then_the_jobs_then_continues_the_guest(go):
    def sync_fails(args):
        return [job_event("BLOCK_JOB_COMPLETED", args["device"], error="Input/output error")]

    state = {"migration": "pre-switchover", "status_calls": 0}

    def query_migrate(_args):
        return {"status": state["migration"]}

    def cancelled(_args):
        state["migration"] = "cancelled"
        return [migration("cancelling"), migration("cancelled")]

    def query_status(_args):
        state["status_calls"] += 1  # running at the start; paused (pre-switchover) when the rollback looks
        return {"running": state["status_calls"] == 1, "status": "running" if state["status_calls"] == 1 else "paused"}

    peer = Peer({"query-migrate": query_migrate, "query-status": query_status},
                {**HAPPY, "block-job-cancel": sync_fails, "migrate_cancel": cancelled})
    with pytest.raises(KvmError, match=r"failed in the final sync: Input/output error; rolled back, the source keeps running"):
        go(peer)
    changes = peer.changes()
    # the migration is cancelled first, the target's disks are let go, and only then does the paused guest run on, here
    assert all(in_order(changes, "migrate_cancel", f"blockdev-del kvmhv-nbd{n}", "cont") for n in (0, 1))
    assert changes.count("cont") == 1 and "quit" not in changes


def test_mirrors_never_in_step_time_out_and_roll_back(go):
    peer = Peer(emits={**HAPPY, "blockdev-mirror": []},
                answers={"query-block-jobs": [{"device": "kvmhv-mirror0"}, {"device": "kvmhv-mirror1"}]})
    peer.emits["block-job-cancel"] = lambda args: [job_event("BLOCK_JOB_CANCELLED", args["device"])]
    with pytest.raises(KvmError, match=r"disk disk-aaaaaaaa \(/srv/a.img\), disk disk-bbbbbbbb \(/srv/b.img\) to 10.76.0.12 was not in step within 60s"):
        go(peer)
    forced = [args for cmd, args in peer.sent if cmd == "block-job-cancel"]
    assert sorted(forced, key=lambda args: args["device"]) == [{"device": "kvmhv-mirror0", "force": True}, {"device": "kvmhv-mirror1", "force": True}]
    assert "migrate" not in peer.commands()


def settle(peer: Peer) -> bool:
    return asyncio.run(migrate.settle_earlier_run(Monitorish(peer), None))  # type: ignore[arg-type]


def test_a_killed_run_paused_at_pre_switchover_is_rolled_back_by_the_next():
    leftovers = {"query-migrate": {"status": "pre-switchover"}, "query-block-jobs": [{"device": "kvmhv-mirror0"}],
                 "query-named-block-nodes": [{"node-name": "kvmhv-nbd0"}, {"node-name": "disk-aaaaaaaa"}],
                 "query-status": {"running": False, "status": "paused"}}
    peer = Peer(leftovers, {"migrate_cancel": [migration("cancelled")],
                            "block-job-cancel": lambda args: [job_event("BLOCK_JOB_CANCELLED", args["device"])]})
    peer.sent += [("migrate", None), ("blockdev-mirror", None)]  # a killed run's, so QEMU answers with them under way
    assert settle(peer) is True
    changes = peer.changes()[2:]  # after the killed run's own
    # what was left goes (the disk's own node stays), and the guest runs on once the migration is off
    assert sorted(changes) == ["block-job-cancel kvmhv-mirror0", "blockdev-del kvmhv-nbd0", "cont", "migrate_cancel"]
    assert in_order(changes, "block-job-cancel kvmhv-mirror0", "blockdev-del kvmhv-nbd0") and in_order(changes, "migrate_cancel", "cont")


def test_nothing_left_means_nothing_done_and_a_completed_one_is_never_undone():
    peer = Peer()
    assert settle(peer) is False and peer.changes() == []
    done = Peer({"query-migrate": {"status": "completed"}, "query-status": {"running": False, "status": "postmigrate"}})
    done.sent.append(("migrate", None))
    with pytest.raises(KvmError, match="an earlier migration of this instance completed"):
        settle(done)
    assert "migrate_cancel" not in done.commands() and "cont" not in done.commands()
    arrived = Peer({"query-migrate": {"status": "completed"}})  # this QEMU was a target: its incoming migration completed
    arrived.sent.append(("migrate", None))
    assert settle(arrived) is False and "migrate_cancel" not in arrived.commands()
