// SPDX-License-Identifier: Apache-2.0
#include "runtime/mover.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/driver_api.h"
#include "runtime/log.h"
#include "runtime/numa.h"

namespace spillway {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {

// What the device took between two completed timing events; 0 if it cannot tell.
double ElapsedSeconds(CUevent start, CUevent end) {
  float ms = 0;
  if (Driver().cuEventElapsedTime(&ms, start, end) != CUDA_SUCCESS) return 0;
  return ms / 1e3;
}

}  // namespace

std::shared_ptr<BusyEvent> BusyEvent::Create() {
  auto busy = std::make_shared<BusyEvent>();
  if (Driver().cuEventCreate(&busy->event, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS) return nullptr;
  return busy;
}

BusyEvent::~BusyEvent() {
  if (event != nullptr) Driver().cuEventDestroy(event);
}

bool BusyEvent::Done() {
  if (done.load(std::memory_order_relaxed)) return true;
  if (!recorded || Driver().cuEventQuery(event) != CUDA_SUCCESS) return false;
  done.store(true, std::memory_order_relaxed);
  return true;
}

absl::StatusOr<std::unique_ptr<Mover>> Mover::Create(int device, size_t chunk_bytes,
                                                     NvmeStore* nvme, int numa_node,
                                                     absl::Duration stall_warning) {
  std::unique_ptr<Mover> mover(new Mover(device, chunk_bytes, nvme));
  mover->stall_warning_ = stall_warning;  // before the watchdog starts
  const DriverApi& cu = Driver();
  SPW_CHECK_CU(cu.cuCtxGetCurrent(&mover->context_));
  if (mover->context_ == nullptr) {
    SPW_CHECK_CU(cu.cuDevicePrimaryCtxRetain(&mover->context_, device));
    SPW_CHECK_CU(cu.cuCtxSetCurrent(mover->context_));
  }
  // Non-blocking: the legacy default stream must not wait for the mover, nor it for that.
  SPW_CHECK_CU(cu.cuStreamCreate(&mover->h2d_, CU_STREAM_NON_BLOCKING));
  SPW_CHECK_CU(cu.cuStreamCreate(&mover->d2h_, CU_STREAM_NON_BLOCKING));
  void* gate = nullptr;
  SPW_CHECK_CU(cu.cuMemHostAlloc(&gate, sizeof(uint32_t),
                                 CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP));
  mover->gate_ = static_cast<volatile uint32_t*>(gate);
  for (Slot& slot : mover->slots_) {
    // Timing events: the link meters read what the engines took between them.
    for (CUevent* event : {&slot.out_done, &slot.in_done, &slot.out_start, &slot.in_start}) {
      SPW_CHECK_CU(cu.cuEventCreate(event, CU_EVENT_DEFAULT));
    }
  }
  *mover->gate_ = 0;
  if (nvme != nullptr) {
    if (absl::Status s = mover->CreateStaging(numa_node); !s.ok()) return s;
    SPW_CHECK_CU(cu.cuStreamCreate(&mover->nvme_h2d_, CU_STREAM_NON_BLOCKING));
    SPW_CHECK_CU(cu.cuStreamCreate(&mover->nvme_d2h_, CU_STREAM_NON_BLOCKING));
    for (Slot& slot : mover->slots_) {
      for (CUevent* event : {&slot.nvme_out_done, &slot.nvme_in_done}) {
        SPW_CHECK_CU(cu.cuEventCreate(event, CU_EVENT_DISABLE_TIMING));
      }
    }
    mover->nvme_thread_ = std::thread([m = mover.get()] { m->NvmeThread(); });
  }
  mover->thread_ = std::thread([m = mover.get()] { m->Run(); });
  mover->finisher_ = std::thread([m = mover.get()] { m->Finisher(); });
  mover->watchdog_ = std::thread([m = mover.get()] { m->Watchdog(); });
  return mover;
}

absl::Status Mover::CreateStaging(int numa_node) {
  const DriverApi& cu = Driver();
  std::vector<iovec> buffers;
  for (int i = 0; i < kStagingBuffers; ++i) {
    // Anonymous memory, touched, then page-locked: io_uring can register it (memory from
    // cuMemHostAlloc is device-file backed and was refused by older kernels).
    // 2 MiB-aligned and backed by huge pages where the kernel allows: an O_DIRECT request
    // built from 4 KiB pages exceeds a disk's segment limit and is split, halving
    // throughput (measured: bench/nvme_store_bench --hugepages).
    constexpr size_t kHuge = size_t{2} << 20;
    void* raw = mmap(nullptr, chunk_bytes_ + kHuge, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return absl::ResourceExhaustedError("cannot map NVMe staging buffers");
    staging_mappings_.push_back(raw);
    void* p =
        reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw) + kHuge - 1) & ~(kHuge - 1));
    madvise(p, chunk_bytes_, MADV_HUGEPAGE);
    if (numa_node >= 0) {
      // Next to the GPU: every NVMe byte crosses this memory on its way to the device.
      if (absl::Status bound = BindToNumaNode(p, chunk_bytes_, numa_node); !bound.ok()) {
        SPW_LOG(kWarn, "staging buffer not bound to NUMA node {}: {}", numa_node,
                std::string(bound.message()));
      }
    }
    std::memset(p, 0, chunk_bytes_);
    staging_.push_back(p);
    SPW_CHECK_CU(cu.cuMemHostRegister(p, chunk_bytes_, CU_MEMHOSTREGISTER_PORTABLE));
    CUevent event = nullptr;
    SPW_CHECK_CU(cu.cuEventCreate(&event, CU_EVENT_DISABLE_TIMING));
    staging_free_.push_back(event);
  }
  // Registered buffers count against RLIMIT_MEMLOCK (without CAP_IPC_LOCK), and all of them
  // (16 MiB at 2 MiB chunks) exceed Debian's default 8 MiB: register as many as fit, read
  // and spill buffers alternately, rather than none.
  for (int r = 0; r < kReadStaging || r < kSpillStaging; ++r) {
    if (r < kReadStaging) buffers.push_back(iovec{staging_[kSpillStaging + r], chunk_bytes_});
    if (r < kSpillStaging) buffers.push_back(iovec{staging_[r], chunk_bytes_});
  }
  absl::Status all = nvme_->RegisterBuffers(buffers);
  if (all.ok()) return absl::OkStatus();
  size_t fit = buffers.size() - 1;
  for (; fit > 0; --fit) {
    if (nvme_->RegisterBuffers(std::span<const iovec>(buffers).first(fit)).ok()) break;
  }
  SPW_LOG(kWarn,
          "{} of {} NVMe staging buffers registered with io_uring, as all did not fit ({}); "
          "I/O through the others works, at more CPU per request",
          fit, buffers.size(), std::string(all.message()));
  return absl::OkStatus();
}

