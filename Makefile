# signalrd — see README.md. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
BIN := bin/signalrd
CHAT_BIN := bin/signalrd-chat
DEMO_LISTEN ?= localhost:5000
# Browser tests use $CHROMIUM when set, else Debian's /usr/bin/chromium.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JS_DIR := e2e/js
TEST_TIMEOUT ?= 15m
# Stamped into `signalrd version` by `make image` (and `make build`).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE ?= signalrd:$(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/signalrd
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/signalrd

.PHONY: image
image: ## docker build the image (needs a Docker engine; untested here, see docs/deploy/README.md)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

.PHONY: run
run: ## run signalrd in memory on localhost:8888 and print its connection string
	$(GO) run ./cmd/signalrd serve $(ARGS)

.PHONY: deps
deps: deps-go deps-js deps-browser deps-redis deps-nginx ## install everything the tests need

.PHONY: deps-go
deps-go:
	$(GO) mod download

.PHONY: deps-js
deps-js: $(JS_DIR)/node_modules/.package-lock.json

$(JS_DIR)/node_modules/.package-lock.json: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	@touch $@

.PHONY: deps-browser
deps-browser: ## install Debian's chromium for the browser tests (when CHROMIUM is missing)
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "Chromium not found at $(CHROMIUM) and no apt-get: install Chromium and set CHROMIUM=/path/to/it"; exit 1; \
	  fi; \
	  echo "installing chromium (Debian package) for the browser tests"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	fi

.PHONY: deps-redis
deps-redis: ## install Debian's redis-server (with redis-cli) for the storage and scale-out tests
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "redis-server/redis-cli not on PATH and no apt-get: install Redis >= 7 (sharded pub/sub) and retry"; exit 1; \
	  fi; \
	  echo "installing redis-server (Debian package, brings redis-cli) for the storage tests"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; \
	fi

.PHONY: deps-nginx
deps-nginx: ## install Debian's nginx for the reverse-proxy tests (when nginx is not on PATH)
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "nginx not on PATH and no apt-get: install nginx (>= 1.18) and retry"; exit 1; \
	  fi; \
	  echo "installing nginx (Debian package) for the reverse-proxy tests"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light; \
	fi

.PHONY: demo
demo: build deps-js ## run signalrd and the chat sample: open http://localhost:5000/?user=alice
	$(GO) build -o $(CHAT_BIN) ./cmd/signalrd-chat
	@set -u; \
	./$(BIN) serve & sd=$$!; \
	trap 'kill $$sd 2>/dev/null; wait $$sd 2>/dev/null' EXIT; \
	trap 'exit 0' INT TERM; \
	for i in $$(seq 100); do \
	  kill -0 $$sd 2>/dev/null || { echo "demo: signalrd exited (is localhost:8888 in use?)"; exit 1; }; \
	  (exec 3<>/dev/tcp/localhost/8888) 2>/dev/null && break; \
	  sleep 0.1; \
	done; \
	./$(CHAT_BIN) --listen $(DEMO_LISTEN)

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
bench: deps-redis ## Go micro-benchmarks + the standard load suite and the Azure unit searches (~6-7 min, two nodes need redis-server); writes docs/PERFORMANCE.md (keeping its optimization log)
	@mkdir -p bin
	set -o pipefail; $(GO) test -run=NONE -bench=. -benchmem -benchtime=$${BENCHTIME:-1s} ./protocol/... ./router/ ./transport/ ./storage/ ./server/ | tee bin/gobench.txt
	$(GO) build -o $(BIN) ./cmd/signalrd
	$(GO) build -o bin/signalrd-bench ./cmd/signalrd-bench
	./bin/signalrd-bench --suite --service-bin $(BIN) --gobench bin/gobench.txt --out docs/PERFORMANCE.md

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
