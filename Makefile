# signalrd — see README.md. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
BIN := bin/signalrd
JS_DIR := e2e/js
TEST_TIMEOUT ?= 15m

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/signalrd
	$(GO) build -o $(BIN) ./cmd/signalrd

.PHONY: run
run: ## run signalrd in memory on localhost:8888 and print its connection string
	$(GO) run ./cmd/signalrd serve $(ARGS)

.PHONY: deps
deps: deps-go deps-js ## install everything the tests need

.PHONY: deps-go
deps-go:
	$(GO) mod download

.PHONY: deps-js
deps-js: $(JS_DIR)/node_modules/.package-lock.json

$(JS_DIR)/node_modules/.package-lock.json: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	@touch $@

.PHONY: test
test: deps ## run every test with the race detector
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: lint
lint: depcheck ## go vet, gofmt, staticcheck, import rules
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/js/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: depcheck
depcheck: ## check the package import rules of docs/architecture.md
	$(GO) run ./cmd/depcheck

.PHONY: bench
bench: ## run the Go micro-benchmarks
	$(GO) test -run=NONE -bench=. -benchmem -benchtime=1s ./protocol/... ./router/ ./transport/ ./server/...

.PHONY: fuzz
fuzz: ## run every fuzz target briefly (FUZZTIME=10s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$${FUZZTIME:-10s} $$pkg || exit 1; \
	  done; \
	done

.PHONY: clean
clean:
	rm -rf bin
