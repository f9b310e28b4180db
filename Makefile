# nitrosigner — build, test, run. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin

# Pinned tool versions. `make tools` installs each into its own versioned
# directory under TOOLCACHE, so clones on one machine share them and a version
# bump installs anew.
BUF_VERSION                := v1.50.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
STATICCHECK_VERSION        := 2025.1.1
GRPCURL_VERSION            := v1.9.3
VERSITYGW_VERSION          := v1.8.0

TOOLCACHE ?= $(shell $(GO) env GOPATH)/nitrosigner-tools
BUF                := $(TOOLCACHE)/buf@$(BUF_VERSION)/buf
PROTOC_GEN_GO      := $(TOOLCACHE)/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLCACHE)/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)/protoc-gen-go-grpc
STATICCHECK        := $(TOOLCACHE)/staticcheck@$(STATICCHECK_VERSION)/staticcheck
GRPCURL            := $(TOOLCACHE)/grpcurl@$(GRPCURL_VERSION)/grpcurl
# versitygw (the S3 server the store tests start) lives in the Go bin
# directory, where the S3 tests look for it; building it takes minutes, so
# it is installed once and reused.
GOBIN_DIR          := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
VERSITYGW          := $(GOBIN_DIR)/versitygw
# buf.gen.yaml finds the plugins on PATH.
export PATH := $(dir $(PROTOC_GEN_GO)):$(dir $(PROTOC_GEN_GO_GRPC)):$(PATH)

GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags="-s -w"

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: build
build: ## build enclave, parent and the nitrosigner CLI into bin/
	$(GOBUILD) -o $(BIN)/enclave ./enclave/cmd/enclave
	$(GOBUILD) -o $(BIN)/parent ./parent/cmd/parent
	$(GOBUILD) -o $(BIN)/nitrosigner ./cmd/nitrosigner
	$(GOBUILD) -o $(BIN)/kmssim ./cmd/kmssim

.PHONY: build-nosim
build-nosim: ## build the production enclave binary (no simulator code)
	$(GOBUILD) -tags nosim -o $(BIN)/enclave-nosim ./enclave/cmd/enclave

.PHONY: print-grpcurl
print-grpcurl: ## print where the pinned grpcurl lives (make grpcurl installs it there)
	@echo $(GRPCURL)

.PHONY: run
run: build $(GRPCURL) ## run enclave (simulated NSM) + parent on localhost, gRPC on 127.0.0.1:50051
	@GRPCURL=$(GRPCURL) scripts/run-local.sh

.PHONY: test
test: versitygw ## vet and run every test with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

.PHONY: test-short
test-short: ## quick tests without the race detector
	$(GO) test -short ./...

.PHONY: test-integration
test-integration: ## tests that need /dev/vsock loopback or /dev/nsm (skip elsewhere)
	$(GO) test -count=1 -run Integration -v ./...

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 20s) each
	@scripts/fuzz.sh $(or $(FUZZTIME),20s)

.PHONY: bench
bench: ## measure signing throughput and latency, sealed-key create/cold-load, chain payloads (docs/performance.md)
	$(GOBUILD) -o $(BIN)/enclave ./enclave/cmd/enclave
	$(GOBUILD) -o $(BIN)/parent ./parent/cmd/parent
	$(GOBUILD) -o $(BIN)/nitrosigner ./cmd/nitrosigner
	$(GOBUILD) -o $(BIN)/kmssim ./cmd/kmssim
	@command -v h2load >/dev/null || echo "bench: h2load not found; install it (Debian: apt-get install nghttp2-client) to run the h2load-client phases"
	$(GO) run ./test/bench -bin $(BIN)

.PHONY: tools
tools: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) ## install the pinned code generators

$(BUF):
	GOBIN=$(dir $@) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(PROTOC_GEN_GO):
	GOBIN=$(dir $@) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(dir $@) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
$(GRPCURL):
	GOBIN=$(dir $@) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

.PHONY: versitygw
versitygw: ## install versitygw (pinned; the S3 server the store tests run against) unless present
	@if [ -x $(VERSITYGW) ] && $(GO) version -m $(VERSITYGW) | grep -q 'versitygw[[:space:]]*$(VERSITYGW_VERSION)'; then :; else \
		echo "installing versitygw $(VERSITYGW_VERSION) into $(GOBIN_DIR) (takes a few minutes once)"; \
		$(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); fi

.PHONY: grpcurl
grpcurl: $(GRPCURL) ## install grpcurl (pinned) and print its path
	@echo $(GRPCURL)

.PHONY: generate
generate: tools ## regenerate protobuf Go code from proto/
	$(BUF) lint
	$(BUF) generate

.PHONY: generate-check
generate-check: generate ## fail if the committed generated code differs from `make generate`
	@git diff --exit-code -- proto || { echo "generated code drifted: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "untracked generated files: run 'make generate' and commit"; exit 1; }

.PHONY: lint
lint: $(STATICCHECK) lint-shell ## go vet, staticcheck, gofmt, shellcheck
	$(GO) vet ./...
	$(GO) vet -tags nosim ./enclave/...
	$(STATICCHECK) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

.PHONY: lint-shell
lint-shell: ## shellcheck every shell script
	shellcheck --external-sources --severity=style $$(git ls-files '*.sh')

.PHONY: eif
eif: ## build the enclave EIF on a Nitro parent (EIF_FLAGS="--region ... --kms-key-id ...")
	eif/build.sh $(EIF_FLAGS)

.PHONY: clean
clean:
	rm -rf $(BIN) .run
