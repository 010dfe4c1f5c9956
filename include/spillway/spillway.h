/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spillway.h — the C API of Spillway, a tiered memory runtime for CUDA programs.
 *
 * Managed allocations live behind stable device pointers while their data moves between
 * HBM, page-locked host memory and NVMe. A managed pointer is always usable by kernels
 * (its memory is mapped, in HBM or read over the link) unless its allocation is advised
 * SPW_ADVICE_GUARDED and was evicted to NVMe.
 *
 * Streams: calls that take a stream order their effect after the work queued on it so far
 * and before the work queued on it later; the calling thread never waits for the device.
 * Use a managed range on the stream you last passed for it (or synchronise before you
 * switch streams): moves are ordered against that stream. NULL is the legacy default
 * stream. spw_stream, CUstream and cudaStream_t are the same type.
 *
 * PyTorch: spw_malloc and spw_free have the signatures torch.cuda.memory.
 * CUDAPluggableAllocator expects (see docs/c-api.md).
 *
 * Errors: functions return spw_status; spw_malloc returns NULL and records its status
 * for spw_last_status() (per thread). spw_last_error() describes the last failure of the
 * calling thread in words. Configuration comes from SPILLWAY_* environment variables
 * (docs/configuration.md) and spw_set_option().
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef SPILLWAY_SPILLWAY_H_
#define SPILLWAY_SPILLWAY_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* ssize_t */

