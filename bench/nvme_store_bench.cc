// SPDX-License-Identifier: Apache-2.0
//
// nvme_store_bench: sequential write-then-read throughput of the NVMe store (runtime/
// nvme_store.h) against fio on the same file system, with the same request size and queue
// depth, run side by side (store, fio, store, fio, ...) so that both see the same disk
// weather. Reports the median of each and the ratio store/fio, as a table on stdout and as
// JSON (--json, default ./nvme_store_bench.json). Without fio installed, reports the store
// alone.
//
// Each run starts from a fresh file for both: the store opens a new spill file and
// allocates (fallocates) the extent before the clock starts; fio lays out a new file before
// its clock starts. Both then write into preallocated blocks and read back what they wrote,
// with O_DIRECT through io_uring. Phases alternate store/fio (write, write, read, read),
// with fio going first in odd runs.
// Medians say what is typical and the best runs what each can reach: on a noisy (shared,
// virtual) disk compare both.

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "runtime/nvme_store.h"

namespace spillway {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

struct Flags {
  std::string dir;
  uint64_t bytes = 1024 * kMiB;
  uint64_t block = kMiB;
  unsigned qd = 8;
  int runs = 3;
  uint64_t segment = 2 * kMiB;  // bytes per store transfer (a chunk, as the mover moves)
  bool register_buffers = true;
  bool hugepages = false;
  bool fio = true;
  std::string json = "nvme_store_bench.json";
};

void PrintUsage(const char* argv0) {
  printf(
      "usage: %s [flags]\n"
      "Sequential write then read throughput of Spillway's NVMe store vs fio.\n\n"
      "  --dir=PATH      directory on the file system to test (default $TMPDIR or /tmp)\n"
      "  --bytes=SIZE    bytes written then read per run (default 1G)\n"
      "  --block=SIZE    request size: the store's request_bytes and fio's --bs (default 1M)\n"
      "  --qd=N          requests in flight: the store's queue_depth, fio's --iodepth "
      "(default 8)\n"
      "  --runs=N        alternating store/fio runs; medians are reported (default 3)\n"
      "  --segment=SIZE  bytes per store transfer, as many in flight as fill the queue,\n"
      "                  plus one (default 2M, the mover's chunk)\n"
      "  --no-register   do not register the store's buffers with io_uring\n"
      "  --hugepages     back the store's buffers with 2 MiB pages (MADV_HUGEPAGE); fio's\n"
      "                  buffers stay on 4 KiB pages\n"
      "  --no-fio        measure the store alone\n"
      "  --json=PATH     where to write the JSON results (default ./nvme_store_bench.json)\n"
      "  --help          this text\n"
      "SIZE takes K, M, G, T suffixes (powers of 1024).\n",
      argv0);
}

std::optional<uint64_t> ParseSize(absl::string_view text) {
  uint64_t scale = 1;
  if (!text.empty()) {
    switch (text.back() | 0x20) {
      case 'k':
        scale = uint64_t{1} << 10;
        break;
      case 'm':
        scale = uint64_t{1} << 20;
        break;
      case 'g':
        scale = uint64_t{1} << 30;
        break;
      case 't':
        scale = uint64_t{1} << 40;
        break;
      default:
        break;
    }
    if (scale != 1) text.remove_suffix(1);
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value == 0) return std::nullopt;
  return value * scale;
}

// Accepts --name=value and --name value.
bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    absl::string_view name = arg;
    std::optional<absl::string_view> value;
    if (const size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    auto take = [&]() -> std::optional<absl::string_view> {
      if (value) return value;
      if (i + 1 < argc) return absl::string_view(argv[++i]);
      return std::nullopt;
    };
    auto size = [&](uint64_t* out) {
      auto v = take();
      auto parsed = v ? ParseSize(*v) : std::nullopt;
      if (!parsed) fprintf(stderr, "bad or missing size for %.*s\n", int(name.size()), name.data());
      if (parsed) *out = *parsed;
      return parsed.has_value();
    };
    auto integer = [&](auto* out) {
      auto v = take();
      int parsed = 0;
      const bool ok = v && absl::SimpleAtoi(*v, &parsed) && parsed > 0;
      if (!ok) fprintf(stderr, "bad or missing number for %.*s\n", int(name.size()), name.data());
      if (ok) *out = parsed;
      return ok;
    };
    bool ok = true;
    if (name == "--help" || name == "-h") {
      PrintUsage(argv[0]);
      exit(0);
    } else if (name == "--dir") {
      auto v = take();
      ok = v.has_value();
      if (ok) flags->dir = std::string(*v);
    } else if (name == "--bytes") {
      ok = size(&flags->bytes);
    } else if (name == "--block") {
      ok = size(&flags->block);
    } else if (name == "--segment") {
      ok = size(&flags->segment);
    } else if (name == "--qd") {
      ok = integer(&flags->qd);
    } else if (name == "--runs") {
      ok = integer(&flags->runs);
    } else if (name == "--json") {
      auto v = take();
      ok = v.has_value();
      if (ok) flags->json = std::string(*v);
    } else if (name == "--no-register") {
      flags->register_buffers = false;
    } else if (name == "--hugepages") {
      flags->hugepages = true;
    } else if (name == "--no-fio") {
      flags->fio = false;
    } else {
      fprintf(stderr, "unknown flag %s (see --help)\n", argv[i]);
      ok = false;
    }
    if (!ok) return false;
  }
  if (flags->dir.empty()) {
    const char* tmp = getenv("TMPDIR");
    flags->dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  if (flags->segment % flags->block != 0 || flags->bytes % flags->block != 0) {
    fprintf(stderr, "--bytes and --segment must be multiples of --block\n");
    return false;
  }
  flags->segment = std::min(flags->segment, flags->bytes);
  return true;
}

// Transfers kept in flight: enough to fill the queue, plus one so that slots freed while
// the oldest transfer finishes are refilled at once. Each has its own buffer: like fio's
// iodepth x bs, the buffers stay few and cache-warm, as the mover's staging buffers do.
size_t TransfersInFlight(const Flags& flags) {
  const uint64_t queue_bytes = uint64_t{flags.qd} * flags.block;
  return static_cast<size_t>((queue_bytes + flags.segment - 1) / flags.segment + 1);
}

std::string FileSystemName(const std::string& dir) {
  struct statfs fs {};
  if (statfs(dir.c_str(), &fs) != 0) return "unknown";
  switch (static_cast<uint64_t>(fs.f_type)) {
    case 0xEF53:
      return "ext4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x01021994:
      return "tmpfs";
    case 0x2FC12FC1:
      return "zfs";
    case 0x6969:
      return "nfs";
    case 0x794C7630:
      return "overlayfs";
    default:
      return absl::StrFormat("0x%x", static_cast<uint64_t>(fs.f_type));
  }
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

double Best(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// --- the store -------------------------------------------------------------------------

struct StoreInfo {
  size_t alignment = 0;
  bool alignment_from_statx = false;
  bool tmpfile = false;
  std::string registration = "off";
};

// Throughput, and CPU time per GiB moved: the second is what the software costs, and is
// far less noisy than throughput on a shared or virtual disk.
struct Measurement {
  double bytes_per_s = 0;
  double cpu_s_per_gib = 0;
};

// CPU time of this process (RUSAGE_SELF) or of its waited-for children (RUSAGE_CHILDREN),
// all threads included: io_uring's io-wq workers belong to the process they serve.
double CpuSeconds(int who = RUSAGE_SELF) {
  struct rusage usage {};
  getrusage(who, &usage);
  auto s = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return s(usage.ru_utime) + s(usage.ru_stime);
}

// Streams `flags.bytes` through the store in segments, keeping TransfersInFlight() of them
// in flight so that the request queue never drains between them.
absl::StatusOr<Measurement> TimeStore(NvmeStore& store, const Extent& extent, bool write,
                                      const std::vector<char*>& buffers, const Flags& flags) {
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = CpuSeconds();
  std::deque<NvmeStore::Ticket> in_flight;
  uint64_t done = 0;
  for (uint64_t offset = 0, k = 0; offset < flags.bytes; offset += flags.segment, ++k) {
    const uint64_t n = std::min(flags.segment, flags.bytes - offset);
    char* buffer = buffers[k % buffers.size()];
    auto ticket = write ? store.WriteAsync(extent, offset, buffer, n)
                        : store.ReadAsync(extent, offset, buffer, n);
    if (!ticket.ok()) return ticket.status();
    in_flight.push_back(*std::move(ticket));
    if (in_flight.size() == buffers.size()) {
      if (absl::Status s = store.Wait(std::move(in_flight.front())); !s.ok()) return s;
      in_flight.pop_front();
    }
    done += n;
  }
  for (auto& t : in_flight) {
    if (absl::Status s = store.Wait(std::move(t)); !s.ok()) return s;
  }
  const double seconds = Seconds(std::chrono::steady_clock::now() - start);
  return Measurement{static_cast<double>(done) / seconds,
                     (CpuSeconds() - cpu_start) / (static_cast<double>(done) / (1 << 30))};
}

// A fresh store with one extent of flags.bytes, allocated (fallocated) before any timing.
struct StoreSession {
  std::unique_ptr<NvmeStore> store;
  Extent extent;
};

absl::StatusOr<StoreSession> OpenStore(const Flags& flags, const std::vector<char*>& buffers,
                                       StoreInfo* info) {
  NvmeStoreConfig config;
  config.directory = flags.dir;
  config.limit_bytes = flags.bytes;
  config.queue_depth = flags.qd;
  config.request_bytes = flags.block;
  absl::StatusOr<std::unique_ptr<NvmeStore>> store = NvmeStore::Open(config);
  if (!store.ok()) return store.status();
  info->alignment = (*store)->alignment();
  info->alignment_from_statx = (*store)->alignment_from_statx();
  info->tmpfile = (*store)->uses_o_tmpfile();
  if (flags.register_buffers) {
    std::vector<iovec> iov;
    iov.reserve(buffers.size());
    for (char* b : buffers) iov.push_back({b, flags.segment});
    const absl::Status s = (*store)->RegisterBuffers(iov);
    info->registration = s.ok() ? "on" : absl::StrCat("failed: ", s.message());
  }
  absl::StatusOr<Extent> extent = (*store)->Allocate(flags.bytes);
  if (!extent.ok()) return extent.status();
  return StoreSession{*std::move(store), *extent};
}

// --- fio -------------------------------------------------------------------------------

std::string ShellQuote(absl::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

bool FioAvailable() { return system("fio --version >/dev/null 2>&1") == 0; }

// The value of "bw_bytes" in the first JSON object keyed `section` ("read" or "write").
std::optional<double> FioBandwidth(const std::string& json, absl::string_view section) {
  const std::string key = absl::StrCat("\"", section, "\"");
  for (size_t at = json.find(key); at != std::string::npos; at = json.find(key, at + 1)) {
    size_t p = at + key.size();
    while (p < json.size() && isspace(static_cast<unsigned char>(json[p]))) ++p;
    if (p >= json.size() || json[p] != ':') continue;  // a value, not a key
    ++p;
    while (p < json.size() && isspace(static_cast<unsigned char>(json[p]))) ++p;
    if (p >= json.size() || json[p] != '{') continue;
    const size_t bw = json.find("\"bw_bytes\"", p);
    if (bw == std::string::npos) return std::nullopt;
    const size_t colon = json.find(':', bw);
    if (colon == std::string::npos) return std::nullopt;
    return strtod(json.c_str() + colon + 1, nullptr);
  }
  return std::nullopt;
}

std::string FioCommand(const Flags& flags, absl::string_view rw, const std::string& file) {
  return absl::StrFormat(
      "fio --name=spillway-%s --ioengine=io_uring --direct=1 --rw=%s --bs=%u --iodepth=%u "
      "--size=%u --filename=%s --output-format=json 2>&1",
      rw, rw, flags.block, flags.qd, flags.bytes, ShellQuote(file));
}

absl::StatusOr<Measurement> RunFio(const Flags& flags, absl::string_view rw,
                                   const std::string& file) {
  const std::string command = FioCommand(flags, rw, file);
  // fio's own usr_cpu/sys_cpu leave out io-wq workers; the child's rusage has them all (and
  // fio's start-up, a few ms).
  const double cpu_start = CpuSeconds(RUSAGE_CHILDREN);
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError(absl::StrCat("popen: ", command));
  std::string output;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), pipe)) > 0) output.append(chunk, n);
  const int status = pclose(pipe);
  const double cpu_s = CpuSeconds(RUSAGE_CHILDREN) - cpu_start;
  if (status != 0) {
    return absl::InternalError(absl::StrCat("fio failed (", command, "):\n", output));
  }
  std::optional<double> bw = FioBandwidth(output, rw);
  if (!bw) {
    return absl::InternalError(absl::StrCat("cannot parse fio's JSON for ", rw, ":\n", output));
  }
  return Measurement{*bw, cpu_s / (static_cast<double>(flags.bytes) / (1 << 30))};
}

