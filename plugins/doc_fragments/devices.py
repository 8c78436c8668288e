# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# The suboptions of a disk and of a NIC, written once (module_utils/common.py
# DISK_OPTIONS and NIC_OPTIONS) for the single-device options of the hotplug
# modules (disk, nic) and the lists of kvm_instance (disks, nics).
_DISK = r"""
    suboptions:
      path:
        description:
          - Absolute path of a host image or block device. The module opens it (following symlinks) and hands
            it to QEMU as a descriptor; QEMU's user needs no access to it.
          - Give O(disks[].path) or O(disks[].uri); a C(scsi-cd) with a O(disks[].uuid) may have neither (an empty drive).
        type: path
      uri:
        description:
          - A network disk QEMU reaches itself, C(iscsi://HOST[:PORT]/IQN/LUN) or C(nbd://HOST[:PORT]/EXPORT),
            without credentials.
        type: str
      format:
        description: Image format of a O(disks[].path).
        type: str
        choices: [raw, qcow2]
        default: raw
      mode:
        description: Read-write or read-only; C(ro) by default for a C(scsi-cd), else C(rw).
        type: str
        choices: [rw, ro]
      uuid:
        description:
          - Disk UUID, its identity; derived from the instance UUID and the path (or uri) when not given.
          - Give one to change a C(scsi-cd)'s medium live (the same uuid with another path, or none to eject).
        type: str
      type:
        description:
          - C(paravirtual) (virtio-blk-pci), C(scsi-hd), C(scsi-cd), C(scsi-block) or C(scsi-generic)
            (pass-through of a host SCSI block device or an iSCSI O(disks[].uri)), C(ide) (at start, on C(pc) only);
            C(scsi) means C(scsi-hd).
          - The instance's hvparam C(disk_type) when not given. It is recorded with the disk.
        type: str
        choices: [paravirtual, scsi-hd, scsi-cd, scsi-block, scsi-generic, ide, scsi]
"""
_NIC = r"""
    suboptions:
      mac:
        description: MAC address; derived from the NIC UUID when not given (stable across runs).
        type: str
      uuid:
        description: NIC UUID, its identity; derived from the MAC (or the NIC's index in a list) when not given.
        type: str
      network:
        description:
          - Backend link, a dict with C(type). C(type=tap) with C(ifname) and optionally C(bridge) uses a tap the
            module opens (creating it if missing), attaches to the bridge and brings up; C(type=user) is QEMU's
            user networking; without O(nics[].network) the NIC has no backend.
        type: dict
"""


class ModuleDocFragment:
    """Disk and NIC suboptions: DISK/NIC for the hotplug modules, DISKS/NICS for kvm_instance's lists."""

    DISK = r"""
options:
  disk:
    description: The disk. It is identified by O(disk.uuid) when given, else by O(disk.path) or O(disk.uri).
    type: dict
    required: true
""" + _DISK.replace("disks[]", "disk")

    DISKS = r"""
options:
  disks:
    description: Disks in guest order; disk 0 gets the lowest address of its kind.
    type: list
    elements: dict
    default: []
""" + _DISK

    NIC = r"""
options:
  nic:
    description: The NIC. It is identified by O(nic.uuid) when given, else by O(nic.mac).
    type: dict
    required: true
""" + _NIC.replace("nics[]", "nic")

    NICS = r"""
options:
  nics:
    description: NICs in guest order.
    type: list
    elements: dict
    default: []
""" + _NIC

    # A fragment needs a DOCUMENTATION attribute; the sections above are used by name.
    DOCUMENTATION = r"""
options: {}
"""