Mover::~Mover() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (nvme_thread_.joinable()) nvme_thread_.join();
  if (finisher_.joinable()) finisher_.join();
  {
    absl::MutexLock lock(&mu_);  // after the others: a drain that stalls is warned of too
    watchdog_stop_ = true;
  }
  if (watchdog_.joinable()) watchdog_.join();
  const DriverApi& cu = Driver();
  for (CUstream stream : {h2d_, d2h_, nvme_h2d_, nvme_d2h_}) {
    if (stream != nullptr) cu.cuStreamDestroy(stream);
  }
  for (CUevent event : staging_free_) cu.cuEventDestroy(event);
  for (Slot& slot : slots_) {
    for (CUevent event : slot.evicted) cu.cuEventDestroy(event);
    for (CUevent event : {slot.out_done, slot.in_done, slot.out_start, slot.in_start,
                          slot.nvme_out_done, slot.nvme_in_done}) {
      if (event != nullptr) cu.cuEventDestroy(event);
    }
  }
  for (void* p : staging_) cu.cuMemHostUnregister(p);
  for (void* raw : staging_mappings_) munmap(raw, chunk_bytes_ + (size_t{2} << 20));
  // The gate is not freed: application streams may still have waits on it queued (all
  // satisfied, but a stream reads the word when it reaches the wait). Freeing it would
  // turn those into illegal-address faults; it is 4 bytes for the life of the process.
}

absl::StatusOr<uint64_t> Mover::Submit(std::unique_ptr<MoveJob> job) {
  const DriverApi& cu = Driver();
  absl::MutexLock lock(&mu_);
  job->sequence = next_sequence_++;
  job->submit_ns = NowNs();
  job->uses_nvme = nvme_ != nullptr && UsesNvme(*job);
  uint64_t sequence = job->sequence;
  // Everything each stream has queued so far must finish before the job touches the
  // chunks; everything it queues later must wait for the job.
  auto gate_address = reinterpret_cast<CUdeviceptr>(gate_);
  // Every event is recorded before any stream is gated: the legacy default stream waits
  // for the blocking streams (a per-thread default stream among them), so an event recorded
  // on it behind another stream's gate would wait for this very job.
  std::vector<CUstream> gated;
  CUresult r = CUDA_SUCCESS;
  for (CUstream stream : job->streams) {
    CUevent event = nullptr;
    r = cu.cuEventCreate(&event, CU_EVENT_DISABLE_TIMING);
    if (r != CUDA_SUCCESS) break;
    if (cu.cuEventRecord(event, stream) != CUDA_SUCCESS) {
      cu.cuEventDestroy(event);  // a stream the application destroyed: nothing runs there
      continue;
    }
    job->after.push_back(event);
    gated.push_back(stream);
  }
  if (!job->gate_streams) gated.clear();
  for (size_t i = 0; i < gated.size() && r == CUDA_SUCCESS; ++i) {
    r = cu.cuStreamWaitValue32(gated[i], gate_address, static_cast<cuuint32_t>(sequence),
                               CU_STREAM_WAIT_VALUE_GEQ);
  }
  if (r != CUDA_SUCCESS) {
    // Streams gated so far wait for this sequence number: it still has to complete, but
    // nothing may move, since not every user of the chunks is held.
    job->abandoned = CudaError(r, "gating an application stream");
    absl::Status status = job->abandoned;
    queue_.push_back(std::move(job));
    return status;
  }
  // Only a job that runs its copies may take them over: an abandoned one waits for nothing.
  job->after.insert(job->after.end(), destroyed_streams_work_.begin(),
                    destroyed_streams_work_.end());
  destroyed_streams_work_.clear();
  queue_.push_back(std::move(job));
  return sequence;
}

