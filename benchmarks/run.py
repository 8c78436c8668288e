"""kvmhv.qemu benchmarks: latency against floors measured in the same run, and scale.

Run with `make bench`. Writes benchmarks/RESULTS.md and benchmarks/latency.png.
Every figure is the median of repeated runs with min and max; each path is
compared with its floor, measured alternately in the same run on the same
QEMU (TCG) and test guest:

* hotplug add: the collection's add path (lock, read runtime, allocate,
  blockdev-add, device_add, verify, atomic save) vs the same QMP commands
  (blockdev-add, device_add, the verify query) sent one by one with qemu.qmp
  over a fresh connection, nothing else;
* unplug: the collection's remove path (device_del, DEVICE_DELETED, backend
  del, save) vs a raw device_del + waiting for DEVICE_DELETED;
* ansible task cost: `ansible localhost -m kvmhv.qemu.kvm_disk_hotplug` vs
  `ansible localhost -m ping`;
* scale: N paused instances started by one playbook, kvm_instance_info over
  all of them, 16 hotplugs in a row into one instance;
* fleet: one playbook over 10 inventory hosts (local connection, separate
  runtime directories) hotplugging one disk each, by forks.
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

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / ".build" / "collections"), str(REPO / "tests" / "integration")]

from ansible_runner import ansible_env  # noqa: E402
from guest_report import guest_hvparams, wait_for_report  # noqa: E402
from qemu.qmp import QMPClient  # noqa: E402

from ansible_collections.kvmhv.qemu.plugins.module_utils import hotplug, instance, runtime  # noqa: E402

REPEAT = int(os.environ.get("KVMHV_BENCH_REPEAT", "25"))
OUT = REPO / "benchmarks"
VENV_BIN = Path(sys.executable).parent


def stats(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def fmt(s: dict) -> str:
    return f"{s['median'] * 1000:.1f} ms ({s['min'] * 1000:.1f}-{s['max'] * 1000:.1f})"


def ansible(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", *args],
                          capture_output=True, text=True, env=env or ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"}), check=True)


def playbook(path: str, inventory: str, *extra: str) -> float:
    begin = time.perf_counter()
    subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", inventory, path, *extra], capture_output=True, text=True,
                   env=ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"}), check=True)
    return time.perf_counter() - begin


def make_disk(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", path, "1M"], check=True)
    return path


async def raw_add(sock: str, node: str, path: str, device: dict) -> None:
    """The floor: the add path's QMP commands (backend, device, verify query), one after the other."""
    client = QMPClient("bench")
    await client.connect(sock)
    await client.execute("blockdev-add", {"driver": "raw", "node-name": node, "file": {"driver": "file", "filename": path}})
    await client.execute("device_add", {**device, "drive": node})
    await client.execute("query-pci" if "addr" in device else "query-block")
    await client.disconnect()


async def raw_del(sock: str, dev_id: str, node: str | None, timed: list | None = None) -> None:
    client = QMPClient("bench")
    await client.connect(sock)
    begin = time.perf_counter()
    with client.listener("DEVICE_DELETED") as events:
        await client.execute("device_del", {"id": dev_id})
        async for event in events:
            if event["data"].get("device") == dev_id:
                break
    if timed is not None:
        timed.append(time.perf_counter() - begin)
    if node:
        await client.execute("blockdev-del", {"node-name": node})
    await client.disconnect()


def boot(runtime_dir: str, name: str, images: str, **hv) -> runtime.Paths:
    spec = instance.requested_spec({"name": name, "uuid": None, "memory": 256, "vcpus": 1, "hvparams": guest_hvparams(**hv),
                                    "disks": [{"path": make_disk(images, f"{name}-boot.img")}], "nics": []})
    where = runtime.paths(runtime_dir, name)
    instance.start(instance.plan_runtime(spec, "qemu-system-x86_64"), where)
    wait_for_report(where.serial, lambda r: len(r.block) == 1, 120)
    return where


def bench_hotplug(kind: str, tmp: str) -> dict:
    """Collection add/remove path vs raw QMP, alternating, on one guest."""
    hv = {"disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci"} if kind == "scsi" else {}
    where = boot(tmp, f"b{kind}", tmp, **hv)
    add, add_floor, rm, rm_floor = [], [], [], []
    device = ({"driver": "scsi-hd", "id": "rawdev", "bus": "scsi.0", "scsi-id": 9} if kind == "scsi"
              else {"driver": "virtio-blk-pci", "id": "rawdev", "bus": "pci.0", "addr": "0x1e"})
    for i in range(REPEAT):
        path = make_disk(tmp, f"{kind}{i}.img")
        begin = time.perf_counter()
        with runtime.locked(where):
            hotplug.present(where, "disks", {"path": path}, False, 30)
        add.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        with runtime.locked(where):
            hotplug.absent(where, "disks", {"path": path}, False, 30)
        rm.append(time.perf_counter() - begin)

        begin = time.perf_counter()
        asyncio.run(raw_add(where.qmp, "rawnode", path, device))
        add_floor.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        asyncio.run(raw_del(where.qmp, "rawdev", "rawnode"))
        rm_floor.append(time.perf_counter() - begin)
    instance.stop(where, 0, graceful=False)
    return {"add": stats(add), "add_floor": stats(add_floor), "rm": stats(rm), "rm_floor": stats(rm_floor),
            "samples": {"add": add, "add_floor": add_floor, "rm": rm, "rm_floor": rm_floor}}


