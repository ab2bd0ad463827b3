# streamtrain — one flat Makefile.
#
#   make              build everything into build/ (CUDA backend when nvcc is found)
#   make CUDA=0       build without the CUDA backend
#   make MPI=0        build without MPI (a 1-rank job only; default: MPI when
#                     mpicc or pkg-config ompi-c is found)
#   make SAN=thread   build into build/san-thread/ with ThreadSanitizer (also: address)
#   make EMU=1        build into build/emu/ with the CUDA backend on cuemu, the CUDA
#                     emulator in tests/emu/ (no GPU needed; see tests/emu/README.md)
#   make test         install missing deps, build, run every test (+ TSan/ASan loader tests,
#                     fuzz smoke, the CUDA backend's tests on cuemu)
#   make demo         install missing deps, pack Fashion-MNIST and train on it
#   make fuzz         build the libFuzzer targets (clang) into build/fuzz/
#   make bench        the throughput suite (not part of make test)

CC       ?= cc
SAN      ?=
CUDA     ?= 1
EMU      ?= 0
MPI      ?= 1
CXX      ?= c++
CUDA_HOME ?= /usr/local/cuda
OPT      ?= -O2
# make test, demo and bench build with one job per core
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wno-format-truncation -pthread \
               -MMD -MP -I. -I/usr/include/stb
CFLAGS   := $(CFLAGS_BASE) $(OPT) -march=x86-64-v2 $(EXTRA_CFLAGS)
LDLIBS   := -lzstd -lpng -ljpeg -lz -lxxhash -lstb -lopenblas -lm -pthread
LDFLAGS  :=

BUILD := build
ifneq ($(SAN),)
  BUILD  := build/san-$(SAN)
  CFLAGS := $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=$(SAN)
  LDFLAGS += -fsanitize=$(SAN)
  CUDA   := 0
endif

# ---- MPI detection (flags from mpicc, else pkg-config ompi-c) ----------------
ifeq ($(MPI),1)
  MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags ompi-c 2>/dev/null)
  MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs ompi-c 2>/dev/null)
  ifeq ($(strip $(MPI_LIBS)),)
    $(info streamtrain: no MPI found (mpicc, pkg-config ompi-c): single-process build)
  else
    CFLAGS += -DST_HAVE_MPI=1 $(MPI_CFLAGS)
    LDLIBS += $(MPI_LIBS)
    $(info streamtrain: MPI with $(MPI_LIBS))
  endif
endif

