// SPDX-License-Identifier: Apache-2.0
//
// Tests of the NVMe store (runtime/nvme_store.h) and its extent allocator, on real files
// in a fresh directory under $TMPDIR (or /tmp). Failure paths use real kernel errors where
// one can be had without special hardware: RLIMIT_FSIZE (EFBIG), a tiny tmpfs (ENOSPC,
// where this process may mount), RLIMIT_MEMLOCK without CAP_IPC_LOCK (registered
// buffers). Only -EIO and short transfers are injected, through the completion hook.
// Tests that change process-wide state (limits, capabilities, mounts, signals) do it in a
// forked child, which reports through its exit code (0 pass, 77 skip, else fail).

#include "runtime/nvme_store.h"

#include <dirent.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/capabilities.h"

namespace spillway {
namespace {

using ::testing::HasSubstr;

constexpr size_t kMiB = size_t{1} << 20;
constexpr int kChildSkip = 77;

// ---------------------------------------------------------------------------------------
// Helpers

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/spillway-nvme-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp(" << pattern << "): " << strerror(errno);
    }
    path_ = pattern;
  }
  ~TempDir() {
    chmod(path_.c_str(), 0700);
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Page-aligned anonymous memory (O_DIRECT needs aligned buffers).
class Buffer {
 public:
  explicit Buffer(size_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      ADD_FAILURE() << "mmap " << bytes << ": " << strerror(errno);
      p = nullptr;
    }
    data_ = static_cast<char*>(p);
  }
  ~Buffer() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  char* data() const { return data_; }
  size_t size() const { return bytes_; }

  // Deterministic contents: word i of the buffer depends on (seed, i) only.
  void Fill(uint64_t seed) {
    auto* words = reinterpret_cast<uint64_t*>(data_);
    for (size_t i = 0; i < bytes_ / 8; ++i) {
      uint64_t x = seed * 0x9E3779B97F4A7C15ull + i;
      x ^= x >> 31;
      x *= 0xBF58476D1CE4E5B9ull;
      x ^= x >> 29;
      words[i] = x;
    }
  }
  void Clear(char c = 0) { memset(data_, c, bytes_); }

 private:
  size_t bytes_;
  char* data_ = nullptr;
};

bool SameBytes(const char* a, const char* b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

std::vector<std::string> ListDirectory(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return {"<opendir failed>"};
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
  }
  closedir(d);
  return names;
}

// File descriptors of this process that refer to a file under `dir`, as
// "/proc/self/fd/N" paths (stat() through them reaches the inode, named or not).
std::vector<std::string> OpenFilesUnder(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    char target[4096];
    const ssize_t n = readlink(entry.path().c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (std::string_view(target).starts_with(dir + "/")) found.push_back(entry.path());
  }
  return found;
}

NvmeStoreConfig Config(const std::string& dir, uint64_t limit = 256 * kMiB) {
  NvmeStoreConfig config;
  config.directory = dir;
  config.limit_bytes = limit;
  return config;
}

std::unique_ptr<NvmeStore> OpenOrDie(const NvmeStoreConfig& config) {
  absl::StatusOr<std::unique_ptr<NvmeStore>> store = NvmeStore::Open(config);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

// Runs `body` in a forked child and returns its exit code (128 + signal if killed).
int RunInChild(const std::function<int()>& body) {
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int code = body();
    fflush(nullptr);
    _exit(code);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define CHILD_CHECK(cond)                                                               \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      fprintf(stderr, "%s:%d: check failed in child: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                                         \
    }                                                                                   \
  } while (0)

#define EXPECT_CHILD_PASSES(code)                                            \
  do {                                                                       \
    const int child_code = (code);                                           \
    if (child_code == kChildSkip) GTEST_SKIP() << "child skipped (see log)"; \
    EXPECT_EQ(child_code, 0) << "child failed (see its log above)";          \
  } while (0)

// Removes capabilities for good (root keeps bypassing file modes and memlock limits
// otherwise); the child that calls it is single-threaded, so the whole process loses them.
bool DropCapabilities(std::initializer_list<int> caps) {
  return spw_test::ClearCapabilities(caps, /*permanently=*/true);
}

// ---------------------------------------------------------------------------------------
// ExtentAllocator, without a file

constexpr uint64_t kUnit = 4096;

struct GrowRecorder {
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  absl::Status next = absl::OkStatus();
  ExtentAllocator::GrowFn fn() {
    return [this](uint64_t from, uint64_t to) {
      calls.emplace_back(from, to);
      return next;
    };
  }
};

TEST(NvmeExtentAllocatorTest, BestFitCoalescesAndGrowsOnlyByWhatIsMissing) {
  GrowRecorder grow;
  ExtentAllocator alloc(kUnit, uint64_t{1} << 30, grow.fn());
  auto a = alloc.Allocate(kUnit);
  auto b = alloc.Allocate(3 * kUnit);
  auto c = alloc.Allocate(1);  // rounded up to one unit
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, (Extent{0, kUnit}));
  EXPECT_EQ(*b, (Extent{kUnit, 3 * kUnit}));
  EXPECT_EQ(*c, (Extent{4 * kUnit, kUnit}));
  EXPECT_EQ(alloc.bytes_used(), 5 * kUnit);
  EXPECT_EQ(alloc.bytes_reserved(), 5 * kUnit);
  EXPECT_EQ(grow.calls.size(), 3u);

  // Freeing a and b leaves one coalesced 4-unit hole at 0.
  ASSERT_TRUE(alloc.Free(*b).ok());
  ASSERT_TRUE(alloc.Free(*a).ok());
  EXPECT_EQ(alloc.free_extent_count(), 1u);
  EXPECT_EQ(alloc.largest_free_extent(), 4 * kUnit);

  // Best fit: a 2-unit request takes the front of the hole, no growth.
  auto d = alloc.Allocate(2 * kUnit);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, (Extent{0, 2 * kUnit}));
  EXPECT_EQ(grow.calls.size(), 3u);

  // Free the tail extent: the hole at the end [4, 5) plus [2, 4) coalesce; a 4-unit
  // request then grows the file by exactly 1 unit and starts at unit 2.
  ASSERT_TRUE(alloc.Free(*c).ok());
  EXPECT_EQ(alloc.free_extent_count(), 1u);
  auto e = alloc.Allocate(4 * kUnit);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, (Extent{2 * kUnit, 4 * kUnit}));
  ASSERT_EQ(grow.calls.size(), 4u);
  EXPECT_EQ(grow.calls.back(), (std::pair<uint64_t, uint64_t>{5 * kUnit, 6 * kUnit}));
}

