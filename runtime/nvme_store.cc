// SPDX-License-Identifier: Apache-2.0

#include "runtime/nvme_store.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/log.h"

namespace spillway {
namespace {

constexpr size_t kFallbackAlignment = 4096;
constexpr size_t kMaxRequestBytes = size_t{1} << 30;
constexpr unsigned kMaxQueueDepth = 32768;  // io_uring's limit on SQ entries

// "No space left on device (ENOSPC)": thread-safe, unlike strerror.
std::string ErrnoText(int err) {
  const char* desc = strerrordesc_np(err);
  const char* name = strerrorname_np(err);
  if (desc == nullptr || name == nullptr) return absl::StrCat("errno ", err);
  return absl::StrCat(desc, " (", name, ")");
}

absl::Status Errno(int err, absl::string_view what) { return absl::ErrnoToStatus(err, what); }

bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

absl::Status DirectIoRefused(const std::string& directory) {
  return absl::FailedPreconditionError(absl::StrCat(
      "NVMe store: the file system holding '", directory,
      "' refuses O_DIRECT (open/fcntl: EINVAL; tmpfs and some network or FUSE file "
      "systems do). Put the NVMe directory on a local file system such as ext4 or xfs."));
}

// The file system's direct-I/O alignment: statx(STATX_DIOALIGN) on Linux 6.1+, else a
// 4096-byte guess, which every block device's logical block size divides.
absl::Status QueryAlignment(int fd, const std::string& directory, size_t* alignment,
                            bool* from_statx, size_t* block_size) {
  *alignment = kFallbackAlignment;
  *from_statx = false;
  *block_size = 0;
  struct statx stx {};
  unsigned mask = STATX_BLOCKS;
#ifdef STATX_DIOALIGN
  mask |= STATX_DIOALIGN;
#endif
  if (statx(fd, "", AT_EMPTY_PATH, mask, &stx) != 0) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return Errno(errno, "NVMe store: fstat of the spill file");
    *block_size = st.st_blksize;
    return absl::OkStatus();
  }
  *block_size = stx.stx_blksize;
#ifdef STATX_DIOALIGN
  if (stx.stx_mask & STATX_DIOALIGN) {
    // An offset alignment of 0 is the file system saying "no direct I/O on this file".
    if (stx.stx_dio_offset_align == 0) return DirectIoRefused(directory);
    *alignment = std::max<size_t>(stx.stx_dio_mem_align, stx.stx_dio_offset_align);
    *from_statx = true;
  }
#endif
  return absl::OkStatus();
}

// Creates the private spill file: O_TMPFILE where the file system has it (the file never
// has a name), else mkstemp + unlink (a name exists for a moment, mode 0600).
struct SpillFile {
  int fd = -1;
  bool tmpfile = false;  // O_TMPFILE, rather than mkstemp + unlink
};

absl::StatusOr<SpillFile> CreateSpillFile(const std::string& directory, bool use_o_tmpfile) {
  if (use_o_tmpfile) {
    int fd = open(directory.c_str(), O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
    if (fd >= 0) return SpillFile{fd, true};
    const int err = errno;
    if (err == EINVAL) {
      // EINVAL is either "no O_TMPFILE here" or "no O_DIRECT here": ask again without
      // O_DIRECT to tell which.
      int probe = open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
      if (probe >= 0) {
        close(probe);
        return DirectIoRefused(directory);
      }
    } else if (err != EOPNOTSUPP && err != EISDIR) {
      // EISDIR: a kernel older than 3.11 that does not know O_TMPFILE.
      return Errno(err, absl::StrCat("NVMe store: cannot create a spill file in '", directory,
                                     "' (open O_TMPFILE)"));
    }
  }
  std::string path = absl::StrCat(directory, "/spillway-spill-XXXXXX");
  int fd = mkostemp(path.data(), O_CLOEXEC);  // mode 0600
  if (fd < 0) {
    return Errno(errno, absl::StrCat("NVMe store: cannot create a spill file in '", directory,
                                     "' (mkostemp)"));
  }
  if (unlink(path.c_str()) != 0) {
    const int err = errno;
    close(fd);
    return Errno(err, absl::StrCat("NVMe store: cannot unlink the new spill file '", path,
                                   "' (refusing to leave it behind)"));
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_DIRECT) != 0) {
    const int err = errno;
    close(fd);
    if (err == EINVAL) return DirectIoRefused(directory);
    return Errno(err, absl::StrCat("NVMe store: cannot enable O_DIRECT on a spill file in '",
                                   directory, "'"));
  }
  return SpillFile{fd, false};
}

absl::Status CheckDirectory(const std::string& directory) {
  struct stat st {};
  if (stat(directory.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("NVMe store: directory '", directory, "' does not exist"));
    }
    return Errno(err, absl::StrCat("NVMe store: cannot stat directory '", directory, "'"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("NVMe store: '", directory, "' is not a directory"));
  }
  if (access(directory.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    return absl::PermissionDeniedError(
        absl::StrCat("NVMe store: directory '", directory, "' is not writable: ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<NvmeStore>> NvmeStore::Open(const NvmeStoreConfig& config) {
  if (config.directory.empty()) {
    return absl::InvalidArgumentError("NVMe store: no directory given");
  }
  if (config.limit_bytes == 0) {
    return absl::InvalidArgumentError("NVMe store: limit_bytes must be > 0");
  }
  if (config.queue_depth < 1 || config.queue_depth > kMaxQueueDepth) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "NVMe store: queue_depth %u is outside [1, %u]", config.queue_depth, kMaxQueueDepth));
  }
  if (config.request_bytes == 0 || config.request_bytes > kMaxRequestBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "NVMe store: request_bytes %u is outside [1, %u]", config.request_bytes, kMaxRequestBytes));
  }
  if (absl::Status s = CheckDirectory(config.directory); !s.ok()) return s;

