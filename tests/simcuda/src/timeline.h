// SPDX-License-Identifier: Apache-2.0
//
// The device timeline (SIMCUDA_TIMELINE=FILE): one JSON line per kernel run and per copy
// over the modelled link, with when it held the device, what a GPU profiler's timeline
// shows. It is how one sees where a link idles under a runtime that moves data (the link
// benchmark's bench/tinyllm/timeline.py reads it).
//
// Lines (times in ms on the steady clock, the same clock as cuEventElapsedTime):
//   {"kind": "kernel", "device": 0, "name": "tl_matmul", "start": 12.5, "end": 12.61}
//   {"kind": "h2d", "device": 0, "bytes": 262144, "start": 12.5, "end": 12.63}
// A copy's interval is the link's: it starts when the engine took it (or when the copy
// before it left the link, for one queued back to back) and ends when the modelled link
// delivered its last byte. Unset: nothing is recorded and recording costs one branch.
//
// Thread safety: Record may be called from any thread; lines are whole.
#ifndef SIMCUDA_TIMELINE_H_
#define SIMCUDA_TIMELINE_H_

#include <cstddef>

namespace simcuda {

// Opens SIMCUDA_TIMELINE's file (truncating it). False, with a message on stderr, when it
// cannot be written.
bool OpenTimeline(const char* path);
bool TimelineOn();
// `name`: a kernel's name; null for a copy. `kind`: "kernel", "h2d" or "d2h".
void RecordTimeline(const char* kind, int device, const char* name, size_t bytes, double start_ms,
                    double end_ms);

}  // namespace simcuda

#endif  // SIMCUDA_TIMELINE_H_
