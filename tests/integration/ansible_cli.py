"""Run real ``ansible`` / ``ansible-playbook`` commands against localhost and
return their results as Python data (through the json stdout callback).

Integration tests use these instead of importing modules, so every test goes
through the same path an operator uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".build" / "collections"
VENV_BIN = Path(sys.executable).parent


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    link = COLLECTIONS / "ansible_collections" / "kvmhv" / "qemu"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_STDOUT_CALLBACK": "kvmhv_json",
        "ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).parent / "callback_plugins"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
    })
    env.update(extra or {})
    return env


def _parse(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"ansible printed no JSON (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None


def run_module(module: str, args: dict[str, Any], check: bool = False, diff: bool = False,
               timeout: int = 300, netns: str | None = None) -> dict[str, Any]:
    """``ansible localhost -m kvmhv.qemu.<module> -a <json>`` (inside network namespace ``netns``); the host's result."""
    argv = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
            "-m", module if "." in module else f"kvmhv.qemu.{module}", "-a", json.dumps(args)]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), timeout=timeout, check=False)
    data = _parse(proc)
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]


def run_playbook(tasks_or_play: list[dict[str, Any]] | str, extra_vars: dict[str, Any] | None = None,
                 inventory: str = "localhost,", check: bool = False, diff: bool = False,
                 timeout: int = 600, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a playbook (a task list for localhost, or a playbook file path).

    Returns ``{"rc", "stats", "tasks": [(name, host, result)], "raw"}``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(tasks_or_play, str):
            book = tasks_or_play
        else:
            book = os.path.join(tmp, "play.yml")
            play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks_or_play}]
            Path(book).write_text(yaml.safe_dump(play, sort_keys=False))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", inventory, book]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(env), timeout=timeout, check=False)
    data = _parse(proc)
    tasks = [(task["task"]["name"], host, result)
             for play in data["plays"] for task in play["tasks"] for host, result in task["hosts"].items()]
    return {"rc": proc.returncode, "stats": data.get("stats", {}), "tasks": tasks, "raw": data, "stderr": proc.stderr}
