// SPDX-License-Identifier: Apache-2.0
//
// NvmeStore: the NVMe tier. Chunks evicted from pinned host memory are written to a spill
// file and read back from it, with O_DIRECT I/O through one io_uring.
//
// The spill file lives under `NvmeStoreConfig::directory` and is private to the process:
// it is created with O_TMPFILE (mode 0600, never has a name), or, where the file system
// lacks O_TMPFILE, with mkstemp (mode 0600) and unlinked at once. Either way nothing is
// left behind after exit or a crash. Space inside it comes from an ExtentAllocator
// (runtime/extent_allocator.h); the file grows with fallocate on demand, up to
// `limit_bytes`. Running out of disk (ENOSPC) or into RLIMIT_FSIZE (EFBIG) is reported as
// ResourceExhausted and leaves every existing extent and its data intact.
//
// I/O: a transfer is split into `request_bytes`-sized requests, and up to `queue_depth`
// of them (across all transfers of the store) are in flight at once; as each completes
// the next is submitted. That, not request size alone, is what reaches the drive's
// bandwidth. Short transfers are continued; errors name the file offset. Buffers inside a
// registered buffer (RegisterBuffers) use READ_FIXED/WRITE_FIXED, which saves the kernel
// pinning the pages on every request.
//
// Asynchronous use (what the mover does to overlap NVMe reads with host-to-device copies):
//   ReadAsync/WriteAsync start a transfer and return a Ticket; Wait(ticket) blocks until
//   it completes and returns its status; Poll(ticket) says whether Wait would block.
//   Transfers are queued FIFO: pieces of an earlier transfer are submitted before those
//   of a later one, so issuing "read piece k+1" before waiting for piece k keeps the
//   queue full without reordering:
//     Ticket next = *store.ReadAsync(extent[0], 0, staging[0], chunk);
//     for (k = 0; k < n; ++k) {
//       Ticket current = std::move(next);
//       if (k + 1 < n) next = *store.ReadAsync(extent[k + 1], 0, staging[(k + 1) % 2], chunk);
//       RETURN_IF_ERROR(store.Wait(std::move(current)));  // piece k is in staging[k % 2]
//       copy staging[k % 2] to the device; that copy must be complete before piece k + 2
//       is read into the same buffer
//     }
//
// Buffers: the drive's requests are built from the buffer's physical pages. On 4 KiB pages
// a 1 MiB request is up to 256 DMA segments, more than many devices take in one request
// (254 on a virtio disk), so the block layer splits it; on 2 MiB pages (2 MiB-aligned,
// MADV_HUGEPAGE before first touch) it needs one, and adjacent requests can merge (on the
// development VM: 4 MiB device requests and twice the read throughput). Staging buffers
// should be huge pages, registered with RegisterBuffers.
//
// O_DIRECT refused by the file system (EINVAL at open) is an error, not a silent fallback
// to buffered I/O: buffered spill I/O would double the memory footprint through the page
// cache, which is exactly the memory this tier exists to free.
//
// Contract:
//   Open: REQUIRES `directory` to exist and be writable, `limit_bytes` > 0,
//     1 <= `queue_depth` <= 32768, `request_bytes` a multiple of the I/O alignment
//     and <= 1 GiB. If RLIMIT_FSIZE is lower than `limit_bytes` at Open, the limit is
//     lowered to it (so that growing the file never raises SIGXFSZ).
//   Read/Write (and their Async forms):
//     REQUIRES `extent` live (allocated, not freed) for the whole transfer;
//     REQUIRES the buffer address, `offset` and `bytes` multiples of alignment()
//       (InvalidArgument otherwise), and offset + bytes <= extent.length (OutOfRange);
//     REQUIRES the buffer to stay valid, and untouched (reads), until the transfer
//       completes (Wait returned, or the store is destroyed).
//   Wait: REQUIRES a ticket from this store; each ticket is waited for at most once.
//     Tickets never waited for are reclaimed by the destructor.
//   RegisterBuffers: REQUIRES no transfer in flight (FailedPrecondition otherwise);
//     replaces any earlier registration. On failure (typically ENOMEM: the buffers exceed
//     RLIMIT_MEMLOCK and the process lacks CAP_IPC_LOCK) it returns a status saying so,
//     and the store keeps working without fixed buffers.
//   Destruction waits for every request still in flight (the kernel may still be writing
//     into caller memory) and then closes the file, which frees its blocks.
//   A failure of io_uring itself (submit or wait failing, not an I/O error) leaves the
//     store unusable: every later transfer returns that status. The ring is not shared
//     across fork(); a child must not use its parent's store.
//
// Thread safety: thread-safe. Allocation state is guarded by one mutex and the ring by
//   another (never both held at once). Allocate holds the first across fallocate: the
//   end of the file must not move while it grows, and growth is rare. Any thread may
//   submit; the thread that needs a completion and finds no one reaping reaps for
//   everybody, waiting in the kernel without holding the ring mutex, so other threads
//   keep submitting meanwhile.
#ifndef SPILLWAY_RUNTIME_NVME_STORE_H_
#define SPILLWAY_RUNTIME_NVME_STORE_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "runtime/extent_allocator.h"