absl::Status Mover::OrderLaterJobsAfter(CUstream stream) {
  const DriverApi& cu = Driver();
  CUevent event = nullptr;
  SPW_CHECK_CU(cu.cuEventCreate(&event, CU_EVENT_DISABLE_TIMING));
  if (CUresult r = cu.cuEventRecord(event, stream); r != CUDA_SUCCESS) {
    cu.cuEventDestroy(event);
    return CudaError(r, "cuEventRecord on a stream being destroyed");
  }
  absl::MutexLock lock(&mu_);
  destroyed_streams_work_.push_back(event);
  return absl::OkStatus();
}

absl::Status Mover::GateStream(CUstream stream, uint64_t sequence) {
  if (completed() >= sequence) return absl::OkStatus();
  SPW_CHECK_CU(Driver().cuStreamWaitValue32(stream, reinterpret_cast<CUdeviceptr>(gate_),
                                            static_cast<cuuint32_t>(sequence),
                                            CU_STREAM_WAIT_VALUE_GEQ));
  return absl::OkStatus();
}

absl::Status Mover::Calibrate(CUdeviceptr host, CUdeviceptr device, uint64_t bytes) {
  const DriverApi& cu = Driver();
  const uint64_t copies = std::max<uint64_t>(2, bytes / chunk_bytes_);
  CUevent events[4] = {};  // H2D start, end; D2H start, end
  absl::Status status;
  for (CUevent& event : events) {
    if (CUresult r = cu.cuEventCreate(&event, CU_EVENT_DEFAULT); r != CUDA_SUCCESS) {
      status = CudaError(r, "cuEventCreate");
    }
  }
  auto run = [&]() -> absl::Status {
    // One copy each way first: the first copy of a process pays set-up costs.
    SPW_CHECK_CU(cu.cuMemcpyAsync(device, host, chunk_bytes_, h2d_));
    SPW_CHECK_CU(cu.cuMemcpyAsync(host, device, chunk_bytes_, d2h_));
    SPW_CHECK_CU(cu.cuStreamSynchronize(h2d_));
    SPW_CHECK_CU(cu.cuStreamSynchronize(d2h_));
    // Both directions at once, as moves run them (the buffers' contents do not matter).
    SPW_CHECK_CU(cu.cuEventRecord(events[0], h2d_));
    SPW_CHECK_CU(cu.cuEventRecord(events[2], d2h_));
    for (uint64_t i = 0; i < copies; ++i) {
      SPW_CHECK_CU(cu.cuMemcpyAsync(device, host, chunk_bytes_, h2d_));
      SPW_CHECK_CU(cu.cuMemcpyAsync(host, device, chunk_bytes_, d2h_));
    }
    SPW_CHECK_CU(cu.cuEventRecord(events[1], h2d_));
    SPW_CHECK_CU(cu.cuEventRecord(events[3], d2h_));
    SPW_CHECK_CU(cu.cuEventSynchronize(events[1]));
    SPW_CHECK_CU(cu.cuEventSynchronize(events[3]));
    h2d_link_.Add(copies * chunk_bytes_, ElapsedSeconds(events[0], events[1]));
    d2h_link_.Add(copies * chunk_bytes_, ElapsedSeconds(events[2], events[3]));
    return absl::OkStatus();
  };
  if (status.ok()) status = run();
  if (!status.ok()) {
    // Copies may be queued up to where it failed: let them end before the buffers go back.
    cu.cuStreamSynchronize(h2d_);
    cu.cuStreamSynchronize(d2h_);
  }
  for (CUevent event : events) {
    if (event != nullptr) cu.cuEventDestroy(event);
  }
  return status;
}

void Mover::WaitFor(uint64_t sequence) { WaitFor(sequence, absl::InfiniteDuration()); }

bool Mover::WaitFor(uint64_t sequence, absl::Duration timeout) {
  struct Target {
    const Mover* mover;
    uint64_t sequence;
  } target{this, sequence};
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(
                                  +[](Target* t) {
                                    return t->mover->completed_.load(std::memory_order_acquire) >=
                                           t->sequence;
                                  },
                                  &target),
                              timeout);
}

bool Mover::WaitForAll(absl::Duration timeout) {
  uint64_t last = 0;
  {
    absl::MutexLock lock(&mu_);
    last = next_sequence_ - 1;
  }
  return WaitFor(last, timeout);
}

bool Mover::pending() {
  absl::MutexLock lock(&mu_);
  return completed_.load(std::memory_order_acquire) + 1 < next_sequence_;
}

void Mover::WaitForAll() { WaitForAll(absl::InfiniteDuration()); }

