#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_instance_info
short_description: Read kvmhv.qemu runtime files, bus state and drift
version_added: "0.1.0"
description:
  - Reads one instance's runtime file (by O(name) in O(runtime_dir), or by O(path)), or every
    instance in O(runtime_dir), through the runtime upgrader, so legacy layouts are understood.
  - Reports the recorded device tree (hvinfo of every disk and NIC), the bus state (used and free
    PCI slots, SCSI controller and targets), whether QEMU is alive, and any drift between QEMU's
    device tree and the runtime file.
  - With O(upgrade=true) an older runtime file is written back in the current format (atomically,
    under the instance lock).
author:
  - kvmhv.qemu contributors (@kvmhv)
options:
  name:
    description: Instance name; its runtime file is C(<runtime_dir>/<name>.runtime.json).
    type: str
  path:
    description: Path of one runtime file (any format this collection can read).
    type: path
  upgrade:
    description:
      - Write an older runtime file back in the current format.
      - Never on a file Ganeti still uses (its C(conf/<name>.runtime)); Ganeti cannot read the current format.
    type: bool
    default: false
  export:
    description:
      - Also return the instance's runtime in an older layout, as RV(instance.exported), for tools that
        only read that layout. Refused, with the reason, when the devices do not fit it.
      - C(runtime-v1) is this collection's format version 1 (one PCI bus, one SCSI controller placed by QEMU,
        every disk of the instance's C(disk_type)); C(legacy) is the list layout with integer C(pci) slots
        (every device on C(pci.0)).
      - C(ganeti-3) is the runtime as Ganeti 2.16 to 3.1 writes it (hvinfo), C(ganeti-2) as Ganeti 2.10 to 2.15 writes
        it (integer pci slots), for handing an instance (adopted or not) back to Ganeti; Ganeti's host options
        (pid file, monitor, serial socket) are put back into C(kvm_cmd). Refused, naming the device, when a device
        does not fit (not on C(pci.0), or for C(ganeti-3) not a SCSI target 0-15 on C(scsi.0); a non-raw disk;
        bridges or controllers in use), and for a running instance when Ganeti 2.x would call a device by another id.
    type: str
    choices: [runtime-v1, legacy, ganeti-2, ganeti-3]
extends_documentation_fragment:
  - kvmhv.qemu.common
  - kvmhv.qemu.attributes
attributes:
  check_mode:
    support: full
    details: With O(upgrade=true) reports whether it would write; writes nothing.
  diff_mode:
    support: full
    details: Shows the format version before and after an upgrade.
notes:
  - Drift is only checked for a live QEMU. It compares every device both ways (driver, bus, slot or SCSI
    target, and the file behind each disk by device and inode); anything unrecorded in the hotplug window counts.
"""

EXAMPLES = r"""
- name: Show one instance
  kvmhv.qemu.kvm_instance_info:
    name: web1
  register: web1

- name: Every instance on the host
  kvmhv.qemu.kvm_instance_info:
    runtime_dir: /run/kvmhv

- name: Read a Ganeti runtime file (any layout from 2.0 to 3.1)
  kvmhv.qemu.kvm_instance_info:
    path: /var/run/ganeti/kvm-hypervisor/conf/vm1.example.org.runtime

- name: An instance as Ganeti 3.x would record it
  kvmhv.qemu.kvm_instance_info:
    name: web1
    export: ganeti-3
  register: for_ganeti

- name: Upgrade a legacy runtime file in place
  kvmhv.qemu.kvm_instance_info:
    path: /run/kvmhv/old1.runtime.json
    upgrade: true