#ifdef __cplusplus
extern "C" {
#endif

#define SPILLWAY_VERSION_MAJOR 0
#define SPILLWAY_VERSION_MINOR 1
#define SPILLWAY_VERSION_PATCH 0
/* major * 10000 + minor * 100 + patch, as spw_version() returns it. */
#define SPILLWAY_VERSION \
  (SPILLWAY_VERSION_MAJOR * 10000 + SPILLWAY_VERSION_MINOR * 100 + SPILLWAY_VERSION_PATCH)

#if defined(__GNUC__)
#define SPW_API __attribute__((visibility("default")))
#else
#define SPW_API
#endif

typedef struct CUstream_st* spw_stream;

typedef enum spw_status {
  SPW_OK = 0,
  SPW_ERROR_INVALID_ARGUMENT = 1, /* a bad size, range, tier or advice */
  SPW_ERROR_NOT_MANAGED = 2,      /* the pointer is not (or no longer) a managed allocation */
  SPW_ERROR_OUT_OF_MEMORY = 3,    /* no tier can hold it */
  SPW_ERROR_NOT_INITIALIZED = 4,  /* spw_init failed earlier, or spw_shutdown was called */
  SPW_ERROR_CONFIG = 5,           /* a SPILLWAY_* value is malformed or contradictory */
  SPW_ERROR_UNSUPPORTED = 6,      /* the device or the build cannot do this */
  SPW_ERROR_DRIVER = 7,           /* a CUDA driver call failed */
  SPW_ERROR_IO = 8,               /* the NVMe tier failed (disk full, I/O error) */
  SPW_ERROR_INTERNAL = 9
} spw_status;

typedef enum spw_tier { SPW_TIER_DEVICE = 0, SPW_TIER_HOST = 1, SPW_TIER_NVME = 2 } spw_tier;

typedef enum spw_advice {
  SPW_ADVICE_WEIGHTS = 1 << 0,     /* read-mostly weights: a host copy is kept, eviction is free */
  SPW_ADVICE_KV = 1 << 1,          /* a KV cache (recorded; see READ_MOSTLY for its blocks) */
  SPW_ADVICE_PIN = 1 << 2,         /* keep in HBM */
  SPW_ADVICE_COLD = 1 << 3,        /* evict first; new allocations start in host memory */
  SPW_ADVICE_READ_MOSTLY = 1 << 4, /* kernels do not write it; for part of an allocation,
                                      the chunks the range holds whole (filled KV blocks) */
  SPW_ADVICE_GUARDED = 1 << 5      /* the caller spw_prefetch()es before every device use, so
                                      the data may leave mapped memory (NVMe) */
} spw_advice;

/* Statistics. Set struct_size to sizeof(spw_stats) before calling spw_get_stats: fields
 * added later are left alone for callers built against an older header. */
typedef struct spw_stats {
  size_t struct_size;
  uint64_t allocations;     /* live managed allocations */
  uint64_t allocated_bytes; /* their sizes */
  uint64_t device_bytes;    /* managed bytes resident per tier */
  uint64_t host_bytes;
  uint64_t nvme_bytes;
  uint64_t peak_device_bytes; /* the most HBM the tiers held at once */
  uint64_t h2d_bytes;         /* bytes moved per link and direction */
  uint64_t d2h_bytes;
  uint64_t nvme_read_bytes;
  uint64_t nvme_write_bytes;
  uint64_t fetches_on_demand;  /* chunks brought to HBM because a launch needed them */
  uint64_t fetches_prefetched; /* chunks brought to HBM ahead of need */
  uint64_t evictions;          /* chunks that left HBM */
  uint64_t spills;             /* chunks written to NVMe */
  uint64_t stall_ns;           /* time moves held application streams */
  uint64_t moves;              /* move operations completed */
  /* The host<->device link as measured (at start-up, then from the moves' copies), in
   * bytes per second, summed over devices; 0 when not measured. */
  uint64_t h2d_link_bytes_per_s;
  uint64_t d2h_link_bytes_per_s;
  /* Chunks sent to NVMe without a write: their extent already held those bytes (weights
   * the device only read, say). Not counted in spills. */
  uint64_t spills_unchanged;
  /* Host time re-pointing ranges after moves' copies (page-table updates); launches held
   * for a move wait for it too. Divided by moves: the fixed cost a move adds. */
  uint64_t remap_ns;
} spw_stats;

/* Initialises from the environment; later calls return the first call's result. Every
 * other function initialises on first use, so calling this is optional; it is how to see
 * a configuration error early. */
SPW_API spw_status spw_init(void);
/* Overrides one SPILLWAY_* option (name with or without the prefix); only before spw_init
 * or the first allocation. */
SPW_API spw_status spw_set_option(const char* name, const char* value);
/* Frees everything, writes SPILLWAY_STATS, releases the device memory of the tiers. */
SPW_API spw_status spw_shutdown(void);

/* Allocation, in PyTorch's CUDAPluggableAllocator form. size <= 0 or a failure returns
 * NULL (spw_last_status() says why). */
SPW_API void* spw_malloc(ssize_t size, int device, spw_stream stream);
SPW_API void spw_free(void* ptr, ssize_t size, int device, spw_stream stream);
/* The same with a status and advice given at allocation (spw_advice bits). */
SPW_API spw_status spw_alloc(void** ptr, size_t size, int device, spw_stream stream,
                             unsigned advice);
SPW_API spw_status spw_release(void* ptr, spw_stream stream);

/* Adds (spw_advise) or removes (spw_unadvise) advice bits on the allocation holding ptr. */
SPW_API spw_status spw_advise(void* ptr, size_t size, unsigned advice);
SPW_API spw_status spw_unadvise(void* ptr, size_t size, unsigned advice);
/* Moves [ptr, ptr+size) to `tier`, ordered on `stream`. spw_evict is spw_prefetch to a
 * slower tier; SPW_TIER_NVME needs SPILLWAY_NVME_PATH and SPW_ADVICE_GUARDED. */
SPW_API spw_status spw_prefetch(void* ptr, size_t size, spw_tier tier, spw_stream stream);
SPW_API spw_status spw_evict(void* ptr, size_t size, spw_tier tier, spw_stream stream);

/* 1 if ptr lies in a live managed allocation. */
SPW_API int spw_owns(const void* ptr);
SPW_API spw_status spw_get_stats(spw_stats* stats);

SPW_API const char* spw_status_string(spw_status status);
SPW_API spw_status spw_last_status(void);
SPW_API const char* spw_last_error(void);
SPW_API unsigned spw_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPILLWAY_SPILLWAY_H_ */
