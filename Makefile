# SPDX-License-Identifier: Apache-2.0
#
# Convenience front end to the CMake build. Every target that builds first runs
# scripts/install-deps.sh, which returns at once when the Debian packages are present.
# Variables: see Makefile.inc (`make help` lists them).

include Makefile.inc

CMAKE_ARGS := -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCUDA_HOME=$(CUDA_HOME) \
              -DSPILLWAY_SANITIZE=$(SANITIZE) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

# Tracked C++ and CUDA sources, for format, format-check and tidy.
FORMAT_FILES = $(shell git ls-files '*.h' '*.cc' '*.cu')
TIDY_FILES = $(shell git ls-files '*.cc')

.DEFAULT_GOAL := build
.PHONY: deps configure build test bench demo bundle install format format-check tidy clean help

deps:
	CUDA_HOME=$(CUDA_HOME) scripts/install-deps.sh

# Re-running CMake on an existing build directory is cheap and picks up changed variables.
configure: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

# Under sanitizers, the end-to-end tests preload the instrumented libspillway.so into
# instrumented programs: AddressSanitizer's runtime then comes second in the load order (it
# is still loaded before libc, so its interceptors work), which its start-up check refuses.
SANITIZER_TEST_ENV := $(if $(strip $(SANITIZE)),ASAN_OPTIONS=verify_asan_link_order=0$(if $(ASAN_OPTIONS),:$(ASAN_OPTIONS)),)

test: build
	$(SANITIZER_TEST_ENV) ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

# Benchmarks measure; they never run as tests. Results: $(BUILD_DIR)/bench-results/.
bench: build
	scripts/run-benchmarks.sh $(BUILD_DIR)

# tinyllm with 1 GiB of weights on a simulated 256 MiB device: out of memory plainly, the
# reference tokens under Spillway (host and NVMe tiers); a short report (scripts/demo.sh).
demo: build
	scripts/demo.sh --build-dir $(BUILD_DIR)

# A relocatable folder for a GPU machine: libspillway.so and its libraries, the spillway
# command, tinyllm, the GPU check (bench/gpu); in $(BUILD_DIR)/bundle/spillway-bundle.
bundle: build
	scripts/make-bundle.sh $(BUILD_DIR)

install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

format:
	@files='$(FORMAT_FILES)'; [ -z "$$files" ] || clang-format -i $$files

format-check:
	@files='$(FORMAT_FILES)'; [ -z "$$files" ] || clang-format --dry-run --Werror $$files

# Needs a build: compile_commands.json and the generated headers live in $(BUILD_DIR).
tidy: build
	@printf '%s\n' $(TIDY_FILES) | xargs -r -n 4 -P $(JOBS) clang-tidy -p $(BUILD_DIR) --quiet

clean:
	@case '$(BUILD_DIR)' in ''|/|.|..) echo "refusing to remove BUILD_DIR='$(BUILD_DIR)'"; exit 1;; esac
	rm -rf -- '$(BUILD_DIR)'

help:
	@echo 'Targets:'
	@echo '  deps          install missing Debian packages (scripts/install-deps.sh; root or sudo)'
	@echo '  configure     deps, then configure CMake in $$(BUILD_DIR)'
	@echo '  build         configure, then build (the default target)'
	@echo '  test          build, then run every test with ctest'
	@echo '  bench         build, then run the benchmarks (results in $$(BUILD_DIR)/bench-results)'
	@echo '  demo          build, then run the demo: tinyllm beyond a 256 MiB device, with Spillway'
	@echo '  bundle        build, then make $$(BUILD_DIR)/bundle/spillway-bundle for a GPU machine'
	@echo '  install       build, then install into $$(PREFIX)'
	@echo '  format        clang-format -i every tracked *.h *.cc *.cu'
	@echo '  format-check  fail if any tracked *.h *.cc *.cu is not clang-formatted'
	@echo '  tidy          build, then clang-tidy every tracked *.cc'
	@echo '  clean         remove $$(BUILD_DIR)'
	@echo '  help          this list'
	@echo 'Variables (Makefile.inc; current values):'
	@echo '  CUDA_HOME=$(CUDA_HOME)'
	@echo '  SANITIZE=$(SANITIZE)   (non-empty: sanitizer build, BUILD_DIR defaults to build-san)'
	@echo '  BUILD_DIR=$(BUILD_DIR)'
	@echo '  BUILD_TYPE=$(BUILD_TYPE)'
	@echo '  PREFIX=$(PREFIX)'
	@echo '  JOBS=$(JOBS)'
	@echo '  CMAKE_FLAGS=$(CMAKE_FLAGS)'
