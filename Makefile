# kvmhv.qemu: one place for setting up, testing and demonstrating the collection.
# `make demo` and `make test` work on a fresh Debian machine (as root).

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

VENV := $(CURDIR)/.venv
BUILD := $(CURDIR)/.build
COLLECTIONS := $(BUILD)/collections
APT_PACKAGES := qemu-system-x86 qemu-utils qemu-block-extra busybox-static cpio iproute2 git shellcheck tgt python3-venv
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PYTHONPATH := $(COLLECTIONS)
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_PYTHON_INTERPRETER := $(VENV)/bin/python
export KVMHV_GUEST_DIR ?= /var/cache/kvmhv-qemu/guest
# QEMU runs as this unprivileged user (the kvm_host role creates it on real hosts).
QEMU_USER := kvmhv-qemu

.PHONY: setup apt venv link guest qemu-user demo test quick lint docs sanity units mutants integration molecule fleet fleet-up fleet-down bench bench-fixed bench-fleet clean

setup: apt venv link guest qemu-user

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done)
	if [ -n "$$missing" ]; then
	  echo "installing: $$missing"
	  # tgt (the tests' iSCSI target) must not start as a system service: tests run their own
	  if [ ! -e /usr/sbin/policy-rc.d ]; then
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
	    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	  fi
	  apt-get -o DPkg::Lock::Timeout=600 update -qq
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing >/dev/null
	fi

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

link:
	mkdir -p $(COLLECTIONS)/ansible_collections/kvmhv
	ln -sfn $(CURDIR) $(COLLECTIONS)/ansible_collections/kvmhv/qemu

guest:
	bash tests/guest/build-guest.sh >/dev/null

qemu-user:
	getent passwd $(QEMU_USER) >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $(QEMU_USER)
	if getent group kvm >/dev/null; then usermod -a -G kvm $(QEMU_USER); fi

demo: setup
	ansible-playbook -i playbooks/inventory/hosts.yml playbooks/demo.yml -e guest_dir=$(KVMHV_GUEST_DIR)

test: setup lint sanity units molecule integration fleet

# The inner loop: lint (with the layer contracts) and the unit tests, about a minute.
quick: setup lint units

lint: docs
	ruff check plugins tests benchmarks
	pycodestyle --max-line-length 160 --ignore=W503,W504,E402,E741,E203 plugins tests benchmarks extensions
	MYPYPATH=$(COLLECTIONS) mypy --config-file mypy.ini -p ansible_collections.kvmhv.qemu.plugins.module_utils
	lint-imports  # the layers of DESIGN.md (pyproject.toml [tool.importlinter])
	ansible-lint

# The guides (docs/docsite/rst, listed in docs/docsite/extra-docs.yml) and the
# module and role documentation, checked as the Ansible docsite would build them:
# RST, labels, toctree, references to plugins and options, doc schemas.
docs:
	antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs .

# ansible-test needs the collection at ansible_collections/kvmhv/qemu inside a
# git tree: copy the files git knows (tracked or new, not ignored) there.
sanity: setup
	install -D -m 0644 .ci/get_pip_standin.py ~/.ansible/test/cache/get_pip_24_2.py
	rm -rf $(BUILD)/sanity
	dest=$(BUILD)/sanity/ansible_collections/kvmhv/qemu
	mkdir -p $$dest
	git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents -P {} $$dest/ 2>/dev/null || true
	cd $$dest && git init -q && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity
	cd $$dest && ansible-test sanity --venv --python 3.11 --color no

units: setup
	python -m pytest tests/unit -q

# Hand-written mutants of module_utils; the unit suite must kill every one (tests/README.md).
mutants: setup
	python tests/unit/mutants.py

# Two workers: a test spends half its time waiting for a guest or a subprocess. Tests that use a
# fixed host-wide name (a network namespace, the iSCSI portal) share the xdist group fixed-host-names.
integration: setup
	python -m pytest tests/integration -q -n 2 --dist loadgroup

# Several hosts reached over SSH (tests/fleet/README.md): network namespaces on
# a bridge, each with its own sshd, runtime and storage directories; kvm_host
# over SSH, migration over TCP with and without shared storage, the fleet
# playbooks. The names (kvf-*) are fixed: one fleet per machine, so these tests
# never run in parallel with another fleet run.
fleet: setup
	python -m pytest tests/fleet -q

# A fleet to work with by hand (inventory in /run/kvmhv-fleet); `make fleet-down` removes it.
FLEET_HOSTS ?= 3
fleet-up: setup
	python tests/fleet/fleet.py up --hosts $(FLEET_HOSTS)

fleet-down:
	python tests/fleet/fleet.py down

# The role scenario on this machine: converge, idempotence, verify, destroy.
molecule: setup
	cd extensions && molecule test

# Latency against floors and scale; writes benchmarks/RESULTS.md and latency.png,
# then the fleet figures (benchmarks/RESULTS-fleet.md; brings up its own fleets).
bench: setup
	pip install -q -r benchmarks/requirements.txt
	python benchmarks/run.py
	python benchmarks/fleet_bench.py

# Only the fixed cost of one call: single adds against raw QMP, an ad-hoc hotplug against ansible -m ping (~3 min).
bench-fixed: setup
	python benchmarks/fixed_cost.py

# Only the fleet figures: hotplug over SSH on 10 hosts against ping, migration with copy_storage against shared storage.
bench-fleet: setup
	python benchmarks/fleet_bench.py

clean:
	rm -rf $(BUILD) tests/output
