// SPDX-License-Identifier: Apache-2.0
//
// Driver state plus the init, version, device and error-string entry points.
#include "driver.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "device_memory.h"
#include "fault.h"
#include "stream.h"
#include "timeline.h"

namespace simcuda {

Driver& Driver::Get() {
  static Driver* driver = new Driver();  // never destroyed: workers may outlive main()
  return *driver;
}

bool ParseSize(const char* text, size_t* out) {
  if (text == nullptr || *text == '\0') return false;
  errno = 0;
  char* end = nullptr;
  double value = std::strtod(text, &end);
  if (end == text || errno != 0 || !(value >= 0) || std::isinf(value)) return false;
  double scale = 1;
  switch (*end) {
    case 'k':
    case 'K':
      scale = 1024.0;
      ++end;
      break;
    case 'm':
    case 'M':
      scale = 1024.0 * 1024;
      ++end;
      break;
    case 'g':
    case 'G':
      scale = 1024.0 * 1024 * 1024;
      ++end;
      break;
    case 't':
    case 'T':
      scale = 1024.0 * 1024 * 1024 * 1024;
      ++end;
      break;
    default:
      break;
  }
  if (scale > 1 && (std::strcmp(end, "iB") == 0 || std::strcmp(end, "B") == 0))
    end += std::strlen(end);
  if (scale == 1 && std::strcmp(end, "B") == 0) ++end;
  if (*end != '\0') return false;
  *out = static_cast<size_t>(value * scale);
  return true;
}

namespace {

bool ReadSize(const char* name, size_t* out) {
  const char* text = std::getenv(name);
  if (text == nullptr) return true;
  if (!ParseSize(text, out) || *out == 0) {
    std::fprintf(stderr,
                 "simcuda: %s=\"%s\" is not a size (accepted: bytes, or a number with K, M, G "
                 "or T, e.g. 256M)\n",
                 name, text);
    return false;
  }
  return true;
}

bool ReadNumber(const char* name, double minimum, double* out) {
  const char* text = std::getenv(name);
  if (text == nullptr) return true;
  char* end = nullptr;
  errno = 0;
  double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !(value >= minimum) || std::isinf(value)) {
    std::fprintf(stderr, "simcuda: %s=\"%s\" is not a number >= %g\n", name, text, minimum);
    return false;
  }
  *out = value;
  return true;
}

bool ReadConfig(Config* config) {
  bool ok = ReadSize("SIMCUDA_DEVICE_MEMORY", &config->device_memory);
  ok = ReadSize("SIMCUDA_GRANULARITY", &config->granularity) && ok;
  if (ok &&
      (config->granularity % 4096 != 0 || (config->granularity & (config->granularity - 1)) != 0)) {
    std::fprintf(stderr, "simcuda: SIMCUDA_GRANULARITY must be a power of two multiple of 4K\n");
    ok = false;
  }
  double devices = config->device_count;
  if (ReadNumber("SIMCUDA_DEVICES", 1, &devices) && devices == std::floor(devices) &&
      devices <= 16) {
    config->device_count = static_cast<int>(devices);
  } else {
    std::fprintf(stderr, "simcuda: SIMCUDA_DEVICES must be an integer from 1 to 16\n");
    ok = false;
  }
  double gbps = 0;
  if (ReadNumber("SIMCUDA_H2D_GBPS", 0, &gbps)) {
    config->h2d_bytes_per_s = gbps * 1e9;
  } else {
    ok = false;
  }
  gbps = 0;
  if (ReadNumber("SIMCUDA_D2H_GBPS", 0, &gbps)) {
    config->d2h_bytes_per_s = gbps * 1e9;
  } else {
    ok = false;
  }
  config->strict_streams = std::getenv("SIMCUDA_STRICT_STREAMS") != nullptr;
  if (const char* path = std::getenv("SIMCUDA_TIMELINE"); path != nullptr && *path != '\0') {
    ok = OpenTimeline(path) && ok;
  }
  double numa = config->host_numa_id;
  if (ReadNumber("SIMCUDA_HOST_NUMA_ID", 0, &numa) && numa == std::floor(numa)) {
    config->host_numa_id = static_cast<int>(numa);
  } else {
    ok = false;
  }
  return ok;
}

}  // namespace

