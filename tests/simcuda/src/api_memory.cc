// SPDX-License-Identifier: Apache-2.0
//
// Memory entry points: allocation, host memory, VMM, pointer queries, copies and sets.
#include <sys/mman.h>

#include <cstring>

#include "device_memory.h"
#include "driver.h"
#include "stream.h"
#include "work.h"

using namespace simcuda;

namespace {

DeviceMemory& Memory() { return DeviceMemory::Get(); }

uintptr_t Address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

bool IsPinnedHost(const void* p, size_t bytes) {
  HostRange range;
  return Memory().LookupHost(Address(p), &range) && Address(p) + bytes <= range.base + range.size;
}

// Memory a device can address: the device window, or page-locked host memory (UVA).
bool DeviceAddressable(uintptr_t p, size_t bytes) {
  return Memory().InWindow(p, bytes) || IsPinnedHost(reinterpret_cast<void*>(p), bytes);
}

enum class Sync { kSynchronous, kAsync };

// The one path every copy takes. Copies to or from pageable host memory return only when
// done (CUDA stages or waits for those); others are asynchronous where the call is.
CUresult Copy(void* dst, const void* src, size_t bytes, CUstream handle, bool per_thread,
              Sync sync) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (dst == nullptr || src == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Stream* stream = nullptr;
  if (CUresult r = ResolveStream(ctx, handle, per_thread, &stream); r != CUDA_SUCCESS) return r;
  bool pageable = (!Memory().InWindow(Address(dst), bytes) && !IsPinnedHost(dst, bytes)) ||
                  (!Memory().InWindow(Address(src), bytes) && !IsPinnedHost(src, bytes));
  bool wait = sync == Sync::kSynchronous || pageable;
  return Issue(stream, CopyWork{dst, src, bytes}, wait);
}

CUresult CopyHtoD(CUdeviceptr dst, const void* src, size_t bytes, CUstream s, bool pt, Sync y) {
  if (bytes != 0 && !DeviceAddressable(dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
  return Copy(reinterpret_cast<void*>(dst), src, bytes, s, pt, y);
}
CUresult CopyDtoH(void* dst, CUdeviceptr src, size_t bytes, CUstream s, bool pt, Sync y) {
  if (bytes != 0 && !DeviceAddressable(src, bytes)) return CUDA_ERROR_INVALID_VALUE;
  return Copy(dst, reinterpret_cast<const void*>(src), bytes, s, pt, y);
}
CUresult CopyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s, bool pt, Sync y) {
  if (bytes != 0 && (!DeviceAddressable(dst, bytes) || !DeviceAddressable(src, bytes))) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return Copy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes, s, pt, y);
}

CUresult Set(CUdeviceptr dst, unsigned value, unsigned element_size, size_t count, CUstream handle,
             bool per_thread, Sync sync) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  if (count == 0) return CUDA_SUCCESS;
  if (dst % element_size != 0) return CUDA_ERROR_INVALID_VALUE;
  if (!DeviceAddressable(dst, count * element_size)) return CUDA_ERROR_INVALID_VALUE;
  Stream* stream = nullptr;
  if (CUresult r = ResolveStream(ctx, handle, per_thread, &stream); r != CUDA_SUCCESS) return r;
  return Issue(stream, SetWork{reinterpret_cast<void*>(dst), value, element_size, count},
               sync == Sync::kSynchronous);
}

// Values of pointer attributes for one address. `known` is false for an address simcuda
// does not own; cuPointerGetAttributes then reports zeros.
struct PointerFacts {
  bool known = false;
  bool device = false;
  uintptr_t base = 0;
  size_t size = 0;
  int ordinal = 0;
  bool managed = false;
  bool vmm = false;
  bool mapped = false;
  void* context = nullptr;  // allocation's context, or null (VMM, host memory)
};

PointerFacts Facts(CUdeviceptr ptr) {
  PointerFacts f;
  RangeInfo info;
  HostRange host;
  if (Memory().Lookup(ptr, &info)) {
    f = PointerFacts{true,         true,     info.base,       info.size,   info.device,
                     info.managed, info.vmm, info.accessible, info.context};
  } else if (Memory().LookupHost(ptr, &host)) {
    f = PointerFacts{true, false, host.base, host.size, 0, false, false, true};
  }
  return f;
}

template <typename T>
void Put(void* data, T value) {
  std::memcpy(data, &value, sizeof(T));
}