TEST(NvmeExtentAllocatorTest, DoubleAndForeignFreesAreDetected) {
  GrowRecorder grow;
  ExtentAllocator alloc(512, 1 << 20, grow.fn());
  auto a = alloc.Allocate(1000);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->length, 1024u);
  EXPECT_TRUE(alloc.Free(*a).ok());
  EXPECT_EQ(alloc.Free(*a).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(alloc.Free(Extent{4096, 512}).code(), absl::StatusCode::kFailedPrecondition);
  auto b = alloc.Allocate(2048);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(alloc.Free(Extent{b->offset, 1024}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(alloc.bytes_used(), 2048u);
  EXPECT_EQ(alloc.Allocate(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NvmeExtentAllocatorTest, LimitAndFailedGrowthChangeNothing) {
  GrowRecorder grow;
  ExtentAllocator alloc(kUnit, 16 * kUnit, grow.fn());
  auto a = alloc.Allocate(10 * kUnit);
  ASSERT_TRUE(a.ok());
  auto over = alloc.Allocate(7 * kUnit);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(), HasSubstr("limit"));

  grow.next = absl::ResourceExhaustedError("disk full");
  auto full = alloc.Allocate(2 * kUnit);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(alloc.bytes_reserved(), 10 * kUnit);
  EXPECT_EQ(alloc.bytes_used(), 10 * kUnit);
  EXPECT_TRUE(alloc.IsAllocated(*a));

  grow.next = absl::OkStatus();
  auto fits = alloc.Allocate(6 * kUnit);
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(fits->offset, 10 * kUnit);
}

TEST(NvmeExtentAllocatorTest, RandomisedExtentsNeverOverlapAndFullyCoalesce) {
  GrowRecorder grow;
  ExtentAllocator alloc(512, uint64_t{1} << 30, grow.fn());
  std::mt19937_64 rng(42);
  std::vector<Extent> live;
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      auto e = alloc.Allocate(1 + rng() % (uint64_t{64} << 10));
      ASSERT_TRUE(e.ok()) << e.status();
      live.push_back(*e);
    } else {
      const size_t i = rng() % live.size();
      ASSERT_TRUE(alloc.Free(live[i]).ok());
      live[i] = live.back();
      live.pop_back();
    }
  }
  std::sort(live.begin(), live.end(),
            [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
  uint64_t used = 0;
  for (size_t i = 0; i < live.size(); ++i) {
    used += live[i].length;
    EXPECT_EQ(live[i].offset % 512, 0u);
    if (i > 0) {
      ASSERT_LE(live[i - 1].offset + live[i - 1].length, live[i].offset);
    }
  }
  EXPECT_EQ(alloc.bytes_used(), used);
  for (const Extent& e : live) ASSERT_TRUE(alloc.Free(e).ok());
  EXPECT_EQ(alloc.bytes_used(), 0u);
  EXPECT_EQ(alloc.free_extent_count(), 1u);
  EXPECT_EQ(alloc.largest_free_extent(), alloc.bytes_reserved());
}

// ---------------------------------------------------------------------------------------
// NvmeStore: opening

TEST(NvmeStoreTest, OpenReportsDirectIoAlignment) {
  TempDir dir;
  auto store = OpenOrDie(Config(dir.path()));
  ASSERT_NE(store, nullptr);
  const size_t a = store->alignment();
  EXPECT_GT(a, 0u);
  EXPECT_EQ(a & (a - 1), 0u);
  EXPECT_EQ(store->allocation_unit() % a, 0u);
  EXPECT_EQ(store->request_bytes(), 1 * kMiB);
  EXPECT_EQ(store->queue_depth(), 8u);
  RecordProperty("alignment", std::to_string(a));
  RecordProperty("alignment_from_statx", store->alignment_from_statx() ? "yes" : "no");
  RecordProperty("allocation_unit", std::to_string(store->allocation_unit()));
  printf("direct-I/O alignment %zu (from %s), allocation unit %zu\n", a,
         store->alignment_from_statx() ? "statx STATX_DIOALIGN" : "fallback",
         store->allocation_unit());
}

TEST(NvmeStoreTest, OpenErrorsNameThePath) {
  TempDir dir;
  const std::string missing = dir.path() + "/no-such-dir";
  auto s1 = NvmeStore::Open(Config(missing));
  EXPECT_EQ(s1.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s1.status().message(), HasSubstr(missing));

  const std::string file = dir.path() + "/plain-file";
  FILE* f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  auto s2 = NvmeStore::Open(Config(file));
  EXPECT_EQ(s2.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s2.status().message(), HasSubstr(file));
  ASSERT_EQ(unlink(file.c_str()), 0);

  NvmeStoreConfig bad = Config(dir.path());
  bad.queue_depth = 0;
  EXPECT_EQ(NvmeStore::Open(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = Config(dir.path());
  bad.request_bytes = 1000;  // not a multiple of any direct-I/O alignment
  EXPECT_EQ(NvmeStore::Open(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = Config(dir.path(), /*limit=*/0);
  EXPECT_EQ(NvmeStore::Open(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ListDirectory(dir.path()).empty());
}

TEST(NvmeStoreTest, UnwritableDirectoryIsAClearError) {
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0500), 0);
  EXPECT_CHILD_PASSES(RunInChild([&] {
    // Root passes every permission check; drop the capabilities that make it so.
    if (geteuid() == 0 && !DropCapabilities({CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH})) {
      fprintf(stderr, "cannot drop CAP_DAC_OVERRIDE: skipping\n");
      return kChildSkip;
    }
    auto store = NvmeStore::Open(Config(dir.path()));
    CHILD_CHECK(store.status().code() == absl::StatusCode::kPermissionDenied);
    CHILD_CHECK(absl::StrContains(store.status().message(), dir.path()));
    fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    return 0;
  }));
}

// ---------------------------------------------------------------------------------------
// NvmeStore: the spill file stays private and leaves nothing behind

void ExpectPrivateSpillFile(bool use_o_tmpfile) {
  TempDir dir;
  NvmeStoreConfig config = Config(dir.path());
  config.use_o_tmpfile = use_o_tmpfile;
  {
    auto store = OpenOrDie(config);
    ASSERT_NE(store, nullptr);
    // ext4, xfs, btrfs and tmpfs all have O_TMPFILE.
    EXPECT_EQ(store->uses_o_tmpfile(), use_o_tmpfile);
    Buffer buf(4 * kMiB);
    buf.Fill(1);
    auto extent = store->Allocate(buf.size());
    ASSERT_TRUE(extent.ok()) << extent.status();
    ASSERT_TRUE(store->Write(*extent, 0, buf.data(), buf.size()).ok());

    EXPECT_TRUE(ListDirectory(dir.path()).empty()) << "the spill file has a name";
    const std::vector<std::string> fds = OpenFilesUnder(dir.path());
    ASSERT_EQ(fds.size(), 1u);
    struct stat st {};
    ASSERT_EQ(stat(fds[0].c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(st.st_nlink, 0u);
    EXPECT_GE(static_cast<uint64_t>(st.st_size), buf.size());
  }
  EXPECT_TRUE(OpenFilesUnder(dir.path()).empty());
  EXPECT_TRUE(ListDirectory(dir.path()).empty());
}

TEST(NvmeStoreTest, TmpfileSpillFileIsInvisibleAndPrivate) { ExpectPrivateSpillFile(true); }

TEST(NvmeStoreTest, MkstempFallbackIsUnlinkedAndPrivate) { ExpectPrivateSpillFile(false); }

TEST(NvmeStoreTest, NothingLeftBehindAfterACrash) {
  for (bool use_o_tmpfile : {true, false}) {
    TempDir dir;
    const int code = RunInChild([&] {
      NvmeStoreConfig config = Config(dir.path());
      config.use_o_tmpfile = use_o_tmpfile;
      auto store = NvmeStore::Open(config);
      CHILD_CHECK(store.ok());
      Buffer buf(8 * kMiB);
      buf.Fill(2);
      auto extent = (*store)->Allocate(buf.size());
      CHILD_CHECK(extent.ok());
      CHILD_CHECK((*store)->Write(*extent, 0, buf.data(), buf.size()).ok());
      raise(SIGKILL);
      return 1;
    });
    EXPECT_EQ(code, 128 + SIGKILL);
    EXPECT_TRUE(ListDirectory(dir.path()).empty()) << "use_o_tmpfile=" << use_o_tmpfile;
  }
}

// ---------------------------------------------------------------------------------------
// NvmeStore: data

TEST(NvmeStoreTest, RoundTripIsByteExactForManySizesAndOffsets) {
  TempDir dir;
  auto store = OpenOrDie(Config(dir.path(), 1024 * kMiB));
  ASSERT_NE(store, nullptr);
  const size_t a = store->alignment();
  const std::vector<size_t> sizes = {a,
                                     2 * a,
                                     3 * a,
                                     4096,
                                     5 * size_t{4096},
                                     kMiB - a,
                                     kMiB,
                                     kMiB + a,
                                     3 * kMiB + 7 * a,
                                     8 * kMiB,
                                     17 * kMiB + 4096,
                                     64 * kMiB};
  const std::vector<size_t> offsets = {0, a, 5 * a, kMiB - a, 3 * kMiB};
  Buffer src(64 * kMiB + 4 * kMiB);
  Buffer dst(64 * kMiB + 4 * kMiB);
  uint64_t seed = 100;
  for (size_t bytes : sizes) {
    for (size_t offset : offsets) {
      if (bytes == 64 * kMiB && offset != 0 && offset != a) continue;  // keep it quick
      auto extent = store->Allocate(offset + bytes);
      ASSERT_TRUE(extent.ok()) << extent.status();
      src.Fill(++seed);
      // Source and destination at different (aligned) places in their buffers too.
      const char* from = src.data() + (seed % 4) * a;
      char* to = dst.data() + ((seed + 1) % 4) * a;
      ASSERT_TRUE(store->Write(*extent, offset, from, bytes).ok())
          << "bytes " << bytes << " offset " << offset;
      memset(to, 0xA5, bytes);
      ASSERT_TRUE(store->Read(*extent, offset, to, bytes).ok());
      ASSERT_TRUE(SameBytes(from, to, bytes)) << "bytes " << bytes << " offset " << offset;
      ASSERT_TRUE(store->Free(*extent).ok());
    }
  }
  EXPECT_EQ(store->bytes_used(), 0u);
  const NvmeStoreStats stats = store->stats();
  EXPECT_EQ(stats.bytes_written, stats.bytes_read);
  EXPECT_EQ(stats.failed_requests, 0u);
}

TEST(NvmeStoreTest, ManyInterleavedExtentsKeepTheirOwnData) {
  TempDir dir;
  NvmeStoreConfig config = Config(dir.path());
  config.request_bytes = size_t{256} << 10;
  auto store = OpenOrDie(config);
  ASSERT_NE(store, nullptr);
  const size_t unit = store->allocation_unit();
  std::mt19937_64 rng(7);
  struct Item {
    Extent extent;
    size_t bytes;
    std::unique_ptr<Buffer> data;
  };
  std::vector<Item> items;
  for (int i = 0; i < 48; ++i) {
    const size_t bytes = unit * (1 + rng() % 300);
    auto extent = store->Allocate(bytes);
    ASSERT_TRUE(extent.ok()) << extent.status();
    items.push_back({*extent, bytes, std::make_unique<Buffer>(bytes)});
    items.back().data->Fill(1000 + i);
  }
  // All writes in flight together, in a shuffled order.
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<NvmeStore::Ticket> tickets;
  for (size_t i : order) {
    auto t = store->WriteAsync(items[i].extent, 0, items[i].data->data(), items[i].bytes);
    ASSERT_TRUE(t.ok()) << t.status();
    tickets.push_back(*std::move(t));
  }
  for (auto& t : tickets) ASSERT_TRUE(store->Wait(std::move(t)).ok());
  // Free every other extent and refill the holes with new data.
  for (size_t i = 0; i < items.size(); i += 2) {
    ASSERT_TRUE(store->Free(items[i].extent).ok());
  }
  for (size_t i = 0; i < items.size(); i += 2) {
    auto extent = store->Allocate(items[i].bytes);
    ASSERT_TRUE(extent.ok());
    items[i].extent = *extent;
    items[i].data->Fill(5000 + i);
    ASSERT_TRUE(store->Write(items[i].extent, 0, items[i].data->data(), items[i].bytes).ok());
  }
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i : order) {
    Buffer back(items[i].bytes);
    ASSERT_TRUE(store->Read(items[i].extent, 0, back.data(), items[i].bytes).ok());
    ASSERT_TRUE(SameBytes(back.data(), items[i].data->data(), items[i].bytes)) << "item " << i;
  }
}

TEST(NvmeStoreTest, FreedSpaceIsReusedAndCoalesced) {
  TempDir dir;
  auto store = OpenOrDie(Config(dir.path()));
  ASSERT_NE(store, nullptr);
  auto a = store->Allocate(4 * kMiB);
  auto b = store->Allocate(4 * kMiB);
  auto c = store->Allocate(4 * kMiB);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(store->bytes_reserved(), 12 * kMiB);
  Buffer keep(4 * kMiB);
  keep.Fill(3);
  ASSERT_TRUE(store->Write(*c, 0, keep.data(), keep.size()).ok());

  ASSERT_TRUE(store->Free(*b).ok());
  ASSERT_TRUE(store->Free(*a).ok());
  EXPECT_EQ(store->bytes_used(), 4 * kMiB);
  // The two holes coalesced: an 8 MiB extent fits at offset 0 without growing the file.
  auto big = store->Allocate(8 * kMiB);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->offset, 0u);
  EXPECT_EQ(store->bytes_reserved(), 12 * kMiB);
  EXPECT_EQ(store->Free(*a).code(), absl::StatusCode::kFailedPrecondition);  // double free

  Buffer back(4 * kMiB);
  ASSERT_TRUE(store->Read(*c, 0, back.data(), back.size()).ok());
  EXPECT_TRUE(SameBytes(back.data(), keep.data(), keep.size()));
}

TEST(NvmeStoreTest, MisalignedOrOutOfRangeTransfersAreRejected) {
  TempDir dir;
  auto store = OpenOrDie(Config(dir.path()));
  ASSERT_NE(store, nullptr);
  const size_t a = store->alignment();
  auto extent = store->Allocate(kMiB);
  ASSERT_TRUE(extent.ok());
  Buffer buf(2 * kMiB);
  const auto code = [](const absl::Status& s) { return s.code(); };
  EXPECT_EQ(code(store->Write(*extent, 0, buf.data() + 1, a)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(store->Write(*extent, a / 2, buf.data(), a)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(store->Write(*extent, 0, buf.data(), a + 1)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(store->Read(*extent, 0, buf.data() + a / 2, a)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->ReadAsync(*extent, 1, buf.data(), a).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(store->Read(*extent, kMiB - a, buf.data(), 2 * a)), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(code(store->Read(*extent, 0, buf.data(), 0)), absl::StatusCode::kOk);
  ASSERT_TRUE(store->Free(*extent).ok());
  EXPECT_EQ(code(store->Read(*extent, 0, buf.data(), a)), absl::StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------------------
// NvmeStore: limits and full disks

TEST(NvmeStoreTest, LimitReachedIsResourceExhaustedAndKeepsData) {
  TempDir dir;
  auto store = OpenOrDie(Config(dir.path(), 10 * kMiB));
  ASSERT_NE(store, nullptr);
  std::vector<std::pair<Extent, std::unique_ptr<Buffer>>> stored;
  absl::Status last;
  for (int i = 0; i < 10; ++i) {
    auto extent = store->Allocate(3 * kMiB);
    if (!extent.ok()) {
      last = extent.status();
      break;
    }
    auto data = std::make_unique<Buffer>(3 * kMiB);
    data->Fill(200 + i);
    ASSERT_TRUE(store->Write(*extent, 0, data->data(), data->size()).ok());
    stored.emplace_back(*extent, std::move(data));
  }
  EXPECT_EQ(stored.size(), 3u);
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(last.message(), HasSubstr("limit"));
  EXPECT_LE(store->bytes_reserved(), 10 * kMiB);
  EXPECT_TRUE(store->Allocate(kMiB).ok());  // what is left still serves small requests
  for (auto& [extent, data] : stored) {
    Buffer back(data->size());
    ASSERT_TRUE(store->Read(extent, 0, back.data(), back.size()).ok());
    EXPECT_TRUE(SameBytes(back.data(), data->data(), data->size()));
  }
}

TEST(NvmeStoreTest, FileSizeLimitEfbigIsResourceExhaustedAndKeepsData) {
  TempDir dir;
  EXPECT_CHILD_PASSES(RunInChild([&] {
    signal(SIGXFSZ, SIG_IGN);  // else EFBIG comes with a fatal signal
    auto store = NvmeStore::Open(Config(dir.path(), 64 * kMiB));
    CHILD_CHECK(store.ok());
    NvmeStore& s = **store;
    Buffer data(4 * kMiB);
    data.Fill(300);
    auto first = s.Allocate(data.size());
    CHILD_CHECK(first.ok());
    CHILD_CHECK(s.Write(*first, 0, data.data(), data.size()).ok());

    // Lowered after Open, the limit is met by the kernel: fallocate fails with EFBIG.
    struct rlimit fsize = {6 * kMiB, 6 * kMiB};
    CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &fsize) == 0);
    auto second = s.Allocate(4 * kMiB);
    fprintf(stderr, "over RLIMIT_FSIZE: %s\n", second.status().ToString().c_str());
    CHILD_CHECK(second.status().code() == absl::StatusCode::kResourceExhausted);
    CHILD_CHECK(absl::StrContains(second.status().message(), "RLIMIT_FSIZE"));
    CHILD_CHECK(s.bytes_reserved() == 4 * kMiB);
    struct stat st {};
    const std::vector<std::string> fds = OpenFilesUnder(dir.path());
    CHILD_CHECK(fds.size() == 1 && stat(fds[0].c_str(), &st) == 0);
    CHILD_CHECK(static_cast<uint64_t>(st.st_size) == 4 * kMiB);  // shrunk back

    Buffer back(data.size());
    CHILD_CHECK(s.Read(*first, 0, back.data(), back.size()).ok());
    CHILD_CHECK(SameBytes(back.data(), data.data(), data.size()));
    auto small = s.Allocate(kMiB);  // still fits under the limit
    CHILD_CHECK(small.ok());
    CHILD_CHECK(s.Write(*small, 0, data.data(), kMiB).ok());

    // Known at Open, the limit caps the store instead (no signal is ever raised).
    signal(SIGXFSZ, SIG_DFL);
    auto capped = NvmeStore::Open(Config(dir.path(), 64 * kMiB));
    CHILD_CHECK(capped.ok());
    CHILD_CHECK((*capped)->limit_bytes() == 6 * kMiB);
    CHILD_CHECK((*capped)->Allocate(8 * kMiB).status().code() ==
                absl::StatusCode::kResourceExhausted);
    return 0;
  }));
}

TEST(NvmeStoreTest, FullTmpfsIsResourceExhaustedAndKeepsData) {
  TempDir dir;
  EXPECT_CHILD_PASSES(RunInChild([&] {
    // A private mount namespace, so that the tiny tmpfs disappears with the child.
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) ||
        mount("spillway-test", dir.path().c_str(), "tmpfs", 0, "size=8m,mode=0700") != 0) {
      fprintf(stderr, "cannot mount a tmpfs here (%s): skipping\n", strerror(errno));
      return kChildSkip;
    }
    auto store = NvmeStore::Open(Config(dir.path(), 64 * kMiB));
    if (!store.ok() && store.status().code() == absl::StatusCode::kFailedPrecondition) {
      fprintf(stderr, "%s: skipping\n", store.status().ToString().c_str());
      return kChildSkip;  // a kernel whose tmpfs refuses O_DIRECT (before 6.6)
    }
    CHILD_CHECK(store.ok());
    NvmeStore& s = **store;
    std::vector<std::pair<Extent, uint64_t>> stored;
    Buffer data(2 * kMiB);
    absl::Status last;
    for (uint64_t i = 0; i < 16; ++i) {
      auto extent = s.Allocate(data.size());
      if (!extent.ok()) {
        last = extent.status();
        break;
      }
      data.Fill(400 + i);
      CHILD_CHECK(s.Write(*extent, 0, data.data(), data.size()).ok());
      stored.emplace_back(*extent, 400 + i);
    }
    fprintf(stderr, "tmpfs full after %zu extents: %s\n", stored.size(), last.ToString().c_str());
    CHILD_CHECK(!stored.empty() && stored.size() < 16);
    CHILD_CHECK(last.code() == absl::StatusCode::kResourceExhausted);
    CHILD_CHECK(absl::StrContains(last.message(), "disk full"));
    Buffer back(data.size());
    for (const auto& [extent, seed] : stored) {
      data.Fill(seed);
      CHILD_CHECK(s.Read(extent, 0, back.data(), back.size()).ok());
      CHILD_CHECK(SameBytes(back.data(), data.data(), data.size()));
    }
    return 0;
  }));
}

// ---------------------------------------------------------------------------------------
// NvmeStore: registered buffers

TEST(NvmeStoreTest, RegisteredBuffersGiveIdenticalData) {
  TempDir dir;
  auto store = OpenOrDie(Config(dir.path()));
  ASSERT_NE(store, nullptr);
  Buffer pinned(8 * kMiB);
  // Register only the first half: a transfer of the whole buffer then mixes fixed and
  // plain requests.
  const iovec half = {pinned.data(), 4 * kMiB};
  ASSERT_TRUE(store->RegisterBuffers({&half, 1}).ok());
  EXPECT_EQ(store->registered_buffer_count(), 1u);

  auto extent = store->Allocate(8 * kMiB);
  ASSERT_TRUE(extent.ok());
  pinned.Fill(500);
  Buffer expected(8 * kMiB);
  memcpy(expected.data(), pinned.data(), expected.size());

  NvmeStoreStats before = store->stats();
  ASSERT_TRUE(store->Write(*extent, 0, pinned.data(), pinned.size()).ok());
  NvmeStoreStats after = store->stats();
  EXPECT_EQ(after.fixed_requests - before.fixed_requests, 4u);
  EXPECT_EQ(after.requests - before.requests, 8u);

  Buffer plain(8 * kMiB);
  ASSERT_TRUE(store->Read(*extent, 0, plain.data(), plain.size()).ok());  // no fixed
  EXPECT_TRUE(SameBytes(plain.data(), expected.data(), expected.size()));
  pinned.Clear();
  before = store->stats();
  ASSERT_TRUE(store->Read(*extent, kMiB, pinned.data(), 3 * kMiB).ok());  // all fixed
  EXPECT_EQ(store->stats().fixed_requests - before.fixed_requests, 3u);
  EXPECT_TRUE(SameBytes(pinned.data(), expected.data() + kMiB, 3 * kMiB));

  // Registration changes need a quiet ring (completions are only reaped by Wait or Poll,
  // so the read below is still in flight when RegisterBuffers runs).
  auto busy = store->ReadAsync(*extent, 0, plain.data(), kMiB);
  ASSERT_TRUE(busy.ok());
  EXPECT_EQ(store->RegisterBuffers({&half, 1}).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store->Wait(*std::move(busy)).ok());

  ASSERT_TRUE(store->UnregisterBuffers().ok());
  before = store->stats();
  ASSERT_TRUE(store->Read(*extent, 0, pinned.data(), kMiB).ok());
  EXPECT_EQ(store->stats().fixed_requests, before.fixed_requests);
  EXPECT_TRUE(SameBytes(pinned.data(), expected.data(), kMiB));
}

TEST(NvmeStoreTest, RegistrationBeyondMemlockFailsClearlyAndStoreKeepsWorking) {
  TempDir dir;
  EXPECT_CHILD_PASSES(RunInChild([&] {
    // io_uring charges registered buffers to RLIMIT_MEMLOCK unless the ring's creator has
    // CAP_IPC_LOCK (root does): drop it, and set a small limit.
    if (geteuid() == 0 && !DropCapabilities({CAP_IPC_LOCK})) {
      fprintf(stderr, "cannot drop CAP_IPC_LOCK: skipping\n");
      return kChildSkip;
    }
    struct rlimit memlock = {kMiB, kMiB};
    CHILD_CHECK(setrlimit(RLIMIT_MEMLOCK, &memlock) == 0);
    auto store = NvmeStore::Open(Config(dir.path()));
    CHILD_CHECK(store.ok());
    NvmeStore& s = **store;
    Buffer pinned(16 * kMiB);
    const iovec whole = {pinned.data(), pinned.size()};
    const absl::Status registered = s.RegisterBuffers({&whole, 1});
    fprintf(stderr, "registration over RLIMIT_MEMLOCK: %s\n", registered.ToString().c_str());
    CHILD_CHECK(registered.code() == absl::StatusCode::kResourceExhausted);
    CHILD_CHECK(absl::StrContains(registered.message(), "RLIMIT_MEMLOCK"));
    CHILD_CHECK(s.registered_buffer_count() == 0);

    auto extent = s.Allocate(pinned.size());
    CHILD_CHECK(extent.ok());
    pinned.Fill(600);
    Buffer back(pinned.size());
    CHILD_CHECK(s.Write(*extent, 0, pinned.data(), pinned.size()).ok());
    CHILD_CHECK(s.Read(*extent, 0, back.data(), back.size()).ok());
    CHILD_CHECK(SameBytes(back.data(), pinned.data(), pinned.size()));
    CHILD_CHECK(s.stats().fixed_requests == 0);
    return 0;
  }));
}

// ---------------------------------------------------------------------------------------
// NvmeStore: I/O errors and short transfers (injected through the completion hook)

TEST(NvmeStoreTest, ReadErrorNamesTheFileOffsetAndOtherDataSurvives) {
  TempDir dir;
  std::atomic<uint64_t> failing_offset{~uint64_t{0}};
  NvmeStoreConfig config = Config(dir.path());
  config.completion_hook = [&](const NvmeIoCompletion& io, int result) {
    return !io.is_write && io.file_offset == failing_offset.load() ? -EIO : result;
  };
  auto store = OpenOrDie(config);
  ASSERT_NE(store, nullptr);
  auto a = store->Allocate(8 * kMiB);
  auto b = store->Allocate(8 * kMiB);
  ASSERT_TRUE(a.ok() && b.ok());
  Buffer da(8 * kMiB), db(8 * kMiB), back(8 * kMiB);
  da.Fill(700);
  db.Fill(701);
  ASSERT_TRUE(store->Write(*a, 0, da.data(), da.size()).ok());
  ASSERT_TRUE(store->Write(*b, 0, db.data(), db.size()).ok());

  const uint64_t bad = b->offset + 3 * kMiB;
  failing_offset = bad;
  const absl::Status failed = store->Read(*b, 0, back.data(), back.size());
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(failed.message(), HasSubstr(absl::StrCat("file offset ", bad)));
  EXPECT_THAT(failed.message(), HasSubstr("Input/output error"));
  EXPECT_EQ(store->stats().failed_requests, 1u);

  // The failure is the transfer's, not the store's.
  ASSERT_TRUE(store->Read(*a, 0, back.data(), back.size()).ok());
  EXPECT_TRUE(SameBytes(back.data(), da.data(), da.size()));
  failing_offset = ~uint64_t{0};
  ASSERT_TRUE(store->Read(*b, 0, back.data(), back.size()).ok());
  EXPECT_TRUE(SameBytes(back.data(), db.data(), db.size()));
}

TEST(NvmeStoreTest, ShortTransfersAreContinued) {
  TempDir dir;
  NvmeStoreConfig config = Config(dir.path());
  config.request_bytes = size_t{512} << 10;
  // Report half of every full request as done: the store must submit the other half.
  config.completion_hook = [&](const NvmeIoCompletion& io, int result) {
    const bool full_request = io.file_offset % (512 << 10) == 0 && io.length == (512 << 10);
    return full_request && result == static_cast<int>(io.length) ? result / 2 : result;
  };
  auto store = OpenOrDie(config);
  ASSERT_NE(store, nullptr);
  auto extent = store->Allocate(6 * kMiB);
  ASSERT_TRUE(extent.ok());
  Buffer data(6 * kMiB), back(6 * kMiB);
  data.Fill(800);
  ASSERT_TRUE(store->Write(*extent, 0, data.data(), data.size()).ok());
  ASSERT_TRUE(store->Read(*extent, 0, back.data(), back.size()).ok());
  EXPECT_TRUE(SameBytes(back.data(), data.data(), data.size()));
  const NvmeStoreStats stats = store->stats();
  EXPECT_EQ(stats.continued_requests, 24u);  // 12 requests each way
  EXPECT_EQ(stats.bytes_written, 6 * kMiB);
}

// ---------------------------------------------------------------------------------------
// NvmeStore: asynchronous use and threads

TEST(NvmeStoreTest, AsyncReadsPipelineLikeTheMover) {
  TempDir dir;
  NvmeStoreConfig config = Config(dir.path());
  config.request_bytes = size_t{256} << 10;
  auto store = OpenOrDie(config);
  ASSERT_NE(store, nullptr);
  constexpr size_t kPiece = 2 * kMiB;
  constexpr size_t kPieces = 12;
  auto extent = store->Allocate(kPiece * kPieces);
  ASSERT_TRUE(extent.ok());
  Buffer data(kPiece * kPieces);
  data.Fill(900);
  ASSERT_TRUE(store->Write(*extent, 0, data.data(), data.size()).ok());

  // Two staging buffers: read piece k+1 while piece k is "copied to the device".
  Buffer staging0(kPiece), staging1(kPiece), device(kPiece * kPieces);
  char* staging[2] = {staging0.data(), staging1.data()};
  std::vector<NvmeStore::Ticket> tickets(kPieces);
  auto start_read = [&](size_t k) {
    auto t = store->ReadAsync(*extent, k * kPiece, staging[k % 2], kPiece);
    ASSERT_TRUE(t.ok()) << t.status();
    tickets[k] = *std::move(t);
  };
  start_read(0);
  for (size_t k = 0; k < kPieces; ++k) {
    if (k + 1 < kPieces) start_read(k + 1);
    ASSERT_TRUE(store->Wait(std::move(tickets[k])).ok());
    memcpy(device.data() + k * kPiece, staging[k % 2], kPiece);  // the "H2D copy"
  }
  EXPECT_TRUE(SameBytes(device.data(), data.data(), data.size()));

  // Poll never blocks and eventually sees completion; a ticket is good for one Wait.
  auto t = store->ReadAsync(*extent, 0, staging[0], kPiece);
  ASSERT_TRUE(t.ok());
  NvmeStore::Ticket ticket = *std::move(t);
  while (!store->Poll(ticket)) std::this_thread::yield();
  NvmeStore::Ticket copy = std::move(ticket);
  EXPECT_FALSE(ticket.valid());  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_TRUE(store->Wait(std::move(copy)).ok());
  EXPECT_EQ(store->Wait(NvmeStore::Ticket()).code(), absl::StatusCode::kInvalidArgument);

  // Tickets never waited for are reclaimed when the store goes away.
  for (int k = 0; k < 4; ++k) {
    auto dropped = store->ReadAsync(*extent, k * kPiece, device.data() + k * kPiece, kPiece);
    ASSERT_TRUE(dropped.ok());
  }
  store.reset();
}

TEST(NvmeStoreTest, ConcurrentReadsAndWritesFromManyThreads) {
  TempDir dir;
  NvmeStoreConfig config = Config(dir.path(), 512 * kMiB);
  config.request_bytes = size_t{256} << 10;
  config.queue_depth = 16;
  auto store = OpenOrDie(config);
  ASSERT_NE(store, nullptr);
  const size_t unit = store->allocation_unit();
  constexpr int kThreads = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int iter = 0; iter < 25; ++iter) {
        const size_t bytes = unit * (1 + rng() % 768);
        Buffer data(bytes), back(bytes);
        data.Fill(t * 1000 + iter);
        auto extent = store->Allocate(bytes);
        if (!extent.ok()) {
          ++failures;
          return;
        }
        bool ok = store->Write(*extent, 0, data.data(), bytes).ok();
        if (iter % 2 == 0) {
          ok = ok && store->Read(*extent, 0, back.data(), bytes).ok();
        } else {
          auto ticket = store->ReadAsync(*extent, 0, back.data(), bytes);
          ok = ok && ticket.ok();
          if (ok) {
            while (rng() % 2 == 0 && !store->Poll(*ticket)) std::this_thread::yield();
            ok = store->Wait(*std::move(ticket)).ok();
          }
        }
        ok = ok && SameBytes(back.data(), data.data(), bytes);
        ok = ok && store->Free(*extent).ok();
        if (!ok) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store->bytes_used(), 0u);
  EXPECT_EQ(store->stats().failed_requests, 0u);
}

}  // namespace
}  // namespace spillway