"""

RETURN = r"""
instance:
  description: The instance, when O(name) or O(path) was given.
  returned: when name or path is given
  type: dict
  contains:
    name:
      description: Instance name.
      type: str
      sample: web1
    runtime_file:
      description: Path of the runtime file.
      type: str
      sample: /run/kvmhv/web1.runtime.json
    format_version:
      description: Format version the file is stored in (0 is the legacy list layout).
      type: int
      sample: 2
    current_version:
      description: Format version this collection writes.
      type: int
      sample: 2
    runtime:
      description: The runtime in the current format (hvparams, kvm_cmd, disks and nics with hvinfo).
      type: dict
      sample:
        version: 2
        hvparams: {disk_type: scsi-hd, scsi_controller_type: lsi}
        disks:
          - uuid: 7c079136-0000-4000-8000-000000000001
            path: /srv/web1.img
            format: raw
            mode: rw
            hvinfo: {driver: scsi-hd, id: disk-7c079136, bus: scsi.0, channel: 0, scsi-id: 0, lun: 0}
        nics: []
    bus:
      description:
        - Every bus computed from the runtime file, with what is used, what is free and the capacity. C(pci) is the
          root bus's hotplug window; C(hotplug) how many PCI devices can still be hotplugged; C(bridges) the
          C(pci-bridge)s (C(pc)) and C(ports) the C(pcie-root-port)s (C(q35); C(capacity), C(used), C(free)); C(scsi)
          one item per SCSI controller.
      type: dict
      sample:
        machine: pc
        pci: {bus: pci.0, window: ["0x10", "0x1f"], used: ["0x10", "0x11", "0x1f"], free: ["0x12", "0x13"]}
        hotplug: {pci_hotplug_slots: 32, free_pci: 44}
        bridges: [{id: pci.1, addr: "0x1f", capacity: 31, used: [], free: 31}]
        ports: {capacity: 0, used: [], free: 0}
        scsi: [{id: scsi, bus: scsi.0, driver: lsi53c895a, addr: "0x10", max_targets: 7, used: [0], free: 6}]
    alive:
      description: Whether the instance's QEMU process runs.
      type: bool
      sample: true
    status:
      description:
        - C(alive) or C(down); C(stopped) when stopped on purpose; C(incoming) for a migration target still marked so
          and C(incoming-failed) for one whose QEMU is gone (the instance lives on the source).
      type: str
      sample: alive
    interrupted_hotplugs:
      description: Device ids of a hotplug a killed run left in the journal; the next hotplug or convergence settles them.
      type: list
      elements: str
      sample: []
    pid:
      description: QEMU's process id, when alive.
      type: int
      sample: 4242
    qmp_socket:
      description: The QMP socket path.
      type: str
      sample: /run/kvmhv/web1.qmp
    exported:
      description: The runtime in the layout O(export) asked for.
      type: raw
      returned: when O(export) is given
    drift:
      description:
        - Differences between QEMU's device tree and the runtime file, both ways (empty when they agree) - each device's
          driver, bus, slot or SCSI target, and the file behind each disk (by device and inode); anything unrecorded in
          the hotplug window counts.
      type: list
      elements: str
      sample: ["QEMU has hd9 at pci.0 slot 0x15, missing from the runtime"]
    notes:
      description: What reading a Ganeti runtime changed or assumed (rewritten options, a uuid derived from a MAC,
        devices QEMU placed itself).
      type: list
      elements: str
      sample: ["nic 0 (aa:00:00:11:22:33) had no uuid (written before Ganeti 2.8): uuid 04d005cd-6a1b-57e1-9961-f035e1fdbbf6 derived from its MAC"]
    disk_sizes:
      description:
        - Each disk's virtual size in bytes as the live QEMU sees it, by disk uuid (empty when QEMU is
          not alive). M(kvmhv.qemu.kvm_instance) C(copy_storage) takes it as C(disk_sizes).
      type: dict
      sample: {7c079136-0000-4000-8000-000000000001: 67108864}
instances:
  description: Every instance read (one item when O(name) or O(path) was given), with the keys of RV(instance).
  returned: always
  type: list
  elements: dict
  sample: []
"""

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import info


def main() -> None:
    module = new_module(
        {
            "name": {"type": "str"},
            "path": {"type": "path"},
            "upgrade": {"type": "bool", "default": False},
            "export": {"type": "str", "choices": ["runtime-v1", "legacy", "ganeti-2", "ganeti-3"]},
        },
        mutually_exclusive=[("name", "path")],
    )
    run(module, info.apply)


if __name__ == "__main__":
    main()
