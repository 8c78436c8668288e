"""Six hotplugs into one instance at the same time, as separate ansible processes."""

from __future__ import annotations

import json
import subprocess

from ansible_cli import ansible_env, run_module
from helpers import assert_matches_runtime, read_rt


def test_six_parallel_hotplugs(runtime_dir, make_disk):
    res = run_module("kvm_instance", {"name": "c1", "runtime_dir": runtime_dir, "hvparams": {"accel": "tcg", "kvm_extra": "-S"}})
    inst = res["instance"]
    try:
        procs = []
        for i in range(6):
            if i % 2:
                module, args = "kvm_nic_hotplug", {"nic": {"mac": f"52:54:00:00:07:0{i}"}}
            else:
                module, args = "kvm_disk_hotplug", {"disk": {"path": make_disk(f"c{i}.img")}}
            argv = ["ansible", "localhost", "-c", "local", "-i", "localhost,", "-m", f"kvmhv.qemu.{module}",
                    "-a", json.dumps({"instance": "c1", "runtime_dir": runtime_dir, **args})]
            procs.append(subprocess.Popen(argv, env=ansible_env(), stdout=subprocess.PIPE, text=True))
        results = [json.loads(p.communicate(timeout=300)[0])["plays"][0]["tasks"][0]["hosts"]["localhost"] for p in procs]
        assert all(r.get("changed") is True for r in results), [r.get("msg") for r in results]
        slots = sorted(r["device"]["hvinfo"]["addr"] for r in results)
        assert slots == [f"0x{s:02x}" for s in range(0x10, 0x16)]
        rt = read_rt(inst["runtime_file"])
        assert len(rt["disks"]) == 3 and len(rt["nics"]) == 3
        assert_matches_runtime(inst["qmp_socket"], rt)
    finally:
        run_module("kvm_instance", {"name": "c1", "runtime_dir": runtime_dir, "state": "absent"})
