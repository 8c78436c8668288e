"""kvm_instance_info through real `ansible localhost -m` runs."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_cli import run_module
from helpers import q, running_pid, start_paused

LEGACY = [
    ["qemu-system-x86_64", "-name", "old1", "-m", "64", "-pidfile", "/run/ganeti/old1.pid", "-daemonize"],
    [{"mac": "52:54:00:00:00:01", "uuid": "11111111-2222-4333-8444-555555555555", "pci": 18}],
    {"disk_type": "paravirtual", "nic_type": "paravirtual"},
    [[{"uuid": "aaaaaaaa-2222-4333-8444-555555555555", "mode": "rw", "pci": 16}, "/srv/a.img", None],
     [{"uuid": "bbbbbbbb-2222-4333-8444-555555555555", "mode": "rw", "pci": 17}, "/srv/b.img", None]],
]


def one_line_failure(result: dict, *words: str) -> None:
    assert result.get("failed"), result
    assert "\n" not in result["msg"] and "Traceback" not in json.dumps(result.get("msg")), result["msg"]
    for word in words:
        assert word in result["msg"], result["msg"]


def test_live_instance_bus_state_and_drift(runtime_dir, make_disk):
    rt, where = start_paused(runtime_dir, "i1", {}, [{"path": make_disk("a.img")}], [{}])
    try:
        res = run_module("kvm_instance_info", {"name": "i1", "runtime_dir": runtime_dir})
        inst = res["instance"]
        assert res["changed"] is False and inst["alive"] is True and inst["pid"] == running_pid(runtime_dir, "i1")
        assert inst["drift"] == [] and inst["format_version"] == 2
        assert inst["bus"]["pci"]["used"] == ["0x10", "0x11", "0x1f"] and inst["bus"]["pci"]["free"][0] == "0x12"
        assert [b["id"] for b in inst["bus"]["bridges"]] == ["pci.1"]  # room for 32 hotplugged devices
        assert inst["runtime"]["disks"][0]["hvinfo"] == rt["disks"][0]["hvinfo"]
        # a device added behind the runtime's back is drift
        q(where.qmp, "device_add", {"driver": "e1000", "id": "sneaky", "bus": "pci.0", "addr": "0x15"})
        inst = run_module("kvm_instance_info", {"name": "i1", "runtime_dir": runtime_dir})["instance"]
        assert any("sneaky" in d and "0x15" in d for d in inst["drift"]), inst["drift"]
        every = run_module("kvm_instance_info", {"runtime_dir": runtime_dir})
        assert [i["name"] for i in every["instances"]] == ["i1"] and "instance" not in every
    finally:
        where.cleanup()
    dead = run_module("kvm_instance_info", {"name": "i1", "runtime_dir": runtime_dir})["instance"]
    assert dead["alive"] is False and dead["drift"] == []


def test_legacy_file_read_check_upgrade_and_write(tmp_path):
    path = tmp_path / "old1.runtime.json"
    path.write_text(json.dumps(LEGACY))
    original = path.read_bytes()
    res = run_module("kvm_instance_info", {"path": str(path)})
    inst = res["instance"]
    assert res["changed"] is False and inst["format_version"] == 0 and inst["current_version"] == 2
    assert [d["hvinfo"]["id"] for d in inst["runtime"]["disks"]] == ["hotdisk-aaaaaaaa-pci-16", "hotdisk-bbbbbbbb-pci-17"]
    assert inst["runtime"]["nics"][0]["hvinfo"] == {"driver": "virtio-net-pci", "id": "hotnic-11111111-pci-18", "bus": "pci.0", "addr": "0x12"}
    assert path.read_bytes() == original
    checked = run_module("kvm_instance_info", {"path": str(path), "upgrade": True}, check=True, diff=True)
    assert checked["changed"] is True and path.read_bytes() == original
    assert "format version 0" in checked["diff"][0]["before"]
    done = run_module("kvm_instance_info", {"path": str(path), "upgrade": True})
    assert done["changed"] is True and json.loads(path.read_text())["version"] == 2
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = run_module("kvm_instance_info", {"path": str(path), "upgrade": True})
    assert again["changed"] is False and again["instance"]["runtime"]["disks"] == inst["runtime"]["disks"]


def test_newer_and_corrupt_files_fail_in_one_line(tmp_path):
    newer = tmp_path / "n.runtime.json"
    newer.write_text(json.dumps({"version": 99}))
    before = newer.read_bytes()
    one_line_failure(run_module("kvm_instance_info", {"path": str(newer), "upgrade": True}), "version 99", "(version 2)")
    assert newer.read_bytes() == before
    bad = tmp_path / "bad.runtime.json"
    bad.write_text("{ nope")
    one_line_failure(run_module("kvm_instance_info", {"path": str(bad)}), "not valid JSON", str(bad))
    one_line_failure(run_module("kvm_instance_info", {"name": "ghost", "runtime_dir": str(tmp_path)}), "does not exist")
    assert not Path(tmp_path / "ghost.lock").exists()
