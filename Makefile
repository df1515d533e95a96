# Everything a fresh machine needs is installed by these targets themselves.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: deps build test lint crds demo bench cluster-up cluster-down clean-cluster image

## deps: everything the tests need, installed once before any test runs: Debian packages
## (redis-server, redis-tools, openssl, curl, prometheus for promtool, buildah), the
## control-plane binaries and Helm (both built once, cached outside the work tree)
deps:
	tests/install-deps.sh test

## deps-demo: what the demo needs (no promtool, buildah or Helm)
.PHONY: deps-demo
deps-demo:
	tests/install-deps.sh demo

build:
	$(CARGO) build --workspace --all-targets

## cluster-up: start (or reuse) the local control plane; kubeconfig in target/cluster/kubeconfig
cluster-up: deps-demo
	tests/cluster/up.sh

## cluster-down: stop the local control plane and remove its data
cluster-down:
	tests/cluster/down.sh

## image: the static binary and, with buildah (no Docker engine), the Dockerfile's final stage
## as target/image/password-rotator.oci.tar; rebuilt only when the binary changed
image:
	tests/install-packages.sh buildah
	CARGO="$(CARGO)" tests/image/build.sh

## helm-lint: lint the Helm chart with its defaults and each example values file
.PHONY: helm-lint
helm-lint:
	helm="$$(tests/cluster/helm.sh --build)"; chart=deploy/helm/password-rotator; \
	"$$helm" lint --strict "$$chart"; \
	for f in "$$chart"/examples/*.yaml; do "$$helm" lint --strict "$$chart" -f "$$f"; done

## crds: regenerate crds/ from the Rust types
crds:
	$(CARGO) run --quiet -- crd --dir crds
	cp crds/*.yaml deploy/helm/password-rotator/crds/

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## test: the lint, the demo of each target (so that `make demo` is proven too) and every test,
## against the real control plane, redis-server and the API test server; every check runs
## whatever failed before it, and the failures are listed at the end
test: deps cluster-up
	tests/run-all.sh

## demo: a full rotation on the local control plane, shown step by step; TARGET=redis or
## TARGET=ontap for the other targets
TARGET ?= redis-software
## On a cold machine the operator compiles while the control plane builds.
demo:
	@mkdir -p target
	@$(CARGO) build --workspace --quiet >target/demo-build.log 2>&1 & build=$$!; \
	  tests/install-deps.sh demo; \
	  tests/cluster/up.sh; \
	  wait $$build || { cat target/demo-build.log; exit 1; }
	TARGET="$(TARGET)" tests/demo/demo.sh

## bench: rotation latency, throughput, memory and API calls; writes target/bench/summary.json.
## `make bench SCALE=100000`: the operator beside that many resources, on a control plane of
## its own (target/cluster-scale, removed afterwards); writes target/bench/scale.json
SCALE ?=
bench: deps-demo
	if [ -n "$(SCALE)" ]; then \
	  export ROTATOR_CLUSTER_DIR=target/cluster-scale; \
	  trap 'tests/cluster/down.sh' EXIT; \
	  tests/cluster/up.sh; \
	  BENCH_SCALE="$(SCALE)" $(CARGO) bench --bench scale; \
	else \
	  tests/cluster/up.sh; \
	  $(CARGO) bench --bench rotation; \
	fi