  absl::StatusOr<SpillFile> file = CreateSpillFile(config.directory, config.use_o_tmpfile);
  if (!file.ok()) return file.status();
  const int fd = file->fd;
  auto fail = [&](absl::Status status) {
    close(fd);
    return status;
  };

  size_t alignment = 0;
  size_t block_size = 0;
  bool from_statx = false;
  if (absl::Status s = QueryAlignment(fd, config.directory, &alignment, &from_statx, &block_size);
      !s.ok()) {
    return fail(s);
  }
  if (config.request_bytes % alignment != 0) {
    return fail(absl::InvalidArgumentError(
        absl::StrFormat("NVMe store: request_bytes %u is not a multiple of the direct-I/O "
                        "alignment %u of '%s'",
                        config.request_bytes, alignment, config.directory)));
  }
  // Extents never share a file system block: two sub-block direct writes to one block
  // are serialised by ext4 and xfs, and would need read-modify-write elsewhere.
  uint64_t unit = alignment;
  if (IsPowerOfTwo(block_size) && block_size <= (size_t{1} << 20)) {
    unit = std::max<uint64_t>(unit, block_size);
  }

  // Growing past RLIMIT_FSIZE would raise SIGXFSZ, which kills the process unless it is
  // ignored: a limit known now is honoured up front instead.
  uint64_t limit = config.limit_bytes;
  if (struct rlimit fsize{};
      getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY) {
    limit = std::min<uint64_t>(limit, fsize.rlim_cur);
  }
  limit &= ~(unit - 1);
  if (limit == 0) {
    return fail(absl::InvalidArgumentError(absl::StrFormat(
        "NVMe store: limit_bytes %u (after RLIMIT_FSIZE) is below one allocation unit (%u)",
        config.limit_bytes, unit)));
  }

  std::unique_ptr<NvmeStore> store(
      new NvmeStore(config, fd, file->tmpfile, alignment, from_statx, unit, limit));
  if (absl::Status s = store->InitRing(); !s.ok()) return s;  // the destructor closes fd
  SPW_LOG(kInfo,
          "NVMe store: spill file in '{}' ({}), direct-I/O alignment {} ({}), extents of {} "
          "bytes, limit {} bytes, {} requests of {} bytes in flight",
          config.directory, file->tmpfile ? "O_TMPFILE" : "mkstemp + unlink", alignment,
          from_statx ? "statx" : "fallback", unit, limit, config.queue_depth, config.request_bytes);
  if (limit < (config.limit_bytes & ~(unit - 1))) {
    SPW_LOG(kWarn, "NVMe store: limit lowered from {} to {} bytes by RLIMIT_FSIZE",
            config.limit_bytes, limit);
  }
  return store;
}

