// SPDX-License-Identifier: Apache-2.0
//
// Lookup cost of the allocation registry (runtime/allocation_map.h), which the launch path
// pays for every argument word of every kernel launch. 10^5 live allocations of 2 MiB to
// 64 MiB, laid out like a device's virtual address space (granule-aligned, some adjacent, some
// with gaps), looked up at random:
//   hit   an address inside an allocation (any of them: the tree is mostly out of cache)
//   hot   an address inside one of 64 allocations (a model's working set: the path is cached)
//   miss  an address in a gap between allocations (a device pointer that is not ours)
//   word  a small integer (a size, a count, a flag: most kernel arguments)
// and FindMany over the 16 words of a launch (half pointers, half small integers). The same
// lookups run against a plain std::map behind the same kind of lock, the baseline, and the run
// ends with the ratios ours / baseline, measured in this one run. "hit" and "miss" compare
// the containers (both take the lock); "word" shows the lock-free range filter.
//
// Run (Release or RelWithDebInfo build):
//   build/bench/allocation_map_bench
// writes the table to stdout, the raw results to allocation_map_bench.json and the ratios to
// allocation_map_bench_ratios.json; --benchmark_out=<file>.json puts the JSON elsewhere (the
// ratios go beside it, as <file>_ratios.json). Any other Google Benchmark flag works too.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "runtime/allocation_map.h"

namespace spillway {
namespace {

constexpr size_t kAllocations = 100000;
constexpr uintptr_t kGranule = uintptr_t{2} << 20;
constexpr size_t kQueries = size_t{1} << 16;  // a power of two, cycled through
constexpr size_t kLaunchWords = 16;

// The registries never dereference an Allocation*, so any distinct pointers will do.
char tags[kAllocations];
Allocation* Tag(size_t n) { return reinterpret_cast<Allocation*>(&tags[n]); }

// The baseline, a plain registry: a std::map behind the same reader lock, looked up by
// upper_bound with no shortcut for words outside every range.
class StdMapRegistry {
 public:
  using Hit = AllocationMap::Hit;

  void Insert(uintptr_t base, size_t size, Allocation* allocation) {
    absl::MutexLock lock(&mutex_);
    ranges_.emplace(base, Entry{size, allocation});
  }

  std::optional<Hit> Find(uintptr_t address) const {
    absl::ReaderMutexLock lock(&mutex_);
    return FindLocked(address);
  }

  size_t FindMany(std::span<const uintptr_t> addresses, std::vector<Hit>* out) const {
    out->resize(addresses.size());
    size_t hits = 0;
    absl::ReaderMutexLock lock(&mutex_);
    for (size_t i = 0; i < addresses.size(); ++i) {
      const std::optional<Hit> hit = FindLocked(addresses[i]);
      (*out)[i] = hit.value_or(Hit{});
      hits += hit.has_value();
    }
    return hits;
  }

 private:
  struct Entry {
    size_t size;
    Allocation* allocation;
  };

  std::optional<Hit> FindLocked(uintptr_t address) const ABSL_SHARED_LOCKS_REQUIRED(mutex_) {
    auto it = ranges_.upper_bound(address);
    if (it == ranges_.begin()) return std::nullopt;
    --it;
    if (address - it->first >= it->second.size) return std::nullopt;
    return Hit{it->second.allocation, it->first, it->second.size};
  }

  mutable absl::Mutex mutex_;
  std::map<uintptr_t, Entry> ranges_ ABSL_GUARDED_BY(mutex_);
};

// The allocations, both registries holding them, and the addresses to look up.
struct World {
  AllocationMap ours;
  StdMapRegistry baseline;
  std::vector<uintptr_t> hits;
  std::vector<uintptr_t> hot;
  std::vector<uintptr_t> misses;
  std::vector<uintptr_t> words;
  std::vector<uintptr_t> launches;  // kQueries launches' worth of words, back to back

