# loopwarden — the two commands a newcomer needs:
#   make demo   install dependencies, build, and run the demo
#   make test   install dependencies, build, and run the whole test suite
# Both use the `ci` preset (warnings are errors). Other targets: build, deps, test-asan, test-tsan,
# bench, fuzz, fuzz-smoke, clean.

PRESET ?= ci
BUILD_DIR := build/$(PRESET)

.PHONY: all deps build test demo test-asan test-tsan bench bench-quick fuzz fuzz-build fuzz-smoke \
        format clean example-pytorch

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake --preset $(PRESET)
	cmake --build --preset $(PRESET)

test: build
	ctest --preset $(PRESET)

# The offline replay demo, then the live one: a daemon, a trainer that learns from its own outputs,
# a breaker that stops it, and what on-call sees.
demo: build
	bash examples/replay_demo/run.sh $(BUILD_DIR)
	bash examples/recursive_trainer/run.sh $(BUILD_DIR)
	bash examples/self_improver/run.sh $(BUILD_DIR)
	bash examples/delivery_pipeline/run.sh $(BUILD_DIR)
	bash examples/agent_harness/run.sh $(BUILD_DIR)
	bash examples/ngram_collapse/run.sh $(BUILD_DIR)
	bash examples/gate_demo/run.sh $(BUILD_DIR)

# The n-gram collapse demo with a small PyTorch model instead of counts. Optional: it installs
# Debian's python3-torch (large) first.
example-pytorch: build
	dpkg-query -W -f='$${Status}' python3-torch 2>/dev/null | grep -q "install ok installed" || \
	  $$( [ "$$(id -u)" -eq 0 ] || echo sudo ) apt-get install -y -q --no-install-recommends python3-torch
	bash examples/ngram_collapse/run.sh $(BUILD_DIR) 12 torch

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan:
	$(MAKE) test PRESET=asan

# The threading tests (ctest label `threads`: engine workers and watchdog, process isolation,
# alert delivery, the clients and the real daemon) under ThreadSanitizer (docs/sanitizers.md).
test-tsan:
	$(MAKE) test PRESET=tsan

# The sidecar benchmark (docs/benchmarks.md): figures on this machine, not a pass/fail test.
# bench-quick shrinks the counts (1 M events instead of 10 M for the memory run).
bench: build
	bash bench/sidecar_bench.sh $(BUILD_DIR)
	$(BUILD_DIR)/bench/variance_collapse_bench

bench-quick: build
	bash bench/sidecar_bench.sh $(BUILD_DIR) --quick

# libFuzzer (docs/fuzzing.md): the `fuzz` preset (clang-14, address + undefined sanitizers) in
# build/fuzz. `make fuzz` runs every target for FUZZ_SECONDS each and prints executions and
# coverage; FUZZ_TARGETS picks some (e.g. FUZZ_TARGETS="replay config"). `make fuzz-smoke` runs
# each target over its committed seed corpus once, without mutation.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

fuzz-build: deps
	cmake --preset fuzz
	cmake --build --preset fuzz

fuzz: fuzz-build
	bash tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	ctest --preset fuzz

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf build
