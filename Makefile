# acklab: `make up` builds the default lab, `make test` runs every test. Both run the set-up first.
SHELL := /bin/bash
LAB ?= default
VENV := $(CURDIR)/.venv

# Pulumi: local file backend in .pulumi/ (no login), empty passphrase, engine from .venv/bin.
export PATH := $(VENV)/bin:$(PATH)
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi/state
export PULUMI_HOME ?= $(CURDIR)/.pulumi/home
export PULUMI_CONFIG_PASSPHRASE ?=
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING := true

PYTEST := $(VENV)/bin/pytest

.PHONY: setup up down test unit kernel e2e lint clean status help bench reliability
.PHONY: test-ssh ssh-up vagrant-check

help:
	@echo "make up     set up, then build the default lab with pulumi up (LAB=name for another stack)"
	@echo "make down   pulumi destroy of the lab, then acklab clean as a safety net"
	@echo "make test   set up, then lint and every test (unit, kernel, end-to-end)"
	@echo "make bench  set up, then the benchmarks (ECS, pods, SLB, kube-proxy rules, NetworkPolicy) against same-run baselines"
	@echo "make ssh-up the lab (make up), then sshd in every node, the playbook again over SSH from the controller"
	@echo "make test-ssh  set up, then the SSH-mode test (playbook over ssh, testinfra ssh backend); part of make test"
	@echo "make acceptance  set up, then the connectivity matrix (testinfra) on a default lab of its own"

setup:
	@scripts/setup.sh
	@mkdir -p .pulumi/state .pulumi/home

up: setup
	scripts/up.sh $(LAB)
	cd ansible && ACKLAB_LAB=$(LAB) ansible-playbook site.yml

down: setup
	-acklab recover --lab $(LAB)
	-pulumi destroy --yes --stack $(LAB)
	acklab clean --lab $(LAB)

status: setup
	acklab status --lab $(LAB)

lint: setup
	$(VENV)/bin/ruff check .
	cd ansible && $(VENV)/bin/ansible-lint

unit: setup
	$(PYTEST) tests/unit -q

kernel: setup
	$(PYTEST) tests/kernel -q

e2e: setup
	$(PYTEST) tests/e2e -q

test: setup lint
	$(PYTEST) tests --junitxml=reports/junit.xml

# The connectivity matrix (testinfra) on a default lab of its own, brought up and taken down by the session;
# ACKLAB_ACCEPTANCE_LAB=<lab> runs it against a lab that is already up instead.
.PHONY: acceptance
acceptance: setup
	$(PYTEST) tests/acceptance --junitxml=reports/acceptance.xml

clean: setup
	acklab clean --lab $(LAB)

reliability: setup
	$(VENV)/bin/python -m tests.reliability 20

# Every benchmark runs (each writes reports/bench/<name>.{json,md}); the target fails at the end if one missed.
BENCHES := ecs_scale pods_scale slb_wrk kube_proxy_scale netperf ingress_wrk netpol_scale
bench: setup
	@status=0; for b in $(BENCHES); do $(VENV)/bin/python -m bench.$$b || { echo "bench.$$b: target missed or failed"; status=1; }; done; exit $$status

# SSH mode (docs/vagrant.md): every node namespace runs sshd; the playbook runs from the controller namespace.
ssh-up: up
	$(VENV)/bin/python -m acklab.sshmode up --lab $(LAB)
	cd ansible && $(VENV)/bin/python -m acklab.sshmode exec --lab $(LAB) -- $(VENV)/bin/ansible-playbook site.yml

test-ssh: setup
	$(PYTEST) tests/e2e/test_ssh_mode.py tests/unit/test_sshmode.py tests/kernel/test_pod_plan_as_data.py -q

vagrant-check: setup
	$(PYTEST) tests/unit/test_vagrantfile.py -q
