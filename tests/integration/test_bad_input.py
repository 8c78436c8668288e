"""Bad input: one-line failures, nothing left behind (no process, socket or runtime file)."""

from __future__ import annotations

import json

import pytest
from ansible_cli import run_module
from helpers import files_of, qemu_pids_in

BASE_HV = {"accel": "tcg", "kvm_extra": "-S"}


def assert_clean_failure(result: dict, runtime_dir: str, name: str, *words: str) -> None:
    assert result.get("failed"), result
    msg = result["msg"]
    assert "\n" not in msg and "Traceback" not in json.dumps(result), msg
    for word in words:
        assert word in msg, msg
    leftovers = [f for f in files_of(runtime_dir, name) if not f.endswith(".lock")]
    assert leftovers == [], leftovers
    assert qemu_pids_in(runtime_dir) == []


@pytest.mark.parametrize("override,words", [
    ({"disks": [{"path": "/nonexistent/disk.img"}]}, ["/nonexistent/disk.img", "No such file"]),
    ({"nics": [{"mac": "52:54:00:zz:00:01"}]}, ["is not a MAC"]),
    ({"hvparams": {**BASE_HV, "turbo": True}}, ["unknown hvparam 'turbo'"]),
    ({"hvparams": {**BASE_HV, "disk_type": "scsi-block"}, "disks": "PLAIN"}, ["needs a block or SCSI generic device"]),
    ({"hvparams": {**BASE_HV, "kvm_extra": "-S -no-such-option"}}, ["QEMU failed to start", "no-such-option"]),
    ({"hvparams": {**BASE_HV, "machine_type": "q36"}}, ["machine_type='q36' is not supported"]),
    ({"memory": 1}, ["memory must be at least 128"]),
])
def test_bad_instance_input(runtime_dir, make_disk, override, words):
    args = {"name": "bad1", "runtime_dir": runtime_dir, "hvparams": BASE_HV, **override}
    if args.get("disks") == "PLAIN":
        args["disks"] = [{"path": make_disk("plain.img")}]
    assert_clean_failure(run_module("kvm_instance", args), runtime_dir, "bad1", *words)


def test_unusable_kvm_is_a_clean_failure(runtime_dir):
    """accel=kvm where the QEMU user cannot use /dev/kvm (no kvm group here): QEMU's own reason, nothing left."""
    args = {"name": "kvm1", "runtime_dir": runtime_dir, "hvparams": {"accel": "kvm", "kvm_extra": "-S"}}
    res = run_module("kvm_instance", args)
    if not res.get("failed"):  # the QEMU user can use KVM on this host: nothing to prove
        run_module("kvm_instance", {**args, "state": "absent"})
        pytest.skip("KVM is usable by the QEMU user here")
    assert_clean_failure(res, runtime_dir, "kvm1", "QEMU failed to start", "kvm", "/dev/kvm")


def test_occupied_name_and_missing_binary(runtime_dir):
    args = {"name": "occ1", "runtime_dir": runtime_dir, "hvparams": BASE_HV}
    assert run_module("kvm_instance", args)["changed"] is True
    try:
        other = run_module("kvm_instance", {**args, "state": "incoming", "runtime": f"{runtime_dir}/occ1.runtime.json",
                                            "migration_uri": f"unix:{runtime_dir}/m.sock"})
        assert other.get("failed") and "already runs here" in other["msg"] and "\n" not in other["msg"], other
    finally:
        run_module("kvm_instance", {**args, "state": "absent"})
    res = run_module("kvm_instance", {**args, "qemu_binary": "/nonexistent/qemu"})
    assert_clean_failure(res, runtime_dir, "occ1", "not found")
    res = run_module("kvm_instance", {**args, "name": "bad/name"})
    assert res.get("failed") and "instance name" in res["msg"]
