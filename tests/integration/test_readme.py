"""Every command and playbook the README shows, run for real (paths, hosts and the accelerator adapted).

README blocks marked ``<!-- readme-test: NAME -->`` are taken from the
README itself, so the documentation cannot drift from what works.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible_cli import REPO, VENV_BIN, ansible_env, run_playbook
from guest_report import guest_hvparams

README = (REPO / "README.md").read_text()


def block(name: str, index: int = 0) -> str:
    """The ``index``-th fenced block after the marker ``name``."""
    tail = README.split(f"<!-- readme-test: {name} -->", 1)[1]
    return re.findall(r"```\w*\n(.*?)```", tail, re.S)[index]


def commands(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_install_commands(tmp_path):
    built = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(tmp_path)],
                           capture_output=True, text=True, check=True)
    tarball = next(tmp_path.glob("kvmhv-qemu-*.tar.gz"))
    assert tarball.name in block("install") or "Created collection" in built.stdout
    requirements = yaml.safe_load(block("install", 1))
    requirements["collections"][0]["source"] = str(tarball)
    (tmp_path / "requirements.yml").write_text(yaml.safe_dump(requirements))
    # As on a user's machine: no copy of the collection importable already (the test run's PYTHONPATH has one,
    # and ansible-galaxy then answers "Nothing to do").
    env = {k: v for k, v in ansible_env({"ANSIBLE_COLLECTIONS_PATH": ""}).items() if k != "PYTHONPATH"}
    for pos, shown in enumerate(commands(block("install"))):
        target = tmp_path / f"into-{pos}"
        argv = [re.sub(r"^kvmhv-qemu-[0-9.]+\.tar\.gz$", str(tarball), a).replace("/src/kvmhv-qemu", str(REPO)) for a in shown]
        done = subprocess.run([str(VENV_BIN / argv[0]), *argv[1:], "-p", str(target)], capture_output=True, text=True,
                              cwd=tmp_path, env={**env, "ANSIBLE_COLLECTIONS_PATH": str(target)}, check=False)
        assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
        assert (target / "ansible_collections" / "kvmhv" / "qemu" / "plugins" / "modules" / "kvm_instance.py").exists(), argv


@pytest.fixture
def netns():
    name = "kvrm"
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "add", "br0", "type", "bridge"], check=True)
    yield name
    for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout.split():
        subprocess.run(["kill", "-9", pid], check=False)
    subprocess.run(["ip", "netns", "del", name], check=False)


def adapt(text: str, runtime_dir: str, images: Path) -> str:
    """The README's playbook on this machine: /srv/vm images made here, TCG, this runtime directory."""
    for path in sorted(set(re.findall(r"/srv/vm/[\w.-]+", text))):
        local = images / Path(path).name
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(local), "4M"], check=True)
        text = text.replace(path, str(local))
    return text.replace("/srv/kvmhv/run", runtime_dir)


def test_first_playbook_ad_hoc_commands_and_module_defaults(runtime_dir, tmp_path, netns):
    play = yaml.safe_load(adapt(block("first"), runtime_dir, tmp_path))
    for task in play[0]["tasks"]:
        module = next(k for k in task if k.startswith("kvmhv.qemu."))
        task[module]["runtime_dir"] = runtime_dir
        if module.endswith("kvm_instance"):
            task[module]["hvparams"] = guest_hvparams()  # the test guest under TCG (it acknowledges the purge's unplug)
    play[0].update(hosts="localhost", connection="local", gather_facts=False)
    book = tmp_path / "first.yml"
    book.write_text(yaml.safe_dump(play, sort_keys=False))
    run = subprocess.run(["ip", "netns", "exec", netns, str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(book)],
                         capture_output=True, text=True, env=ansible_env(), check=False)
    data = json.loads(run.stdout)
    results = [t["hosts"]["localhost"] for t in data["plays"][0]["tasks"]]
    assert run.returncode == 0 and all(r["changed"] for r in results), [r.get("msg") for r in results]
    assert [d["hvinfo"]["driver"] for d in results[2]["instance"]["disks"]] == ["virtio-blk-pci", "scsi-hd"]
    assert len(results[2]["devices"]["unplug"]) == 1  # the hotplugged data disk left: purge

    for argv in commands(adapt(block("adhoc"), runtime_dir, tmp_path)):
        argv[1:2] = ["localhost", "-c", "local", "-i", "localhost,"]
        args = json.loads(argv[argv.index("-a") + 1])
        argv[argv.index("-a") + 1] = json.dumps({**args, "runtime_dir": runtime_dir})
        done = subprocess.run(["ip", "netns", "exec", netns, str(VENV_BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                              env=ansible_env(), check=False)
        result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        assert done.returncode == 0 and not result.get("failed"), result

    defaults = yaml.safe_load(adapt(block("defaults"), runtime_dir, tmp_path))  # runtime_dir comes from module_defaults
    defaults[0].update(hosts="localhost", connection="local", gather_facts=False)
    book = tmp_path / "defaults.yml"
    book.write_text(yaml.safe_dump(defaults, sort_keys=False))
    run = run_playbook(str(book))
    assert run["rc"] == 0 and run["tasks"][0][2]["changed"] is True, run
    subprocess.run(["ip", "netns", "exec", netns, str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
                    "-m", "kvmhv.qemu.kvm_instance", "-a", json.dumps({"name": "web1", "state": "absent", "runtime_dir": runtime_dir})],
                   capture_output=True, env=ansible_env(), check=True)
