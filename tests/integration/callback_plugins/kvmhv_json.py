# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only stdout callback: the whole run as one JSON document.

ansible-core 2.19 no longer ships a json callback, and the tests need every
task's result as data. Output: {"plays": [{"tasks": [{"task": {"name"},
"hosts": {host: result}}]}], "stats": {host: {...}}}.
"""

from __future__ import annotations

import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: kvmhv_json
type: stdout
short_description: whole run as JSON (kvmhv.qemu tests)
description: Prints one JSON document with every task result, for the integration tests.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "kvmhv_json"

    def __init__(self) -> None:
        super().__init__()
        self.plays: list[dict] = []

    def _task(self, task) -> dict:
        if not self.plays:
            self.plays.append({"tasks": []})
        tasks = self.plays[-1]["tasks"]
        if not tasks or tasks[-1]["_uuid"] != task._uuid:
            tasks.append({"_uuid": task._uuid, "task": {"name": task.get_name()}, "hosts": {}})
        return tasks[-1]

    def v2_playbook_on_play_start(self, play) -> None:
        self.plays.append({"tasks": []})

    def _record(self, result, **extra) -> None:
        data = dict(result._result)
        data.update(extra)
        host = result._host.get_name()
        entry = self._task(result._task)["hosts"]
        if "results" in entry.get(host, {}):
            return
        entry[host] = data

    def v2_runner_on_ok(self, result) -> None:
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result) -> None:
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result) -> None:
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats) -> None:
        summary = {host: stats.summarize(host) for host in sorted(stats.processed)}
        for play in self.plays:
            for task in play["tasks"]:
                task.pop("_uuid", None)
        self._display.display(json.dumps({"plays": self.plays, "stats": summary}, default=str))
