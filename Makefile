# The front door. Every target first installs what is missing
# (scripts/bootstrap), so these work on a fresh Debian machine.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all bootstrap build test soak demo bench install format clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The host kill tests at length: SOAK rounds each, with a fresh seed
# (printed, so a failure can be replayed with MBX_TEST_SEED).
SOAK ?= 10000
soak: build
	MBX_SOAK=$(SOAK) MBX_TEST_SEED=$$(date +%s) MBX_TEST_TIMEOUT=86400 \
	    $(BUILD)/tests/test_host_stress writers_killed
	MBX_SOAK=$(SOAK) MBX_TEST_SEED=$$(date +%s) MBX_TEST_TIMEOUT=86400 \
	    $(BUILD)/tests/test_host_stress readers_killed

demo: build
	@scripts/demo $(BUILD)

bench: bootstrap
	@cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DMBX_BUILD_TESTS=OFF \
	    -DMBX_BUILD_EXAMPLES=OFF -DMBX_BUILD_BENCH=ON >/dev/null
	@cmake --build build-bench -j $(JOBS)
	@bench/run build-bench

install: build
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-* 
