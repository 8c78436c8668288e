# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ganeti's KVM runtime files in (every layout 2.0-3.1) and out (a downgrade export).

Pure functions: JSON data in, JSON data out; nothing here touches a file or
QEMU. One module per concern, so each reads on its own:

* ``opts``: QEMU's option text (``key=value`` lists, ``,,``) and a
  command line cut into option groups;
* ``kvm_cmd``: Ganeti's ``kvm_cmd`` made current, host plumbing set aside;
* ``records``: Ganeti's NIC and disk dicts -> records or fixed devices;
* ``read``: which layout a file is, its hvparams, the whole runtime;
* ``validate``: strict checks of what reading adds to a runtime;
* ``export``: a runtime back in Ganeti's layouts.

What a device QEMU placed itself *is* (and what cannot be started) is
``model.fixed``; how a start renders it is ``qemu.fixed``.
"""
