// SPDX-License-Identifier: Apache-2.0
//
// learned: an online policy with bounded memory (the last `max_period` launches).
//  - Learning: each launch has a signature (stream + the allocations it touches, not their
//    chunk ranges, so a growing KV cache does not break it). A period P is a candidate when
//    a signature recurs P launches later, and learned once P launches in a row repeat the
//    ones P earlier. Any launch that differs from the one P earlier forgets P (a new
//    sequence length, a prefill among decodes); the learner then starts over.
//  - Eviction: with P learned, a chunk used at launch i is next used at i + P (Belady on
//    the prediction); chunks the prediction missed go first; clean before dirty at a tie.
//    Before anything is learned: LRU.
//  - Prefetch: after each launch, walk the predicted launches in order and fetch what they
//    need while a victim with a later predicted use exists (the HBM budget); the H2D engine
//    is a FIFO, so fetches arrive in order of need, back to back, at link speed.
//  - NVMe staging (limited host tier only): before that walk, a second one reads chunks on
//    NVMe into host for the predicted launches, further ahead than the H2D window (a
//    deeper, separate window), so the read has ended when the H2D copy is issued. It drops a
//    host chunk only if that one's predicted use is later. The H2D walk stops at a chunk
//    still on NVMe rather than put a read in front of the link's FIFO.
//  - KV: a new KV chunk is touched by this step's launch, so it is predicted for the next
//    step and stays; older KV chunks are evicted and streamed back like weights.
// Assumption (documented in docs/trace_sim.md): a chunk is used once per period; a chunk
// used twice per period is predicted only at its last use + P.

#include <deque>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "simulator.h"

namespace spillway::trace_sim {
namespace {

constexpr int64_t kUnpredicted = std::numeric_limits<int64_t>::max() / 4;
constexpr int64_t kStagedKey = std::numeric_limits<int64_t>::min() / 2;  // + the launch.

class LearnedPolicy : public Policy {
 public:
  explicit LearnedPolicy(size_t max_period) : max_period_(max_period) {}
  std::string Name() const override { return "learned"; }

  void Begin(const Replay& replay, const Machine& machine) override {
    replay_ = &replay;
    window_chunks_ =
        machine.learned_window_bytes == 0
            ? 0
            : std::max<uint64_t>(2, machine.learned_window_bytes /
                                        std::max<uint64_t>(1, replay.trace->chunk_bytes));
    order_.Reset(replay.trace->total_chunks, &replay.chunk_dirty);
    last_pos_.assign(replay.trace->total_chunks, -1);
    unused_prefetch_.assign(replay.trace->total_chunks, 0);
    ring_.assign(max_period_ + 1, Entry{});
    last_seen_.clear();
    period_ = candidate_ = run_ = 0;
    current_ = 0;
  }

  void BeforeLaunch(size_t n) override {
    current_ = n;
    const auto chunks = replay_->LaunchChunks(n);
    uint64_t sig = absl::HashOf(replay_->launches[n].stream);
    uint32_t prev_alloc = UINT32_MAX;
    for (ChunkId c : chunks) {
      const uint32_t a = replay_->chunk_alloc[c];
      if (a != prev_alloc) sig = absl::HashOf(sig, a);
      prev_alloc = a;
    }
    if (period_ > 0 && At(n - period_).sig != sig) Forget();
    if (period_ == 0) {
      if (candidate_ > 0 && n >= candidate_ && At(n - candidate_).sig == sig) {
        if (++run_ >= candidate_) Learn(candidate_, n);
      } else {
        auto it = last_seen_.find(sig);
        candidate_ = 0;
        if (it != last_seen_.end() && n - it->second <= max_period_) {
          candidate_ = n - it->second;
          run_ = 1;
        }
      }
    }
    if (last_seen_.size() > 4 * max_period_) last_seen_.clear();  // Bounded memory.
    last_seen_[sig] = n;
    Entry& e = At(n);
    e.sig = sig;
    e.chunks.assign(chunks.begin(), chunks.end());
  }

