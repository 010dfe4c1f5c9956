// SPDX-License-Identifier: Apache-2.0
//
// Hooks of allocation, memory queries, copies and sets.
//
// Managed: cuMemAlloc_v2, cuMemAllocPitch_v2 and cuMemAllocAsync (outside capture) of at
// least SPILLWAY_MIN_BYTES become Manager allocations, guarded (every access is seen here or
// in launch_hooks.cc) until their pointer escapes. Frees of managed pointers go to the
// manager; everything else reaches the driver untouched.
//
// Copies and sets: a managed range they touch is brought into mapped memory first
// (Manager::PrepareLaunch on its start address: whole allocations come in), a managed
// destination loses the clean copies fetches kept of it (Manager::NoteWrite), and data
// copied from the host to the device is scanned for managed pointers, which escape.
#include <cuda.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>

#include "interpose/hook_table.h"
#include "interpose/interposer.h"
#include "runtime/log.h"
#include "runtime/runtime.h"

using spillway::Manager;
using spillway::Runtime;
namespace ipc = spillway::interpose;

namespace {

// A managed allocation for the current device, or null to let the driver allocate.
// `*result` holds the error to report when the manager refused for lack of memory.
bool TryManagedAlloc(CUdeviceptr* dptr, size_t bytes, CUstream stream, CUresult* result) {
  if (dptr == nullptr || bytes == 0 || !ipc::Start()) return false;
  if (bytes < Runtime::Get().options().min_bytes) return false;
  int device = ipc::CurrentDevice();
  if (device < 0) return false;  // no context: the driver reports it
  Manager* manager = ipc::ManagerForDevice(device);
  if (manager == nullptr) return false;
  absl::StatusOr<CUdeviceptr> base = manager->Allocate(bytes, stream, spillway::kAdviceGuarded);
  if (!base.ok()) {
    SPW_LOG(kInfo, "allocation of {} bytes refused: {}", bytes,
            std::string(base.status().message()));
    *result = ipc::ToCuResult(base.status());
    return true;
  }
  CUcontext context = nullptr;
  if (auto get = SPW_REAL(cuCtxGetCurrent); get != nullptr) get(&context);
  ipc::RememberContext(*base, context);
  *dptr = *base;
  *result = CUDA_SUCCESS;
  return true;
}

// Frees a managed allocation; false if `dptr` is not managed.
bool TryManagedFree(CUdeviceptr dptr, CUstream stream, CUresult* result) {
  Manager* manager = ipc::OwnerOf(dptr);
  if (manager == nullptr) return false;
  std::optional<Manager::Range> range = manager->Find(dptr);
  if (!range || range->base != dptr) {
    *result = CUDA_ERROR_INVALID_VALUE;  // inside an allocation, not its start
    return true;
  }
  ipc::ForgetContext(dptr);
  *result = ipc::ToCuResult(manager->Free(dptr, stream));
  return true;
}

// Makes the managed allocations holding `written` (device memory the call writes, the
// `written_bytes` from there) and `read` (device memory it reads) usable by a copy or set on
// `stream` (`per_thread`: the call is a _ptsz/_ptds variant); 0 for either means none. A
// write also drops the clean copies fetches kept of the chunks it writes
// (Manager::NoteWrite): they would be stale at their next eviction. The allocations stay
// pinned until the real call is queued.
CUresult PrepareAccess(CUdeviceptr written, size_t written_bytes, CUdeviceptr read, CUstream stream,
                       bool per_thread) {
  if (!ipc::AnyManaged()) return CUDA_SUCCESS;
  static_assert(sizeof(CUdeviceptr) == sizeof(uintptr_t));
  uintptr_t words[2];
  size_t n = 0;
  for (CUdeviceptr a : {written, read}) {
    if (a != 0) words[n++] = a;
  }
  if (CUresult r = ipc::PrepareUse(std::span<const uintptr_t>(words, n), stream, per_thread);
      r != CUDA_SUCCESS) {
    return r;
  }
  if (written == 0) return CUDA_SUCCESS;
  Manager* owner = ipc::OwnerOf(written);
  // Not managed (or freed meanwhile, which the driver reports): nothing kept to drop.
  if (owner != nullptr) owner->NoteWrite(written, written_bytes).IgnoreError();
  return CUDA_SUCCESS;
}

// Whether unified-addressing `ptr` is host memory (pageable or page-locked).
bool IsHostPointer(CUdeviceptr ptr) {
  if (ipc::OwnerOf(ptr) != nullptr) return false;
  auto get = SPW_REAL(cuPointerGetAttribute);
  unsigned type = 0;
  if (get == nullptr || get(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, ptr) != CUDA_SUCCESS) {
    return true;  // memory CUDA does not know: pageable host memory
  }
  return type == CU_MEMORYTYPE_HOST || type == 0;
}

CUresult HtoD(CUdeviceptr dst, const void* src, size_t bytes, CUstream stream, bool per_thread) {
  if (!ipc::AnyManaged()) return CUDA_SUCCESS;
  if (CUresult r = PrepareAccess(dst, bytes, 0, stream, per_thread); r != CUDA_SUCCESS) return r;
  return ipc::NoteEscapes(src, bytes, ipc::EffectiveStream(stream, per_thread));
}

CUresult Unified(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream, bool per_thread) {
  if (!ipc::AnyManaged()) return CUDA_SUCCESS;
  if (CUresult r = PrepareAccess(dst, bytes, src, stream, per_thread); r != CUDA_SUCCESS) return r;
  if (!IsHostPointer(src)) return CUDA_SUCCESS;
  return ipc::NoteEscapes(reinterpret_cast<const void*>(src), bytes,
                          ipc::EffectiveStream(stream, per_thread));
}

}  // namespace

