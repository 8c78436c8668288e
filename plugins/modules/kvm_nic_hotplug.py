#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_nic_hotplug
short_description: Hotplug or unplug a NIC on a running kvmhv.qemu instance
version_added: "0.1.0"
description:
  - Adds a NIC (of the instance's recorded C(nic_type)) at the lowest free PCI slot (C(pci.0), then its
    bridges; on C(q35) the first free root port), or removes it, with the same journal, transaction and
    verification as M(kvmhv.qemu.kvm_disk_hotplug).
  - For a C(tap) network the module opens the tap (creating it if it does not exist), attaches it
    to the bridge if one is given, brings it up and passes its file descriptor to QEMU. A tap the
    module created is non-persistent and disappears when QEMU releases it; an existing tap is left alone.
author:
  - kvmhv.qemu contributors (@kvmhv)
extends_documentation_fragment:
  - kvmhv.qemu.devices.nic
  - kvmhv.qemu.common
  - kvmhv.qemu.hotplug
  - kvmhv.qemu.attributes
attributes:
  check_mode:
    support: full
    details: Returns the hvinfo it would allocate; changes nothing.
  diff_mode:
    support: full
    details: Shows the instance's device layout before and after.
"""

EXAMPLES = r"""
- name: Add a NIC on bridge br0
  kvmhv.qemu.kvm_nic_hotplug:
    instance: web1
    nic:
      mac: "52:54:00:12:34:57"
      network: {type: tap, ifname: tap-web1-1, bridge: br0}

- name: Remove it
  kvmhv.qemu.kvm_nic_hotplug:
    instance: web1
    state: absent
    nic:
      mac: "52:54:00:12:34:57"
"""

RETURN = r"""
device:
  description: The NIC that was (or would be) added or removed; null when nothing matched a removal.
  returned: always
  type: dict
  contains:
    uuid:
      description: NIC UUID.
      type: str
      sample: 0a1b2c3d-1111-5222-8333-444455556666
    id:
      description: QEMU device and netdev id.
      type: str
      sample: nic-0a1b2c3d
    hvinfo:
      description: Where the NIC sits.
      type: dict
      sample: {driver: virtio-net-pci, id: nic-0a1b2c3d, bus: pci.0, addr: "0x11"}
"""

from functools import partial

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import HOTPLUG_ARGS, NIC_OPTIONS, NIC_RULES, new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import hotplug


def main() -> None:
    module = new_module({
        **HOTPLUG_ARGS,
        "nic": {"type": "dict", "required": True, "options": NIC_OPTIONS, **NIC_RULES},
    })
    run(module, partial(hotplug.apply, kind="nics", option="nic"))


if __name__ == "__main__":
    main()