NvmeStore::NvmeStore(const NvmeStoreConfig& config, int fd, bool tmpfile, size_t alignment,
                     bool from_statx, uint64_t unit, uint64_t limit)
    : directory_(config.directory),
      fd_(fd),
      tmpfile_(tmpfile),
      alignment_(alignment),
      alignment_from_statx_(from_statx),
      request_bytes_(config.request_bytes),
      queue_depth_(config.queue_depth),
      completion_hook_(config.completion_hook),
      allocator_(unit, limit,
                 [this](uint64_t old_size, uint64_t new_size) { return Grow(old_size, new_size); }),
      ring_(std::make_unique<io_uring>()) {}

absl::Status NvmeStore::InitRing() {
  absl::MutexLock lock(&ring_mu_);
  // No IORING_SETUP_COOP_TASKRUN / SINGLE_ISSUER: completions of requests submitted by
  // one thread are reaped by another, which needs the kernel to run the submitter's
  // task work promptly.
  const int ret = io_uring_queue_init(queue_depth_, ring_.get(), 0);
  if (ret < 0) {
    return Errno(-ret,
                 "NVMe store: io_uring_queue_init failed; the NVMe tier needs io_uring "
                 "(Linux 5.6+, not disabled by kernel.io_uring_disabled or a seccomp filter)");
  }
  ring_initialised_ = true;
  // A registered file saves an fget/fput per request; without it plain fds work too.
  file_registered_ = io_uring_register_files(ring_.get(), &fd_, 1) == 0;
  slots_.resize(queue_depth_);
  free_slots_.reserve(queue_depth_);
  for (uint32_t i = queue_depth_; i > 0; --i) free_slots_.push_back(i - 1);
  return absl::OkStatus();
}

NvmeStore::~NvmeStore() {
  {
    absl::MutexLock lock(&ring_mu_);
    if (ring_initialised_) {
      // Stop submitting, then let the kernel finish with caller memory.
      BreakLocked(absl::CancelledError("NVMe store: destroyed"));
      while (in_kernel_ > 0) {
        if (reaping_) {
          ring_cv_.Wait(&ring_mu_);
        } else {
          ReapLocked(/*block=*/true);
        }
      }
      io_uring_queue_exit(ring_.get());
      ring_initialised_ = false;
    }
  }
  close(fd_);  // the file has no name: this frees its blocks
}

absl::Status NvmeStore::Grow(uint64_t old_size, uint64_t new_size) {
  int ret;
  do {
    ret = fallocate(fd_, 0, static_cast<off_t>(old_size), static_cast<off_t>(new_size - old_size));
  } while (ret != 0 && errno == EINTR);
  if (ret == 0) return absl::OkStatus();
  const int err = errno;
  if (err == EOPNOTSUPP) {
    // No preallocation on this file system: a sparse file works, but then a full disk
    // surfaces later, as a write error.
    if (ftruncate(fd_, static_cast<off_t>(new_size)) == 0) {
      SPW_LOG(kWarn,
              "NVMe store: '{}' cannot preallocate (fallocate: EOPNOTSUPP); the spill file "
              "is sparse and a full disk will show as write errors",
              directory_);
      return absl::OkStatus();
    }
    return Errno(errno, absl::StrCat("NVMe store: cannot grow the spill file in '", directory_,
                                     "' (ftruncate)"));
  }
  // A failed fallocate may have allocated part of the range and moved the end of the
  // file; put it back so the allocator's view (old_size) stays the truth.
  const bool restored = ftruncate(fd_, static_cast<off_t>(old_size)) == 0;
  const std::string context = absl::StrFormat(
      "growing the spill file in '%s' from %u to %u bytes (fallocate: %s)%s", directory_, old_size,
      new_size, ErrnoText(err), restored ? "" : "; could not shrink it back (ftruncate failed)");
  if (err == ENOSPC || err == EDQUOT) {
    return absl::ResourceExhaustedError(
        absl::StrCat("NVMe store: disk full ", context, "; stored extents are intact"));
  }
  if (err == EFBIG) {
    return absl::ResourceExhaustedError(
        absl::StrCat("NVMe store: file size limit (RLIMIT_FSIZE) reached ", context,
                     "; stored extents are intact"));
  }
  return Errno(err, absl::StrCat("NVMe store: error ", context));
}

