// SPDX-License-Identifier: Apache-2.0
//
// Trace parser and writer (format in trace.h).

#include "trace.h"

#include <charconv>
#include <fstream>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "fmt/format.h"

namespace spillway::trace_sim {
namespace {

bool ParseU64(std::string_view text, uint64_t* value) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size();
}

absl::Status LineError(int line, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("trace line {}: {}", line, what));
}

// Debian's Abseil has its own string_view, so split by hand.
std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\t') ++j;
    if (j > i) words.push_back(text.substr(i, j - i));
    i = j;
  }
  return words;
}

}  // namespace

std::string_view AllocKindName(AllocKind kind) {
  switch (kind) {
    case AllocKind::kWeights:
      return "weights";
    case AllocKind::kKv:
      return "kv";
    case AllocKind::kOther:
      return "other";
  }
  return "other";
}

uint32_t Trace::AddAllocation(uint64_t id, uint64_t bytes, AllocKind kind) {
  Allocation a;
  a.id = id;
  a.bytes = bytes;
  a.kind = kind;
  a.first_chunk = total_chunks;
  a.num_chunks = static_cast<uint32_t>((bytes + chunk_bytes - 1) / chunk_bytes);
  total_chunks += a.num_chunks;
  allocations.push_back(a);
  Event e;
  e.type = Event::Type::kAlloc;
  e.alloc = static_cast<uint32_t>(allocations.size() - 1);
  events.push_back(std::move(e));
  return static_cast<uint32_t>(allocations.size() - 1);
}

uint64_t Trace::WeightBytes() const {
  uint64_t sum = 0;
  for (const Allocation& a : allocations) {
    if (a.kind == AllocKind::kWeights) sum += a.bytes;
  }
  return sum;
}