void Mover::Run() {
  Driver().cuCtxSetCurrent(context_);
  // Starts jobs, in order: queues their copies, while up to kSlots jobs are in flight (the
  // finisher thread finishes them, in order). Later jobs' copies are queued before an
  // earlier one's wait, remap and commit, so the link does not idle through them. A later
  // job never depends on an earlier one's copies or remap: chunks belong to one job at a
  // time, and what a job's commit gives back to the pools was not there to plan with when
  // the later job was planned. This thread never waits for another job, nor for the drive:
  // a job's NVMe steps go to the NVMe thread once its other copies are queued.
  for (;;) {
    std::unique_ptr<MoveJob> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Mover* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) {
            if (m->queue_.empty()) return m->stopping_;
            return static_cast<int>(m->in_flight_.size()) < kSlots;
          },
          this));
      if (queue_.empty()) {
        starter_done_ = true;  // the others end once what is in flight is done
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
      starting_nvme_ = job->uses_nvme;
    }
    job->start_ns = NowNs();
    absl::Status started = job->abandoned.ok() ? StartCopies(*job) : job->abandoned;
    absl::MutexLock lock(&mu_);
    // Even a job that failed goes to the NVMe thread: reads it started early must be waited
    // out there, and its NVMe slot events recorded (it queues no copies for it).
    job->started = std::move(started);
    if (job->uses_nvme) nvme_queue_.push_back(job.get());
    starting_nvme_ = false;
    started_.fetch_add(1, std::memory_order_release);
    in_flight_.push_back(std::move(job));
  }
}

MoveJob* Mover::NextEarlyReads() {
  // Only the next job with NVMe steps, once every earlier one has been handed to the NVMe
  // thread and done there: its reads take the read staging buffers, which an earlier job's
  // reads would take again while the early ones were still landing.
  if (starting_nvme_ || !nvme_queue_.empty()) return nullptr;
  for (const std::unique_ptr<MoveJob>& job : queue_) {
    if (job->uses_nvme) return job->sequence > read_early_ ? job.get() : nullptr;
  }
  return nullptr;
}

void Mover::NvmeThread() {
  Driver().cuCtxSetCurrent(context_);
  // The NVMe steps of started jobs, in order; while there are none, the first reads of
  // the next queued job with NVMe steps. Waiting for the drive here holds up no copy of
  // another job between HBM and host memory. A job's staging copies wait (on the device)
  // only for its own evictions and for the application work queued before it, which needs
  // at most the gates of earlier jobs: their NVMe steps were queued before this one's.
  for (;;) {
    MoveJob* job = nullptr;
    MoveJob* early = nullptr;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Mover* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) {
            return !m->nvme_queue_.empty() || m->NextEarlyReads() != nullptr || m->starter_done_;
          },
          this));
      if (!nvme_queue_.empty()) {
        job = nvme_queue_.front();
      } else if ((early = NextEarlyReads()) != nullptr) {
        // The job stays put while queued (only the starter pops it, and it never touches
        // the job's reads), and cannot end before this thread has queued its NVMe steps.
        read_early_ = early->sequence;
      } else {
        return;  // the starter is done, and so is every job it started
      }
    }
    if (early != nullptr) {
      StartReadsEarly(*early);
      continue;
    }
    // Not after a failed start: a fetch into an HBM chunk an eviction gives up would not
    // wait for that eviction's copy (it may never have been queued).
    absl::Status status = job->started.ok() ? QueueNvmeCopies(*job) : absl::OkStatus();
    // Reads still in flight after a failure (or started early for a job that failed) write
    // into staging buffers the next job may take: wait them out here.
    AbandonReads(*job);
    const Slot& slot = slots_[job->sequence % kSlots];
    status = RecordCopiesDone(std::move(status), slot.nvme_out_done, nvme_d2h_, slot.nvme_in_done,
                              nvme_h2d_);
    absl::MutexLock lock(&mu_);
    job->started.Update(status);
    job->nvme_queued = true;
    nvme_queue_.pop_front();
  }
}

void Mover::Finisher() {
  Driver().cuCtxSetCurrent(context_);
  for (;;) {
    std::unique_ptr<MoveJob> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Mover* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) {
            if (m->in_flight_.empty()) return m->starter_done_;
            const MoveJob* next = m->in_flight_.front().get();
            return !next->uses_nvme || next->nvme_queued;
          },
          this));
      if (in_flight_.empty()) return;
      job = std::move(in_flight_.front());  // the entry keeps the slot until it is finished
      finishing_ = job.get();
    }
    Finish(*job);
    absl::MutexLock lock(&mu_);
    // Under mu_, with the job no longer the one finishing: the watchdog queries its events.
    finishing_ = nullptr;
    for (CUevent event : job->after) Driver().cuEventDestroy(event);
    completed_.store(job->sequence, std::memory_order_release);
    in_flight_.pop_front();
  }
}

namespace {

// What an unfinished job waits for, for the stall warning (read-only: event queries).
std::string Waiting(const MoveJob& job, bool finishing) {
  const DriverApi& cu = Driver();
  size_t application = 0;
  for (CUevent event : job.after) application += cu.cuEventQuery(event) == CUDA_ERROR_NOT_READY;
  for (const std::shared_ptr<BusyEvent>& busy : job.busy) application += !busy->Done();
  if (application > 0) {
    return fmt::format("waits for {} piece{} of the application's work queued before it",
                       application, application == 1 ? "" : "s");
  }
  if (job.uses_nvme && !job.nvme_queued) return "waits for the drive (its NVMe steps)";
  return finishing ? "its copies are queued: waits for them, then remaps and commits"
                   : "waits for a slot behind earlier moves";
}

}  // namespace

