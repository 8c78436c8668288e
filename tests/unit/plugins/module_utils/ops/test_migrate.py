"""kvm_migrate: the reported figures, and the migration conversation against the fake QEMU (done, failed, too slow, source gone)."""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import migrate
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.start import MIGRATION_CAPS
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp

from ....fakes.qemu import FakeQemu, connect_to, in_order


def test_stats_pick_the_figures_worth_reporting():
    final = {"status": "completed", "total-time": 1520, "downtime": 41, "setup-time": 3, "expected-downtime": 300,
             "ram": {"transferred": 123456789, "dirty-sync-count": 4, "total": 1 << 30}}
    assert migrate.stats(final) == {"status": "completed", "total_time_ms": 1520, "downtime_ms": 41, "setup_time_ms": 3,
                                    "transferred_bytes": 123456789, "dirty_sync_count": 4}
    assert migrate.stats({"status": "failed"}) == {"status": "failed", "total_time_ms": None, "downtime_ms": None, "setup_time_ms": None,
                                                   "transferred_bytes": None, "dirty_sync_count": None}


@pytest.fixture
def fake(monkeypatch) -> Iterator[FakeQemu]:
    qemu = FakeQemu()
    monkeypatch.setattr(qmp, "open_monitor", connect_to(qemu))
    yield qemu
    qemu.close()


# set off explicitly, so a pause left by an earlier copy_storage run never lingers
NO_PAUSE = {"capability": "pause-before-switchover", "state": False}


def run(uri: str = "tcp:10.0.0.2:4444", timeout: float = 5, bandwidth: int = 0) -> dict:
    async def go() -> dict:
        return await migrate._migrate(await qmp.open_monitor("/run/kvmhv/vm1.qmp"), uri, timeout, bandwidth)

    return asyncio.run(go())


def test_a_completed_migration_quits_the_source(fake):
    assert run(bandwidth=100) == migrate.stats(fake.migrate_info)
    caps = {c["capability"]: c["state"] for c in [*MIGRATION_CAPS, NO_PAUSE]}
    # the capabilities and the bandwidth cap were in effect when the migration started; the source quit once it completed
    assert fake.migrated_with == {"uri": "tcp:10.0.0.2:4444", "capabilities": caps, "parameters": {"max-bandwidth": 100 << 20}}
    assert fake.has_quit and in_order(fake.changes(), "migrate", "quit")


def test_without_a_bandwidth_cap_no_parameter_is_set(fake):
    run()
    assert fake.migrated_with is not None and fake.migrated_with["parameters"] == {}


def test_a_failed_migration_keeps_the_source(fake):
    fake.migration = ["setup", "failed"]
    fake.migrate_info = {"status": "failed", "error-desc": "Unable to write to socket: Broken pipe"}
    with pytest.raises(KvmError) as err:
        run()
    assert str(err.value) == ("migrate: migration to tcp:10.0.0.2:4444 failed: Unable to write to socket: Broken pipe; "
                              "the source keeps running")
    assert not fake.has_quit


def test_a_migration_that_does_not_finish_is_cancelled(fake):
    fake.migration = ["setup", "active"]
    fake.migrate_info = {"status": "active"}
    with pytest.raises(KvmError) as err:
        run(timeout=0.1)
    assert str(err.value) == ("migrate: migration to tcp:10.0.0.2:4444 did not complete within 0.1s (status cancelled); "
                              "cancelled, the source keeps running")
    assert fake.migrate_info["status"] == "cancelled" and not fake.has_quit


def test_a_source_that_exits_mid_migration_is_reported(fake):
    fake.migration = ["setup"]
    original = fake.do_migrate

    async def migrate_then_die(args: dict) -> dict:
        answer = await original(args)
        fake.hang_up()
        return answer

    fake.do_migrate = migrate_then_die  # type: ignore[method-assign]
    with pytest.raises(KvmError) as err:
        run(uri="unix:/run/kvmhv/in.sock")
    assert str(err.value) == ("migrate: the source QEMU exited during the migration to unix:/run/kvmhv/in.sock; "
                              "run kvm_instance_info on both hosts to see where the instance is")


def test_apply_refuses_a_bad_target_and_an_instance_that_does_not_run(tmp_path):
    call = Call({"target_uri": "ssh://x", "runtime_dir": str(tmp_path), "name": "vm1", "timeout": 5, "max_bandwidth": 0})
    with pytest.raises(KvmError, match="target_uri 'ssh://x' must be tcp:HOST:PORT"):
        asyncio.run(migrate.apply(call))
    for check, message in ((False, "instance vm1 is not running in"), (True, r"instance vm1 is not running \(or does not answer QMP\) in")):
        call = Call({"target_uri": "tcp:h:1", "runtime_dir": str(tmp_path / "none"), "name": "vm1", "timeout": 5, "max_bandwidth": 0},
                    check=check)
        with pytest.raises(KvmError, match=message):
            asyncio.run(migrate.apply(call))


def test_check_mode_asks_qemu_whether_the_source_runs(tmp_path, fake, monkeypatch):
    (tmp_path / "rt").mkdir(mode=0o700)
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)
    call = Call({"target_uri": "tcp:h:1", "runtime_dir": str(tmp_path / "rt"), "name": "vm1", "timeout": 5, "max_bandwidth": 0},
                check=True)
    assert asyncio.run(migrate.apply(call)) == {"changed": True, "target_uri": "tcp:h:1"}
    assert "query-status" in fake.commands() and fake.changes() == []  # asked; nothing migrates in check mode
    fake.hang_up()
    with pytest.raises(KvmError, match=r"not running \(or does not answer QMP\)"):
        asyncio.run(migrate.apply(call))
