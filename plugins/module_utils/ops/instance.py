# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_instance``: make an instance running, stopped, absent or a migration target.

A stopped instance keeps its runtime file marked ``stopped``; starting it
again reuses every recorded hvinfo, so all devices keep their addresses. A
runtime file without a mark and without a live QEMU means QEMU died behind
our back: ``running`` restarts it from the file and reports ``recovered``.
A runtime file marked ``incoming`` belongs to a migration target: once QEMU
there runs the migrated guest the mark is dropped; if that QEMU is gone the
migration failed and the instance lives on the source, so nothing here
ever boots a second copy of it.

With ``copy_storage`` the target creates the copied disks itself and
records them (``created_images``) while it is marked incoming: ``absent``
then removes exactly those images, unless the guest already runs here (the
images hold its disks). ``absent`` with ``only_if_incoming`` is the rollback
of a failed migration: it removes the instance only while it is such a
target (marked incoming, QEMU gone or still waiting) and leaves anything
else alone. Running ``incoming`` again after the migration arrived confirms
it: the mark goes, the NBD server closes, the images become the instance's.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices, hvinfo, hvparams, uri
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import storage as copy_plan
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import adopt, converge, hotplug, lifecycle, storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.lifecycle import INCOMING, STOPPED, base
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import host, process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths, RunDir, open_rundir, paths
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

MIN_MEMORY = 128  # a current distribution kernel does not boot in less (the test guest needs 88 MiB)


def requested_spec(params: dict[str, Any]) -> dict[str, Any]:
    """Validate the module parameters into an instance spec (pure)."""
    name = params["name"]
    uuid = devices.instance_uuid(name, hvinfo.check_uuid(params["uuid"], "instance uuid") if params.get("uuid") else None)
    for key, low in (("memory", MIN_MEMORY), ("vcpus", 1)):
        if params[key] < low:
            raise KvmError(f"{key} must be at least {low}")
    hvp = hvparams.normalize(params.get("hvparams") or {})
    disks = [devices.disk_record(d, uuid) for d in params.get("disks") or []]
    nics = [devices.nic_record(n, uuid, i) for i, n in enumerate(params.get("nics") or [])]
    for kind, items, key in (("disk", disks, "uuid"), ("disk", disks, "path"), ("disk", disks, "uri"), ("nic", nics, "uuid"),
                             ("nic", nics, "mac")):
        values = [item[key] for item in items if item.get(key) is not None]
        dup = {v for v in values if values.count(v) > 1}
        if dup:
            raise KvmError(f"two {kind}s have the same {key}: {', '.join(sorted(dup))}")
    return {"name": name, "uuid": uuid, "memory": params["memory"], "vcpus": params["vcpus"],
            "hvparams": hvp, "disks": disks, "nics": nics}


DISK_KEYS = ("uuid", "path", "uri", "format", "mode", "type")
NIC_KEYS = ("uuid", "mac", "network")


def _dev_key(dev: Any, kind: str, hvp: dict[str, Any]) -> tuple[Any, ...]:
    """A device's identity and properties, hashable; a network by its sorted JSON, so key order
    (the runtime file is written sorted) never makes two equal networks differ."""
    if kind == "disks":
        return (*(dev.get(k) for k in DISK_KEYS[:-1]), allocator.disk_type(dev, hvp))
    return (dev["uuid"], dev["mac"], json.dumps(dev.get("network"), sort_keys=True))


def summary(spec: Any) -> dict[str, Any]:
    """The comparable part of a spec or runtime (for diff and idempotence)."""
    return {
        "memory": spec.get("memory"),
        "vcpus": spec.get("vcpus"),
        "hvparams": spec["hvparams"],
        "disks": [{**{k: d.get(k) for k in DISK_KEYS}, "type": allocator.disk_type(d, spec["hvparams"])} for d in spec["disks"]],
        "nics": [{k: n.get(k) for k in NIC_KEYS} for n in spec["nics"]],
    }


