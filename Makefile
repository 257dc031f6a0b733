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

.PHONY: setup setup-test up down test unit kernel e2e lint clean status help bench reliability
.PHONY: test-ssh ssh-up vagrant-check

help:
	@echo "make up     set up, pulumi up of the default lab, its cluster (cluster.yml), kubectl apply of its workloads, then wait until it serves (LAB=name, WAIT=false)"
	@echo "make down   the cluster down (cluster.yml), pulumi destroy of the lab, then acklab clean as a safety net"
	@echo "make test   set up (with the tests' extras and the Kubernetes binaries), then lint and every test"
	@echo "make bench  set up, then the benchmarks (ECS, the plugin, pods, SLB, kube-proxy rules, NetworkPolicy, make up) against same-run baselines or the issues' targets"
	@echo "make ssh-up the lab as make up builds it, but the nodes join over SSH: the control plane from the host, sshd in every node, cluster.yml's nodes from the controller"
	@echo "make test-ssh  set up, then the SSH-mode test (cluster.yml's nodes over ssh, testinfra ssh backend); part of make test"
	@echo "make acceptance  set up, then the connectivity matrix (testinfra) on a default lab of its own, then the slow scenarios (tutorials)"
	@echo "make graph  make up, then redraw the default lab's picture (docs/img/default-lab.svg, README's Mermaid)"
	@echo "make tutorial  the tutorials' lab (docs/tutorials): ACKLAB_LAB=name, ALLOW_PODS=true, DATAPATH=vxlan"
	@echo "make ack-up   an ACK cluster (labs/ack: cs.ManagedKubernetes + cs.NodePool), kubectl apply of its k8s/, then wait until its Ingress answers (LAB=name, default ack)"
	@echo "make ack-down pulumi destroy of the ACK lab, stack rm, then acklab clean"

# setup: what a lab needs (make up); setup-test: that and the tests' extras (wrk, sshd, vagrant, ...).
setup:
	@scripts/setup.sh lab

setup-test:
	@scripts/setup.sh test

# KUBERNETES=false: the cloud only; WAIT=false returns once built (scripts/up.sh).
up: setup
	KUBERNETES=$(KUBERNETES) WAIT=$(WAIT) scripts/up.sh $(LAB)

down: setup
	scripts/down.sh $(LAB)

status: setup
	acklab status --lab $(LAB)

lint: setup-test
	$(VENV)/bin/python scripts/lint.py  # ruff, yamllint, ansible-lint; JUnit XML in reports/lint.xml

unit: setup-test
	$(PYTEST) tests/unit -q

kernel: setup-test
	$(PYTEST) tests/kernel -q

e2e: setup-test
	$(PYTEST) tests/e2e -q

test: setup-test lint
	$(PYTEST) tests -m "not slow" --junitxml=reports/junit.xml

# The connectivity matrix (testinfra) on a default lab of its own, brought up and taken down by the session;
# ACKLAB_ACCEPTANCE_LAB=<lab> runs it against a lab that is already up instead.
.PHONY: acceptance
acceptance: setup-test
	$(PYTEST) tests/acceptance --junitxml=reports/acceptance.xml
	$(PYTEST) tests -m slow --junitxml=reports/slow.xml  # the long scenarios make test leaves out (tutorials)

clean: setup
	acklab clean --lab $(LAB)

reliability: setup-test
	$(VENV)/bin/python -m tests.reliability 20

# Every benchmark runs (each writes reports/bench/<name>.{json,md}); the target fails at the end if one missed.
BENCHES := ecs_scale provider_scale default_lab_up pods_scale slb_wrk kube_proxy_scale netperf ingress_wrk netpol_scale k8s_api make_up
bench: setup-test
	@status=0; for b in $(BENCHES); do $(VENV)/bin/python -m bench.$$b || { echo "bench.$$b: target missed or failed"; status=1; }; done; exit $$status

# SSH mode (docs/vagrant.md): every node namespace runs sshd; the nodes' part of cluster.yml runs from the
# controller namespace over SSH (on each node, reaching the API server through the VPC). The control plane, ACK's
# managed part, is built from the host first (scripts/up.sh with NODES=ssh), then the manifests and the waits.
ssh-up: setup
	NODES=ssh WAIT=$(WAIT) scripts/up.sh $(LAB)

test-ssh: setup-test
	$(PYTEST) tests/e2e/test_ssh_mode.py tests/unit/test_sshmode.py -q

vagrant-check: setup-test
	$(PYTEST) tests/unit/test_vagrantfile.py -q