def bench_ansible(tmp: str) -> dict:
    where = runtime.paths(tmp, "bans")
    spec = instance.requested_spec({"name": "bans", "uuid": None, "memory": 64, "vcpus": 1, "disks": [], "nics": [],
                                    "hvparams": {"accel": "tcg", "kvm_extra": "-S", "disk_type": "scsi-hd",
                                                 "scsi_controller_type": "virtio-scsi-pci"}})
    instance.start(instance.plan_runtime(spec, "qemu-system-x86_64"), where)
    task, floor = [], []
    reps = max(5, REPEAT // 2)
    for i in range(reps):
        path = make_disk(tmp, f"ans{i}.img")
        begin = time.perf_counter()
        ansible("-m", "kvmhv.qemu.kvm_disk_hotplug", "-a", json.dumps({"instance": "bans", "runtime_dir": tmp, "disk": {"path": path}}))
        task.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        ansible("-m", "ping")
        floor.append(time.perf_counter() - begin)
        with runtime.locked(where):
            hotplug.absent(where, "disks", {"path": path}, False, 30)
    instance.stop(where, 0, graceful=False)
    return {"task": stats(task), "floor": stats(floor)}


def bench_scale(tmp: str, counts: tuple[int, ...]) -> dict:
    results = {}
    for count in counts:
        rdir = tempfile.mkdtemp(prefix="s", dir=tmp)
        book = Path(rdir) / "start.yml"
        instances = [{"name": f"s{i:03d}", "memory": 32, "hvparams": {"accel": "tcg", "kvm_extra": "-S"}} for i in range(count)]
        book.write_text(json.dumps([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
            {"name": "start", "kvmhv.qemu.kvm_instance": {"name": "{{ item.name }}", "memory": "{{ item.memory }}",
                                                          "hvparams": "{{ item.hvparams }}", "runtime_dir": rdir},
             "loop": instances}]}]))
        start = playbook(str(book), "localhost,")
        begin = time.perf_counter()
        info = json.loads(ansible("-m", "kvmhv.qemu.kvm_instance_info", "-a", json.dumps({"runtime_dir": rdir}),
                                  env=ansible_env()).stdout)
        info_time = time.perf_counter() - begin
        assert len(info["plays"][0]["tasks"][0]["hosts"]["localhost"]["instances"]) == count
        for name in runtime.list_names(rdir):
            instance.stop(runtime.paths(rdir, name), 0, graceful=False)
        results[count] = {"start": start, "info": info_time}
    # 16 hotplugs in a row into one instance
    where = runtime.paths(tmp, "row")
    spec = instance.requested_spec({"name": "row", "uuid": None, "memory": 64, "vcpus": 1, "disks": [], "nics": [],
                                    "hvparams": {"accel": "tcg", "kvm_extra": "-S"}})
    instance.start(instance.plan_runtime(spec, "qemu-system-x86_64"), where)
    row = []
    for i in range(16):
        path = make_disk(tmp, f"row{i}.img")
        begin = time.perf_counter()
        with runtime.locked(where):
            hotplug.present(where, "disks", {"path": path}, False, 30)
        row.append(time.perf_counter() - begin)
    instance.stop(where, 0, graceful=False)
    return {"counts": results, "row": row}


def bench_fleet(tmp: str, forks: tuple[int, ...]) -> dict:
    hosts = {f"h{i:02d}": {"rdir": os.path.join(tmp, f"fleet{i:02d}")} for i in range(10)}
    inventory = Path(tmp) / "fleet.yml"
    inventory.write_text(json.dumps({"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                                             "hosts": {h: {"rdir": v["rdir"]} for h, v in hosts.items()}}}))
    setup = Path(tmp) / "fleet-start.yml"
    setup.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "start", "kvmhv.qemu.kvm_instance": {"name": "vm", "runtime_dir": "{{ rdir }}",
                                                      "hvparams": {"accel": "tcg", "kvm_extra": "-S", "disk_type": "scsi-hd",
                                                                   "scsi_controller_type": "virtio-scsi-pci"}}}]}]))
    playbook(str(setup), str(inventory), "--forks", "10")
    results = {}
    for n, fork in enumerate(forks):
        for host in hosts.values():
            make_disk(host["rdir"], f"f{n}.img")
        book = Path(tmp) / f"fleet-{n}.yml"
        book.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": [
            {"name": "plug", "kvmhv.qemu.kvm_disk_hotplug": {"instance": "vm", "runtime_dir": "{{ rdir }}",
                                                             "disk": {"path": f"{{{{ rdir }}}}/f{n}.img"}}}]}]))
        results[fork] = playbook(str(book), str(inventory), "--forks", str(fork))
    for host in hosts.values():
        instance.stop(runtime.paths(host["rdir"], "vm"), 0, graceful=False)
    return results


