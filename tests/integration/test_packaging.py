"""The collection as operators get it: built, installed, used ad hoc and with module_defaults."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml
from ansible_cli import REPO, ansible_env, run_playbook
from guest_report import guest_dir

VENV_BIN = Path(sys.executable).parent


def test_build_install_and_run_the_demo_from_the_installed_copy(tmp_path):
    built = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(tmp_path)],
                           capture_output=True, text=True, check=True)
    tarball = next(tmp_path.glob("kvmhv-qemu-*.tar.gz"))
    assert "Created collection" in built.stdout
    with tarfile.open(tarball) as archive:
        names = {name.split("/", 1)[0] for name in archive.getnames()}
        files = set(archive.getnames())
    assert {"plugins", "roles", "playbooks", "meta", "README.md", "LICENSE", "requirements.txt",
            "MANIFEST.json", "FILES.json", "CHANGELOG.rst", "changelogs", "tests", "extensions"} <= names, names
    leaked = names & {".ansible", "collections", ".venv", ".build", ".ci", "Makefile", "mypy.ini", "pyproject.toml",
                      "requirements-dev.txt", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache"}
    assert not leaked, leaked
    assert "benchmarks/latency.png" not in files and not any("__pycache__" in f for f in files)
    assert open(REPO / "requirements.txt").read().count("==") == 1  # only qemu.qmp: an execution environment pulls nothing else
    installed = tmp_path / "installed"
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--force", "-p", str(installed), str(tarball)],
                   capture_output=True, text=True, check=True)
    root = installed / "ansible_collections" / "kvmhv" / "qemu"
    assert (root / "plugins" / "modules" / "kvm_disk_hotplug.py").exists() and not (root / ".venv").exists()
    env = ansible_env({"ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_STDOUT_CALLBACK": "default"})
    demo = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(root / "playbooks" / "inventory" / "hosts.yml"),
                           str(root / "playbooks" / "demo.yml"), "-e", f"guest_dir={guest_dir()}",
                           "-e", f"kvmhv_demo_dir={tmp_path}/demo"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-2000:]
    assert str(installed) in subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "module", "kvmhv.qemu.kvm_migrate"],
                                            capture_output=True, text=True, env=env, check=True).stdout
    assert "migrated hv1 -> hv2" in demo.stdout and "'status': 'completed'" in demo.stdout


def test_ad_hoc_key_value_call_prints_a_readable_result(runtime_dir, make_disk):
    env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"})
    base = ["ansible", "localhost", "-c", "local", "-i", "localhost,"]
    start = subprocess.run([*base, "-m", "kvmhv.qemu.kvm_instance", "-a",
                            f"name=adhoc1 runtime_dir={runtime_dir} hvparams={{'accel':'tcg','kvm_extra':'-S'}}"],
                           capture_output=True, text=True, env=env, check=False)
    assert start.returncode == 0 and "CHANGED" in start.stdout, start.stdout + start.stderr
    disk = make_disk("adhoc.img")
    plug = subprocess.run([*base, "-m", "kvmhv.qemu.kvm_disk_hotplug", "-a", f'instance=adhoc1 runtime_dir={runtime_dir} disk={{"path":"{disk}"}}'],
                          capture_output=True, text=True, env=env, check=False)
    assert plug.returncode == 0 and "localhost | CHANGED" in plug.stdout and '"addr": "0x10"' in plug.stdout, plug.stdout
    bad = subprocess.run([*base, "-m", "kvmhv.qemu.kvm_disk_hotplug", "-a", f"instance=adhoc1 runtime_dir={runtime_dir} disk={{'path':'/nope.img'}}"],
                         capture_output=True, text=True, env=env, check=False)
    assert bad.returncode != 0 and "/nope.img: No such file or directory" in bad.stdout and "Traceback" not in bad.stdout + bad.stderr
    subprocess.run([*base, "-m", "kvmhv.qemu.kvm_instance", "-a", f"name=adhoc1 runtime_dir={runtime_dir} state=absent"], env=env, check=True,
                   capture_output=True)


def test_module_defaults_group_sets_runtime_dir_for_all_modules(runtime_dir, make_disk):
    disk = make_disk("md.img")
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "module_defaults": {"group/kvmhv.qemu.kvm": {"runtime_dir": runtime_dir}},
        "tasks": [
            {"name": "start", "kvmhv.qemu.kvm_instance": {"name": "md1", "hvparams": {"accel": "tcg", "kvm_extra": "-S"}}},
            {"name": "plug", "kvmhv.qemu.kvm_disk_hotplug": {"instance": "md1", "disk": {"path": disk}}},
            {"name": "info", "kvmhv.qemu.kvm_instance_info": {"name": "md1"}},
            {"name": "remove", "kvmhv.qemu.kvm_instance": {"name": "md1", "state": "absent"}},
        ],
    }]
    book = Path(runtime_dir) / "play.yml"
    book.write_text(yaml.safe_dump(play))
    res = run_playbook(str(book))
    assert res["rc"] == 0, res["stderr"]
    by_name = {name: result for name, _host, result in res["tasks"]}
    assert by_name["start"]["instance"]["runtime_file"] == os.path.join(runtime_dir, "md1.runtime.json")
    assert by_name["info"]["instance"]["runtime"]["disks"][0]["path"] == disk
    assert not os.path.exists("/run/kvmhv/md1.runtime.json")
