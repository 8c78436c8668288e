"""kvmhv.qemu benchmarks: latency against floors measured in the same run, and scale.

Run with `make bench`. Writes benchmarks/RESULTS.md and benchmarks/latency.png.
Every figure is the median of repeated runs with min and max; each path is
compared with its floor, measured alternately in the same run on the same
QEMU (TCG, unprivileged, sandboxed) and test guest:

* hotplug add: the collection's add path (lock, read and check the runtime,
  allocate, journal, hand the disk over as an fdset, blockdev-add,
  device_add, verify, atomic save) vs the same QMP work done by hand with
  qemu.qmp over a fresh connection (pass the descriptor, add-fd,
  blockdev-add, device_add, query-block), one command after the other;
* unplug: the collection's remove path vs device_del + DEVICE_DELETED;
* an ansible task: `ansible -m kvmhv.qemu.kvm_disk_hotplug` vs `ansible -m ping`;
* many devices: a hotplug into a q35 instance that already has 99 devices vs
  the first one (no rescan that grows with the device count);
* live convergence: one kvm_instance task adding 20 disks vs one adding 1,
  one task unplugging 10 PCI disks (guest acknowledgement) vs 1, and 20 adds
  in one task vs 20 kvm_disk_hotplug tasks;
* scale on one host: N paused instances started by one playbook, and
  kvm_instance_info over all of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / ".build" / "collections"), str(REPO / "tests" / "integration")]

from ansible_cli import ansible_env  # noqa: E402
from guest_report import guest_hvparams, wait_for_report  # noqa: E402
from qemu.qmp import QMPClient  # noqa: E402

from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call  # noqa: E402
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import hotplug, instance  # noqa: E402
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file  # noqa: E402

REPEAT = int(os.environ.get("KVMHV_BENCH_REPEAT", "25"))
OUT = REPO / "benchmarks"
VENV_BIN = Path(sys.executable).parent


def stats(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def fmt(s: dict[str, Any]) -> str:
    return f"{s['median'] * 1000:.1f} ms ({s['min'] * 1000:.1f}-{s['max'] * 1000:.1f})"


def ratio(a: dict[str, Any], b: dict[str, Any]) -> str:
    return f"{a['median'] / b['median']:.2f}"


def make_disk(directory: str, name: str, size_mib: int = 1) -> str:
    path = os.path.join(directory, name)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", path, f"{size_mib}M"], check=True)
    return path


def ansible(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", *args],
                          capture_output=True, text=True, env=ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"}), check=True)


def playbook(tasks: list[dict[str, Any]], tmp: str) -> float:
    book = Path(tmp) / "play.yml"
    book.write_text(json.dumps([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]))
    begin = time.perf_counter()
    subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(book)], capture_output=True, text=True,
                   env=ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"}), check=True)
    return time.perf_counter() - begin


def instance_call(runtime_dir: str, name: str, **params: Any) -> dict[str, Any]:
    """kvm_instance in this process, with the parameters Ansible would fill in."""
    full = {"name": name, "state": "running", "uuid": None, "memory": 256, "vcpus": 1, "disks": [], "nics": [],
            "hvparams": {}, "runtime": None, "migration_uri": None, "shutdown_timeout": 30, "purge": False,
            "unplug_timeout": 30, "runtime_dir": runtime_dir, "qemu_binary": "qemu-system-x86_64", "qemu_user": "kvmhv-qemu"}
    full.update(params)
    full["disks"] = [{"path": None, "uri": None, "format": "raw", "mode": None, "uuid": None, "type": None, **d} for d in full["disks"]]
    return asyncio.run(instance.apply(Call(full)))  # the one crossing common.run makes in a module


def disk_call(runtime_dir: str, name: str, path: str, state: str = "present") -> dict[str, Any]:
    """kvm_disk_hotplug in this process (the library path, without Ansible's task cost)."""
    disk = {"path": path, "uri": None, "format": "raw", "mode": None, "uuid": None, "type": None}
    params = {"instance": name, "state": state, "unplug_timeout": 30, "disk": disk, "runtime_dir": runtime_dir,
              "qemu_binary": "qemu-system-x86_64", "qemu_user": "kvmhv-qemu"}
    return asyncio.run(hotplug.apply(Call(params), "disks", "disk"))


async def raw_add(sock: str, path: str, device: dict[str, Any]) -> None:
    """The floor: the same QMP work as the collection's add, by hand, one command after the other."""
    client = QMPClient("bench")
    await client.connect(sock)
    fd = os.open(path, os.O_RDWR)
    try:
        client.send_fd_scm(fd)
    finally:
        os.close(fd)
    fdset = (await client.execute("add-fd", {"opaque": "rawnode"}))["fdset-id"]
    await client.execute("blockdev-add", {"driver": "raw", "node-name": "rawnode",
                                          "file": {"driver": "file", "filename": f"/dev/fdset/{fdset}"}})
    await client.execute("device_add", {**device, "drive": "rawnode"})
    await client.execute("query-block")
    await client.disconnect()


async def raw_del(sock: str) -> None:
    client = QMPClient("bench")
    await client.connect(sock)
    with client.listener("DEVICE_DELETED") as events:
        await client.execute("device_del", {"id": "rawdev"})
        async for event in events:
            if event["data"].get("device") == "rawdev":
                break
    await client.execute("blockdev-del", {"node-name": "rawnode"})
    for fdset in await client.execute("query-fdsets"):
        if any(fd.get("opaque") == "rawnode" for fd in fdset["fds"]):
            await client.execute("remove-fd", {"fdset-id": fdset["fdset-id"]})
    await client.disconnect()


async def raw_unplug(sock: str, ids: list[str]) -> None:
    """The unplug floor for many devices: every device_del at once, then wait for each DEVICE_DELETED (raw QMP)."""
    client = QMPClient("bench")
    await client.connect(sock)
    waiting = set(ids)
    with client.listener("DEVICE_DELETED") as events:
        for dev_id in ids:
            await client.execute("device_del", {"id": dev_id})
        async for event in events:
            waiting.discard(event["data"].get("device"))
            if not waiting:
                break
    await client.disconnect()


def boot(runtime_dir: str, name: str, images: str, **hv: Any) -> dict[str, Any]:
    res = instance_call(runtime_dir, name, disks=[{"path": make_disk(images, f"{name}-boot.img")}],
                        hvparams=guest_hvparams(**hv))
    wait_for_report(res["instance"]["serial_log"], lambda r: len(r.block) == 1, 120)
    return res["instance"]


def bench_hotplug(kind: str, tmp: str, images: str) -> dict[str, Any]:
    """Collection add/remove path vs raw QMP, alternating, on one guest."""
    hv = {"disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci"} if kind == "scsi" else {"pci_hotplug_slots": 4}
    name = f"b{kind}"
    inst = boot(tmp, name, images, **hv)
    device = ({"driver": "scsi-hd", "id": "rawdev", "bus": "scsi.0", "scsi-id": 9} if kind == "scsi"
              else {"driver": "virtio-blk-pci", "id": "rawdev", "bus": "pci.0", "addr": "0x1e"})
    add, add_floor, rm, rm_floor = [], [], [], []
    for i in range(REPEAT):
        path = make_disk(images, f"{kind}{i}.img")
        begin = time.perf_counter()
        disk_call(tmp, name, path)
        add.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        disk_call(tmp, name, path, "absent")
        rm.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        asyncio.run(raw_add(inst["qmp_socket"], path, device))
        add_floor.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        asyncio.run(raw_del(inst["qmp_socket"]))
        rm_floor.append(time.perf_counter() - begin)
    instance_call(tmp, name, state="absent")
    return {"add": stats(add), "add_floor": stats(add_floor), "rm": stats(rm), "rm_floor": stats(rm_floor),
            "samples": {"add": add, "add_floor": add_floor, "rm": rm, "rm_floor": rm_floor}}


def bench_ansible(tmp: str, images: str) -> dict[str, Any]:
    instance_call(tmp, "bans", hvparams={"accel": "tcg", "kvm_extra": "-S", "disk_type": "scsi-hd",
                                         "scsi_controller_type": "virtio-scsi-pci"})
    task, floor = [], []
    for i in range(max(5, REPEAT // 2)):
        path = make_disk(images, f"ans{i}.img")
        begin = time.perf_counter()
        ansible("-m", "kvmhv.qemu.kvm_disk_hotplug", "-a", json.dumps({"instance": "bans", "runtime_dir": tmp, "disk": {"path": path}}))
        task.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        ansible("-m", "ping")
        floor.append(time.perf_counter() - begin)
        disk_call(tmp, "bans", path, "absent")
    instance_call(tmp, "bans", state="absent")
    return {"task": stats(task), "floor": stats(floor)}


def bench_hundredth(tmp: str, images: str) -> dict[str, Any]:
    """Hotplug latency as a q35 instance fills up to 100 devices (paused: the QMP and Python path alone)."""
    instance_call(tmp, "many", hvparams={"accel": "tcg", "kvm_extra": "-S", "machine_type": "q35", "pci_hotplug_slots": 100})
    times = []
    for i in range(100):
        path = make_disk(images, f"many{i}.img")
        begin = time.perf_counter()
        disk_call(tmp, "many", path)
        times.append(time.perf_counter() - begin)
    instance_call(tmp, "many", state="absent")
    return {"first": stats(times[:5]), "last": stats(times[-5:]), "all": times}


def bench_converge(tmp: str, images: str) -> dict[str, Any]:
    """One kvm_instance task for many devices vs for one, with the guest (adds, then PCI unplugs)."""
    hv = guest_hvparams(pci_hotplug_slots=24)
    boot_disk = make_disk(images, "cv-boot.img")
    many = [make_disk(images, f"cv{i}.img", 2 + i) for i in range(20)]
    results: dict[str, list[float]] = {"add1": [], "add20": [], "rm1": [], "rm10": [], "tasks20": [], "raw1": [], "raw10": []}
    reps = max(3, REPEAT // 5)
    for rep in range(reps):
        name = f"cv{rep}"
        inst = instance_call(tmp, name, memory=384, disks=[{"path": boot_disk}], hvparams=hv)["instance"]
        wait_for_report(inst["serial_log"], lambda r: len(r.block) == 1, 120)
        base = {"name": name, "runtime_dir": tmp, "memory": 384, "hvparams": hv}
        for key, disks, purge in (("add1", many[:1], False), ("rm1", [], True), ("add20", many, False), ("rm10", many[10:], True)):
            args = {**base, "disks": [{"path": boot_disk}, *({"path": p} for p in disks)], "purge": purge}
            results[key].append(playbook([{"name": key, "kvmhv.qemu.kvm_instance": args}], tmp))
            if key in ("add1", "add20"):
                seen = 1 + len(disks)
                wait_for_report(inst["serial_log"], lambda r, seen=seen: len(r.block) == seen, 120)
        tasks = [{"name": f"plug {i}", "kvmhv.qemu.kvm_disk_hotplug": {"instance": name, "runtime_dir": tmp, "disk": {"path": p}}}
                 for i, p in enumerate(many[:10] + [make_disk(images, f"cx{rep}-{i}.img") for i in range(10)])]
        instance_call(tmp, name, disks=[{"path": boot_disk}], purge=True, memory=384, hvparams=hv)
        results["tasks20"].append(playbook(tasks, tmp))
        # The guest's own cost of releasing PCI devices, with raw QMP on the same guest: 1, then 10 at once.
        wait_for_report(inst["serial_log"], lambda r: len(r.block) == 21, 120)
        ids = [d["hvinfo"]["id"] for d in runtime_file.read_path(os.path.join(tmp, f"{name}.runtime.json"))[0]["disks"][1:]]
        for key, chosen in (("raw1", ids[:1]), ("raw10", ids[1:11])):
            begin = time.perf_counter()
            asyncio.run(raw_unplug(inst["qmp_socket"], chosen))
            results[key].append(time.perf_counter() - begin)
        instance_call(tmp, name, state="absent")
    return {key: stats(value) for key, value in results.items()}


def bench_scale(tmp: str, counts: tuple[int, ...]) -> dict[int, dict[str, float]]:
    results = {}
    for count in counts:
        rdir = tempfile.mkdtemp(prefix="s", dir=tmp)
        instance = {"name": "{{ item }}", "runtime_dir": rdir, "hvparams": {"accel": "tcg", "kvm_extra": "-S"}}
        start = playbook([{"name": "start", "kvmhv.qemu.kvm_instance": instance,
                           "loop": [f"s{i:03d}" for i in range(count)]}], tmp)
        begin = time.perf_counter()
        info = json.loads(subprocess.run(
            [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", "kvmhv.qemu.kvm_instance_info",
             "-a", json.dumps({"runtime_dir": rdir})], capture_output=True, text=True, env=ansible_env(), check=True).stdout)
        info_time = time.perf_counter() - begin
        assert len(info["plays"][0]["tasks"][0]["hosts"]["localhost"]["instances"]) == count
        for i in range(count):
            instance_call(rdir, f"s{i:03d}", state="absent")
        results[count] = {"start": start, "info": info_time}
    return results


def plot(hp: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only `make bench` installs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    labels, data = [], []
    for kind, res in hp.items():
        for key, label in (("add", "add"), ("add_floor", "add floor"), ("rm", "unplug"), ("rm_floor", "unplug floor")):
            labels.append(f"{kind.upper()} {label}")
            data.append([s * 1000 for s in res["samples"][key]])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(f"kvmhv.qemu hotplug latency vs raw QMP floor (TCG guest, n={REPEAT} each)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(hp: dict[str, Any], hp_disk: dict[str, Any], ans: dict[str, Any], many: dict[str, Any], conv: dict[str, Any],
           scale: dict[int, dict[str, float]]) -> str:
    lines = ["# Benchmark results", "",
             f"`make bench` on {os.cpu_count()} cores, QEMU TCG running as an unprivileged user under `-sandbox`, the test guest; "
             f"median (min-max) of {REPEAT} runs each unless said otherwise, collection path and floor measured alternately "
             "in the same run. The runtime directory is on tmpfs, like the default /run/kvmhv of a real host. The add floor "
             "does the same QMP work as the collection by hand (pass the descriptor, add-fd, blockdev-add, device_add, "
             "query-block), one command after the other over a fresh connection; the collection pipelines all but the "
             "descriptor in one burst. The unplug floor is device_del plus waiting for DEVICE_DELETED.", "",
             "| operation | kvmhv.qemu | floor | ratio | target |", "|---|---|---|---|---|"]
    for kind, res in hp.items():
        lines.append(f"| {kind.upper()} disk hotplug (lock, journal, fdset, blockdev-add, device_add, verify, save) | {fmt(res['add'])} | "
                     f"by hand: {fmt(res['add_floor'])} | {ratio(res['add'], res['add_floor'])} | <= 1.3 |")
        lines.append(f"| {kind.upper()} unplug (device_del, DEVICE_DELETED, backend and fdset del, save) | {fmt(res['rm'])} | "
                     f"device_del + DEVICE_DELETED: {fmt(res['rm_floor'])} | {ratio(res['rm'], res['rm_floor'])} | <= 1.2 |")
    lines.append(f"| SCSI disk hotplug, runtime_dir on disk (the fsyncs hit the disk) | {fmt(hp_disk['add'])} | "
                 f"{fmt(hp_disk['add_floor'])} | {ratio(hp_disk['add'], hp_disk['add_floor'])} | (informative) |")
    lines.append(f"| `ansible -m kvmhv.qemu.kvm_disk_hotplug` | {fmt(ans['task'])} | `ansible -m ping`: {fmt(ans['floor'])} | "
                 f"{ratio(ans['task'], ans['floor'])} | <= 1.5 |")
    lines.append(f"| hotplug number 96-100 into one q35 instance | {fmt(many['last'])} | number 1-5: {fmt(many['first'])} | "
                 f"{ratio(many['last'], many['first'])} | <= 1.2 |")
    reps = conv["add1"]["n"]
    lines += ["", f"## Live convergence (one `kvm_instance` task, ansible-playbook wall time, median of {reps})", "",
              "| operation | time | against | ratio | target |", "|---|---|---|---|---|",
              f"| one task adding 20 disks | {fmt(conv['add20'])} | one task adding 1: {fmt(conv['add1'])} | {ratio(conv['add20'], conv['add1'])} | <= 1.5 |",
              f"| one task unplugging 10 PCI disks (guest acknowledges) | {fmt(conv['rm10'])} | one unplugging 1: {fmt(conv['rm1'])} | "
              f"{ratio(conv['rm10'], conv['rm1'])} | <= 1.5 |",
              f"| raw QMP floor: 10 device_del at once, every DEVICE_DELETED awaited | {fmt(conv['raw10'])} | "
              f"1 device_del: {fmt(conv['raw1'])} | {ratio(conv['raw10'], conv['raw1'])} | (the guest's own cost) |",
              f"| 20 adds in one task | {fmt(conv['add20'])} | 20 kvm_disk_hotplug tasks in one playbook: {fmt(conv['tasks20'])} | "
              f"{ratio(conv['add20'], conv['tasks20'])} | (lower is better) |"]
    lines += ["", "## Scale on one host", "", "| instances | start all (one playbook) | per instance | kvm_instance_info over all | per instance |",
              "|---|---|---|---|---|"]
    for count, res in scale.items():
        lines.append(f"| {count} | {res['start']:.1f} s | {res['start'] / count * 1000:.0f} ms | {res['info'] * 1000:.0f} ms | "
                     f"{res['info'] / count * 1000:.1f} ms |")
    times = many["all"]
    lines += ["", "100 hotplugs in a row into one q35 instance (library path, ms): "
              + ", ".join(f"{s * 1000:.0f}" for s in times) + ".", "", "![latency per operation](latency.png)", ""]
    return "\n".join(lines)


def main() -> None:
    # The default runtime_dir, /run/kvmhv, is on tmpfs on real hosts: /dev/shm stands in for it here.
    tmp = tempfile.mkdtemp(prefix="kvb-", dir="/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    on_disk = tempfile.mkdtemp(prefix="kvb-", dir="/var/tmp")
    images = tempfile.mkdtemp(prefix="kvb-img-", dir="/var/tmp")
    try:
        hp = {"pci": bench_hotplug("pci", tmp, images), "scsi": bench_hotplug("scsi", tmp, images)}
        hp_disk = bench_hotplug("scsi", on_disk, images)
        ans = bench_ansible(tmp, images)
        many = bench_hundredth(tmp, images)
        conv = bench_converge(tmp, images)
        scale = bench_scale(tmp, (10, 25, 50))
    finally:
        for directory in (tmp, on_disk):
            for runtime_file in Path(directory).rglob("*.runtime.json"):
                instance_call(str(runtime_file.parent), runtime_file.name[: -len(".runtime.json")], state="absent")
        for directory in (tmp, on_disk, images):
            shutil.rmtree(directory, ignore_errors=True)
    text = report(hp, hp_disk, ans, many, conv, scale)
    (OUT / "RESULTS.md").write_text(text)  # before the plot: the figures never depend on matplotlib
    print(text)
    plot(hp, OUT / "latency.png")


if __name__ == "__main__":
    main()