void Mover::Watchdog() {
  absl::MutexLock lock(&mu_);
  uint64_t last_completed = completed_.load(std::memory_order_acquire);
  int64_t quiet_since = NowNs();
  for (;;) {
    if (mu_.AwaitWithTimeout(absl::Condition(&watchdog_stop_), stall_warning_)) return;
    const uint64_t completed = completed_.load(std::memory_order_acquire);
    if (completed != last_completed || (queue_.empty() && in_flight_.empty())) {
      last_completed = completed;
      quiet_since = NowNs();
      continue;
    }
    // The oldest unfinished job: the one being finished, else the first in flight, else
    // the first queued.
    const MoveJob* oldest = finishing_;
    if (oldest == nullptr && !in_flight_.empty()) oldest = in_flight_.front().get();
    if (oldest == nullptr && !queue_.empty()) oldest = queue_.front().get();
    if (oldest == nullptr) continue;
    // Stalled: pending, with no move finished, for a whole period (a move submitted just
    // before this look is not).
    const int64_t now = NowNs();
    const int64_t stalled_ns = now - std::max(quiet_since, oldest->submit_ns);
    if (stalled_ns < absl::ToInt64Nanoseconds(stall_warning_)) continue;
    SPW_LOG(kWarn,
            "mover: no move has finished for {:.1f} s; {} in flight, {} queued. The oldest, "
            "#{} ({} chunks, submitted {:.1f} s ago{}), {}. Launches that need its chunks "
            "wait with it.",
            stalled_ns / 1e9, in_flight_.size(), queue_.size(), oldest->sequence,
            oldest->steps.size(), (now - oldest->submit_ns) / 1e9,
            oldest->uses_nvme ? ", reads or writes NVMe" : "",
            Waiting(*oldest, oldest == finishing_));
  }
}

bool Mover::UsesNvme(const MoveJob& job) {
  for (const MoveStep& step : job.steps) {
    if (step.kind == MoveStep::Kind::kToNvme || step.chunk->tier == Tier::kNvme) return true;
  }
  return false;
}

std::vector<MoveStep*> Mover::NvmeReads(MoveJob& job) {
  std::vector<MoveStep*> reads;
  for (MoveStep& step : job.steps) {
    bool into = step.kind == MoveStep::Kind::kToDevice || step.kind == MoveStep::Kind::kToHost;
    if (into && step.copy && step.chunk->tier == Tier::kNvme) reads.push_back(&step);
  }
  return reads;
}

absl::Status Mover::StartReads(MoveJob& job, const std::vector<MoveStep*>& reads, size_t up_to,
                               bool may_wait) {
  const DriverApi& cu = Driver();
  if (job.reads.size() < kReadStaging) job.reads.resize(kReadStaging);
  for (; job.reads_started < std::min(up_to, reads.size()); ++job.reads_started) {
    const size_t r = job.reads_started % kReadStaging;
    if (job.reads[r].valid()) break;  // the buffer still holds an earlier read of the job
    const size_t b = kSpillStaging + r;
    if (may_wait) {
      SPW_CHECK_CU(cu.cuEventSynchronize(staging_free_[b]));  // its last copy is done
    } else if (cu.cuEventQuery(staging_free_[b]) != CUDA_SUCCESS) {
      break;
    }
    absl::StatusOr<NvmeStore::Ticket> ticket =
        nvme_->ReadAsync(*reads[job.reads_started]->chunk->nvme, 0, staging_[b], chunk_bytes_);
    if (!ticket.ok()) return ticket.status();
    job.reads[r] = std::move(*ticket);
  }
  return absl::OkStatus();
}

void Mover::StartReadsEarly(MoveJob& job) {
  if (nvme_ == nullptr || !job.abandoned.ok()) return;
  absl::Status status = StartReads(job, NvmeReads(job), kReadStaging, /*may_wait=*/false);
  // ReadIn issues what did not start here, and reports its failure.
  if (!status.ok())
    SPW_LOG(kDebug, "early NVMe read not started: {}", std::string(status.message()));
}

void Mover::AbandonReads(MoveJob& job) {
  for (NvmeStore::Ticket& ticket : job.reads) {
    if (ticket.valid()) nvme_->Wait(std::move(ticket)).IgnoreError();
  }
}

void Mover::Finish(MoveJob& job) {
  absl::Status status = job.abandoned.ok() ? FinishCopies(job) : job.abandoned;
  job.done_ns = NowNs();
  SPW_LOG(kTrace,
          "move {}: {} steps, {} bytes in, {} out, {} read from NVMe, {} written ({} spills "
          "unchanged); queued {} us, ran {} us",
          job.sequence, job.steps.size(), job.bytes_h2d, job.bytes_d2h, job.bytes_nvme_read,
          job.bytes_nvme_written, job.spills_unchanged, (job.start_ns - job.submit_ns) / 1000,
          (job.done_ns - job.start_ns) / 1000);
  if (job.commit) job.commit(job, status);
  // Open the gate: streams held for this job (and earlier ones) go on.
  __atomic_store_n(gate_, static_cast<uint32_t>(job.sequence), __ATOMIC_RELEASE);
}

