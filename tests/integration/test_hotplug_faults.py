"""Faults during hotplug: QEMU refusals, drift, dead QEMU, interrupted module runs.

Afterwards QEMU and the runtime file always agree and nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process
from ansible_cli import run_module
from faultrun import FaultRun
from helpers import block_nodes, pci_slots, q, qmp

PAUSED = {"accel": "tcg", "kvm_extra": "-S"}


@pytest.fixture
def paused(runtime_dir, make_disk):
    """A paused SCSI instance (no guest: SCSI unplugs complete without one) with one disk."""
    res = run_module("kvm_instance", {"name": "f1", "runtime_dir": runtime_dir,
                                      "hvparams": {**PAUSED, "disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci"},
                                      "disks": [{"path": make_disk("boot.img")}]})
    assert res["changed"] is True, res
    yield res["instance"]
    run_module("kvm_instance", {"name": "f1", "runtime_dir": runtime_dir, "state": "absent"})


def plug(runtime_dir: str, path: str, **extra) -> dict:
    return run_module("kvm_disk_hotplug", {"instance": "f1", "runtime_dir": runtime_dir, "disk": {"path": path, **extra}})


def test_refused_blockdev_leaves_nothing(runtime_dir, make_disk, paused):
    before = Path(paused["runtime_file"]).read_bytes()
    nodes = block_nodes(paused["qmp_socket"])
    res = plug(runtime_dir, make_disk("raw.img"), format="qcow2")
    assert res.get("failed") and res["msg"].startswith("blockdev-add: QEMU refused blockdev-add") and "qcow2" in res["msg"], res
    assert Path(paused["runtime_file"]).read_bytes() == before
    assert block_nodes(paused["qmp_socket"]) == nodes


def test_drift_is_detected_and_rolled_back(runtime_dir, make_disk, paused):
    sock = paused["qmp_socket"]
    # SCSI: a target taken behind the runtime's back
    path = make_disk("d.img")
    plan = run_module("kvm_disk_hotplug", {"instance": "f1", "runtime_dir": runtime_dir, "disk": {"path": path}}, check=True)
    target = plan["device"]["hvinfo"]["scsi-id"]
    qmp(sock, ("blockdev-add", {"driver": "null-co", "node-name": "intruder", "size": 1 << 20}),
        ("device_add", {"driver": "scsi-hd", "id": "intruder", "drive": "intruder", "bus": "scsi.0", "scsi-id": target}))
    before = Path(paused["runtime_file"]).read_bytes()
    nodes = block_nodes(sock)
    res = plug(runtime_dir, path)
    assert res.get("failed") and res["msg"].startswith("device_add: drift") and f"scsi-id {target}" in res["msg"], res
    assert "\n" not in res["msg"]
    assert Path(paused["runtime_file"]).read_bytes() == before and block_nodes(sock) == nodes
    # PCI: a slot taken behind the runtime's back
    nic = {"instance": "f1", "runtime_dir": runtime_dir, "nic": {"mac": "52:54:00:00:06:01", "network": {"type": "user"}}}
    planned = run_module("kvm_nic_hotplug", nic, check=True)["device"]
    slot = planned["hvinfo"]["addr"]
    q(sock, "device_add", {"driver": "e1000", "id": "intruder2", "bus": "pci.0", "addr": slot})
    res = run_module("kvm_nic_hotplug", nic)
    assert res.get("failed") and res["msg"].startswith("device_add: drift") and slot in res["msg"], res
    assert Path(paused["runtime_file"]).read_bytes() == before
    assert pci_slots(sock)[int(slot, 16)]["qdev_id"] == "intruder2"  # never double-used
    assert planned["id"] not in q(sock, "human-monitor-command", {"command-line": "info network"})  # netdev rolled back
    info = run_module("kvm_instance_info", {"name": "f1", "runtime_dir": runtime_dir})["instance"]
    assert any("intruder2" in d for d in info["drift"]) and any("intruder" in d for d in info["drift"])


def test_dead_qemu_is_a_clear_error(runtime_dir, make_disk, paused):
    before = Path(paused["runtime_file"]).read_bytes()
    os.kill(paused["pid"], signal.SIGKILL)
    assert process.wait_exit(paused["pid"], 10)
    res = plug(runtime_dir, make_disk("late.img"))
    assert res.get("failed") and "is not running" in res["msg"], res
    assert Path(paused["runtime_file"]).read_bytes() == before


def test_unplug_the_guest_never_acknowledges_times_out(runtime_dir, paused):
    """A paused guest never acknowledges a PCI unplug: the wait ends at unplug_timeout, named, runtime unchanged.

    The timeout spans one repeat of device_del, which QEMU refuses on a paused VM (the first request is pending)."""
    nic = {"instance": "f1", "runtime_dir": runtime_dir, "nic": {"mac": "52:54:00:00:06:11", "network": {"type": "user"}}}
    dev_id = run_module("kvm_nic_hotplug", nic)["device"]["id"]
    before = Path(paused["runtime_file"]).read_bytes()
    started = time.monotonic()
    res = run_module("kvm_nic_hotplug", {**nic, "state": "absent", "unplug_timeout": 7})
    assert res.get("failed") and f"no DEVICE_DELETED for {dev_id} within 7s (the guest did not release it)" in res["msg"], res
    assert 7 <= time.monotonic() - started < 40
    assert Path(paused["runtime_file"]).read_bytes() == before
    # a re-run waits for the unplug QEMU still has pending instead of failing on QEMU's refusal
    res = run_module("kvm_nic_hotplug", {**nic, "state": "absent", "unplug_timeout": 1})
    assert res.get("failed") and f"no DEVICE_DELETED for {dev_id} within 1s" in res["msg"], res
    assert Path(paused["runtime_file"]).read_bytes() == before
    assert dev_id in {d["qdev_id"] for d in pci_slots(paused["qmp_socket"]).values()}


def test_qemu_dying_during_unplug_wait_is_reported_at_once(runtime_dir, paused):
    """QEMU killed while the module waits for DEVICE_DELETED: the failure comes when the QMP connection
    drops, not at unplug_timeout, and the runtime file is unchanged."""
    nic = {"instance": "f1", "runtime_dir": runtime_dir, "nic": {"mac": "52:54:00:00:06:12", "network": {"type": "user"}}}
    dev_id = run_module("kvm_nic_hotplug", nic)["device"]["id"]
    before = Path(paused["runtime_file"]).read_bytes()
    started = time.monotonic()
    run = FaultRun("kvm_nic_hotplug", {**nic, "state": "absent", "unplug_timeout": 300}, mark=("unplug-requested",))
    run.wait("unplug-requested")  # device_del was sent; the module now waits for the event
    os.kill(paused["pid"], signal.SIGKILL)
    res = run.result()
    assert res.get("failed"), res
    assert res["msg"] == (f"device_del: QEMU closed its QMP connection (it exited) while waiting for DEVICE_DELETED "
                          f"for {dev_id}; the runtime file still lists {dev_id}"), res
    assert time.monotonic() - started < 60
    assert Path(paused["runtime_file"]).read_bytes() == before
