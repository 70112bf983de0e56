# xmppedge — build, run and test.
#
#   make build   bin/xmppedge (and a development certificate for the example config)
#   make run     build and start xmppedge on xmppedge.example.yaml
#   make demo    a company and a partner Prosody on loopback with xmppedge between them: a delivered message,
#                a refused one with its bounce, the audit records, the metrics; stops on Ctrl-C or after DEMO_WAIT (1m)
#   make test    everything CI runs: deps, vet, unit tests with -race (fuzz seeds included), the e2e suite
#   make bench   benchmarks
#   make bench-e2e  bin/xmppedge-load against real Prosody, directly and through xmppedge (audit sync and async),
#                then the in-process relay benchmarks, on this machine: the figures of BENCHMARKS.md
#                (BENCH_OUT=DIR keeps the table and every run's JSON; BENCH_COUNT, BENCH_ROUNDS, BENCH_STREAMS)
#   make load    bin/xmppedge-load, the load generator (cmd/xmppedge-load)
#   make fuzz    a short coverage-guided fuzz run of every fuzz target (make fuzz-long: 10 minutes each)

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
DEV      := dev
APT_PKGS := prosody lua-unbound python3-slixmpp ejabberd openssl prometheus testssl.sh

.PHONY: build run demo test deps vet unit e2e bench bench-e2e load fuzz fuzz-long clean

build: bin/xmppedge $(DEV)/company.test.crt

bin/xmppedge: $(shell find . -name '*.go' -not -path './$(DEV)/*') go.mod go.sum
	$(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/xmppedge

load: bin/xmppedge-load

bin/xmppedge-load: $(shell find . -name '*.go' -not -path './$(DEV)/*') go.mod go.sum
	$(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/xmppedge-load

# A self-signed certificate so that the example config works out of the box.
$(DEV)/company.test.crt:
	@mkdir -p $(DEV)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
	  -subj /CN=company.test -addext subjectAltName=DNS:company.test \
	  -keyout $(DEV)/company.test.key -out $(DEV)/company.test.crt 2>/dev/null

run: build
	bin/xmppedge run -config xmppedge.example.yaml

# demo runs TestDemo (edge/e2e/demo_test.go) on the e2e test bed: it tells
# what happens, then keeps everything running for DEMO_WAIT (a duration;
# 0: stop at once) or until Ctrl-C, and stops every process it started.
# No go test timeout: every step has its own bound, and Ctrl-C ends it.
DEMO_WAIT ?= 1m
demo: deps
	XMPPEDGE_DEMO=1 XMPPEDGE_DEMO_WAIT=$(DEMO_WAIT) XMPPEDGE_E2E_RACE=0 \
	  $(GO) test -run '^TestDemo$$' -v -count=1 -timeout 0 ./edge/e2e/

# deps installs what the e2e suite needs (Debian packages) when it is
# missing and we are root; otherwise it says what to install. Where the
# packages' own Prosody and ejabberd services start, they are stopped (and
# ejabberd's disabled): they would hold the ports the test servers bind.
# The tests run their own servers, never these services.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    service prosody stop >/dev/null 2>&1 || true; \
	    service ejabberd stop >/dev/null 2>&1 || true; \
	    systemctl disable ejabberd >/dev/null 2>&1 || true; \
	  else \
	    echo "missing Debian packages:$$missing"; echo "run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
	$(GO) mod download

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 10m $$($(GO) list ./... | grep -v /edge/e2e)

# The e2e suite runs the demo too, as a test (XMPPEDGE_DEMO_WAIT=0: no waiting).
e2e: deps
	XMPPEDGE_DEMO=1 XMPPEDGE_DEMO_WAIT=0 $(GO) test -race -count=1 -timeout 15m -v ./edge/e2e/...

test: deps vet unit e2e

bench:
	$(GO) test -run XXX -bench . -benchmem ./...

# bench-e2e runs TestBenchE2E (edge/e2e/bench_e2e_test.go) with bin/xmppedge-load and
# xmppedge built without the race detector: BENCH_ROUNDS rounds, each path in turn, of
# BENCH_COUNT stanzas as fast as possible and 300 one at a time; it prints the medians
# as a table. Then, in the same session, the in-process relay benchmarks (a raw TLS
# relay, xmppedge with the audit sync and async). See BENCHMARKS.md.
BENCH_COUNT   ?= 20000
BENCH_ROUNDS  ?= 3
BENCH_STREAMS ?= 4
BENCH_OUT     ?=
BENCH_RELAY_N ?= 100000x
bench-e2e: deps bin/xmppedge-load
	@echo "machine: $$(nproc) CPUs, $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $$(cut -d' ' -f1-3 /proc/loadavg)"
	XMPPEDGE_BENCH_E2E=1 XMPPEDGE_E2E_RACE=0 XMPPEDGE_LOAD_BIN=$(abspath bin/xmppedge-load) \
	  XMPPEDGE_BENCH_COUNT=$(BENCH_COUNT) XMPPEDGE_BENCH_ROUNDS=$(BENCH_ROUNDS) XMPPEDGE_BENCH_STREAMS=$(BENCH_STREAMS) \
	  XMPPEDGE_BENCH_OUT=$(if $(BENCH_OUT),$(abspath $(BENCH_OUT))) \
	  $(GO) test -run '^TestBench(E2E|Idle)$$' -v -count=1 -timeout 20m ./edge/e2e/
	$(GO) test -run XXX -bench 'Relay(Gateway$$|GatewayAsyncAudit|RawTLS)' -benchtime $(BENCH_RELAY_N) ./edge/

# fuzz runs every fuzz target of the module (each func Fuzz* in a _test.go
# file) for FUZZTIME, one after the other; FUZZ selects targets by regular
# expression (e.g. make fuzz FUZZ='Prepare|Header'). fuzz-long runs each
# for 10 minutes. A crash stops the run and leaves its input under the
# package's testdata/fuzz/ (a regression test from then on).
FUZZTIME ?= 30s
FUZZ     ?= .
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //' | grep -E -- '$(FUZZ)'); do \
	    echo "== $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run XXX -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$pkg || exit 1; \
	  done; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZTIME=10m

clean:
	rm -rf bin $(DEV)
