"""kvm_instance converges a running instance's disks and NICs live: many changes in one task.

Adds go in one burst (all or nothing), unplugs are requested together and
awaited concurrently, check and diff mode plan without touching anything,
and a second identical run changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from ansible_cli import run_module
from guest_report import guest_hvparams, latest_report, wait_for_report
from helpers import assert_matches_runtime, block_nodes, q, read_rt, tcp_uri


def disk_list(paths: list[str], kind: str | None = None) -> list[dict]:
    return [{"path": p, **({"type": kind} if kind else {})} for p in paths]


def test_twenty_disks_and_four_nics_in_one_task_then_purge(runtime_dir, tmp_path, make_disk):
    boot = make_disk("boot.img", 1)
    pci = [make_disk(f"p{i}.img", 2 + i) for i in range(10)]
    scsi = [make_disk(f"s{i}.img", 20 + i) for i in range(10)]
    nics = [{"mac": f"52:54:00:00:0e:{i:02x}", "network": {"type": "user"}} for i in range(4)]
    args = {"name": "cv1", "runtime_dir": runtime_dir, "memory": 384, "disks": disk_list([boot]),
            "hvparams": guest_hvparams(scsi_controller_type="virtio-scsi-pci")}
    inst = run_module("kvm_instance", args)["instance"]
    wait_for_report(inst["serial_log"], lambda r: len(r.block) == 1)
    wanted = {**args, "disks": disk_list([boot]) + disk_list(pci) + disk_list(scsi, "scsi-hd"), "nics": nics}

    before = Path(inst["runtime_file"]).read_bytes()
    plan = run_module("kvm_instance", wanted, check=True, diff=True)
    assert plan["changed"] is True and len(plan["devices"]["plug"]) == 1 + 20 + 4  # the SCSI controller, disks, NICs
    assert Path(inst["runtime_file"]).read_bytes() == before and len(block_nodes(inst["qmp_socket"])) == 1
    assert "disk-" in plan["diff"]["after"] and plan["diff"]["after"].count("\n") == 1 + 1 + 25

    done = run_module("kvm_instance", wanted, diff=True)
    assert done["changed"] is True and done["devices"]["plug"] == plan["devices"]["plug"], done  # as planned
    sizes = {(2 + i) * 2048 for i in range(10)} | {(20 + i) * 2048 for i in range(10)}
    macs = {n["mac"] for n in nics}
    wait_for_report(inst["serial_log"], lambda r: sizes <= set(r.disks_by_size()) and macs <= r.macs(), 180)
    rt = read_rt(inst["runtime_file"])
    assert_matches_runtime(inst["qmp_socket"], rt)
    again = run_module("kvm_instance", wanted)
    assert again["changed"] is False, again

    # purge: ten PCI disks (the guest acknowledges each unplug) and ten SCSI disks, in one task
    kept = {**wanted, "disks": disk_list([boot]), "purge": True}
    begin = time.monotonic()
    purged = run_module("kvm_instance", kept)
    took = time.monotonic() - begin
    assert purged["changed"] is True and len(purged["devices"]["unplug"]) == 20, purged
    wait_for_report(inst["serial_log"], lambda r: not ({(2 + i) * 2048 for i in range(10)} & set(r.disks_by_size())), 60)
    rt = read_rt(inst["runtime_file"])
    assert len(rt["disks"]) == 1 and len(rt["nics"]) == 4
    assert_matches_runtime(inst["qmp_socket"], rt)
    assert block_nodes(inst["qmp_socket"]) == {rt["disks"][0]["hvinfo"]["id"]}
    assert took < 60, took  # concurrent: not twenty waits in a row

    # live migration after the mixed converge
    target_dir, uri = str(tmp_path / "hv2"), tcp_uri()
    seen = latest_report(inst["serial_log"])
    tgt = run_module("kvm_instance", {"name": "cv1", "runtime_dir": target_dir, "state": "incoming",
                                      "runtime": inst["runtime_file"], "migration_uri": uri})
    assert run_module("kvm_migrate", {"name": "cv1", "runtime_dir": runtime_dir, "target_uri": uri})["changed"] is True
    after = wait_for_report(tgt["instance"]["serial_log"], lambda r: True, 60)
    assert after.block == seen.block and after.macs() == seen.macs()
    run_module("kvm_instance", {"name": "cv1", "runtime_dir": target_dir, "state": "absent"})


def test_a_burst_with_one_bad_device_leaves_everything_as_it_was(runtime_dir, make_disk):
    boot = make_disk("boot.img", 1)
    args = {"name": "cv2", "runtime_dir": runtime_dir, "disks": disk_list([boot]), "hvparams": guest_hvparams()}
    inst = run_module("kvm_instance", args)["instance"]
    wait_for_report(inst["serial_log"], lambda r: len(r.block) == 1)
    before = Path(inst["runtime_file"]).read_bytes()
    nodes, sets = block_nodes(inst["qmp_socket"]), q(inst["qmp_socket"], "query-fdsets")
    good = [make_disk(f"g{i}.img", 2 + i) for i in range(9)]
    # a missing image among ten: refused while handing over, before any device reaches QEMU
    missing = run_module("kvm_instance", {**args, "disks": disk_list([boot, *good[:5], "/nonexistent/x.img", *good[5:]])})
    assert missing.get("failed") and "/nonexistent/x.img" in missing["msg"], missing
    assert Path(inst["runtime_file"]).read_bytes() == before and block_nodes(inst["qmp_socket"]) == nodes
    # QEMU refuses one device in the middle of the burst (a raw file said to be qcow2): every device of it leaves again
    liar = {"path": make_disk("liar.img", 12), "format": "qcow2"}
    refused = run_module("kvm_instance", {**args, "disks": [*disk_list([boot, *good[:5]]), liar, *disk_list(good[5:])]})
    assert refused.get("failed") and "blockdev-add" in refused["msg"], refused
    assert Path(inst["runtime_file"]).read_bytes() == before
    assert block_nodes(inst["qmp_socket"]) == nodes and q(inst["qmp_socket"], "query-fdsets") == sets
    assert_matches_runtime(inst["qmp_socket"], read_rt(inst["runtime_file"]))
    wait_for_report(inst["serial_log"], lambda r: set(r.disks_by_size()) == {2048}, 60)  # the guest saw them go
    run_module("kvm_instance", {**args, "state": "absent"})


def test_an_unplug_that_times_out_stays_recorded_and_adds_go_around_it(runtime_dir, make_disk):
    """Without a guest OS no PCI unplug is acknowledged: that device stays (recorded, named in the failure)
    and the adds of the same task take other addresses instead of colliding with it."""
    first, second = make_disk("a.img", 2), make_disk("b.img", 3)
    args = {"name": "cv3", "runtime_dir": runtime_dir, "hvparams": {"accel": "tcg"}, "disks": disk_list([first])}
    inst = run_module("kvm_instance", args)["instance"]
    res = run_module("kvm_instance", {**args, "disks": disk_list([second]), "purge": True, "unplug_timeout": 2})
    assert res.get("failed") and "did not leave and stay recorded" in res["msg"], res
    rt = read_rt(inst["runtime_file"])
    assert [d["path"] for d in rt["disks"]] == [first, second]
    assert rt["disks"][0]["hvinfo"]["addr"] != rt["disks"][1]["hvinfo"]["addr"]
    assert_matches_runtime(inst["qmp_socket"], rt)
    run_module("kvm_instance", {**args, "state": "absent"})
