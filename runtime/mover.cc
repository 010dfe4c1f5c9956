// SPDX-License-Identifier: Apache-2.0
#include "runtime/mover.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "runtime/driver_api.h"

namespace spillway {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::StatusOr<std::unique_ptr<Mover>> Mover::Create(int device, size_t chunk_bytes) {
  std::unique_ptr<Mover> mover(new Mover(device, chunk_bytes));
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
  *mover->gate_ = 0;
  mover->thread_ = std::thread([m = mover.get()] { m->Run(); });
  return mover;
}

Mover::~Mover() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  const DriverApi& cu = Driver();
  if (h2d_ != nullptr) cu.cuStreamDestroy(h2d_);
  if (d2h_ != nullptr) cu.cuStreamDestroy(d2h_);
  // The gate is not freed: application streams may still have waits on it queued (all
  // satisfied, but a stream reads the word when it reaches the wait). Freeing it would
  // turn those into illegal-address faults; it is 4 bytes for the life of the process.
}

absl::StatusOr<uint64_t> Mover::Submit(std::unique_ptr<MoveJob> job) {
  const DriverApi& cu = Driver();
  absl::MutexLock lock(&mu_);
  job->sequence = next_sequence_++;
  job->submit_ns = NowNs();
  uint64_t sequence = job->sequence;
  // Everything each stream has queued so far must finish before the job touches the
  // chunks; everything it queues later must wait for the job.
  auto gate_address = reinterpret_cast<CUdeviceptr>(gate_);
  for (CUstream stream : job->streams) {
    CUevent event = nullptr;
    CUresult r = cu.cuEventCreate(&event, CU_EVENT_DISABLE_TIMING);
    if (r == CUDA_SUCCESS && cu.cuEventRecord(event, stream) != CUDA_SUCCESS) {
      cu.cuEventDestroy(event);  // a stream the application destroyed: nothing runs there
      continue;
    }
    if (r == CUDA_SUCCESS) {
      job->after.push_back(event);
      r = cu.cuStreamWaitValue32(stream, gate_address, static_cast<cuuint32_t>(sequence),
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
  }
  queue_.push_back(std::move(job));
  return sequence;
}

void Mover::WaitFor(uint64_t sequence) {
  struct Target {
    const Mover* mover;
    uint64_t sequence;
  } target{this, sequence};
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Target* t) { return t->mover->completed_.load(std::memory_order_acquire) >= t->sequence; },
      &target));
}

bool Mover::pending() {
  absl::MutexLock lock(&mu_);
  return completed_.load(std::memory_order_acquire) + 1 < next_sequence_;
}

void Mover::WaitForAll() {
  uint64_t last = 0;
  {
    absl::MutexLock lock(&mu_);
    last = next_sequence_ - 1;
  }
  WaitFor(last);
}

void Mover::Run() {
  Driver().cuCtxSetCurrent(context_);
  for (;;) {
    std::unique_ptr<MoveJob> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Mover* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) {
            return !m->queue_.empty() || m->stopping_;
          },
          this));
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::Status status = job->abandoned.ok() ? Execute(*job) : job->abandoned;
    job->done_ns = NowNs();
    if (job->commit) job->commit(*job, status);
    for (CUevent event : job->after) Driver().cuEventDestroy(event);
    // Open the gate: streams held for this job (and earlier ones) go on.
    __atomic_store_n(gate_, static_cast<uint32_t>(job->sequence), __ATOMIC_RELEASE);
    absl::MutexLock lock(&mu_);
    completed_.store(job->sequence, std::memory_order_release);
  }
}

absl::Status Mover::Map(CUdeviceptr address, CUmemGenericAllocationHandle handle) {
  const DriverApi& cu = Driver();
  SPW_CHECK_CU(cu.cuMemMap(address, chunk_bytes_, 0, handle, 0));
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device_;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  SPW_CHECK_CU(cu.cuMemSetAccess(address, chunk_bytes_, &access, 1));
  return absl::OkStatus();
}

absl::Status Mover::Execute(MoveJob& job) {
  const DriverApi& cu = Driver();
  for (CUevent event : job.after) {
    SPW_CHECK_CU(cu.cuStreamWaitEvent(d2h_, event, 0));
    SPW_CHECK_CU(cu.cuStreamWaitEvent(h2d_, event, 0));
  }
  // Phase 1: evictions copy out first; their device chunks may be what fetches reuse.
  for (const MoveStep& step : job.steps) {
    if (step.kind != MoveStep::Kind::kEvict || !step.copy) continue;
    SPW_CHECK_CU(cu.cuMemcpyAsync(step.target.home, step.chunk->device.home, chunk_bytes_, d2h_));
    job.bytes_d2h += chunk_bytes_;
  }
  // Also the point after which no application stream can be using any chunk of the job.
  SPW_CHECK_CU(cu.cuStreamSynchronize(d2h_));
  // Phase 2: fetches copy in.
  for (const MoveStep& step : job.steps) {
    if (step.kind != MoveStep::Kind::kFetch || !step.copy) continue;
    SPW_CHECK_CU(cu.cuMemcpyAsync(step.target.home, step.chunk->host.home, chunk_bytes_, h2d_));
    job.bytes_h2d += chunk_bytes_;
  }
  SPW_CHECK_CU(cu.cuStreamSynchronize(h2d_));
  // Phase 3: re-point ranges. Every copy is done and every stream that may touch these
  // chunks waits at the gate, so the short unmapped window is never observed.
  for (MoveStep& step : job.steps) {
    Chunk& chunk = *step.chunk;
    bool mapped = chunk.tier != Tier::kNvme;
    if (mapped) SPW_CHECK_CU(cu.cuMemUnmap(chunk.address, chunk_bytes_));
    if (step.kind == MoveStep::Kind::kRelease) {
      step.remapped = true;
      continue;
    }
    absl::Status status = Map(chunk.address, step.target.handle);
    if (!status.ok()) {
      // Put the old backing back rather than leave the range unbacked.
      const PhysicalChunk& old = chunk.tier == Tier::kDevice ? chunk.device : chunk.host;
      if (mapped) Map(chunk.address, old.handle).IgnoreError();
      return status;
    }
    step.remapped = true;
  }
  return absl::OkStatus();
}

}  // namespace spillway
