# The verbs of the Green Partnerships Platform. `make run` and `make test` work on a fresh machine
# with Python 3.11, Java 17+, Maven and Node.js (see README.md).

SHELL := /bin/bash
.DEFAULT_GOAL := help
# uv from PATH, or run as a module when pip installed it where PATH does not look.
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PY_PATHS := libs/servicekit services tests tools bench

.PHONY: help setup run demo test bench token grpcurl lint types protos protos-check buf asyncapi kafka-up kafka-down clean \
	k8s-tools k8s-check image chaos

help:
	@echo "make run        set up everything, start Kafka, the four services and the simulator"
	@echo "make demo       play a bounded feed through the platform, print the inventory, exit"
	@echo "make test       lint, types, fresh contracts, buf, all tests"
	@echo "make bench      telemetry pipeline throughput against the bare broker"
	@echo "make chaos      kill -9 every service and restart a broker of its own during a feed; exact totals"
	@echo "make protos     regenerate libs/contracts from protos/"
	@echo "make asyncapi   regenerate docs/asyncapi/ (topics and the gateway's streams)"
	@echo "make kafka-up   start the local Kafka broker with its users and ACLs (make kafka-down stops it)"
	@echo "make token      print a development bearer token: ROLE=... [PARTNER=...] [SUBJECT=...]"
	@echo "make k8s-check  build and validate deploy/k8s's overlays and tilt/Tiltfile, offline"
	@echo "make image      build the services' OCI images with buildah (docs/deploy.md)"

# uv and buf come from PyPI and npm; Kafka from Maven Central (deploy/local/kafka.sh).
setup:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet 'uv==0.13.9' \
	  || python3 -m pip install --quiet --user 'uv==0.13.9'
	@$(UV) sync --quiet --frozen
	@[ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --silent

run: setup
	@$(UV) run --frozen python -m tools.platform run $(RUN_ARGS)

demo: setup
	@$(UV) run --frozen python -m tools.platform demo

test: setup lint types protos-check buf grpcurl k8s-tools
	@PATH="$(CURDIR)/.tools/bin:$$PATH" $(UV) run --frozen pytest

# Every scenario at full size; e.g. BENCH_ARGS="--quick" or "--scenario latency --database postgresql".
bench: setup
	@$(UV) run --frozen python -m bench.pipeline $(BENCH_ARGS)

# Fault injection on a broker of its own (never the shared one); about a minute, and make test
# runs the same (tests/test_chaos.py). CHAOS_ARGS="--long": a longer feed, three kills of each
# service, two broker restarts (one kill -9). See docs/delivery.md.
chaos: setup
	@$(UV) run --frozen python -m tools.chaos $(CHAOS_ARGS)

# grpcurl, for the README's examples and their test: from the Go module proxy, pinned, into
# .tools/bin (once; about 30 s).
GRPCURL_VERSION := v1.9.3
grpcurl:
	@command -v grpcurl >/dev/null || [ -x .tools/bin/grpcurl ] \
	  || GOBIN="$(CURDIR)/.tools/bin" GOFLAGS=-mod=mod go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

# A development bearer token for grpcurl and other clients (docs/security.md), e.g.
# make -s token ROLE=fleet-manager PARTNER=aalborg-kommune
token: setup
	@test -n "$(ROLE)" || (echo "usage: make token ROLE=<role> [PARTNER=<partner id>] [SUBJECT=<who>]" >&2; exit 2)
	@$(UV) run --frozen python -m tools.pki token --role '$(ROLE)' --partner '$(PARTNER)' --subject '$(SUBJECT)'

lint:
	@$(UV) run --frozen ruff format --check $(PY_PATHS)
	@$(UV) run --frozen ruff check $(PY_PATHS)

types:
	@$(UV) run --frozen mypy libs/servicekit/src services/*/src tools bench

protos:
	@$(UV) run --frozen bash scripts/gen_contracts.sh

# Generated code must match the protos: regenerate and fail on any difference.
protos-check: protos
	@git diff --exit-code --stat -- libs/contracts || (echo "libs/contracts is stale: run 'make protos' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- libs/contracts)" || (echo "libs/contracts has untracked generated files: run 'make protos' and commit" >&2; exit 1)

# AsyncAPI of the topics and of the stream gateway, from the code; a test checks they are fresh.
asyncapi:
	@$(UV) run --frozen python -m tools.asyncapi

# Lint, format, and no breaking change against the contracts on main (a clone without a main
# branch, e.g. a detached CI checkout, skips only the breaking check).
buf:
	@cd protos && ../node_modules/.bin/buf lint && ../node_modules/.bin/buf format --exit-code --diff > /dev/null
	@if git rev-parse --verify -q main >/dev/null; then \
	  cd protos && ../node_modules/.bin/buf breaking --against '../.git#branch=main,subdir=protos'; \
	else echo "buf breaking: no main branch here, not checked"; fi

# The broker, then its users, the catalogue's topics and the ACLs of servicekit.access.
kafka-up: setup
	@bash deploy/local/kafka.sh up
	@$(UV) run --frozen python -m tools.kafka_access apply

kafka-down:
	@bash deploy/local/kafka.sh down

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

# --- Kubernetes: deploy/k8s, tilt/, the images (docs/deploy.md) ---------------------------------
# kustomize and kubeconform from the Go module proxy, pinned, into .tools/bin; kubeconform's
# schemas are made offline (tools/k8s_schemas.py), so nothing is downloaded at check time.
TOOLS_BIN := $(CURDIR)/.tools/bin
KUSTOMIZE_VERSION := v5.8.2
KUBECONFORM_VERSION := v0.8.0
GO_INSTALL = GOBIN=$(TOOLS_BIN) GOTOOLCHAIN=local GOFLAGS=-mod=mod go install

k8s-tools: $(TOOLS_BIN)/kustomize-$(KUSTOMIZE_VERSION) $(TOOLS_BIN)/kubeconform-$(KUBECONFORM_VERSION)

$(TOOLS_BIN)/kustomize-%:
	@command -v go >/dev/null || (echo "Go is needed to install kustomize (go.dev/doc/install)" >&2; exit 1)
	@mkdir -p $(TOOLS_BIN) && $(GO_INSTALL) sigs.k8s.io/kustomize/kustomize/v5@$*
	@mv $(TOOLS_BIN)/kustomize $@ && ln -sf $(notdir $@) $(TOOLS_BIN)/kustomize

$(TOOLS_BIN)/kubeconform-%:
	@command -v go >/dev/null || (echo "Go is needed to install kubeconform (go.dev/doc/install)" >&2; exit 1)
	@mkdir -p $(TOOLS_BIN) && $(GO_INSTALL) github.com/yannh/kubeconform/cmd/kubeconform@$*
	@mv $(TOOLS_BIN)/kubeconform $@ && ln -sf $(notdir $@) $(TOOLS_BIN)/kubeconform

# Offline: kustomize build of every overlay, kubeconform in strict mode, the manifests' checks,
# the Tiltfile, the Dockerfile's linter (what `make test` runs too, without building an image).
k8s-check: setup k8s-tools
	@$(UV) run --frozen pytest tests/test_deploy_k8s.py -q -k "not oci_image"

# The four images in buildah's local storage (needs buildah and mmdebstrap; SERVICES= one of them).
image:
	@bash scripts/image.sh $(SERVICES)