absl::Status Mover::Map(CUdeviceptr address, CUmemGenericAllocationHandle handle) {
  SPW_CHECK_CU(Driver().cuMemMap(address, chunk_bytes_, 0, handle, 0));
  return GrantAccess(address, chunk_bytes_);
}

absl::Status Mover::GrantAccess(CUdeviceptr address, size_t bytes) {
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device_;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  SPW_CHECK_CU(Driver().cuMemSetAccess(address, bytes, &access, 1));
  return absl::OkStatus();
}

namespace {

// A release or a spill to NVMe leaves the chunk's range unmapped: nothing to map for it.
bool LeavesUnmapped(const MoveStep& step) {
  return step.kind == MoveStep::Kind::kRelease || step.kind == MoveStep::Kind::kToNvme;
}

}  // namespace

absl::Status Mover::CopyOut(MoveJob& job) {
  const DriverApi& cu = Driver();
  size_t evictions = 0;
  for (MoveStep& step : job.steps) {
    const Chunk& chunk = *step.chunk;
    if (!step.copy || step.kind != MoveStep::Kind::kToHost || chunk.tier != Tier::kDevice) {
      continue;
    }
    Slot& slot = slots_[job.sequence % kSlots];
    if (job.bytes_d2h == 0) SPW_CHECK_CU(cu.cuEventRecord(slot.out_start, d2h_));
    SPW_CHECK_CU(cu.cuMemcpyAsync(step.target.home, chunk.device.home, chunk_bytes_, d2h_));
    std::vector<CUevent>& evicted = slot.evicted;
    if (evictions == evicted.size()) {
      CUevent event = nullptr;
      SPW_CHECK_CU(cu.cuEventCreate(&event, CU_EVENT_DISABLE_TIMING));
      evicted.push_back(event);
    }
    step.copied_out = evicted[evictions++];
    SPW_CHECK_CU(cu.cuEventRecord(step.copied_out, d2h_));
    job.bytes_d2h += chunk_bytes_;
  }
  return absl::OkStatus();
}

absl::Status Mover::FetchFromHost(MoveJob& job, bool behind_spills, CUstream stream, CUevent start,
                                  uint64_t& bytes) {
  const DriverApi& cu = Driver();
  for (MoveStep& step : job.steps) {
    const Chunk& chunk = *step.chunk;
    if (step.kind != MoveStep::Kind::kToDevice || !step.copy || chunk.tier == Tier::kNvme ||
        BehindSpill(job, step) != behind_spills) {
      continue;
    }
    // Into the HBM chunk an eviction of this job gives up: once that copy is out. (A
    // spill's copy into staging is done before the NVMe thread gets here.)
    if (step.donor >= 0 && job.steps[step.donor].copied_out != nullptr) {
      SPW_CHECK_CU(cu.cuStreamWaitEvent(stream, job.steps[step.donor].copied_out, 0));
    }
    // Timed from here, after the first donor's copy out: the meter measures the link,
    // not how long the first fetch waited for room.
    if (start != nullptr && bytes == 0) SPW_CHECK_CU(cu.cuEventRecord(start, stream));
    SPW_CHECK_CU(cu.cuMemcpyAsync(step.target.home, chunk.host.home, chunk_bytes_, stream));
    bytes += chunk_bytes_;
  }
  return absl::OkStatus();
}

bool Mover::BehindSpill(const MoveJob& job, const MoveStep& step) {
  return step.donor >= 0 && job.steps[step.donor].kind == MoveStep::Kind::kToNvme;
}

absl::Status Mover::QueueNvmeCopies(MoveJob& job) {
  if (absl::Status s = OrderAfterApplication(job, nvme_d2h_, nvme_h2d_); !s.ok()) return s;
  if (absl::Status s = SpillOut(job); !s.ok()) return s;
  // SpillOut waited for each spill's copy into staging before writing it.
  absl::Status fetched =
      FetchFromHost(job, /*behind_spills=*/true, nvme_h2d_, nullptr, job.nvme_bytes_h2d);
  if (!fetched.ok()) return fetched;
  return ReadIn(job);
}

absl::Status Mover::SpillOut(MoveJob& job) {
  const DriverApi& cu = Driver();
  std::vector<NvmeStore::Ticket> writes(kSpillStaging);
  size_t next = 0;
  for (MoveStep& step : job.steps) {
    const Chunk& chunk = *step.chunk;
    if (!step.copy || step.kind != MoveStep::Kind::kToNvme) continue;
    // Through a staging buffer: the bytes must be in plain host memory for io_uring.
    size_t b = next++ % kSpillStaging;
    if (writes[b].valid()) {
      if (absl::Status s = nvme_->Wait(std::move(writes[b])); !s.ok()) return s;
    }
    CUdeviceptr source = chunk.tier == Tier::kDevice ? chunk.device.home : chunk.host.home;
    SPW_CHECK_CU(cu.cuMemcpyAsync(reinterpret_cast<CUdeviceptr>(staging_[b]), source, chunk_bytes_,
                                  nvme_d2h_));
    SPW_CHECK_CU(cu.cuEventRecord(staging_free_[b], nvme_d2h_));
    SPW_CHECK_CU(cu.cuEventSynchronize(staging_free_[b]));
    if (chunk.tier == Tier::kDevice) job.nvme_bytes_d2h += chunk_bytes_;
    // Bytes the extent already holds (weights the device only read, say) are not written:
    // the drive's time and wear go to bytes that changed.
    step.written = HashContent(staging_[b], chunk_bytes_);
    if (step.on_nvme == step.written) {
      step.unchanged = true;
      ++job.spills_unchanged;
      continue;
    }
    absl::StatusOr<NvmeStore::Ticket> ticket =
        nvme_->WriteAsync(step.extent, 0, staging_[b], chunk_bytes_);
    if (!ticket.ok()) return ticket.status();
    writes[b] = std::move(*ticket);
    job.bytes_nvme_written += chunk_bytes_;
  }
  absl::Status status;
  for (auto& ticket : writes) {
    if (ticket.valid()) status.Update(nvme_->Wait(std::move(ticket)));
  }
  return status;
}

