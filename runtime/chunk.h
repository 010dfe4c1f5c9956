// SPDX-License-Identifier: Apache-2.0
//
// Managed allocations and their chunks: what the tiered manager moves.
//
// A managed allocation is a reserved device virtual range that never changes while the
// allocation lives. It is cut into chunks of SPILLWAY_CHUNK bytes; each chunk's range is
// mapped to exactly one physical handle at a time: a device handle (tier DEVICE), a
// host-located handle the GPU reads over the link (tier HOST), or nothing at all (tier
// NVME, allowed only for guarded allocations: see architecture.md, "The invariant").
//
// Thread safety: every field is guarded by the Manager's mutex; fields a move job owns
// (`moving` set) change only on the mover's threads, for that job.
#ifndef SPILLWAY_RUNTIME_CHUNK_H_
#define SPILLWAY_RUNTIME_CHUNK_H_

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "runtime/content_hash.h"
#include "runtime/extent_allocator.h"
#include "runtime/physical_pool.h"

namespace spillway {

enum class Tier : uint8_t { kDevice = 0, kHost = 1, kNvme = 2 };
const char* TierName(Tier tier);

// Advice bits (the C API's spw_advice values map 1:1).
enum Advice : uint32_t {
  kAdviceWeights = 1u << 0,     // read-mostly model weights: a host copy stays valid
  kAdviceKv = 1u << 1,          // KV cache: grows, every block touched by every step
  kAdvicePin = 1u << 2,         // never leaves HBM
  kAdviceCold = 1u << 3,        // leaves HBM first
  kAdviceReadMostly = 1u << 4,  // device work does not write it: clean after a fetch (kept
                                // per chunk, Chunk::read_mostly, never in Allocation::advice)
  kAdviceGuarded = 1u << 5,     // every device access is announced (prefetch/launch hook):
                                // the chunk may leave mapped memory (NVMe)
};

struct Allocation;
struct BusyEvent;  // mover.h

// Chunk::last_stream once that stream was destroyed (Manager::RetireStream): no stream to
// order a move after or to gate. Not a handle the driver could hand out.
inline const CUstream kNoStream = reinterpret_cast<CUstream>(~uintptr_t{0});

struct Chunk {
  Allocation* allocation = nullptr;
  CUdeviceptr address = 0;  // in the application's range; never changes
  Tier tier = Tier::kHost;
  PhysicalChunk device;          // valid in tier DEVICE
  PhysicalChunk host;            // valid in tier HOST, or a clean copy kept in tier DEVICE
  bool host_copy_valid = false;  // `host` holds the same bytes as `device`
  // Space on NVMe. Holds the chunk's bytes in tier NVME, and a clean copy in other tiers
  // when nvme_copy_valid (read-mostly data read back from NVMe keeps it: re-spilling it is
  // free). A fresh chunk of a guarded allocation placed on NVMe has no extent yet.
  std::optional<Extent> nvme;
  bool nvme_copy_valid = false;
  // What `nvme` holds (its bytes hashed when they were spilled), when known. Data that is
  // not clean after a fetch keeps its extent when read back (the disk space it had), so
  // that re-spilling bytes the device did not change skips the write (Mover::SpillOut).
  std::optional<ContentHash> nvme_hash;
  bool moving = false;  // a move job owns this chunk
  // READ_MOSTLY advised (for the allocation, or for a range that holds this chunk whole:
  // the filled blocks of a KV cache, say): clean after a fetch, like weights.
  bool read_mostly = false;
  // With `moving`: a copy or set into the chunk was queued (or its allocation lost its
  // clean-after-fetch advice) after the job was planned, so the fetch it may be in must not
  // keep clean copies (Manager::DropCleanCopies). Cleared when the next fetch is planned.
  bool written_while_moving = false;
  // With `moving`: the sequence number of the job bringing it into HBM, when that job did
  // not gate the streams that use it (a prefetch ahead of need): a launch that uses the
  // chunk gates its own stream on it instead (Manager::PrepareLaunch). 0 otherwise.
  uint64_t arriving = 0;
  uint64_t last_use = 0;           // policy clock of the last touch
  CUstream last_stream = nullptr;  // the stream the application last used it on, or kNoStream
};

struct Allocation {
  uint64_t id = 0;  // unique in the process, in order of allocation (traces name it)
  CUdeviceptr base = 0;
  size_t size = 0;      // bytes the application asked for
  size_t reserved = 0;  // the VA reservation: size rounded up to whole chunks
  int device = 0;
  uint32_t advice = 0;
  bool escaped = false;  // its pointer left the runtime's sight: never guarded again
  // Launches (or copies) that named it and are being queued: from PrepareLaunch until the
  // real call has been made (EndLaunch). While pinned, it is never chosen to make room:
  // a move planned in that window would gate the launch's stream before the launch itself
  // is queued, and the launch would run after the move, on whatever the move left.
  int launch_pins = 0;
  // Recorded on the stream of the last launch that named it, right after that launch: a
  // prefetch's move orders itself after this alone rather than after everything queued on
  // the stream (which may wait at the gate of an earlier prefetch). Null when its last use
  // was anything else: moves then wait for all of last_stream's work.
  std::shared_ptr<BusyEvent> busy;
  std::vector<Chunk> chunks;
  bool guarded() const { return advice & kAdviceGuarded; }
  bool clean_after_fetch() const { return advice & kAdviceWeights; }
};

// Whether a fetch keeps the chunk's host (and NVMe) copy: device work does not write it.
inline bool CleanAfterFetch(const Chunk& chunk) {
  return chunk.read_mostly || chunk.allocation->clean_after_fetch();
}

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_CHUNK_H_
