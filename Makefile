# rotlab -- build (float and double variants), deps, run, test, bench, asan, install.
#
#   make            build the float and double hosts: build/bin/rotlab, build/bin/rotlab-double
#   make run        deps + build + data + the default experiment (experiments/quickstart.lua)
#   make test       deps + test deps + build + data + every test (one prove run)
#   make asan       the test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      benchmarks (milliseconds, peak memory)
#   make fuzz       libFuzzer targets of core/data (clang), each run for FUZZ_SECONDS (default 300) into build/fuzz/
#   make install    PREFIX=/usr/local

CC      ?= cc
PREFIX  ?= /usr/local
PKGS    := lua5.4 hdf5 sqlite3 openblas
JOBS    ?= 2

# Debian packages the build, the main job and the plots need (installed by `make deps` when missing) ...
DEB_PKGS := gcc make pkg-config liblua5.4-dev libopenblas-dev libhdf5-dev libsqlite3-dev perl sqlite3 \
            gnuplot-nox ca-certificates
# ... and what only the tests need (installed by `make test-deps`, which `make test` and `make asan` run):
# h5py/numpy write files as users do; clang + libclang-rt-14-dev are the libFuzzer and sanitizer runtimes of
# `make fuzz` and tests/fuzz.t, llvm the llvm-symbolizer of their reports; slurmctld, slurmd, slurm-client and
# munge the single-node Slurm that tests/slurm.t starts on localhost.
TEST_PKGS := python3-h5py python3-numpy clang libclang-rt-14-dev llvm slurmctld slurmd slurm-client munge

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wvla
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -fopenmp -MMD -MP $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lm -fopenmp
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC     := $(sort $(shell find core lua db -name '*.c'))
OBJ_F   := $(SRC:%.c=build/obj/float/%.o)
OBJ_D   := $(SRC:%.c=build/obj/double/%.o)
OBJ_AF  := $(SRC:%.c=build/obj/asan-float/%.o)
OBJ_AD  := $(SRC:%.c=build/obj/asan-double/%.o)

DATA    := build/data/digit_bags.h5 build/data/digit_points.h5
ifneq ($(wildcard ../shared/data),)
DATA_DIR ?= ../shared/data
endif

.PHONY: all deps test-deps print-deps run test asan bench install clean data fuzz fuzz-build

all: build/bin/rotlab build/bin/rotlab-double

build/obj/float/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
build/obj/double/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DRL_DOUBLE -c $< -o $@
build/obj/asan-float/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -c $< -o $@
build/obj/asan-double/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -DRL_DOUBLE -c $< -o $@

build/bin/rotlab: $(OBJ_F)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS)
build/bin/rotlab-double: $(OBJ_D)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS)
build/asan/bin/rotlab: $(OBJ_AF)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LDLIBS)
build/asan/bin/rotlab-double: $(OBJ_AD)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LDLIBS)

-include $(OBJ_F:.o=.d) $(OBJ_D:.o=.d) $(OBJ_AF:.o=.d) $(OBJ_AD:.o=.d)

# Installs the missing Debian packages (needs root, or sudo) -- nothing else is downloaded.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call install_missing,$(DEB_PKGS))

test-deps:
	$(call install_missing,$(DEB_PKGS) $(TEST_PKGS))

print-deps:
	@echo $(DEB_PKGS) $(TEST_PKGS)

# The shipped default data, derived from UCI digits (see README: provenance and licence).
data: $(DATA)
$(DATA) &: build/bin/rotlab experiments/make_digits.lua
	@mkdir -p build/data
	build/bin/rotlab run experiments/make_digits.lua out=build/data $(if $(DATA_DIR),data=$(DATA_DIR))

run: deps
	$(MAKE) -j$(JOBS) all
	$(MAKE) data
	build/bin/rotlab run experiments/quickstart.lua $(if $(DATA_DIR),data=$(DATA_DIR))

TESTS := $(sort $(wildcard tests/*.t))

test: test-deps
	$(MAKE) -j$(JOBS) all
	$(MAKE) data
	PATH="$(CURDIR)/build/bin:$$PATH" prove $(PROVE_FLAGS) $(TESTS)

asan: test-deps
	$(MAKE) -j$(JOBS) all build/asan/bin/rotlab build/asan/bin/rotlab-double
	$(MAKE) data
	PATH="$(CURDIR)/build/asan/bin:$$PATH" ASAN_OPTIONS=detect_leaks=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 prove $(PROVE_FLAGS) $(TESTS)

bench: all data
	build/bin/rotlab run tests/bench/bench.lua

# ---------------------------------------------------------------- fuzzing (tests/fuzz/README.md)
# clang + libFuzzer with ASan and UBSan; core/ only (no Lua), objects in build/fuzz/ (the normal build is untouched).
# RL_MAX_ALLOC is lowered so that an allocation the readers' own checks let through fails as an error (and is seen
# in the error message) rather than as libFuzzer's out-of-memory report.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
FUZZ_FLAGS   ?=
FUZZ_ONLY    ?=
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE $(WARN) -Wno-unknown-pragmas -g -O1 $(FUZZ_SAN) -MMD -MP \
                $(shell pkg-config --cflags hdf5 2>/dev/null) -DRL_MAX_ALLOC='((size_t)256 << 20)'
FUZZ_LIBS    := $(shell pkg-config --libs hdf5 2>/dev/null) -lm
FUZZ_CORE    := $(patsubst %.c,build/fuzz/obj/%.o,core/error.c core/data/h5io.c core/data/dataset.c core/data/mil.c)
FUZZ_TARGETS := h5 h5spec mil
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
build/fuzz/obj/core/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
build/fuzz/obj/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -c $< -o $@
build/fuzz/fuzz_%: build/fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_CORE)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(FUZZ_LIBS)

-include $(FUZZ_CORE:.o=.d) $(FUZZ_TARGETS:%=build/fuzz/obj/tests/fuzz/fuzz_%.d)
.SECONDARY: $(FUZZ_CORE) $(FUZZ_TARGETS:%=build/fuzz/obj/tests/fuzz/fuzz_%.o)

fuzz-build: $(FUZZ_BINS)

fuzz: test-deps
	$(MAKE) -j$(JOBS) all fuzz-build
	ROTLAB_ROOT="$(CURDIR)" build/bin/rotlab run tests/fuzz/run.lua seconds=$(FUZZ_SECONDS) \
	  $(if $(FUZZ_ONLY),targets=$(FUZZ_ONLY)) $(if $(FUZZ_FLAGS),extra="$(FUZZ_FLAGS)")

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/rotlab
	cp -r lua db $(DESTDIR)$(PREFIX)/share/rotlab/
	$(CC) $(ALL_CFLAGS) -DRL_INSTALL_DIR='"$(PREFIX)/share/rotlab"' -c lua/host.c -o build/obj/host-install.o
	$(CC) -o $(DESTDIR)$(PREFIX)/bin/rotlab $(filter-out build/obj/float/lua/host.o,$(OBJ_F)) build/obj/host-install.o $(LDLIBS)

clean:
	rm -rf build