CUresult WriteAttribute(CUpointer_attribute attribute, void* data, CUdeviceptr ptr,
                        const PointerFacts& f) {
  if (data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  switch (attribute) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
      // The context it was allocated in; VMM and host memory belong to no single one.
      Put(data, !f.known    ? CUcontext{nullptr}
                : f.context ? static_cast<CUcontext>(f.context)
                            : reinterpret_cast<CUcontext>(CurrentContext()));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
      Put<unsigned>(data, !f.known ? 0u
                                   : static_cast<unsigned>(f.device ? CU_MEMORYTYPE_DEVICE
                                                                    : CU_MEMORYTYPE_HOST));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
      Put<CUdeviceptr>(data, f.known ? ptr : 0);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
      if (f.known && f.device && !f.managed) return CUDA_ERROR_INVALID_VALUE;
      Put<void*>(data, f.known ? reinterpret_cast<void*>(ptr) : nullptr);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
      Put<bool>(data, f.known);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
    case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID:
      Put<unsigned long long>(data, f.known ? f.base : 0);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
      Put<bool>(data, f.managed);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
      Put<int>(data, f.known ? f.ordinal : -2);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
      Put<bool>(data, f.known && f.device && !f.vmm && !f.managed);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
    case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
      Put<void*>(data, reinterpret_cast<void*>(f.base));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
    case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
      Put<size_t>(data, f.size);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MAPPED:
      Put<bool>(data, f.known && f.mapped);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS:
      Put<unsigned>(data, f.known ? CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE
                                  : CU_POINTER_ATTRIBUTE_ACCESS_FLAG_NONE);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
      Put<unsigned long long>(data, 0);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE:
    case CU_POINTER_ATTRIBUTE_IS_HW_DECOMPRESS_CAPABLE:
      Put<bool>(data, false);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
      Put<void*>(data, nullptr);
      return CUDA_SUCCESS;
    default:
      return CUDA_ERROR_INVALID_VALUE;
  }
}

}  // namespace

// --- allocation ----------------------------------------------------------------------

SIMCUDA_API CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  *total_bytes = Memory().capacity();
  *free_bytes = Memory().capacity() - Memory().used(ctx->device);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
  if (dptr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  return Memory().Allocate(ctx->device, ctx, bytes, /*managed=*/false, dptr);
}

SIMCUDA_API CUresult cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pitch, size_t width,
                                        size_t height, unsigned int element_bytes) {
  if (dptr == nullptr || pitch == nullptr || width == 0 || height == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (element_bytes != 4 && element_bytes != 8 && element_bytes != 16) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  size_t row = (width + 511) / 512 * 512;
  CUresult r = Memory().Allocate(ctx->device, ctx, row * height, /*managed=*/false, dptr);
  if (r == CUDA_SUCCESS) *pitch = row;
  return r;
}

SIMCUDA_API CUresult cuMemAllocManaged(CUdeviceptr* dptr, size_t bytes, unsigned int flags) {
  if (dptr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  return Memory().Allocate(ctx->device, ctx, bytes, /*managed=*/true, dptr);
}

SIMCUDA_API CUresult cuMemFree_v2(CUdeviceptr dptr) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  RangeInfo info;
  if (!Memory().Lookup(dptr, &info) || info.vmm || info.base != dptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  // Like cudaFree, freeing waits for the device: no kernel still uses the memory.
  if (CUresult r = SynchronizeContext(ctx); r != CUDA_SUCCESS) return r;
  return Memory().Free(dptr);
}

SIMCUDA_API CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytes, CUstream handle) {
  if (dptr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  Stream* stream = nullptr;
  if (CUresult r = ResolveStream(ctx, handle, false, &stream); r != CUDA_SUCCESS) return r;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    if (stream->capture_graph != nullptr) {
      stream->capture_invalidated = true;  // memory nodes are not simulated
      return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
  }
  // Memory is reserved at once; its stream-ordered lifetime starts with the stream's work.
  return Memory().Allocate(ctx->device, ctx, bytes, /*managed=*/false, dptr);
}

SIMCUDA_API CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream handle) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  RangeInfo info;
  if (!Memory().Lookup(dptr, &info) || info.vmm || info.base != dptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  Stream* stream = nullptr;
  if (CUresult r = ResolveStream(ctx, handle, false, &stream); r != CUDA_SUCCESS) return r;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    if (stream->capture_graph != nullptr) {
      stream->capture_invalidated = true;
      return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
  }
  // Freed when the stream reaches this point, not before.
  return Submit(stream, WorkKind::kHost, [dptr] { Memory().Free(dptr); });
}

SIMCUDA_API CUresult cuMemGetAddressRange_v2(CUdeviceptr* base, size_t* size, CUdeviceptr dptr) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  RangeInfo info;
  if (!Memory().Lookup(dptr, &info)) return CUDA_ERROR_NOT_FOUND;
  if (base != nullptr) *base = info.base;
  if (size != nullptr) *size = info.size;
  return CUDA_SUCCESS;
}