absl::StatusOr<Extent> NvmeStore::Allocate(size_t bytes) {
  absl::MutexLock lock(&alloc_mu_);
  return allocator_.Allocate(bytes);
}

absl::Status NvmeStore::Free(const Extent& extent) {
  absl::MutexLock lock(&alloc_mu_);
  return allocator_.Free(extent);
}

uint64_t NvmeStore::bytes_used() const {
  absl::MutexLock lock(&alloc_mu_);
  return allocator_.bytes_used();
}

uint64_t NvmeStore::bytes_reserved() const {
  absl::MutexLock lock(&alloc_mu_);
  return allocator_.bytes_reserved();
}

NvmeStoreStats NvmeStore::stats() const {
  absl::MutexLock lock(&ring_mu_);
  return stats_;
}

absl::Status NvmeStore::CheckTransfer(const Extent& extent, size_t offset, const void* buffer,
                                      size_t bytes) const {
  const auto address = reinterpret_cast<uintptr_t>(buffer);
  if ((address | offset | bytes) & (alignment_ - 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "NVMe store: O_DIRECT transfer not aligned to %u bytes (buffer %p, offset %u, "
        "bytes %u)",
        alignment_, buffer, offset, bytes));
  }
  if (buffer == nullptr && bytes > 0) {
    return absl::InvalidArgumentError("NVMe store: null buffer");
  }
  if (offset > extent.length || bytes > extent.length - offset) {
    return absl::OutOfRangeError(
        absl::StrFormat("NVMe store: transfer [%u, +%u) exceeds extent [%u, +%u)", offset, bytes,
                        extent.offset, extent.length));
  }
  absl::MutexLock lock(&alloc_mu_);
  if (!allocator_.IsAllocated(extent)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("NVMe store: transfer to extent [%u, +%u), which is not allocated",
                        extent.offset, extent.length));
  }
  return absl::OkStatus();
}

absl::Status NvmeStore::Write(const Extent& extent, size_t offset, const void* src, size_t bytes) {
  absl::StatusOr<Ticket> ticket = WriteAsync(extent, offset, src, bytes);
  if (!ticket.ok()) return ticket.status();
  return Wait(*std::move(ticket));
}

absl::Status NvmeStore::Read(const Extent& extent, size_t offset, void* dst, size_t bytes) {
  absl::StatusOr<Ticket> ticket = ReadAsync(extent, offset, dst, bytes);
  if (!ticket.ok()) return ticket.status();
  return Wait(*std::move(ticket));
}

absl::StatusOr<NvmeStore::Ticket> NvmeStore::WriteAsync(const Extent& extent, size_t offset,
                                                        const void* src, size_t bytes) {
  return Start(/*is_write=*/true, extent, offset, src, bytes);
}

absl::StatusOr<NvmeStore::Ticket> NvmeStore::ReadAsync(const Extent& extent, size_t offset,
                                                       void* dst, size_t bytes) {
  return Start(/*is_write=*/false, extent, offset, dst, bytes);
}

absl::StatusOr<NvmeStore::Ticket> NvmeStore::Start(bool is_write, const Extent& extent,
                                                   size_t offset, const void* buffer,
                                                   size_t bytes) {
  if (absl::Status s = CheckTransfer(extent, offset, buffer, bytes); !s.ok()) return s;
  absl::MutexLock lock(&ring_mu_);
  if (!broken_.ok()) return broken_;
  auto op = std::make_unique<Op>();
  op->is_write = is_write;
  op->file_offset = extent.offset + offset;
  // The kernel only reads from a write's buffer; the cast keeps one Op type.
  op->buffer = static_cast<char*>(const_cast<void*>(buffer));
  op->bytes = bytes;
  op->done = bytes == 0;
  Op* raw = op.get();
  const uint64_t id = next_ticket_++;
  ops_.emplace(id, std::move(op));
  if (bytes > 0) {
    pending_.push_back(raw);
    PumpLocked();
  }
  return Ticket(id);
}

