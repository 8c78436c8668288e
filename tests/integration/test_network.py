"""Guest traffic over a bridge: tap NICs at start, after a hotplug and after live migration.

Everything runs inside network namespaces the test creates (one per "host",
each with its own bridge at 10.75.0.1/16): the module, QEMU, the taps and
the guest's traffic never leave them. The guest brings up NICs whose MAC
starts with 52:54:00:4b and pings 10.75.0.1 through each of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

import pytest
from ansible_cli import run_module
from guest_report import guest_hvparams, latest_report, wait_for_report

BRIDGE = "kvnbr0"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def host_ns():
    """make(name) -> a network namespace with a bridge 10.75.0.1/16; all torn down afterwards."""
    made: list[str] = []

    def make(name: str) -> str:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        ip("netns", "add", name)
        made.append(name)
        for args in (("link", "set", "lo", "up"), ("link", "add", BRIDGE, "type", "bridge"),
                     ("addr", "add", "10.75.0.1/16", "dev", BRIDGE), ("link", "set", BRIDGE, "up")):
            ip("-n", name, *args)
        return name

    yield make
    for name in made:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout.split()
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False)


def rx_bytes(ns: str, ifname: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{ifname}/statistics/rx_bytes"],
                         check=True, capture_output=True, text=True).stdout
    return int(out)


def pings(log: str, nics: dict[str, str], after_seq: int = 0, timeout: float = 90):
    """The first report after ``after_seq`` where every NIC (by MAC) pings the host side."""
    def ok(report) -> bool:
        by_mac = {mac: name for name, mac in report.net.items()}
        return all(mac in by_mac and report.ping.get(by_mac[mac]) == "ok" for mac in nics.values())
    return wait_for_report(log, ok, timeout, after_seq=after_seq)


@pytest.mark.xdist_group("fixed-host-names")  # fixed netns names: one worker runs these one after the other
def test_tap_nics_carry_traffic_at_start_after_hotplug_and_after_migration(runtime_dir, tmp_path, make_disk, host_ns):
    hv1, hv2 = host_ns("kvn-hv1"), host_ns("kvn-hv2")
    target_dir = str(tmp_path / "hv2")
    nics = {"kvn0": "52:54:00:4b:00:10"}
    args = {"name": "net1", "runtime_dir": runtime_dir, "disks": [{"path": make_disk("net1.img", 2)}],
            "nics": [{"mac": nics["kvn0"], "network": {"type": "tap", "ifname": "kvn0", "bridge": BRIDGE}}],
            "hvparams": guest_hvparams()}
    started = run_module("kvm_instance", args, netns=hv1)
    assert started["changed"] is True, started
    inst = started["instance"]
    link = ip("-n", hv1, "link", "show", "kvn0")
    assert f"master {BRIDGE}" in link and ",UP," in link, link
    pings(inst["serial_log"], nics)  # at start

    nics["kvn1"] = "52:54:00:4b:00:11"
    plugged = run_module("kvm_nic_hotplug", {"instance": "net1", "runtime_dir": runtime_dir,
                                             "nic": {"mac": nics["kvn1"], "network": {"type": "tap", "ifname": "kvn1", "bridge": BRIDGE}}},
                         netns=hv1)
    assert plugged["changed"] is True, plugged
    seen = pings(inst["serial_log"], nics)  # after a hotplug

    # recovery brings the tap back on its bridge, up
    os.kill(inst["pid"], signal.SIGKILL)
    recovered = run_module("kvm_instance", args, netns=hv1)
    assert recovered["recovered"] is True, recovered
    for tap in nics:
        link = ip("-n", hv1, "link", "show", tap)
        assert f"master {BRIDGE}" in link and ",UP," in link, link
    seen = pings(inst["serial_log"], nics)

    sockdir = tempfile.mkdtemp(prefix="kvn-mig-")
    shutil.chown(sockdir, "kvmhv-qemu", "kvmhv-qemu")  # QEMU (unprivileged) creates the listening socket there
    uri = f"unix:{sockdir}/net1.sock"
    try:
        tgt = run_module("kvm_instance", {"name": "net1", "runtime_dir": target_dir, "state": "incoming",
                                          "runtime": inst["runtime_file"], "migration_uri": uri}, netns=hv2)
        assert tgt["changed"] is True, tgt
        moved = run_module("kvm_migrate", {"name": "net1", "runtime_dir": runtime_dir, "target_uri": uri}, netns=hv1)
        assert moved["changed"] is True and moved["migration"]["status"] == "completed", moved
        log = tgt["instance"]["serial_log"]
        after = latest_report(log) or seen
        before_rx = {tap: rx_bytes(hv2, tap) for tap in nics}
        pings(log, nics, after_seq=after.seq)  # after migration: replies can only come from hv2's bridge now
        assert all(rx_bytes(hv2, tap) > before_rx[tap] for tap in nics)
    finally:
        run_module("kvm_instance", {"name": "net1", "runtime_dir": target_dir, "state": "absent"}, netns=hv2)
        run_module("kvm_instance", {"name": "net1", "runtime_dir": runtime_dir, "state": "absent"}, netns=hv1)
        shutil.rmtree(sockdir, ignore_errors=True)