// --- allocation ------------------------------------------------------------------------

SPW_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
  CUresult result;
  if (TryManagedAlloc(dptr, bytes, nullptr, &result)) return result;
  SPW_CALL_REAL(cuMemAlloc_v2, dptr, bytes);
}

SPW_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pitch, size_t width,
                                       size_t height, unsigned int element_bytes) {
  // The driver's rules for the arguments and the pitch (rows aligned to 512 bytes here,
  // the texture alignment of current GPUs); invalid requests go to the driver.
  constexpr size_t kPitchAlign = 512;
  if (dptr != nullptr && pitch != nullptr && width > 0 && height > 0 &&
      (element_bytes == 4 || element_bytes == 8 || element_bytes == 16) &&
      width <= SIZE_MAX - kPitchAlign) {
    size_t row = (width + kPitchAlign - 1) / kPitchAlign * kPitchAlign;
    if (height <= SIZE_MAX / row) {
      CUresult result;
      if (TryManagedAlloc(dptr, row * height, nullptr, &result)) {
        if (result == CUDA_SUCCESS) *pitch = row;
        return result;
      }
    }
  }
  SPW_CALL_REAL(cuMemAllocPitch_v2, dptr, pitch, width, height, element_bytes);
}

SPW_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
  CUresult result;
  if (TryManagedFree(dptr, nullptr, &result)) return result;
  SPW_CALL_REAL(cuMemFree_v2, dptr);
}

namespace {

CUresult AllocAsync(CUdeviceptr* dptr, size_t bytes, CUstream stream, bool per_thread) {
  // Allocations recorded into a graph are the graph's: they stay the driver's.
  if (!ipc::IsCapturing(stream, per_thread)) {
    CUresult result;
    if (TryManagedAlloc(dptr, bytes, ipc::EffectiveStream(stream, per_thread), &result)) {
      return result;
    }
  }
  if (per_thread) SPW_CALL_REAL(cuMemAllocAsync_ptsz, dptr, bytes, stream);
  SPW_CALL_REAL(cuMemAllocAsync, dptr, bytes, stream);
}

CUresult FreeAsync(CUdeviceptr dptr, CUstream stream, bool per_thread) {
  if (ipc::OwnerOf(dptr) != nullptr) {
    // The manager's free is not a graph node: refuse it as capture refuses unsupported work.
    if (ipc::IsCapturing(stream, per_thread)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    CUresult result;
    if (TryManagedFree(dptr, ipc::EffectiveStream(stream, per_thread), &result)) return result;
  }
  if (per_thread) SPW_CALL_REAL(cuMemFreeAsync_ptsz, dptr, stream);
  SPW_CALL_REAL(cuMemFreeAsync, dptr, stream);
}

}  // namespace

SPW_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  return AllocAsync(dptr, bytes, stream, false);
}
SPW_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  return AllocAsync(dptr, bytes, stream, true);
}
SPW_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream stream) {
  return FreeAsync(dptr, stream, false);
}
SPW_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream stream) {
  return FreeAsync(dptr, stream, true);
}