void NvmeStore::PumpLocked() {
  if (!broken_.ok()) return;
  while (!retry_.empty()) {
    const uint32_t slot = retry_.back();
    retry_.pop_back();
    if (slots_[slot].op->failed) {
      ReleaseSlotLocked(slot);  // no point finishing a piece of a failed transfer
      continue;
    }
    PrepareLocked(slot);
    if (!broken_.ok()) return;
  }
  while (!free_slots_.empty() && !pending_.empty()) {
    Op* op = pending_.front();
    const auto length =
        static_cast<uint32_t>(std::min<uint64_t>(request_bytes_, op->bytes - op->submitted));
    const uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    slots_[slot] = Slot{op, op->file_offset + op->submitted, op->buffer + op->submitted, length};
    op->submitted += length;
    ++op->in_flight;
    if (op->submitted == op->bytes) pending_.pop_front();
    PrepareLocked(slot);
    if (!broken_.ok()) return;
  }
  if (queued_.empty()) return;
  int ret;
  do {
    ret = io_uring_submit(ring_.get());
  } while (ret == -EINTR);
  if (ret >= 0) {
    // The kernel consumes SQEs in order; the rest, if any, go with the next submit.
    for (int i = 0; i < ret && !queued_.empty(); ++i) queued_.pop_front();
    in_kernel_ += static_cast<uint32_t>(ret);
    return;
  }
  // Out of kernel resources with requests still running: try again after reaping them.
  if ((ret == -EAGAIN || ret == -EBUSY) && in_kernel_ > 0) return;
  BreakLocked(Errno(-ret, "NVMe store: io_uring_submit failed; the store is unusable"));
}

void NvmeStore::PrepareLocked(uint32_t slot) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) {
    // Cannot happen: the ring has at least queue_depth entries and each slot owns at most
    // one of them at a time.
    retry_.push_back(slot);
    BreakLocked(absl::InternalError("NVMe store: io_uring submission queue unexpectedly full"));
    return;
  }
  const Slot& s = slots_[slot];
  const int fd = file_registered_ ? 0 : fd_;
  const int index = FixedBufferIndexLocked(s.buffer, s.length);
  if (s.op->is_write) {
    if (index >= 0) {
      io_uring_prep_write_fixed(sqe, fd, s.buffer, s.length, s.file_offset, index);
    } else {
      io_uring_prep_write(sqe, fd, s.buffer, s.length, s.file_offset);
    }
  } else {
    if (index >= 0) {
      io_uring_prep_read_fixed(sqe, fd, s.buffer, s.length, s.file_offset, index);
    } else {
      io_uring_prep_read(sqe, fd, s.buffer, s.length, s.file_offset);
    }
  }
  if (file_registered_) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, slot);
  queued_.push_back(slot);
  ++stats_.requests;
  if (index >= 0) ++stats_.fixed_requests;
}

void NvmeStore::ReapLocked(bool block) {
  PumpLocked();
  if (in_kernel_ == 0) return;
  reaping_ = true;
  io_uring_cqe* cqe = nullptr;
  int ret;
  if (block) {
    // Wait without the lock so that other threads keep submitting: the submission and
    // completion sides of a ring are independent, and only the reaper touches the latter.
    ring_mu_.Unlock();
    do {
      ret = io_uring_wait_cqe(ring_.get(), &cqe);
    } while (ret == -EINTR);
    ring_mu_.Lock();
  } else {
    ret = io_uring_peek_cqe(ring_.get(), &cqe);
  }
  reaping_ = false;
  if (ret == 0) {
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring_.get(), head, cqe) {
      CompleteLocked(static_cast<uint32_t>(cqe->user_data), cqe->res);
      ++seen;
    }
    io_uring_cq_advance(ring_.get(), seen);
  } else if (ret != -EAGAIN) {
    BreakLocked(Errno(-ret, "NVMe store: io_uring_wait_cqe failed; the store is unusable"));
  }
  PumpLocked();
  ring_cv_.SignalAll();
}