// --- host memory ---------------------------------------------------------------------

SIMCUDA_API CUresult cuMemHostAlloc(void** pp, size_t bytes, unsigned int flags) {
  if (pp == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  constexpr unsigned kKnown =
      CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED;
  if (flags & ~kKnown) return CUDA_ERROR_INVALID_VALUE;
  return Memory().AllocHost(bytes, flags, pp);
}

SIMCUDA_API CUresult cuMemAllocHost_v2(void** pp, size_t bytes) {
  return cuMemHostAlloc(pp, bytes, 0);
}

SIMCUDA_API CUresult cuMemFreeHost(void* p) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  return Memory().FreeHost(p);
}

SIMCUDA_API CUresult cuMemHostRegister_v2(void* p, size_t bytes, unsigned int flags) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  return Memory().RegisterHost(p, bytes, flags);
}

SIMCUDA_API CUresult cuMemHostUnregister(void* p) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  return Memory().UnregisterHost(p);
}

SIMCUDA_API CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr* dptr, void* p, unsigned int flags) {
  if (dptr == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  if (!Memory().LookupHost(Address(p), nullptr)) return CUDA_ERROR_INVALID_VALUE;
  *dptr = Address(p);  // unified addressing: the same address on both sides
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuMemHostGetFlags(unsigned int* flags, void* p) {
  if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  HostRange range;
  if (!Memory().LookupHost(Address(p), &range)) return CUDA_ERROR_INVALID_VALUE;
  *flags = range.flags;
  return CUDA_SUCCESS;
}

// --- pointer queries -----------------------------------------------------------------

SIMCUDA_API CUresult cuPointerGetAttribute(void* data, CUpointer_attribute attribute,
                                           CUdeviceptr ptr) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  PointerFacts f = Facts(ptr);
  if (!f.known) return CUDA_ERROR_INVALID_VALUE;
  return WriteAttribute(attribute, data, ptr, f);
}

SIMCUDA_API CUresult cuPointerGetAttributes(unsigned int count, CUpointer_attribute* attributes,
                                            void** data, CUdeviceptr ptr) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  if (count == 0 || attributes == nullptr || data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  PointerFacts f = Facts(ptr);
  for (unsigned i = 0; i < count; ++i) {
    CUresult r = WriteAttribute(attributes[i], data[i], ptr, f);
    // For memory CUDA does not know, every attribute reads as zero: no error.
    if (r != CUDA_SUCCESS && f.known) return r;
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

// --- virtual memory management -------------------------------------------------------

SIMCUDA_API CUresult cuMemGetAllocationGranularity(size_t* granularity,
                                                   const CUmemAllocationProp* prop,
                                                   CUmemAllocationGranularity_flags option) {
  if (granularity == nullptr || prop == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  if (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
      option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *granularity = Memory().granularity();
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuMemAddressReserve(CUdeviceptr* ptr, size_t size, size_t alignment,
                                         CUdeviceptr addr, unsigned long long flags) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return Memory().Reserve(size, alignment, addr, ptr);
}

SIMCUDA_API CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  return Memory().FreeReservation(ptr, size);
}

SIMCUDA_API CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                                 const CUmemAllocationProp* prop, unsigned long long flags) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return Memory().Create(size, prop, handle);
}

SIMCUDA_API CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  return Memory().Release(handle);
}

SIMCUDA_API CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle* handle, void* addr) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  return Memory().Retain(handle, addr);
}

SIMCUDA_API CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp* prop,
                                                            CUmemGenericAllocationHandle handle) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  return Memory().GetProperties(prop, handle);
}

SIMCUDA_API CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                              CUmemGenericAllocationHandle handle, unsigned long long flags) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return Memory().Map(ptr, size, offset, handle);
}

SIMCUDA_API CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  return Memory().Unmap(ptr, size);
}