// --- output ----------------------------------------------------------------------------

std::string JsonArray(const std::vector<double>& v) {
  return absl::StrCat("[",
                      absl::StrJoin(v, ", ",
                                    [](std::string* out, double x) {
                                      absl::StrAppend(out, absl::StrFormat("%.0f", x));
                                    }),
                      "]");
}

struct RatioFormatter {
  void operator()(std::string* out, double x) const {
    absl::StrAppend(out, absl::StrFormat("%.4f", x));
  }
};

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

int Main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    PrintUsage(argv[0]);
    return 2;
  }
  const bool fio = flags.fio && FioAvailable();
  if (flags.fio && !fio) printf("fio is not installed: measuring the store alone\n");

  // Segment buffers, page-aligned, touched once so page faults stay out of the timing.
  // Page size matters more than one would think: a 1 MiB request from scattered 4 KiB pages
  // is 256 DMA segments, more than a virtio disk takes (max_segments 254 here), so the
  // block layer splits it; from 2 MiB pages it is one segment.
  std::vector<char*> buffers(TransfersInFlight(flags));
  for (char*& b : buffers) {
    void* p =
        mmap(nullptr, flags.segment, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      perror("mmap");
      return 1;
    }
    if (flags.hugepages && madvise(p, flags.segment, MADV_HUGEPAGE) != 0) {
      perror("madvise(MADV_HUGEPAGE)");
    }
    b = static_cast<char*>(p);
    for (uint64_t i = 0; i < flags.segment; i += 4096) b[i] = static_cast<char>(i >> 12);
  }

  const std::string fio_file = flags.dir + "/spillway-fio.tmp";
  StoreInfo info;
  // Phases alternate (store write, fio write, store read, fio read; fio first in odd runs)
  // so that each pair is measured close together in time: shared and virtual disks drift.
  std::vector<double> store_w, store_r, fio_w, fio_r, ratio_w, ratio_r;
  std::vector<double> store_cpu_w, store_cpu_r, fio_cpu_w, fio_cpu_r;
  auto check = [](const absl::Status& s, const char* what) {
    if (s.ok()) return true;
    fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    return false;
  };
  for (int run = 0; run < flags.runs; ++run) {
    absl::StatusOr<StoreSession> session = OpenStore(flags, buffers, &info);
    if (!check(session.status(), "store")) return 1;
    unlink(fio_file.c_str());
    for (bool write : {true, false}) {
      // Odd runs put fio first, so that neither side always follows the other.
      absl::StatusOr<Measurement> f = Measurement{};
      if (fio && run % 2 == 1) f = RunFio(flags, write ? "write" : "read", fio_file);
      if (!check(f.status(), "fio")) return 1;
      absl::StatusOr<Measurement> s =
          TimeStore(*session->store, session->extent, write, buffers, flags);
      if (!check(s.status(), "store")) return 1;
      (write ? store_w : store_r).push_back(s->bytes_per_s);
      (write ? store_cpu_w : store_cpu_r).push_back(s->cpu_s_per_gib);
      if (!fio) continue;
      if (run % 2 == 0) f = RunFio(flags, write ? "write" : "read", fio_file);
      if (!check(f.status(), "fio")) return 1;
      (write ? fio_w : fio_r).push_back(f->bytes_per_s);
      (write ? fio_cpu_w : fio_cpu_r).push_back(f->cpu_s_per_gib);
      (write ? ratio_w : ratio_r).push_back(s->bytes_per_s / f->bytes_per_s);
    }
    unlink(fio_file.c_str());
  }

  const std::string fs = FileSystemName(flags.dir);
  const auto kib = [](uint64_t bytes) { return static_cast<double>(bytes) / 1024; };
  printf(
      "NVMe store vs fio: %s (%s), %.0f MiB per run, block %.0f KiB, queue depth %u, "
      "%d runs (median)\n",
      flags.dir.c_str(), fs.c_str(), kib(flags.bytes) / 1024, kib(flags.block), flags.qd,
      flags.runs);
  printf("store: direct-I/O alignment %zu (%s), %s, registered buffers %s, %s pages\n",
         info.alignment, info.alignment_from_statx ? "statx" : "fallback",
         info.tmpfile ? "O_TMPFILE" : "mkstemp+unlink", info.registration.c_str(),
         flags.hugepages ? "2 MiB (MADV_HUGEPAGE)" : "4 KiB");
  printf("store: transfers of %.0f KiB, %zu in flight (fio: requests of %.0f KiB, %u in flight)\n",
         kib(flags.segment), buffers.size(), kib(flags.block), flags.qd);
  // Median: typical; best: what each can reach (noise only ever slows a run down).
  printf("%-6s %11s %11s %9s   %11s %11s %9s   %14s %14s\n", "", "store MB/s", "fio MB/s",
         "store/fio", "best store", "best fio", "best/best", "store CPU s/GiB", "fio CPU s/GiB");
  for (const char* phase : {"write", "read"}) {
    const bool w = phase[0] == 'w';
    const std::vector<double>& st = w ? store_w : store_r;
    const std::vector<double>& fi = w ? fio_w : fio_r;
    const double st_cpu = Median(w ? store_cpu_w : store_cpu_r);
    if (fio) {
      printf("%-6s %11.1f %11.1f %9.3f   %11.1f %11.1f %9.3f   %14.4f %14.4f\n", phase,
             Median(st) / 1e6, Median(fi) / 1e6, Median(w ? ratio_w : ratio_r), Best(st) / 1e6,
             Best(fi) / 1e6, Best(st) / Best(fi), st_cpu, Median(w ? fio_cpu_w : fio_cpu_r));
    } else {
      printf("%-6s %11.1f %11s %9s   %11.1f %11s %9s   %14.4f %14s\n", phase, Median(st) / 1e6, "-",
             "-", Best(st) / 1e6, "-", "-", st_cpu, "-");
    }
  }

  std::string json = absl::StrFormat(
      "{\n  \"benchmark\": \"nvme_store\",\n  \"dir\": %s,\n  \"filesystem\": %s,\n"
      "  \"bytes\": %u,\n  \"block\": %u,\n  \"queue_depth\": %u,\n  \"runs\": %d,\n"
      "  \"segment\": %u,\n  \"transfers_in_flight\": %u,\n  \"alignment\": %u,\n  "
      "\"alignment_from_statx\": %s,\n"
      "  \"registered_buffers\": %s,\n  \"hugepages\": %s,\n"
      "  \"store\": {\"write_bytes_per_s\": %s, \"read_bytes_per_s\": %s,\n"
      "            \"write_median\": %.0f, \"read_median\": %.0f,\n"
      "            \"write_best\": %.0f, \"read_best\": %.0f,\n"
      "            \"write_cpu_s_per_gib\": %.4f, \"read_cpu_s_per_gib\": %.4f}",
      JsonString(flags.dir), JsonString(fs), flags.bytes, flags.block, flags.qd, flags.runs,
      flags.segment, buffers.size(), info.alignment, info.alignment_from_statx ? "true" : "false",
      JsonString(info.registration), flags.hugepages ? "true" : "false", JsonArray(store_w),
      JsonArray(store_r), Median(store_w), Median(store_r), Best(store_w), Best(store_r),
      Median(store_cpu_w), Median(store_cpu_r));
  if (fio) {
    absl::StrAppend(
        &json, absl::StrFormat(
                   ",\n  \"fio\": {\"write_bytes_per_s\": %s, \"read_bytes_per_s\": %s,\n"
                   "          \"write_median\": %.0f, \"read_median\": %.0f,\n"
                   "          \"write_best\": %.0f, \"read_best\": %.0f,\n"
                   "          \"write_cpu_s_per_gib\": %.4f, \"read_cpu_s_per_gib\": %.4f,\n"
                   "          \"command\": %s},\n"
                   "  \"ratio_store_over_fio\": {\"write\": %.4f, \"read\": %.4f,\n"
                   "                           \"per_run_write\": [%s], \"per_run_read\": [%s],\n"
                   "                           \"best_write\": %.4f, \"best_read\": %.4f}",
                   JsonArray(fio_w), JsonArray(fio_r), Median(fio_w), Median(fio_r), Best(fio_w),
                   Best(fio_r), Median(fio_cpu_w), Median(fio_cpu_r),
                   JsonString(FioCommand(flags, "<write|read>", fio_file)), Median(ratio_w),
                   Median(ratio_r), absl::StrJoin(ratio_w, ", ", RatioFormatter()),
                   absl::StrJoin(ratio_r, ", ", RatioFormatter()), Best(store_w) / Best(fio_w),
                   Best(store_r) / Best(fio_r)));
  } else {
    absl::StrAppend(&json, ",\n  \"fio\": null");
  }
  absl::StrAppend(&json, "\n}\n");
  FILE* out = fopen(flags.json.c_str(), "w");
  if (out == nullptr || fputs(json.c_str(), out) < 0 || fclose(out) != 0) {
    fprintf(stderr, "cannot write %s: %s\n", flags.json.c_str(), strerror(errno));
    return 1;
  }
  printf("results: %s\n", flags.json.c_str());
  return 0;
}

}  // namespace
}  // namespace spillway

int main(int argc, char** argv) { return spillway::Main(argc, argv); }
