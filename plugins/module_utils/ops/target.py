# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A migration target's mark, settled by whoever touches the instance next.

The target cannot know when the source finished, so every writer asks QEMU:
a target whose QEMU left ``inmigrate`` holds the instance now; one whose
QEMU is gone failed, and the instance lives on the source. A
``copy_storage`` target then closes its NBD server and forgets which images
it created: they are the instance's disks from now on.
"""

from __future__ import annotations

import contextlib

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import INCOMING, Runtime


def _never_completed(session: Session) -> KvmError:
    return KvmError(f"instance {session.name} here was a migration target whose migration never completed "
                    "(the instance lives on the source); remove it here with state=absent")


async def settle_incoming(session: Session, rt: Runtime, pid: int | None) -> Runtime:
    """Drop the mark once the guest runs here (and write that down unless in check mode); an error while it cannot."""
    if rt.get("mark") != INCOMING:
        return rt
    if pid is None:
        raise _never_completed(session)
    state, now = await session.status()
    if state == "incoming":
        raise KvmError(f"instance {session.name} here is a migration target still waiting for its migration")
    if now is None:  # QEMU went since (a failed incoming migration ends it): the guest never came
        raise _never_completed(session)
    if state == "unknown":  # QMP does not answer (a QEMU on its way out answers nothing): whether it arrived is unknown
        raise KvmError(f"instance {session.name} here is a migration target whose QEMU does not answer QMP: whether its "
                       "migration arrived is unknown; try again once it answers")
    rt.pop("mark", None)
    created = rt.pop("created_images", None)
    if not session.check:
        if created is not None:
            with contextlib.suppress(KvmError):  # QEMU may be gone: then so is its NBD server
                await storage.unexport(await session.monitor())
            storage.disown(created)  # before the record goes: a kill in between leaves a record that matches nothing
        session.save(rt)
    return rt


async def arrived(session: Session) -> bool | None:
    """For a runtime marked incoming: True once the guest runs here, False while it cannot, None if QEMU does not say."""
    state, pid = await session.status()
    if pid is None or state == "incoming":
        return False
    return None if state == "unknown" else True
