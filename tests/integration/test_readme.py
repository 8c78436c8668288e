"""Every example in README.md, the guides in docs/docsite/rst/ and the role READMEs, checked; the marked ones run.

Two levels:

* every YAML example parses, every playbook passes ``ansible-playbook --syntax-check``, every option
  an example gives to a module or role of this collection is one the module or role documents,
  and every link between the documents lands;
* code blocks after a mark run on this machine (paths, hosts and the accelerator adapted). The
  mark is ``<!-- docs-test: NAME -->`` in Markdown and ``.. docs-test: NAME`` (an RST comment) in
  a guide; it covers the code blocks that follow it, up to the next mark.

So the documentation cannot drift from what works.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from ansible_cli import REPO, VENV_BIN, ansible_env, run_playbook
from guest_report import guest_hvparams

GUIDES = sorted((REPO / "docs" / "docsite" / "rst").glob("*.rst"))
ROLE_READMES = sorted((REPO / "roles").glob("*/README.md"))
DOCUMENTS = [REPO / "README.md", *GUIDES, *ROLE_READMES]
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("kvm_*.py"))


@dataclass(frozen=True)
class Code:
    path: Path
    line: int        # where the block's text starts (1-based)
    lang: str
    text: str
    mark: str | None  # the docs-test mark the block falls under

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line} ({self.lang})"


_MD_MARK = re.compile(r"<!-- docs-test: ([\w-]+) -->")
_MD_FENCE = re.compile(r"^```(\w*)\s*$")
_RST_MARK = re.compile(r"^\.\. docs-test: ([\w-]+)\s*$")
_RST_CODE = re.compile(r"^(\s*)\.\. code-block:: *(\S+)\s*$")


def _markdown(path: Path) -> Iterator[Code]:
    lines = path.read_text().splitlines()
    mark, pos = None, 0
    while pos < len(lines):
        found = _MD_MARK.search(lines[pos])
        fence = _MD_FENCE.match(lines[pos])
        if found:
            mark = found.group(1)
        elif fence:
            end = pos + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            assert end < len(lines), f"{path}:{pos + 1}: a code fence that never closes"
            yield Code(path, pos + 2, fence.group(1), "\n".join(lines[pos + 1:end]) + "\n", mark)
            pos = end
        pos += 1


def _rst(path: Path) -> Iterator[Code]:
    lines = path.read_text().splitlines()
    mark = None
    for pos, line in enumerate(lines):
        found = _RST_MARK.match(line)
        directive = _RST_CODE.match(line)
        if found:
            mark = found.group(1)
        elif directive:
            indent = len(directive.group(1))
            body = pos + 1
            while body < len(lines) and (not lines[body].strip() or lines[body].lstrip().startswith(":")):
                body += 1  # the blank line and any options of the directive
            end = body
            while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
                end += 1
            yield Code(path, body + 1, directive.group(2), textwrap.dedent("\n".join(lines[body:end])).strip("\n") + "\n", mark)


def code_blocks() -> list[Code]:
    return [code for path in DOCUMENTS for code in (_markdown(path) if path.suffix == ".md" else _rst(path))]


BLOCKS = code_blocks()


def block(name: str, index: int = 0) -> str:
    """The ``index``-th code block under the mark ``name`` (in README.md or a guide)."""
    marked = [code for code in BLOCKS if code.mark == name]
    assert marked and len({code.path for code in marked}) == 1, f"mark {name!r} must be in exactly one document"
    return marked[index].text


def commands(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_extractor_sees_every_code_block():
    """A block the extractor missed would be neither checked nor run: count the openers by hand."""
    for path in DOCUMENTS:
        text = path.read_text()
        openers = len(re.findall(r"^```\w", text, re.M)) if path.suffix == ".md" else text.count(".. code-block::")
        assert len([code for code in BLOCKS if code.path == path]) == openers, path
    assert {code.mark for code in BLOCKS} >= {"install", "first", "device-model", "defaults", "adhoc"}
    assert all(code.text.strip() for code in BLOCKS), [str(code) for code in BLOCKS if not code.text.strip()]


# ---- every example: it parses, its playbooks are valid, its options exist -------------------------

def _documented() -> dict[str, dict[str, Any]]:
    """Options of every module (from ansible-doc) by FQCN, and of every role (meta/argument_specs.yml) by
    ``role:FQCN`` (the kvm_instance role and module share a name)."""
    done = subprocess.run([str(VENV_BIN / "ansible-doc"), "-j", "-t", "module", *[f"kvmhv.qemu.{m}" for m in MODULES]],
                          capture_output=True, text=True, env=ansible_env(), check=True)
    options = {name: doc["doc"]["options"] for name, doc in json.loads(done.stdout).items()}
    for spec in (REPO / "roles").glob("*/meta/argument_specs.yml"):
        options[f"role:kvmhv.qemu.{spec.parent.parent.name}"] = yaml.safe_load(spec.read_text())["argument_specs"]["main"]["options"]
    return options


def _unknown(given: Any, options: dict[str, Any], where: str) -> list[str]:
    """Keys of ``given`` (and of its dicts, where the documentation has suboptions) that are not documented."""
    if not isinstance(given, dict):
        return []
    found = []
    for key, value in given.items():
        if key not in options:
            found.append(f"{where}{key}")
            continue
        sub = options[key].get("suboptions")
        if sub and isinstance(value, list):
            for item in value:
                found += _unknown(item, sub, f"{where}{key}[].")
        elif sub:
            found += _unknown(value, sub, f"{where}{key}.")
    return found


def _tasks(plays: list[Any]) -> Iterator[dict[str, Any]]:
    for play in plays:
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            for task in play.get(section) or []:
                yield from (_tasks([task]) if "block" in task else [task])
        yield from play.get("block") or []


def _roles(plays: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for play in plays:
        for role in play.get("roles") or []:
            yield (role, {}) if isinstance(role, str) else (role["role"], role.get("vars") or {})
    for task in _tasks(plays):
        for key in ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"):
            if key in task:
                yield task[key]["name"], task.get("vars") or {}


def _is_play_list(data: Any) -> bool:
    return isinstance(data, list) and bool(data) and all(isinstance(p, dict) and "hosts" in p for p in data)


def test_every_yaml_example_parses_and_gives_only_documented_options():
    documented = _documented()
    problems = []
    yaml_blocks = [code for code in BLOCKS if code.lang == "yaml"]
    assert len(yaml_blocks) >= 10, [str(code) for code in yaml_blocks]
    checked = 0
    for code in yaml_blocks:
        data = yaml.safe_load(code.text)  # every YAML example parses
        if not _is_play_list(data):
            continue  # an inventory, a requirements file, a result
        for task in _tasks(data):
            for name in [k for k in task if k.startswith("kvmhv.qemu.")]:
                checked += 1
                if name not in documented:
                    problems.append(f"{code}: no module {name}")
                else:
                    problems += [f"{code}: {name}: unknown option {o}" for o in _unknown(task[name], documented[name], "")]
        for name, given in _roles(data):
            checked += 1
            if f"role:{name}" not in documented:
                problems.append(f"{code}: no role {name}")
            else:
                problems += [f"{code}: role {name}: unknown variable {o}" for o in _unknown(given, documented[f"role:{name}"], "")]
        for play in data:
            for group, defaults in (play.get("module_defaults") or {}).items():
                if group == "group/kvmhv.qemu.kvm":  # the action group: an option of any of its modules
                    known = {o for m in MODULES for o in documented[f"kvmhv.qemu.{m}"]}
                elif group.startswith("kvmhv.qemu."):
                    known = set(documented.get(group, {}))
                else:
                    continue
                checked += 1
                problems += [f"{code}: module_defaults {group}: unknown option {o}" for o in defaults if o not in known]
    assert checked >= 12 and problems == [], problems


def test_every_playbook_example_passes_syntax_check(tmp_path):
    books = []
    for pos, code in enumerate(c for c in BLOCKS if c.lang == "yaml"):
        if _is_play_list(yaml.safe_load(code.text)):
            books.append(tmp_path / f"example-{pos}.yml")
            books[-1].write_text(code.text)
    assert len(books) >= 8, books
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", *map(str, books)],
                          capture_output=True, text=True, env=ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"}), check=False)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])


def test_commands_in_the_examples_name_files_that_exist():
    shown = [code for code in BLOCKS if code.lang in ("sh", "shell")]
    named = {m for code in shown for m in re.findall(r"\bplaybooks/[\w.-]+\.yml\b", code.text)}
    assert named and all((REPO / path).is_file() for path in named), named


def test_links_between_the_documents_land_and_every_guide_is_listed():
    labels = {m for path in GUIDES for m in re.findall(r"^\.\. _([\w.-]+):\s*$", path.read_text(), re.M)}
    refs = {(path.name, m) for path in GUIDES
            for m in re.findall(r":ref:`(?:[^`<]*<)?([\w.-]+)>?`", path.read_text())}
    assert refs and [r for r in refs if r[1] not in labels] == []
    linked = set(re.findall(r"\]\((docs/docsite/rst/[\w.-]+\.rst)\)", (REPO / "README.md").read_text()))
    assert linked == {str(path.relative_to(REPO)) for path in GUIDES}, "README.md links every guide, and only guides that exist"
    for page in [REPO / "README.md", REPO / "tests" / "README.md", *ROLE_READMES]:  # relative links land
        targets = [t for t in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()) if "://" not in t]
        assert [t for t in targets if not (page.parent / t).exists()] == [], page
    listed = {entry for section in yaml.safe_load((REPO / "docs" / "docsite" / "extra-docs.yml").read_text())["sections"]
              for entry in section["toctree"]}
    assert listed == {path.stem for path in GUIDES}, "extra-docs.yml lists every guide"


# ---- the marked examples, run ----------------------------------------------------------------------

def test_install_commands(tmp_path):
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(tmp_path)],
                   capture_output=True, text=True, check=True)
    tarball = next(tmp_path.glob("kvmhv-qemu-*.tar.gz"))
    with tarfile.open(tarball) as archive:  # the guides ship with the collection, as the docsite reads them from it
        shipped = set(archive.getnames())
    assert {"docs/docsite/extra-docs.yml", *(f"docs/docsite/rst/{p.name}" for p in GUIDES)} <= shipped
    requirements = yaml.safe_load(block("install", 1))
    # The README names the tarball this version builds, in the command and in requirements.yml.
    assert tarball.name in block("install"), f"README.md installs another version than {tarball.name}"
    assert Path(requirements["collections"][0]["source"]).name == tarball.name, requirements
    requirements["collections"][0]["source"] = str(tarball)
    (tmp_path / "requirements.yml").write_text(yaml.safe_dump(requirements))
    # As on a user's machine: no copy of the collection importable already (the test run's PYTHONPATH has one,
    # and ansible-galaxy then answers "Nothing to do").
    env = {k: v for k, v in ansible_env({"ANSIBLE_COLLECTIONS_PATH": ""}).items() if k != "PYTHONPATH"}
    for pos, shown in enumerate(commands(block("install"))):
        target = tmp_path / f"into-{pos}"
        argv = [a.replace(tarball.name, str(tarball)).replace("/src/kvmhv-qemu", str(REPO)) for a in shown]
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
    """The documented playbook on this machine: /srv/vm images made here, this runtime directory."""
    for path in sorted(set(re.findall(r"/srv/vm/[\w.-]+", text))):
        local = images / Path(path).name
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(local), "4M"], check=True)
        text = text.replace(path, str(local))
    return text.replace("/srv/kvmhv/run", runtime_dir)


def local_play(text: str, runtime_dir: str, images: Path) -> list[dict[str, Any]]:
    """A documented play for localhost: every task of the collection gets this runtime directory, and every
    kvm_instance the test guest under TCG."""
    play = yaml.safe_load(adapt(text, runtime_dir, images))
    for task in play[0]["tasks"]:
        module = next(k for k in task if k.startswith("kvmhv.qemu."))
        task[module]["runtime_dir"] = runtime_dir
        if module.endswith("kvm_instance"):
            task[module]["hvparams"] = guest_hvparams()
    play[0].update(hosts="localhost", connection="local", gather_facts=False)
    return play


def run_in(netns: str, play: list[dict[str, Any]], book: Path) -> list[dict[str, Any]]:
    book.write_text(yaml.safe_dump(play, sort_keys=False))
    run = subprocess.run(["ip", "netns", "exec", netns, str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(book)],
                         capture_output=True, text=True, env=ansible_env(), check=False)
    results = [t["hosts"]["localhost"] for t in json.loads(run.stdout)["plays"][0]["tasks"]]
    assert run.returncode == 0, [r.get("msg") for r in results]
    return results


def remove(netns: str, runtime_dir: str, name: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
                    "-m", "kvmhv.qemu.kvm_instance", "-a", json.dumps({"name": name, "state": "absent", "runtime_dir": runtime_dir})],
                   capture_output=True, env=ansible_env(), check=True)


@pytest.mark.xdist_group("fixed-host-names")  # a fixed netns / iSCSI portal: one worker runs these one after the other
def test_first_playbook_ad_hoc_commands_and_module_defaults(runtime_dir, tmp_path, netns):
    results = run_in(netns, local_play(block("first"), runtime_dir, tmp_path), tmp_path / "first.yml")
    assert all(r["changed"] for r in results), [r.get("msg") for r in results]
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
    remove(netns, runtime_dir, "web1")


@pytest.mark.xdist_group("fixed-host-names")  # a fixed netns / iSCSI portal: one worker runs these one after the other
def test_device_model_example_records_the_addresses_the_guide_shows(runtime_dir, tmp_path, netns):
    results = run_in(netns, local_play(block("device-model"), runtime_dir, tmp_path), tmp_path / "device-model.yml")
    recorded = results[1]["instance"]["runtime"]
    shown = yaml.safe_load(block("device-model", 1))

    def without_ids(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for device in devices:
            assert re.fullmatch(r"(disk|nic)-[0-9a-f]{8,}", device["hvinfo"]["id"]), device
        return [{k: v for k, v in device["hvinfo"].items() if k != "id"} for device in devices]

    assert [{"kind": c["kind"], "hvinfo": c["hvinfo"]} for c in recorded["controllers"]] == shown["controllers"]
    for kind in ("disks", "nics"):  # device ids come from uuids, which come from the (here adapted) paths
        assert without_ids(recorded[kind]) == without_ids(shown[kind]), kind
    remove(netns, runtime_dir, "db1")
