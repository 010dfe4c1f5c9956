// SPDX-License-Identifier: Apache-2.0
#include "runtime/policy.h"

#include <cstring>

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

void LruPolicy::OnTouch(Chunk* chunk) {
  if (keys_.contains(chunk)) {
    OnResident(chunk);
  } else {
    chunk->last_use = ++clock_;
  }
}

std::vector<Chunk*> LruPolicy::PickVictims(size_t count,
                                           const std::function<bool(const Chunk*)>& eligible) {
  std::vector<Chunk*> victims;
  for (auto it = order_.begin(); it != order_.end() && victims.size() < count; ++it) {
    if (eligible(it->second)) victims.push_back(it->second);
  }
  return victims;
}

std::unique_ptr<Policy> MakePolicy(const char* name) {
  if (name == nullptr || std::strcmp(name, "lru") == 0) return std::make_unique<LruPolicy>();
  return nullptr;
}

}  // namespace spillway
