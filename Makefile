# dingtalk-token-operator

IMG ?= dingtalk-token-operator:latest
# A release's version (x.y.z); binaries, images and the chart are stamped v$(VERSION).
VERSION ?= 0.0.0-dev
# The registry repository the image tarballs are pushed to, which the chart's values.yaml and
# install.yaml point at: required by `make image` and `make release`, no default (a bare name
# would mean docker.io/library/..., an image that does not exist).
IMAGE_REPO ?=
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
PLUGIN_PLATFORMS ?= linux/amd64,linux/arm64,darwin/amd64,darwin/arm64
DIST ?= dist
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
VERSION_PKG = github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version
LDFLAGS ?= -X $(VERSION_PKG).Version=v$(VERSION) -X $(VERSION_PKG).Commit=$(GIT_COMMIT)
# hack/release is its own module (Helm, go-containerregistry): run it from there.
RELEASE_TOOL = go -C hack/release run .
# ENVTEST_K8S_VERSION is the kube-apiserver built for envtest and `make demo` (see hack/envtest/go.mod).
ENVTEST_K8S_VERSION ?= $(shell awk '$$1=="k8s.io/kubernetes"{sub(/^v/,"",$$2); print $$2; exit}' hack/envtest/go.mod)
CONTROLLER_TOOLS_VERSION ?= v0.23.0
# PROMETHEUS_VERSION is the Prometheus module promtool is built from (see hack/promtool/go.mod).
PROMETHEUS_VERSION ?= $(shell awk '$$1=="github.com/prometheus/prometheus"{print $$2; exit}' hack/promtool/go.mod)

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
ENVTEST_ASSETS_DIR ?= $(LOCALBIN)/k8s/$(ENVTEST_K8S_VERSION)
PROMTOOL_DIR ?= $(LOCALBIN)/prometheus/$(PROMETHEUS_VERSION)
# A user's own KUBEBUILDER_ASSETS wins over the binaries built here.
KUBEBUILDER_ASSETS ?= $(ENVTEST_ASSETS_DIR)
export KUBEBUILDER_ASSETS

# Test flags: TEST_FLAGS=-run=Foo narrows a run; GOTEST_TIMEOUT bounds it.
GOTEST_TIMEOUT ?= 40m
TEST_FLAGS ?=

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests from the markers (and copy them into the chart).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./hack/crdpatch -max-name-length 239 config/crd/bases/dingtalk.tokens.dev_dingtalktokens.yaml config/crd/bases/dingtalk.tokens.dev_clusterdingtalktokens.yaml
	$(MAKE) --no-print-directory chart-sync api-docs

.PHONY: api-docs
api-docs: ## Write docs/api-reference.md from the CRDs (go test ./hack/apidocs, part of make test, fails when it is stale).
	go run ./hack/apidocs

CHART_DIR ?= charts/dingtalk-token-operator
CHART_GENERATED = $(CHART_DIR)/generated

