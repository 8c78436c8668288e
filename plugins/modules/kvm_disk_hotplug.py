#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_disk_hotplug
short_description: Hotplug or unplug a disk on a running kvmhv.qemu instance
version_added: "0.1.0"
description:
  - Adds a disk at the next free address chosen from the instance's runtime file, or removes it.
  - The disk's O(disk.type) (else the instance's recorded C(disk_type)) decides the device. A SCSI
    disk gets the lowest free target of the first SCSI controller with room; when all are full (or the
    instance has none) a controller is hot-added first. Other disks get the lowest free PCI slot
    (C(pci.0), then its bridges; on C(q35) the first free root port).
  - Add is journalled, then the disk is handed over (an fdset for a host file), C(blockdev-add),
    C(device_add) with the hvinfo and a check of where QEMU put it go in one burst, then the runtime
    file is saved. Any failure rolls back what was added and leaves the runtime file unchanged; the
    error names the failing step. A run killed at any step is finished or undone by the next one.
  - The same uuid with another path on a C(scsi-cd) changes its medium live; with other properties on
    any other disk it is an error. A disk the runtime records but QEMU lost is plugged again.
  - Remove is C(device_del), a wait for QEMU's C(DEVICE_DELETED) event (a PCI unplug needs the
    guest's acknowledgement; the request is repeated every 5 seconds until it comes or
    O(unplug_timeout) passes), C(blockdev-del), then the runtime file is saved.
author:
  - kvmhv.qemu contributors (@kvmhv)
extends_documentation_fragment:
  - kvmhv.qemu.devices.disk
  - kvmhv.qemu.common
  - kvmhv.qemu.hotplug
  - kvmhv.qemu.attributes
attributes:
  check_mode:
    support: full
    details: Returns the hvinfo it would allocate; sends nothing to QEMU that changes it.
  diff_mode:
    support: full
    details: Shows the instance's device layout before and after.
"""

EXAMPLES = r"""
- name: Add a data disk
  kvmhv.qemu.kvm_disk_hotplug:
    instance: web1
    disk:
      path: /srv/vm/web1-data2.qcow2
      format: qcow2

- name: Remove it again
  kvmhv.qemu.kvm_disk_hotplug:
    instance: web1
    state: absent
    disk:
      path: /srv/vm/web1-data2.qcow2
"""

RETURN = r"""
device:
  description: The disk that was (or would be) added or removed; null when nothing matched a removal.
  returned: always
  type: dict
  contains:
    uuid:
      description: Disk UUID.
      type: str
      sample: 7c079136-1111-5222-8333-444455556666
    id:
      description: QEMU device, block node and runtime id.
      type: str
      sample: disk-7c079136
    hvinfo:
      description: Where the disk sits.
      type: dict
      sample: {driver: scsi-hd, id: disk-7c079136, bus: scsi.0, channel: 0, scsi-id: 2, lun: 0}
"""

from functools import partial

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import DISK_OPTIONS, DISK_RULES, HOTPLUG_ARGS, new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import hotplug


def main() -> None:
    module = new_module({
        **HOTPLUG_ARGS,
        "disk": {"type": "dict", "required": True, "options": DISK_OPTIONS, **DISK_RULES},
    })
    run(module, partial(hotplug.apply, kind="disks", option="disk"))


if __name__ == "__main__":
    main()