struct io_uring;  // <liburing.h> stays out of this header

namespace spillway {

// One completed I/O request, as seen by NvmeStoreConfig::completion_hook.
struct NvmeIoCompletion {
  bool is_write = false;
  uint64_t file_offset = 0;
  uint32_t length = 0;
};

struct NvmeStoreConfig {
  std::string directory;
  uint64_t limit_bytes = 0;
  unsigned queue_depth = 8;
  size_t request_bytes = size_t{1} << 20;

  // Test-only: false skips O_TMPFILE, to exercise the mkstemp + unlink fallback.
  bool use_o_tmpfile = true;
  // Test-only: sees each completion's result (bytes transferred or -errno) and returns
  // the result the store acts on; used to inject -EIO and short transfers. Must be
  // thread-safe. Empty in production.
  std::function<int(const NvmeIoCompletion&, int result)> completion_hook;
};

struct NvmeStoreStats {
  uint64_t bytes_written = 0;
  uint64_t bytes_read = 0;
  uint64_t requests = 0;            // requests submitted, continuations included
  uint64_t fixed_requests = 0;      // of which READ_FIXED / WRITE_FIXED
  uint64_t continued_requests = 0;  // resubmitted after a short transfer or -EAGAIN
  uint64_t failed_requests = 0;
};

class NvmeStore {
 public:
  // Names one asynchronous transfer. Move-only; an empty (default) ticket is invalid.
  class [[nodiscard]] Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept : id_(std::exchange(other.id_, 0)) {}
    Ticket& operator=(Ticket&& other) noexcept {
      id_ = std::exchange(other.id_, 0);
      return *this;
    }
    bool valid() const { return id_ != 0; }

   private:
    friend class NvmeStore;
    explicit Ticket(uint64_t id) : id_(id) {}
    uint64_t id_ = 0;
  };

  static absl::StatusOr<std::unique_ptr<NvmeStore>> Open(const NvmeStoreConfig& config);

  NvmeStore(const NvmeStore&) = delete;
  NvmeStore& operator=(const NvmeStore&) = delete;
  ~NvmeStore();

  // Reserves `bytes` (rounded up to allocation_unit()) of the spill file.
  absl::StatusOr<Extent> Allocate(size_t bytes) ABSL_LOCKS_EXCLUDED(alloc_mu_);
  // Returns an extent to the free list; FailedPrecondition on a double or foreign free.
  absl::Status Free(const Extent& extent) ABSL_LOCKS_EXCLUDED(alloc_mu_);

  // Blocking transfers between caller memory and [extent.offset + offset, +bytes).
  absl::Status Write(const Extent& extent, size_t offset, const void* src, size_t bytes);
  absl::Status Read(const Extent& extent, size_t offset, void* dst, size_t bytes);

  // Asynchronous forms: argument errors are returned at once; I/O errors by Wait.
  absl::StatusOr<Ticket> WriteAsync(const Extent& extent, size_t offset, const void* src,
                                    size_t bytes);
  absl::StatusOr<Ticket> ReadAsync(const Extent& extent, size_t offset, void* dst, size_t bytes);
  absl::Status Wait(Ticket ticket) ABSL_LOCKS_EXCLUDED(ring_mu_);
  // True when Wait(ticket) would not block. Reaps available completions, never sleeps.
  bool Poll(const Ticket& ticket) ABSL_LOCKS_EXCLUDED(ring_mu_);

  absl::Status RegisterBuffers(std::span<const iovec> buffers) ABSL_LOCKS_EXCLUDED(ring_mu_);
  absl::Status UnregisterBuffers() ABSL_LOCKS_EXCLUDED(ring_mu_);
  size_t registered_buffer_count() const ABSL_LOCKS_EXCLUDED(ring_mu_);

