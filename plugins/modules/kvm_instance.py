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
  adopt:
    description:
      - Take over a QEMU that something else started (Ganeti) without restarting or changing it, with
        O(state=running). Its runtime file (any Ganeti layout from 2.0 to 3.1) is read and upgraded, checked
        against the live QEMU (C(query-pci), C(query-block), QOM), and the instance is recorded in O(runtime_dir)
        with that QEMU's QMP socket and pid file; a mismatch fails, listing every difference.
      - From then on it is an instance like any other (info, hotplug, migration). O(state=absent) stops that QEMU
        and removes only this collection's files; O(state=stopped) stops it, and a later start runs this
        collection's own QEMU.
      - O(disks), O(nics) and O(hvparams) must be left out (the instance is what its runtime file and QEMU say).
    type: dict
    suboptions:
      runtime:
        description: The runtime file of the QEMU (Ganeti's C(/var/run/ganeti/kvm-hypervisor/conf/<name>.runtime)).
        type: path
        required: true
      qmp:
        description: Its QMP socket (Ganeti's C(.../ctrl/<name>.qmp)); opened without following a symlink.
        type: path
        required: true
      pidfile:
        description: Its pid file, written by QEMU's C(-pidfile) (Ganeti's C(.../pid/<name>)); the process must name it
          on its command line.
        type: path
        required: true
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

- name: Adopt a QEMU that Ganeti started (nothing in QEMU changes)
  kvmhv.qemu.kvm_instance:
    name: vm1.example.org
    adopt:
      runtime: /var/run/ganeti/kvm-hypervisor/conf/vm1.example.org.runtime
      qmp: /var/run/ganeti/kvm-hypervisor/ctrl/vm1.example.org.qmp
      pidfile: /var/run/ganeti/kvm-hypervisor/pid/vm1.example.org

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
adopted:
  description: The QEMU taken over (O(adopt)).
  returned: with adopt
  type: dict
  sample: {runtime: /var/run/ganeti/kvm-hypervisor/conf/vm1.runtime, qmp: /var/run/ganeti/kvm-hypervisor/ctrl/vm1.qmp,
           pidfile: /var/run/ganeti/kvm-hypervisor/pid/vm1}
notes:
  description: What reading the adopted runtime file changed or assumed (rewritten options, derived uuids, ...).
  returned: with adopt
  type: list
  elements: str
  sample: ["kvm_cmd: rewritten for current QEMU: -balloon"]
"""

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import DISK_OPTIONS, NIC_OPTIONS, new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import instance


def main() -> None:
    module = new_module(
        {
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["running", "stopped", "absent", "incoming"], "default": "running"},
            "uuid": {"type": "str"},
            "memory": {"type": "int", "default": 256},
            "vcpus": {"type": "int", "default": 1},
            "disks": {"type": "list", "elements": "dict", "options": DISK_OPTIONS, "default": []},
            "nics": {"type": "list", "elements": "dict", "options": NIC_OPTIONS, "default": []},
            "hvparams": {"type": "dict", "default": {}},
            "runtime": {"type": "path"},
            "migration_uri": {"type": "str"},
            "shutdown_timeout": {"type": "int", "default": 30},
            "purge": {"type": "bool", "default": False},
            "unplug_timeout": {"type": "int", "default": 30},
            "adopt": {"type": "dict", "options": {"runtime": {"type": "path", "required": True},
                                                  "qmp": {"type": "path", "required": True},
                                                  "pidfile": {"type": "path", "required": True}}},
        },
        required_if=[("state", "incoming", ("runtime", "migration_uri"))],
    )
    run(module, instance.apply)


if __name__ == "__main__":
    main()
