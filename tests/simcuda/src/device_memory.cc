// SPDX-License-Identifier: Apache-2.0
#include "device_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace simcuda {
namespace {

constexpr size_t kPage = 4096;
// Device VA window for all devices: large enough for reservations many times the
// capacity (a tiering runtime reserves more VA than the device has memory).
constexpr size_t kWindowBytes = size_t{1} << 40;
// The physical memfd is sparse; offsets are never reused (released ranges are punched
// out), so this only bounds the total ever allocated in one process.
constexpr size_t kPhysicalBytes = size_t{1} << 46;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

int ProtFromAccess(CUmemAccess_flags flags) {
  switch (flags) {
    case CU_MEM_ACCESS_FLAGS_PROT_READ:
      return PROT_READ;
    case CU_MEM_ACCESS_FLAGS_PROT_READWRITE:
      return PROT_READ | PROT_WRITE;
    default:
      return PROT_NONE;
  }
}

}  // namespace

DeviceMemory& DeviceMemory::Get() {
  static DeviceMemory* memory = new DeviceMemory();  // never destroyed
  return *memory;
}

CUresult DeviceMemory::Init(const Config& config) {
  std::lock_guard<std::mutex> lock(mu_);
  capacity_ = config.device_memory;
  granularity_ = config.granularity;
  used_.assign(config.device_count, 0);
  void* window =
      mmap(nullptr, kWindowBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (window == MAP_FAILED) {
    std::fprintf(stderr, "simcuda: cannot reserve the device address window: %s\n",
                 std::strerror(errno));
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  // Start device addresses at a 2 MiB-aligned boundary above the window base.
  uintptr_t base = RoundUp(reinterpret_cast<uintptr_t>(window), size_t{1} << 21);
  window_ = base;
  window_size_ = kWindowBytes - (base - reinterpret_cast<uintptr_t>(window));
  free_va_[window_] = window_size_;
  physical_fd_ = memfd_create("simcuda-physical-memory", MFD_CLOEXEC);
  if (physical_fd_ < 0 || ftruncate(physical_fd_, kPhysicalBytes) != 0) {
    std::fprintf(stderr, "simcuda: cannot create the physical memory file: %s\n",
                 std::strerror(errno));
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  return CUDA_SUCCESS;
}

bool DeviceMemory::InWindow(uintptr_t address, size_t bytes) const {
  return address >= window_ && bytes <= window_size_ && address - window_ <= window_size_ - bytes;
}

size_t DeviceMemory::used(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return device >= 0 && device < static_cast<int>(used_.size()) ? used_[device] : 0;
}

CUresult DeviceMemory::CarveVa(size_t size, size_t alignment, uintptr_t hint, uintptr_t* out) {
  if (alignment == 0) alignment = kPage;
  auto take = [&](std::map<uintptr_t, size_t>::iterator it, uintptr_t start) {
    uintptr_t block = it->first;
    size_t block_size = it->second;
    free_va_.erase(it);
    if (start > block) free_va_[block] = start - block;
    uintptr_t end = start + size;
    if (end < block + block_size) free_va_[end] = block + block_size - end;
    *out = start;
    return CUDA_SUCCESS;
  };
  if (hint != 0 && hint % alignment == 0) {
    auto it = free_va_.upper_bound(hint);
    if (it != free_va_.begin()) {
      --it;
      if (hint >= it->first && hint + size <= it->first + it->second) return take(it, hint);
    }
  }
  for (auto it = free_va_.begin(); it != free_va_.end(); ++it) {
    uintptr_t start = RoundUp(it->first, alignment);
    if (start + size <= it->first + it->second) return take(it, start);
  }
  return CUDA_ERROR_OUT_OF_MEMORY;
}

void DeviceMemory::ReturnVa(uintptr_t address, size_t size) {
  auto next = free_va_.lower_bound(address);
  if (next != free_va_.end() && address + size == next->first) {
    size += next->second;
    next = free_va_.erase(next);
  }
  if (next != free_va_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == address) {
      prev->second += size;
      return;
    }
  }
  free_va_[address] = size;
}

PhysicalHandle* DeviceMemory::NewPhysical(size_t size, bool on_device, int device) {
  if (on_device && used_[device] + size > capacity_) return nullptr;
  auto* handle = new PhysicalHandle();
  handle->offset = physical_next_;
  handle->size = size;
  handle->on_device = on_device;
  handle->device = device;
  physical_next_ += RoundUp(size, kPage);
  if (on_device) used_[device] += size;
  handles_[handle] = true;
  return handle;
}

void DeviceMemory::MaybeFreePhysical(PhysicalHandle* handle) {
  if (handle->references > 0 || handle->mappings > 0) return;
  // Give the pages back to the host: the memfd stays sparse.
  fallocate(physical_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            static_cast<off_t>(handle->offset), static_cast<off_t>(RoundUp(handle->size, kPage)));
  if (handle->on_device) used_[handle->device] -= handle->size;
  handles_.erase(handle);
  delete handle;
}

PhysicalHandle* DeviceMemory::FindHandle(CUmemGenericAllocationHandle handle) {
  auto* p = reinterpret_cast<PhysicalHandle*>(handle);
  return handles_.count(p) ? p : nullptr;
}

bool DeviceMemory::MapPhysical(uintptr_t address, size_t size, PhysicalHandle* handle, int prot) {
  void* at = mmap(reinterpret_cast<void*>(address), size, prot, MAP_SHARED | MAP_FIXED,
                  physical_fd_, static_cast<off_t>(handle->offset));
  return at != MAP_FAILED;
}

void DeviceMemory::MakeInaccessible(uintptr_t address, size_t size) {
  // A fresh PROT_NONE anonymous mapping drops the shared pages from this range.
  mmap(reinterpret_cast<void*>(address), size, PROT_NONE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

CUresult DeviceMemory::Allocate(int device, void* context, size_t bytes, bool managed,
                                CUdeviceptr* out) {
  if (bytes == 0 || out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mu_);
  size_t mapped = RoundUp(bytes, kPage);
  // Large allocations are granularity-aligned, as the real allocator's are.
  size_t alignment = mapped >= granularity_ ? granularity_ : 512;
  alignment = std::max(alignment, kPage);
  PhysicalHandle* handle = NewPhysical(mapped, !managed, device);
  if (handle == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
  uintptr_t address = 0;
  if (CarveVa(mapped, alignment, 0, &address) != CUDA_SUCCESS) {
    handle->references = 0;
    MaybeFreePhysical(handle);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  if (!MapPhysical(address, mapped, handle, PROT_READ | PROT_WRITE)) {
    ReturnVa(address, mapped);
    handle->references = 0;
    MaybeFreePhysical(handle);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  handle->mappings = 1;
  reservations_[address] = Reservation{mapped, true};
  allocations_[address] = Allocation{bytes, mapped, device, managed, handle, context};
  *out = address;
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::Free(CUdeviceptr address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = allocations_.find(address);
  if (it == allocations_.end()) return CUDA_ERROR_INVALID_VALUE;
  Allocation a = it->second;
  allocations_.erase(it);
  reservations_.erase(address);
  MakeInaccessible(address, a.mapped);
  ReturnVa(address, a.mapped);
  a.handle->mappings = 0;
  a.handle->references = 0;
  MaybeFreePhysical(a.handle);
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::Reserve(size_t size, size_t alignment, CUdeviceptr hint, CUdeviceptr* out) {
  if (out == nullptr || size == 0 || size % granularity_ != 0) return CUDA_ERROR_INVALID_VALUE;
  if (alignment != 0 && (alignment & (alignment - 1)) != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mu_);
  uintptr_t address = 0;
  CUresult r = CarveVa(size, std::max<size_t>(alignment, granularity_), hint, &address);
  if (r != CUDA_SUCCESS) return r;
  reservations_[address] = Reservation{size, false};
  *out = address;
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::FreeReservation(CUdeviceptr address, size_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = reservations_.find(address);
  if (it == reservations_.end() || it->second.internal || it->second.size != size) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  // A reservation still holding mappings cannot be freed: unmap first.
  auto m = mappings_.lower_bound(address);
  if (m != mappings_.end() && m->first < address + size) return CUDA_ERROR_INVALID_VALUE;
  reservations_.erase(it);
  ReturnVa(address, size);
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::Create(size_t size, const CUmemAllocationProp* prop,
                              CUmemGenericAllocationHandle* out) {
  if (out == nullptr || prop == nullptr || size == 0 || size % granularity_ != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (prop->type != CU_MEM_ALLOCATION_TYPE_PINNED) return CUDA_ERROR_INVALID_VALUE;
  bool on_device = false;
  int device = 0;
  switch (prop->location.type) {
    case CU_MEM_LOCATION_TYPE_DEVICE:
      on_device = true;
      device = prop->location.id;
      if (device < 0 || device >= static_cast<int>(used_.size())) return CUDA_ERROR_INVALID_DEVICE;
      break;
    case CU_MEM_LOCATION_TYPE_HOST:
      break;
    case CU_MEM_LOCATION_TYPE_HOST_NUMA:
      if (prop->location.id < 0) return CUDA_ERROR_INVALID_VALUE;
      break;
    default:  // HOST_NUMA_CURRENT and others are refused by cuMemCreate
      return CUDA_ERROR_INVALID_VALUE;
  }
  std::lock_guard<std::mutex> lock(mu_);
  PhysicalHandle* handle = NewPhysical(size, on_device, device);
  if (handle == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
  handle->prop = *prop;
  *out = reinterpret_cast<CUmemGenericAllocationHandle>(handle);
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::Release(CUmemGenericAllocationHandle h) {
  std::lock_guard<std::mutex> lock(mu_);
  PhysicalHandle* handle = FindHandle(h);
  if (handle == nullptr || handle->references <= 0) return CUDA_ERROR_INVALID_VALUE;
  --handle->references;
  MaybeFreePhysical(handle);
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::Retain(CUmemGenericAllocationHandle* out, void* address) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = mappings_.upper_bound(reinterpret_cast<uintptr_t>(address));
  if (it == mappings_.begin()) return CUDA_ERROR_INVALID_VALUE;
  --it;
  if (reinterpret_cast<uintptr_t>(address) >= it->first + it->second.size) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  ++it->second.handle->references;
  *out = reinterpret_cast<CUmemGenericAllocationHandle>(it->second.handle);
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::GetProperties(CUmemAllocationProp* out, CUmemGenericAllocationHandle h) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mu_);
  PhysicalHandle* handle = FindHandle(h);
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *out = handle->prop;
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::Map(CUdeviceptr address, size_t size, size_t offset,
                           CUmemGenericAllocationHandle h) {
  if (offset != 0 || size == 0 || size % granularity_ != 0 || address % granularity_ != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::lock_guard<std::mutex> lock(mu_);
  PhysicalHandle* handle = FindHandle(h);
  if (handle == nullptr || size > handle->size) return CUDA_ERROR_INVALID_VALUE;
  // The range must lie inside one cuMemAddressReserve reservation...
  auto r = reservations_.upper_bound(address);
  if (r == reservations_.begin()) return CUDA_ERROR_INVALID_VALUE;
  --r;
  if (r->second.internal || address + size > r->first + r->second.size) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  // ...and must not overlap an existing mapping.
  auto m = mappings_.lower_bound(address);
  if (m != mappings_.end() && m->first < address + size) return CUDA_ERROR_INVALID_VALUE;
  if (m != mappings_.begin()) {
    auto prev = std::prev(m);
    if (prev->first + prev->second.size > address) return CUDA_ERROR_INVALID_VALUE;
  }
  if (!MapPhysical(address, size, handle, PROT_NONE)) return CUDA_ERROR_OUT_OF_MEMORY;
  ++handle->mappings;
  mappings_[address] = Mapping{size, handle, PROT_NONE};
  return CUDA_SUCCESS;
}

std::vector<std::map<uintptr_t, DeviceMemory::Mapping>::iterator> DeviceMemory::CoveringMappings(
    uintptr_t address, size_t size) {
  std::vector<std::map<uintptr_t, Mapping>::iterator> covering;
  uintptr_t at = address;
  auto it = mappings_.find(address);
  while (it != mappings_.end() && it->first == at && at < address + size) {
    covering.push_back(it);
    at += it->second.size;
    ++it;
  }
  if (at != address + size) covering.clear();
  return covering;
}

CUresult DeviceMemory::Unmap(CUdeviceptr address, size_t size) {
  if (size == 0 || size % granularity_ != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mu_);
  auto covering = CoveringMappings(address, size);
  if (covering.empty()) return CUDA_ERROR_INVALID_VALUE;
  // Deliberately no wait for running kernels: on a GPU neither does cuMemUnmap.
  MakeInaccessible(address, size);
  for (auto it : covering) {
    PhysicalHandle* handle = it->second.handle;
    mappings_.erase(it);
    --handle->mappings;
    MaybeFreePhysical(handle);
  }
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::SetAccess(CUdeviceptr address, size_t size, const CUmemAccessDesc* desc,
                                 size_t count) {
  if (desc == nullptr || count == 0 || size == 0) return CUDA_ERROR_INVALID_VALUE;
  // One address space serves every simulated device: the most permissive access wins.
  int prot = PROT_NONE;
  for (size_t i = 0; i < count; ++i) {
    if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE) return CUDA_ERROR_INVALID_VALUE;
    if (desc[i].location.id < 0 || desc[i].location.id >= static_cast<int>(used_.size())) {
      return CUDA_ERROR_INVALID_DEVICE;
    }
    if (desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_NONE &&
        desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READ &&
        desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    prot |= ProtFromAccess(desc[i].flags);
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto covering = CoveringMappings(address, size);
  if (covering.empty()) return CUDA_ERROR_INVALID_VALUE;
  if (mprotect(reinterpret_cast<void*>(address), size, prot) != 0) return CUDA_ERROR_INVALID_VALUE;
  for (auto it : covering) it->second.prot = prot;
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::GetAccess(unsigned long long* flags, const CUmemLocation* location,
                                 CUdeviceptr address) {
  if (flags == nullptr || location == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = mappings_.upper_bound(address);
  if (it == mappings_.begin()) return CUDA_ERROR_INVALID_VALUE;
  --it;
  if (address >= it->first + it->second.size) return CUDA_ERROR_INVALID_VALUE;
  int prot = it->second.prot;
  *flags = (prot & PROT_WRITE)  ? CU_MEM_ACCESS_FLAGS_PROT_READWRITE
           : (prot & PROT_READ) ? CU_MEM_ACCESS_FLAGS_PROT_READ
                                : CU_MEM_ACCESS_FLAGS_PROT_NONE;
  return CUDA_SUCCESS;
}

bool DeviceMemory::Lookup(uintptr_t address, RangeInfo* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto a = allocations_.upper_bound(address);
  if (a != allocations_.begin()) {
    --a;
    if (address < a->first + a->second.size) {
      *out = RangeInfo{a->first, a->second.size, a->second.device, a->second.managed,
                       false,    true,           a->second.context};
      return true;
    }
  }
  auto m = mappings_.upper_bound(address);
  if (m != mappings_.begin()) {
    --m;
    if (address < m->first + m->second.size) {
      const PhysicalHandle* h = m->second.handle;
      *out = RangeInfo{m->first, m->second.size, h->on_device ? h->device : 0,
                       false,    true,           (m->second.prot & PROT_READ) != 0};
      return true;
    }
  }
  return false;
}

bool DeviceMemory::OnDevice(uintptr_t address, size_t bytes) {
  if (!InWindow(address, bytes)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto m = mappings_.upper_bound(address);
  if (m != mappings_.begin()) {
    --m;
    if (address < m->first + m->second.size) return m->second.handle->on_device;
  }
  auto a = allocations_.upper_bound(address);
  if (a != allocations_.begin()) {
    --a;
    if (address < a->first + a->second.mapped) return !a->second.managed;
  }
  return true;  // unmapped device VA: the copy will fault on it
}

CUresult DeviceMemory::AllocHost(size_t bytes, unsigned flags, void** out) {
  if (out == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  void* p = mmap(nullptr, RoundUp(bytes, kPage), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  std::lock_guard<std::mutex> lock(mu_);
  uintptr_t base = reinterpret_cast<uintptr_t>(p);
  host_[base] = HostRange{base, bytes, flags, true};
  *out = p;
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::FreeHost(void* address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = host_.find(reinterpret_cast<uintptr_t>(address));
  if (it == host_.end() || !it->second.allocated) return CUDA_ERROR_INVALID_VALUE;
  munmap(address, RoundUp(it->second.size, kPage));
  host_.erase(it);
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::RegisterHost(void* address, size_t bytes, unsigned flags) {
  if (address == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  uintptr_t base = reinterpret_cast<uintptr_t>(address);
  if (InWindow(base, 1)) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mu_);
  auto next = host_.lower_bound(base);
  if (next != host_.end() && next->first < base + bytes) {
    return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  }
  if (next != host_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.size > base) return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  }
  host_[base] = HostRange{base, bytes, flags, false};
  return CUDA_SUCCESS;
}

CUresult DeviceMemory::UnregisterHost(void* address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = host_.find(reinterpret_cast<uintptr_t>(address));
  if (it == host_.end() || it->second.allocated) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
  host_.erase(it);
  return CUDA_SUCCESS;
}

bool DeviceMemory::LookupHost(uintptr_t address, HostRange* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = host_.upper_bound(address);
  if (it == host_.begin()) return false;
  --it;
  if (address >= it->first + it->second.size) return false;
  if (out != nullptr) *out = it->second;
  return true;
}

}  // namespace simcuda
