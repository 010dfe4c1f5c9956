// SPDX-License-Identifier: Apache-2.0
//
// Shared helpers for simcuda's tests: CUresult assertions that print error names, a
// fixture that configures the driver (SIMCUDA_* variables, read at cuInit), initialises it
// and makes the primary context current, and small tools for ordering tests (a gate a
// host function can block on, a probe that records when it ran).
//
// Every test case runs in its own process (gtest_discover_tests), so a fixture may set
// the environment and call cuInit freely.
#ifndef SIMCUDA_TESTS_TEST_UTIL_H_
#define SIMCUDA_TESTS_TEST_UTIL_H_

#include <cuda.h>
#include <gtest/gtest.h>
#include <stdint.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace simcuda_test {

inline constexpr size_t kKiB = size_t{1} << 10;
inline constexpr size_t kMiB = size_t{1} << 20;
inline constexpr size_t kGiB = size_t{1} << 30;

// "CUDA_ERROR_INVALID_VALUE (1)"; falls back to the number when the driver has no name.
inline std::string CuName(CUresult result) {
  const char* name = nullptr;
  std::string text;
  if (cuGetErrorName(result, &name) == CUDA_SUCCESS && name != nullptr) {
    text = name;
  } else {
    text = "CUresult";
  }
  return text + " (" + std::to_string(static_cast<int>(result)) + ")";
}

// Predicate formatter: compares codes (not names, which come from the driver under test).
inline ::testing::AssertionResult CuResultIs(const char* /*expected_expr*/, const char* actual_expr,
                                             CUresult expected, CUresult actual) {
  if (expected == actual) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << actual_expr << "\n  returned " << CuName(actual) << "\n  expected " << CuName(expected);
}

}  // namespace simcuda_test

// CU_ASSERT(call): the call must return CUDA_SUCCESS.
// CU_ASSERT_STATUS(status, call): the call must return `status`.
#define CU_ASSERT(expr) ASSERT_PRED_FORMAT2(::simcuda_test::CuResultIs, CUDA_SUCCESS, (expr))
#define CU_EXPECT(expr) EXPECT_PRED_FORMAT2(::simcuda_test::CuResultIs, CUDA_SUCCESS, (expr))
#define CU_ASSERT_STATUS(status, expr) \
  ASSERT_PRED_FORMAT2(::simcuda_test::CuResultIs, (status), (expr))
#define CU_EXPECT_STATUS(status, expr) \
  EXPECT_PRED_FORMAT2(::simcuda_test::CuResultIs, (status), (expr))