SIMCUDA_API CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc* desc,
                                    size_t count) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  return Memory().SetAccess(ptr, size, desc, count);
}

SIMCUDA_API CUresult cuMemGetAccess(unsigned long long* flags, const CUmemLocation* location,
                                    CUdeviceptr ptr) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  return Memory().GetAccess(flags, location, ptr);
}

// --- copies and sets -----------------------------------------------------------------
// Each entry point exists in its legacy-stream form and its per-thread-stream form
// (_ptds for synchronous calls, _ptsz for asynchronous ones), as the real driver's do.

#define SIMCUDA_COPY_PAIR(NAME, PT_NAME, PARAMS, CALL_LEGACY, CALL_PT) \
  SIMCUDA_API CUresult NAME PARAMS { return CALL_LEGACY; }             \
  SIMCUDA_API CUresult PT_NAME PARAMS { return CALL_PT; }

SIMCUDA_COPY_PAIR(cuMemcpyHtoD_v2, cuMemcpyHtoD_v2_ptds,
                  (CUdeviceptr dst, const void* src, size_t n),
                  CopyHtoD(dst, src, n, nullptr, false, Sync::kSynchronous),
                  CopyHtoD(dst, src, n, nullptr, true, Sync::kSynchronous))
SIMCUDA_COPY_PAIR(cuMemcpyDtoH_v2, cuMemcpyDtoH_v2_ptds, (void* dst, CUdeviceptr src, size_t n),
                  CopyDtoH(dst, src, n, nullptr, false, Sync::kSynchronous),
                  CopyDtoH(dst, src, n, nullptr, true, Sync::kSynchronous))
SIMCUDA_COPY_PAIR(cuMemcpyDtoD_v2, cuMemcpyDtoD_v2_ptds,
                  (CUdeviceptr dst, CUdeviceptr src, size_t n),
                  CopyDtoD(dst, src, n, nullptr, false, Sync::kSynchronous),
                  CopyDtoD(dst, src, n, nullptr, true, Sync::kSynchronous))
SIMCUDA_COPY_PAIR(cuMemcpy, cuMemcpy_ptds, (CUdeviceptr dst, CUdeviceptr src, size_t n),
                  Copy(reinterpret_cast<void*>(dst), reinterpret_cast<void*>(src), n, nullptr,
                       false, Sync::kSynchronous),
                  Copy(reinterpret_cast<void*>(dst), reinterpret_cast<void*>(src), n, nullptr, true,
                       Sync::kSynchronous))
SIMCUDA_COPY_PAIR(cuMemcpyHtoDAsync_v2, cuMemcpyHtoDAsync_v2_ptsz,
                  (CUdeviceptr dst, const void* src, size_t n, CUstream s),
                  CopyHtoD(dst, src, n, s, false, Sync::kAsync),
                  CopyHtoD(dst, src, n, s, true, Sync::kAsync))
SIMCUDA_COPY_PAIR(cuMemcpyDtoHAsync_v2, cuMemcpyDtoHAsync_v2_ptsz,
                  (void* dst, CUdeviceptr src, size_t n, CUstream s),
                  CopyDtoH(dst, src, n, s, false, Sync::kAsync),
                  CopyDtoH(dst, src, n, s, true, Sync::kAsync))
SIMCUDA_COPY_PAIR(cuMemcpyDtoDAsync_v2, cuMemcpyDtoDAsync_v2_ptsz,
                  (CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s),
                  CopyDtoD(dst, src, n, s, false, Sync::kAsync),
                  CopyDtoD(dst, src, n, s, true, Sync::kAsync))
SIMCUDA_COPY_PAIR(
    cuMemcpyAsync, cuMemcpyAsync_ptsz, (CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s),
    Copy(reinterpret_cast<void*>(dst), reinterpret_cast<void*>(src), n, s, false, Sync::kAsync),
    Copy(reinterpret_cast<void*>(dst), reinterpret_cast<void*>(src), n, s, true, Sync::kAsync))

SIMCUDA_COPY_PAIR(cuMemsetD8_v2, cuMemsetD8_v2_ptds, (CUdeviceptr dst, unsigned char v, size_t n),
                  Set(dst, v, 1, n, nullptr, false, Sync::kSynchronous),
                  Set(dst, v, 1, n, nullptr, true, Sync::kSynchronous))