CUresult Driver::Init() {
  std::call_once(init_once_, [this] {
    if (!ReadConfig(&config_)) {
      init_result_ = CUDA_ERROR_INVALID_VALUE;
      return;
    }
    init_result_ = DeviceMemory::Get().Init(config_);
    if (init_result_ != CUDA_SUCCESS) return;
    {
      std::lock_guard<std::mutex> lock(mu);
      devices.resize(config_.device_count);
    }
    InstallFaultHandler();
    initialized_.store(true, std::memory_order_release);
  });
  return init_result_;
}

void Driver::Register(HandleKind kind, const void* handle) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  handles_[static_cast<int>(kind)].insert(handle);
  if (kind == HandleKind::kStream) destroyed_streams_.erase(handle);  // the address reused
}

void Driver::Unregister(HandleKind kind, const void* handle) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  handles_[static_cast<int>(kind)].erase(handle);
  if (kind == HandleKind::kStream) destroyed_streams_.insert(handle);
}

bool Driver::IsLiveStream(const void* handle) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  if (handle != nullptr && handles_[static_cast<int>(HandleKind::kStream)].count(handle) != 0) {
    return true;
  }
  if (config_.strict_streams && destroyed_streams_.count(handle) != 0) {
    std::fprintf(stderr,
                 "simcuda: stream %p used after cuStreamDestroy (SIMCUDA_STRICT_STREAMS): "
                 "undefined behaviour on a GPU\n",
                 handle);
    std::abort();
  }
  return false;
}

void Driver::Retire(HandleKind kind, const void* handle) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  handles_[static_cast<int>(kind)].erase(handle);
  retired_.push_back(handle);
}

bool Driver::IsLive(HandleKind kind, const void* handle) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  return handle != nullptr && handles_[static_cast<int>(kind)].count(handle) != 0;
}

std::vector<Context*>& ContextStack() {
  thread_local std::vector<Context*> stack;
  return stack;
}

Context* CurrentContext() {
  auto& stack = ContextStack();
  if (stack.empty()) return nullptr;
  Context* ctx = stack.back();
  return Driver::Get().IsLive(HandleKind::kContext, ctx) ? ctx : nullptr;
}

CUresult EnterInit() {
  return Driver::Get().initialized() ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
}

CUresult EnterContext(Context** out) {
  if (!Driver::Get().initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Context* ctx = CurrentContext();
  if (ctx == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  CUresult sticky = ctx->sticky.load(std::memory_order_acquire);
  if (sticky != CUDA_SUCCESS) return sticky;
  *out = ctx;
  return CUDA_SUCCESS;
}

void SetSticky(Context* ctx, CUresult error) {
  CUresult expected = CUDA_SUCCESS;
  ctx->sticky.compare_exchange_strong(expected, error);
}

Context* NewContext(int device, unsigned flags, bool primary) {
  auto* ctx = new Context();
  ctx->device = device;
  ctx->flags = flags;
  ctx->primary = primary;
  ctx->legacy = new Stream(ctx, 0, /*legacy=*/true);
  Driver::Get().Register(HandleKind::kContext, ctx);
  return ctx;
}

CUresult SynchronizeContext(Context* ctx) {
  std::vector<CompletionRef> pending;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    pending.push_back(ctx->legacy->last());
    for (Stream* s : ctx->streams) pending.push_back(s->last());
    for (auto& [thread, s] : ctx->per_thread) pending.push_back(s->last());
  }
  for (auto& c : pending) WaitFor(c);
  return ctx->sticky.load(std::memory_order_acquire);
}

}  // namespace simcuda

using namespace simcuda;