namespace simcuda_test {

// Removes every SIMCUDA_* variable, so that a test sees the documented defaults whatever
// the environment of the person running it.
inline void ClearSimcudaEnvironment() {
  for (const char* name : {"SIMCUDA_DEVICE_MEMORY", "SIMCUDA_DEVICES", "SIMCUDA_GRANULARITY",
                           "SIMCUDA_H2D_GBPS", "SIMCUDA_D2H_GBPS", "SIMCUDA_HOST_NUMA_ID"}) {
    unsetenv(name);
  }
}

// Path of the test kernel module, and its bytes (for cuModuleLoadData).
inline const char* TestModulePath() { return SIMCUDA_TEST_MODULE; }

inline std::vector<char> ReadFileBytes(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A flag a host function (or a test thread) can wait on. Waits are bounded, so a test
// that fails before opening its gate cannot hang a stream for ever.
class Gate {
 public:
  Gate() = default;
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  void Open() { open_.store(true, std::memory_order_release); }
  bool IsOpen() const { return open_.load(std::memory_order_acquire); }
  // Whether a WaitFn blocked on this gate has returned (opened or timed out).
  bool Passed() const { return passed_.load(std::memory_order_acquire); }

  // Returns whether the gate opened within `timeout`.
  bool Wait(std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!IsOpen()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  }

  // A CUhostFn: blocks the stream until the gate (userData) opens, at most 5 s.
  static void CUDA_CB WaitFn(void* gate) {
    auto* self = static_cast<Gate*>(gate);
    self->Wait();
    self->passed_.store(true, std::memory_order_release);
  }

 private:
  std::atomic<bool> open_{false};
  std::atomic<bool> passed_{false};
};

// Records that a host function ran and whether, by then, the host function blocked on
// `gate` had finished: the ordering between two pieces of queued work, without clocks.
struct Probe {
  std::atomic<int> runs{0};
  std::atomic<int> after_gate{-1};  // 1: ran after the gated work, 0: before, -1: not run
  const Gate* gate = nullptr;

  static void CUDA_CB RunFn(void* probe) {
    auto* self = static_cast<Probe*>(probe);
    if (self->gate != nullptr) self->after_gate.store(self->gate->Passed() ? 1 : 0);
    self->runs.fetch_add(1);
  }
};

// Polls `done` until it returns true or `timeout` passes; returns its last value.
template <typename Pred>
bool WaitUntil(Pred done, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// Fixture: clears and then sets SIMCUDA_* variables (override Environment()), calls
// cuInit(0) and makes device 0's primary context current. Gates and probes made through
// the fixture outlive the test body: TearDown opens every gate and drains the context
// before they are destroyed, so a failed assertion never leaves a host function waiting
// on freed memory.
class DriverTest : public ::testing::Test {
 protected:
  using EnvList = std::vector<std::pair<const char*, const char*>>;

  // SIMCUDA_* variables for this test, set before cuInit.
  virtual EnvList Environment() const { return {}; }

  void SetUp() override {
    ClearSimcudaEnvironment();
    for (const auto& [name, value] : Environment()) setenv(name, value, 1);
    CU_ASSERT(cuInit(0));
    CU_ASSERT(cuDeviceGet(&device_, 0));
    CU_ASSERT(cuDevicePrimaryCtxRetain(&ctx_, device_));
    CU_ASSERT(cuCtxSetCurrent(ctx_));
  }

  void TearDown() override {
    for (Gate& gate : gates_) gate.Open();
    if (ctx_ != nullptr) {
      // May report a sticky error in fault tests; the context is going away regardless.
      (void)cuCtxSynchronize();
      if (module_ != nullptr) (void)cuModuleUnload(module_);
      (void)cuDevicePrimaryCtxRelease(device_);
    }
  }

  Gate& NewGate() { return gates_.emplace_back(); }
  Probe& NewProbe(const Gate* gate = nullptr) {
    Probe& probe = probes_.emplace_back();
    probe.gate = gate;
    return probe;
  }

  // Loads the test kernel module once; fails the test if it cannot.
  void LoadTestModule() {
    if (module_ != nullptr) return;
    CU_ASSERT(cuModuleLoad(&module_, TestModulePath())) << "module " << TestModulePath();
  }
  CUfunction Kernel(const char* name) {
    CUfunction fn = nullptr;
    EXPECT_EQ(CUDA_SUCCESS, cuModuleGetFunction(&fn, module_, name)) << name;
    return fn;
  }

  // Launches `fn` on one block of `threads` threads with kernelParams.
  static CUresult Launch(CUfunction fn, CUstream stream, std::vector<void*> params,
                         unsigned threads = 1) {
    return cuLaunchKernel(fn, 1, 1, 1, threads, 1, 1, 0, stream, params.data(), nullptr);
  }

  CUdevice device_ = 0;
  CUcontext ctx_ = nullptr;
  CUmodule module_ = nullptr;

 private:
  std::deque<Gate> gates_;
  std::deque<Probe> probes_;
};

// Allocation properties for VMM: pinned memory at `type` with `id`.
inline CUmemAllocationProp VmmProp(CUmemLocationType type, int id) {
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = type;
  prop.location.id = id;
  return prop;
}

// Read-write access for device `device` to [ptr, ptr + size).
inline CUresult GrantAccess(CUdeviceptr ptr, size_t size, CUdevice device) {
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return cuMemSetAccess(ptr, size, &access, 1);
}

inline size_t Granularity(const CUmemAllocationProp& prop) {
  size_t granularity = 0;
  EXPECT_EQ(CUDA_SUCCESS,
            cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  return granularity;
}

}  // namespace simcuda_test

#endif  // SIMCUDA_TESTS_TEST_UTIL_H_