# The tutorials' lab (docs/tutorials/): labs/tutorial's program (the default lab + web servers, a security group,
# an SLB) as stack $(TUTORIAL_LAB), built as `make up` builds a lab (scripts/up.sh: the cluster on its API server,
# cluster.yml, then `kubectl apply` of the tutorial's manifests, then the waits). ALLOW_PODS=true adds the
# security-group rule for pods; DATAPATH=vpc-route|vxlan picks another pod datapath (for a new lab).
TUTORIAL_LAB ?= $(or $(ACKLAB_LAB),tutorial)
ALLOW_PODS ?= false
.PHONY: tutorial tutorial-down graph
tutorial: setup
	cd labs/tutorial && pulumi stack select --create $(TUTORIAL_LAB) >/dev/null 2>&1 && \
	  pulumi config set acklab:allowPods $(ALLOW_PODS) --stack $(TUTORIAL_LAB) \
	  $(if $(DATAPATH),&& pulumi config set acklab:datapath $(DATAPATH) --stack $(TUTORIAL_LAB))
	cd labs/tutorial && ACKLAB_MANIFESTS=$(realpath labs/tutorial/k8s) WAIT=$(WAIT) \
	  $(CURDIR)/scripts/up.sh $(TUTORIAL_LAB)

tutorial-down: setup
	cd labs/tutorial && $(CURDIR)/scripts/down.sh $(TUTORIAL_LAB)

# The default lab's picture, from a real lab: make up, then acklab graph as SVG (docs/img/default-lab.svg, on the
# README) and as Mermaid text (docs/img/default-lab.mmd, and in README.md between its markers).
graph: up
	acklab graph --lab $(LAB) --title "the default lab (make up)" --format svg -o docs/img/default-lab.svg
	acklab graph --lab $(LAB) --title "the default lab (make up)" --format mermaid -o docs/img/default-lab.mmd
	$(VENV)/bin/python scripts/graph-readme.py docs/img/default-lab.mmd

# The ACK lab (labs/ack/README.md): an unmodified pulumi-alicloud ACK cluster program (stack $(ACK_LAB): LAB=name,
# else "ack", not the default lab's "default"), its kubeconfig from the stack output into $(ACK_KUBECONFIG), the
# workloads of labs/ack/k8s (not its subfolders) applied with kubectl, then scripts/cluster-wait.py until the Ingress
# and the LoadBalancer Service answer from the lab's internet (`acklab wait` does not know Kubernetes objects: it
# cannot tell an Ingress rule that routes from nginx's 404), then `acklab wait` (every SLB listener healthy, every
# pod answering). WAIT=false skips both.
ACK_LAB ?= $(if $(filter command line environment override,$(origin LAB)),$(LAB),ack)
ACK_KUBECONFIG ?= $(CURDIR)/.pulumi/ack-$(ACK_LAB).kubeconfig
ACK_WAIT_TIMEOUT ?= 120
.PHONY: ack-up ack-down
ack-up: setup
	scripts/build-kube.sh  # the control plane, kube-proxy and kubectl (cached after the first build)
	scripts/build-coredns.sh  # the cluster's DNS (likewise)
	cd labs/ack && acklab recover --lab $(ACK_LAB) && pulumi stack select --create $(ACK_LAB) && \
	  pulumi up --yes --skip-preview --stack $(ACK_LAB)
	mkdir -p $(dir $(ACK_KUBECONFIG)) && cd labs/ack && umask 077 && \
	  pulumi stack output kubeconfig --show-secrets --stack $(ACK_LAB) > $(ACK_KUBECONFIG)
	kubectl --kubeconfig $(ACK_KUBECONFIG) apply -f labs/ack/k8s
	$(if $(filter false,$(WAIT)),,$(VENV)/bin/python scripts/cluster-wait.py --lab $(ACK_LAB) \
	  --kubeconfig $(ACK_KUBECONFIG) --timeout $(ACK_WAIT_TIMEOUT) \
	  --ingress default/web,web.acklab.test,/app/hostname --service default/web,,/hostname && \
	  acklab wait --lab $(ACK_LAB))
	@echo "kubectl: export KUBECONFIG=$(ACK_KUBECONFIG)   the lab's internet: acklab exec --lab $(ACK_LAB) internet -- curl ..."

# A destroy that fails is said and run once more (what it left is finished by the second: see the first's output).
ack-down: setup
	-cd labs/ack && acklab recover --lab $(ACK_LAB) && \
	  { pulumi destroy --yes --skip-preview --stack $(ACK_LAB) || \
	    { echo "ack-down: pulumi destroy failed (above); once more" >&2; \
	      pulumi destroy --yes --skip-preview --stack $(ACK_LAB); }; } && \
	  pulumi stack rm --yes --stack $(ACK_LAB)
	acklab clean --lab $(ACK_LAB)
	rm -f $(ACK_KUBECONFIG)