  ChunkId ChooseVictim(const Simulator& sim, size_t) override { return order_.Pick(sim); }
  void OnInsert(ChunkId c, size_t n) override {
    order_.Set(c, period_ > 0 ? static_cast<int64_t>(n) : -static_cast<int64_t>(n));
  }
  void OnAccess(ChunkId c, size_t n, size_t) override {
    last_pos_[c] = static_cast<int64_t>(n);
    unused_prefetch_[c] = 0;
    order_.Set(c, KeyOf(c));
  }
  void OnRemove(ChunkId c) override {
    order_.Remove(c);
    unused_prefetch_[c] = 0;
  }
  // Not the predicted next use: Belady's order makes the host drop the chunks used last, so
  // the chunks on NVMe become one stretch of the period, read while the link has nothing to
  // do and idle otherwise. A fixed pseudo-random priority per chunk keeps as many chunks
  // (a stable kept set) but spreads the NVMe reads over the period, where the link's work
  // overlaps them.
  // (splitmix64's finaliser: absl::Hash is seeded per process, and runs must repeat.)
  int64_t HostKey(ChunkId c) const override {
    uint64_t x = c + 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return static_cast<int64_t>((x ^ (x >> 31)) >> 2);
  }

  void AfterLaunch(Simulator& sim, size_t n, double now) override {
    if (period_ == 0) return;
    // Chunks predicted for this launch that it did not touch: the prediction was wrong.
    if (n >= period_) {
      for (ChunkId c : At(n - period_).chunks) {
        if (order_.Contains(c) && last_pos_[c] == static_cast<int64_t>(n - period_)) {
          order_.Set(c, kUnpredicted);
        }
      }
    }
    while (!ahead_.empty() && ahead_.front().first <= n) {
      ahead_chunks_ -= ahead_.front().second;
      ahead_.pop_front();
    }
    if (sim.HostLimited()) StageFromNvme(sim, n, now);
    cursor_ = WalkPredicted(cursor_, n, [&](size_t m, ChunkId c) {
      if (sim.IsResident(c) || !sim.IsLive(c)) return true;
      if (ahead_chunks_ >= ahead_limit_ || sim.OnNvme(c)) return false;
      if (!sim.HasFreeSlot()) {
        const ChunkId victim =
            order_.PickIdle(sim, static_cast<int64_t>(m), now, idle_scan_, unused_prefetch_);
        if (victim == kNoChunk) return false;
        sim.Evict(victim);
      }
      sim.Bring(c, now);
      order_.Set(c, static_cast<int64_t>(m));
      unused_prefetch_[c] = 1;
      if (ahead_.empty() || ahead_.back().first != m) ahead_.emplace_back(m, 0);
      ++ahead_.back().second;
      ++ahead_chunks_;
      return true;
    });
  }

 private:
  struct Entry {
    uint64_t sig = 0;
    std::vector<ChunkId> chunks;
  };
  Entry& At(size_t n) { return ring_[n % ring_.size()]; }

  // Offers each chunk of the predicted launches max(from, n + 1) .. n + period_, in order,
  // to visit(m, c) until it returns false (blocked); returns the launch to resume at.
  template <typename Visit>
  size_t WalkPredicted(size_t from, size_t n, Visit visit) {
    size_t m = std::max(from, n + 1);
    for (; m <= n + period_; ++m) {
      for (ChunkId c : At(m - period_).chunks) {
        if (!visit(m, c)) return m;
      }
    }
    return m;
  }

  // The NVMe window: reads chunks on NVMe into host for predicted launches, in order, while
  // fewer than stage_limit_ staged chunks wait for their launch. A staged chunk is kept in
  // host (a key below every HostKey) until its launch, then gets its HostKey back.
  void StageFromNvme(Simulator& sim, size_t n, double now) {
    while (!staged_.empty() && staged_.front().first <= n) {
      const ChunkId c = staged_.front().second;
      if (sim.InHost(c)) sim.SetHostKey(c, HostKey(c));  // Predicted, not used.
      staged_.pop_front();
    }
    stage_cursor_ = WalkPredicted(stage_cursor_, n, [&](size_t m, ChunkId c) {
      if (!sim.IsLive(c) || !sim.OnNvme(c)) return true;
      if (staged_.size() >= stage_limit_ ||
          !sim.Stage(c, now, kStagedKey + static_cast<int64_t>(m))) {
        return false;
      }
      staged_.emplace_back(m, c);
      return true;
    });
  }

