// SPDX-License-Identifier: Apache-2.0
//
// tinyllm: a Llama-shaped decoder-only transformer run for inference through the CUDA
// driver API only (cuda.h, no runtime library), as the workload Spillway is measured on.
// Weights and prompts come from a seed; it prefills the prompts, then decodes greedily.
//
// The same binary runs on a GPU (--module tinyllm_kernels.fatbin) and on simcuda
// (--module tinyllm_kernels.so): the module is loaded with cuModuleLoadData either way.
// It allocates memory the way one of three kinds of server does (--style), so that
// Spillway sees each allocation pattern: one allocation per tensor (PyTorch), one arena
// (llama.cpp), or a block-paged KV cache followed through a device block table (vLLM).
//
// Output: generated tokens per sequence, an FNV-1a checksum of the last step's logits,
// timings and sizes; --json writes the same as one object. Exit status: 0 done, 1 a CUDA
// error, 2 bad usage, 3 out of memory. See docs/tinyllm.md.
#include <cuda.h>
#include <dlfcn.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "tinyllm_hash.h"

namespace {

constexpr int kBlockTokens = 16;  // tokens per KV block (paged style), as in vLLM
constexpr float kNormEps = 1e-5f;
constexpr float kRopeTheta = 10000.0f;
constexpr uint32_t kPromptStream = 0x70000000u;  // hash "tensor" ids of the prompts
constexpr uint32_t kBlockStream = 0x7b000000u;   // ... and of the block-table shuffle

const char kUsage[] = R"(NAME
    tinyllm - a Llama-shaped LLM inference workload on the CUDA driver API

SYNOPSIS
    tinyllm --module PATH [--layers N] [--dim D] [--ffn F] [--heads H] [--vocab V]
            [--ctx C] [--batch B] [--prompt P] [--gen G] [--seed S]
            [--style tensor|arena|paged] [--dtype f32|bf16] [--host-offload BYTES]
            [--weights BYTES] [--advise-weights] [--advise-kv] [--json FILE] [--quiet]

DESCRIPTION
    Generates a decoder-only transformer's weights from a seed on the device, prefills B
    prompts of P tokens (also from the seed), then decodes greedily until each sequence
    has G new tokens. Prints the tokens, a checksum of the last step's logits and timings.

OPTIONS
    --module PATH      kernel module, loaded with cuModuleLoadData: tinyllm_kernels.fatbin
                       on a GPU, tinyllm_kernels.so on simcuda (required)
    --layers N         transformer layers (default 4)
    --dim D            model width; a multiple of --heads, head size even (default 128)
    --ffn F            MLP hidden width (default 384)
    --heads H          attention heads, head size D/H at most 256 (default 4)
    --vocab V          vocabulary size (default 1024)
    --ctx C            KV cache capacity in tokens per sequence, at least P+G-1
                       (default: P+G-1 rounded up to a multiple of 16)
    --batch B          sequences decoded together, each with its own prompt (default 1)
    --prompt P         prompt tokens per sequence (default 16)
    --gen G            tokens to generate per sequence (default 16)
    --seed S           seed of the weights and prompts, 0 to 2^32-1 (default 1)
    --style STYLE      how memory is allocated (default tensor):
                         tensor  one cuMemAlloc per weight tensor and per layer K and V
                         arena   one cuMemAlloc for all weights, one for the KV cache
                         paged   weights per tensor; per layer K and V pools of 16-token
                                 blocks, reached through a device block table (int32
                                 block numbers, assigned in a scrambled order)
    --dtype f32|bf16   weight element type (default f32); activations and KV are f32
    --host-offload BYTES
                       keep the last weight tensors (in the order embedding, layers,
                       final norm, LM head), at least BYTES of them, in mapped pinned
                       host memory (cuMemHostAlloc DEVICEMAP) read by the kernels over
                       the link, like vLLM's --cpu-offload-gb (default 0)
    --weights BYTES    size the model to about BYTES of weights (rule in docs/tinyllm.md);
                       explicit --layers/--dim/--ffn/--heads/--vocab override it
    --advise-weights   under Spillway (LD_PRELOAD=libspillway.so), advise every weight
                       allocation SPW_ADVICE_WEIGHTS through its C API once the weights
                       are generated, as a framework that knows Spillway would: their host
                       copies stay valid, so evicting them copies nothing back. Without
                       Spillway it does nothing.
    --advise-kv        the same for the KV cache's filled positions, after every step:
                       SPW_ADVICE_READ_MOSTLY on each sequence's filled rows, of which the
                       whole chunks then leave HBM without a copy (tensor and arena
                       styles; a paged pool's blocks are scattered)
    --json FILE        also write the results as one JSON object to FILE
    --quiet            print nothing on success
    --help             print this text

    BYTES is a number with an optional K, M, G or T suffix (binary: 1K = 1024).

EXIT STATUS
    0 success; 1 a CUDA call failed (the call and error name are printed); 2 bad usage;
    3 out of memory (a line "out of memory allocating WHAT" is printed).
)";

enum class Style { kTensor, kArena, kPaged };
const char* StyleName(Style s) {
  return s == Style::kTensor ? "tensor" : s == Style::kArena ? "arena" : "paged";
}

struct Config {
  int layers = 4, dim = 128, ffn = 384, heads = 4, vocab = 1024, ctx = 0;
  int batch = 1, prompt = 16, gen = 16;
  uint32_t seed = 1;
  Style style = Style::kTensor;
  int dtype = kTlF32;
  uint64_t host_offload = 0, weights = 0;
  std::string module, json;
  bool quiet = false, advise_weights = false, advise_kv = false;
};

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "tinyllm: %s\nTry 'tinyllm --help'.\n", message.c_str());
  std::exit(2);
}

