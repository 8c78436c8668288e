"""The collection on a real fleet: stock hosts reached over SSH, prepared by kvm_host, live migration over TCP
between them with and without shared storage, the failures that must leave the source untouched, and the
fleet playbooks.

One fleet for the module (three hosts; h3's /srv/kvmhv has only 16 MiB). The tests run in order: kvm_host
first (every later play relies on the hosts it prepared), each test removes its instances at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet import Fleet
from ansible_cli import REPO
from fleetrun import HOST_PYTHON, changed, failures, free_port, host_files, host_qemus, host_runtime, playbook, results, wheels_dir
from guest_report import check_pattern_image, guest_hvparams, latest_report, wait_for_report
from qemu.qmp import QMPClient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root")

PATTERN_MIB = 16  # the guest writes and reads back this disk all the time (kvmhv.pattern=<sectors>)
DATA_MIB = 8  # a qcow2 disk with a known content the guest never touches
SMALL = "16M"  # h3's storage: less than the two disks together


def prepare_play(wheels: str) -> list[dict[str, Any]]:
    """kvm_host on every host (a stock Debian host: /usr/bin/python3, no qemu.qmp), then a module with its venv."""
    return [{"name": "Prepare the hypervisors", "hosts": "fleet", "gather_facts": False,
             "roles": [{"role": "kvmhv.qemu.kvm_host", "vars": {"kvm_host_python_wheels_dir": wheels}}],
             "tasks": [{"name": "List instances", "kvmhv.qemu.kvm_instance_info": {}, "register": "listed"},
                       {"name": "Interpreter", "ansible.builtin.debug": {"var": "ansible_python_interpreter"}}]}]


# Later plays run kvm_host again, as a fleet playbook would: it only checks (dpkg, the venv's pins), changes
# nothing, and sets each host's interpreter for the play.
def prepared_role() -> dict[str, Any]:
    return {"role": "kvmhv.qemu.kvm_host", "vars": {"kvm_host_python_wheels_dir": wheels_dir()}}


def boot_play(host: str, name: str, disks: list[dict[str, Any]], hvparams: dict[str, Any], setup: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": f"Boot {name} on {host}", "hosts": host, "gather_facts": False, "roles": [prepared_role()],
             "tasks": [*setup,
                       {"name": "Boot", "ansible.builtin.include_role": {"name": "kvmhv.qemu.kvm_instance"},
                        "vars": {"kvm_instance_list": [{"name": name, "memory": 128, "disks": disks, "hvparams": hvparams}]}}]}]


def migrate_play(name: str, source: str, target: str, port: int, **options: Any) -> list[dict[str, Any]]:
    env = options.pop("environment", None)
    play: dict[str, Any] = {
        "name": f"Migrate {name}", "hosts": source, "gather_facts": False, "roles": [prepared_role()],
        "tasks": [{"name": "Migrate", "ansible.builtin.include_role": {"name": "kvmhv.qemu.kvm_migrate"},
                   "vars": {"kvm_migrate_name": name, "kvm_migrate_source": source, "kvm_migrate_target": target,
                            "kvm_migrate_port": port, "kvm_migrate_nbd_port": port + 1, "kvm_migrate_timeout": 300, **options}}]}
    if env:
        play["environment"] = env
    # Every host a task is delegated to must have its interpreter set (kvm_host's fact), as in any playbook
    # that prepares the hypervisors first; facts do not outlive a run.
    hosts = {"name": "Hypervisors", "hosts": f"{source},{target}", "gather_facts": False, "roles": [prepared_role()]}
    return [hosts, play]


def absent_play(*names: str) -> list[dict[str, Any]]:
    return [{"name": f"Remove {', '.join(names)} everywhere", "hosts": "fleet", "gather_facts": False, "roles": [prepared_role()],
             "tasks": [{"name": "Absent", "kvmhv.qemu.kvm_instance": {"name": "{{ item }}", "state": "absent"}, "loop": list(names)}]}]


def qmp(fleet: Fleet, host: str, name: str, *commands: tuple[str, dict[str, Any] | None]) -> list[Any]:
    """QMP commands from the controller (through /proc/<anchor>/root), on the instance's second monitor:
    the control one takes one client at a time, and a module may hold it (stopped at a fault point)."""

    async def go() -> list[Any]:
        client = QMPClient("kvmhv-fleet-test")
        await asyncio.wait_for(client.connect(str(fleet.path(host, f"/run/kvmhv/{name}.ro.qmp"))), 10)
        try:
            return [await asyncio.wait_for(client.execute(cmd, args), 30) for cmd, args in commands]
        finally:
            await client.disconnect()

    return asyncio.run(go())


def snapshot(fleet: Fleet, host: str, name: str) -> dict[str, Any]:
    """What 'untouched' means for a source: the same QEMU, runtime file, images and the guest still running."""
    runtime = fleet.path(host, f"/run/kvmhv/{name}.runtime.json").read_text()
    return {"qemus": host_qemus(fleet, host, name), "runtime": runtime, "status": qmp(fleet, host, name, ("query-status", None))[0],
            "images": sorted(os.listdir(fleet.path(host, "/srv/kvmhv")))}


def assert_untouched(fleet: Fleet, host: str, name: str, before: dict[str, Any]) -> None:
    after = snapshot(fleet, host, name)
    assert after == before
    assert after["status"]["status"] == "running"
    jobs, nodes = qmp(fleet, host, name, ("query-block-jobs", None), ("query-named-block-nodes", {"flat": True}))
    assert jobs == [] and not [n["node-name"] for n in nodes if n["node-name"].startswith("kvmhv-")]
    serial = str(fleet.path(host, f"/run/kvmhv/{name}.serial.log"))
    seen = latest_report(serial)
    wait_for_report(serial, lambda r: r.pattern.state not in ("bad", "error") and r.pattern.gen > seen.pattern.gen,
                    timeout=240, after_seq=seen.seq)  # the guest still writes and verifies its disk


def assert_target_clean(fleet: Fleet, host: str, name: str, images: list[str]) -> None:
    assert host_qemus(fleet, host, name) == []
    assert host_files(fleet, host, name) == [] and not fleet.path(host, f"/run/kvmhv/.{name}.incoming.json").exists()
    assert [i for i in images if fleet.path(host, i).exists()] == []


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(3, small_hosts={3: SMALL}) as fleet:  # the hosts' Python: Debian's /usr/bin/python3
        yield fleet


@pytest.fixture(scope="module")
def prepared(fleet: Fleet) -> dict[str, Any]:
    """The first kvm_host run on the stock hosts."""
    run = playbook(fleet, prepare_play(wheels_dir()))
    assert run["rc"] == 0, failures(run)
    return run


def test_kvm_host_prepares_stock_debian_hosts_over_ssh(fleet: Fleet, prepared: dict[str, Any]) -> None:
    for host in fleet.hosts:
        assert prepared["stats"][host]["changed"] >= 2  # the venv made and filled (and the runtime dir's mode)
        stock = fleet.ssh(host, ["/usr/bin/python3", "-c", "import qemu.qmp"], check=False)
        assert stock.returncode != 0 and "No module named 'qemu'" in stock.stderr  # Debian's Python left alone (PEP 668)
        assert fleet.ssh(host, [HOST_PYTHON, "-c", "import qemu.qmp; print(qemu.qmp.__file__)"]).stdout.startswith("/opt/kvmhv/venv/")
        assert fleet.exec(host, ["findmnt", "-no", "SOURCE", "/opt/kvmhv"]).stdout.strip() == f"kvf-{host}-opt"  # its own venv
        assert oct(fleet.path(host, "/run/kvmhv").stat().st_mode & 0o777) == "0o700"
    assert {host: res["ansible_python_interpreter"] for host, res in results(prepared, "Interpreter").items()} == \
        dict.fromkeys(fleet.hosts, HOST_PYTHON)
    assert all(res["instances"] == [] for res in results(prepared, "List instances").values())  # a module ran with it
    again = playbook(fleet, prepare_play(wheels_dir()))
    assert again["rc"] == 0 and changed(again) == 0, [(t, h) for t, h, r in again["tasks"] if r.get("changed")]


def test_copy_storage_migration_moves_a_writing_guest_with_its_disks(fleet: Fleet, prepared: dict[str, Any]) -> None:
    name, pattern, data = "cs1", "/srv/kvmhv/cs1-pattern.img", "/srv/kvmhv/cs1-data.qcow2"
    hvparams = guest_hvparams()
    hvparams["kernel_args"] += f" kvmhv.pattern={PATTERN_MIB * 2048}"
    setup = [{"name": "Pattern disk", "ansible.builtin.command": {"cmd": f"qemu-img create -q -f raw {pattern} {PATTERN_MIB}M", "creates": pattern}},
             {"name": "Data disk", "ansible.builtin.command": {"cmd": f"qemu-img create -q -f qcow2 {data} {DATA_MIB}M", "creates": data}},
             {"name": "Known data", "ansible.builtin.command": f"qemu-io -f qcow2 -c 'write -P 0x5a 1M 2M' {data}", "changed_when": True}]
    try:
        boot = playbook(fleet, boot_play("h1", name, [{"path": pattern}, {"path": data, "format": "qcow2"}], hvparams, setup))
        assert boot["rc"] == 0, failures(boot)
        serial1 = str(fleet.path("h1", f"/run/kvmhv/{name}.serial.log"))
        wait_for_report(serial1, lambda r: r.pattern and r.pattern.verified >= 1, timeout=300)  # the disk holds the pattern

        port = free_port(fleet, "h2")
        run = playbook(fleet, migrate_play(name, "h1", "h2", port, kvm_migrate_copy_storage=True, kvm_migrate_remove_source_disks=True))
        assert run["rc"] == 0, failures(run)
        migrated = results(run, "Migrate and stop the source once the target runs")["h1"]["migration"]
        assert migrated["status"] == "completed" and migrated["storage"]["nbd"] == f"{fleet.addresses['h2']}:{port + 1}"
        assert sorted(migrated["removed_source_disks"]) == sorted([pattern, data])
        target = results(run, "Start the target as a migration destination with the source's device tree")["h1"]
        assert [(i["path"], i["size"]) for i in target["created_images"]] == [(pattern, PATTERN_MIB << 20), (data, DATA_MIB << 20)]
        assert results(run, "Confirm the arrival on the target (closes its NBD server, the copies become its disks)")["h1"]["confirmed"]

        # The source: no QEMU, no runtime file, no images for it.
        assert host_qemus(fleet, "h1", name) == [] and host_files(fleet, "h1", name) == []
        assert not fleet.path("h1", pattern).exists() and not fleet.path("h1", data).exists()
        # The target: confirmed (no mark, no record of created images, NBD server closed), data in place.
        rt = json.loads(fleet.path("h2", f"/run/kvmhv/{name}.runtime.json").read_text())
        assert "mark" not in rt and "created_images" not in rt
        assert f":{port + 1} " not in fleet.exec("h2", ["ss", "-Htln"]).stdout
        check = subprocess.run(["qemu-io", "-U", "-r", "-f", "qcow2", "-c", "read -P 0x5a 1M 2M", "-c", "read -P 0 0 1M",
                                "-c", f"read -P 0 3M {DATA_MIB - 3}M", str(fleet.path("h2", data))], capture_output=True, text=True, check=False)
        assert check.returncode == 0 and "Pattern verification failed" not in check.stdout, check.stdout + check.stderr

        # The guest runs on h2 and reads back every byte: wait for a whole pass written and verified after the move.
        serial2 = str(fleet.path("h2", f"/run/kvmhv/{name}.serial.log"))
        first = wait_for_report(serial2, lambda r: r.pattern is not None, timeout=60)
        done = wait_for_report(serial2, lambda r: r.pattern.state in ("bad", "error") or r.pattern.verified > first.pattern.gen, timeout=300)
        assert done.pattern.state == "ok", done.pattern
        qmp(fleet, "h2", name, ("stop", None))
        try:
            check_pattern_image(str(fleet.path("h2", pattern)), allow_torn=True)  # and the host sees the same disk
        finally:
            qmp(fleet, "h2", name, ("cont", None))

        # Failures leave the source (now h2) untouched. No room on h3:
        before = snapshot(fleet, "h2", name)
        full = playbook(fleet, migrate_play(name, "h2", "h3", free_port(fleet, "h3"), kvm_migrate_copy_storage=True))
        assert full["rc"] != 0
        msg = [m for m in failures(full) if "Report why" in m]
        need = "copy_storage: not enough space on this host: /srv/kvmhv has 16.0 MiB free, the copied disks need 24.0 MiB"
        assert len(msg) == 1 and need in msg[0], failures(full)
        assert_target_clean(fleet, "h3", name, [pattern, data])
        assert_untouched(fleet, "h2", name, before)

        # An unreachable host (in the inventory, nobody at its address):
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as extra:
            extra.write("fleet:\n  hosts:\n    h9:\n      ansible_host: 10.76.0.99\n")
            extra.flush()
            gone = playbook(fleet, migrate_play(name, "h2", "h9", 49152, kvm_migrate_copy_storage=True), inventories=(extra.name,))
        assert gone["rc"] != 0
        assert any("target host h9 is unreachable" in m and "nothing was changed, cs1 keeps running on h2" in m for m in failures(gone)), failures(gone)
        assert_untouched(fleet, "h2", name, before)

        # The target dies at pre-switchover (the source's guest is paused there, its disks mirrored):
        with tempfile.TemporaryDirectory(dir="/tmp") as marks:
            port = free_port(fleet, "h1")
            env = {"KVMHV_FAULT_STOP": "copy-pre-switchover", "KVMHV_FAULT_DIR": marks}
            job = _background(fleet, migrate_play(name, "h2", "h1", port, kvm_migrate_copy_storage=True, environment=env))
            marker = _wait_marker(Path(marks), "copy-pre-switchover", job)
            assert qmp(fleet, "h2", name, ("query-status", None))[0]["status"] == "finish-migrate"  # paused at switchover
            target_pid = int(fleet.path("h1", f"/run/kvmhv/{name}.pid").read_text().split()[0])
            assert fleet.path("h1", pattern).exists()  # the target's partial copy
            os.kill(target_pid, signal.SIGKILL)
            os.kill(int(marker.read_text()), signal.SIGCONT)
            died = job.result()
        assert died["rc"] != 0
        reason = " ".join(m for m in failures(died) if "Report why" in m)
        assert "rolled back, the source keeps running on its own disks" in reason, failures(died)
        assert_target_clean(fleet, "h1", name, [pattern, data])
        assert_untouched(fleet, "h2", name, before)
    finally:
        playbook(fleet, absent_play(name))


def test_shared_storage_migration_over_tcp(fleet: Fleet, prepared: dict[str, Any]) -> None:
    name, disk = "sh1", "/srv/kvmhv-shared/sh1.img"
    setup = [{"name": "Shared disk", "ansible.builtin.command": {"cmd": f"qemu-img create -q -f raw {disk} 4M", "creates": disk}}]
    try:
        boot = playbook(fleet, boot_play("h2", name, [{"path": disk}], guest_hvparams(), setup))
        assert boot["rc"] == 0, failures(boot)
        serial2 = str(fleet.path("h2", f"/run/kvmhv/{name}.serial.log"))
        seen = wait_for_report(serial2, lambda r: len(r.block) == 1, timeout=120)
        run = playbook(fleet, migrate_play(name, "h2", "h3", free_port(fleet, "h3")))
        assert run["rc"] == 0, failures(run)
        migrated = results(run, "Migrate and stop the source once the target runs")["h2"]["migration"]
        assert migrated["status"] == "completed" and "storage" not in migrated
        assert host_qemus(fleet, "h2", name) == [] and host_files(fleet, "h2", name) == []
        assert fleet.path("h2", disk).exists()  # shared: the same file, now used from h3
        after = wait_for_report(str(fleet.path("h3", f"/run/kvmhv/{name}.serial.log")), lambda r: True, timeout=60)
        assert after.block == seen.block
        assert len(host_qemus(fleet, "h3", name)) == 1
    finally:
        playbook(fleet, absent_play(name))
        Path(fleet.path("h1", disk)).unlink(missing_ok=True)


def test_fleet_playbooks_provision_hotplug_and_evacuate(fleet: Fleet, prepared: dict[str, Any]) -> None:
    """playbooks/fleet-*.yml as an operator runs them, each first with --check (which must change nothing)."""
    book = {name: str(REPO / "playbooks" / f"fleet-{name}.yml") for name in ("provision", "hotplug", "evacuate")}
    instances = [  # no kernel: the firmware finds nothing to boot and idles (these tests need QEMU, not a guest)
        {"name": "p1", "host": "h1", "memory": 128, "disks": [{"path": "/srv/kvmhv/p1.img", "size": "4M"}]},
        {"name": "p2", "host": "h1", "memory": 128, "disks": [{"path": "/srv/kvmhv-shared/p2.img", "size": "4M"}]},
        {"name": "p3", "host": "h2", "memory": 128, "disks": [{"path": "/srv/kvmhv/p3.qcow2", "size": "4M", "format": "qcow2"}]},
    ]
    common = {"fleet_group": "fleet", "fleet_instances": instances, "fleet_hvparams": {"accel": "tcg"},
              "kvm_host_python_wheels_dir": wheels_dir(), "fleet_hotplug_size": "4M"}
    where = {"p1": "h1", "p2": "h1", "p3": "h2"}

    def layout() -> dict[str, Any]:
        return {name: (host_qemus(fleet, host, name) != [], [d["path"] for d in (host_runtime(fleet, host, name) or {}).get("disks", [])])
                for name, host in where.items()}

    try:
        planned = playbook(fleet, book["provision"], common, check=True)
        assert planned["rc"] == 0, failures(planned)
        assert layout() == dict.fromkeys(where, (False, []))
        assert not any(fleet.path(h, p).exists() for h, p in (("h1", "/srv/kvmhv/p1.img"), ("h1", "/srv/kvmhv-shared/p2.img"), ("h2", "/srv/kvmhv/p3.qcow2")))
        said = [r["msg"] for r in results(planned, "Say which instances check mode cannot look at (their images do not exist yet)").values()
                if not r.get("skipped")]
        assert sorted(said) == ["would create the images of p1, p2 and start them", "would create the images of p3 and start them"]

        made = playbook(fleet, book["provision"], common)
        assert made["rc"] == 0, failures(made)
        assert layout() == {"p1": (True, ["/srv/kvmhv/p1.img"]), "p2": (True, ["/srv/kvmhv-shared/p2.img"]), "p3": (True, ["/srv/kvmhv/p3.qcow2"])}
        again = playbook(fleet, book["provision"], common)
        assert again["rc"] == 0 and changed(again) == 0, [(t, h) for t, h, r in again["tasks"] if r.get("changed")]

        before = layout()
        planned = playbook(fleet, book["hotplug"], common, check=True)
        assert planned["rc"] == 0, failures(planned)
        assert layout() == before and not fleet.path("h1", "/srv/kvmhv/p1-data.img").exists()
        would = {r["item"]: r["device"]["hvinfo"] for r in results(planned, "Plug the disks")["h1"]["results"]}
        assert sorted(would) == ["p1", "p2"] and would["p1"]["addr"] == "0x11"  # disk 0 has 0x10
        plugged = playbook(fleet, book["hotplug"], common)
        assert plugged["rc"] == 0, failures(plugged)
        assert layout() == {"p1": (True, ["/srv/kvmhv/p1.img", "/srv/kvmhv/p1-data.img"]),
                            "p2": (True, ["/srv/kvmhv-shared/p2.img", "/srv/kvmhv/p2-data.img"]),
                            "p3": (True, ["/srv/kvmhv/p3.qcow2", "/srv/kvmhv/p3-data.img"])}
        again = playbook(fleet, book["hotplug"], common)
        assert again["rc"] == 0 and changed(again) == 0, [(t, h) for t, h, r in again["tasks"] if r.get("changed")]

        port = max(free_port(fleet, "h2"), free_port(fleet, "h3"))
        evac = {**common, "evacuate_host": "h1", "evacuate_targets": ["h2", "h3"], "kvm_migrate_port": port, "kvm_migrate_nbd_port": port + 1}
        before = layout()
        planned = playbook(fleet, book["evacuate"], evac, check=True)
        assert planned["rc"] == 0, failures(planned)
        assert results(planned, "Show the plan")["h1"]["msg"][0] == ["p1 -> h2 -> copy_storage", "p2 -> h3 -> copy_storage"]
        assert layout() == before
        moved = playbook(fleet, book["evacuate"], evac)
        assert moved["rc"] == 0, failures(moved)
        assert host_qemus(fleet, "h1") == [] and sorted(p.name for p in fleet.path("h1", "/run/kvmhv").iterdir()) == []
        assert host_qemus(fleet, "h2", "p1") and host_qemus(fleet, "h3", "p2") and host_qemus(fleet, "h2", "p3")
        assert [d["path"] for d in host_runtime(fleet, "h3", "p2")["disks"]] == ["/srv/kvmhv-shared/p2.img", "/srv/kvmhv/p2-data.img"]
        assert fleet.path("h2", "/srv/kvmhv/p1-data.img").exists() and fleet.path("h3", "/srv/kvmhv/p2-data.img").exists()
        assert not fleet.path("h3", "/srv/kvmhv/p2.img").exists()  # the shared disk was used in place, not copied
        assert fleet.path("h1", "/srv/kvmhv/p1.img").exists()  # the evacuated host keeps its (stale) images unless asked
    finally:
        playbook(fleet, absent_play(*where))
        fleet.path("h1", "/srv/kvmhv-shared/p2.img").unlink(missing_ok=True)


class _Job:
    def __init__(self, fleet: Fleet, plays: list[dict[str, Any]]) -> None:
        self.value: dict[str, Any] | None = None
        self.error: BaseException | None = None

        def work() -> None:
            try:
                self.value = playbook(fleet, plays)
            except BaseException as err:  # handed to the test thread
                self.error = err

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self, timeout: float = 600) -> dict[str, Any]:
        self.thread.join(timeout)
        if self.error:
            raise self.error
        assert self.value is not None, "the playbook did not finish"
        return self.value


def _background(fleet: Fleet, plays: list[dict[str, Any]]) -> _Job:
    return _Job(fleet, plays)


def _wait_marker(marks: Path, step: str, job: _Job, timeout: float = 300) -> Path:
    """The marker a module stopped at ``step`` left (its pid inside); fails if the playbook ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(marks.glob(f"{step}.*"))
        if found:
            return found[0]
        assert not job.done(), f"the playbook ended before reaching {step}: {failures(job.result())}"
        time.sleep(0.1)
    raise AssertionError(f"no module reached {step} within {timeout}s")
