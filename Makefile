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

help:
	@echo "make up     set up, then build the default lab with pulumi up (LAB=name for another stack)"
	@echo "make down   pulumi destroy of the lab, then acklab clean as a safety net"
	@echo "make test   set up, then lint and every test (unit, kernel, end-to-end)"
	@echo "make bench  set up, then time N=10/50/100 ECS via acklab vs raw ip -batch, and pulumi up/destroy"

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

clean: setup
	acklab clean --lab $(LAB)

reliability: setup
	$(VENV)/bin/python -m tests.reliability 20

bench: setup
	$(VENV)/bin/python -m bench.ecs_scale
	$(VENV)/bin/python -m bench.pods_scale
	$(VENV)/bin/python -m bench.slb_wrk
	$(VENV)/bin/python -m bench.ingress_wrk