uint64_t ParseBytes(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])) || errno != 0) {
    UsageError(flag + ": not a size: '" + text + "'");
  }
  int shift = 0;
  const std::string suffix = end;
  if (suffix == "K" || suffix == "k") {
    shift = 10;
  } else if (suffix == "M" || suffix == "m") {
    shift = 20;
  } else if (suffix == "G" || suffix == "g") {
    shift = 30;
  } else if (suffix == "T" || suffix == "t") {
    shift = 40;
  } else if (!suffix.empty()) {
    UsageError(flag + ": not a size: '" + text + "' (a number with optional K, M, G or T)");
  }
  if (shift > 0 && n > (~0ull >> shift)) UsageError(flag + ": too large: '" + text + "'");
  return n << shift;
}

long long ParseInt(const std::string& flag, const std::string& text, long long lo, long long hi) {
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || n < lo || n > hi) {
    UsageError(flag + ": expected an integer from " + std::to_string(lo) + " to " +
               std::to_string(hi) + ", got '" + text + "'");
  }
  return n;
}

// The --weights rule (docs/tinyllm.md): the widest power-of-two dim (128..8192) at which
// four layers fit, vocab 8*dim, ffn 8*dim/3 rounded up to 64, head size 64, and as many
// layers as the remaining bytes hold (at least one). Explicit flags win.
void SizeFromWeights(Config& c, bool set_layers, bool set_dim, bool set_ffn, bool set_heads,
                     bool set_vocab) {
  const double elem = c.dtype == kTlBf16 ? 2 : 4;
  const double budget = double(c.weights) / elem;  // in elements
  if (!set_dim) {
    c.dim = 128;
    for (int d = 256; d <= 8192; d *= 2) {
      if (4.0 * 12.0 * d * d <= budget) c.dim = d;
    }
  }
  if (!set_vocab) c.vocab = 8 * c.dim;
  if (!set_ffn) c.ffn = (8 * c.dim / 3 + 63) / 64 * 64;
  if (!set_heads) c.heads = std::max(1, c.dim / 64);
  if (!set_layers) {
    const double per_layer = 4.0 * c.dim * c.dim + 3.0 * c.dim * c.ffn + 2.0 * c.dim;
    const double rest = budget - 2.0 * c.vocab * c.dim - c.dim;
    c.layers = std::max(1, int(std::lround(rest / per_layer)));
  }
}