def plot(hp: dict[str, dict], path: Path) -> None:
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


def main() -> None:
    # The default runtime_dir, /run/kvmhv, is on tmpfs on real hosts: /dev/shm stands in for it here.
    tmp = tempfile.mkdtemp(prefix="kvb-", dir="/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    on_disk = tempfile.mkdtemp(prefix="kvb-", dir="/var/tmp")
    os.chmod(tmp, 0o700)
    try:
        hp = {"pci": bench_hotplug("pci", tmp), "scsi": bench_hotplug("scsi", tmp)}
        hp_disk = bench_hotplug("scsi", on_disk)
        ans = bench_ansible(tmp)
        scale = bench_scale(tmp, (10, 25, 50))
        fleet = bench_fleet(tmp, (1, 2, 5, 10))
    finally:
        for pidfile in Path(tmp).rglob("*.pid"):
            where = runtime.Paths(str(pidfile.parent), pidfile.name[:-4])
            instance.stop(where, 0, graceful=False)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(on_disk, ignore_errors=True)
    plot(hp, OUT / "latency.png")
    lines = ["# Benchmark results", "",
             f"`make bench` on {os.cpu_count()} cores, QEMU TCG, the test guest; median (min-max) of {REPEAT} runs each, "
             "collection path and floor measured alternately in the same run. The runtime directory is on tmpfs, like the "
             "default /run/kvmhv of a real host. The add floor sends the same QMP commands as the collection (backend, "
             "device_add, verify query) one after the other over a fresh connection; the collection pipelines them "
             "in one burst. The unplug floor is device_del plus waiting for DEVICE_DELETED.", "",
             "| operation | kvmhv.qemu | floor | ratio | target |", "|---|---|---|---|---|"]
    for kind, res in hp.items():
        lines.append(f"| {kind.upper()} disk hotplug (allocate, blockdev-add, device_add, verify, save) | {fmt(res['add'])} | "
                     f"raw blockdev-add, device_add, query: {fmt(res['add_floor'])} | {res['add']['median'] / res['add_floor']['median']:.2f} | <= 1.3 |")
        lines.append(f"| {kind.upper()} unplug (device_del, DEVICE_DELETED, backend del, save) | {fmt(res['rm'])} | "
                     f"raw device_del + DEVICE_DELETED: {fmt(res['rm_floor'])} | {res['rm']['median'] / res['rm_floor']['median']:.2f} | <= 1.2 |")
    lines.append(f"| SCSI disk hotplug, runtime_dir on disk (the save's fsyncs hit the disk) | {fmt(hp_disk['add'])} | "
                 f"{fmt(hp_disk['add_floor'])} | {hp_disk['add']['median'] / hp_disk['add_floor']['median']:.2f} | (informative) |")
    lines.append(f"| `ansible -m kvmhv.qemu.kvm_disk_hotplug` | {fmt(ans['task'])} | `ansible -m ping`: {fmt(ans['floor'])} | "
                 f"{ans['task']['median'] / ans['floor']['median']:.2f} | <= 1.5 |")
    lines += ["", "## Scale on one host", "", "| instances | start all (one playbook) | per instance | kvm_instance_info over all | per instance |",
              "|---|---|---|---|---|"]
    for count, res in scale["counts"].items():
        lines.append(f"| {count} | {res['start']:.1f} s | {res['start'] / count * 1000:.0f} ms | {res['info'] * 1000:.0f} ms | "
                     f"{res['info'] / count * 1000:.1f} ms |")
    row = scale["row"]
    lines += ["", f"16 hotplugs in a row into one instance (library path): first {row[0] * 1000:.1f} ms, last {row[-1] * 1000:.1f} ms, "
              f"median {statistics.median(row) * 1000:.1f} ms: " + ", ".join(f"{s * 1000:.0f}" for s in row) + " ms.",
              "", "## Fleet: one playbook, 10 inventory hosts, one disk hotplug each", "", "| forks | wall time |", "|---|---|"]
    for fork, wall in fleet.items():
        lines.append(f"| {fork} | {wall:.1f} s |")
    lines += ["", "![latency per operation](latency.png)", ""]
    (OUT / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
