# Everything a fresh machine needs is installed by these targets themselves.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: deps build test lint crds demo bench cluster-up cluster-down clean-cluster image

## deps: Debian packages the tests use (redis-server, openssl) and the control-plane binaries
deps:
	tests/install-deps.sh

build:
	$(CARGO) build --workspace --all-targets

## cluster-up: start (or reuse) the local control plane; kubeconfig in target/cluster/kubeconfig
cluster-up: deps
	tests/cluster/up.sh

## cluster-down: stop the local control plane and remove its data
cluster-down:
	tests/cluster/down.sh

## image: the static binary and, with buildah (no Docker engine), the Dockerfile's final stage
## as target/image/password-rotator.oci.tar; rebuilt only when the binary changed
image:
	CARGO="$(CARGO)" tests/image/build.sh

## helm-lint: lint the Helm chart with its defaults and each example values file
.PHONY: helm-lint
helm-lint:
	helm="$$(tests/cluster/helm.sh)"; chart=deploy/helm/password-rotator; \
	"$$helm" lint --strict "$$chart"; \
	for f in "$$chart"/examples/*.yaml; do "$$helm" lint --strict "$$chart" -f "$$f"; done

## crds: regenerate crds/ from the Rust types
crds:
	$(CARGO) run --quiet -- crd > crds/passwordrotations.rotator.dev.yaml
	cp crds/passwordrotations.rotator.dev.yaml deploy/helm/password-rotator/crds/

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## test: every test, against the real control plane, redis-server and the API test server,
## after the demo of each target (so that `make demo` is proven too)
test: lint cluster-up
	@mkdir -p target
	@for target in redis-software redis ontap; do \
	  TARGET=$$target tests/demo/demo.sh > target/demo-$$target.log 2>&1 || \
	    { tail -40 target/demo-$$target.log; echo "make demo TARGET=$$target failed"; exit 1; }; \
	  echo "demo $$target: $$(grep -m1 "Password rotated" target/demo-$$target.log)"; \
	done
	tests/run-all.sh

## demo: a full rotation on the local control plane, shown step by step; TARGET=redis or
## TARGET=ontap for the other targets
TARGET ?= redis-software
demo: cluster-up
	TARGET="$(TARGET)" tests/demo/demo.sh

## bench: rotation latency, throughput, memory and API calls; writes target/bench/summary.json
bench: cluster-up
	$(CARGO) bench --bench rotation