  int64_t KeyOf(ChunkId c) const {
    if (period_ == 0) return -(last_pos_[c] < 0 ? 0 : last_pos_[c]);
    if (last_pos_[c] < 0) return kUnpredicted;
    const int64_t next = last_pos_[c] + static_cast<int64_t>(period_);
    return next <= static_cast<int64_t>(current_) ? kUnpredicted : next;
  }
  void Learn(size_t period, size_t n) {
    period_ = period;
    cursor_ = n + 1;
    ahead_.clear();
    ahead_chunks_ = 0;
    size_t widest = 1;
    for (size_t i = n + 1 - period; i <= n; ++i) widest = std::max(widest, At(i).chunks.size());
    ahead_limit_ =
        window_chunks_ != 0
            ? window_chunks_
            : std::max<size_t>(2, static_cast<size_t>(ahead_factor_ * static_cast<double>(widest)));
    stage_cursor_ = n + 1;
    stage_limit_ = static_cast<size_t>(stage_factor_ * static_cast<double>(ahead_limit_));
    Rekey();
  }
  void Forget() {
    period_ = candidate_ = run_ = 0;
    Rekey();
  }
  void Rekey() {
    std::vector<ChunkId> resident;
    order_.ForEach([&](ChunkId c) { resident.push_back(c); });
    for (ChunkId c : resident) order_.Set(c, KeyOf(c));
  }

  const size_t max_period_;
  const Replay* replay_ = nullptr;
  VictimOrder order_;
  std::vector<int64_t> last_pos_;  // Per chunk: the last launch that touched it.
  // Per chunk: prefetched and not used yet. Never a prefetch's victim: evicting it would
  // throw away a copy already paid for (it only moves the miss, never saves one).
  std::vector<uint8_t> unused_prefetch_;
  std::vector<Entry> ring_;                          // The last max_period_ + 1 launches.
  absl::flat_hash_map<uint64_t, size_t> last_seen_;  // Signature -> last launch.
  size_t period_ = 0;                                // 0: nothing learned.
  size_t candidate_ = 0;  // Period being verified, and how many launches confirmed it.
  size_t run_ = 0;
  size_t cursor_ = 0;  // Predicted launches before this one are fully prefetched.
  // Prefetched chunks not yet used, per predicted launch, and their total and limit.
  // The limit keeps the prefetcher's victims among the chunks just used (those Belady
  // would evict): without it, it evicts chunks Belady keeps and everything streams.
  std::deque<std::pair<size_t, size_t>> ahead_;
  size_t ahead_chunks_ = 0, ahead_limit_ = 0;
  // Measured on the sweep (docs/trace_sim.md): a quarter of the widest launch balances the
  // bytes a deeper window costs against overlap. Every prefetched chunk not yet used holds
  // a slot Belady would give the kept set, so in steady state the window's depth comes back
  // as extra misses each step (a half cost 1.050x Belady's bytes on 8B b1 80%, a quarter
  // 1.026x; a tenth leaves the link idle during compute: step 1.106x the bound).
  double ahead_factor_ = 0.25;
  size_t window_chunks_ = 0;  // Machine::learned_window_bytes in chunks; 0: ahead_factor_.
  // A prefetch takes the furthest-used victim, but skips one still busy in a running launch
  // for the next candidate if that one is idle (1 = look at one more).
  int idle_scan_ = 1;
  // The NVMe window: staged chunks with their predicted launch, until it has run.
  size_t stage_cursor_ = 0;
  std::deque<std::pair<size_t, ChunkId>> staged_;
  size_t stage_limit_ = 0;
  // Its depth, x ahead_limit_, counted in staged chunks only: with the NVMe chunks spread
  // over the period it reaches further ahead than the H2D window by the host chunks in
  // between. Deeper costs more NVMe reads than it hides (each staged chunk holds a host slot
  // the kept set would have): in a trial on the sweep's NVMe rows (0.25-16), 1 was best;
  // 8B b1 at 4 read 1.11x the minimal NVMe bytes and stepped 1.12x the bound.
  double stage_factor_ = 1.0;
  size_t current_ = 0;
};

}  // namespace

std::unique_ptr<Policy> MakeLearnedPolicy() { return std::make_unique<LearnedPolicy>(1 << 16); }

}  // namespace spillway::trace_sim
