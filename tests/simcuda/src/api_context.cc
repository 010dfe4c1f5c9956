// SPDX-License-Identifier: Apache-2.0
//
// Context entry points: primary and created contexts, the per-thread context stack.
#include <algorithm>

#include "driver.h"
#include "stream.h"

using namespace simcuda;

namespace {

CUresult CheckDevice(CUdevice dev) {
  if (!Driver::Get().initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (dev < 0 || dev >= Driver::Get().config().device_count) return CUDA_ERROR_INVALID_DEVICE;
  return CUDA_SUCCESS;
}

CUresult CheckContext(CUcontext handle, Context** out) {
  if (!Driver::Get().initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  auto* ctx = reinterpret_cast<Context*>(handle);
  if (!Driver::Get().IsLive(HandleKind::kContext, ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  *out = ctx;
  return CUDA_SUCCESS;
}

CUresult CreateContext(CUcontext* out, unsigned flags, CUdevice dev) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  Context* ctx = NewContext(dev, flags, /*primary=*/false);
  ContextStack().push_back(ctx);
  *out = reinterpret_cast<CUcontext>(ctx);
  return CUDA_SUCCESS;
}

}  // namespace

SIMCUDA_API CUresult cuDevicePrimaryCtxRetain(CUcontext* out, CUdevice dev) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  Driver& driver = Driver::Get();
  Context* ctx = nullptr;
  {
    std::lock_guard<std::mutex> lock(driver.mu);
    Device& device = driver.devices[dev];
    if (device.primary == nullptr) {
      device.primary = NewContext(dev, device.primary_flags, /*primary=*/true);
    }
    ++device.primary_refcount;
    ctx = device.primary;
  }
  *out = reinterpret_cast<CUcontext>(ctx);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  Driver& driver = Driver::Get();
  std::lock_guard<std::mutex> lock(driver.mu);
  Device& device = driver.devices[dev];
  if (device.primary_refcount == 0) return CUDA_ERROR_INVALID_CONTEXT;
  // The context object stays: pointers to it may still be current on other threads, and
  // a later retain on a real driver gets a context with the same handle value too.
  --device.primary_refcount;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  Driver& driver = Driver::Get();
  std::lock_guard<std::mutex> lock(driver.mu);
  driver.devices[dev].primary_flags = flags;
  if (driver.devices[dev].primary != nullptr) driver.devices[dev].primary->flags = flags;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int* flags, int* active) {
  if (flags == nullptr || active == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  Driver& driver = Driver::Get();
  std::lock_guard<std::mutex> lock(driver.mu);
  *flags = driver.devices[dev].primary_flags;
  *active = driver.devices[dev].primary_refcount > 0 ? 1 : 0;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  Context* ctx = nullptr;
  {
    Driver& driver = Driver::Get();
    std::lock_guard<std::mutex> lock(driver.mu);
    ctx = driver.devices[dev].primary;
  }
  if (ctx != nullptr) {
    SynchronizeContext(ctx);
    ctx->sticky.store(CUDA_SUCCESS);
  }
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxCreate_v4(CUcontext* out, CUctxCreateParams* /*params*/,
                                    unsigned int flags, CUdevice dev) {
  return CreateContext(out, flags, dev);
}
SIMCUDA_API CUresult cuCtxCreate_v3(CUcontext* out, CUexecAffinityParam* /*params*/, int /*count*/,
                                    unsigned int flags, CUdevice dev) {
  return CreateContext(out, flags, dev);
}
SIMCUDA_API CUresult cuCtxCreate_v2(CUcontext* out, unsigned int flags, CUdevice dev) {
  return CreateContext(out, flags, dev);
}

SIMCUDA_API CUresult cuCtxDestroy_v2(CUcontext handle) {
  Context* ctx = nullptr;
  if (CUresult r = CheckContext(handle, &ctx); r != CUDA_SUCCESS) return r;
  if (ctx->primary) return CUDA_ERROR_INVALID_CONTEXT;
  SynchronizeContext(ctx);
  Driver& driver = Driver::Get();
  driver.Retire(HandleKind::kContext, ctx);
  {
    std::lock_guard<std::mutex> lock(driver.mu);
    for (Stream* s : ctx->streams) {
      driver.Unregister(HandleKind::kStream, s);
      s->Retire();
    }
    ctx->streams.clear();
  }
  auto& stack = ContextStack();
  std::erase(stack, ctx);
  // The Context object itself is kept: other threads' stacks may still name it, and
  // CurrentContext() then sees an unregistered context (CUDA_ERROR_INVALID_CONTEXT).
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxSetCurrent(CUcontext handle) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  auto& stack = ContextStack();
  if (handle == nullptr) {
    if (!stack.empty()) stack.pop_back();
    return CUDA_SUCCESS;
  }
  Context* ctx = nullptr;
  if (CUresult r = CheckContext(handle, &ctx); r != CUDA_SUCCESS) return r;
  if (stack.empty()) {
    stack.push_back(ctx);
  } else {
    stack.back() = ctx;
  }
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxGetCurrent(CUcontext* out) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  *out = reinterpret_cast<CUcontext>(CurrentContext());
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxPushCurrent_v2(CUcontext handle) {
  Context* ctx = nullptr;
  if (CUresult r = CheckContext(handle, &ctx); r != CUDA_SUCCESS) return r;
  ContextStack().push_back(ctx);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxPopCurrent_v2(CUcontext* out) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  auto& stack = ContextStack();
  if (stack.empty()) return CUDA_ERROR_INVALID_CONTEXT;
  if (out != nullptr) *out = reinterpret_cast<CUcontext>(stack.back());
  stack.pop_back();
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxGetDevice(CUdevice* out) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  Context* ctx = CurrentContext();
  if (ctx == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  *out = ctx->device;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxGetFlags(unsigned int* flags) {
  if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  *flags = ctx->flags;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxGetApiVersion(CUcontext handle, unsigned int* version) {
  if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (handle != nullptr) {
    Context* ctx = nullptr;
    if (CUresult r = CheckContext(handle, &ctx); r != CUDA_SUCCESS) return r;
  }
  *version = 3020;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  if (least != nullptr) *least = 0;
  if (greatest != nullptr) *greatest = -5;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuCtxSynchronize() {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  Context* ctx = CurrentContext();
  if (ctx == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  return SynchronizeContext(ctx);
}