Config ParseArgs(int argc, char** argv) {
  Config c;
  bool set_layers = false, set_dim = false, set_ffn = false, set_heads = false;
  bool set_vocab = false, set_weights = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag == "--quiet") {
      c.quiet = true;
      continue;
    }
    if (flag == "--advise-weights") {
      c.advise_weights = true;
      continue;
    }
    if (flag == "--advise-kv") {
      c.advise_kv = true;
      continue;
    }
    if (flag.rfind("--", 0) != 0) UsageError("unexpected argument '" + flag + "'");
    if (i + 1 >= argc) UsageError(flag + " needs a value");
    const std::string value = argv[++i];
    constexpr long long kMaxDim = 1 << 20;
    if (flag == "--module") {
      c.module = value;
    } else if (flag == "--layers") {
      c.layers = ParseInt(flag, value, 1, 4096), set_layers = true;
    } else if (flag == "--dim") {
      c.dim = ParseInt(flag, value, 2, kMaxDim), set_dim = true;
    } else if (flag == "--ffn") {
      c.ffn = ParseInt(flag, value, 1, kMaxDim), set_ffn = true;
    } else if (flag == "--heads") {
      c.heads = ParseInt(flag, value, 1, 4096), set_heads = true;
    } else if (flag == "--vocab") {
      c.vocab = ParseInt(flag, value, 2, 1 << 24), set_vocab = true;
    } else if (flag == "--ctx") {
      c.ctx = ParseInt(flag, value, 1, 1 << 20);
    } else if (flag == "--batch") {
      c.batch = ParseInt(flag, value, 1, 4096);
    } else if (flag == "--prompt") {
      c.prompt = ParseInt(flag, value, 1, 1 << 16);
    } else if (flag == "--gen") {
      c.gen = ParseInt(flag, value, 1, 1 << 16);
    } else if (flag == "--seed") {
      c.seed = uint32_t(ParseInt(flag, value, 0, 0xffffffffll));
    } else if (flag == "--style") {
      if (value == "tensor") {
        c.style = Style::kTensor;
      } else if (value == "arena") {
        c.style = Style::kArena;
      } else if (value == "paged") {
        c.style = Style::kPaged;
      } else {
        UsageError("--style: expected tensor, arena or paged, got '" + value + "'");
      }
    } else if (flag == "--dtype") {
      if (value == "f32") {
        c.dtype = kTlF32;
      } else if (value == "bf16") {
        c.dtype = kTlBf16;
      } else {
        UsageError("--dtype: expected f32 or bf16, got '" + value + "'");
      }
    } else if (flag == "--host-offload") {
      c.host_offload = ParseBytes(flag, value);
    } else if (flag == "--weights") {
      c.weights = ParseBytes(flag, value), set_weights = true;
    } else if (flag == "--json") {
      c.json = value;
    } else {
      UsageError("unknown option '" + flag + "'");
    }
  }
  if (c.module.empty()) UsageError("--module PATH is required");
  if (set_weights) SizeFromWeights(c, set_layers, set_dim, set_ffn, set_heads, set_vocab);
  if (c.dim % c.heads != 0) UsageError("--dim must be a multiple of --heads");
  if (c.advise_kv && c.style == Style::kPaged) {
    UsageError("--advise-kv needs --style tensor or arena (a paged pool's blocks are scattered)");
  }
  const int head_dim = c.dim / c.heads;
  if (head_dim % 2 != 0 || head_dim > 256) {
    UsageError("head size (--dim / --heads) must be even and at most 256");
  }
  const int needed = c.prompt + c.gen - 1;
  if (c.ctx == 0) c.ctx = (needed + kBlockTokens - 1) / kBlockTokens * kBlockTokens;
  if (c.ctx < needed) UsageError("--ctx must be at least --prompt + --gen - 1");
  if (uint64_t(c.batch) * c.prompt > 65535) UsageError("--batch * --prompt must be at most 65535");
  return c;
}

// --- driver calls ------------------------------------------------------------------------

[[noreturn]] void CudaFailure(CUresult r, const char* call, const std::string& what) {
  const char* name = nullptr;
  if (cuGetErrorName(r, &name) != CUDA_SUCCESS || name == nullptr) name = "unknown error";
  if (r == CUDA_ERROR_OUT_OF_MEMORY) {
    std::fprintf(stderr, "tinyllm: out of memory %s: %s failed: %s\n", what.c_str(), call, name);
    std::exit(3);
  }
  std::fprintf(stderr, "tinyllm: %s failed (%s): %s\n", call, what.c_str(), name);
  std::exit(1);
}

