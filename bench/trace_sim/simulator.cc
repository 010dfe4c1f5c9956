// SPDX-License-Identifier: Apache-2.0
//
// The replay engine (contract in simulator.h).

#include "simulator.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace spillway::trace_sim {

Replay MakeReplay(const Trace& trace, const Machine& machine) {
  Replay r;
  r.trace = &trace;
  r.chunk_dirty.resize(trace.total_chunks);
  r.chunk_alloc.resize(trace.total_chunks);
  for (uint32_t i = 0; i < trace.allocations.size(); ++i) {
    const Allocation& a = trace.allocations[i];
    for (uint32_t k = 0; k < a.num_chunks; ++k) {
      r.chunk_dirty[a.first_chunk + k] = a.kind == AllocKind::kWeights ? 0 : 1;
      r.chunk_alloc[a.first_chunk + k] = i;
    }
  }
  std::vector<uint32_t> seen_in(trace.total_chunks, UINT32_MAX);
  for (const Event& e : trace.events) {
    switch (e.type) {
      case Event::Type::kAlloc:
        break;
      case Event::Type::kFree:
        r.ops.push_back({Replay::Op::Type::kFree, e.alloc});
        break;
      case Event::Type::kStep:
        r.ops.push_back({Replay::Op::Type::kStep, 0});
        ++r.steps;
        break;
      case Event::Type::kLaunch: {
        const uint32_t n = static_cast<uint32_t>(r.launches.size());
        Replay::Launch l;
        l.stream = e.stream;
        l.begin = static_cast<uint32_t>(r.chunks.size());
        uint64_t bytes = 0;
        for (const ChunkRange& range : e.ranges) {
          const Allocation& a = trace.allocations[range.alloc];
          for (uint32_t k = range.first; k <= range.last; ++k) {
            const ChunkId c = a.first_chunk + k;
            if (seen_in[c] == n) continue;  // Touched twice by one launch: one access.
            seen_in[c] = n;
            r.chunks.push_back(c);
            bytes += std::min<uint64_t>(trace.chunk_bytes, a.bytes - k * trace.chunk_bytes);
          }
        }
        l.end = static_cast<uint32_t>(r.chunks.size());
        if (machine.compute_ns_per_launch >= 0) {
          l.compute_ns = machine.compute_ns_per_launch;
        } else if (e.compute_ns >= 0) {
          l.compute_ns = static_cast<double>(e.compute_ns);
        } else {
          // A recorded trace has no compute time: a kernel at least reads what it touches.
          l.compute_ns = static_cast<double>(bytes) / machine.hbm_gbps;
        }
        r.launches.push_back(l);
        r.ops.push_back({Replay::Op::Type::kLaunch, n});
        break;
      }
    }
  }
  return r;
}

void VictimOrder::Reset(size_t num_chunks, const std::vector<uint8_t>* dirty) {
  set_.clear();
  key_.assign(num_chunks, 0);
  in_set_.assign(num_chunks, 0);
  dirty_ = dirty;
}

void VictimOrder::Set(ChunkId c, int64_t key) {
  const int clean = (*dirty_)[c] ? 0 : 1;
  if (in_set_[c]) set_.erase({key_[c], clean, c});
  key_[c] = key;
  in_set_[c] = 1;
  set_.insert({key, clean, c});
}

void VictimOrder::Remove(ChunkId c) {
  if (!in_set_[c]) return;
  set_.erase({key_[c], (*dirty_)[c] ? 0 : 1, c});
  in_set_[c] = 0;
}

ChunkId VictimOrder::Pick(const Simulator& sim, int64_t min_key) const {
  for (auto it = set_.rbegin(); it != set_.rend(); ++it) {
    if (std::get<0>(*it) <= min_key) return kNoChunk;
    if (!sim.IsPinned(std::get<2>(*it))) return std::get<2>(*it);
  }
  return kNoChunk;
}

