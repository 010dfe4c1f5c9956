// SPDX-License-Identifier: Apache-2.0
//
// Device memory: simcuda's model of GPU physical memory and the device virtual address
// space, shared by all simulated devices.
//
// - The device VA space is one window of process address space (PROT_NONE, reserved at
//   cuInit), so device pointers are real addresses that never overlap host allocations.
// - Physical memory (what cuMemCreate returns, and what backs cuMemAlloc) is a range of
//   one memfd. Mapping a handle at a VA maps that memfd range there (MAP_SHARED), so two
//   mappings of one handle see the same bytes, as on a GPU. Unmapping puts PROT_NONE back.
// - Device-located physical memory counts against the device's capacity
//   (SIMCUDA_DEVICE_MEMORY); host-located handles and managed memory count against none.
// - A new VMM mapping has no access until cuMemSetAccess, exactly as CUDA documents.
//
// Thread safety: all methods lock one mutex; none blocks on device work.
#ifndef SIMCUDA_DEVICE_MEMORY_H_
#define SIMCUDA_DEVICE_MEMORY_H_

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "driver.h"

namespace simcuda {

struct PhysicalHandle {
  size_t offset = 0;  // in the physical memfd
  size_t size = 0;
  bool on_device = true;  // false: host-located (HOST / HOST_NUMA)
  int device = 0;         // owning device for device-located memory
  CUmemAllocationProp prop{};
  int references = 1;  // cuMemCreate + cuMemRetainAllocationHandle - cuMemRelease
  int mappings = 0;
};

// What a device address belongs to, for pointer attributes and address ranges.
struct RangeInfo {
  uintptr_t base = 0;
  size_t size = 0;
  int device = 0;
  bool managed = false;
  bool vmm = false;         // a cuMemMap mapping (else a cuMemAlloc allocation)
  bool accessible = false;  // mapped with read access
  void* context = nullptr;  // cuMemAlloc: the context it was allocated in
};

struct HostRange {
  uintptr_t base = 0;
  size_t size = 0;
  unsigned flags = 0;
  bool allocated = false;  // by cuMemAllocHost / cuMemHostAlloc (else registered)
};

class DeviceMemory {
 public:
  static DeviceMemory& Get();

  CUresult Init(const Config& config);
  bool InWindow(uintptr_t address, size_t bytes) const;
  size_t used(int device);
  size_t capacity() const { return capacity_; }
  size_t granularity() const { return granularity_; }

  // cuMemAlloc / cuMemAllocManaged / cuMemFree.
  CUresult Allocate(int device, void* context, size_t bytes, bool managed, CUdeviceptr* out);
  CUresult Free(CUdeviceptr address);

  // VMM.
  CUresult Reserve(size_t size, size_t alignment, CUdeviceptr hint, CUdeviceptr* out);
  CUresult FreeReservation(CUdeviceptr address, size_t size);
  CUresult Create(size_t size, const CUmemAllocationProp* prop, CUmemGenericAllocationHandle* out);
  CUresult Release(CUmemGenericAllocationHandle handle);
  CUresult Retain(CUmemGenericAllocationHandle* out, void* address);
  CUresult GetProperties(CUmemAllocationProp* out, CUmemGenericAllocationHandle handle);
  CUresult Map(CUdeviceptr address, size_t size, size_t offset,
               CUmemGenericAllocationHandle handle);
  CUresult Unmap(CUdeviceptr address, size_t size);
  CUresult SetAccess(CUdeviceptr address, size_t size, const CUmemAccessDesc* desc, size_t count);
  CUresult GetAccess(unsigned long long* flags, const CUmemLocation* location, CUdeviceptr address);

  bool Lookup(uintptr_t address, RangeInfo* out);
  // True when [address, address+bytes) is device VA backed by device-located memory. A
  // host-located handle mapped into device VA is host memory to the copy engines: data
  // to or from it crosses the host link, as on a GPU.
  bool OnDevice(uintptr_t address, size_t bytes);

  // Page-locked host memory.
  CUresult AllocHost(size_t bytes, unsigned flags, void** out);
  CUresult FreeHost(void* address);
  CUresult RegisterHost(void* address, size_t bytes, unsigned flags);
  CUresult UnregisterHost(void* address);
  bool LookupHost(uintptr_t address, HostRange* out);

 private:
  struct Reservation {
    size_t size = 0;
    bool internal = false;  // made by Allocate, not by cuMemAddressReserve
  };
  struct Mapping {
    size_t size = 0;
    PhysicalHandle* handle = nullptr;
    int prot = 0;
  };
  struct Allocation {
    size_t size = 0;    // requested bytes
    size_t mapped = 0;  // page-rounded bytes backed
    int device = 0;
    bool managed = false;
    PhysicalHandle* handle = nullptr;
    void* context = nullptr;
  };

  CUresult CarveVa(size_t size, size_t alignment, uintptr_t hint, uintptr_t* out);
  void ReturnVa(uintptr_t address, size_t size);
  PhysicalHandle* NewPhysical(size_t size, bool on_device, int device);
  void MaybeFreePhysical(PhysicalHandle* handle);
  PhysicalHandle* FindHandle(CUmemGenericAllocationHandle handle);
  bool MapPhysical(uintptr_t address, size_t size, PhysicalHandle* handle, int prot);
  void MakeInaccessible(uintptr_t address, size_t size);
  // Mappings covering [address, address+size) exactly and contiguously, or empty.
  std::vector<std::map<uintptr_t, Mapping>::iterator> CoveringMappings(uintptr_t address,
                                                                       size_t size);

  std::mutex mu_;
  uintptr_t window_ = 0;
  size_t window_size_ = 0;
  size_t capacity_ = 0;
  size_t granularity_ = 0;
  int physical_fd_ = -1;
  size_t physical_next_ = 0;
  std::vector<size_t> used_;                       // GUARDED_BY(mu_), per device
  std::map<uintptr_t, size_t> free_va_;            // GUARDED_BY(mu_)
  std::map<uintptr_t, Reservation> reservations_;  // GUARDED_BY(mu_)
  std::map<uintptr_t, Mapping> mappings_;          // GUARDED_BY(mu_)
  std::map<uintptr_t, Allocation> allocations_;    // GUARDED_BY(mu_)
  std::map<uintptr_t, HostRange> host_;            // GUARDED_BY(mu_)
  std::map<PhysicalHandle*, bool> handles_;        // GUARDED_BY(mu_), live handles
};

}  // namespace simcuda

#endif  // SIMCUDA_DEVICE_MEMORY_H_
