"""The model's proof: after a long sequence of mixed plugs and unplugs, live migration succeeds
and the guest on the target sees exactly the same devices."""

from __future__ import annotations

from ansible_cli import run_module
from guest_report import guest_hvparams, wait_for_report
from helpers import assert_matches_runtime, read_rt, tcp_uri


def test_migrate_after_eleven_hotplug_operations(runtime_dir, tmp_path, make_disk):
    boot = run_module("kvm_instance", {"name": "pm1", "runtime_dir": runtime_dir, "disks": [{"path": make_disk("b.img", 2)}],
                                       "nics": [{"mac": "52:54:00:00:08:00"}],
                                       "hvparams": guest_hvparams(disk_type="scsi-hd", scsi_controller_type="virtio-scsi-pci")})
    inst = boot["instance"]
    log = inst["serial_log"]
    wait_for_report(log, lambda r: len(r.block) == 1 and len(r.net) == 1)
    base = {"instance": "pm1", "runtime_dir": runtime_dir}
    disk = {n: make_disk(f"{n}.img", size) for n, size in (("d1", 3), ("d2", 4), ("d3", 5), ("d4", 6), ("d5", 7))}
    ops = [
        ("kvm_disk_hotplug", {"disk": {"path": disk["d1"]}}),
        ("kvm_disk_hotplug", {"disk": {"path": disk["d2"]}}),
        ("kvm_nic_hotplug", {"nic": {"mac": "52:54:00:00:08:01"}}),
        ("kvm_disk_hotplug", {"disk": {"path": disk["d3"]}}),
        ("kvm_nic_hotplug", {"nic": {"mac": "52:54:00:00:08:02", "network": {"type": "user"}}}),
        ("kvm_disk_hotplug", {"state": "absent", "disk": {"path": disk["d2"]}}),
        ("kvm_nic_hotplug", {"state": "absent", "nic": {"mac": "52:54:00:00:08:01"}}),
        ("kvm_disk_hotplug", {"disk": {"path": disk["d4"]}}),
        ("kvm_nic_hotplug", {"nic": {"mac": "52:54:00:00:08:03"}}),
        ("kvm_disk_hotplug", {"state": "absent", "disk": {"path": disk["d1"]}}),
        ("kvm_disk_hotplug", {"disk": {"path": disk["d5"]}}),
    ]
    for module, args in ops:
        res = run_module(module, {**base, **args})
        assert res["changed"] is True and not res.get("failed"), (module, args, res.get("msg"))
    rt = read_rt(inst["runtime_file"])
    assert sorted(d["hvinfo"]["scsi-id"] for d in rt["disks"]) == [0, 1, 2, 3]  # holes refilled
    assert sorted(n["hvinfo"]["addr"] for n in rt["nics"]) == ["0x11", "0x12", "0x13"]  # the SCSI controller has 0x10
    assert_matches_runtime(inst["qmp_socket"], rt)
    want_sizes = {4096, 10240, 12288, 14336}
    want_macs = {"52:54:00:00:08:00", "52:54:00:00:08:02", "52:54:00:00:08:03"}
    seen = wait_for_report(log, lambda r: set(r.disks_by_size()) == want_sizes and r.macs() == want_macs, 20)

    target_dir = str(tmp_path / "hv2")
    uri = tcp_uri()
    tgt = run_module("kvm_instance", {"name": "pm1", "runtime_dir": target_dir, "state": "incoming",
                                      "runtime": inst["runtime_file"], "migration_uri": uri})
    assert tgt["changed"] is True, tgt
    try:
        res = run_module("kvm_migrate", {"name": "pm1", "runtime_dir": runtime_dir, "target_uri": uri})
        assert res["changed"] is True and res["migration"]["status"] == "completed", res
        after = wait_for_report(tgt["instance"]["serial_log"], lambda r: True, after_seq=seen.seq)
        assert after.block == seen.block and after.net == seen.net
        moved = read_rt(tgt["instance"]["runtime_file"])
        assert [d["hvinfo"] for d in moved["disks"] + moved["nics"]] == [d["hvinfo"] for d in rt["disks"] + rt["nics"]]
        assert_matches_runtime(tgt["instance"]["qmp_socket"], moved)
    finally:
        run_module("kvm_instance", {"name": "pm1", "runtime_dir": target_dir, "state": "absent"})
