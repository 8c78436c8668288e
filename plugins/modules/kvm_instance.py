#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_instance
short_description: Run, stop or remove a QEMU/KVM instance with a deterministic device model
version_added: "0.1.0"
description:
  - Starts a QEMU instance whose disks and NICs sit at explicit, recorded addresses (a PCI slot
    from 0x10 up on C(pci.0), or a SCSI target on C(scsi.0)), stops it, removes it, or starts it as
    a live-migration target from another host's runtime file.
  - The runtime file (C(<runtime_dir>/<name>.runtime.json)) is written before QEMU starts and
    describes exactly what runs; stopping and starting again keeps every address.
  - On a running instance, changed memory, vcpus or hvparams are reported as pending until the next
    start, and a changed disk or NIC list points to M(kvmhv.qemu.kvm_disk_hotplug) and
    M(kvmhv.qemu.kvm_nic_hotplug); nothing is silently ignored.
author:
  - kvmhv.qemu contributors (@kvmhv)
options:
  name:
    description: Instance name (letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  state:
    description:
      - C(running) starts the instance (or restarts it from its runtime file if it is stopped or died).
      - C(stopped) asks the guest to power off (ACPI), waits up to O(shutdown_timeout), then quits QEMU;
        the runtime file stays.
      - C(absent) stops QEMU and removes the runtime file, socket, pid file and serial log.
      - C(incoming) starts the instance as a migration target from the runtime file O(runtime),
        listening on O(migration_uri).
    type: str
    choices: [running, stopped, absent, incoming]
    default: running
  uuid:
    description: Instance UUID; derived from the name when not given.
    type: str
  memory:
    description: Memory in MiB.
    type: int
    default: 256
  vcpus:
    description: Number of virtual CPUs.
    type: int
    default: 1
  disks:
    description: Disks in guest order; disk 0 gets the lowest address.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the image or block device.
        type: path
        required: true
      format:
        description: Image format.
        type: str
        choices: [raw, qcow2]
        default: raw
      mode:
        description: Read-write or read-only.
        type: str
        choices: [rw, ro]
        default: rw
      uuid:
        description: Disk UUID; derived from the instance UUID and the path when not given.
        type: str
  nics:
    description: NICs in guest order.
    type: list
    elements: dict
    default: []
    suboptions:
      mac:
        description: MAC address; derived from the NIC UUID when not given (stable across runs).
        type: str
      uuid:
        description: NIC UUID; derived from the MAC (or the NIC's index) when not given.
        type: str
      network:
        description:
          - Backend link, a dict with C(type). C(type=tap) with C(ifname) and optionally C(bridge) uses a
            tap device, C(type=user) QEMU's user networking; without it the NIC has no backend.
        type: dict
  hvparams:
    description:
      - Hypervisor parameters over the collection defaults, for example C(disk_type) (paravirtual,
        scsi-hd, scsi-block, scsi-generic, scsi-cd, ide), C(nic_type), C(scsi_controller_type)
        (lsi, megasas, virtio-scsi-pci), C(kvm_pci_reservations), C(machine_type), C(accel) (kvm, tcg),
        C(cpu_type), C(kernel_path), C(initrd_path), C(kernel_args), C(kvm_extra).
      - Unknown keys or values are errors.
    type: dict
    default: {}
  runtime:
    description: For O(state=incoming), the source's runtime file (any format this collection reads).
    type: path
  migration_uri:
    description: For O(state=incoming), where to listen, C(tcp:HOST:PORT) or C(unix:PATH).
    type: str
  shutdown_timeout:
    description: Seconds O(state=stopped) waits for the guest to power off before quitting QEMU.
    type: int
    default: 30
extends_documentation_fragment:
  - kvmhv.qemu.common
  - kvmhv.qemu.attributes
attributes:
  check_mode:
    support: full
    details: Plans only; returns the command line and the hvinfo it would allocate.
  diff_mode:
    support: full
    details: Shows memory, vcpus, hvparams, disks and NICs before and after.
"""

EXAMPLES = r"""
- name: A VM with two SCSI disks and a bridged NIC
  kvmhv.qemu.kvm_instance:
    name: web1
    memory: 2048
    vcpus: 2
    disks:
      - path: /srv/vm/web1-root.qcow2
        format: qcow2
      - path: /srv/vm/web1-data.img
    nics:
      - mac: "52:54:00:12:34:56"
        network: {type: tap, ifname: tap-web1, bridge: br0}
    hvparams:
      disk_type: scsi-hd
      scsi_controller_type: virtio-scsi-pci

- name: Stop it (ACPI powerdown, 60 s grace)
  kvmhv.qemu.kvm_instance:
    name: web1
    state: stopped
    shutdown_timeout: 60

- name: Start a migration target from the source's runtime file
  kvmhv.qemu.kvm_instance:
    name: web1
    state: incoming
    runtime: /tmp/web1.runtime.json
    migration_uri: tcp:0.0.0.0:49152
"""

RETURN = r"""
instance:
  description: The instance after the run (or as planned in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Instance name.
      type: str
      sample: web1
    uuid:
      description: Instance UUID.
      type: str
      sample: 3f1c9c2e-8a4b-5d6e-9f00-112233445566
    status:
      description: QEMU's run state (running, paused, incoming, ...), or stopped or absent.
      type: str
      sample: running
    pid:
      description: QEMU's process id when it runs.
      type: int
      sample: 4242
    qmp_socket:
      description: QMP socket path.
      type: str
      sample: /run/kvmhv/web1.qmp
    runtime_file:
      description: Runtime file path.
      type: str
      sample: /run/kvmhv/web1.runtime.json
    serial_log:
      description: File receiving the guest's serial console.
      type: str
      sample: /run/kvmhv/web1.serial.log
    disks:
      description: Disks with uuid, device id and hvinfo.
      type: list
      elements: dict
      sample:
        - uuid: 7c079136-1111-5222-8333-444455556666
          id: disk-7c079136
          hvinfo: {driver: scsi-hd, id: disk-7c079136, bus: scsi.0, channel: 0, scsi-id: 0, lun: 0}
    nics:
      description: NICs with uuid, device id and hvinfo.
      type: list
      elements: dict
      sample:
        - uuid: 0a1b2c3d-1111-5222-8333-444455556666
          id: nic-0a1b2c3d
          hvinfo: {driver: virtio-net-pci, id: nic-0a1b2c3d, bus: pci.0, addr: "0x10"}
    cmdline:
      description: QEMU's argv (planned in check mode).
      type: list
      elements: str
      sample: [qemu-system-x86_64, -name, web1, -machine, "pc,accel=kvm"]
pending:
  description: Requested changes that take effect at the next start of a running instance.
  returned: always
  type: list
  elements: str
  sample: ["memory: 256 -> 512"]
recovered:
  description: True when a QEMU that had died was started again from its runtime file.
  returned: always
  type: bool
  sample: false
"""

import os
import re

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import instance
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file as runtime
from ansible_collections.kvmhv.qemu.plugins.module_utils.common import DISK_OPTIONS, NIC_OPTIONS, new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

URI_RE = re.compile(r"^(tcp:[^:\s]+:\d{1,5}|unix:/\S+)$")


def main() -> None:
    disk_spec = {**DISK_OPTIONS, "path": {"type": "path", "required": True}}
    module = new_module(
        {
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["running", "stopped", "absent", "incoming"], "default": "running"},
            "uuid": {"type": "str"},
            "memory": {"type": "int", "default": 256},
            "vcpus": {"type": "int", "default": 1},
            "disks": {"type": "list", "elements": "dict", "options": disk_spec, "default": []},
            "nics": {"type": "list", "elements": "dict", "options": NIC_OPTIONS, "default": []},
            "hvparams": {"type": "dict", "default": {}},
            "runtime": {"type": "path"},
            "migration_uri": {"type": "str"},
            "shutdown_timeout": {"type": "int", "default": 30},
        },
        required_if=[("state", "incoming", ("runtime", "migration_uri"))],
    )
    run(module, lambda: Manager(module).apply())


class Manager:
    """One kvm_instance call: each state's plan honours check mode before acting."""

    def __init__(self, module) -> None:
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.where = runtime.paths(self.params["runtime_dir"], self.params["name"])

    def apply(self) -> dict:
        handler = getattr(self, self.params["state"])
        if self.check:
            return handler()
        runtime.ensure_dir(self.where.runtime_dir)
        with runtime.locked(self.where):
            return handler()

    def _result(self, changed: bool, rt: dict | None, before: dict | None = None, after: dict | None = None,
                **extra) -> dict:
        state, pid = instance.status(self.where)
        result = {"changed": changed, "pending": [], "recovered": False, **extra}
        result["instance"] = instance.public(rt, self.where, state, pid) if rt else {
            "name": self.where.name, "status": state, "pid": pid, "qmp_socket": self.where.qmp,
            "runtime_file": self.where.runtime, "serial_log": self.where.serial, "disks": [], "nics": [], "cmdline": []}
        if self.module._diff and changed:
            result["diff"] = {"before": before or {}, "after": after or {}}
        return result

    def running(self) -> dict:
        spec = instance.requested_spec(self.params)
        old = instance.load(self.where)
        pid = instance.status(self.where)[1]
        if pid and old is None:
            raise KvmError(f"a QEMU (pid {pid}) runs for {self.where.name} without a runtime file; stop it first")
        if pid:
            pending, device_changes = instance.differences(old, spec)
            for note in pending:
                self.module.warn(f"{note} is pending: it takes effect at the next start")
            for note in device_changes:
                self.module.warn(note)
            return self._result(False, old, pending=pending + device_changes)
        recovered = old is not None and not old.get("stopped")
        if recovered:
            # QEMU died behind our back: bring back exactly what ran (hotplugs included).
            planned = old
            pending, device_changes = instance.differences(old, spec)
            for note in pending + device_changes:
                self.module.warn(f"recovering from the runtime file; not applied: {note}")
        else:
            planned = instance.plan_runtime(spec, self.params["qemu_binary"], old)
        for disk in planned["disks"]:
            devices.check_disk_path(disk, planned["hvparams"])
        before = instance.summary(old) if old else {}
        after = instance.summary(planned)
        if self.check:
            result = self._result(True, planned, before, after, recovered=recovered)
            result["instance"]["status"] = "running"
            return result
        instance.start(planned, self.where)
        if recovered:
            self.module.warn(f"instance {self.where.name} had died; started it again from its runtime file")
        return self._result(True, planned, before, after, recovered=recovered)

    def stopped(self) -> dict:
        old = instance.load(self.where)
        pid = instance.status(self.where)[1]
        if not pid:
            if old is not None and not old.get("stopped") and not self.check:
                old["stopped"] = True
                runtime.write_file(self.where.runtime, old)
                process.remove_files(self.where)
            return self._result(False, old)
        if not self.check:
            instance.stop(self.where, self.params["shutdown_timeout"])
            old["stopped"] = True
            runtime.write_file(self.where.runtime, old)
        return self._result(True, old, {"status": "running"}, {"status": "stopped"})

    def absent(self) -> dict:
        old = None
        try:
            old = instance.load(self.where)
        except KvmError:
            pass  # a damaged runtime file is removed all the same
        pid = instance.status(self.where)[1]
        exists = pid is not None or os.path.exists(self.where.runtime)
        if not self.check:
            if exists:
                instance.stop(self.where, 0, graceful=False)
            process.remove_files(self.where, keep_runtime=False)  # the lock file too
        result = self._result(exists, None, {"status": "present"}, {"status": "absent"})
        if old and self.check:
            result["instance"] = instance.public(old, self.where, "absent", None)
        return result

    def incoming(self) -> dict:
        uri = self.params["migration_uri"]
        if not URI_RE.match(uri):
            raise KvmError(f"migration_uri {uri!r} must be tcp:HOST:PORT or unix:/PATH")
        source = runtime.read_file(self.params["runtime"])[0]
        source.pop("stopped", None)
        state, pid = instance.status(self.where)
        if pid:
            current = instance.load(self.where)
            if state == "incoming" and current and instance.summary(current) == instance.summary(source) \
                    and [d["hvinfo"] for d in current["disks"] + current["nics"]] == \
                    [d["hvinfo"] for d in source["disks"] + source["nics"]]:
                return self._result(False, current)
            raise KvmError(f"instance {self.where.name} already runs here ({state}); remove it first with state=absent")
        if self.check:
            result = self._result(True, source, {}, instance.summary(source))
            result["instance"]["status"] = "incoming"
            return result
        if uri.startswith("unix:") and os.path.exists(uri[5:]):
            os.unlink(uri[5:])
        instance.start(source, self.where, incoming=uri)
        return self._result(True, source, {}, instance.summary(source))


if __name__ == "__main__":
    main()
