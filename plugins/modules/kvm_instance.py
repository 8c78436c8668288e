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
  copy_storage:
    description:
      - For O(state=incoming), a target without the source's storage. This host creates every read-write
        disk of O(runtime) that has a path, at the same path, in the same format and with the virtual
        size from O(disk_sizes), never over an existing file (free space is checked first), and exports
        each over NBD on the address of O(migration_uri), port O(nbd_port), for the source's
        M(kvmhv.qemu.kvm_migrate) C(copy_storage=true) to mirror into. Read-only disks and disks QEMU
        reaches by URI must be reachable here as with shared storage.
      - The runtime file records the images this host created while the migration is pending, so
        O(state=absent) removes exactly those (and never a file that was there before).
      - Run O(state=incoming) again once the migration completed to confirm it. The NBD server closes
        and the images become the instance's own disks.
    type: bool
    default: false
  disk_sizes:
    description:
      - With O(copy_storage), the virtual size in bytes of each copied disk, by disk uuid, as
        M(kvmhv.qemu.kvm_instance_info) reports it on the source (C(instance.disk_sizes)).
    type: dict
  nbd_port:
    description: With O(copy_storage), the TCP port of the NBD server the disks are exported on.
    type: int
    default: 49153
  shared_dirs:
    description:
      - With O(copy_storage), directories on storage this host shares with the source; disks under them
        are not copied (they are used in place, as in a shared-storage migration). Give the source's
        M(kvmhv.qemu.kvm_migrate) the same list.
    type: list
    elements: path
    default: []
  only_if_incoming:
    description:
      - With O(state=absent), remove the instance only while it is a migration target whose migration has
        not arrived (runtime marked incoming, QEMU gone or still waiting); anything else is left alone
        with a warning. The rollback of a failed migration uses it, so it never removes a running guest
        or an unrelated instance of the same name.
    type: bool
    default: false
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

- name: A target without shared storage (creates and exports the disks)
  kvmhv.qemu.kvm_instance:
    name: web1
    state: incoming
    runtime: /tmp/web1.runtime.json
    migration_uri: tcp:10.0.0.12:49152
    copy_storage: true
    disk_sizes: "{{ web1_info.instance.disk_sizes }}"

- name: Undo a failed migration target (never a running guest)
  kvmhv.qemu.kvm_instance:
    name: web1
    state: absent
    only_if_incoming: true
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
created_images:
  description: With O(copy_storage), the images this target creates (or would create, in check mode).
  returned: state=incoming
  type: list
  elements: dict
  sample: [{path: /srv/kvmhv/web1-0.img, format: raw, size: 67108864}]
removed_images:
  description: Images a migration target had created that O(state=absent) removed (or would remove).
  returned: state=absent
  type: list
  elements: str
  sample: [/srv/kvmhv/web1-0.img]
confirmed:
  description: True when O(state=incoming) found the migration arrived and confirmed it.
  returned: when the migration arrived
  type: bool
  sample: true
"""

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import DISK_OPTIONS, NIC_OPTIONS, new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import instance


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
            "copy_storage": {"type": "bool", "default": False},
            "disk_sizes": {"type": "dict"},
            "nbd_port": {"type": "int", "default": 49153},
            "only_if_incoming": {"type": "bool", "default": False},
            "shared_dirs": {"type": "list", "elements": "path", "default": []},
        },
        required_if=[("state", "incoming", ("runtime", "migration_uri")), ("copy_storage", True, ("disk_sizes",))],
    )
    run(module, instance.apply)


if __name__ == "__main__":
    main()
