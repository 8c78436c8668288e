"""Stopping: the plumbing and every file of an instance, and a stop with nothing running."""

from __future__ import annotations

import asyncio


from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import stop
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import paths

from ....builders import session_on


def test_remove_plumbing_and_everything(rd):
    where = paths(rd.path, "vm1")
    for name in [*where.all_names(), ".vm1.runtime.json.tmp.x", "vm2.pid"]:
        rd.write_atomic(name, "x")
    session = session_on(rd)
    stop.remove_plumbing(session)
    assert not any(rd.exists(n) for n in ("vm1.qmp", "vm1.ro.qmp", "vm1.pid")) and rd.exists("vm1.runtime.json")
    stop.remove_all(session)
    assert rd.listdir() == ["vm1.lock", "vm2.pid"]
    assert asyncio.run(stop.stop(session, 0)) is False  # nothing runs: only the plumbing is cleared
