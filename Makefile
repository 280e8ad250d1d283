# talbench: everything a fresh Debian/Ubuntu machine needs, installed by the project itself.
#   make run    install, build the lab, run the control-plane scenario on it, remove the lab
#   make check  the quick tier, no system packages or builds: format check, ruff, import contracts,
#               mypy, and the tests marked none of root, lab, processes (pytest --check-tier)
#   make test   install what the tests need; make check and actionlint, then the rest of the tests
#               (root, lab, processes): the whole suite, what CI runs (.ci/run)
#   make lint   formatter check (ruff format), ruff's rules, import-linter's layer contracts (.importlinter),
#               actionlint (with shellcheck) on .github/workflows
#   make typecheck  mypy (strict on the pure layers; pyproject.toml [tool.mypy])
#   make fmt    format the tree and apply ruff's safe fixes
#   make bench  benchmarks/bench_*.py (talbench next to the reference tools), written to results/bench/
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tools the probes and the lab drive: ip (lab), ping (bench), fio (fsync), iperf3 (throughput),
# wireguard-go + wg (tunnel), procps, runc + umoci (the test bed: agents in containers, python -m testbed.kubelab up --image).
# etcd and etcdctl are not Debian's (3.4): `make etcd`.
APT_PACKAGES := iproute2 iputils-ping procps fio iperf3 wireguard-go wireguard-tools runc umoci
# The metrics tests push to a real Pushgateway scraped by a real Prometheus (and run promtool),
# both started by the test on loopback ports (tests/bench/report/test_prometheus.py).
APT_PACKAGES += prometheus prometheus-pushgateway
# report.html is loaded by headless Chromium over the DevTools protocol: no console error, one
# heatmap cell per measured pair, a screenshot (tests/bench/report/test_html_browser.py).
APT_PACKAGES += chromium
# etcd and etcdctl at the version Talos ships, built from etcd's Go modules (needs Go, see
# agents/build/build-etcd.sh) once per machine into $(TALBENCH_CACHE)/etcd/, for ETCD_ARCHES (the
# image takes both); this machine's are linked into ETCD_BINDIR, ahead of /usr/bin on PATH.
TALBENCH_CACHE ?= /var/cache/talbench
export TALBENCH_CACHE
ETCD_ARCHES ?= amd64 arm64
ETCD_BINDIR ?= /usr/local/bin
RUN_ARGS ?=

.PHONY: run check test lint typecheck fmt bench system-deps etcd venv lab-down clean actionlint shellcheck image
.PHONY: kubernetes etcd-benchmark

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
# actionlint, a Go program from the Go module proxy (`go list -m -versions github.com/rhysd/actionlint`),
# installed once per machine under $(TALBENCH_CACHE), with the Go caches `make etcd` uses
ACTIONLINT_VERSION := v1.7.12
ACTIONLINT := $(TALBENCH_CACHE)/bin/actionlint-$(ACTIONLINT_VERSION)/actionlint

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make: needs root to install:$$missing (run as root, or install them)" >&2; exit 3; fi; \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "talbench needs Python >= 3.11 (PYTHON=...)")'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

etcd:
	@agents/build/build-etcd.sh $(ETCD_ARCHES)
	@arch=$$(uname -m | sed 's/^x86_64$$/amd64/; s/^aarch64$$/arm64/'); \
	dir=$$(agents/build/build-etcd.sh --print-dir $$arch); \
	[ -x "$$dir/etcd" ] || agents/build/build-etcd.sh $$arch; \
	for b in etcd etcdctl; do \
	  [ "$$(readlink "$(ETCD_BINDIR)/$$b")" = "$$dir/$$b" ] && continue; \
	  if [ ! -w "$(ETCD_BINDIR)" ]; then \
	    echo "make: needs root to link $$b into $(ETCD_BINDIR) (or ETCD_BINDIR=a directory on your PATH)" >&2; exit 3; \
	  fi; \
	  ln -sfn "$$dir/$$b" "$(ETCD_BINDIR)/$$b" && echo "linked $(ETCD_BINDIR)/$$b -> $$dir/$$b"; \
	done; \
	found=$$(command -v etcd || true); \
	[ "$$found" = "$(ETCD_BINDIR)/etcd" ] || echo "make: warning: etcd on PATH is '$$found', not $(ETCD_BINDIR)/etcd" >&2

venv: system-deps etcd $(STAMP)

# The Kubernetes control plane of `python -m testbed.kubelab up --kubernetes` (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl), built from the k8s.io/kubernetes Go module by
# agents/build/build-kubernetes.sh once per machine into $(TALBENCH_CACHE)/kubernetes/<version>/linux-<arch>/
# (a second run is instant).  A dependency of `test`: the kube tests need a real API server.
kubernetes:
	@agents/build/build-kubernetes.sh
	@echo "Kubernetes binaries in $$(agents/build/build-kubernetes.sh --print-dir)"

