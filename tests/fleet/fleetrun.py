"""Running the collection on a fleet: playbooks over SSH with JSON results, the wheels kvm_host installs, ports.

The fleet's hosts reach no package index (no route out of the namespaces), so
kvm_host gets qemu.qmp from the controller: ``wheels_dir()`` downloads the
wheel once into ``.build/wheels`` (or uses ``$KVMHV_WHEEL_DIR``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from ansible_cli import REPO, ansible_env
from fleet import Fleet

VENV_BIN = Path(sys.executable).parent
HOST_VENV = "/opt/kvmhv/venv"  # kvm_host's default: where the modules' interpreter lives on a host
HOST_PYTHON = f"{HOST_VENV}/bin/python"


def python_requirements() -> list[str]:
    """kvm_host's pinned Python packages (its defaults are the one place they are listed)."""
    defaults = yaml.safe_load((REPO / "roles" / "kvm_host" / "defaults" / "main.yml").read_text())
    return list(defaults["kvm_host_python_packages"])


def wheels_dir() -> str:
    """A controller directory with the wheels kvm_host installs on the hosts (downloaded once)."""
    path = Path(os.environ.get("KVMHV_WHEEL_DIR") or REPO / ".build" / "wheels")
    wanted = python_requirements()
    stamp = path / ".requirements"
    if not stamp.exists() or stamp.read_text() != "\n".join(wanted):
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.whl"):
            old.unlink()
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", str(path), *wanted], check=True, capture_output=True, timeout=300)
        stamp.write_text("\n".join(wanted))
    return str(path)


def free_port(fleet: Fleet, host: str) -> int:
    """A TCP port nothing listens on in the host's namespace (the fleet's own network, so nobody else races)."""
    used = {int(line.split()[3].rsplit(":", 1)[1]) for line in fleet.exec(host, ["ss", "-Htan"]).stdout.splitlines() if line.strip()}
    while True:
        port = random.randrange(20000, 40000)
        if port not in used and port + 1 not in used:
            return port


def playbook(fleet: Fleet, plays: list[dict[str, Any]] | str, extra_vars: dict[str, Any] | None = None, *,
             check: bool = False, diff: bool = False, inventories: tuple[str, ...] = (), timeout: float = 900,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """ansible-playbook against the fleet's inventory (plays as data, or a playbook path).

    Returns {"rc", "stats", "tasks": [(name, host, result)], "stderr", "stdout"}.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(plays, str):
            book = plays
        else:
            book = os.path.join(tmp, "play.yml")
            Path(book).write_text(yaml.safe_dump(plays, sort_keys=False))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory)]
        for extra in inventories:
            argv += ["-i", extra]
        argv.append(book)
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        environ = ansible_env({**fleet.env, **(env or {})})
        environ.pop("ANSIBLE_PYTHON_INTERPRETER", None)  # the inventory (and kvm_host) choose the hosts' Python
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=timeout, check=False, cwd=str(REPO))
        seconds = time.monotonic() - started
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"ansible-playbook printed no JSON (rc={proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}") from None
    tasks = [(task["task"]["name"], host, result)
             for play in data["plays"] for task in play["tasks"] for host, result in task["hosts"].items()]
    print(f"ansible-playbook {' '.join(p.get('name', '?') for p in plays) if isinstance(plays, list) else plays}: "
          f"rc {proc.returncode}, {seconds:.1f}s")  # shown with the output of a failing test
    return {"rc": proc.returncode, "stats": data.get("stats", {}), "tasks": tasks, "stderr": proc.stderr, "stdout": proc.stdout,
            "seconds": seconds}


def results(run: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """host -> result of the task called ``name`` (a role's task also as ``role : name``; the last one per host)."""
    found = {host: res for task, host, res in run["tasks"] if task == name or task.endswith(f" : {name}")}
    assert found, f"no task {name!r} ran; tasks: {sorted({t for t, _h, _r in run['tasks']})}"
    return found


def failures(run: dict[str, Any]) -> list[str]:
    """One line per failed or unreachable task result (for assertion messages)."""
    return [f"{host}: {task}: {res.get('msg') or res.get('stderr') or res}" for task, host, res in run["tasks"]
            if (res.get("failed") or res.get("unreachable")) and not res.get("ignore_errors")]


def changed(run: dict[str, Any]) -> int:
    return sum(stats.get("changed", 0) for stats in run["stats"].values())


def host_runtime(fleet: Fleet, host: str, name: str) -> dict[str, Any] | None:
    """The instance's runtime file on the host, as JSON (None if there is none)."""
    path = fleet.path(host, f"/run/kvmhv/{name}.runtime.json")
    return json.loads(path.read_text()) if path.exists() else None


def host_files(fleet: Fleet, host: str, name: str) -> list[str]:
    """The instance's files in the host's runtime directory."""
    return sorted(p.name for p in fleet.path(host, "/run/kvmhv").glob(f"{name}.*"))


def host_qemus(fleet: Fleet, host: str, name: str | None = None) -> list[int]:
    """QEMU processes in the host's network namespace (of instance ``name``: its -name on the command line)."""
    out = subprocess.run(["ip", "netns", "pids", f"kvf-{host}"], capture_output=True, text=True, check=False).stdout
    found = []
    for pid in map(int, out.split()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"qemu-system-x86_64"):
            continue
        named = argv[argv.index(b"-name") + 1] if b"-name" in argv[:-1] else None
        if name is None or named == name.encode():
            found.append(pid)
    return found


__all__ = ["HOST_PYTHON", "HOST_VENV", "changed", "failures", "free_port", "host_files", "host_qemus", "host_runtime",
           "playbook", "results", "wheels_dir"]