  World() {
    std::mt19937_64 random(42);
    auto uniform = [&random](uint64_t low, uint64_t high) {
      return std::uniform_int_distribution<uint64_t>(low, high)(random);
    };
    struct Range {
      uintptr_t base;
      size_t size;
      size_t gap_after;
    };
    std::vector<Range> ranges;
    uintptr_t next = uintptr_t{0x7f00} << 32;
    for (size_t i = 0; i < kAllocations; ++i) {
      const size_t size = uniform(1, 32) * kGranule;
      const size_t gap = uniform(0, 3) * kGranule;
      ranges.push_back({next, size, gap});
      if (!ours.Insert(next, size, Tag(i)).ok()) std::abort();
      baseline.Insert(next, size, Tag(i));
      next += size + gap;
    }
    std::vector<const Range*> working_set;
    for (int i = 0; i < 64; ++i) working_set.push_back(&ranges[uniform(0, ranges.size() - 1)]);
    for (size_t i = 0; i < kQueries; ++i) {
      const Range& w = *working_set[uniform(0, working_set.size() - 1)];
      hot.push_back(w.base + uniform(0, w.size - 1));
      const Range& r = ranges[uniform(0, ranges.size() - 1)];
      hits.push_back(r.base + uniform(0, r.size - 1));
      const Range* gapped = &r;
      while (gapped->gap_after == 0) gapped = &ranges[uniform(0, ranges.size() - 2)];
      misses.push_back(gapped->base + gapped->size + uniform(0, gapped->gap_after - 1));
      words.push_back(uniform(0, 1 << 20));
    }
    for (size_t i = 0; i < kQueries; ++i) {
      for (size_t w = 0; w < kLaunchWords; ++w) {
        launches.push_back(w % 2 == 0 ? hits[(i * kLaunchWords + w) % kQueries]
                                      : words[(i * kLaunchWords + w) % kQueries]);
      }
    }
  }
};

World& TheWorld() {
  static World* const world = new World();  // never destroyed, like the runtime's globals
  return *world;
}

template <typename Registry>
Registry& RegistryOf(World& world) {
  if constexpr (std::is_same_v<Registry, AllocationMap>) {
    return world.ours;
  } else {
    return world.baseline;
  }
}

void SetPerLookup(benchmark::State& state, size_t lookups_per_iteration) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * lookups_per_iteration));
  // Seconds per lookup (the console shows e.g. "25n" for 25 ns).
  state.counters["per_lookup"] = benchmark::Counter(
      static_cast<double>(lookups_per_iteration),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

template <typename Registry>
void BM_Find(benchmark::State& state, const std::vector<uintptr_t>* addresses) {
  const Registry& registry = RegistryOf<Registry>(TheWorld());
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(registry.Find((*addresses)[i++ & (kQueries - 1)]));
  }
  SetPerLookup(state, 1);
}

template <typename Registry>
void BM_FindMany(benchmark::State& state) {
  World& world = TheWorld();
  const Registry& registry = RegistryOf<Registry>(world);
  std::vector<AllocationMap::Hit> out;
  size_t i = 0;
  for (auto _ : state) {
    const std::span<const uintptr_t> launch(&world.launches[(i++ & (kQueries - 1)) * kLaunchWords],
                                            kLaunchWords);
    benchmark::DoNotOptimize(registry.FindMany(launch, &out));
    benchmark::ClobberMemory();
  }
  SetPerLookup(state, kLaunchWords);
}

// The launch path without FindMany: a lock acquisition per word.
void BM_FindEachWord(benchmark::State& state) {
  World& world = TheWorld();
  size_t i = 0;
  for (auto _ : state) {
    const uintptr_t* launch = &world.launches[(i++ & (kQueries - 1)) * kLaunchWords];
    for (size_t w = 0; w < kLaunchWords; ++w) benchmark::DoNotOptimize(world.ours.Find(launch[w]));
  }
  SetPerLookup(state, kLaunchWords);
}