void NvmeStore::CompleteLocked(uint32_t slot, int result) {
  Slot& s = slots_[slot];
  Op* op = s.op;
  --in_kernel_;
  if (completion_hook_) {
    result = completion_hook_(NvmeIoCompletion{op->is_write, s.file_offset, s.length}, result);
  }
  const char* verb = op->is_write ? "write" : "read";
  if (!op->failed && (result == -EAGAIN || result == -EINTR)) {
    ++stats_.continued_requests;
    retry_.push_back(slot);
    return;
  }
  if (!op->failed && result < 0) {
    ++stats_.failed_requests;
    FailOpLocked(op, Errno(-result, absl::StrFormat("NVMe store: %s of %u bytes at file offset "
                                                    "%u in the spill file under '%s' failed",
                                                    verb, s.length, s.file_offset, directory_)));
  } else if (!op->failed && (result == 0 || static_cast<uint32_t>(result) > s.length)) {
    ++stats_.failed_requests;
    FailOpLocked(op, absl::DataLossError(absl::StrFormat(
                         "NVMe store: %s of %u bytes at file offset %u in the spill file "
                         "under '%s' returned %d",
                         verb, s.length, s.file_offset, directory_, result)));
  } else if (!op->failed) {
    const auto done = static_cast<uint32_t>(result);
    (op->is_write ? stats_.bytes_written : stats_.bytes_read) += done;
    if (done < s.length) {
      // Short transfer: continue where it stopped.
      s.file_offset += done;
      s.buffer += done;
      s.length -= done;
      ++stats_.continued_requests;
      retry_.push_back(slot);
      return;
    }
  }
  ReleaseSlotLocked(slot);
}

void NvmeStore::ReleaseSlotLocked(uint32_t slot) {
  Op* op = slots_[slot].op;
  slots_[slot] = Slot{};
  free_slots_.push_back(slot);
  --op->in_flight;
  if (op->in_flight == 0 && (op->failed || op->submitted == op->bytes)) op->done = true;
}

void NvmeStore::FailOpLocked(Op* op, absl::Status status) {
  if (op->failed) return;
  op->failed = true;
  op->status = std::move(status);
  // Its remaining bytes will never be submitted.
  pending_.erase(std::remove(pending_.begin(), pending_.end(), op), pending_.end());
  if (op->in_flight == 0) op->done = true;
}

void NvmeStore::BreakLocked(absl::Status status) {
  if (broken_.ok()) broken_ = std::move(status);
  std::deque<Op*> pending = std::move(pending_);
  pending_.clear();
  for (Op* op : pending) FailOpLocked(op, broken_);
  // Requests that never reached the kernel will not complete. (Their SQEs stay in the
  // submission ring, which is never submitted again.)
  std::vector<uint32_t> stranded(queued_.begin(), queued_.end());
  stranded.insert(stranded.end(), retry_.begin(), retry_.end());
  queued_.clear();
  retry_.clear();
  for (uint32_t slot : stranded) {
    FailOpLocked(slots_[slot].op, broken_);
    ReleaseSlotLocked(slot);
  }
}

int NvmeStore::FixedBufferIndexLocked(const char* buffer, uint32_t length) const {
  if (registered_.empty()) return -1;
  const auto begin = reinterpret_cast<uintptr_t>(buffer);
  auto it = std::upper_bound(
      registered_.begin(), registered_.end(), begin,
      [](uintptr_t address, const RegisteredBuffer& b) { return address < b.begin; });
  if (it == registered_.begin()) return -1;
  --it;
  return begin + length <= it->end ? it->index : -1;
}

bool NvmeStore::IdleLocked() const {
  return pending_.empty() && queued_.empty() && retry_.empty() && in_kernel_ == 0;
}

