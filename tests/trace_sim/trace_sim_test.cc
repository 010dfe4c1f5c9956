// SPDX-License-Identifier: Apache-2.0
//
// Tests of trace_sim: the trace parser, Belady and LRU on hand-computed traces, the learned
// policy on cyclic traces (after warm-up, and after the sequence length changes), the
// timeline on a link-bound trace, and the NVMe tier (read + H2D timing, host capacity,
// learned's early NVMe reads). Small traces only: the whole binary runs in well under 10 s.

#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "report.h"
#include "simulator.h"
#include "synth.h"
#include "trace.h"

namespace spillway::trace_sim {
namespace {

Trace Parse(const std::string& text) {
  std::istringstream in(text);
  absl::StatusOr<Trace> t = ParseTrace(in);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : Trace{};
}

std::string ParseError(const std::string& text) {
  std::istringstream in(text);
  absl::StatusOr<Trace> t = ParseTrace(in);
  EXPECT_FALSE(t.ok());
  return t.ok() ? "" : std::string(t.status().message());
}

SimResult ReplayOn(const Trace& trace, const std::string& policy, const Machine& m) {
  const Replay replay = MakeReplay(trace, m);
  auto p = MakePolicy(policy);
  Simulator sim(replay, m, *p);
  absl::StatusOr<SimResult> r = sim.Run();
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : SimResult{};
}

SimResult ReplayThrough(const Trace& trace, const std::string& policy, uint64_t hbm_bytes,
                        double gbps = 1.0) {
  Machine m;
  m.h2d_gbps = m.d2h_gbps = gbps;
  m.hbm_bytes = hbm_bytes;
  return ReplayOn(trace, policy, m);
}

// `allocs` allocations of one chunk (1000 bytes) each, then `steps` steps that touch
// ids [first, first + per_step) in order, one launch each.
std::string CyclicText(int allocs, const std::vector<std::pair<int, int>>& phases,
                       int compute_ns = 0, const std::string& kind = "weights") {
  std::string s = "# spillway-trace 1\nchunk 1000\n";
  for (int i = 0; i < allocs; ++i) s += "alloc " + std::to_string(i) + " 1000 " + kind + "\n";
  for (auto [steps, per_step] : phases) {
    for (int k = 0; k < steps; ++k) {
      for (int i = 0; i < per_step; ++i) {
        s += "launch 0 1 " + std::to_string(i) + " compute_ns=" + std::to_string(compute_ns) + "\n";
      }
      s += "step\n";
    }
  }
  return s;
}

TEST(TraceParser, AcceptsTheFormat) {
  const Trace t = Parse(
      "# spillway-trace 1\n"
      "# a comment\n"
      "chunk 4096\n"
      "alloc 7 10000 weights\n"
      "alloc 8 4096 kv\n"
      "launch 100 3 7:1-2 8 compute_ns=55\n"
      "step\n"
      "launch 200 3 7\n"
      "free 8\n"
      "alloc 8 5000 other\n");
  EXPECT_EQ(t.chunk_bytes, 4096u);
  ASSERT_EQ(t.allocations.size(), 3u);
  EXPECT_EQ(t.allocations[0].num_chunks, 3u);
  EXPECT_EQ(t.allocations[2].first_chunk, 4u);  // A reused id is a new allocation.
  EXPECT_EQ(t.allocations[2].kind, AllocKind::kOther);
  EXPECT_EQ(t.total_chunks, 6u);
  ASSERT_EQ(t.events.size(), 7u);
  const Event& l = t.events[2];
  EXPECT_EQ(l.type, Event::Type::kLaunch);
  EXPECT_EQ(l.t_ns, 100u);
  EXPECT_EQ(l.stream, 3u);
  EXPECT_EQ(l.compute_ns, 55);
  ASSERT_EQ(l.ranges.size(), 2u);
  EXPECT_EQ(l.ranges[0].first, 1u);
  EXPECT_EQ(l.ranges[0].last, 2u);
  EXPECT_EQ(l.ranges[1].last, 0u);
  EXPECT_EQ(t.events[4].compute_ns, -1);

  // The writer's output parses back to the same trace.
  std::ostringstream out;
  WriteTrace(t, out);
  const Trace again = Parse(out.str());
  std::ostringstream out2;
  WriteTrace(again, out2);
  EXPECT_EQ(out.str(), out2.str());
}

TEST(TraceParser, RejectsBadInputWithLineNumbers) {
  const std::string head = "# spillway-trace 1\nchunk 100\nalloc 1 250 weights\n";
  EXPECT_NE(ParseError(head + "bogus 1\n").find("line 4"), std::string::npos);
  EXPECT_NE(ParseError(head + "launch 0 1 2\n").find("line 4: launch touches unknown id 2"),
            std::string::npos);
  EXPECT_NE(ParseError(head + "step\nlaunch 0 1 1:2-3\n").find("line 5"), std::string::npos);
  EXPECT_NE(ParseError(head + "launch 0 1 1:2-1\n").find("line 4"), std::string::npos);
  EXPECT_NE(ParseError(head + "launch 0 1 1 foo=3\n").find("line 4"), std::string::npos);
  EXPECT_NE(ParseError(head + "alloc 2 10 gpu\n").find("line 4"), std::string::npos);
  EXPECT_NE(ParseError(head + "free 9\n").find("line 4"), std::string::npos);
  EXPECT_NE(ParseError("# spillway-trace 1\nalloc 1 10 kv\n").find("line 2"), std::string::npos);
  EXPECT_NE(ParseError("chunk 100\n").find("spillway-trace"), std::string::npos);
  EXPECT_NE(ParseError("# spillway-trace 2\n").find("line 1"), std::string::npos);
}

TEST(Belady, HandComputedCleanTrace) {
  // A B C A B C with room for two: misses A, B, C (evicts B, used after A), B (evicts A,
  // never used again). LRU misses all six.
  const std::string text =
      "# spillway-trace 1\nchunk 1000\nalloc 1 1000 weights\nalloc 2 1000 weights\n"
      "alloc 3 1000 weights\n"
      "launch 0 1 1\nlaunch 0 1 2\nlaunch 0 1 3\nlaunch 0 1 1\nlaunch 0 1 2\nlaunch 0 1 3\n";
  const Trace t = Parse(text);
  EXPECT_EQ(ReplayThrough(t, "belady", 2000).h2d_bytes, 4000u);
  EXPECT_EQ(ReplayThrough(t, "belady", 2000).d2h_bytes, 0u);
  EXPECT_EQ(ReplayThrough(t, "ondemand-lru", 2000).h2d_bytes, 6000u);
}

TEST(Belady, HandComputedDirtyTrace) {
  // K W1 W2 W1 K, room for two. K is fresh (no copy in), W1 in; W2 evicts K (next use 4, after
  // W1's 3): a write-back; W1 hits; K comes back, evicting W2 (never used again).
  const std::string text =
      "# spillway-trace 1\nchunk 1000\nalloc 1 1000 kv\nalloc 2 1000 weights\n"
      "alloc 3 1000 weights\n"
      "launch 0 1 1\nlaunch 0 1 2\nlaunch 0 1 3\nlaunch 0 1 2\nlaunch 0 1 1\n";
  const SimResult r = ReplayThrough(Parse(text), "belady", 2000);
  EXPECT_EQ(r.h2d_bytes, 3000u);
  EXPECT_EQ(r.d2h_bytes, 1000u);
}

TEST(OnDemandLru, CyclicScanLargerThanHbmMovesEveryByteEachStep) {
  const Trace t = Parse(CyclicText(10, {{4, 10}}));
  const SimResult r = ReplayThrough(t, "ondemand-lru", 5000);
  ASSERT_EQ(r.steps.size(), 4u);
  for (size_t s = 1; s < r.steps.size(); ++s) {
    EXPECT_EQ(r.steps[s].h2d_bytes - r.steps[s - 1].h2d_bytes, 10000u);
  }
}

Machine TestMachine(uint64_t hbm_bytes) {
  Machine m;
  m.h2d_gbps = m.d2h_gbps = 1.0;
  m.hbm_bytes = hbm_bytes;
  return m;
}

TEST(Learned, ReachesBeladyBytesOnACyclicTraceAfterWarmUp) {
  const Trace t = Parse(CyclicText(200, {{8, 200}}, 100));
  auto cmp = Compare("cyclic", t, TestMachine(100 * 1000), {"ondemand-lru", "learned"}, 3);
  ASSERT_TRUE(cmp.ok()) << cmp.status();
  EXPECT_GT(cmp->policies[0].window_bytes_vs_belady, 1.5);  // LRU moves everything.
  EXPECT_LE(cmp->policies[1].window_bytes_vs_belady, 1.05);
  EXPECT_LE(cmp->policies[1].step_vs_bound, 1.10);
}

// Every chunk fetched ahead holds a slot Belady would keep: a window of 30 chunks in an HBM
// of 100 costs about 30 extra misses a step against the default (a quarter of the widest
// launch: 2 chunks here). Why the runtime sizes its window in link time, not HBM.
TEST(Learned, AWiderWindowCostsTheBytesOfTheSlotsItHolds) {
  const Trace t = Parse(CyclicText(200, {{8, 200}}, 100));
  Machine m = TestMachine(100 * 1000);
  auto narrow = Compare("narrow", t, m, {"learned"}, 3);
  m.learned_window_bytes = 30 * 1000;
  auto wide = Compare("wide", t, m, {"learned"}, 3);
  ASSERT_TRUE(narrow.ok() && wide.ok());
  EXPECT_LE(narrow->policies[0].window_bytes_vs_belady, 1.05);
  EXPECT_GT(wide->policies[0].window_bytes_vs_belady,
            narrow->policies[0].window_bytes_vs_belady + 0.15);
}

TEST(Learned, RelearnsAfterTheSequenceLengthChanges) {
  // 6 steps of 200 launches, then 6 steps of 280: the old period breaks and a new one is
  // learned; the last three steps are measured.
  const Trace t = Parse(CyclicText(280, {{6, 200}, {6, 280}}, 100));
  auto cmp = Compare("relearn", t, TestMachine(140 * 1000), {"learned"}, 9);
  ASSERT_TRUE(cmp.ok()) << cmp.status();
  EXPECT_EQ(cmp->window_steps, 3u);
  EXPECT_LE(cmp->policies[0].window_bytes_vs_belady, 1.05);
  EXPECT_LE(cmp->policies[0].step_vs_bound, 1.10);
}

TEST(Timeline, LinkBoundStepTimeIsBytesOverBandwidth) {
  // No compute: every step is the time to move its bytes at 2 GB/s.
  const Trace t = Parse(CyclicText(50, {{5, 50}}, 0));
  Machine m = TestMachine(20 * 1000);
  m.h2d_gbps = 2.0;
  auto cmp = Compare("link", t, m, {"ondemand-lru", "belady", "learned"}, 2);
  ASSERT_TRUE(cmp.ok()) << cmp.status();
  for (const PolicyReport& p : cmp->policies) {
    const double link_ns = static_cast<double>(p.window_h2d_bytes) / m.h2d_gbps;
    EXPECT_NEAR(p.step_ns, link_ns, 0.01 * link_ns) << p.result.policy;
  }
}

Machine NvmeMachine(uint64_t hbm_bytes, uint64_t host_bytes, double nvme_gbps) {
  Machine m = TestMachine(hbm_bytes);
  m.host_bytes = host_bytes;
  m.nvme_read_gbps = m.nvme_write_gbps = nvme_gbps;
  return m;
}

TEST(NvmeTier, OnDemandFetchOfAnNvmeChunkCostsReadPlusH2d) {
  // A then B, one HBM slot, one host slot (A starts there, B on NVMe); H2D 1000 ns a chunk,
  // NVMe read 2000 ns. A: H2D 0-1000. B: A is dropped (clean), B is read 1000-3000, then
  // copied 3000-4000.
  const Trace t = Parse(CyclicText(2, {{1, 2}}));
  for (const char* policy : {"ondemand-lru", "belady", "learned"}) {
    const SimResult r = ReplayOn(t, policy, NvmeMachine(1000, 1000, 0.5));
    EXPECT_EQ(r.total_ns, 4000) << policy;
    EXPECT_EQ(r.stall_ns, 1000 + 3000) << policy;
    EXPECT_EQ(r.nvme_read_bytes, 1000u) << policy;
    EXPECT_EQ(r.h2d_bytes, 2000u) << policy;
    EXPECT_EQ(r.nvme_write_bytes, 0u) << policy;  // Weights are clean.
  }
  // Without a host limit nothing touches NVMe.
  const SimResult r = ReplayOn(t, "belady", NvmeMachine(1000, Machine::kUnlimited, 0.5));
  EXPECT_EQ(r.total_ns, 2000);
  EXPECT_EQ(r.nvme_read_bytes, 0u);
}

TEST(NvmeTier, HostCapacityIsRespected) {
  // A scan over 10 chunks, 3 fit in HBM and 4 in host. LRU keeps the 7 most recent, so
  // every chunk comes from NVMe; Belady keeps 7 for good and reads the other 3. KV chunks
  // are dirty: each one dropped from host is written first.
  for (const char* kind : {"weights", "kv"}) {
    const Trace t = Parse(CyclicText(10, {{6, 10}}, 0, kind));
    auto cmp = Compare("spill", t, NvmeMachine(3000, 4000, 1.0), {"ondemand-lru", "belady"}, 2);
    ASSERT_TRUE(cmp.ok()) << cmp.status();
    EXPECT_EQ(cmp->min_nvme_window_read_bytes, 3000u) << kind;
    EXPECT_EQ(cmp->policies[0].window_nvme_read_bytes, 10000u) << kind;
    EXPECT_EQ(cmp->policies[1].window_nvme_read_bytes, 3000u) << kind;
    for (const PolicyReport& p : cmp->policies) {
      const SimResult& r = p.result;
      if (std::string(kind) == "kv") {
        // Steady state: what is read back was written before; at most 7 chunks stay up.
        EXPECT_GE(r.nvme_write_bytes, r.nvme_read_bytes) << p.result.policy;
        EXPECT_LE(r.nvme_write_bytes, r.nvme_read_bytes + 7000) << p.result.policy;
      } else {
        EXPECT_EQ(r.nvme_write_bytes, 0u) << p.result.policy;
      }
    }
  }
}

TEST(NvmeTier, LearnedReadsNvmeEarlyAndHidesItsLatency) {
  // 200 chunks a step, 60 fit in HBM, 100 in host: at least 40 come from NVMe each step
  // (4000 ns each: 160 us, the bound), and the link moves 140 (140 us). On demand the reads
  // sit in front of the copies; learned reads them ahead, spread over the step.
  const Trace t = Parse(CyclicText(200, {{10, 200}}, 100));
  auto cmp = Compare("nvme", t, NvmeMachine(60 * 1000, 100 * 1000, 0.25),
                     {"ondemand-lru", "belady", "learned"}, 4);
  ASSERT_TRUE(cmp.ok()) << cmp.status();
  const PolicyReport& lru = cmp->policies[0];
  const PolicyReport& belady = cmp->policies[1];
  const PolicyReport& learned = cmp->policies[2];
  EXPECT_EQ(cmp->min_nvme_window_read_bytes, 40u * 1000);
  EXPECT_LT(learned.result.stall_ns, lru.result.stall_ns);
  EXPECT_LT(learned.result.stall_ns, belady.result.stall_ns);
  EXPECT_LT(learned.step_ns, belady.step_ns);
  EXPECT_LE(learned.window_nvme_vs_min, 1.10);
  EXPECT_LE(learned.step_vs_bound, 1.25);  // Measured 1.20 (Belady 2.0, LRU 6.4).
}

TEST(Synthesize, LlamaShapesHaveRealSizes) {
  SynthOptions o;
  o.steps = 2;
  const Trace t8 = SynthesizeDecode(*FindModelShape("llama3-8b"), o);
  // Llama-3-8B has 8.03e9 parameters (bf16: 16.06 GB); norms are left out.
  EXPECT_NEAR(static_cast<double>(t8.WeightBytes()), 16.06e9, 0.01e9);
  EXPECT_EQ(t8.events.back().type, Event::Type::kStep);
  std::ostringstream out;
  WriteTrace(t8, out);
  const Trace again = Parse(out.str());
  EXPECT_EQ(again.events.size(), t8.events.size());
  EXPECT_FALSE(FindModelShape("llama3-405b").has_value());
}

}  // namespace
}  // namespace spillway::trace_sim