// Remembers each benchmark's time per lookup, for the ratios printed at the end.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      // With --benchmark_repetitions the mean stands for the benchmark.
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "mean") continue;
      const auto counter = run.counters.find("per_lookup");
      if (counter == run.counters.end()) continue;
      per_lookup_ns_[run.run_name.str()] = counter->second.value * 1e9;
    }
  }

  // Writes "ours / baseline" for each pair that ran, to `out` and as JSON to `json_path`.
  void WriteRatios(std::ostream& out, const std::string& json_path) const {
    struct Pair {
      const char* what;
      const char* ours;
      const char* baseline;
    };
    const Pair pairs[] = {
        {"hit: btree / std::map", "AllocationMap/Find/hit", "StdMap/Find/hit"},
        {"hot: btree / std::map", "AllocationMap/Find/hot", "StdMap/Find/hot"},
        {"miss: btree / std::map", "AllocationMap/Find/miss", "StdMap/Find/miss"},
        {"word: btree / std::map", "AllocationMap/Find/word", "StdMap/Find/word"},
        {"launch of 16: btree / std::map", "AllocationMap/FindMany16", "StdMap/FindMany16"},
        {"launch of 16: FindMany / Find per word", "AllocationMap/FindMany16",
         "AllocationMap/FindEachWord16"},
    };
    std::ofstream json(json_path);
    json << "{\n  \"ns_per_lookup\": {";
    const char* separator = "\n";
    for (const auto& [name, ns] : per_lookup_ns_) {
      json << separator << "    \"" << name << "\": " << ns;
      separator = ",\n";
    }
    json << "\n  },\n  \"ratios\": {";
    separator = "\n";
    out << "\nns per lookup, and ratios (ours / baseline; below 1 is faster):\n";
    for (const Pair& pair : pairs) {
      const auto ours = per_lookup_ns_.find(pair.ours);
      const auto baseline = per_lookup_ns_.find(pair.baseline);
      if (ours == per_lookup_ns_.end() || baseline == per_lookup_ns_.end()) continue;
      const double ratio = ours->second / baseline->second;
      char line[160];
      std::snprintf(line, sizeof(line), "  %-40s %7.2f ns / %7.2f ns = %.2f\n", pair.what,
                    ours->second, baseline->second, ratio);
      out << line;
      json << separator << "    \"" << pair.what << "\": " << ratio;
      separator = ",\n";
    }
    json << "\n  }\n}\n";
    if (!json.good()) std::cerr << "cannot write " << json_path << "\n";
  }

 private:
  std::map<std::string, double> per_lookup_ns_;
};

void RegisterBenchmarks() {
  World& world = TheWorld();
  const std::pair<const char*, const std::vector<uintptr_t>*> sets[] = {
      {"hit", &world.hits}, {"hot", &world.hot}, {"miss", &world.misses}, {"word", &world.words}};
  for (const auto& [set_name, addresses] : sets) {
    benchmark::RegisterBenchmark((std::string("AllocationMap/Find/") + set_name).c_str(),
                                 BM_Find<AllocationMap>, addresses);
    benchmark::RegisterBenchmark((std::string("StdMap/Find/") + set_name).c_str(),
                                 BM_Find<StdMapRegistry>, addresses);
  }
  benchmark::RegisterBenchmark("AllocationMap/FindMany16", BM_FindMany<AllocationMap>);
  benchmark::RegisterBenchmark("StdMap/FindMany16", BM_FindMany<StdMapRegistry>);
  benchmark::RegisterBenchmark("AllocationMap/FindEachWord16", BM_FindEachWord);
  // Two launching threads share the reader lock's cache line.
  benchmark::RegisterBenchmark("AllocationMap/Find/hit/2threads", BM_Find<AllocationMap>,
                               &world.hits)
      ->Threads(2);
}

}  // namespace
}  // namespace spillway

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  std::string out_path = "allocation_map_bench.json";
  bool has_out = false;
  for (char* arg : args) {
    constexpr std::string_view kOut = "--benchmark_out=";
    if (std::string_view(arg).substr(0, kOut.size()) == kOut) {
      has_out = true;
      out_path = arg + kOut.size();
    }
  }
  std::string out_flag = "--benchmark_out=" + out_path;
  std::string format_flag = "--benchmark_out_format=json";
  if (!has_out) {
    args.push_back(out_flag.data());
    args.push_back(format_flag.data());
  }
  int count = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;

  spillway::RegisterBenchmarks();
  spillway::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::string ratios_path = out_path;
  if (ratios_path.size() >= 5 && ratios_path.substr(ratios_path.size() - 5) == ".json") {
    ratios_path.resize(ratios_path.size() - 5);
  }
  ratios_path += "_ratios.json";
  reporter.WriteRatios(std::cout, ratios_path);
  benchmark::Shutdown();
  return 0;
}