# Exits 0 when the run completed, whatever the verdicts (exit 1 = a finding about this machine);
# set-up errors (2, 3) and interruptions (130) still fail.
run: venv etcd
	@rc=0; $(BIN)/talbench run --scenario control-plane --target lab $(RUN_ARGS) || rc=$$?; \
	if [ $$rc -le 1 ]; then echo "make run: the run completed (talbench exit $$rc)"; exit 0; fi; exit $$rc

# The tests that run the agents from the image under runc (tests/testbed/test_containers.py)
# use this machine's image, rebuilt when a source it packs changes (minutes: docs/measurements.md), so a
# clean checkout (CI) builds and tests the image users get.
HOST_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
TEST_IMAGE := results/image/talbench-$(VERSION)-$(HOST_ARCH).oci.tar
IMAGE_SOURCES := $(shell git ls-files agents bench scenarios pyproject.toml 2>/dev/null)

$(TEST_IMAGE): $(IMAGE_SOURCES)
	$(MAKE) --no-print-directory image ARCH=$(HOST_ARCH)

# The quick tier needs only the venv (no apt packages, etcd, Kubernetes or actionlint builds).
# tests/conftest.py's guard fails a test in it that starts a process or needs root unmarked.
check: $(STAMP)
	$(BIN)/ruff format --check --quiet
	$(BIN)/ruff check --quiet
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy
	$(BIN)/pytest -q --check-tier

# The kube tests run against a real control plane (tests/bench/kube/real_cluster.py): `make
# kubernetes` builds it once per machine (a long cold build: docs/measurements.md), a no-op after that.
# The check tier first (its tests fail fast), then every test it leaves out.
test: venv check actionlint etcd kubernetes $(TEST_IMAGE)
	$(BIN)/pytest -q -ra -m "root or lab or processes"

lint: venv actionlint
	$(BIN)/ruff format --check --quiet
	$(BIN)/ruff check --quiet
	$(BIN)/lint-imports --no-logo

# The release workflow (.github/workflows), its run: scripts through shellcheck.
actionlint: $(ACTIONLINT) shellcheck
	$(ACTIONLINT) -no-color -shellcheck "$$(command -v shellcheck)"

$(ACTIONLINT):
	@[ -x "$(GO)" ] || { echo "make: Go is needed to install actionlint (https://go.dev/dl/, or GO=/path/to/go)" >&2; exit 3; }
	@mkdir -p $(@D) $(TALBENCH_CACHE)/go
	GOBIN=$(@D) GOMODCACHE=$(TALBENCH_CACHE)/go/mod GOCACHE=$(TALBENCH_CACHE)/go/build GOFLAGS=-modcacherw \
	  $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

shellcheck:
	@command -v shellcheck >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then echo "make: needs root to install: shellcheck (run as root, or install it)" >&2; exit 3; fi; \
	  echo "installing system packages: shellcheck"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; }

# mypy reads talbench/ (symlinks to bench/, agents/): module names are the installed ones.
typecheck: venv
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format
	$(BIN)/ruff check --fix

# etcd's own load tool `benchmark` (tools/benchmark of go.etcd.io/etcd/v3), the reference that
# benchmarks/bench_etcd.py measures talbench's etcd write ceiling against: built by
# agents/build/build-etcd-benchmark.sh once per machine next to this machine's etcd (a second run is instant).
etcd-benchmark: etcd
	@agents/build/build-etcd-benchmark.sh

bench: venv etcd etcd-benchmark kubernetes
	@mkdir -p results/bench
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; PYTHONPATH=$(CURDIR) $(BIN)/python $$b; done

# The talbench image, an OCI archive built with no container engine and no registry
# (agents/build/build-image.sh: mmdebstrap + umoci), into results/image/:
#   make image                     this machine's architecture: talbench-<version>-<arch>.oci.tar
#   make image ARCH=arm64          another one, run under qemu-user-static (binfmt_misc)
#   make image ARCH="amd64 arm64"  both, and talbench-<version>.oci.tar: one index over them
ARCH ?=
IMAGE_APT_PACKAGES := mmdebstrap umoci skopeo debian-archive-keyring
IMAGE_FOREIGN_APT_PACKAGES := arch-test qemu-user-static binfmt-support
image: venv etcd
	@host=$$(dpkg --print-architecture); foreign=""; \
	for a in $(ARCH); do [ "$$a" = "$$host" ] || foreign="$(IMAGE_FOREIGN_APT_PACKAGES)"; done; \
	$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(IMAGE_APT_PACKAGES) $$foreign"
	agents/build/build-image.sh $(addprefix --arch ,$(ARCH))

lab-down: venv
	$(BIN)/talbench lab down

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .import_linter_cache