#define TL_CHECK(call, what)                                    \
  do {                                                          \
    CUresult tl_r_ = (call);                                    \
    if (tl_r_ != CUDA_SUCCESS) CudaFailure(tl_r_, #call, what); \
  } while (0)

struct Kernels {
  CUfunction fill_random, embed, rmsnorm, matmul, rope, kv_store, kv_store_paged, attention,
      attention_paged, silu_mul, add, gather_last, argmax;
};

unsigned Blocks(uint64_t n, unsigned per_block) {
  return unsigned(std::min<uint64_t>((n + per_block - 1) / per_block, 0x7fffffffu));
}

// Launches `f` on `stream`; the arguments are copied into this frame, whose types must be
// the kernel's parameter types (CUdeviceptr for pointers).
template <typename... Args>
void Launch(CUstream stream, CUfunction f, const char* name, unsigned gx, unsigned gy,
            unsigned block, Args... args) {
  void* params[] = {&args...};
  TL_CHECK(cuLaunchKernel(f, gx, gy, 1, block, 1, 1, 0, stream, params, nullptr),
           std::string("launching ") + name);
}

// --- memory ------------------------------------------------------------------------------

// Every allocation, so that the program frees what it took (and Spillway sees frees).
struct Allocations {
  std::vector<CUdeviceptr> device;
  std::vector<void*> host;

  CUdeviceptr Device(uint64_t bytes, const std::string& what) {
    CUdeviceptr p = 0;
    TL_CHECK(cuMemAlloc(&p, bytes),
             "allocating " + what + " (" + std::to_string(bytes) + " bytes)");
    device.push_back(p);
    return p;
  }
  CUdeviceptr MappedHost(uint64_t bytes, const std::string& what) {
    void* p = nullptr;
    const std::string label = "allocating " + what + " (" + std::to_string(bytes) + " bytes, host)";
    TL_CHECK(cuMemHostAlloc(&p, bytes, CU_MEMHOSTALLOC_DEVICEMAP), label);
    host.push_back(p);
    CUdeviceptr d = 0;
    TL_CHECK(cuMemHostGetDevicePointer(&d, p, 0), label);
    return d;
  }
  ~Allocations() {
    for (CUdeviceptr p : device) cuMemFree(p);
    for (void* p : host) cuMemFreeHost(p);
  }
};

struct Tensor {
  std::string name;
  uint32_t id;
  uint64_t count;       // elements
  float scale, offset;  // element = offset + scale * uniform(-1, 1)
  CUdeviceptr ptr = 0;
  bool on_host = false;
};

enum LayerTensor { kAttnNorm, kWq, kWk, kWv, kWo, kFfnNorm, kW1, kW3, kW2, kPerLayer };

// Weight tensors in their fixed order: embedding, layers, final norm, LM head.
std::vector<Tensor> WeightTensors(const Config& c) {
  const uint64_t d = c.dim, f = c.ffn, v = c.vocab;
  const float sd = 1.0f / std::sqrt(float(d)), sf = 1.0f / std::sqrt(float(f));
  std::vector<Tensor> t;
  t.push_back({"tok_embedding", 0, v * d, 1.0f, 0.0f});
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "layer " + std::to_string(l) + " ";
    const uint32_t id = 1 + uint32_t(l) * kPerLayer;
    t.push_back({p + "attn_norm", id + kAttnNorm, d, 0.1f, 1.0f});
    t.push_back({p + "wq", id + kWq, d * d, sd, 0.0f});
    t.push_back({p + "wk", id + kWk, d * d, sd, 0.0f});
    t.push_back({p + "wv", id + kWv, d * d, sd, 0.0f});
    t.push_back({p + "wo", id + kWo, d * d, sd, 0.0f});
    t.push_back({p + "ffn_norm", id + kFfnNorm, d, 0.1f, 1.0f});
    t.push_back({p + "w1", id + kW1, f * d, sd, 0.0f});
    t.push_back({p + "w3", id + kW3, f * d, sd, 0.0f});
    t.push_back({p + "w2", id + kW2, d * f, sf, 0.0f});
  }
  const uint32_t last = 1 + uint32_t(c.layers) * kPerLayer;
  t.push_back({"final_norm", last, d, 0.1f, 1.0f});
  t.push_back({"lm_head", last + 1, v * d, sd, 0.0f});
  return t;
}

uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// Prompt token t of sequence b.
int PromptToken(const Config& c, int b, int t) {
  return int(TlHash(c.seed, kPromptStream + uint32_t(b), uint64_t(t)) % uint64_t(c.vocab));
}

// The paged style's block table: each sequence's blocks, drawn from a seeded shuffle of the
// whole pool so that neighbouring tokens' blocks are far apart in memory.
std::vector<int> ScrambledBlockTable(const Config& c, int blocks_per_seq) {
  std::vector<int> order(size_t(c.batch) * blocks_per_seq);
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  for (size_t i = order.size(); i > 1; --i) {
    std::swap(order[i - 1], order[TlHash(c.seed, kBlockStream, i) % i]);
  }
  return order;
}

uint64_t Fnv1a(const void* data, size_t bytes) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string HumanBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

// CPU time of the whole process (every thread: the driver's and a preloaded runtime's too).
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// spillway.h's advice bits tinyllm uses, without depending on its header.
constexpr unsigned kAdviceWeights = 1u << 0, kAdviceReadMostly = 1u << 4;