namespace {

CUresult CheckDevice(CUdevice dev) {
  if (!Driver::Get().initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (dev < 0 || dev >= Driver::Get().config().device_count) return CUDA_ERROR_INVALID_DEVICE;
  return CUDA_SUCCESS;
}

struct ErrorText {
  CUresult code;
  const char* name;
  const char* text;
};

constexpr ErrorText kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU",
     "no kernel image is available for execution on the device"},
    {CUDA_ERROR_FILE_NOT_FOUND, "CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS",
     "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
     "part or all of the requested memory range is already mapped"},
    {CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
     "pointer does not correspond to a registered memory region"},
    {CUDA_ERROR_CONTEXT_IS_DESTROYED, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE",
     "primary context active"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
     "operation failed due to a previous error during capture"},
    {CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED",
     "capture was not initiated in this stream"},
    {CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT",
     "operation would make the legacy stream depend on a capturing blocking stream"},
    {CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE",
     "the operation cannot be performed in the present state"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const ErrorText* FindError(CUresult code) {
  for (const auto& e : kErrors) {
    if (e.code == code) return &e;
  }
  return nullptr;
}

}  // namespace

SIMCUDA_API CUresult cuInit(unsigned int flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return Driver::Get().Init();
}

SIMCUDA_API CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *version = CUDA_VERSION;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGetErrorName(CUresult error, const char** out) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorText* e = FindError(error);
  if (e == nullptr) {
    *out = nullptr;
    return CUDA_ERROR_INVALID_VALUE;
  }
  *out = e->name;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGetErrorString(CUresult error, const char** out) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorText* e = FindError(error);
  if (e == nullptr) {
    *out = nullptr;
    return CUDA_ERROR_INVALID_VALUE;
  }
  *out = e->text;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDeviceGetCount(int* count) {
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  *count = Driver::Get().config().device_count;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDevice(ordinal); r != CUDA_SUCCESS) return r;
  *device = ordinal;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDeviceGetName(char* name, int length, CUdevice dev) {
  if (name == nullptr || length <= 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  std::snprintf(name, static_cast<size_t>(length), "simcuda CPU-backed device %d", dev);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) {
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  std::memset(uuid->bytes, 0, sizeof(uuid->bytes));
  std::memcpy(uuid->bytes, "simcuda", 7);
  uuid->bytes[15] = static_cast<char>(dev);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  *bytes = Driver::Get().config().device_memory;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attribute, CUdevice dev) {
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  const Config& config = Driver::Get().config();
  switch (attribute) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
      *value = 9;
      break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
      *value = 0;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
      *value = 1024;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X:
      *value = 1024;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y:
      *value = 1024;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z:
      *value = 64;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X:
      *value = 2147483647;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y:
      *value = 65535;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z:
      *value = 65535;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK:
      *value = 49152;
      break;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE:
      *value = 32;
      break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
      *value = 132;
      break;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT:
      *value = 2;
      break;  // one per direction
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID:
      *value = dev + 1;
      break;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID:
      *value = 0;
      break;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID:
      *value = 0;
      break;
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID:
      *value = config.host_numa_id;
      break;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS:
      *value = 0;
      break;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH:
      *value = 6144;
      break;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE:
      *value = 2619000;
      break;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE:
      *value = 1980000;
      break;
    case CU_DEVICE_ATTRIBUTE_INTEGRATED:
      *value = 0;
      break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE:
      *value = CU_COMPUTEMODE_DEFAULT;
      break;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE:
      *value = 50 << 20;
      break;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR:
      *value = 2048;
      break;
    case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED:
      *value = 0;
      break;
    case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED:
      *value = 0;
      break;
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS:
      *value = 1;
      break;
    case CU_DEVICE_ATTRIBUTE_CAN_USE_STREAM_WAIT_VALUE_NOR:
      *value = 1;
      break;
    default:
      if (attribute < 0 || attribute >= CU_DEVICE_ATTRIBUTE_MAX) return CUDA_ERROR_INVALID_VALUE;
      *value = 0;
      break;
  }
  return CUDA_SUCCESS;
}
