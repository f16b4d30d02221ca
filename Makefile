# Thin wrapper around CMake. `make` builds, `make check` runs every test,
# `make demo` runs the main job. Each target installs missing Debian
# packages first (scripts/deps.sh), so a fresh Debian 12 machine works.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
DEPS        = cmake make gcc clang libclang-rt-14-dev python3 iproute2 procps iptables libnetfilter-queue-dev pkg-config mandoc man-db binutils libfabric-dev libfabric-bin autoconf automake libtool openmpi-bin libopenmpi-dev
# `make deb`: Debian's own packaging tools (dpkg-buildpackage, debhelper's
# cmake support, lintian).
DEB_DEPS    = dpkg-dev debhelper lintian fakeroot
PREFIX     ?= /usr/local
DESTDIR    ?=

.PHONY: all deps build check demo asan tsan fuzz soak bench clean install uninstall deb

all: build

deps:
	@scripts/deps.sh $(DEPS)

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

check: build
	@scripts/deps.sh $(DEB_DEPS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

demo: build
	$(BUILD)/bin/pagewire-demo

# `make install PREFIX=/usr DESTDIR=/tmp/stage`: library (shared and static),
# header, pagewire.pc, the CMake package, tools, man pages and docs. The
# list of what was installed is $(BUILD)/install_manifest.txt, which
# `make uninstall` (give the same DESTDIR) removes.
install: deps
	@cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

uninstall:
	@test -f $(BUILD)/install_manifest.txt || { echo "uninstall: no $(BUILD)/install_manifest.txt (nothing installed from this build)" >&2; exit 1; }
	scripts/uninstall.sh $(BUILD)/install_manifest.txt "$(DESTDIR)"

# Debian packages libpagewire0, libpagewire-dev and pagewire-tools, built by
# dpkg-buildpackage from a copy of the tree, checked by lintian; the .debs
# land in $(BUILD)/deb/.
deb:
	@scripts/deps.sh $(DEPS) $(DEB_DEPS)
	scripts/make-deb.sh $(BUILD)/deb

# Full test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DPW_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# Every test but the `tools` label under ThreadSanitizer (clang): engine,
# paging, notifier, integration, limits, netns and soak. Not `tools`: those
# drive pagewire-perf measurements, and its `reg` wants 1 TiB of address
# space in one piece, which TSan's memory layout often lacks (the tests' own
# 1 TiB cases shrink there by themselves).
tsan: deps
	@CC=clang cmake -S . -B $(TSAN_BUILD) -DPW_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS) >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS) -LE tools $(CTEST_ARGS)

# pagewire vs raw TCP, libfabric tcp and UCX tcp, one run, ratios; writes
# BENCHMARKS.md and bench/out/bw_vs_size.svg. BENCH_QUICK=1 for ~2 minutes.
bench: build
	bench/compare.sh

# libFuzzer harnesses (clang), each run for FUZZ_SECONDS over a scratch copy
# of its checked-in corpus: `make fuzz FUZZ_SECONDS=600`.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DPW_FUZZ=ON \
		-DPW_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	cd $(FUZZ_BUILD) && ctest --output-on-failure -L fuzz --timeout $$(( $(FUZZ_SECONDS) * 2 + 120 ))

# The soak test (tests/soak) under ASan+UBSan for SOAK_SECONDS: mixed ops on
# 16 QPs with munmap, madvise and budget reclaim, every byte verified, fds
# counted; LeakSanitizer's report at exit fails it too (its exit code).
# `make soak SOAK_SECONDS=600`; SOAK_SEED=S replays a run's choices.
SOAK_BUILD   ?= build-soak
SOAK_SECONDS ?= 60
SOAK_SEED    ?=
soak: deps
	@cmake -S . -B $(SOAK_BUILD) -DPW_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug \
		$(CMAKE_ARGS) >/dev/null
	@cmake --build $(SOAK_BUILD) -j $(JOBS) --target pwsoak
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 SOAK_SEED=$(SOAK_SEED) \
		$(SOAK_BUILD)/bin/pwsoak --seconds $(SOAK_SECONDS)
	@echo "soak: LeakSanitizer found no leak"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(SOAK_BUILD)