absl::Status NvmeStore::Wait(Ticket ticket) {
  absl::MutexLock lock(&ring_mu_);
  auto it = ops_.find(ticket.id_);
  if (it == ops_.end()) {
    return absl::InvalidArgumentError("NVMe store: Wait on an unknown or already-waited ticket");
  }
  Op* op = it->second.get();
  while (!op->done) {
    if (reaping_) {
      ring_cv_.Wait(&ring_mu_);
      continue;
    }
    PumpLocked();
    if (in_kernel_ == 0 && !op->done) {
      // Nothing in flight can finish this op: the ring broke before its requests ran
      // (BreakLocked has then released every slot that never reached the kernel).
      if (broken_.ok()) BreakLocked(absl::InternalError("NVMe store: transfer stalled"));
      FailOpLocked(op, broken_);
      if (op->in_flight > 0) return op->status;  // unreachable; leak rather than dangle
      op->done = true;
    } else {
      ReapLocked(/*block=*/true);
    }
  }
  absl::Status status = std::move(op->status);
  ops_.erase(ticket.id_);  // not `it`: other threads may have rehashed ops_ meanwhile
  return status;
}

bool NvmeStore::Poll(const Ticket& ticket) {
  absl::MutexLock lock(&ring_mu_);
  auto it = ops_.find(ticket.id_);
  if (it == ops_.end()) return true;  // Wait would return at once, with an error
  Op* op = it->second.get();
  if (!op->done && !reaping_) ReapLocked(/*block=*/false);
  return op->done;
}

absl::Status NvmeStore::RegisterBuffers(std::span<const iovec> buffers) {
  absl::MutexLock lock(&ring_mu_);
  if (!IdleLocked()) {
    return absl::FailedPreconditionError(
        "NVMe store: RegisterBuffers while transfers are in flight");
  }
  if (!registered_.empty()) {
    io_uring_unregister_buffers(ring_.get());
    registered_.clear();
  }
  if (buffers.empty()) return absl::OkStatus();
  uint64_t total = 0;
  for (const iovec& b : buffers) {
    if (b.iov_base == nullptr || b.iov_len == 0) {
      return absl::InvalidArgumentError("NVMe store: RegisterBuffers: empty or null buffer");
    }
    total += b.iov_len;
  }
  const int ret =
      io_uring_register_buffers(ring_.get(), buffers.data(), static_cast<unsigned>(buffers.size()));
  if (ret < 0) {
    const int err = -ret;
    std::string why;
    if (err == ENOMEM || err == EPERM) {
      struct rlimit memlock {};
      getrlimit(RLIMIT_MEMLOCK, &memlock);
      why = memlock.rlim_cur == RLIM_INFINITY
                ? std::string("; registered buffers count as locked memory")
                : absl::StrFormat(
                      "; registered buffers count as locked memory and RLIMIT_MEMLOCK is %u "
                      "bytes (raise `ulimit -l` or grant CAP_IPC_LOCK)",
                      memlock.rlim_cur);
    }
    return Errno(err, absl::StrFormat("NVMe store: io_uring_register_buffers of %u buffers "
                                      "(%u bytes) failed%s; continuing without fixed buffers",
                                      buffers.size(), total, why));
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    const auto begin = reinterpret_cast<uintptr_t>(buffers[i].iov_base);
    registered_.push_back({begin, begin + buffers[i].iov_len, static_cast<int>(i)});
  }
  std::sort(registered_.begin(), registered_.end(),
            [](const RegisteredBuffer& a, const RegisteredBuffer& b) { return a.begin < b.begin; });
  return absl::OkStatus();
}

absl::Status NvmeStore::UnregisterBuffers() {
  absl::MutexLock lock(&ring_mu_);
  if (!IdleLocked()) {
    return absl::FailedPreconditionError(
        "NVMe store: UnregisterBuffers while transfers are in flight");
  }
  if (registered_.empty()) return absl::OkStatus();
  registered_.clear();
  const int ret = io_uring_unregister_buffers(ring_.get());
  if (ret < 0) return Errno(-ret, "NVMe store: io_uring_unregister_buffers failed");
  return absl::OkStatus();
}

size_t NvmeStore::registered_buffer_count() const {
  absl::MutexLock lock(&ring_mu_);
  return registered_.size();
}

}  // namespace spillway