.PHONY: chart-sync
chart-sync: ## Copy config/'s CRDs, roles, admission policies, alerts and dashboard into the chart, which renders from them.
	rm -f $(CHART_GENERATED)/*/*.yaml $(CHART_GENERATED)/*/*.json
	mkdir -p $(CHART_GENERATED)/crds $(CHART_GENERATED)/rbac $(CHART_GENERATED)/admission $(CHART_GENERATED)/namespace-labels $(CHART_GENERATED)/prometheus $(CHART_GENERATED)/grafana
	cp config/crd/bases/*.yaml $(CHART_GENERATED)/crds/
	cp config/rbac/*role.yaml config/components/rollout-restart/*role.yaml $(CHART_GENERATED)/rbac/
	find config/admission -name '*.yaml' ! -name kustomization.yaml -exec cp {} $(CHART_GENERATED)/admission/ \;
	cp config/components/namespace-labels/namespace_label_policy.yaml $(CHART_GENERATED)/namespace-labels/
	cp config/prometheus/alerts.yaml $(CHART_GENERATED)/prometheus/
	cp config/grafana/*.json $(CHART_GENERATED)/grafana/

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when `make manifests generate` changes committed files.
	@git diff --exit-code -- api config $(CHART_DIR) docs/api-reference.md || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: envtest
envtest: $(ENVTEST_ASSETS_DIR)/kube-apiserver ## Build kube-apiserver and etcd for envtest from Go modules (once).

$(ENVTEST_ASSETS_DIR)/kube-apiserver:
	bash hack/envtest/build.sh $(ENVTEST_ASSETS_DIR)

.PHONY: promtool
promtool: ## Build promtool (Prometheus' rule tester) once and metricnames from Go modules (module hack/promtool).
	go -C hack/promtool vet ./...
	bash hack/promtool/build.sh $(PROMTOOL_DIR)

.PHONY: test
test: manifests generate fmt vet envtest promtool ## Run all tests (unit, envtest, simulator, reliability, alert rules, chart, image, release).
	go test -race -timeout $(GOTEST_TIMEOUT) -count=1 $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory test-release

# The CI-sized release `make test` builds and checks: every image platform (the image test reads
# both), the plugin for one platform of each OS.
CI_VERSION ?= 0.0.0-ci
CI_IMAGE_REPO ?= registry.example.com/dingtalk-token-operator
CI_DIST ?= $(LOCALBIN)/dist-ci
CI_PLUGIN_PLATFORMS ?= linux/amd64,darwin/arm64

.PHONY: test-release
test-release: ## Build a CI-sized release, then test it, the chart and the images (module hack/release).
	$(MAKE) --no-print-directory release VERSION=$(CI_VERSION) IMAGE_REPO=$(CI_IMAGE_REPO) DIST=$(CI_DIST) PLUGIN_PLATFORMS=$(CI_PLUGIN_PLATFORMS)
	go -C hack/release vet ./...
	cd hack/release && RELEASE_DIST=$(CI_DIST) RELEASE_VERSION=$(CI_VERSION) RELEASE_IMAGE_REPO=$(CI_IMAGE_REPO) RELEASE_PLUGIN_PLATFORMS=$(CI_PLUGIN_PLATFORMS) \
		go test -timeout $(GOTEST_TIMEOUT) -count=1 $(TEST_FLAGS) ./...

# Bench flags: BENCH_FLAGS="--sizes 50/5/20s --noise 200 --cycles 1 --restart-window 10s --fanout 50
# --one-namespace 50/5/20s --shards 100/10/20s" is a run that fits in CI (with BENCH_OUT elsewhere, so
# docs/benchmarks.md keeps the full-size figures); BENCH_FLAGS="--sizes 1000/100,10000/1000/6m
# --one-namespace 1000/100,10000/1000/6m --shards 20000/2000/6m" adds the 10,000-token scenarios and
# the 20,000 tokens on two shards; --gomemlimit sets the managers' GOMEMLIMIT (default the chart's);
# --profile-dir=DIR writes the manager's CPU and heap profiles of each phase.
BENCH_FLAGS ?=
BENCH_OUT ?= docs/benchmarks.md

.PHONY: bench
bench: envtest ## Run the benchmarks and print the figures (writes docs/benchmarks.md).
	go run ./hack/bench --out $(BENCH_OUT) $(BENCH_FLAGS)

.PHONY: demo
demo: envtest ## Start a local control plane, the DingTalk simulator and the operator with sample tokens.
	go run ./hack/demo

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager, simulator, kubectl-dingtalk and dingtalk-token-proxy binaries (--version prints v$(VERSION)).
	go build -ldflags "$(LDFLAGS)" -o bin/manager ./cmd
	go build -ldflags "$(LDFLAGS)" -o bin/dingtalk-simulator ./cmd/dingtalk-simulator
	go build -ldflags "$(LDFLAGS)" -o bin/kubectl-dingtalk ./cmd/kubectl-dingtalk
	go build -ldflags "$(LDFLAGS)" -o bin/dingtalk-token-proxy ./cmd/dingtalk-token-proxy

.PHONY: run
run: manifests generate fmt vet ## Run the operator against the current kubeconfig.
	go run ./cmd

.PHONY: docker-build
docker-build: ## Build the container image with Docker (`make image` needs no Docker engine).
	docker build --build-arg VERSION=v$(VERSION) --build-arg COMMIT=$(GIT_COMMIT) -t $(IMG) .

.PHONY: image
image: ## Build the image as OCI tarballs in $(DIST)/ (make image IMAGE_REPO=registry.example.com/dingtalk-token-operator): no Docker engine, no base image.
	$(RELEASE_TOOL) image --root $(CURDIR) --version $(VERSION) --out $(abspath $(DIST)) --image-repo "$(IMAGE_REPO)" --platforms $(IMAGE_PLATFORMS)

.PHONY: release
release: manifests ## Write a release to $(DIST)/ (make release VERSION=x.y.z IMAGE_REPO=registry.example.com/dingtalk-token-operator): install.yaml, crds.yaml, chart, images, kubectl plugin, SHA256SUMS.
	rm -rf $(DIST)
	$(RELEASE_TOOL) all --root $(CURDIR) --version $(VERSION) --out $(abspath $(DIST)) --image-repo "$(IMAGE_REPO)" \
		--platforms $(IMAGE_PLATFORMS) --plugin-platforms $(PLUGIN_PLATFORMS)

##@ Deployment

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubeconfig.
	kubectl apply -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRD from the cluster.
	kubectl delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator (cluster-wide) with image IMG.
	kubectl kustomize config/default | sed 's|image: dingtalk-token-operator:latest|image: $(IMG)|' | kubectl apply -f -

.PHONY: undeploy
undeploy: ## Remove the operator.
	kubectl delete --ignore-not-found -k config/default

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into bin/.
$(CONTROLLER_GEN):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)
