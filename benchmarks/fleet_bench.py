"""kvmhv.qemu on a fleet reached over SSH: hotplug against ping by forks, migration with and without shared storage.

Run with `make bench` (or `make bench-fleet`, as root; it brings up its own fleets of tests/fleet, so no other fleet
may run meanwhile). Writes benchmarks/RESULTS-fleet.md. Every figure is a median (min-max) of repeated runs,
each next to its floor measured in the same run:

* hotplug over SSH: `ansible fleet -m kvmhv.qemu.kvm_disk_hotplug` adding one disk to one running instance on
  each of 10 hosts, against `ansible fleet -m ping` to the same hosts with the same interpreter, forks 1, 5, 10;
  the two alternate, connections warm (ControlPersist), and each added disk is unplugged again untimed;
* migration: one instance (the test guest, idle, 128 MiB) with one raw disk of 64 MiB and of 512 MiB, filled
  with random data, moved between two hosts with the kvm_migrate role, back and forth: with copy_storage (disk
  local to each host: the target creates it, the source mirrors it over NBD) against shared storage (the same
  file on /srv/kvmhv-shared). QEMU's own total time and downtime, the mirror's time to READY, and the role's
  wall time (everything: the target's start, the handover, the confirmation).

KVMHV_BENCH_FLEET_REPEAT sets the runs per figure (default 5 for hotplug, 3 migrations per case).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / ".build" / "collections"), str(REPO / "tests" / "fleet"), str(REPO / "tests" / "integration")]

from ansible_cli import ansible_env  # noqa: E402
from fleet import Fleet  # noqa: E402
from fleetrun import HOST_PYTHON, failures, free_port, playbook, results, wheels_dir  # noqa: E402
from guest_report import guest_hvparams, wait_for_report  # noqa: E402

REPEAT = int(os.environ.get("KVMHV_BENCH_FLEET_REPEAT", "5"))
MIGRATIONS = max(2, min(REPEAT, 3))
OUT = REPO / "benchmarks" / "RESULTS-fleet.md"
VENV_BIN = Path(sys.executable).parent
FORKS = (1, 5, 10)


def stats(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def fmt(s: dict[str, float], unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
    return f"{s['median'] * scale:.{digits}f} {unit} ({s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f})"


def say(msg: str) -> None:
    print(f"fleet-bench: {msg}", file=sys.stderr, flush=True)


def prepare(fleet: Fleet) -> None:
    run = playbook(fleet, [{"name": "Prepare", "hosts": "fleet", "gather_facts": False,
                            "roles": [{"role": "kvmhv.qemu.kvm_host", "vars": {"kvm_host_python_wheels_dir": wheels_dir()}}]}])
    if run["rc"]:
        raise RuntimeError(f"kvm_host failed: {failures(run)}")


def adhoc(fleet: Fleet, forks: int, *args: str) -> float:
    """One ad hoc ansible run over the fleet (every host must succeed); its wall time."""
    env = ansible_env({**fleet.env, "ANSIBLE_STDOUT_CALLBACK": "default"})
    env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
    argv = [str(VENV_BIN / "ansible"), "fleet", "-f", str(forks), "-e", f"ansible_python_interpreter={HOST_PYTHON}", "-o", *args]
    begin = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - begin
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stdout[-2000:]} {proc.stderr[-1000:]}")
    return took


def bench_hotplug() -> dict[int, dict[str, Any]]:
    """10 hosts, one light instance each (no guest: the firmware idles); hotplug a SCSI disk on all vs ping."""
    out: dict[int, dict[str, Any]] = {}
    with Fleet(10, storage_size="256M", log=say) as fleet:
        prepare(fleet)
        boot = playbook(fleet, [{"name": "Boot", "hosts": "fleet", "gather_facts": False,
                                 "roles": [{"role": "kvmhv.qemu.kvm_host", "vars": {"kvm_host_python_wheels_dir": wheels_dir()}}],
                                 "tasks": [{"name": "Disks", "changed_when": True,
                                            "ansible.builtin.shell": "for i in $(seq 0 40); do qemu-img create -q -f raw /srv/kvmhv/b$i.img 1M; done"},
                                           {"name": "Instance", "kvmhv.qemu.kvm_instance": {
                                               "name": "bench", "memory": 128, "disks": [{"path": "/srv/kvmhv/b0.img"}],
                                               "hvparams": {"accel": "tcg", "disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci"}}}]}])
        if boot["rc"]:
            raise RuntimeError(f"boot failed: {failures(boot)}")
        adhoc(fleet, 10, "-m", "ping")  # opens every ControlMaster: all runs below are warm
        disk = 1
        for forks in FORKS:
            ping, plug = [], []
            for _rep in range(REPEAT):
                ping.append(adhoc(fleet, forks, "-m", "ping"))
                args = json.dumps({"instance": "bench", "disk": {"path": f"/srv/kvmhv/b{disk}.img"}})
                plug.append(adhoc(fleet, forks, "-m", "kvmhv.qemu.kvm_disk_hotplug", "-a", args))
                adhoc(fleet, 10, "-m", "kvmhv.qemu.kvm_disk_hotplug", "-a", json.dumps({**json.loads(args), "state": "absent"}))
                disk += 1
            out[forks] = {"ping": stats(ping), "hotplug": stats(plug)}
            say(f"forks {forks}: ping {fmt(out[forks]['ping'])}, hotplug {fmt(out[forks]['hotplug'])}")
    return out


def bench_migration() -> dict[tuple[int, str], dict[str, Any]]:
    """Two hosts; per disk size and mode, the instance goes h1 -> h2 -> h1 -> ... MIGRATIONS times."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    with Fleet(2, storage_size="1200M", log=say) as fleet:
        prepare(fleet)
        for size in (64, 512):
            for mode in ("shared", "copy_storage"):
                name = f"m{size}{mode[0]}"
                path = f"/srv/kvmhv-shared/{name}.img" if mode == "shared" else f"/srv/kvmhv/{name}.img"
                fleet.exec("h1", ["dd", "if=/dev/urandom", f"of={path}", "bs=1M", f"count={size}", "status=none"], timeout=300)
                boot = playbook(fleet, [{"name": "Boot", "hosts": "h1", "gather_facts": False,
                                         "roles": [{"role": "kvmhv.qemu.kvm_host", "vars": {"kvm_host_python_wheels_dir": wheels_dir()}}],
                                         "tasks": [{"name": "Instance", "kvmhv.qemu.kvm_instance": {
                                             "name": name, "memory": 128, "disks": [{"path": path}], "hvparams": guest_hvparams()}}]}])
                if boot["rc"]:
                    raise RuntimeError(f"boot failed: {failures(boot)}")
                wait_for_report(str(fleet.path("h1", f"/run/kvmhv/{name}.serial.log")), lambda r: len(r.block) == 1, timeout=300)
                totals, downs, readies, walls = [], [], [], []
                hosts = ["h1", "h2"]
                for rep in range(MIGRATIONS):
                    source, target = hosts[rep % 2], hosts[(rep + 1) % 2]
                    port = free_port(fleet, target)
                    plays = [{"name": "Hosts", "hosts": "fleet", "gather_facts": False,
                              "roles": [{"role": "kvmhv.qemu.kvm_host", "vars": {"kvm_host_python_wheels_dir": wheels_dir()}}]},
                             {"name": "Migrate", "hosts": source, "gather_facts": False,
                              "tasks": [{"name": "Migrate", "ansible.builtin.include_role": {"name": "kvmhv.qemu.kvm_migrate"},
                                         "vars": {"kvm_migrate_name": name, "kvm_migrate_source": source, "kvm_migrate_target": target,
                                                  "kvm_migrate_port": port, "kvm_migrate_nbd_port": port + 1,
                                                  "kvm_migrate_copy_storage": mode == "copy_storage",
                                                  "kvm_migrate_remove_source_disks": mode == "copy_storage"}}]}]
                    begin = time.perf_counter()
                    run = playbook(fleet, plays)
                    wall = time.perf_counter() - begin
                    if run["rc"]:
                        raise RuntimeError(f"migration failed: {failures(run)}")
                    migration = results(run, "Migrate and stop the source once the target runs")[source]["migration"]
                    totals.append(migration["total_time_ms"] / 1000)
                    downs.append(migration["downtime_ms"] / 1000)
                    walls.append(wall)
                    if mode == "copy_storage":
                        readies.append(migration["storage"]["mirror_ready_ms"] / 1000)
                    say(f"{size} MiB {mode} {source}->{target}: total {migration['total_time_ms']} ms, "
                        f"downtime {migration['downtime_ms']} ms, role {wall:.1f} s")
                last = hosts[MIGRATIONS % 2]
                playbook(fleet, [{"name": "Remove", "hosts": last, "gather_facts": False,
                                  "roles": [{"role": "kvmhv.qemu.kvm_host", "vars": {"kvm_host_python_wheels_dir": wheels_dir()}}],
                                  "tasks": [{"name": "Absent", "kvmhv.qemu.kvm_instance": {"name": name, "state": "absent"}},
                                            {"name": "Image", "ansible.builtin.file": {"path": path, "state": "absent"}}]}])
                out[(size, mode)] = {"total": stats(totals), "downtime": stats(downs), "wall": stats(walls),
                                     "ready": stats(readies) if readies else None}
    return out


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.1f} at the end"


