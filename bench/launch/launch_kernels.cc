// SPDX-License-Identifier: Apache-2.0
//
// The kernel launch_overhead launches: eight pointer arguments, no work, so a launch costs
// only its host-side path.
#include "simcuda/kernel.h"

SIMCUDA_KERNEL(touch_eight, sizeof(void*), sizeof(void*), sizeof(void*), sizeof(void*),
               sizeof(void*), sizeof(void*), sizeof(void*), sizeof(void*)) {}
