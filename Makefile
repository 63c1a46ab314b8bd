# nofail build. `make` builds the release library and command under build/;
# the test variants build under build/<variant>/ with debug assertions on.
#
#   make                 build/libnofail.a, build/libnofail.so, build/nofail, build/libnofail-malloc.so
#   make hardened        build/hardened/: release speed with the misuse checks on
#   make test            the test suite (debug assertions and hardening on)
#   make test-asan       the same suite under AddressSanitizer + UBSan
#   make test-tsan       the same suite under ThreadSanitizer
#   make test-valgrind   the same suite under valgrind's memcheck (VARIANT=valgrind), and users' bugs it must catch
#   make demo            the seed scenarios
#   make bench           the benchmarks (and bench-alloc when its peers are installed)
#   make bench-alloc     nofail against mimalloc, jemalloc, tcmalloc, glibc (scripts/bench-setup.sh)
#   make bench-callgrind instructions per alloc/free pair, reserve slabs compiled in and out
#   make bench-preload   classic workloads on glibc, mimalloc, jemalloc, tcmalloc, nofail by LD_PRELOAD
#   make test-preload    real programs (python3, sqlite3, git, our own) on LD_PRELOAD=libnofail-malloc.so
#   make fuzz            the libFuzzer target for FUZZ_SECONDS (default 300) on tests/fuzz/corpus
#   make fuzz-replay     the same target over the seed corpus once, without fuzzing
#   make fuzz-afl        the same target under AFL++ (installs afl++) for FUZZ_SECONDS
#   make test-fault      the seed scenarios under NOFAIL_FAULT and NOFAIL_FAULT_DELAY (debug build)
#   make soak            every capability at once for MINUTES (default 10), ~2000 threads, then the checks
#   make soak-selftest   the soak's checks catch a deliberate failure, leak and hang
#   make soak-tsan       a short, scaled-down soak under ThreadSanitizer (SOAK_TSAN_MINUTES, default 1)
#   make install PREFIX=/usr/local

CC      ?= cc
PREFIX  ?= /usr/local
VARIANT ?= release
VERSION := 0.1.0

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE    := -std=gnu11 -g -fPIC -pthread -fvisibility=hidden -Iinclude -Isrc $(WARN)

ifeq ($(VARIANT),release)
  BUILD := build
  OPT   := -O2
else ifeq ($(VARIANT),hardened)
  BUILD := build/hardened
  OPT   := -O2 -DNF_HARDENED
else ifeq ($(VARIANT),debug)
  BUILD := build/debug
  OPT   := -O1 -DNF_DEBUG -DNF_HARDENED
else ifeq ($(VARIANT),asan)
  BUILD := build/asan
  OPT   := -O1 -DNF_DEBUG -DNF_HARDENED -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(VARIANT),tsan)
  BUILD := build/tsan
  OPT   := -O1 -DNF_DEBUG -DNF_HARDENED -fsanitize=thread
else ifeq ($(VARIANT),fuzz)
  # The library as the fuzz target sees it: clang's coverage for libFuzzer, ASan, UBSan, debug invariants.
  BUILD := build/fuzz
  CC    := clang
  OPT   := -O1 -DNF_DEBUG -DNF_HARDENED -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined
else ifeq ($(VARIANT),afl)
  # The same target for AFL++ (make fuzz-afl): afl-clang-fast's edge coverage instead of libFuzzer's.
  BUILD := build/afl
  CC    := afl-clang-fast
  OPT   := -O1 -DNF_DEBUG -DNF_HARDENED -fsanitize=address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined
else ifeq ($(VARIANT),valgrind)
  # The debug build, describing nofail's memory to valgrind's memcheck (src/memcheck.h).
  BUILD := build/valgrind
  OPT   := -O1 -DNF_DEBUG -DNF_HARDENED -DNF_VALGRIND
else
  $(error unknown VARIANT $(VARIANT): release, hardened, debug, asan, tsan, fuzz, afl or valgrind)
endif

CFLAGS_ALL := $(BASE) $(OPT) $(CFLAGS)
LDLIBS_ALL := -pthread -lm $(LDLIBS)
LDFLAGS_ALL := $(filter -fsanitize=%,$(OPT)) $(LDFLAGS)