ChunkId VictimOrder::PickIdle(const Simulator& sim, int64_t min_key, double now, int scan,
                              const std::vector<uint8_t>& keep) const {
  ChunkId first = kNoChunk;
  for (auto it = set_.rbegin(); it != set_.rend() && scan > 0; ++it) {
    if (std::get<0>(*it) <= min_key) break;
    const ChunkId c = std::get<2>(*it);
    if (sim.IsPinned(c) || keep[c]) continue;
    if (sim.BusyUntil(c) <= now) return c;
    if (first == kNoChunk) first = c;
    --scan;
  }
  return first;
}

Simulator::Simulator(const Replay& replay, const Machine& machine, Policy& policy)
    : replay_(replay), machine_(machine), policy_(policy) {
  const double chunk = static_cast<double>(replay.trace->chunk_bytes);
  h2d_ns_per_chunk_ = chunk / machine.h2d_gbps;
  d2h_ns_per_chunk_ = chunk / machine.d2h_gbps;
  const size_t n = replay.trace->total_chunks;
  resident_.assign(n, 0);
  pinned_.assign(n, 0);
  materialised_.assign(n, 0);
  arrival_.assign(n, 0);
  busy_until_.assign(n, 0);
  freed_.assign(replay.trace->allocations.size(), 0);
  const uint64_t slots = machine.hbm_bytes / replay.trace->chunk_bytes;
  for (uint64_t i = 0; i < slots; ++i) free_slots_.push(0);
  host_limited_ = machine.host_bytes != Machine::kUnlimited;
  in_host_.assign(n, 0);
  host_ready_.assign(n, 0);
  nvme_read_ns_per_chunk_ = chunk / machine.nvme_read_gbps;
  nvme_write_ns_per_chunk_ = chunk / machine.nvme_write_gbps;
}

void Simulator::Evict(ChunkId c) {
  double slot_free = std::max(busy_until_[c], arrival_[c]);
  if (replay_.chunk_dirty[c]) {
    const double start = std::max(d2h_free_, slot_free);
    d2h_free_ = start + d2h_ns_per_chunk_;
    slot_free = d2h_free_;
    result_.d2h_bytes += replay_.trace->chunk_bytes;
  }
  if (host_limited_) {
    // Into the host tier; SettleHost (after the Bring that follows) drops what is over.
    host_order_.Set(c, policy_.HostKey(c));
    in_host_[c] = 1;
    host_ready_[c] = slot_free;
    ++host_count_;
  }
  resident_[c] = 0;
  free_slots_.push(slot_free);
  policy_.OnRemove(c);
}

void Simulator::Bring(ChunkId c, double now) {
  const double slot_free = free_slots_.top();
  free_slots_.pop();
  if (replay_.chunk_dirty[c] && !materialised_[c]) {
    arrival_[c] = std::max(now, slot_free);  // Fresh memory: nothing to copy.
  } else {
    double start = std::max({h2d_free_, now, slot_free});
    if (host_limited_) {
      if (in_host_[c]) {
        in_host_[c] = 0;
        host_order_.Remove(c);
        --host_count_;
        start = std::max(start, host_ready_[c]);
      } else {  // On NVMe: read into a bounce buffer first, then copied on.
        start = std::max(start, ReadFromNvme(now, 0));
      }
    }
    h2d_free_ = start + h2d_ns_per_chunk_;
    arrival_[c] = h2d_free_;
    result_.h2d_bytes += replay_.trace->chunk_bytes;
  }
  materialised_[c] = 1;
  resident_[c] = 1;
  policy_.OnInsert(c, current_launch_);
  if (host_limited_) SettleHost();
}

bool Simulator::Stage(ChunkId c, double now, int64_t key) {
  double slot_free = 0;
  if (host_count_ >= host_slots_) {
    const ChunkId v = host_order_.Pick(*this, key);
    if (v == kNoChunk) return false;
    slot_free = DropFromHost(v);
  }
  in_host_[c] = 1;
  ++host_count_;
  host_ready_[c] = ReadFromNvme(now, slot_free);
  host_order_.Set(c, key);
  return true;
}

void Simulator::SettleHost() {
  while (host_count_ > host_slots_) {
    const ChunkId v = host_order_.Pick(*this);
    if (v == kNoChunk) return;
    DropFromHost(v);
  }
}

