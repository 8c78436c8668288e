"""Live migration between two runtime directories (two "hosts") with real QEMU and the guest."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import paths
from ansible_cli import run_module
from guest_report import guest_dir, guest_hvparams, latest_report, wait_for_report
from helpers import alive, assert_matches_runtime, files_of, kill_instance, q, read_rt, tcp_uri
from polling import until


def boot(runtime_dir: str, name: str, make_disk, **hv) -> dict:
    args = {"name": name, "runtime_dir": runtime_dir,
            "disks": [{"path": make_disk(f"{name}-0.img", 2)}, {"path": make_disk(f"{name}-1.img", 3)}],
            "nics": [{"mac": "52:54:00:00:02:01"}], "hvparams": guest_hvparams(**hv)}
    res = run_module("kvm_instance", args)
    assert res["changed"] is True, res
    wait_for_report(res["instance"]["serial_log"], lambda r: len(r.block) == 2)
    return res["instance"]


def incoming(name: str, target_dir: str, source_file: str, uri: str) -> dict:
    return run_module("kvm_instance", {"name": name, "runtime_dir": target_dir, "state": "incoming",
                                       "runtime": source_file, "migration_uri": uri})


def test_migrate_keeps_guest_and_devices(runtime_dir, tmp_path, make_disk):
    src = boot(runtime_dir, "mig1", make_disk, disk_type="scsi-hd", scsi_controller_type="virtio-scsi-pci")
    seen = latest_report(src["serial_log"])
    target_dir = str(tmp_path / "hv2")
    uri = tcp_uri()
    tgt = incoming("mig1", target_dir, src["runtime_file"], uri)
    assert tgt["changed"] is True and tgt["instance"]["status"] == "incoming", tgt
    assert tgt["instance"]["disks"] == src["disks"] and tgt["instance"]["nics"] == src["nics"]
    assert incoming("mig1", target_dir, src["runtime_file"], uri)["changed"] is False
    try:
        res = run_module("kvm_migrate", {"name": "mig1", "runtime_dir": runtime_dir, "target_uri": uri})
        assert res["changed"] is True and res["migration"]["status"] == "completed", res
        assert not alive(src["pid"]) and files_of(runtime_dir, "mig1") == []
        after = wait_for_report(tgt["instance"]["serial_log"], lambda r: True, after_seq=seen.seq)
        assert after.block == seen.block and after.net == seen.net
        info = run_module("kvm_instance_info", {"name": "mig1", "runtime_dir": target_dir})["instance"]
        assert info["alive"] and info["drift"] == []
        assert_matches_runtime(info["qmp_socket"], info["runtime"])
        # Not confirmed yet (no second state=incoming): a hotplug on the target confirms it in the same call, then plugs.
        assert info["runtime"]["mark"] == "incoming"
        plugged = run_module("kvm_disk_hotplug", {"instance": "mig1", "runtime_dir": target_dir,
                                                  "disk": {"path": make_disk("mig1-2.img", 4)}})
        assert plugged["changed"] is True and plugged["device"]["hvinfo"]["bus"] == "scsi.0", plugged
        assert "mark" not in read_rt(info["runtime_file"])
        wait_for_report(tgt["instance"]["serial_log"], lambda r: len(r.block) == 3, after_seq=after.seq)
    finally:
        run_module("kvm_instance", {"name": "mig1", "runtime_dir": target_dir, "state": "absent"})


def test_mismatched_target_fails_and_source_stays_up(runtime_dir, tmp_path, make_disk):
    src = boot(runtime_dir, "mig2", make_disk)
    wrong = json.loads(Path(src["runtime_file"]).read_text())
    wrong["disks"][1]["hvinfo"]["addr"] = "0x18"  # the target would have disk 1 elsewhere
    wrong_file = tmp_path / "wrong.runtime.json"
    wrong_file.write_text(json.dumps(wrong))
    target_dir = str(tmp_path / "hv2")
    uri = tcp_uri()
    assert incoming("mig2", target_dir, str(wrong_file), uri)["changed"] is True
    before = Path(src["runtime_file"]).read_bytes()
    res = run_module("kvm_migrate", {"name": "mig2", "runtime_dir": runtime_dir, "target_uri": uri, "timeout": 60})
    assert res.get("failed") and "migrate" in res["msg"] and "source keeps running" in res["msg"], res
    assert "\n" not in res["msg"]
    assert alive(src["pid"]) and Path(src["runtime_file"]).read_bytes() == before
    last = latest_report(src["serial_log"])
    wait_for_report(src["serial_log"], lambda r: True, after_seq=last.seq)  # the guest still runs
    refused = run_module("kvm_migrate", {"name": "mig2", "runtime_dir": runtime_dir, "target_uri": tcp_uri()})
    assert refused.get("failed") and alive(src["pid"]), refused
    # the target that failed to load is marked: never booted as a second copy, shown as failed
    target = wrong_file.parent / "hv2" / "mig2.runtime.json"
    assert read_rt(str(target))["mark"] == "incoming"
    info = run_module("kvm_instance_info", {"name": "mig2", "runtime_dir": target_dir})["instance"]
    assert info["status"] == "incoming-failed" and info["alive"] is False, info
    again = run_module("kvm_instance", {"name": "mig2", "runtime_dir": target_dir, "hvparams": guest_hvparams()})
    assert again.get("failed") and "migration never completed" in again["msg"] and "state=absent" in again["msg"], again
    assert run_module("kvm_instance", {"name": "mig2", "runtime_dir": target_dir, "state": "absent"})["changed"] is True
    assert files_of(target_dir, "mig2") == []
    run_module("kvm_instance", {"name": "mig2", "runtime_dir": runtime_dir, "state": "absent"})


def test_legacy_runtime_instance_migrates(runtime_dir, tmp_path, make_disk):
    """A QEMU started by the legacy tooling (ids hot*-pci-N, -drive) migrates to a target built from its legacy file."""
    where = paths(runtime_dir, "old1")
    guest = guest_dir()
    disks = [make_disk("old-0.img", 2), make_disk("old-1.img", 3)]
    nic_uuid, disk_uuids = "11111111-2222-4333-8444-555555555555", ["aaaaaaaa-2222-4333-8444-555555555555", "bbbbbbbb-2222-4333-8444-555555555555"]
    hv = guest_hvparams()
    kvm_cmd = ["qemu-system-x86_64", "-name", "old1", "-m", "256", "-smp", "1", "-nodefaults", "-display", "none",
               "-machine", "pc,accel=tcg", "-kernel", f"{guest}/vmlinuz", "-initrd", f"{guest}/initrd.img",
               "-append", hv["kernel_args"], "-pidfile", "/var/run/ganeti/old1.pid", "-daemonize"]
    legacy = [kvm_cmd,
              [{"mac": "52:54:00:00:03:01", "uuid": nic_uuid, "pci": 18}],
              {"disk_type": "paravirtual", "nic_type": "paravirtual", "kernel_path": f"{guest}/vmlinuz", "vnc_bind_address": None},
              [[{"uuid": disk_uuids[i], "mode": "rw", "pci": 16 + i}, disks[i], None] for i in range(2)]]
    Path(where.runtime).write_text(json.dumps(legacy))
    argv = [a for a in kvm_cmd if a not in ("-pidfile", "/var/run/ganeti/old1.pid", "-daemonize")]
    for i, path in enumerate(disks):
        dev_id = f"hotdisk-{disk_uuids[i][:8]}-pci-{16 + i}"
        argv += ["-drive", f"file={path},format=raw,if=none,id={dev_id}",
                 "-device", f"virtio-blk-pci,id={dev_id},drive={dev_id},bus=pci.0,addr={hex(16 + i)}"]
    argv += ["-device", "virtio-net-pci,id=hotnic-11111111-pci-18,bus=pci.0,addr=0x12,mac=52:54:00:00:03:01",
             "-qmp", f"unix:{where.qmp},server=on,wait=off", "-pidfile", where.pidfile, "-daemonize",
             "-serial", f"file:{where.serial}"]
    subprocess.run(argv, check=True)
    try:
        seen = wait_for_report(where.serial, lambda r: len(r.block) == 2 and len(r.net) == 1)
        target_dir = str(tmp_path / "hv2")
        uri = tcp_uri()
        tgt = incoming("old1", target_dir, where.runtime, uri)
        assert tgt["changed"] is True, tgt
        assert [d["id"] for d in tgt["instance"]["disks"]] == ["hotdisk-aaaaaaaa-pci-16", "hotdisk-bbbbbbbb-pci-17"]
        res = run_module("kvm_migrate", {"name": "old1", "runtime_dir": runtime_dir, "target_uri": uri})
        assert res["changed"] is True and res["migration"]["status"] == "completed", res
        after = wait_for_report(tgt["instance"]["serial_log"], lambda r: True, after_seq=seen.seq)
        assert after.block == seen.block and after.net == seen.net
    finally:
        kill_instance(runtime_dir, "old1")
        run_module("kvm_instance", {"name": "old1", "runtime_dir": str(tmp_path / "hv2"), "state": "absent"})
    assert not os.path.exists(where.qmp)


def test_source_dying_mid_migration_is_reported_at_once(runtime_dir, tmp_path, make_disk):
    """The source QEMU killed while a slow migration runs: the module fails when QMP drops, not at its timeout."""
    src = boot(runtime_dir, "mig3", make_disk)
    target_dir = str(tmp_path / "hv2")
    uri = tcp_uri()
    tgt = incoming("mig3", target_dir, src["runtime_file"], uri)["instance"]
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            job = pool.submit(run_module, "kvm_migrate", {"name": "mig3", "runtime_dir": runtime_dir, "target_uri": uri,
                                                          "max_bandwidth": 1, "timeout": 600})

            def receiving() -> bool:  # the target is receiving
                assert not job.done(), job.result()
                return q(tgt["qmp_socket"], "query-migrate").get("status") == "active"

            until(receiving, 120, "the migration never became active", 0.1)
            os.kill(src["pid"], signal.SIGKILL)
            res = job.result()
        assert res.get("failed") and res["msg"].startswith(f"migrate: the source QEMU exited during the migration to {uri}"), res
        assert "\n" not in res["msg"] and time.monotonic() - started < 120
        assert Path(src["runtime_file"]).exists()  # nothing is removed on failure
    finally:
        run_module("kvm_instance", {"name": "mig3", "runtime_dir": target_dir, "state": "absent"})
        run_module("kvm_instance", {"name": "mig3", "runtime_dir": runtime_dir, "state": "absent"})