// spw_advise(`advice`) on each range Spillway manages, found with dlsym so that tinyllm
// runs the same without it (--advise-weights, --advise-kv). Returns the bytes advised.
uint64_t AdviseRanges(const std::vector<std::pair<CUdeviceptr, uint64_t>>& ranges, unsigned advice,
                      const char* what) {
  using Advise = int (*)(void* ptr, size_t size, unsigned advice);
  constexpr int kOk = 0, kNotManaged = 2;
  static const auto advise = reinterpret_cast<Advise>(dlsym(RTLD_DEFAULT, "spw_advise"));
  if (advise == nullptr) return 0;  // not under Spillway: nothing to advise
  uint64_t advised = 0;
  for (const auto& [ptr, bytes] : ranges) {
    if (bytes == 0) continue;
    const int status = advise(reinterpret_cast<void*>(ptr), bytes, advice);
    if (status == kOk) {
      advised += bytes;
    } else if (status != kNotManaged) {  // under SPILLWAY_MIN_BYTES: left as plain memory
      std::fprintf(stderr, "tinyllm: spw_advise failed on %s: status %d\n", what, status);
      std::exit(1);
    }
  }
  return advised;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

int Run(const Config& c) {
  TL_CHECK(cuInit(0), "initialising the driver");
  CUdevice device;
  TL_CHECK(cuDeviceGet(&device, 0), "device 0");
  CUcontext ctx;
  TL_CHECK(cuDevicePrimaryCtxRetain(&ctx, device), "device 0");
  TL_CHECK(cuCtxSetCurrent(ctx), "device 0");

  std::ifstream file(c.module, std::ios::binary);
  if (!file) {
    std::fprintf(stderr, "tinyllm: cannot read module %s: %s\n", c.module.c_str(),
                 std::strerror(errno));
    return 1;
  }
  const std::vector<char> image{std::istreambuf_iterator<char>(file), {}};
  CUmodule module;
  TL_CHECK(cuModuleLoadData(&module, image.data()), "loading " + c.module);
  Kernels k;
  struct {
    CUfunction* fn;
    const char* name;
  } const names[] = {{&k.fill_random, "tl_fill_random"},
                     {&k.embed, "tl_embed"},
                     {&k.rmsnorm, "tl_rmsnorm"},
                     {&k.matmul, "tl_matmul"},
                     {&k.rope, "tl_rope"},
                     {&k.kv_store, "tl_kv_store"},
                     {&k.kv_store_paged, "tl_kv_store_paged"},
                     {&k.attention, "tl_attention"},
                     {&k.attention_paged, "tl_attention_paged"},
                     {&k.silu_mul, "tl_silu_mul"},
                     {&k.add, "tl_add"},
                     {&k.gather_last, "tl_gather_last"},
                     {&k.argmax, "tl_argmax"}};
  for (const auto& n : names) TL_CHECK(cuModuleGetFunction(n.fn, module, n.name), n.name);
  CUstream stream;
  TL_CHECK(cuStreamCreate(&stream, CU_STREAM_DEFAULT), "creating a stream");

  Allocations mem;
  const uint64_t elem = c.dtype == kTlBf16 ? 2 : 4;
  const int d = c.dim, f = c.ffn, v = c.vocab, head_dim = c.dim / c.heads;

  // --- weights: which are offloaded to host, then where each lives ---
  std::vector<Tensor> weights = WeightTensors(c);
  uint64_t weight_bytes = 0, host_bytes = 0;
  for (const Tensor& t : weights) weight_bytes += t.count * elem;
  for (size_t i = weights.size(); i-- > 0 && host_bytes < c.host_offload;) {
    weights[i].on_host = true;
    host_bytes += weights[i].count * elem;
  }
  std::vector<std::pair<CUdeviceptr, uint64_t>> weight_allocations;  // on the device
  if (c.style == Style::kArena) {
    // Offsets aligned to 256 bytes, as GPU allocators align tensors.
    uint64_t arena_bytes = 0;
    for (const Tensor& t : weights) {
      if (!t.on_host) arena_bytes = AlignUp(arena_bytes, 256) + t.count * elem;
    }
    CUdeviceptr arena = arena_bytes ? mem.Device(arena_bytes, "the weight arena") : 0;
    if (arena != 0) weight_allocations.push_back({arena, arena_bytes});
    uint64_t offset = 0;
    for (Tensor& t : weights) {
      if (t.on_host) continue;
      offset = AlignUp(offset, 256);
      t.ptr = arena + offset;
      offset += t.count * elem;
    }
  } else {
    for (Tensor& t : weights) {
      if (t.on_host) continue;
      t.ptr = mem.Device(t.count * elem, "weight " + t.name);
      weight_allocations.push_back({t.ptr, t.count * elem});
    }
  }
  for (Tensor& t : weights) {
    if (t.on_host) t.ptr = mem.MappedHost(t.count * elem, "weight " + t.name);
  }

  // --- KV cache ---
  const int blocks_per_seq = (c.ctx + kBlockTokens - 1) / kBlockTokens;
  const uint64_t kv_layer_bytes = c.style == Style::kPaged
                                      ? uint64_t(c.batch) * blocks_per_seq * kBlockTokens * d * 4
                                      : uint64_t(c.batch) * c.ctx * d * 4;  // one of K or V
  const uint64_t kv_bytes = kv_layer_bytes * 2 * c.layers;
  std::vector<CUdeviceptr> kcache(c.layers), vcache(c.layers);
  if (c.style == Style::kArena) {
    CUdeviceptr kv = mem.Device(kv_bytes, "the KV cache");
    for (int l = 0; l < c.layers; ++l) {
      kcache[l] = kv + (2 * l) * kv_layer_bytes;
      vcache[l] = kv + (2 * l + 1) * kv_layer_bytes;
    }
  } else {
    const char* kind = c.style == Style::kPaged ? " block pool" : " cache";
    for (int l = 0; l < c.layers; ++l) {
      kcache[l] = mem.Device(kv_layer_bytes, "layer " + std::to_string(l) + " K" + kind);
      vcache[l] = mem.Device(kv_layer_bytes, "layer " + std::to_string(l) + " V" + kind);
    }
  }
  CUdeviceptr block_table = 0;
  if (c.style == Style::kPaged) {
    const std::vector<int> table = ScrambledBlockTable(c, blocks_per_seq);
    block_table = mem.Device(table.size() * 4, "copying the block table");
    TL_CHECK(cuMemcpyHtoD(block_table, table.data(), table.size() * 4), "copying the block table");
  }

  // --- activations, sized for the prefill (the most rows at once) ---
  const uint64_t rows_max = uint64_t(c.batch) * c.prompt;
  const uint64_t wide = std::max(d, f);
  CUdeviceptr x = mem.Device(rows_max * d * 4, "activation x");
  CUdeviceptr h = mem.Device(rows_max * d * 4, "activation h");
  CUdeviceptr q = mem.Device(rows_max * d * 4, "activation q");
  CUdeviceptr kk = mem.Device(rows_max * d * 4, "activation k");
  CUdeviceptr vv = mem.Device(rows_max * d * 4, "activation v");
  CUdeviceptr att = mem.Device(rows_max * d * 4, "activation attn");
  CUdeviceptr tmp = mem.Device(rows_max * wide * 4, "activation tmp");
  CUdeviceptr gate = mem.Device(rows_max * f * 4, "activation gate");
  CUdeviceptr up = mem.Device(rows_max * f * 4, "activation up");
  CUdeviceptr last = mem.Device(uint64_t(c.batch) * d * 4, "activation last");
  CUdeviceptr logits = mem.Device(uint64_t(c.batch) * v * 4, "logits");
  CUdeviceptr tokens = mem.Device(rows_max * 4, "prompt tokens");
  CUdeviceptr next = mem.Device(uint64_t(c.batch) * 4, "next tokens");

  // --- weights from the seed, on the device ---
  const auto init_start = std::chrono::steady_clock::now();
  for (const Tensor& t : weights) {
    Launch(stream, k.fill_random, "tl_fill_random", std::min(Blocks(t.count, 256), 65535u), 1, 256,
           t.ptr, uint64_t(t.count), c.seed, t.id, t.scale, t.offset, c.dtype);
  }
  TL_CHECK(cuStreamSynchronize(stream), "generating the weights");
  const double init_s = Seconds(init_start);
  const uint64_t advised_bytes =
      c.advise_weights ? AdviseRanges(weight_allocations, kAdviceWeights, "a weight allocation")
                       : 0;

  std::vector<int> prompt(rows_max);
  for (int b = 0; b < c.batch; ++b) {
    for (int t = 0; t < c.prompt; ++t) prompt[size_t(b) * c.prompt + t] = PromptToken(c, b, t);
  }
  TL_CHECK(cuMemcpyHtoD(tokens, prompt.data(), prompt.size() * 4), "copying the prompts");

  auto W = [&](int layer, int which) { return weights[1 + size_t(layer) * kPerLayer + which].ptr; };
  const CUdeviceptr embedding = weights.front().ptr, lm_head = weights.back().ptr;
  const CUdeviceptr final_norm = weights[weights.size() - 2].ptr;
  const int dt = c.dtype;

  // One forward pass over `seq` new tokens per sequence at positions pos0..; leaves each
  // sequence's next token in `next`.
  auto forward = [&](CUdeviceptr in_tokens, int seq, int pos0) {
    const int rows = c.batch * seq;
    const uint64_t nd = uint64_t(rows) * d, nf = uint64_t(rows) * f;
    Launch(stream, k.embed, "tl_embed", rows, 1, 256, x, embedding, in_tokens, rows, d, dt);
    for (int l = 0; l < c.layers; ++l) {
      Launch(stream, k.rmsnorm, "tl_rmsnorm", rows, 1, 256, h, x, W(l, kAttnNorm), rows, d,
             kNormEps, dt);
      Launch(stream, k.matmul, "tl_matmul", d, rows, 32, q, h, W(l, kWq), rows, d, d, dt);
      Launch(stream, k.matmul, "tl_matmul", d, rows, 32, kk, h, W(l, kWk), rows, d, d, dt);
      Launch(stream, k.matmul, "tl_matmul", d, rows, 32, vv, h, W(l, kWv), rows, d, d, dt);
      Launch(stream, k.rope, "tl_rope", rows, 1, 128, q, rows, seq, pos0, c.heads, head_dim,
             kRopeTheta);
      Launch(stream, k.rope, "tl_rope", rows, 1, 128, kk, rows, seq, pos0, c.heads, head_dim,
             kRopeTheta);
      if (c.style == Style::kPaged) {
        Launch(stream, k.kv_store_paged, "tl_kv_store_paged", rows, 1, 256, kcache[l], vcache[l],
               kk, vv, block_table, c.batch, seq, pos0, d, blocks_per_seq, kBlockTokens);
        Launch(stream, k.attention_paged, "tl_attention_paged", c.heads, rows, 32, att, q,
               kcache[l], vcache[l], block_table, c.batch, seq, pos0, c.heads, head_dim,
               blocks_per_seq, kBlockTokens);
      } else {
        Launch(stream, k.kv_store, "tl_kv_store", rows, 1, 256, kcache[l], vcache[l], kk, vv,
               c.batch, seq, pos0, d, c.ctx);
        Launch(stream, k.attention, "tl_attention", c.heads, rows, 32, att, q, kcache[l], vcache[l],
               c.batch, seq, pos0, c.heads, head_dim, c.ctx);
      }
      Launch(stream, k.matmul, "tl_matmul", d, rows, 32, tmp, att, W(l, kWo), rows, d, d, dt);
      Launch(stream, k.add, "tl_add", Blocks(nd, 256), 1, 256, x, tmp, nd);
      Launch(stream, k.rmsnorm, "tl_rmsnorm", rows, 1, 256, h, x, W(l, kFfnNorm), rows, d, kNormEps,
             dt);
      Launch(stream, k.matmul, "tl_matmul", f, rows, 32, gate, h, W(l, kW1), rows, d, f, dt);
      Launch(stream, k.matmul, "tl_matmul", f, rows, 32, up, h, W(l, kW3), rows, d, f, dt);
      Launch(stream, k.silu_mul, "tl_silu_mul", Blocks(nf, 256), 1, 256, gate, up, nf);
      Launch(stream, k.matmul, "tl_matmul", d, rows, 32, tmp, gate, W(l, kW2), rows, f, d, dt);
      Launch(stream, k.add, "tl_add", Blocks(nd, 256), 1, 256, x, tmp, nd);
    }
    Launch(stream, k.gather_last, "tl_gather_last", c.batch, 1, 256, last, x, c.batch, seq, d);
    Launch(stream, k.rmsnorm, "tl_rmsnorm", c.batch, 1, 256, last, last, final_norm, c.batch, d,
           kNormEps, dt);
    Launch(stream, k.matmul, "tl_matmul", v, c.batch, 32, logits, last, lm_head, c.batch, d, v, dt);
    Launch(stream, k.argmax, "tl_argmax", c.batch, 1, 256, next, logits, c.batch, v);
  };

  // Tokens come back to the host every step, as a server streams them to its clients.
  std::vector<std::vector<int>> generated(c.batch);
  std::vector<int> step_tokens(c.batch);
  auto collect = [&](const char* when) {
    TL_CHECK(cuStreamSynchronize(stream), when);
    TL_CHECK(cuMemcpyDtoH(step_tokens.data(), next, step_tokens.size() * 4), when);
    for (int b = 0; b < c.batch; ++b) generated[b].push_back(step_tokens[b]);
  };
  // --advise-kv: once `filled` positions of every sequence hold K and V, kernels never
  // write them again (each step stores its own position only): READ_MOSTLY for them, the
  // whole chunks of which keep host copies from their next fetch on.
  uint64_t advised_kv_bytes = 0;
  std::vector<std::pair<CUdeviceptr, uint64_t>> kv_ranges;
  auto advise_kv = [&](int filled) {
    if (!c.advise_kv) return;
    kv_ranges.clear();
    const uint64_t row = uint64_t(d) * 4, per_seq = uint64_t(c.ctx) * row;
    for (int l = 0; l < c.layers; ++l) {
      for (int b = 0; b < c.batch; ++b) {
        kv_ranges.push_back({kcache[l] + b * per_seq, filled * row});
        kv_ranges.push_back({vcache[l] + b * per_seq, filled * row});
      }
    }
    advised_kv_bytes = AdviseRanges(kv_ranges, kAdviceReadMostly, "the KV cache");
  };

  const auto prefill_start = std::chrono::steady_clock::now();
  forward(tokens, c.prompt, 0);
  collect("running the prefill");
  advise_kv(c.prompt);
  const double prefill_s = Seconds(prefill_start);
  const auto decode_start = std::chrono::steady_clock::now();
  const double decode_cpu_start = ProcessCpuSeconds();
  for (int step = 1; step < c.gen; ++step) {
    forward(next, 1, c.prompt + step - 1);
    collect("running a decode step");
    advise_kv(c.prompt + step);
  }
  const double decode_s = Seconds(decode_start);
  const double decode_cpu_s = ProcessCpuSeconds() - decode_cpu_start;

  std::vector<float> final_logits(size_t(c.batch) * v);
  TL_CHECK(cuMemcpyDtoH(final_logits.data(), logits, final_logits.size() * 4),
           "copying the logits");
  const uint64_t checksum = Fnv1a(final_logits.data(), final_logits.size() * 4);
  const uint64_t decoded = uint64_t(c.batch) * (c.gen - 1);
  const double decode_tok_s = decode_s > 0 ? decoded / decode_s : 0.0;
  const double prefill_tok_s = prefill_s > 0 ? double(c.batch) * c.prompt / prefill_s : 0.0;

  char checksum_hex[17];
  std::snprintf(checksum_hex, sizeof(checksum_hex), "%016" PRIx64, checksum);
  const char* dtype_name = c.dtype == kTlBf16 ? "bf16" : "f32";
  if (!c.quiet) {
    std::printf(
        "tinyllm: %d layers, dim %d, ffn %d, heads %d, vocab %d, ctx %d, batch %d, %s, "
        "style %s\n",
        c.layers, d, f, c.heads, v, c.ctx, c.batch, dtype_name, StyleName(c.style));
    std::printf("weights %s (%" PRIu64 " bytes, %" PRIu64 " on host), kv %s (%" PRIu64 " bytes)\n",
                HumanBytes(weight_bytes).c_str(), weight_bytes, host_bytes,
                HumanBytes(kv_bytes).c_str(), kv_bytes);
    if (c.advise_weights) {
      std::printf("advised SPW_ADVICE_WEIGHTS: %s%s\n", HumanBytes(advised_bytes).c_str(),
                  advised_bytes == 0 ? " (Spillway not loaded, or no weight managed)" : "");
    }
    if (c.advise_kv) {
      std::printf("advised SPW_ADVICE_READ_MOSTLY on filled KV: %s at the end%s\n",
                  HumanBytes(advised_kv_bytes).c_str(),
                  advised_kv_bytes == 0 ? " (Spillway not loaded, or no KV managed)" : "");
    }
    for (int b = 0; b < c.batch; ++b) {
      std::printf("seq %d:", b);
      for (int t : generated[b]) std::printf(" %d", t);
      std::printf("\n");
    }
    std::printf("checksum %s\n", checksum_hex);
    std::printf("init %.1f ms; prefill %d x %d tokens %.1f ms (%.1f tok/s); decode %" PRIu64
                " tokens %.1f ms (%.2f ms/step, %.1f tok/s)\n",
                init_s * 1e3, c.batch, c.prompt, prefill_s * 1e3, prefill_tok_s, decoded,
                decode_s * 1e3, c.gen > 1 ? decode_s * 1e3 / (c.gen - 1) : 0.0, decode_tok_s);
  }
  if (!c.json.empty()) {
    FILE* out = std::fopen(c.json.c_str(), "w");
    if (out == nullptr) {
      std::fprintf(stderr, "tinyllm: cannot write %s: %s\n", c.json.c_str(), std::strerror(errno));
      return 1;
    }
    std::fprintf(out, "{\"tokens\": [");
    for (int b = 0; b < c.batch; ++b) {
      std::fprintf(out, "%s[", b ? ", " : "");
      for (size_t t = 0; t < generated[b].size(); ++t) {
        std::fprintf(out, "%s%d", t ? ", " : "", generated[b][t]);
      }
      std::fprintf(out, "]");
    }
    std::fprintf(
        out,
        "], \"checksum\": \"%s\", \"init_s\": %.6f, \"prefill_s\": %.6f, "
        "\"decode_s\": %.6f, \"decode_cpu_s\": %.6f, \"prefill_tok_s\": %.3f, "
        "\"decode_tok_s\": %.3f, "
        "\"weight_bytes\": %" PRIu64 ", \"host_offload_bytes\": %" PRIu64 ", \"kv_bytes\": %" PRIu64
        ", \"advised_weight_bytes\": %" PRIu64 ", \"advised_kv_bytes\": %" PRIu64
        ", \"config\": {\"layers\": %d, \"dim\": %d, \"ffn\": %d, \"heads\": %d, "
        "\"vocab\": %d, \"ctx\": %d, \"batch\": %d, \"prompt\": %d, \"gen\": %d, "
        "\"seed\": %u, \"style\": \"%s\", \"dtype\": \"%s\"}}\n",
        checksum_hex, init_s, prefill_s, decode_s, decode_cpu_s, prefill_tok_s, decode_tok_s,
        weight_bytes, host_bytes, kv_bytes, advised_bytes, advised_kv_bytes, c.layers, d, f,
        c.heads, v, c.ctx, c.batch, c.prompt, c.gen, c.seed, StyleName(c.style), dtype_name);
    std::fclose(out);
  }
  TL_CHECK(cuStreamDestroy(stream), "destroying the stream");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(ParseArgs(argc, argv)); }
