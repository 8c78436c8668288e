# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_migrate``: live migration of a running instance to a target started with ``state=incoming``.

The wait is event-driven (``MIGRATION`` events with a deadline). The source
is stopped, and its files removed, only after the migration completed: the
instance then lives on the target. On failure or timeout the migration is
cancelled and the source keeps running untouched. Both sides enable QEMU's
``return-path`` capability: without it the source reports ``completed`` as
soon as it has sent everything, even when the target then fails to load
the state (a different device layout), and stopping the source would lose
the VM.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout, QmpClosed
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import uri as uris
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import lifecycle
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.lifecycle import MIGRATION_CAPS
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths, RunDir, open_rundir, paths

DONE = ("completed", "failed", "cancelled")


def stats(info: dict[str, Any]) -> dict[str, Any]:
    """The figures worth reporting from a final ``query-migrate``."""
    ram = info.get("ram", {})
    return {
        "status": info.get("status"),
        "total_time_ms": info.get("total-time"),
        "downtime_ms": info.get("downtime"),
        "setup_time_ms": info.get("setup-time"),
        "transferred_bytes": ram.get("transferred"),
        "dirty_sync_count": ram.get("dirty-sync-count"),
    }


async def _migrate(sock: str, uri: str, timeout: float, max_bandwidth_mib: int) -> dict[str, Any]:
    async with qmp.connect(sock) as mon:
        await mon.cmd("migrate-set-capabilities", {"capabilities": MIGRATION_CAPS}, step="migrate setup")
        if max_bandwidth_mib:
            await mon.cmd("migrate-set-parameters", {"max-bandwidth": max_bandwidth_mib << 20}, step="migrate setup")
        with mon.events(("MIGRATION",)) as listener:
            await mon.cmd("migrate", {"uri": uri}, step="migrate")
            try:
                await mon.wait_for(listener, lambda ev: ev["data"].get("status") in DONE, timeout, "end of migration")
            except QmpClosed:
                raise KvmError(f"the source QEMU exited during the migration to {uri}; "
                               "run kvm_instance_info on both hosts to see where the instance is", "migrate") from None
            except KvmTimeout:
                await mon.try_cmd("migrate_cancel")
                info = await mon.try_cmd("query-migrate") or {}
                raise KvmError(f"migration to {uri} did not complete within {timeout:g}s "
                               f"(status {info.get('status', 'unknown')}); cancelled, the source keeps running",
                               "migrate") from None
        info = await mon.cmd("query-migrate")
        if info.get("status") != "completed":
            reason = info.get("error-desc") or info.get("status")
            raise KvmError(f"migration to {uri} failed: {reason}; the source keeps running", "migrate")
        await mon.try_cmd("quit")
        return stats(info)


def migrate(rd: RunDir, where: Paths, uri: str, timeout: float, max_bandwidth_mib: int) -> dict[str, Any]:
    """Migrate, then stop the source and remove its files; returns migration stats."""
    pid = process.running_pid(rd, where)
    found = runtime_file.load(rd, where.name)
    if not pid or found is None:
        raise KvmError(f"instance {where.name} is not running in {where.runtime_dir}")
    lifecycle.settle_incoming(rd, where, found[0], pid, write=True)
    result = qmp.run(_migrate(where.qmp, uri, timeout, max_bandwidth_mib))
    if not process.wait_exit(pid, 30):
        process.stop_hard(rd, where)
    lifecycle.remove_all(rd, where)
    return result


def apply(call: Call) -> dict[str, Any]:
    params = call.params
    target = uris.parse(params["target_uri"], "target_uri")
    where = paths(params["runtime_dir"], params["name"])
    rd = open_rundir(where.runtime_dir, create=False)
    with rd:
        if call.check:
            if lifecycle.status(rd, where)[0] in ("stopped", "absent", "unknown"):
                raise KvmError(f"instance {where.name} is not running (or does not answer QMP) in {where.runtime_dir}")
            return {"changed": True, "target_uri": target.uri}
        if rd.missing:
            raise KvmError(f"instance {where.name} is not running in {where.runtime_dir}")
        with rd.lock(where.name, keep_if=where.name + ".runtime.json"):
            result = migrate(rd, where, target.uri, params["timeout"], params["max_bandwidth"])
    return {"changed": True, "target_uri": target.uri, "migration": result}