absl::Status Mover::ReadIn(MoveJob& job) {
  const DriverApi& cu = Driver();
  const std::vector<MoveStep*> reads = NvmeReads(job);
  if (reads.empty()) return absl::OkStatus();
  // NVMe -> staging -> target, pipelined: up to kReadStaging reads are in flight while
  // the copies out of the staging buffers already filled run. The first ones may have
  // been started before the job (StartReadsEarly).
  absl::Status status = StartReads(job, reads, kReadStaging, /*may_wait=*/true);
  for (size_t i = 0; i < reads.size() && status.ok(); ++i) {
    const size_t r = i % kReadStaging;
    const size_t b = kSpillStaging + r;
    status = nvme_->Wait(std::move(job.reads[r]));
    // A failed read is retried before the move is given up: an I/O error is often
    // transient, and a guarded chunk left on NVMe cannot be used by the next launch.
    for (int retry = 0; retry < kReadRetries && !status.ok(); ++retry) {
      SPW_LOG(kWarn, "NVMe read failed ({}), retrying", std::string(status.message()));
      status = nvme_->Read(*reads[i]->chunk->nvme, 0, staging_[b], chunk_bytes_);
    }
    if (!status.ok()) break;
    job.bytes_nvme_read += chunk_bytes_;
    const MoveStep& step = *reads[i];
    // Into the HBM chunk an eviction gives up (the starter queued its copy, and recorded
    // this event, before the job came here); a spill's copy is done already.
    if (step.donor >= 0 && job.steps[step.donor].copied_out != nullptr) {
      SPW_CHECK_CU(cu.cuStreamWaitEvent(nvme_h2d_, job.steps[step.donor].copied_out, 0));
    }
    SPW_CHECK_CU(cu.cuMemcpyAsync(step.target.home, reinterpret_cast<CUdeviceptr>(staging_[b]),
                                  chunk_bytes_, nvme_h2d_));
    SPW_CHECK_CU(cu.cuEventRecord(staging_free_[b], nvme_h2d_));
    if (step.kind == MoveStep::Kind::kToDevice) job.nvme_bytes_h2d += chunk_bytes_;
    status = StartReads(job, reads, i + 1 + kReadStaging, /*may_wait=*/true);
  }
  return status;
}

absl::Status Mover::StartCopies(MoveJob& job) {
  const Slot& slot = slots_[job.sequence % kSlots];
  return RecordCopiesDone(QueueCopies(job), slot.out_done, d2h_, slot.in_done, h2d_);
}

absl::Status Mover::RecordCopiesDone(absl::Status status, CUevent out, CUstream d2h, CUevent in,
                                     CUstream h2d) {
  // Recorded even when queuing failed part way: FinishCopies waits for these, so for what
  // the job queued, never for a later job's copies (those may wait at this job's gate).
  const DriverApi& cu = Driver();
  CUresult out_recorded = cu.cuEventRecord(out, d2h);
  CUresult in_recorded = cu.cuEventRecord(in, h2d);
  if (status.ok() && out_recorded != CUDA_SUCCESS)
    status = CudaError(out_recorded, "cuEventRecord");
  if (status.ok() && in_recorded != CUDA_SUCCESS) status = CudaError(in_recorded, "cuEventRecord");
  return status;
}

absl::Status Mover::OrderAfterApplication(const MoveJob& job, CUstream d2h, CUstream h2d) {
  const DriverApi& cu = Driver();
  for (CUevent event : job.after) {
    SPW_CHECK_CU(cu.cuStreamWaitEvent(d2h, event, 0));
    SPW_CHECK_CU(cu.cuStreamWaitEvent(h2d, event, 0));
  }
  for (const std::shared_ptr<BusyEvent>& busy : job.busy) {
    if (busy->Done()) continue;
    SPW_CHECK_CU(cu.cuStreamWaitEvent(d2h, busy->event, 0));
    SPW_CHECK_CU(cu.cuStreamWaitEvent(h2d, busy->event, 0));
  }
  return absl::OkStatus();
}

absl::Status Mover::QueueCopies(MoveJob& job) {
  if (absl::Status s = OrderAfterApplication(job, d2h_, h2d_); !s.ok()) return s;
  // Out of HBM and into it at once: a fetch into an HBM chunk an eviction gives up waits
  // for that copy alone (MoveStep::copied_out), so both directions of the link stay busy.
  if (absl::Status s = CopyOut(job); !s.ok()) return s;
  return FetchFromHost(job, /*behind_spills=*/false, h2d_, slots_[job.sequence % kSlots].in_start,
                       job.bytes_h2d);
}