  // Required alignment of buffer addresses, offsets and lengths of transfers.
  size_t alignment() const { return alignment_; }
  // True when alignment() came from statx(STATX_DIOALIGN), false when it is the
  // 4096-byte fallback.
  bool alignment_from_statx() const { return alignment_from_statx_; }
  // Granularity of extents: alignment() or the file system block, whichever is larger,
  // so that no two extents share a block (sub-block direct writes are serialised).
  size_t allocation_unit() const { return allocator_.unit(); }
  size_t request_bytes() const { return request_bytes_; }
  unsigned queue_depth() const { return queue_depth_; }
  const std::string& directory() const { return directory_; }
  // True when the spill file was made with O_TMPFILE (it never had a name), false when
  // with mkstemp + unlink.
  bool uses_o_tmpfile() const { return tmpfile_; }
  // The effective limit (see Open's contract).
  uint64_t limit_bytes() const { return allocator_.limit_bytes(); }
  uint64_t bytes_used() const ABSL_LOCKS_EXCLUDED(alloc_mu_);
  uint64_t bytes_reserved() const ABSL_LOCKS_EXCLUDED(alloc_mu_);
  NvmeStoreStats stats() const ABSL_LOCKS_EXCLUDED(ring_mu_);

 private:
  // One transfer (what a Ticket names).
  struct Op {
    bool is_write = false;
    uint64_t file_offset = 0;
    char* buffer = nullptr;
    uint64_t bytes = 0;
    uint64_t submitted = 0;  // bytes handed to request slots so far
    uint32_t in_flight = 0;  // slots working for this op
    bool failed = false;
    bool done = false;
    absl::Status status;
  };
  // One request: a slot of the queue; its index is the SQE's user_data.
  struct Slot {
    Op* op = nullptr;  // null: free
    uint64_t file_offset = 0;
    char* buffer = nullptr;
    uint32_t length = 0;
  };
  struct RegisteredBuffer {
    uintptr_t begin = 0;
    uintptr_t end = 0;
    int index = 0;
  };

  NvmeStore(const NvmeStoreConfig& config, int fd, bool tmpfile, size_t alignment, bool from_statx,
            uint64_t unit, uint64_t limit);
  absl::Status InitRing();

  absl::Status CheckTransfer(const Extent& extent, size_t offset, const void* buffer,
                             size_t bytes) const ABSL_LOCKS_EXCLUDED(alloc_mu_);
  absl::StatusOr<Ticket> Start(bool is_write, const Extent& extent, size_t offset,
                               const void* buffer, size_t bytes) ABSL_LOCKS_EXCLUDED(ring_mu_);
  absl::Status Grow(uint64_t old_size, uint64_t new_size);

  // Fills free slots from retries and pending ops, and submits.
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);
  void PrepareLocked(uint32_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);
  // Reaps completions (waiting for at least one if `block`); may release ring_mu_ while
  // waiting. REQUIRES !reaping_.
  void ReapLocked(bool block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);
  void CompleteLocked(uint32_t slot, int result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);
  void FailOpLocked(Op* op, absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);
  void ReleaseSlotLocked(uint32_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);
  // Marks the ring unusable and fails everything that can no longer complete.
  void BreakLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);
  int FixedBufferIndexLocked(const char* buffer, uint32_t length) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(ring_mu_);

  const std::string directory_;
  const int fd_;
  const bool tmpfile_;
  const size_t alignment_;
  const bool alignment_from_statx_;
  const size_t request_bytes_;
  const unsigned queue_depth_;
  const std::function<int(const NvmeIoCompletion&, int)> completion_hook_;

  mutable absl::Mutex alloc_mu_;
  ExtentAllocator allocator_ ABSL_GUARDED_BY(alloc_mu_);

  mutable absl::Mutex ring_mu_;
  absl::CondVar ring_cv_;  // signalled after every reaping round
  const std::unique_ptr<io_uring> ring_;
  bool ring_initialised_ = false;
  bool file_registered_ = false;
  absl::Status broken_ ABSL_GUARDED_BY(ring_mu_);
  bool reaping_ ABSL_GUARDED_BY(ring_mu_) = false;
  uint64_t next_ticket_ ABSL_GUARDED_BY(ring_mu_) = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Op>> ops_ ABSL_GUARDED_BY(ring_mu_);
  std::deque<Op*> pending_ ABSL_GUARDED_BY(ring_mu_);  // ops with bytes not yet in a slot
  std::vector<Slot> slots_ ABSL_GUARDED_BY(ring_mu_);
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(ring_mu_);
  std::vector<uint32_t> retry_ ABSL_GUARDED_BY(ring_mu_);  // slots to resubmit
  std::deque<uint32_t> queued_ ABSL_GUARDED_BY(ring_mu_);  // prepared, not yet submitted
  uint32_t in_kernel_ ABSL_GUARDED_BY(ring_mu_) = 0;       // submitted, not yet reaped
  std::vector<RegisteredBuffer> registered_ ABSL_GUARDED_BY(ring_mu_);  // sorted by begin
  NvmeStoreStats stats_ ABSL_GUARDED_BY(ring_mu_);
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_NVME_STORE_H_
