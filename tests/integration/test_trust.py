"""Security and faults: what another user plants, hostile paths, a full disk, racing writers,
a failed migration target, and truthful answers (issue: trustworthy on a shared host)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from ansible_cli import run_module
from faultrun import FaultRun
from helpers import assert_matches_runtime, block_nodes, files_of, q, qemu_pids_in, qmp, read_rt, tcp_uri

NO_GUEST = {"accel": "tcg"}
PAUSED = {"accel": "tcg", "kvm_extra": "-S"}
STRANGER = 12345


def one_line_failure(result: dict, *words: str) -> None:
    assert result.get("failed"), result
    assert "\n" not in result["msg"] and "Traceback" not in json.dumps(result), result["msg"]
    for word in words:
        assert word in result["msg"], result["msg"]


def planted_runtime(directory: Path, name: str, marker: Path) -> None:
    """A runtime file whose kvm_cmd would run a shell command as whoever executes it."""
    rt = {"version": 2, "name": name, "uuid": "11111111-2222-4333-8444-555555555555", "memory": 64, "vcpus": 1,
          "hvparams": {}, "kvm_cmd": ["/bin/sh", "-c", f"id > {marker}"], "kvm_extra": [], "disks": [], "nics": []}
    (directory / f"{name}.runtime.json").write_text(json.dumps(rt))


@pytest.mark.parametrize("owner,mode", [(STRANGER, 0o700), (0, 0o777), (0, 0o770)])
def test_a_runtime_dir_someone_else_can_write_is_refused(tmp_path, owner, mode):
    hostile = tmp_path / "shared"
    hostile.mkdir()
    marker = tmp_path / "ran"
    planted_runtime(hostile, "victim", marker)
    os.chown(hostile, owner, owner)
    os.chmod(hostile, mode)
    before = sorted(p.name for p in hostile.iterdir())
    for state in ("running", "stopped", "absent"):
        res = run_module("kvm_instance", {"name": "victim", "runtime_dir": str(hostile), "state": state, "hvparams": NO_GUEST})
        one_line_failure(res, f"runtime_dir {hostile}", f"mode {mode:04o}", "chmod 0700")
    for module, args in (("kvm_disk_hotplug", {"instance": "victim", "disk": {"path": "/etc/hostname"}}),
                         ("kvm_instance_info", {"name": "victim"}), ("kvm_migrate", {"name": "victim", "target_uri": tcp_uri()})):
        one_line_failure(run_module(module, {**args, "runtime_dir": str(hostile)}), f"runtime_dir {hostile}")
    assert not marker.exists()
    assert sorted(p.name for p in hostile.iterdir()) == before


def test_a_runtime_file_of_another_user_is_never_executed(runtime_dir, tmp_path):
    marker = tmp_path / "ran"
    planted_runtime(Path(runtime_dir), "victim", marker)
    os.chown(f"{runtime_dir}/victim.runtime.json", STRANGER, STRANGER)
    res = run_module("kvm_instance", {"name": "victim", "runtime_dir": runtime_dir, "hvparams": NO_GUEST})
    one_line_failure(res, "victim.runtime.json is owned by uid 12345", "refusing")
    os.chown(f"{runtime_dir}/victim.runtime.json", 0, 0)
    os.chmod(f"{runtime_dir}/victim.runtime.json", 0o666)
    one_line_failure(run_module("kvm_instance", {"name": "victim", "runtime_dir": runtime_dir}), "writable by group or others")
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".serial.log", ".qemu.log", ".lock", ".runtime.json", ".pid", ".pending.json", ".qmp", ".ro.qmp"])
def test_planted_symlinks_are_never_followed(runtime_dir, tmp_path, make_disk, suffix):
    victim = tmp_path / "root-only"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    outside = tmp_path / "created-outside"
    args = {"name": "sl1", "runtime_dir": runtime_dir, "hvparams": NO_GUEST, "disks": [{"path": make_disk("sl1.img")}]}
    for target in (victim, outside):
        link = Path(runtime_dir) / f"sl1{suffix}"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        res = run_module("kvm_instance", args)
        if res.get("failed"):
            one_line_failure(res, "symlink")
        else:
            assert not (Path(runtime_dir) / f"sl1{suffix}").is_symlink()
            run_module("kvm_instance", {**args, "state": "absent"})
        link.unlink(missing_ok=True)
        assert victim.read_text() == "secret\n" and oct(victim.stat().st_mode & 0o777) == "0o600"
        assert not outside.exists()
    assert qemu_pids_in(runtime_dir) == []


def test_incoming_never_removes_anything_but_a_stale_socket(runtime_dir, tmp_path, make_disk):
    src = run_module("kvm_instance", {"name": "in1", "runtime_dir": runtime_dir, "hvparams": PAUSED,
                                      "disks": [{"path": make_disk("in1.img")}]})["instance"]
    target_dir = str(tmp_path / "hv2")
    regular = tmp_path / "precious"
    regular.write_text("keep me")
    link = tmp_path / "link"
    link.symlink_to(regular)
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(tmp_path / "live.sock"))
    live.listen(1)
    try:
        for path, words in ((regular, "is not a socket"), (link, "is not a socket"), (tmp_path / "live.sock", "in use")):
            res = run_module("kvm_instance", {"name": "in1", "runtime_dir": target_dir, "state": "incoming",
                                              "runtime": src["runtime_file"], "migration_uri": f"unix:{path}"})
            one_line_failure(res, words)
        assert regular.read_text() == "keep me" and link.is_symlink() and (tmp_path / "live.sock").exists()
        assert files_of(target_dir, "in1") == []
    finally:
        live.close()
        run_module("kvm_instance", {"name": "in1", "runtime_dir": runtime_dir, "state": "absent"})


@pytest.fixture
def small_runtime_dir(tmp_path):
    path = tmp_path / "small"
    path.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(path)], check=True)
    yield str(path)
    subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_failed_save_unplugs_the_device_again(small_runtime_dir, make_disk):
    inst = run_module("kvm_instance", {"name": "sp1", "runtime_dir": small_runtime_dir,
                                       "hvparams": {**NO_GUEST, "disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci"},
                                       "disks": [{"path": make_disk("sp1-0.img")}]})["instance"]
    before = Path(inst["runtime_file"]).read_bytes()
    nodes = block_nodes(inst["qmp_socket"])
    args = {"instance": "sp1", "runtime_dir": small_runtime_dir, "disk": {"path": make_disk("sp1-1.img")}}
    run = FaultRun("kvm_disk_hotplug", args, stop=("before-save",))
    pid = run.wait("before-save")
    run.stopped(pid)
    filler = Path(small_runtime_dir) / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    run.resume(pid)
    res = run.result()
    one_line_failure(res, "save:", "No space left on device", "unplugged again")
    assert Path(inst["runtime_file"]).read_bytes() == before
    assert block_nodes(inst["qmp_socket"]) == nodes
    assert not (Path(small_runtime_dir) / "sp1.pending.json").exists()
    filler.unlink()
    again = run_module("kvm_disk_hotplug", args)
    assert again["changed"] is True, again
    assert_matches_runtime(inst["qmp_socket"], read_rt(inst["runtime_file"]))
    run_module("kvm_instance", {"name": "sp1", "runtime_dir": small_runtime_dir, "state": "absent"})


def test_absent_racing_starts_leaves_one_consistent_instance(runtime_dir, make_disk):
    """absent removes the lock file while a start waits on it, and a new start arrives after that:
    the two starts must still exclude each other. Exactly one QEMU results, the runtime says it runs,
    and every start reports the live pid."""
    args = {"name": "race1", "runtime_dir": runtime_dir, "hvparams": PAUSED, "disks": [{"path": make_disk("race1.img")}]}
    assert run_module("kvm_instance", args)["changed"] is True
    remover = FaultRun("kvm_instance", {**args, "state": "absent"}, stop=("locked",))
    holder = remover.wait("locked")
    remover.stopped(holder)
    early = FaultRun("kvm_instance", args, mark=("lock-wait",), stop=("locked",))
    early_pid = early.wait("lock-wait")
    assert early.blocked_on_lock(early_pid)
    remover.resume(holder)
    assert remover.result()["changed"] is True  # the lock file it held is gone now
    early.stopped(early.wait("locked"))  # the early start holds the lock (a new lock file)
    late = FaultRun("kvm_instance", args, mark=("lock-wait",), stop=("locked",))
    late_pid = late.wait("lock-wait")
    assert late.blocked_on_lock(late_pid), "a start got the lock while another start held it"
    early.resume(early_pid)
    first = early.result()
    late.resume(late.wait("locked"))
    second = late.result()
    assert (first["changed"], second["changed"]) == (True, False), (first, second)
    live = qemu_pids_in(runtime_dir)
    assert len(live) == 1 and first["instance"]["pid"] == second["instance"]["pid"] == live[0], (first, second, live)
    assert read_rt(f"{runtime_dir}/race1.runtime.json").get("mark") is None
    run_module("kvm_instance", {**args, "state": "absent"})
    assert files_of(runtime_dir, "race1") == []  # no lock file left either


def test_info_answers_while_an_unplug_waits(runtime_dir):
    """The control monitor is busy waiting for DEVICE_DELETED; info uses the read-only monitor."""
    inst = run_module("kvm_instance", {"name": "ro1", "runtime_dir": runtime_dir, "hvparams": PAUSED})["instance"]
    nic = {"instance": "ro1", "runtime_dir": runtime_dir, "nic": {"mac": "52:54:00:00:0c:01", "network": {"type": "user"}}}
    assert run_module("kvm_nic_hotplug", nic)["changed"] is True
    begin = time.monotonic()
    baseline = run_module("kvm_instance_info", {"name": "ro1", "runtime_dir": runtime_dir})
    idle = time.monotonic() - begin
    run = FaultRun("kvm_nic_hotplug", {**nic, "state": "absent", "unplug_timeout": 60}, mark=("unplug-requested",))
    run.wait("unplug-requested")
    begin = time.monotonic()
    busy = run_module("kvm_instance_info", {"name": "ro1", "runtime_dir": runtime_dir})
    took = time.monotonic() - begin
    assert busy["instance"]["alive"] and busy["instance"]["drift"] == baseline["instance"]["drift"] == []
    assert took < idle + 2, (took, idle)
    q(inst["qmp_socket"].replace(".qmp", ".ro.qmp"), "system_reset")  # completes the pending PCI unplug without a guest
    assert run.result()["changed"] is True


def test_present_is_truthful_and_drift_compares_every_property(runtime_dir, make_disk):
    inst = run_module("kvm_instance", {"name": "tr1", "runtime_dir": runtime_dir,
                                       "hvparams": {**PAUSED, "disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci"},
                                       "disks": [{"path": make_disk("tr1-0.img")}]})["instance"]
    ro = inst["qmp_socket"].replace(".qmp", ".ro.qmp")
    disk = {"instance": "tr1", "runtime_dir": runtime_dir, "disk": {"path": make_disk("tr1-1.img"), "uuid": "22222222-2222-4333-8444-555555555555"}}
    plugged = run_module("kvm_disk_hotplug", disk)["device"]
    # QEMU loses the device behind our back: present plugs it again, where it was
    q(ro, "device_del", {"id": plugged["id"]})
    again = run_module("kvm_disk_hotplug", disk)
    assert again["changed"] is True and again["device"] == plugged and any("had lost" in w for w in again["warnings"]), again
    assert_matches_runtime(inst["qmp_socket"], read_rt(inst["runtime_file"]))
    assert run_module("kvm_disk_hotplug", disk)["changed"] is False
    # the same identity with another path or format is an error, never ok
    for change in ({"path": make_disk("tr1-other.img")}, {"format": "qcow2"}, {"mode": "ro"}):
        res = run_module("kvm_disk_hotplug", {**disk, "disk": {**disk["disk"], **change}})
        one_line_failure(res, f"{plugged['id']} is plugged with", "unplug it first")
    # drift: the runtime says another target and another file for a device QEMU has
    path = Path(inst["runtime_file"])
    rt = json.loads(path.read_text())
    rt["disks"][1]["hvinfo"]["scsi-id"] = 5
    rt["disks"][1]["path"] = make_disk("tr1-elsewhere.img")
    path.write_text(json.dumps(rt))
    drift = run_module("kvm_instance_info", {"name": "tr1", "runtime_dir": runtime_dir})["instance"]["drift"]
    assert any("scsi-id 5" in d and "scsi-id 1" in d for d in drift), drift
    assert any("tr1-1.img" in d and "tr1-elsewhere.img" in d for d in drift), drift
    qmp(ro, ("blockdev-add", {"driver": "null-co", "node-name": "stray", "size": 1 << 20}),
        ("device_add", {"driver": "scsi-hd", "id": "stray", "drive": "stray", "bus": "scsi.0", "scsi-id": 9}))
    drift = run_module("kvm_instance_info", {"name": "tr1", "runtime_dir": runtime_dir})["instance"]["drift"]
    assert any("scsi-hd stray" in d and "missing from the runtime" in d for d in drift), drift
    run_module("kvm_instance", {"name": "tr1", "runtime_dir": runtime_dir, "state": "absent"})


def test_stopped_without_runtime_file_and_absent_with_a_damaged_one(runtime_dir):
    args = {"name": "sm1", "runtime_dir": runtime_dir, "hvparams": PAUSED}
    inst = run_module("kvm_instance", args)["instance"]
    os.unlink(inst["runtime_file"])
    res = run_module("kvm_instance", {**args, "state": "stopped", "shutdown_timeout": 1})
    assert res["changed"] is True and not res.get("failed"), res
    assert qemu_pids_in(runtime_dir) == []
    inst = run_module("kvm_instance", args)["instance"]
    Path(inst["runtime_file"]).write_text("{ damaged")
    res = run_module("kvm_instance", {**args, "state": "absent"})
    assert res["changed"] is True and not res.get("failed"), res
    assert qemu_pids_in(runtime_dir) == [] and files_of(runtime_dir, "sm1") == []


def test_runtime_dir_problems_are_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,mode=0700", "tmpfs", str(ro)], check=True)
    try:
        for path, words in ((afile / "rt", "not a directory"), (afile, "is not a directory"), (ro / "rt", "Read-only file system")):
            res = run_module("kvm_instance", {"name": "d1", "runtime_dir": str(path), "hvparams": PAUSED})
            one_line_failure(res, str(path), *words.split("|"))
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_root_mode_is_an_explicit_choice(runtime_dir, make_disk):
    """qemu_user: root runs QEMU as root (for hosts that need it); the default never does."""
    args = {"name": "rm1", "runtime_dir": runtime_dir, "hvparams": PAUSED, "disks": [{"path": make_disk("rm1.img")}]}
    default = run_module("kvm_instance", args)["instance"]
    assert Path(f"/proc/{default['pid']}").stat().st_uid != 0
    run_module("kvm_instance", {**args, "state": "absent"})
    root = run_module("kvm_instance", {**args, "qemu_user": "root"})
    assert root["changed"] is True and Path(f"/proc/{root['instance']['pid']}").stat().st_uid == 0, root
    plugged = run_module("kvm_disk_hotplug", {"instance": "rm1", "runtime_dir": runtime_dir, "disk": {"path": make_disk("rm1-hot.img")}})
    assert plugged["changed"] is True, plugged
    missing = run_module("kvm_instance", {**args, "name": "rm2", "qemu_user": "no-such-user"})
    one_line_failure(missing, "QEMU user 'no-such-user' does not exist", "kvm_host role")
    run_module("kvm_instance", {**args, "state": "absent"})