double Simulator::DropFromHost(ChunkId c) {
  in_host_[c] = 0;
  host_order_.Remove(c);
  --host_count_;
  if (!replay_.chunk_dirty[c]) return host_ready_[c];
  nvme_write_free_ = std::max(nvme_write_free_, host_ready_[c]) + nvme_write_ns_per_chunk_;
  result_.nvme_write_bytes += replay_.trace->chunk_bytes;
  return nvme_write_free_;
}

double Simulator::ReadFromNvme(double now, double slot_free) {
  nvme_read_free_ = std::max({nvme_read_free_, now, slot_free}) + nvme_read_ns_per_chunk_;
  result_.nvme_read_bytes += replay_.trace->chunk_bytes;
  return nvme_read_free_;
}

absl::StatusOr<SimResult> Simulator::Run() {
  result_ = SimResult{};
  result_.policy = policy_.Name();
  policy_.Begin(replay_, machine_);
  if (host_limited_) {
    // The host starts with the first host_slots weight chunks touched; the rest is on NVMe.
    host_order_.Reset(replay_.trace->total_chunks, &replay_.chunk_dirty);
    host_slots_ = machine_.host_bytes / replay_.trace->chunk_bytes;
    for (ChunkId c : replay_.chunks) {
      if (host_count_ == host_slots_) break;
      if (replay_.chunk_dirty[c] || in_host_[c]) continue;
      in_host_[c] = 1;
      host_order_.Set(c, policy_.HostKey(c));
      ++host_count_;
    }
  }
  absl::flat_hash_map<uint64_t, double> stream_ready;
  for (const Replay::Op& op : replay_.ops) {
    if (op.type == Replay::Op::Type::kStep) {
      result_.steps.push_back({.time_ns = result_.total_ns,
                               .h2d_bytes = result_.h2d_bytes,
                               .d2h_bytes = result_.d2h_bytes,
                               .nvme_read_bytes = result_.nvme_read_bytes,
                               .nvme_write_bytes = result_.nvme_write_bytes,
                               .compute_ns = result_.compute_ns,
                               .stall_ns = result_.stall_ns});
      continue;
    }
    if (op.type == Replay::Op::Type::kFree) {
      const Allocation& a = replay_.trace->allocations[op.index];
      freed_[op.index] = 1;
      for (ChunkId c = a.first_chunk; c < a.first_chunk + a.num_chunks; ++c) {
        if (resident_[c]) {
          resident_[c] = 0;
          free_slots_.push(std::max(busy_until_[c], arrival_[c]));
          policy_.OnRemove(c);
        }
        if (in_host_[c]) {
          in_host_[c] = 0;
          host_order_.Remove(c);
          --host_count_;
        }
        materialised_[c] = 0;
      }
      continue;
    }
    const size_t n = op.index;
    current_launch_ = n;
    const Replay::Launch& launch = replay_.launches[n];
    const auto chunks = replay_.LaunchChunks(n);
    policy_.BeforeLaunch(n);
    const double ready = stream_ready[launch.stream];
    for (ChunkId c : chunks) pinned_[c] = 1;
    double start = ready;
    for (ChunkId c : chunks) {
      if (!resident_[c]) {
        if (free_slots_.empty()) {
          const ChunkId victim = policy_.ChooseVictim(*this, n);
          if (victim == kNoChunk) {
            return absl::ResourceExhaustedError(
                absl::StrCat("launch ", n, " touches ", chunks.size(), " chunks; HBM holds fewer (",
                             machine_.hbm_bytes, " bytes)"));
          }
          Evict(victim);
        }
        Bring(c, ready);
      }
      start = std::max(start, arrival_[c]);
    }
    const double end = start + launch.compute_ns;
    result_.stall_ns += start - ready;
    result_.compute_ns += launch.compute_ns;
    result_.total_ns = std::max(result_.total_ns, end);
    stream_ready[launch.stream] = end;
    for (size_t i = 0; i < chunks.size(); ++i) {
      const ChunkId c = chunks[i];
      busy_until_[c] = std::max(busy_until_[c], end);
      pinned_[c] = 0;
      policy_.OnAccess(c, n, launch.begin + i);
    }
    policy_.AfterLaunch(*this, n, start);
  }
  return result_;
}

}  // namespace spillway::trace_sim