# ---- CUDA detection ------------------------------------------------------
NVCC := $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
ifeq ($(EMU),1)
  ifneq ($(SAN),)
    $(error EMU=1 and SAN= do not combine: cuemu's fibers confuse the sanitizers)
  endif
  BUILD := build/emu
  HAVE_CUDA := 2
  $(info streamtrain: CUDA backend on cuemu, the CPU emulator in tests/emu/)
else ifeq ($(CUDA),0)
  HAVE_CUDA := 0
else ifeq ($(NVCC),)
  HAVE_CUDA := 0
  $(info streamtrain: nvcc not found (looked in $(CUDA_HOME)/bin and PATH): CPU-only build)
else
  HAVE_CUDA := 1
  CUDA_LIBDIR := $(dir $(NVCC))../lib64
  $(info streamtrain: CUDA backend with $(NVCC))
endif

ifeq ($(HAVE_CUDA),1)
  NVCCFLAGS := -O2 -std=c++17 -I. -Xcompiler -Wall,-Wextra,-Werror \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
    -gencode arch=compute_90,code=compute_90 -MMD -MP
  CFLAGS  += -DST_HAVE_CUDA=1
  LDLIBS  += -L$(CUDA_LIBDIR) -lcudart_static -lcublas -lcublasLt -ldl -lrt -lstdc++ \
             -Wl,-rpath,$(abspath $(CUDA_LIBDIR))
  CU_SRCS := $(wildcard gpu/*.cu)
  # NCCL (gpu/comm_nccl.cu) with the toolkit's nccl.h and libnccl; its id
  # goes over MPI, so MPI's flags come along
  NCCL_MPI_CFLAGS := $(if $(filter 1,$(MPI)),$(shell mpicc --showme:compile 2>/dev/null))
  NCCL_MPI_LIBS := $(if $(filter 1,$(MPI)),$(shell mpicc --showme:link 2>/dev/null))
  ifneq ($(and $(wildcard $(CUDA_HOME)/include/nccl.h),$(wildcard $(CUDA_LIBDIR)/libnccl.so*),$(NCCL_MPI_LIBS)),)
    CFLAGS += -DST_HAVE_NCCL=1 $(NCCL_MPI_CFLAGS)
    LDLIBS += -lnccl $(NCCL_MPI_LIBS)
  else
    CU_SRCS := $(filter-out gpu/comm_nccl.cu,$(CU_SRCS))
    $(info streamtrain: no NCCL (nccl.h, libnccl.so, mpicc): CUDA without the multi-GPU all-reduce)
  endif
else ifeq ($(HAVE_CUDA),2)
  # the .cu files as C++ against tests/emu/'s cuda_runtime.h and cublas_v2.h;
  # each <<<...>>> launch becomes emu_launch(...)(...)
  EMU_CXXFLAGS := -std=c++17 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -MMD -MP \
                  -I. -Itests/emu
  CFLAGS  += -DST_HAVE_CUDA=1
  LDLIBS  += -lstdc++
  CU_SRCS := $(wildcard gpu/*.cu)
  EMU_SRCS := $(wildcard tests/emu/*.cpp)
  # cuemu's NCCL (tests/emu/nccl.h, cuemu_nccl.cpp) runs over MPI
  NCCL_MPI_CFLAGS := $(if $(filter 1,$(MPI)),$(shell mpicc --showme:compile 2>/dev/null))
  NCCL_MPI_LIBS := $(if $(filter 1,$(MPI)),$(shell mpicc --showme:link 2>/dev/null))
  ifneq ($(NCCL_MPI_LIBS),)
    CFLAGS += -DST_HAVE_NCCL=1 $(NCCL_MPI_CFLAGS)
    EMU_CXXFLAGS += -DOMPI_SKIP_MPICXX=1 $(NCCL_MPI_CFLAGS)
    LDLIBS += $(NCCL_MPI_LIBS)
  else
    CU_SRCS := $(filter-out gpu/comm_nccl.cu,$(CU_SRCS))
    EMU_SRCS := $(filter-out tests/emu/cuemu_nccl.cpp,$(EMU_SRCS))
    $(info streamtrain: no mpicc: cuemu without NCCL)
  endif
else
  CU_SRCS :=
endif

# ---- sources (picked up by directory) ------------------------------------
LIB_SRCS  := $(wildcard datasets/*.c loader/*.c gpu/*.c train/*.c)
TOOL_SRCS := $(wildcard tools/*.c)
TEST_SRCS := $(wildcard tests/test_*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(CU_SRCS:%.cu=$(BUILD)/obj/%.o) \
             $(EMU_SRCS:%.cpp=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/libstreamtrain.a
TOOLS     := $(TOOL_SRCS:tools/%.c=$(BUILD)/%)
TESTS     := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
# Tests run again under TSan and ASan: everything that exercises threads
# (the loader, the trainer's run, the packer's encoder pool, the CPU
# backend's worker threads).
SAN_TESTS := $(BUILD)/tests/test_loader $(BUILD)/tests/test_order $(BUILD)/tests/test_ring \
             $(BUILD)/tests/test_run $(BUILD)/tests/test_train $(BUILD)/tests/test_pack \
             $(BUILD)/tests/test_fused $(BUILD)/tests/test_cpu_pool $(BUILD)/tests/test_cpu_gemm \
             $(BUILD)/tests/test_transform_erase

.PHONY: all tools tests test demo fuzz bench deps clean san-tests emu-tests
all: tools tests

tools: $(TOOLS)
tests: $(TESTS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

ifeq ($(HAVE_CUDA),2)
$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	{ echo '#line 1 "$<"'; sed -E 's/([A-Za-z_][A-Za-z0-9_]*)<<<(.*)>>>\(/emu_launch(\1, "\1", \2)(/' $<; } \
	    > $(BUILD)/obj/$*.emu.cpp
	$(CXX) $(EMU_CXXFLAGS) -c $(BUILD)/obj/$*.emu.cpp -o $@

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

# cuemu's own test (tests/emu/selftest.cu), next to the others
tests: $(BUILD)/tests/test_cuemu
$(BUILD)/tests/test_cuemu: $(BUILD)/obj/tests/emu/selftest.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) -lcmocka $(LDLIBS) -o $@
else
$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
endif

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/%: $(BUILD)/obj/tools/%.o $(LIB)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# the resampler's per-kernel speed (a benchmark: run by hand)
$(BUILD)/bench/resample_speed: $(BUILD)/obj/bench/resample_speed.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) -lcmocka $(LDLIBS) -o $@

# ---- the shared library, install, python (lib/, python/) -------------------
# build/libstreamtrain.so: datasets/ and loader/ as position-independent
# objects (build/pic/) with -fvisibility=hidden, the public headers read
# first with default visibility (lib/api.h), and a version script
# (lib/exports.sh) exporting exactly the functions API_HEADERS declare.
# SO_MAJOR changes with every incompatible change to the exported API or
# its structs (1: transform_spec grew erase, 2026-12-02).
SO_MAJOR   := 1
SO_VERSION := 1.0.0
SO_NAME    := libstreamtrain.so.$(SO_MAJOR)
SO         := $(BUILD)/libstreamtrain.so
SO_SRCS    := $(wildcard datasets/*.c loader/*.c)
SO_OBJS    := $(SO_SRCS:%.c=$(BUILD)/pic/%.o)
SO_LIBS    := -lzstd -lpng -ljpeg -lz -lxxhash -lstb -lm -pthread
API_HEADERS := datasets/error.h datasets/pack.h datasets/manifest.h datasets/packer.h \
               loader/loader.h loader/transform.h
# installed (flattened into include/streamtrain/): the API and what it includes
INSTALL_HEADERS := $(API_HEADERS) datasets/shard.h datasets/source.h datasets/resample.h \
                   loader/ring.h
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INSTALL_TOOLS := packdata packinfo loadbench streamtrain synthpack

$(BUILD)/pic/%.o: %.c lib/api.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -include lib/api.h -c $< -o $@

$(BUILD)/pic/exports.map: $(SO_OBJS) $(API_HEADERS) lib/exports.sh
	lib/exports.sh "$(API_HEADERS)" $(SO_OBJS) > $@.tmp && mv $@.tmp $@

$(SO).$(SO_VERSION): $(SO_OBJS) $(BUILD)/pic/exports.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SO_NAME) -Wl,--version-script=$(BUILD)/pic/exports.map \
	    -Wl,--no-undefined $(SO_OBJS) $(SO_LIBS) -o $@

$(SO): $(SO).$(SO_VERSION)
	ln -sf libstreamtrain.so.$(SO_VERSION) $(BUILD)/$(SO_NAME)
	ln -sf $(SO_NAME) $@

ifeq ($(SAN),)
all: $(SO)
endif

.PHONY: install python
install: $(SO) $(addprefix $(BUILD)/,$(INSTALL_TOOLS))
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/bin \
	    $(DESTDIR)$(PREFIX)/include/streamtrain
	install -m 755 $(SO).$(SO_VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libstreamtrain.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/$(SO_NAME)
	ln -sf $(SO_NAME) $(DESTDIR)$(LIBDIR)/libstreamtrain.so
	for h in $(INSTALL_HEADERS); do \
	    sed -E 's|#include "(datasets\|loader)/([a-z_]+\.h)"|#include "\2"|' $$h \
	        > $(DESTDIR)$(PREFIX)/include/streamtrain/$$(basename $$h) || exit 1; done
	install -m 644 lib/streamtrain.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' -e 's|@VERSION@|$(SO_VERSION)|' \
	    lib/streamtrain.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/streamtrain.pc
	install -m 755 $(addprefix $(BUILD)/,$(INSTALL_TOOLS)) $(DESTDIR)$(PREFIX)/bin/

-include $(shell find $(BUILD)/pic -name '*.d' 2>/dev/null)

# development: python/streamtrain/ finds build/libstreamtrain.so by itself
python: $(SO)
	@echo "export PYTHONPATH=$(abspath python)$${PYTHONPATH:+:$$PYTHONPATH}"

# ---- fuzzing (clang + libFuzzer) -----------------------------------------
FUZZ_BUILD := build/fuzz
FUZZ_LIB_SRCS := $(wildcard datasets/*.c)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -pthread -I. -I/usr/include/stb \
               -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(FUZZ_LIB_SRCS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $^ -lzstd -lpng -ljpeg -lz -lxxhash -lstb -lm -o $@

fuzz: $(FUZZ_BINS)

# ---- entry points ----------------------------------------------------------
deps:
	@tools/deps.sh

test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all
	@$(MAKE) --no-print-directory -j$(JOBS) SAN=thread san-tests
	@$(MAKE) --no-print-directory -j$(JOBS) SAN=address san-tests
	@$(MAKE) --no-print-directory -j$(JOBS) fuzz
	@$(MAKE) --no-print-directory -j$(JOBS) EMU=1 emu-tests
	@tests/run.sh $(BUILD)

san-tests: $(SAN_TESTS)

# The CUDA backend's tests again, on cuemu (make EMU=1 emu-tests), and
# cuemu's own; streamtrain for test_run's CLI checks.
EMU_TESTS := $(addprefix $(BUILD)/tests/,test_cuemu test_gpu test_gpu_conv test_gpu_model test_noalloc \
                 test_run test_comm_nccl) \
             $(BUILD)/streamtrain
emu-tests: $(EMU_TESTS)

demo: deps
	@$(MAKE) --no-print-directory -j$(JOBS) tools
	tools/demo.sh $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory -j$(JOBS) tools
	bench/run.sh $(if $(QUICK),--quick) $(BUILD)

clean:
	rm -rf build python/build python/streamtrain.egg-info

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