def main() -> None:
    started = time.monotonic()
    hp = bench_hotplug()
    mig = bench_migration()
    lines = ["# Fleet benchmark results", "",
             f"`make bench` (benchmarks/fleet_bench.py) on this machine ({machine()}): hosts are network namespaces "
             "on one bridge, each with its own sshd, reached by Ansible over SSH (pipelining, ControlPersist); QEMU "
             f"7.2 under TCG. Median (min-max) of {REPEAT} runs per hotplug figure and {MIGRATIONS} migrations per "
             "case; each figure next to its floor from the same run. Wall times include Ansible's own start-up "
             f"(about 1-2 s here). The whole run took {time.monotonic() - started:.0f} s.", "",
             "## One disk hotplug on each of 10 hosts over SSH, against `ansible -m ping`", "",
             "The same 10 hosts, the same interpreter (the venv kvm_host made), warm connections; the hotplug adds "
             "one SCSI disk to a running instance on every host (lock, runtime file, allocation, blockdev-add, "
             "device_add, verify, atomic save), then the disk is unplugged again (untimed).", "",
             "| forks | `ansible -m kvmhv.qemu.kvm_disk_hotplug` | `ansible -m ping` (floor) | ratio |", "|---|---|---|---|"]
    for forks, row in hp.items():
        lines.append(f"| {forks} | {fmt(row['hotplug'])} | {fmt(row['ping'])} | {row['hotplug']['median'] / row['ping']['median']:.2f} |")
    lines += ["", "## Migration between two hosts: copy_storage against shared storage", "",
              "The test guest (idle, 128 MiB RAM) with one raw disk filled with random data; the kvm_migrate role "
              "moves it back and forth. copy_storage: the disk is local to each host, the target creates it and "
              "the source mirrors it over NBD (write-blocking) before RAM moves, with pause-before-switchover; the "
              "source's image is removed after each move (remove_source_disks) so it can come back. Shared: the "
              "same file on /srv/kvmhv-shared. Total time and downtime are QEMU's (query-migrate on the source: "
              "with copy_storage the total counts from `migrate`, after the mirror is READY, and the downtime "
              "includes the final sync at pre-switchover); the mirror's time to READY comes before that; the "
              "role's wall time is everything, from the first ssh to the confirmation on the target.", "",
              "| disk | mode | mirror to READY | migration total | downtime | role wall time |", "|---|---|---|---|---|---|"]
    for (size, mode), row in mig.items():
        ready = fmt(row["ready"], "s") if row["ready"] else "-"
        lines.append(f"| {size} MiB | {mode} | {ready} | {fmt(row['total'], 'ms', 1000, 0)} | {fmt(row['downtime'], 'ms', 1000, 0)} "
                     f"| {fmt(row['wall'], 's', 1, 1)} |")
    lines += ["", "| disk | copy_storage / shared: downtime | role wall time | moved per second of copy (disk / (READY + total)) |",
              "|---|---|---|---|"]
    for size in (64, 512):
        copy, shared = mig[(size, "copy_storage")], mig[(size, "shared")]
        moved = size / (copy["ready"]["median"] + copy["total"]["median"])
        lines.append(f"| {size} MiB | {copy['downtime']['median'] / shared['downtime']['median']:.2f} "
                     f"| {copy['wall']['median'] / shared['wall']['median']:.2f} | {moved:.0f} MiB/s |")
    lines.append("")
    OUT.write_text("\n".join(lines))
    say(f"wrote {OUT}")


if __name__ == "__main__":
    main()