// --- memory queries --------------------------------------------------------------------

namespace {

uint64_t HostTierBytes() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGESIZE);
  uint64_t host = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
  return Runtime::Get().options().host_limit.Resolve(host);
}

bool VirtualCapacity() { return ipc::Start() && Runtime::Get().options().virtual_capacity; }

}  // namespace

SPW_EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  auto real = SPW_REAL(cuMemGetInfo_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  CUresult r = real(free_bytes, total_bytes);
  if (r != CUDA_SUCCESS || !VirtualCapacity()) return r;
  Manager* manager = ipc::ManagerForDevice(ipc::CurrentDevice());
  if (manager == nullptr) return r;
  spillway::ManagerStats stats = manager->Stats();
  uint64_t total = manager->hbm_limit_bytes() + HostTierBytes();
  uint64_t used = stats.device_bytes + stats.host_bytes;
  if (total_bytes != nullptr) *total_bytes = total;
  if (free_bytes != nullptr) *free_bytes = used < total ? total - used : 0;
  return r;
}

SPW_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
  auto real = SPW_REAL(cuDeviceTotalMem_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  CUresult r = real(bytes, device);
  if (r != CUDA_SUCCESS || !VirtualCapacity()) return r;
  if (Manager* manager = ipc::ManagerForDevice(device); manager != nullptr) {
    *bytes = manager->hbm_limit_bytes() + HostTierBytes();
  }
  return r;
}

SPW_EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr* base, size_t* size, CUdeviceptr dptr) {
  if (Manager* manager = ipc::OwnerOf(dptr); manager != nullptr) {
    if (std::optional<Manager::Range> range = manager->Find(dptr); range) {
      if (dptr >= range->base + range->size) return CUDA_ERROR_NOT_FOUND;  // chunk padding
      if (base != nullptr) *base = range->base;
      if (size != nullptr) *size = range->size;
      return CUDA_SUCCESS;
    }
  }
  SPW_CALL_REAL(cuMemGetAddressRange_v2, base, size, dptr);
}

namespace {

template <typename T>
void Put(void* data, T value) {
  std::memcpy(data, &value, sizeof(T));
}

// The attribute of a managed pointer, answered as for one cuMemAlloc allocation; false
// for attributes the driver answers (from the VMM range behind it).
bool ManagedAttribute(CUpointer_attribute attribute, void* data, CUdeviceptr ptr,
                      const Manager::Range& range, int device, CUresult* result) {
  *result = CUDA_SUCCESS;
  if (data == nullptr) {
    *result = CUDA_ERROR_INVALID_VALUE;
    return true;
  }
  switch (attribute) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
      Put<CUcontext>(data, ipc::ContextOf(range.base));
      return true;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
      Put<unsigned>(data, CU_MEMORYTYPE_DEVICE);
      return true;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
      Put<CUdeviceptr>(data, ptr);
      return true;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
      *result = CUDA_ERROR_INVALID_VALUE;  // device memory has no host address
      return true;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
      Put<bool>(data, false);
      return true;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
      Put<int>(data, device);
      return true;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
      Put<void*>(data, reinterpret_cast<void*>(range.base));
      return true;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
      Put<size_t>(data, range.size);
      return true;
    case CU_POINTER_ATTRIBUTE_MAPPED:
      Put<bool>(data, true);  // always, as far as the application can tell
      return true;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
    case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID:
      Put<unsigned long long>(data, range.base);
      return true;
    default:
      return false;
  }
}

// The managed allocation holding `ptr` and its device, if any.
bool FindManaged(CUdeviceptr ptr, Manager::Range* range, int* device) {
  Manager* manager = ipc::OwnerOf(ptr, device);
  if (manager == nullptr) return false;
  std::optional<Manager::Range> r = manager->Find(ptr);
  if (!r || ptr >= r->base + r->size) return false;  // the padding is nobody's memory
  *range = *r;
  return true;
}

}  // namespace

