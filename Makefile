# poolpair-operator developer targets. `make help` lists them.

KUBE_VERSION ?= 1.37.2
ENVTEST_ASSETS ?= $(CURDIR)/bin/k8s/$(KUBE_VERSION)
CONTROLLER_GEN ?= go tool controller-gen
GO_TEST_FLAGS ?= -count=1
export KUBEBUILDER_ASSETS := $(ENVTEST_ASSETS)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Write the deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Write the CRD and the RBAC role from the code markers.
	$(CONTROLLER_GEN) crd rbac:roleName=poolpair-manager paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: verify
verify: ## Fail when generated files are stale, or gofmt or go vet complain.
	@before=$$(mktemp -d) && cp -r api config "$$before"/ && $(MAKE) -s generate manifests && \
		diff -r "$$before/api" api && diff -r "$$before/config" config || \
		{ echo "generated files are stale: run 'make generate manifests' and commit the result"; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt would change: $$out"; exit 1; }
	go vet ./...
	GOOS=windows go vet ./cmd/lync-agent/... ./internal/lync/...

# One recipe for the three binaries (the script returns at once when all three are there), so that
# `make -j` cannot start it three times.
.PHONY: envtest-assets
envtest-assets: ## Build the test control plane once (about 8 minutes the first time on 2 cores; a progress line every 20 s).
	@KUBE_VERSION=$(KUBE_VERSION) ENVTEST_ASSETS_DIR=$(ENVTEST_ASSETS) hack/build-control-plane.sh

##@ Build

.PHONY: build
build: ## Build the manager and lync-agent into bin/.
	CGO_ENABLED=0 go build -o bin/manager .
	CGO_ENABLED=0 go build -o bin/lync-agent ./cmd/lync-agent

.PHONY: build-windows
build-windows: ## Build lync-agent.exe for the Front End servers.
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 go build -o bin/lync-agent.exe ./cmd/lync-agent

##@ Demo

.PHONY: demo
demo: envtest-assets build ## Run the operator against two simulated Lync pools on 127.0.0.1 (Ctrl-C stops it; DEMO_EXIT_WHEN_SYNCED=1 exits once synced).
	CGO_ENABLED=0 go build -o bin/poolpair-demo ./hack/demo
	bin/poolpair-demo

.PHONY: chaos
chaos: envtest-assets build ## Kill the manager (-9) at random while a pair syncs, N times; count steps started twice (CHAOS_RUNS=10, CHAOS_MODE=manager|agents, CHAOS_SEED).
	CGO_ENABLED=0 go build -o bin/poolpair-chaos ./hack/chaos
	bin/poolpair-chaos

##@ Test

# Packages that run again under the race detector: the unit packages and the controllers (their
# envtest suite; about 4.5 minutes more). The e2e test runs separate binaries.
RACE_PACKAGES ?= ./cmd/... ./internal/agent/... ./internal/agentclient/... ./internal/lync/... \
	./internal/pairing/... ./internal/protocol/... ./internal/devcerts/... ./internal/certinfo/... ./internal/metrics/... ./controllers/...

.PHONY: test
test: envtest-assets ## Run every test: unit, envtest (real kube-apiserver) and end-to-end; unit and controller packages again with -race.
	go test $(GO_TEST_FLAGS) ./...
	go test $(GO_TEST_FLAGS) -race $(RACE_PACKAGES)
