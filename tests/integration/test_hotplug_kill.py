"""The module process killed at every step boundary of a hotplug; every retry converges.

Instances run firmware only (no guest OS): a PCI unplug is never
acknowledged, so a design that needed to unplug a leftover would hang here.
(Not paused: QEMU closes a removed fdset descriptor only while the VM runs.) After each
kill the retry must succeed, QEMU and the runtime file must agree, and no
block node, fdset, netdev, descriptor or journal may be left over.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ansible_cli import run_module
from faultrun import FaultRun
from helpers import assert_matches_runtime, block_nodes, q, qmp, read_rt

STEPS = ("journalled", "fds-passed", "plugged", "before-save", "committed")
NO_GUEST = {"accel": "tcg"}


@pytest.fixture(scope="module")
def bridge():
    name = f"kvkbr{os.getpid() % 100000}"  # each xdist worker gets its own (its tests may be split between workers)
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], check=False)


def start(runtime_dir: str, name: str, make_disk, **hv) -> dict:
    res = run_module("kvm_instance", {"name": name, "runtime_dir": runtime_dir, "hvparams": {**NO_GUEST, **hv},
                                      "disks": [{"path": make_disk(f"{name}-boot.img")}]})
    assert res["changed"] is True, res
    return res["instance"]


def device_args(kind: str, runtime_dir: str, name: str, make_disk, bridge: str, n: int) -> tuple[str, dict]:
    if kind == "tap-nic":
        return "kvm_nic_hotplug", {"instance": name, "runtime_dir": runtime_dir,
                                   "nic": {"mac": f"52:54:00:00:0b:{n:02x}", "network": {"type": "tap", "ifname": f"kvk{n}", "bridge": bridge}}}
    return "kvm_disk_hotplug", {"instance": name, "runtime_dir": runtime_dir, "disk": {"path": make_disk(f"{name}-{n}.img")}}


def assert_clean(inst: dict, when: str = "") -> None:
    """QEMU holds exactly what the runtime file records: devices, block nodes, fdsets, no journal."""
    rt = read_rt(inst["runtime_file"])
    sock = inst["qmp_socket"]
    assert_matches_runtime(sock, rt)
    assert block_nodes(sock) == {d["hvinfo"]["id"] for d in rt["disks"]}
    sets = sorted(fd["opaque"] for s in q(sock, "query-fdsets") for fd in s["fds"])
    assert sets == sorted(["serial", *(d["hvinfo"]["id"] for d in rt["disks"])]), (when, q(sock, "query-fdsets"))
    assert not Path(inst["runtime_file"].replace(".runtime.json", ".pending.json")).exists()


@pytest.mark.parametrize("kind", ["pci-disk", "scsi-disk", "tap-nic"])
def test_kill_at_each_step_then_retry(runtime_dir, make_disk, bridge, kind):
    name = {"pci-disk": "kp", "scsi-disk": "ks", "tap-nic": "kn"}[kind]
    hv = {"disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci"} if kind == "scsi-disk" else {}
    inst = start(runtime_dir, name, make_disk, **hv)
    try:
        for n, step in enumerate(STEPS, start=1):
            module, args = device_args(kind, runtime_dir, name, make_disk, bridge, n)
            FaultRun(module, args, stop=(step,)).kill(step)
            retry = run_module(module, args)
            assert not retry.get("failed"), (step, retry)
            assert retry["changed"] is (step != "committed"), (step, retry)
            assert_clean(inst, step)
            if kind == "tap-nic":
                link = subprocess.run(["ip", "link", "show", f"kvk{n}"], capture_output=True, text=True, check=True).stdout
                assert f"master {bridge}" in link and "UP" in link, link
        # a killed add followed by another device's add: the orphan is settled first, never drift
        module, first = device_args(kind, runtime_dir, name, make_disk, bridge, 20)
        FaultRun(module, first, stop=("plugged",)).kill("plugged")
        module, second = device_args(kind, runtime_dir, name, make_disk, bridge, 21)
        other = run_module(module, second)
        assert other["changed"] is True and any("had completed in QEMU" in w for w in other.get("warnings", [])), other
        assert run_module(module, first)["changed"] is False  # the orphan was committed by the run before
        assert_clean(inst)
    finally:
        run_module("kvm_instance", {"name": name, "runtime_dir": runtime_dir, "state": "absent"})


def test_kill_between_blockdev_add_and_device_add(runtime_dir, make_disk):
    """The burst's backend reached QEMU, its device_add did not: the retry removes the node, never plugs onto it."""
    inst = start(runtime_dir, "kb", make_disk)
    args = {"instance": "kb", "runtime_dir": runtime_dir, "disk": {"path": make_disk("kb-1.img")}}
    try:
        plan = run_module("kvm_disk_hotplug", args, check=True)["device"]
        run = FaultRun("kvm_disk_hotplug", args, stop=("fds-passed",))
        pid = run.wait("fds-passed")
        run.stopped(pid)
        ro = inst["qmp_socket"].replace(".qmp", ".ro.qmp")
        fdset = next(s["fdset-id"] for s in q(ro, "query-fdsets") for fd in s["fds"] if fd["opaque"] == plan["id"])
        qmp(ro, ("blockdev-add", {"driver": "raw", "node-name": plan["id"], "file": {"driver": "file", "filename": f"/dev/fdset/{fdset}"}}))
        run.kill("fds-passed")
        retry = run_module("kvm_disk_hotplug", args)
        assert retry["changed"] is True and retry["device"] == plan, retry
        assert any("left parts in QEMU" in w for w in retry.get("warnings", [])), retry
        assert_clean(inst)
    finally:
        run_module("kvm_instance", {"name": "kb", "runtime_dir": runtime_dir, "state": "absent"})