SPW_EXPORT CUresult cuPointerGetAttribute(void* data, CUpointer_attribute attribute,
                                          CUdeviceptr ptr) {
  Manager::Range range;
  int device = 0;
  CUresult result;
  if (FindManaged(ptr, &range, &device) &&
      ManagedAttribute(attribute, data, ptr, range, device, &result)) {
    return result;
  }
  SPW_CALL_REAL(cuPointerGetAttribute, data, attribute, ptr);
}

SPW_EXPORT CUresult cuPointerGetAttributes(unsigned int count, CUpointer_attribute* attributes,
                                           void** data, CUdeviceptr ptr) {
  Manager::Range range;
  int device = 0;
  auto real = SPW_REAL(cuPointerGetAttributes);
  if (real == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  if (count == 0 || attributes == nullptr || data == nullptr ||
      !FindManaged(ptr, &range, &device)) {
    return real(count, attributes, data, ptr);
  }
  for (unsigned i = 0; i < count; ++i) {
    CUresult result;
    if (!ManagedAttribute(attributes[i], data[i], ptr, range, device, &result)) {
      result = real(1, &attributes[i], &data[i], ptr);
    }
    if (result != CUDA_SUCCESS) return result;
  }
  return CUDA_SUCCESS;
}

// --- copies ----------------------------------------------------------------------------

SPW_EXPORT CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  SPW_CHECKED(Unified(dst, src, bytes, nullptr, false));
  SPW_CALL_REAL(cuMemcpy, dst, src, bytes);
}
SPW_EXPORT CUresult cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  SPW_CHECKED(Unified(dst, src, bytes, nullptr, true));
  SPW_CALL_REAL(cuMemcpy_ptds, dst, src, bytes);
}
SPW_EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s) {
  SPW_CHECKED(Unified(dst, src, bytes, s, false));
  SPW_CALL_REAL(cuMemcpyAsync, dst, src, bytes, s);
}
SPW_EXPORT CUresult cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s) {
  SPW_CHECKED(Unified(dst, src, bytes, s, true));
  SPW_CALL_REAL(cuMemcpyAsync_ptsz, dst, src, bytes, s);
}

SPW_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
  SPW_CHECKED(HtoD(dst, src, bytes, nullptr, false));
  SPW_CALL_REAL(cuMemcpyHtoD_v2, dst, src, bytes);
}
SPW_EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void* src, size_t bytes) {
  SPW_CHECKED(HtoD(dst, src, bytes, nullptr, true));
  SPW_CALL_REAL(cuMemcpyHtoD_v2_ptds, dst, src, bytes);
}
SPW_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes,
                                         CUstream s) {
  SPW_CHECKED(HtoD(dst, src, bytes, s, false));
  SPW_CALL_REAL(cuMemcpyHtoDAsync_v2, dst, src, bytes, s);
}
SPW_EXPORT CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dst, const void* src, size_t bytes,
                                              CUstream s) {
  SPW_CHECKED(HtoD(dst, src, bytes, s, true));
  SPW_CALL_REAL(cuMemcpyHtoDAsync_v2_ptsz, dst, src, bytes, s);
}

SPW_EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
  SPW_CHECKED(PrepareAccess(0, 0, src, nullptr, false));
  SPW_CALL_REAL(cuMemcpyDtoH_v2, dst, src, bytes);
}
SPW_EXPORT CUresult cuMemcpyDtoH_v2_ptds(void* dst, CUdeviceptr src, size_t bytes) {
  SPW_CHECKED(PrepareAccess(0, 0, src, nullptr, true));
  SPW_CALL_REAL(cuMemcpyDtoH_v2_ptds, dst, src, bytes);
}
SPW_EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, CUstream s) {
  SPW_CHECKED(PrepareAccess(0, 0, src, s, false));
  SPW_CALL_REAL(cuMemcpyDtoHAsync_v2, dst, src, bytes, s);
}
SPW_EXPORT CUresult cuMemcpyDtoHAsync_v2_ptsz(void* dst, CUdeviceptr src, size_t bytes,
                                              CUstream s) {
  SPW_CHECKED(PrepareAccess(0, 0, src, s, true));
  SPW_CALL_REAL(cuMemcpyDtoHAsync_v2_ptsz, dst, src, bytes, s);
}

