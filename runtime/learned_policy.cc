// SPDX-License-Identifier: Apache-2.0
#include "runtime/learned_policy.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "runtime/log.h"

namespace spillway {

void LearnedPolicy::OnAllocate(Allocation* allocation) {
  live_[allocation->id] = allocation;
  records_.try_emplace(allocation);
}

void LearnedPolicy::OnFree(Allocation* allocation) {
  live_.erase(allocation->id);
  auto it = records_.find(allocation);
  if (it == records_.end()) return;
  if (it->second.resident > 0) order_.erase({it->second.key, allocation});
  records_.erase(it);
}

void LearnedPolicy::OnResident(Chunk* chunk) {
  chunk->last_use = current_;
  Record& record = records_[chunk->allocation];
  if (record.resident++ == 0) {
    record.key = KeyOf(chunk->allocation, record);
    order_.insert({record.key, chunk->allocation});
  }
}

void LearnedPolicy::OnLeave(Chunk* chunk) {
  auto it = records_.find(chunk->allocation);
  if (it == records_.end() || it->second.resident == 0) return;
  if (--it->second.resident == 0) order_.erase({it->second.key, chunk->allocation});
}

void LearnedPolicy::OnTouch(Chunk* chunk) { chunk->last_use = current_; }

void LearnedPolicy::OnUse(Allocation* allocation) {
  // While everything fits, a launch costs what it costs under LRU (the first victims are
  // then picked without recency: nothing has had to leave before).
  if (!active_) return;
  Record& record = records_[allocation];
  record.last_use = current_;
  Refile(allocation, record);
}

int64_t LearnedPolicy::NextUse(const Allocation* allocation, int64_t n) const {
  if (period_ == 0) return kNever;
  auto it = phases_.find(allocation->id);
  if (it == phases_.end()) return kNever;
  const std::vector<int64_t>& phases = it->second;  // sorted, each in [0, period_)
  const int64_t phase = n % period_;
  auto next = std::upper_bound(phases.begin(), phases.end(), phase);
  if (next != phases.end()) return n + (*next - phase);
  return n + (phases.front() + period_ - phase);
}

int64_t LearnedPolicy::KeyOf(const Allocation* allocation, const Record& record) const {
  if (allocation->advice & kAdviceCold) return kNever;
  // Before anything is learned: the least recently used first.
  if (period_ == 0) return -record.last_use;
  const int64_t next = NextUse(allocation, record.last_use);
  // A predicted use that passed without it: the prediction is wrong for it.
  if (next <= current_) return kNever - 1;
  return next;
}

void LearnedPolicy::Refile(const Allocation* allocation, Record& record) {
  const int64_t key = KeyOf(allocation, record);
  if (key == record.key) return;
  if (record.resident > 0) {
    order_.erase({record.key, allocation});
    order_.insert({key, allocation});
  }
  record.key = key;
}

void LearnedPolicy::RekeyAll() {
  order_.clear();
  for (auto& [allocation, record] : records_) {
    record.key = KeyOf(allocation, record);
    if (record.resident > 0) order_.insert({record.key, allocation});
  }
}

void LearnedPolicy::OnLaunch(CUstream stream, std::span<Allocation* const> allocations) {
  if (!active_) return;
  const int64_t n = ++current_;
  uint64_t signature = absl::HashOf(reinterpret_cast<uintptr_t>(stream));
  for (const Allocation* allocation : allocations) {
    signature = absl::HashOf(signature, allocation->id);
  }
  if (period_ > 0 && At(n - period_).signature != signature) Forget();
  if (period_ == 0) {
    if (candidate_ > 0 && n > candidate_ && At(n - candidate_).signature == signature) {
      if (++run_ >= candidate_) {
        Launch& launch = At(n);  // Learn reads the whole period, this launch included
        launch.signature = signature;
        launch.ids.clear();
        for (const Allocation* allocation : allocations) launch.ids.push_back(allocation->id);
        Learn(candidate_);
        last_seen_[signature] = n;
        return;
      }
    } else {
      candidate_ = 0;
      auto it = last_seen_.find(signature);
      if (it != last_seen_.end() && n - it->second <= kMaxPeriod) {
        candidate_ = n - it->second;
        run_ = 1;
      }
    }
  }
  if (last_seen_.size() > 4 * static_cast<size_t>(kMaxPeriod)) last_seen_.clear();
  last_seen_[signature] = n;
  Launch& launch = At(n);
  launch.signature = signature;
  launch.ids.clear();
  for (const Allocation* allocation : allocations) launch.ids.push_back(allocation->id);
}

void LearnedPolicy::Learn(int64_t period) {
  period_ = period;
  candidate_ = run_ = 0;
  ++epoch_;
  phases_.clear();
  for (int64_t i = current_ - period + 1; i <= current_; ++i) {
    for (uint64_t id : At(i).ids) {
      std::vector<int64_t>& phases = phases_[id];
      const int64_t phase = i % period;
      if (phases.empty() || phases.back() != phase) phases.push_back(phase);
    }
  }
  for (auto& [id, phases] : phases_) std::sort(phases.begin(), phases.end());
  RekeyAll();
  SPW_LOG(kDebug, "learned policy: a period of {} launches (at launch {}, {} allocations)", period,
          current_, phases_.size());
}

void LearnedPolicy::Forget() {
  SPW_LOG(kDebug, "learned policy: launch {} differs from the one {} before: relearning", current_,
          period_);
  period_ = candidate_ = run_ = 0;
  ++epoch_;
  phases_.clear();
  RekeyAll();
}

void LearnedPolicy::Predicted(int64_t m, std::vector<Allocation*>* out) const {
  if (period_ == 0 || m <= current_ || m > current_ + period_) return;
  for (uint64_t id : At(m - period_).ids) {
    auto it = live_.find(id);
    if (it != live_.end()) out->push_back(it->second);
  }
}

std::vector<Chunk*> LearnedPolicy::PickVictims(size_t count,
                                               const std::function<bool(const Chunk*)>& eligible,
                                               int64_t used_after) {
  if (ring_.empty()) ring_.resize(static_cast<size_t>(kMaxPeriod) + 1);
  active_ = true;
  if (period_ > 0) {
    // Keys at or before the current launch belong to predicted uses that passed without
    // the allocation: re-filed now (as mispredicted, they leave first).
    std::vector<const Allocation*> passed;
    for (auto it = order_.begin(); it != order_.end() && it->first <= current_; ++it) {
      passed.push_back(it->second);
    }
    for (const Allocation* allocation : passed) Refile(allocation, records_[allocation]);
  }
  std::vector<Chunk*> victims;
  for (auto it = order_.rbegin(); it != order_.rend() && victims.size() < count; ++it) {
    if (period_ > 0 && used_after >= 0 && it->first <= used_after) break;
    auto* allocation = const_cast<Allocation*>(it->second);
    // Clean chunks first: their eviction is a remap, no copy.
    for (int pass = 0; pass < 2 && victims.size() < count; ++pass) {
      for (Chunk& chunk : allocation->chunks) {
        if (victims.size() == count) break;
        if (chunk.host_copy_valid != (pass == 0) || !eligible(&chunk)) continue;
        victims.push_back(&chunk);
      }
    }
  }
  return victims;
}

}  // namespace spillway