absl::Status Mover::FinishCopies(MoveJob& job) {
  const DriverApi& cu = Driver();
  // Every copy stream the job used also waited for the application's work (job.after):
  // once the job's copies are done, no application stream can be using any of its chunks.
  // After a failure, copies may be queued up to where it failed: they end before anything
  // is reused (the events were recorded after them).
  const Slot& slot = slots_[job.sequence % kSlots];
  CUresult out = cu.cuEventSynchronize(slot.out_done);
  CUresult in = cu.cuEventSynchronize(slot.in_done);
  if (job.uses_nvme) {
    CUresult nvme_out = cu.cuEventSynchronize(slot.nvme_out_done);
    CUresult nvme_in = cu.cuEventSynchronize(slot.nvme_in_done);
    if (out == CUDA_SUCCESS) out = nvme_out;
    if (in == CUDA_SUCCESS) in = nvme_in;
    job.bytes_h2d += job.nvme_bytes_h2d;
    job.bytes_d2h += job.nvme_bytes_d2h;
  }
  for (MoveStep& step : job.steps) step.copied_out = nullptr;
  if (!job.started.ok()) return job.started;
  if (out != CUDA_SUCCESS) return CudaError(out, "copying out of HBM");
  if (in != CUDA_SUCCESS) return CudaError(in, "copying into HBM");
  // A job with NVMe steps copies at the drive's pace, not the link's: not a sample. In the
  // others, bytes moved one way means its start event was recorded (before the first copy).
  if (!job.uses_nvme) {
    if (job.bytes_h2d > 0) {
      h2d_link_.Add(job.bytes_h2d, ElapsedSeconds(slot.in_start, slot.in_done));
    }
    if (job.bytes_d2h > 0) {
      d2h_link_.Add(job.bytes_d2h, ElapsedSeconds(slot.out_start, slot.out_done));
    }
  }
  const int64_t remap_start = NowNs();
  absl::Status remapped = Remap(job);
  job.remap_ns = NowNs() - remap_start;
  return remapped;
}

absl::Status Mover::Remap(MoveJob& job) {
  const DriverApi& cu = Driver();
  // Re-point ranges. Every copy is done and every stream that may touch these chunks
  // waits at the gate, so the short unmapped window is never observed. Adjacent chunks go
  // together: one unmap and one access change per run instead of one per chunk (each is
  // a page-table update, tens of microseconds on a GPU).
  std::vector<MoveStep*> order;
  order.reserve(job.steps.size());
  for (MoveStep& step : job.steps) order.push_back(&step);
  std::sort(order.begin(), order.end(), [](const MoveStep* a, const MoveStep* b) {
    return a->chunk->address < b->chunk->address;
  });
  auto mapped = [](const MoveStep* step) { return step->chunk->tier != Tier::kNvme; };
  for (size_t i = 0; i < order.size();) {
    // A run: chunks next to one another that are all mapped now, or all not.
    size_t j = i + 1;
    while (j < order.size() &&
           order[j]->chunk->address == order[j - 1]->chunk->address + chunk_bytes_ &&
           mapped(order[j]) == mapped(order[i])) {
      ++j;
    }
    const CUdeviceptr base = order[i]->chunk->address;
    if (mapped(order[i])) SPW_CHECK_CU(cu.cuMemUnmap(base, (j - i) * chunk_bytes_));
    for (size_t k = i; k < j; ++k) {
      MoveStep& step = *order[k];
      if (LeavesUnmapped(step)) continue;
      CUresult r = cu.cuMemMap(step.chunk->address, chunk_bytes_, 0, step.target.handle, 0);
      if (r != CUDA_SUCCESS) {
        // Put the old backing back rather than leave ranges unbacked: this chunk's and
        // those of the run not mapped yet (the ones before it are remapped: steps done).
        for (size_t u = k; u < j && mapped(order[i]); ++u) {
          const Chunk& chunk = *order[u]->chunk;
          const PhysicalChunk& old = chunk.tier == Tier::kDevice ? chunk.device : chunk.host;
          Map(chunk.address, old.handle).IgnoreError();
        }
        for (size_t u = i; u < k; ++u) order[u]->remapped = true;
        if (absl::Status s = SetAccess(order, i, k); !s.ok()) return s;
        return CudaError(r, "cuMemMap");
      }
    }
    for (size_t k = i; k < j; ++k) order[k]->remapped = true;
    if (absl::Status s = SetAccess(order, i, j); !s.ok()) return s;
    i = j;
  }
  return absl::OkStatus();
}

absl::Status Mover::SetAccess(const std::vector<MoveStep*>& order, size_t begin, size_t end) {
  // Runs of chunks mapped anew (a release or a spill leaves a hole).
  for (size_t i = begin; i < end;) {
    if (LeavesUnmapped(*order[i])) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < end && !LeavesUnmapped(*order[j])) ++j;
    if (absl::Status s = GrantAccess(order[i]->chunk->address, (j - i) * chunk_bytes_); !s.ok()) {
      return s;
    }
    i = j;
  }
  return absl::OkStatus();
}

}  // namespace spillway