SPW_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  SPW_CHECKED(PrepareAccess(dst, bytes, src, nullptr, false));
  SPW_CALL_REAL(cuMemcpyDtoD_v2, dst, src, bytes);
}
SPW_EXPORT CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  SPW_CHECKED(PrepareAccess(dst, bytes, src, nullptr, true));
  SPW_CALL_REAL(cuMemcpyDtoD_v2_ptds, dst, src, bytes);
}
SPW_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                                         CUstream s) {
  SPW_CHECKED(PrepareAccess(dst, bytes, src, s, false));
  SPW_CALL_REAL(cuMemcpyDtoDAsync_v2, dst, src, bytes, s);
}
SPW_EXPORT CUresult cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                                              CUstream s) {
  SPW_CHECKED(PrepareAccess(dst, bytes, src, s, true));
  SPW_CALL_REAL(cuMemcpyDtoDAsync_v2_ptsz, dst, src, bytes, s);
}

// --- sets ------------------------------------------------------------------------------

#define SPW_SET_HOOKS(bits, value_type)                                                        \
  SPW_EXPORT CUresult cuMemsetD##bits##_v2(CUdeviceptr dst, value_type value, size_t n) {      \
    SPW_CHECKED(PrepareAccess(dst, n * sizeof(value_type), 0, nullptr, false));                \
    SPW_CALL_REAL(cuMemsetD##bits##_v2, dst, value, n);                                        \
  }                                                                                            \
  SPW_EXPORT CUresult cuMemsetD##bits##_v2_ptds(CUdeviceptr dst, value_type value, size_t n) { \
    SPW_CHECKED(PrepareAccess(dst, n * sizeof(value_type), 0, nullptr, true));                 \
    SPW_CALL_REAL(cuMemsetD##bits##_v2_ptds, dst, value, n);                                   \
  }                                                                                            \
  SPW_EXPORT CUresult cuMemsetD##bits##Async(CUdeviceptr dst, value_type value, size_t n,      \
                                             CUstream s) {                                     \
    SPW_CHECKED(PrepareAccess(dst, n * sizeof(value_type), 0, s, false));                      \
    SPW_CALL_REAL(cuMemsetD##bits##Async, dst, value, n, s);                                   \
  }                                                                                            \
  SPW_EXPORT CUresult cuMemsetD##bits##Async_ptsz(CUdeviceptr dst, value_type value, size_t n, \
                                                  CUstream s) {                                \
    SPW_CHECKED(PrepareAccess(dst, n * sizeof(value_type), 0, s, true));                       \
    SPW_CALL_REAL(cuMemsetD##bits##Async_ptsz, dst, value, n, s);                              \
  }

SPW_SET_HOOKS(8, unsigned char)
SPW_SET_HOOKS(16, unsigned short)
SPW_SET_HOOKS(32, unsigned int)

// --- 2D and 3D copies, peer copies, 2D sets ----------------------------------------------
//
// simcuda does not implement these (a program using them fails there with the driver's own
// error); the hooks make the same residency and escape checks as the 1D ones.

namespace {

// One side of a 2D/3D copy: its device address (0: not device memory) or its host address,
// and the span of bytes it covers.
struct CopySide {
  CUdeviceptr device = 0;
  const void* host = nullptr;
  size_t bytes = 0;
};

CopySide Side(CUmemorytype type, const void* host, CUdeviceptr device, size_t offset, size_t span) {
  CopySide side;
  if (type == CU_MEMORYTYPE_HOST ||
      (type == CU_MEMORYTYPE_UNIFIED && device != 0 && IsHostPointer(device))) {
    const void* start = type == CU_MEMORYTYPE_HOST ? host : reinterpret_cast<const void*>(device);
    if (start != nullptr) {
      side.host = static_cast<const unsigned char*>(start) + offset;
      side.bytes = span;
    }
  } else if (type == CU_MEMORYTYPE_DEVICE || type == CU_MEMORYTYPE_UNIFIED) {
    side.device = device + offset;
    side.bytes = span;
  }
  return side;
}

CUresult PrepareCopy(const CopySide& src, const CopySide& dst, CUstream stream, bool per_thread) {
  if (!ipc::AnyManaged()) return CUDA_SUCCESS;
  if (CUresult r = PrepareAccess(dst.device, dst.bytes, src.device, stream, per_thread);
      r != CUDA_SUCCESS) {
    return r;
  }
  if (src.host == nullptr || dst.device == 0) return CUDA_SUCCESS;
  return ipc::NoteEscapes(src.host, src.bytes, ipc::EffectiveStream(stream, per_thread));
}

CUresult Prepare2D(const CUDA_MEMCPY2D* c, CUstream stream, bool per_thread) {
  if (c == nullptr || !ipc::AnyManaged() || c->Height == 0) return CUDA_SUCCESS;
  auto span = [&](size_t pitch) { return (c->Height - 1) * pitch + c->WidthInBytes; };
  CopySide src = Side(c->srcMemoryType, c->srcHost, c->srcDevice,
                      c->srcY * c->srcPitch + c->srcXInBytes, span(c->srcPitch));
  CopySide dst = Side(c->dstMemoryType, c->dstHost, c->dstDevice,
                      c->dstY * c->dstPitch + c->dstXInBytes, span(c->dstPitch));
  return PrepareCopy(src, dst, stream, per_thread);
}

CUresult Prepare3D(const CUDA_MEMCPY3D* c, CUstream stream, bool per_thread) {
  if (c == nullptr || !ipc::AnyManaged() || c->Height == 0 || c->Depth == 0) return CUDA_SUCCESS;
  auto span = [&](size_t pitch, size_t height) {
    return ((c->Depth - 1) * height + (c->Height - 1)) * pitch + c->WidthInBytes;
  };
  CopySide src = Side(c->srcMemoryType, c->srcHost, c->srcDevice,
                      (c->srcZ * c->srcHeight + c->srcY) * c->srcPitch + c->srcXInBytes,
                      span(c->srcPitch, c->srcHeight));
  CopySide dst = Side(c->dstMemoryType, c->dstHost, c->dstDevice,
                      (c->dstZ * c->dstHeight + c->dstY) * c->dstPitch + c->dstXInBytes,
                      span(c->dstPitch, c->dstHeight));
  return PrepareCopy(src, dst, stream, per_thread);
}

}  // namespace

SPW_EXPORT CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D* c) {
  SPW_CHECKED(Prepare2D(c, nullptr, false));
  SPW_CALL_REAL(cuMemcpy2D_v2, c);
}
SPW_EXPORT CUresult cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D* c) {
  SPW_CHECKED(Prepare2D(c, nullptr, true));
  SPW_CALL_REAL(cuMemcpy2D_v2_ptds, c);
}
SPW_EXPORT CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* c) {
  SPW_CHECKED(Prepare2D(c, nullptr, false));
  SPW_CALL_REAL(cuMemcpy2DUnaligned_v2, c);
}
SPW_EXPORT CUresult cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D* c) {
  SPW_CHECKED(Prepare2D(c, nullptr, true));
  SPW_CALL_REAL(cuMemcpy2DUnaligned_v2_ptds, c);
}
SPW_EXPORT CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* c, CUstream s) {
  SPW_CHECKED(Prepare2D(c, s, false));
  SPW_CALL_REAL(cuMemcpy2DAsync_v2, c, s);
}
SPW_EXPORT CUresult cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D* c, CUstream s) {
  SPW_CHECKED(Prepare2D(c, s, true));
  SPW_CALL_REAL(cuMemcpy2DAsync_v2_ptsz, c, s);
}
SPW_EXPORT CUresult cuMemcpy3D_v2(const CUDA_MEMCPY3D* c) {
  SPW_CHECKED(Prepare3D(c, nullptr, false));
  SPW_CALL_REAL(cuMemcpy3D_v2, c);
}
SPW_EXPORT CUresult cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D* c) {
  SPW_CHECKED(Prepare3D(c, nullptr, true));
  SPW_CALL_REAL(cuMemcpy3D_v2_ptds, c);
}
SPW_EXPORT CUresult cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D* c, CUstream s) {
  SPW_CHECKED(Prepare3D(c, s, false));
  SPW_CALL_REAL(cuMemcpy3DAsync_v2, c, s);
}
SPW_EXPORT CUresult cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D* c, CUstream s) {
  SPW_CHECKED(Prepare3D(c, s, true));
  SPW_CALL_REAL(cuMemcpy3DAsync_v2_ptsz, c, s);
}

