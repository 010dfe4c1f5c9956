// SPDX-License-Identifier: Apache-2.0
//
// glibc's own dlsym, never ours: libspillway.so exports `dlsym`, so a plain call would
// come back here. Found with dlvsym(RTLD_NEXT) (GLIBC_2.34, else GLIBC_2.2.5), which does
// not go through any dlsym.
//
// Thread safety: safe from any thread; the first call resolves, later ones read.
#ifndef SPILLWAY_INTERPOSE_REAL_DLSYM_H_
#define SPILLWAY_INTERPOSE_REAL_DLSYM_H_

namespace spillway::interpose {

using DlsymFn = void* (*)(void*, const char*);

// glibc's dlsym, or null if it cannot be found (then nothing can be forwarded).
DlsymFn RealDlsym();

}  // namespace spillway::interpose

#endif  // SPILLWAY_INTERPOSE_REAL_DLSYM_H_