SIMCUDA_COPY_PAIR(cuMemsetD16_v2, cuMemsetD16_v2_ptds,
                  (CUdeviceptr dst, unsigned short v, size_t n),
                  Set(dst, v, 2, n, nullptr, false, Sync::kSynchronous),
                  Set(dst, v, 2, n, nullptr, true, Sync::kSynchronous))
SIMCUDA_COPY_PAIR(cuMemsetD32_v2, cuMemsetD32_v2_ptds, (CUdeviceptr dst, unsigned int v, size_t n),
                  Set(dst, v, 4, n, nullptr, false, Sync::kSynchronous),
                  Set(dst, v, 4, n, nullptr, true, Sync::kSynchronous))
SIMCUDA_COPY_PAIR(cuMemsetD8Async, cuMemsetD8Async_ptsz,
                  (CUdeviceptr dst, unsigned char v, size_t n, CUstream s),
                  Set(dst, v, 1, n, s, false, Sync::kAsync),
                  Set(dst, v, 1, n, s, true, Sync::kAsync))
SIMCUDA_COPY_PAIR(cuMemsetD16Async, cuMemsetD16Async_ptsz,
                  (CUdeviceptr dst, unsigned short v, size_t n, CUstream s),
                  Set(dst, v, 2, n, s, false, Sync::kAsync),
                  Set(dst, v, 2, n, s, true, Sync::kAsync))
SIMCUDA_COPY_PAIR(cuMemsetD32Async, cuMemsetD32Async_ptsz,
                  (CUdeviceptr dst, unsigned int v, size_t n, CUstream s),
                  Set(dst, v, 4, n, s, false, Sync::kAsync),
                  Set(dst, v, 4, n, s, true, Sync::kAsync))

// --- unified memory hints --------------------------------------------------------------
// Managed memory lives in host-addressable memory that the simulated device reads in place,
// so a prefetch has nothing to move: it validates its arguments and takes its place in the
// stream (work after it still waits for work before it), as the driver's does.

namespace {

CUresult CheckManagedRange(CUdeviceptr ptr, size_t count) {
  RangeInfo info;
  if (count == 0 || !Memory().Lookup(ptr, &info) || !info.managed ||
      ptr + count > info.base + info.size) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}

CUresult CheckLocation(const CUmemLocation& location) {
  switch (location.type) {
    case CU_MEM_LOCATION_TYPE_DEVICE:
      return location.id >= 0 && location.id < Driver::Get().config().device_count
                 ? CUDA_SUCCESS
                 : CUDA_ERROR_INVALID_DEVICE;
    case CU_MEM_LOCATION_TYPE_HOST:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT:
      return CUDA_SUCCESS;
    default:
      return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult PrefetchManaged(CUdeviceptr ptr, size_t count, CUmemLocation location, unsigned flags,
                         CUstream handle, bool per_thread) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckLocation(location); r != CUDA_SUCCESS) return r;
  if (CUresult r = CheckManagedRange(ptr, count); r != CUDA_SUCCESS) return r;
  Stream* stream = nullptr;
  if (CUresult r = ResolveStream(ctx, handle, per_thread, &stream); r != CUDA_SUCCESS) return r;
  return Submit(stream, WorkKind::kMarker, [] {});
}

}  // namespace

SIMCUDA_API CUresult cuMemPrefetchAsync_v2(CUdeviceptr ptr, size_t count, CUmemLocation location,
                                           unsigned int flags, CUstream stream) {
  return PrefetchManaged(ptr, count, location, flags, stream, false);
}
SIMCUDA_API CUresult cuMemPrefetchAsync_v2_ptsz(CUdeviceptr ptr, size_t count,
                                                CUmemLocation location, unsigned int flags,
                                                CUstream stream) {
  return PrefetchManaged(ptr, count, location, flags, stream, true);
}

SIMCUDA_API CUresult cuMemAdvise_v2(CUdeviceptr ptr, size_t count, CUmem_advise advice,
                                    CUmemLocation location) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  if (advice < CU_MEM_ADVISE_SET_READ_MOSTLY || advice > CU_MEM_ADVISE_UNSET_ACCESSED_BY) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  bool needs_location = advice != CU_MEM_ADVISE_SET_READ_MOSTLY &&
                        advice != CU_MEM_ADVISE_UNSET_READ_MOSTLY &&
                        advice != CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION;
  if (needs_location) {
    if (CUresult r = CheckLocation(location); r != CUDA_SUCCESS) return r;
  }
  return CheckManagedRange(ptr, count);
}