SPW_EXPORT CUresult cuMemcpyPeer(CUdeviceptr dst, CUcontext dst_ctx, CUdeviceptr src,
                                 CUcontext src_ctx, size_t bytes) {
  SPW_CHECKED(PrepareAccess(dst, bytes, src, nullptr, false));
  SPW_CALL_REAL(cuMemcpyPeer, dst, dst_ctx, src, src_ctx, bytes);
}
SPW_EXPORT CUresult cuMemcpyPeer_ptds(CUdeviceptr dst, CUcontext dst_ctx, CUdeviceptr src,
                                      CUcontext src_ctx, size_t bytes) {
  SPW_CHECKED(PrepareAccess(dst, bytes, src, nullptr, true));
  SPW_CALL_REAL(cuMemcpyPeer_ptds, dst, dst_ctx, src, src_ctx, bytes);
}
SPW_EXPORT CUresult cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dst_ctx, CUdeviceptr src,
                                      CUcontext src_ctx, size_t bytes, CUstream s) {
  SPW_CHECKED(PrepareAccess(dst, bytes, src, s, false));
  SPW_CALL_REAL(cuMemcpyPeerAsync, dst, dst_ctx, src, src_ctx, bytes, s);
}
SPW_EXPORT CUresult cuMemcpyPeerAsync_ptsz(CUdeviceptr dst, CUcontext dst_ctx, CUdeviceptr src,
                                           CUcontext src_ctx, size_t bytes, CUstream s) {
  SPW_CHECKED(PrepareAccess(dst, bytes, src, s, true));
  SPW_CALL_REAL(cuMemcpyPeerAsync_ptsz, dst, dst_ctx, src, src_ctx, bytes, s);
}

