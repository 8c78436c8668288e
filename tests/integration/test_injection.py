"""Every value the collection puts on QEMU's command line, with each hostile character.

A value is either refused by its grammar (one line, nothing created) or it
reaches QEMU intact: QEMU's own view (qom-get, query-fdsets, the descriptor
it holds) is read back and compared with the input. Nothing may add a
property or an option.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from ansible_cli import run_module
from guest_report import guest_dir
from helpers import files_of, q, qemu_pids_in

HOSTILE = [",", "=", "\n", "-"]  # NUL cannot cross Ansible's argument passing; the grammars refuse it too
PAUSED = {"accel": "tcg", "kvm_extra": "-S"}


def refused(result: dict, runtime_dir: str, name: str) -> None:
    assert result.get("failed"), result
    assert "\n" not in result["msg"] and "Traceback" not in json.dumps(result), result["msg"]
    assert list(files_of(runtime_dir, name)) == [] and qemu_pids_in(runtime_dir) == []


def hostile(value: str, char: str) -> str:
    return f"{char}{value}" if char == "-" else f"{value[:2]}{char}{value[2:]}"


@pytest.mark.parametrize("char", HOSTILE)
@pytest.mark.parametrize("option", ["name", "uuid", "cpu_type", "machine_type", "mac", "ifname", "bridge", "kernel_path", "newline"])
def test_grammar_options_refuse_hostile_characters(runtime_dir, option, char):
    args: dict = {"name": "inj1", "runtime_dir": runtime_dir, "hvparams": dict(PAUSED)}
    if option == "name":
        args["name"] = hostile("inj1", char)
    elif option == "uuid":
        args["uuid"] = hostile("11111111-2222-4333-8444-555555555555", char)
    elif option in ("cpu_type", "machine_type"):
        args["hvparams"][option] = {"cpu_type": "qemu64,model-id=PWNED" if char == "," else hostile("qemu64", char),
                                    "machine_type": hostile("pc", char)}[option]
    elif option == "mac":
        args["nics"] = [{"mac": hostile("52:54:00:00:0d:01", char)}]
    elif option in ("ifname", "bridge"):
        network = {"type": "tap", "ifname": "kvi0", "bridge": "kvibr0", option: hostile("kvi0", char)}
        args["nics"] = [{"mac": "52:54:00:00:0d:01", "network": network}]
    elif option == "kernel_path":
        args["hvparams"]["kernel_path"] = hostile("vmlinuz", char)  # relative: refused whatever the character
    elif option == "newline":  # free-text values may hold , = and a leading -, never a control character
        if char != "\n":
            pytest.skip("only the newline is refused in free text")
        args["hvparams"]["kernel_args"] = "console=ttyS0\n-device x"
        args["disks"] = [{"path": "/tmp/a\nb.img"}]
    refused(run_module("kvm_instance", args), runtime_dir, args["name"] if option != "name" else "inj1")


def test_free_text_values_reach_qemu_intact(runtime_dir, make_disk):
    """Paths and kernel arguments are not options but values: QEMU must see exactly what was given."""
    weird = "k,file.filename=x=1 -z"
    readable = Path(tempfile.mkdtemp(prefix="kvmhv-inj-"))  # QEMU (unprivileged) reads the kernel itself
    readable.chmod(0o755)
    kernel, initrd = readable / f"{weird}-vmlinuz", readable / f"{weird}-initrd"
    shutil.copy(f"{guest_dir()}/vmlinuz", kernel)
    shutil.copy(f"{guest_dir()}/initrd.img", initrd)
    disk = make_disk(f"{weird}.img")
    append = 'console=ttyS0 a=b,c,,d -append "e" f -device x'
    res = run_module("kvm_instance", {"name": "inj2", "runtime_dir": runtime_dir, "disks": [{"path": disk}],
                                      "hvparams": {**PAUSED, "kernel_path": str(kernel), "initrd_path": str(initrd), "kernel_args": append}})
    assert res["changed"] is True, res
    sock, pid = res["instance"]["qmp_socket"], res["instance"]["pid"]
    try:
        for prop, want in (("kernel", str(kernel)), ("initrd", str(initrd)), ("append", append)):
            assert q(sock, "qom-get", {"path": "/machine", "property": prop}) == want
        dev_id = res["instance"]["disks"][0]["id"]
        fds = {fd["opaque"]: fd["fd"] for s in q(sock, "query-fdsets") for fd in s["fds"]}
        assert os.readlink(f"/proc/{pid}/fd/{fds[dev_id]}") == disk
        assert set(fds) == {"serial", dev_id}  # no extra fdset, no extra device
        peripherals = {p["name"] for p in q(sock, "qom-list", {"path": "/machine/peripheral"}) if p["type"].startswith("child<")}
        assert peripherals == {dev_id, "pci.1"}  # the disk and the bridge made for hotplug, nothing else
    finally:
        run_module("kvm_instance", {"name": "inj2", "runtime_dir": runtime_dir, "state": "absent"})
        shutil.rmtree(readable)


@pytest.mark.parametrize("char", HOSTILE)
def test_runtime_dir_with_hostile_characters(tmp_path, char):
    """The runtime directory's name never reaches QEMU as text: sockets and logs are descriptors."""
    directory = tmp_path / hostile("rtdir", char)
    res = run_module("kvm_instance", {"name": "inj3", "runtime_dir": str(directory), "hvparams": PAUSED})
    assert res["changed"] is True, res
    pid = res["instance"]["pid"]
    held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert str(directory / "inj3.serial.log") in held
    assert str(directory) not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert run_module("kvm_instance", {"name": "inj3", "runtime_dir": str(directory), "state": "absent"})["changed"] is True
