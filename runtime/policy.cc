// SPDX-License-Identifier: Apache-2.0
#include "runtime/policy.h"

#include <cstring>

#include "runtime/learned_policy.h"

namespace spillway {

LruPolicy::Key LruPolicy::KeyOf(const Chunk* chunk) const {
  int rank = (chunk->allocation->advice & kAdviceCold) ? 0 : 1;
  return {{rank, chunk->last_use}, const_cast<Chunk*>(chunk)};
}

void LruPolicy::OnResident(Chunk* chunk) {
  chunk->last_use = ++clock_;
  Key key = KeyOf(chunk);
  auto [it, inserted] = keys_.try_emplace(chunk, key);
  if (!inserted) {
    order_.erase(it->second);
    it->second = key;
  }
  order_.insert(key);
}

void LruPolicy::OnLeave(Chunk* chunk) {
  auto it = keys_.find(chunk);
  if (it == keys_.end()) return;
  order_.erase(it->second);
  keys_.erase(it);
}

void LruPolicy::OnTouch(Chunk* chunk) { chunk->last_use = ++clock_; }

std::vector<Chunk*> LruPolicy::PickVictims(size_t count,
                                           const std::function<bool(const Chunk*)>& eligible,
                                           int64_t /*used_after: LRU predicts nothing*/) {
  std::vector<Chunk*> victims;
  for (;;) {
    // Entries whose chunk was touched (or advised) since it was filed are stale: skipped
    // here, re-filed after the scan (inserting while iterating would invalidate it).
    std::vector<Key> stale;
    victims.clear();
    for (auto it = order_.begin(); it != order_.end() && victims.size() < count; ++it) {
      if (KeyOf(it->second) != *it) {
        stale.push_back(*it);
      } else if (eligible(it->second)) {
        victims.push_back(it->second);
      }
    }
    for (const Key& key : stale) {
      order_.erase(key);
      Key current = KeyOf(key.second);
      order_.insert(current);
      keys_[key.second] = current;
    }
    // Re-filed chunks are younger than every victim found: they matter only if the scan
    // ran out of candidates.
    if (stale.empty() || victims.size() == count) return victims;
  }
}

std::unique_ptr<Policy> MakePolicy(const char* name) {
  if (name == nullptr || std::strcmp(name, "lru") == 0) return std::make_unique<LruPolicy>();
  if (std::strcmp(name, "learned") == 0) return std::make_unique<LearnedPolicy>();
  return nullptr;
}

}  // namespace spillway