namespace {
// The bytes a 2D set of `height` rows of `row_bytes`, `pitch` apart, spans.
size_t Set2DSpan(size_t pitch, size_t row_bytes, size_t height) {
  return height == 0 ? 0 : (height - 1) * pitch + row_bytes;
}
}  // namespace

#define SPW_SET2D_HOOKS(bits, value_type)                                                          \
  SPW_EXPORT CUresult cuMemsetD2D##bits##_v2(CUdeviceptr dst, size_t pitch, value_type value,      \
                                             size_t width, size_t height) {                        \
    SPW_CHECKED(PrepareAccess(dst, Set2DSpan(pitch, width * sizeof(value_type), height), 0,        \
                              nullptr, false));                                                    \
    SPW_CALL_REAL(cuMemsetD2D##bits##_v2, dst, pitch, value, width, height);                       \
  }                                                                                                \
  SPW_EXPORT CUresult cuMemsetD2D##bits##_v2_ptds(CUdeviceptr dst, size_t pitch, value_type value, \
                                                  size_t width, size_t height) {                   \
    SPW_CHECKED(PrepareAccess(dst, Set2DSpan(pitch, width * sizeof(value_type), height), 0,        \
                              nullptr, true));                                                     \
    SPW_CALL_REAL(cuMemsetD2D##bits##_v2_ptds, dst, pitch, value, width, height);                  \
  }                                                                                                \
  SPW_EXPORT CUresult cuMemsetD2D##bits##Async(CUdeviceptr dst, size_t pitch, value_type value,    \
                                               size_t width, size_t height, CUstream s) {          \
    SPW_CHECKED(                                                                                   \
        PrepareAccess(dst, Set2DSpan(pitch, width * sizeof(value_type), height), 0, s, false));    \
    SPW_CALL_REAL(cuMemsetD2D##bits##Async, dst, pitch, value, width, height, s);                  \
  }                                                                                                \
  SPW_EXPORT CUresult cuMemsetD2D##bits##Async_ptsz(                                               \
      CUdeviceptr dst, size_t pitch, value_type value, size_t width, size_t height, CUstream s) {  \
    SPW_CHECKED(                                                                                   \
        PrepareAccess(dst, Set2DSpan(pitch, width * sizeof(value_type), height), 0, s, true));     \
    SPW_CALL_REAL(cuMemsetD2D##bits##Async_ptsz, dst, pitch, value, width, height, s);             \
  }

SPW_SET2D_HOOKS(8, unsigned char)
SPW_SET2D_HOOKS(16, unsigned short)
SPW_SET2D_HOOKS(32, unsigned int)