LIB_SRC   := $(sort $(wildcard src/*.c))
LIB_OBJ   := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
TOOL_SRC  := $(sort $(wildcard tools/*.c scenarios/*.c soak/*.c))
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/cmd/%.o)
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all lib hardened test test-asan test-tsan test-valgrind tests-build demo bench install clean check-warnings
all: $(BUILD)/libnofail.a $(BUILD)/libnofail.so $(BUILD)/nofail $(BUILD)/libnofail-malloc.so

lib: $(BUILD)/libnofail.a

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) include/nofail.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libnofail.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libnofail.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libnofail.so.0 $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# The drop-in malloc for LD_PRELOAD: the library plus preload/, whose files go into this .so only.
PRELOAD_SRC := $(sort $(wildcard preload/*.c))
PRELOAD_OBJ := $(PRELOAD_SRC:preload/%.c=$(BUILD)/preload/%.o)
$(BUILD)/preload/%.o: preload/%.c preload/preload.h $(wildcard src/*.h) include/nofail.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ipreload -c $< -o $@

$(BUILD)/libnofail-malloc.so: $(LIB_OBJ) $(PRELOAD_OBJ)
	$(CC) -shared $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

.PHONY: preload test-preload
preload: $(BUILD)/libnofail-malloc.so

# Release speed first, then the debug build's invariants and misuse checks under the same programs.
test-preload: $(BUILD)/libnofail-malloc.so
	@tests/preload/run.sh $(BUILD)
	@$(MAKE) --no-print-directory VARIANT=debug build/debug/libnofail-malloc.so
	@tests/preload/run.sh build/debug

# The scenarios' claims under fault injection, with the debug build's invariants checked (tests/fault/run.sh).
.PHONY: test-fault
test-fault:
	@$(MAKE) --no-print-directory VARIANT=debug build/debug/nofail
	@tests/fault/run.sh build/debug

$(BUILD)/cmd/%.o: %.c $(wildcard tools/*.h scenarios/*.h soak/*.h) include/nofail.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itools -Iscenarios -Isoak -c $< -o $@

$(BUILD)/nofail: $(TOOL_OBJ) $(BUILD)/libnofail.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(TOOL_OBJ) $(BUILD)/libnofail.a $(LDLIBS_ALL)

TEST_SUPPORT := tests/harness.c tests/fixtures.c
$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) tests/harness.h tests/fixtures.h $(BUILD)/libnofail.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests $(LDFLAGS_ALL) -o $@ $< $(TEST_SUPPORT) $(BUILD)/libnofail.a $(LDLIBS_ALL)

# One user's bug inside nofail memory per run, for the checkers to report (tests/user_bugs.sh).
$(BUILD)/tests/user_bugs: tests/user_bugs.c $(BUILD)/libnofail.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libnofail.a $(LDLIBS_ALL)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libnofail.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ibench $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libnofail.a $(LDLIBS_ALL)

tests-build: $(TEST_BIN)

# Release speed with the misuse checks: encoded free lists, double-free and wrong-cache checks.
hardened:
	@$(MAKE) --no-print-directory VARIANT=hardened all

test:
	@$(MAKE) --no-print-directory VARIANT=debug tests-build
	@tests/run.sh build/debug

# Then users' bugs inside nofail memory, which ASan must report (src/memcheck.h, tests/user_bugs.sh).
test-asan:
	@$(MAKE) --no-print-directory VARIANT=asan tests-build build/asan/tests/user_bugs
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run.sh build/asan
	@tests/user_bugs.sh asan build/asan

test-tsan:
	@$(MAKE) --no-print-directory VARIANT=tsan tests-build
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 tests/run.sh build/tsan

# The suite under valgrind's memcheck, nofail's pages and objects described to it (src/memcheck.h),
# then users' bugs inside nofail memory, which memcheck must report. No leak check: at every exit,
# children's included, it would scan the default domain's whole mapping (half of RAM) for pointers.
# --fair-sched=yes: threads take turns, so one that waits for others in a sched_yield loop lets them
# run (resize_under_load took from 8 s to 290 s without it). NF_TEST_SLOWDOWN: tests/fixtures.h.
VALGRIND_RUN := valgrind --tool=memcheck --error-exitcode=99 --leak-check=no --fair-sched=yes -q
test-valgrind:
	@if ! command -v valgrind >/dev/null 2>&1 || [ ! -f /usr/include/valgrind/memcheck.h ]; then \
		scripts/apt-install.sh test-valgrind valgrind; fi
	@$(MAKE) --no-print-directory VARIANT=valgrind tests-build build/valgrind/tests/user_bugs
	@NF_TEST_RUNNER="$(VALGRIND_RUN)" NF_TEST_SLOWDOWN=10 NF_TEST_TIMEOUT=900 tests/run.sh build/valgrind
	@tests/user_bugs.sh valgrind build/valgrind

demo: $(BUILD)/nofail
	$(BUILD)/nofail demo

# The soak (soak/soak.h): nofail's stderr (the OOM killer's reports) goes to a log, shown in part on failure.
MINUTES ?= 10
SOAK_TSAN_MINUTES ?= 1
SOAK_TSAN_SCALE ?= 0.1
.PHONY: soak soak-selftest soak-tsan
soak: $(BUILD)/nofail
	@$(BUILD)/nofail soak --minutes $(MINUTES) --log $(BUILD)/soak.log || \
	{ echo "soak: nofail's messages other than OOM reports, from $(BUILD)/soak.log:"; \
	  grep -v '^nofail: oom:' $(BUILD)/soak.log | tail -n 40; exit 1; }

soak-selftest: $(BUILD)/nofail
	@scripts/soak-selftest.sh $(BUILD)

soak-tsan:
	@$(MAKE) --no-print-directory VARIANT=tsan build/tsan/nofail
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build/tsan/nofail soak --minutes $(SOAK_TSAN_MINUTES) \
	  --scale $(SOAK_TSAN_SCALE) --log build/tsan/soak.log || \
	{ echo "soak-tsan: the end of build/tsan/soak.log:"; grep -v '^nofail: oom:' build/tsan/soak.log | tail -n 60; exit 1; }

bench: $(BENCH_BIN)
	@bench/run.sh $(BUILD)
	@if bench/alloc.sh --have-peers; then $(MAKE) --no-print-directory bench-alloc; \
	else echo "bench: mimalloc, jemalloc or tcmalloc is not installed: no object-layer comparison (scripts/bench-setup.sh installs them)"; fi

# The object-layer benchmark (bench/README.md): one binary per allocator,
# each calling its allocator directly; bench/alloc.sh runs and compares them.
ALLOC_PEERS     := mimalloc jemalloc tcmalloc glibc
ALLOC_PEER_BIN  := $(ALLOC_PEERS:%=$(BUILD)/bench/alloc-%)
ALLOC_BIN       := $(BUILD)/bench/alloc-nofail $(ALLOC_PEER_BIN)
alloc_def_mimalloc := -DALLOC_MIMALLOC
alloc_lib_mimalloc := -lmimalloc
alloc_def_jemalloc := -DALLOC_JEMALLOC
alloc_lib_jemalloc := -ljemalloc
alloc_def_tcmalloc := -DALLOC_TCMALLOC
alloc_lib_tcmalloc := -ltcmalloc
alloc_def_glibc    := -DALLOC_GLIBC
alloc_lib_glibc    :=

$(BUILD)/bench/alloc-nofail: bench/alloc_bench.c bench/bench_common.h $(BUILD)/libnofail.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ibench -DALLOC_NOFAIL $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libnofail.a $(LDLIBS_ALL)

$(ALLOC_PEER_BIN): $(BUILD)/bench/alloc-%: bench/alloc_bench.c bench/bench_common.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ibench $(alloc_def_$*) $(LDFLAGS_ALL) -o $@ $< $(alloc_lib_$*) $(LDLIBS_ALL)

# The same nofail benchmark on a library with reserve-slab handling compiled out.
ALLOC_NORESERVE := $(BUILD)/bench/noreserve
$(ALLOC_NORESERVE)/obj/%.o: src/%.c $(wildcard src/*.h) include/nofail.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DNF_NO_RESERVE_SLABS -c $< -o $@

$(ALLOC_NORESERVE)/libnofail.a: $(LIB_SRC:src/%.c=$(ALLOC_NORESERVE)/obj/%.o)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bench/alloc-nofail-noreserve: bench/alloc_bench.c bench/bench_common.h $(ALLOC_NORESERVE)/libnofail.a
	$(CC) $(CFLAGS_ALL) -Ibench -DALLOC_NOFAIL $(LDFLAGS_ALL) -o $@ $< $(ALLOC_NORESERVE)/libnofail.a $(LDLIBS_ALL)

# The classic workloads (bench/preload/) under glibc, mimalloc, jemalloc, tcmalloc and nofail via LD_PRELOAD.
PRELOAD_BENCH_SRC := $(sort $(wildcard bench/preload/*.c))
PRELOAD_BENCH_BIN := $(PRELOAD_BENCH_SRC:bench/preload/%.c=$(BUILD)/bench-preload/%)
$(BUILD)/bench-preload/%: bench/preload/%.c bench/preload/workload.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LDLIBS_ALL)

.PHONY: bench-preload
bench-preload: $(PRELOAD_BENCH_BIN) $(BUILD)/libnofail-malloc.so
	@bench/preload.sh $(BUILD)

.PHONY: bench-alloc bench-callgrind
bench-alloc: $(ALLOC_BIN)
	@bench/alloc.sh $(BUILD)

# Instructions per alloc/free pair under callgrind, reserve slabs compiled in and out.
bench-callgrind: $(ALLOC_BIN) $(BUILD)/bench/alloc-nofail-noreserve
	@bench/alloc.sh --callgrind $(BUILD)

# The fuzz target (tests/fuzz/, README's "Fuzzing"): scripts/fuzz-setup.sh installs clang and
# libFuzzer from Debian; scripts/fuzz.sh runs it. New corpus entries and crashes go under build/fuzz/.
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/*.c))
FUZZ_SECONDS ?= 300
.PHONY: fuzz fuzz-replay fuzz-build
fuzz-build:
	@scripts/fuzz-setup.sh
	@$(MAKE) --no-print-directory VARIANT=fuzz build/fuzz/fuzz_ops

build/fuzz/fuzz_ops: $(FUZZ_SRC) tests/fuzz/fuzz.h build/fuzz/libnofail.a
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -fsanitize=fuzzer -o $@ $(FUZZ_SRC) build/fuzz/libnofail.a $(LDLIBS_ALL)

fuzz: fuzz-build
	@scripts/fuzz.sh run build/fuzz/fuzz_ops $(FUZZ_SECONDS)

fuzz-replay: fuzz-build
	@scripts/fuzz.sh replay build/fuzz/fuzz_ops

# The same target under AFL++ (the afl++ package, scripts/fuzz-setup.sh afl): -fsanitize=fuzzer
# makes afl-clang-fast link its driver for LLVMFuzzerTestOneInput. Not in CI (libFuzzer's run is).
.PHONY: fuzz-afl
build/afl/fuzz_ops: $(FUZZ_SRC) tests/fuzz/fuzz.h build/afl/libnofail.a
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -fsanitize=fuzzer -o $@ $(FUZZ_SRC) build/afl/libnofail.a $(LDLIBS_ALL)

fuzz-afl:
	@scripts/fuzz-setup.sh afl
	@$(MAKE) --no-print-directory VARIANT=afl build/afl/fuzz_ops
	@scripts/fuzz.sh afl build/afl/fuzz_ops $(FUZZ_SECONDS)

# The fuzz target's sources under both compilers' warnings, without libFuzzer (no link).
.PHONY: check-fuzz-warnings
check-fuzz-warnings:
	gcc $(BASE) -O2 -Werror -Itests/fuzz -fsyntax-only $(FUZZ_SRC)
	clang $(BASE) -O2 -Werror -Itests/fuzz -fsyntax-only $(FUZZ_SRC)

# Both compilers, warnings as errors, release and debug: what every change keeps true.
check-warnings: check-fuzz-warnings
	$(MAKE) --no-print-directory VARIANT=debug CFLAGS=-Werror tests-build
	$(MAKE) --no-print-directory VARIANT=hardened CFLAGS=-Werror all
	@$(MAKE) --no-print-directory clean-variant-release
	$(MAKE) --no-print-directory CC=gcc CFLAGS=-Werror all $(TEST_BIN) $(BENCH_BIN) $(PRELOAD_BENCH_BIN)
	@$(MAKE) --no-print-directory clean-variant-release
	$(MAKE) --no-print-directory CC=clang CFLAGS=-Werror all $(TEST_BIN) $(BENCH_BIN) $(PRELOAD_BENCH_BIN)
	@# The next plain make rebuilds with cc: clang's DWARF 5 is more than valgrind 3.19 reads.
	@$(MAKE) --no-print-directory clean-variant-release

.PHONY: clean-variant-release
clean-variant-release:
	rm -rf build/obj build/cmd build/tests build/bench build/libnofail.* build/nofail build/preload build/libnofail-malloc.so build/bench-preload

$(BUILD)/nofail.pc: Makefile
	@mkdir -p $(dir $@)
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: nofail\nDescription: memory allocation with forward-progress guarantees\nVersion: %s\nLibs: -L$${libdir} -lnofail\nLibs.private: -pthread -lm\nCflags: -I$${includedir}\n' '$(PREFIX)' '$(VERSION)' > $@

install: all $(BUILD)/nofail.pc
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/nofail.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libnofail.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libnofail.so $(DESTDIR)$(PREFIX)/lib/libnofail.so.0
	ln -sf libnofail.so.0 $(DESTDIR)$(PREFIX)/lib/libnofail.so
	install -m 644 $(BUILD)/nofail.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(BUILD)/nofail $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build

# The Promela model of reservation admission, checked by spin (installs spin with apt-get if missing).
.PHONY: verify
verify:
	@scripts/verify.sh

# The NBD client against a real nbd-server on 127.0.0.1 (installs nbd-server with apt-get if missing).
.PHONY: nbd-check
nbd-check: $(BUILD)/nbd-check
	@scripts/nbd-check.sh $(BUILD)/nbd-check

$(BUILD)/nbd-check: tests/nbd_check.c $(BUILD)/libnofail.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libnofail.a $(LDLIBS_ALL)