absl::StatusOr<Trace> ParseTrace(std::istream& in) {
  Trace trace;
  absl::flat_hash_map<uint64_t, uint32_t> live;  // trace id -> allocation index
  std::string line;
  int line_no = 0;
  bool seen_header = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string_view text = line;
    if (text.starts_with("#")) {
      if (text.starts_with("# spillway-trace")) {
        if (text != "# spillway-trace 1") return LineError(line_no, "unsupported trace version");
        seen_header = true;
      }
      continue;
    }
    std::vector<std::string_view> words = Words(text);
    if (words.empty()) continue;
    const std::string_view op = words[0];
    if (op == "chunk") {
      uint64_t bytes = 0;
      if (words.size() != 2 || !ParseU64(words[1], &bytes) || bytes == 0) {
        return LineError(line_no, "expected `chunk <bytes>` with bytes > 0");
      }
      if (!trace.allocations.empty()) return LineError(line_no, "`chunk` after the first alloc");
      trace.chunk_bytes = bytes;
    } else if (op == "alloc") {
      uint64_t id = 0, bytes = 0;
      if (words.size() != 4 || !ParseU64(words[1], &id) || !ParseU64(words[2], &bytes)) {
        return LineError(line_no, "expected `alloc <id> <bytes> <weights|kv|other>`");
      }
      AllocKind kind;
      if (words[3] == "weights") {
        kind = AllocKind::kWeights;
      } else if (words[3] == "kv") {
        kind = AllocKind::kKv;
      } else if (words[3] == "other") {
        kind = AllocKind::kOther;
      } else {
        return LineError(line_no, fmt::format("unknown allocation kind `{}`", words[3]));
      }
      if (trace.chunk_bytes == 0) return LineError(line_no, "`alloc` before `chunk`");
      if (live.contains(id)) return LineError(line_no, fmt::format("allocation {} is live", id));
      if (bytes == 0) return LineError(line_no, "allocation of 0 bytes");
      live[id] = trace.AddAllocation(id, bytes, kind);
    } else if (op == "free") {
      uint64_t id = 0;
      if (words.size() != 2 || !ParseU64(words[1], &id)) {
        return LineError(line_no, "expected `free <id>`");
      }
      auto it = live.find(id);
      if (it == live.end()) return LineError(line_no, fmt::format("free of unknown id {}", id));
      Event e;
      e.type = Event::Type::kFree;
      e.alloc = it->second;
      trace.events.push_back(std::move(e));
      live.erase(it);
    } else if (op == "launch") {
      Event e;
      e.type = Event::Type::kLaunch;
      if (words.size() < 3 || !ParseU64(words[1], &e.t_ns) || !ParseU64(words[2], &e.stream)) {
        return LineError(line_no, "expected `launch <t_ns> <stream> <id>[:<first>-<last>] ...`");
      }
      for (size_t i = 3; i < words.size(); ++i) {
        std::string_view w = words[i];
        if (w.starts_with("compute_ns=")) {
          uint64_t ns = 0;
          if (!ParseU64(w.substr(11), &ns)) return LineError(line_no, "bad compute_ns");
          e.compute_ns = static_cast<int64_t>(ns);
          continue;
        }
        if (w.find('=') != std::string_view::npos) {
          return LineError(line_no, fmt::format("unknown key `{}`", w));
        }
        std::string_view id_text = w, range_text;
        if (size_t colon = w.find(':'); colon != std::string_view::npos) {
          id_text = w.substr(0, colon);
          range_text = w.substr(colon + 1);
        }
        uint64_t id = 0;
        if (!ParseU64(id_text, &id)) return LineError(line_no, fmt::format("bad id `{}`", w));
        auto it = live.find(id);
        if (it == live.end()) {
          return LineError(line_no, fmt::format("launch touches unknown id {}", id));
        }
        const Allocation& a = trace.allocations[it->second];
        ChunkRange r{it->second, 0, a.num_chunks - 1};
        if (!range_text.empty()) {
          size_t dash = range_text.find('-');
          uint64_t first = 0, last = 0;
          if (dash == std::string_view::npos || !ParseU64(range_text.substr(0, dash), &first) ||
              !ParseU64(range_text.substr(dash + 1), &last) || first > last) {
            return LineError(line_no, fmt::format("bad chunk range `{}`", w));
          }
          if (last >= a.num_chunks) {
            return LineError(
                line_no,
                fmt::format("chunk range `{}` past the allocation's {} chunks", w, a.num_chunks));
          }
          r.first = static_cast<uint32_t>(first);
          r.last = static_cast<uint32_t>(last);
        }
        e.ranges.push_back(r);
      }
      trace.events.push_back(std::move(e));
    } else if (op == "step") {
      if (words.size() != 1) return LineError(line_no, "`step` takes no arguments");
      Event e;
      e.type = Event::Type::kStep;
      trace.events.push_back(std::move(e));
    } else {
      return LineError(line_no, fmt::format("unknown record `{}`", op));
    }
  }
  if (!seen_header) return absl::InvalidArgumentError("trace: missing `# spillway-trace 1`");
  if (trace.chunk_bytes == 0) return absl::InvalidArgumentError("trace: no `chunk` line");
  return trace;
}

absl::StatusOr<Trace> ParseTraceFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(fmt::format("cannot open {}", path));
  return ParseTrace(in);
}

void WriteTrace(const Trace& trace, std::ostream& out) {
  out << "# spillway-trace 1\nchunk " << trace.chunk_bytes << "\n";
  for (const Event& e : trace.events) {
    switch (e.type) {
      case Event::Type::kAlloc: {
        const Allocation& a = trace.allocations[e.alloc];
        out << "alloc " << a.id << ' ' << a.bytes << ' ' << AllocKindName(a.kind) << '\n';
        break;
      }
      case Event::Type::kFree:
        out << "free " << trace.allocations[e.alloc].id << '\n';
        break;
      case Event::Type::kLaunch:
        out << "launch " << e.t_ns << ' ' << e.stream;
        for (const ChunkRange& r : e.ranges) {
          const Allocation& a = trace.allocations[r.alloc];
          out << ' ' << a.id;
          if (r.first != 0 || r.last + 1 != a.num_chunks) out << ':' << r.first << '-' << r.last;
        }
        if (e.compute_ns >= 0) out << " compute_ns=" << e.compute_ns;
        out << '\n';
        break;
      case Event::Type::kStep:
        out << "step\n";
        break;
    }
  }
}

}  // namespace spillway::trace_sim