def differences(rt: Any, spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(pending spec changes, device list changes) between a runtime and a request."""
    pending = [f"{key}: {rt.get(key)!r} -> {spec[key]!r}" for key in ("memory", "vcpus") if rt.get(key) != spec[key]]
    pending += [f"hvparams.{key}: {rt['hvparams'].get(key)!r} -> {value!r}"
                for key, value in spec["hvparams"].items() if rt["hvparams"].get(key) != value]
    device_changes = []
    for kind, module in (("disks", "kvm_disk_hotplug"), ("nics", "kvm_nic_hotplug")):
        have = {_dev_key(d, kind, rt["hvparams"]) for d in rt[kind]}
        want = {_dev_key(d, kind, spec["hvparams"]) for d in spec[kind]}
        if have != want:
            device_changes.append(f"{kind} differ from the running instance ({len(want - have)} to add, "
                                  f"{len(have - want)} to remove): use kvmhv.qemu.{module} on a running instance")
    return pending, device_changes


def kept_controllers(old: Runtime, hvp: dict[str, Any]) -> list[Any]:
    """The recorded controllers a new start keeps: all of them on the same machine family,
    SCSI controllers only while they are of the instance's controller type."""
    if hvparams.is_q35(old["hvparams"]) != hvparams.is_q35(hvp):
        return []
    driver = hvparams.scsi_controller(hvp)[0]
    return [dict(c) for c in old.get("controllers", []) if c["kind"] != "scsi" or c["hvinfo"]["driver"] == driver]


def merge_devices(old: list[Any], new: list[dict[str, Any]], hvp: dict[str, Any], kind: str, buses: set[str]) -> list[dict[str, Any]]:
    """New device records that keep the recorded hvinfo of devices already known.

    A recorded hvinfo is kept when the same uuid is asked for again with the
    same driver, its bus still exists (``buses``) and a root-bus slot still
    lies in the window; everything else is placed afresh by the allocator.
    """
    recorded = {d["uuid"]: d for d in old}
    window_start = hvp["kvm_pci_reservations"]
    merged = []
    for dev in new:
        prev = recorded.get(dev["uuid"])
        info = prev.get("hvinfo") if prev else None
        if kind == "disks":
            driver = hvparams.disk_driver(hvp, allocator.disk_type(dev, hvp))
        else:
            driver = hvparams.nic_driver(hvp)
        fits = info is not None and info["driver"] == driver and info["bus"] in buses and not (
            info["bus"] == hvparams.root_bus(hvp) and (hvinfo.pci_slot(info) or 0) < window_start)
        merged.append({**dev, "hvinfo": info} if fits else dev)
    return merged


def plan_runtime(spec: dict[str, Any], binary: str, old: Runtime | None = None, warn: Any = None) -> Runtime:
    """The runtime a start of ``spec`` would write (reusing ``old``'s controllers and addresses)."""
    disks = [dict(d) for d in spec["disks"]]
    nics = [dict(n) for n in spec["nics"]]
    controllers: list[Any] = []
    if old:
        controllers = kept_controllers(old, spec["hvparams"])
        buses = {hvparams.root_bus(spec["hvparams"])} | {b for b, _u in hvparams.IDE_SLOTS}
        buses |= {c["hvinfo"]["id"] if c["kind"] != "scsi" else allocator.scsi_bus_of(c["hvinfo"]["id"]) for c in controllers}
        disks = merge_devices(old["disks"], disks, spec["hvparams"], "disks", buses)
        nics = merge_devices(old["nics"], nics, spec["hvparams"], "nics", buses)
    return construct.new_runtime(spec["name"], spec["uuid"], spec["memory"], spec["vcpus"], spec["hvparams"], binary,
                                 disks, nics, controllers, warn)


class InstanceOp:
    """One kvm_instance call: each state honours check mode before it acts."""

    def __init__(self, call: Call, rd: RunDir, where: Paths) -> None:
        self.call = call
        self.params = call.params
        self.check = call.check
        self.rd = rd
        self.where = where

    def _load(self) -> Runtime | None:
        found = runtime_file.load(self.rd, self.where.name)
        return found[0] if found else None

    def _save(self, rt: Runtime) -> None:
        if not self.check:
            runtime_file.save(self.rd, self.where.name, rt)

    def _result(self, changed: bool, rt: Runtime | None, before: Any = None, after: Any = None, **extra: Any) -> dict[str, Any]:
        state, pid = lifecycle.status(self.rd, self.where)
        if rt is not None and rt.get("mark") == INCOMING and pid is None:
            state = "incoming-failed"
        result: dict[str, Any] = {"changed": changed, "pending": [], "recovered": False, **extra}
        if rt is not None:
            result["instance"] = lifecycle.public(rt, self.where, state, pid)
        else:
            uuid = devices.instance_uuid(self.where.name, self.params.get("uuid"))
            result["instance"] = {"name": self.where.name, "uuid": uuid, "status": state, "pid": pid,
                                  "qmp_socket": self.where.qmp, "runtime_file": self.where.runtime,
                                  "serial_log": self.where.serial, "disks": [], "nics": [], "cmdline": []}
        if self.call.diff and changed:
            result["diff"] = {"before": before or {}, "after": after or {}}
        return result

    def _not_a_former_copy(self, pid: int | None) -> None:
        """A QEMU left ``postmigrate`` by a migration that completed is no guest: it must never be run or stopped into a
        second copy (a kvm_migrate killed before it removed the source leaves one)."""
        if pid and lifecycle.status(self.rd, self.where)[0] == "postmigrate":
            raise KvmError(f"instance {self.where.name} here is the former copy of a migration that completed (QEMU is "
                           "postmigrate): the guest runs on the target; remove it here with state=absent")

    def running(self) -> dict[str, Any]:
        spec = requested_spec(self.params)
        old = self._load()
        pid = process.running_pid(self.rd, self.where)
        self._not_a_former_copy(pid)
        if pid and old is None:
            raise KvmError(f"a QEMU (pid {pid}) runs for {self.where.name} without a runtime file; stop it first with state=stopped")
        if old is not None:
            old = lifecycle.settle_incoming(self.rd, self.where, old, pid, write=not self.check)
        if pid and old is not None:
            return self.converge(old, spec)
        recovered = old is not None and old.get("mark") != STOPPED
        if old is not None and recovered:
            # QEMU died behind our back: bring back exactly what ran (hotplugs included).
            planned = old
            pending, device_changes = differences(old, spec)
            for note in pending + device_changes:
                self.call.warn(f"recovering from the runtime file; not applied: {note}")
        else:
            planned = plan_runtime(spec, self.params["qemu_binary"], old, self.call.warn)
        user = process.resolve_user(self.params["qemu_user"])
        for disk in planned["disks"]:
            host.check_disk(dict(disk), planned["hvparams"])
        before = summary(old) if old else {}
        after = summary(planned)
        if self.check:
            result = self._result(True, planned, before, after, recovered=recovered)
            result["instance"]["status"] = "running"
            return result
        lifecycle.start(self.rd, self.where, planned, user, self.params["qemu_binary"])
        if recovered:
            self.call.warn(f"instance {self.where.name} had died; started it again from its runtime file")
        return self._result(True, planned, before, after, recovered=recovered)

    def converge(self, old: Runtime, spec: dict[str, Any]) -> dict[str, Any]:
        """A running instance: make its disks and NICs match the lists, live; the rest waits for a start."""
        pending = differences(old, spec)[0]
        for note in pending:
            self.call.warn(f"{note} is pending: it takes effect at the next start")
        the_plan = converge.plan(old, spec, bool(self.params.get("purge")))
        if the_plan.kept:
            self.call.warn(f"devices not in the lists were kept (purge: false): {', '.join(the_plan.kept)}")
        if the_plan.empty:
            return self._result(False, old, pending=pending, devices=the_plan.report())
        planned = converge.after(old, the_plan)
        before, after = hotplug.layout(old), hotplug.layout(planned)
        if self.check:
            return self._result(True, planned, before, after, pending=pending, devices=the_plan.report())
        timeout = float(self.params.get("unplug_timeout") or 30)

        async def go() -> Runtime:
            async with qmp.connect(self.where.qmp) as mon:
                await hotplug.settle_journal(mon, self.rd, self.where, old, self.call, timeout)
                return await converge.converge(mon, self.rd, self.where, old, spec, bool(self.params.get("purge")),
                                               self.call, timeout)

        done = qmp.run(go())
        return self._result(True, done, before, hotplug.layout(done), pending=pending, devices=the_plan.report())

    def stopped(self) -> dict[str, Any]:
        old = self._load()
        pid = process.running_pid(self.rd, self.where)
        self._not_a_former_copy(pid)
        if old is not None and old.get("mark") == INCOMING and pid is None:
            return self._result(False, old)  # a failed migration target: nothing runs, nothing to mark
        if not pid:
            if old is None or old.get("mark") == STOPPED:
                return self._result(False, old)
            old["mark"] = STOPPED  # QEMU died: it stays down until asked to run
            old.pop("adopted", None)  # a start runs this collection's own QEMU
            if not self.check:
                self._save(old)
                lifecycle.stop(self.rd, self.where, 0, graceful=False)  # plumbing, and a QEMU left without a pid file
            return self._result(True, old, {"status": "died"}, {"status": "stopped"})
        if not self.check:
            lifecycle.stop(self.rd, self.where, self.params["shutdown_timeout"])
            if old is not None:
                old.pop("mark", None)
                old["mark"] = STOPPED
                old.pop("adopted", None)  # the adopted QEMU is gone; a start runs this collection's own
                self._save(old)
        return self._result(True, old, {"status": "running"}, {"status": "stopped"})

    def absent(self) -> dict[str, Any]:
        old = None
        try:
            old = self._load()
        except KvmError:
            pass  # a damaged runtime file is removed all the same
        pid = process.running_pid(self.rd, self.where)
        marked = old is not None and old.get("mark") == INCOMING
        arrived = lifecycle.arrived(self.rd, self.where, old) if marked and old is not None else None
        exists = pid is not None or any(self.rd.exists(n) for n in self.where.all_names() if not n.endswith(".lock"))
        if self.params.get("only_if_incoming") and not (marked and arrived is False):
            if exists:
                why = ("it is not a migration target" if not marked else
                       "its migration arrived: the guest runs here" if arrived else "its QEMU does not answer")
                self.call.warn(f"only_if_incoming: instance {self.where.name} left alone here ({why})")
            return self._result(False, old, removed_images=[])
        created = (old or {}).get("created_images") or [] if marked else []
        if created and arrived is not False:
            self.call.warn(f"instance {self.where.name}: kept the images this migration target created "
                           f"({', '.join(r['path'] for r in created)}): the guest ran here on them")
            created = []
        removed = storage.still_ours(created) if self.check else []
        if not self.check:
            lifecycle.stop(self.rd, self.where, 0, graceful=False)
            removed = storage.remove_created(created)  # before the runtime file: a retry still knows them
            lifecycle.remove_all(self.rd, self.where)
        result = self._result(exists or bool(removed), None, {"status": "present"}, {"status": "absent"}, removed_images=removed)
        if old is not None:
            result["instance"]["uuid"] = old.get("uuid") or result["instance"]["uuid"]
            if self.check:
                result["instance"] = lifecycle.public(old, self.where, "absent", None)
        return result

    def _same_tree(self, current: Runtime, source: Runtime) -> bool:
        return summary(current) == summary(source) and [d["hvinfo"] for d in current["disks"] + current["nics"]] == \
            [d["hvinfo"] for d in source["disks"] + source["nics"]]

    def _copy_plan(self, source: Runtime, target: uri.MigrationUri, room: bool) -> list[tuple[dict[str, Any], int]] | None:
        """What copy_storage creates here (None without copy_storage); checks the room if ``room``, creates nothing."""
        if not self.params.get("copy_storage"):
            return None
        if target.kind != "tcp":
            raise KvmError("copy_storage needs a tcp:HOST:PORT migration_uri: the disks are exported over NBD on that address")
        port = self.params.get("nbd_port")
        if not isinstance(port, int) or not 0 < port < 65536 or port == target.port:
            raise KvmError(f"nbd_port {port!r} must be a TCP port (1-65535) other than the migration port")
        plan = copy_plan.plan_images(source, self.params.get("disk_sizes"), self.params.get("shared_dirs"))
        if room:
            # Copies an interrupted target of this instance left without a record go (we hold its lock).
            left = storage.leftovers(plan, self.where.name)
            storage.check_room(plan, left)
            if not self.check:
                storage.sweep(left)
        return plan

    def incoming(self) -> dict[str, Any]:
        target = uri.parse(self.params["migration_uri"], "migration_uri")
        source = runtime_file.read_path(self.params["runtime"])[0]
        for key in ("mark", "pending", "created_images"):  # the source's own bookkeeping, not this target's
            source.pop(key, None)  # type: ignore[misc]
        state, pid = lifecycle.status(self.rd, self.where)
        current = self._load()
        if pid:
            if current is not None and current.get("mark") == INCOMING and self._same_tree(current, source):
                if state == "incoming":
                    return self._result(False, current)  # still waiting for the migration
                # The migration arrived: confirm it (drop the mark, close the NBD server).
                settled = lifecycle.settle_incoming(self.rd, self.where, current, pid, write=not self.check)
                return self._result(True, settled, {"status": "incoming"}, {"status": "running"}, confirmed=True)
            raise KvmError(f"instance {self.where.name} already runs here ({state}); remove it first with state=absent")
        if current is not None and current.get("mark") != INCOMING:
            raise KvmError(f"instance {self.where.name} already has a runtime file here ({self.where.runtime}); "
                           "remove it first with state=absent")
        # A failed earlier target of this instance: its partial copies go before new ones are made.
        stale = storage.still_ours(current.get("created_images") or []) if current is not None else []
        if stale and not self.check:
            storage.remove_created(current.get("created_images") or [])  # type: ignore[union-attr]
        user = process.resolve_user(self.params["qemu_user"])
        plan = self._copy_plan(source, target, room=not (stale and self.check))  # check mode: the stale copies are still there
        copied = {d["uuid"] for d, _size in plan or []}
        for disk in source["disks"]:
            if disk["uuid"] not in copied:
                host.check_disk(dict(disk), source["hvparams"])
        images = [{"path": d["path"], "format": d["format"], "size": size} for d, size in plan or []]
        if self.check:
            result = self._result(True, source, {}, summary(source), created_images=images)
            result["instance"]["status"] = "incoming"
            return result
        if target.kind == "unix" and target.path:
            lifecycle.check_unix_target(target.path)
        created = storage.create_images(plan, self.where.name) if plan is not None else []
        try:
            nbd = None
            if plan is not None:
                source["created_images"] = created
                nbd = (target.host or "", self.params["nbd_port"], [d for d, _size in plan])
            lifecycle.start(self.rd, self.where, source, user, self.params["qemu_binary"], incoming_uri=target.uri, nbd=nbd)
        except BaseException:
            storage.remove_created(created)
            raise
        return self._result(True, source, {}, summary(source), created_images=images)


def apply(call: Call) -> dict[str, Any]:
    """The whole kvm_instance call: validate, then act under the instance lock."""
    where = paths(call.params["runtime_dir"], call.params["name"])
    state = call.params["state"]
    if call.params.get("adopt"):
        return adopt.apply(call)
    if state == "running":
        requested_spec(call.params)  # bad input fails before anything is created or locked
    rd = open_rundir(where.runtime_dir, create=not call.check and state in ("running", "incoming"))
    with rd:
        def handle() -> dict[str, Any]:
            handler: Callable[[], dict[str, Any]] = getattr(InstanceOp(call, rd, lifecycle.locate(rd, where)), state)
            return handler()

        if call.check or rd.missing:
            return handle()
        with rd.lock(where.name, keep_if=base(where.runtime)):
            return handle()
