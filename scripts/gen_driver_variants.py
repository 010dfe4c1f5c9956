#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generate Spillway's driver-variant table from the CUDA toolkit headers.

cudaTypedefs.h names every ABI variant of every driver entry point with the
CUDA version that introduced it, e.g. PFN_cuMemAlloc_v3020 or
PFN_cuLaunchKernel_v7000_ptsz.  libcuda exports those variants under other
names (cuMemAlloc_v2, cuLaunchKernel_ptsz).  This script turns the typedefs
into an X-macro file with one row per variant:

    SPW_DRIVER_VARIANT(<base>, <version>, <KIND>, <symbol>, <PFN type>)

KIND is DEFAULT, PTSZ or PTDS (the per-thread default-stream variants that
cuGetProcAddress hands out for CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM).

Symbol rule: sort the distinct non-suffixed versions of a base ascending; the
first is exported as <base>, the k-th (k >= 2) as <base>_v<k>.  A _ptsz/_ptds
variant of version V takes the symbol of the newest non-suffixed version <= V
and appends _ptsz/_ptds.  The rule is checked against the `#define cuX cuX_vN`
lines of cuda.h: where cuda.h disagrees, cuda.h wins and a warning is printed
(a define naming an older variant is no disagreement when cuda.h declares the
newer ones under their own names, as with cuStreamGetCtx/cuStreamGetCtx_v2).
Every symbol must also be named somewhere in cuda.h and, with --stub-lib,
exported by the stub libcuda.so; a warning is printed for each that is not.

Standard library only.  Exit status: 0 on success (warnings allowed), 1 when a
header cannot be read or holds no typedefs, 2 on bad arguments.
"""

import argparse
import os
import re
import struct
import sys

# (base, version, kind) -> symbol, for variants where the counting rule is known
# wrong.  Empty for CUDA 13.0: every computed symbol matches cuda.h and the stub
# libcuda's export list.  Add a row with a comment saying where the truth came
# from if a future toolkit breaks the rule (e.g. a version missing from
# cudaTypedefs.h would shift every later _v<k>).
SYMBOL_OVERRIDES = {}

# cuda.h #defines these bases to a *different* function, not to a version of the
# same one, so the define says nothing about the base's own variants.
# cuGraphInstantiate's v10000/v11000 variants (old signature, with error-log
# arguments) are still exported as cuGraphInstantiate/cuGraphInstantiate_v2;
# code compiled against CUDA >= 12 calls cuGraphInstantiateWithFlags instead.
KNOWN_RENAMES = {
    "cuGraphInstantiate": "cuGraphInstantiateWithFlags",
}

KINDS = {None: "DEFAULT", "ptsz": "PTSZ", "ptds": "PTDS"}

TYPEDEF_RE = re.compile(
    r"typedef\s+CUresult\s*\(\s*CUDAAPI\s*\*\s*"
    r"PFN_(?P<base>cu\w+?)_v(?P<ver>\d+)(?:_(?P<sfx>ptsz|ptds))?\s*\)")

DEFINE_RE = re.compile(
    r"^[ \t]*#[ \t]*define[ \t]+(?P<name>cu\w+)[ \t]+"
    r"(?:(?P<macro>__CUDA_API_PT(?:DS|SZ))[ \t]*\([ \t]*(?P<wrapped>cu\w+)[ \t]*\)"
    r"|(?P<plain>cu\w+))[ \t]*$",
    re.MULTILINE)

CHECK_BASES = ["cuMemAlloc", "cuCtxCreate", "cuLaunchKernel", "cuMemcpyHtoDAsync",
               "cuGetProcAddress", "cuStreamBeginCapture"]


def warn(msg):
    print(f"gen_driver_variants: warning: {msg}", file=sys.stderr)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as e:
        sys.exit(f"gen_driver_variants: error: cannot read {path}: {e.strerror}")


def parse_typedefs(text):
    """Returns ({base: [(version, suffix-or-None, pfn_name, condition)]}, duplicates).

    condition is the #if text a typedef sits under ("" if none beyond the include
    guard and extern "C"): cudaTypedefs.h declares the oldest variants only
    `#if defined(__CUDA_API_VERSION_INTERNAL)`, and users of the PFN column need to know.
    """
    variants = {}
    seen = set()
    duplicates = 0
    stack = []  # condition text of each open #if
    for line in strip_comments(text).splitlines():
        directive = re.match(r"\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)", line)
        if directive:
            word, cond = directive.group(1), directive.group(2).strip()
            if word in ("if", "ifdef", "ifndef"):
                cond = {"ifdef": f"defined({cond})", "ifndef": f"!defined({cond})"}.get(word, cond)
                stack.append("" if cond in ("!defined(CUDATYPEDEFS_H)", "defined(__cplusplus)")
                             else cond)
            elif stack and word == "elif":
                stack[-1] = f"{cond} (elif)"
            elif stack and word == "else":
                stack[-1] = f"!({stack[-1]})" if stack[-1] else ""
            elif stack and word == "endif":
                stack.pop()
            continue
        for m in TYPEDEF_RE.finditer(line):
            base, ver, sfx = m.group("base"), int(m.group("ver")), m.group("sfx")
            if (base, ver, sfx) in seen:
                duplicates += 1
                continue
            seen.add((base, ver, sfx))
            pfn = f"PFN_{base}_v{m.group('ver')}" + (f"_{sfx}" if sfx else "")
            cond = " && ".join(c for c in stack if c)
            variants.setdefault(base, []).append((ver, sfx, pfn, cond))
    return variants, duplicates


def parse_defines(text):
    """Returns {name: (target, macro-or-None)} for `#define cuX target` lines of cuda.h."""
    defines = {}
    for m in DEFINE_RE.finditer(strip_comments(text)):
        target = m.group("wrapped") or m.group("plain")
        # cuda.h also has e.g. `#define cuGetProcAddress_v2 cuGetProcAddress_v2_ptsz`
        # under CUDA_API_PER_THREAD_DEFAULT_STREAM; keep only the first define of a name.
        defines.setdefault(m.group("name"), (target, m.group("macro")))
    return defines


def compute_symbols(variants):
    """Applies the counting rule: {(base, version, suffix): symbol}."""
    symbols = {}
    for base, rows in variants.items():
        plain = sorted({v for v, s, *_ in rows if s is None})
        plain_sym = {v: base if k == 0 else f"{base}_v{k + 1}" for k, v in enumerate(plain)}
        for ver, sfx, *_ in rows:
            if sfx is None:
                sym = plain_sym[ver]
            else:
                older = [v for v in plain if v <= ver]
                if not older:
                    warn(f"PFN_{base}_v{ver}_{sfx} has no non-suffixed version <= {ver}; "
                         f"using {base}_{sfx}")
                sym = (plain_sym[older[-1]] if older else base) + "_" + sfx
            symbols[(base, ver, sfx)] = SYMBOL_OVERRIDES.get((base, ver, KINDS[sfx]), sym)
    return symbols


def names_in_cuda_h(text, defines):
    """Every driver symbol cuda.h names: declarations, #define names and their expansions."""
    names = set(re.findall(r"CUresult\s+CUDAAPI\s+(cu\w+)\s*\(", strip_comments(text)))
    for name, (target, macro) in defines.items():
        names.update((name, target))
        if macro:
            names.add(target + ("_ptds" if macro.endswith("PTDS") else "_ptsz"))
    return names


def check_against_cuda_h(variants, symbols, defines, named):
    """Compares the variants with cuda.h; fixes symbols where cuda.h contradicts the rule.

    `#define cuX cuX_vN` (optionally inside __CUDA_API_PTSZ/PTDS) says which variant
    code compiled against cuda.h calls.  Usually that is the newest one.  It may be an
    older one when the newer variants changed signature and cuda.h declares them under
    their own names (cuStreamGetCtx stays cuStreamGetCtx; its v12050 variant is the
    separately declared cuStreamGetCtx_v2): that is consistent, not a disagreement.
    Returns (defines checked, disagreements, renames).
    """
    checked = disagreements = renames = 0
    for base, rows in sorted(variants.items()):
        if base not in defines:
            continue
        target, macro = defines[base]
        if target != base and not re.fullmatch(re.escape(base) + r"_v\d+", target):
            renames += 1
            if KNOWN_RENAMES.get(base) != target:
                warn(f"cuda.h defines {base} as {target}, a different function; "
                     f"its variants keep their counted symbols")
            continue
        checked += 1
        sfxs = [None]
        if macro:
            sfxs.append("ptds" if macro.endswith("PTDS") else "ptsz")
        for sfx in sfxs:
            want = target + (f"_{sfx}" if sfx else "")
            keys = sorted((base, v, s) for v, s, *_ in rows if s == sfx)
            if not keys:
                disagreements += 1
                warn(f"cuda.h defines {base} as {want} but cudaTypedefs.h has no "
                     f"{KINDS[sfx]} variant of it")
                continue
            got = [symbols[k] for k in keys]
            if got[-1] == want:
                continue
            if want in got and all(sym in named for sym in got[got.index(want) + 1:]):
                continue  # newer variants are public under their own names
            disagreements += 1
            pfn = f"PFN_{base}_v{keys[-1][1]}" + (f"_{sfx}" if sfx else "")
            warn(f"{pfn}: rule gives {got[-1]}, cuda.h says {want}; using {want}")
            symbols[keys[-1]] = want
    return checked, disagreements, renames


def check_named(symbols, named):
    """Warns about computed symbols that cuda.h never mentions; returns their number."""
    unknown = sorted(s for s in set(symbols.values()) if s not in named)
    for sym in unknown:
        warn(f"{sym} is not named anywhere in cuda.h")
    return len(unknown)


def elf_dynamic_symbols(path):
    """Names of the defined dynamic symbols of an ELF64 little-endian shared object."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not an ELF64 little-endian file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    names = set()
    for _, sh_type, _, _, off, size, link, _, _, entsize in sections:
        if sh_type != 11:  # SHT_DYNSYM
            continue
        str_off = sections[link][4]
        for i in range(size // entsize):
            st_name, _, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", data, off + i * entsize)
            if st_name and st_shndx != 0:
                end = data.index(b"\0", str_off + st_name)
                names.add(data[str_off + st_name:end].decode())
    return names


def check_against_stub(symbols, stub_path):
    try:
        exported = elf_dynamic_symbols(stub_path)
    except (OSError, ValueError, struct.error, IndexError) as e:
        warn(f"cannot read exports of {stub_path} ({e}); skipping that check")
        return None
    missing = sorted(s for s in set(symbols.values()) if s not in exported)
    for sym in missing:
        warn(f"{sym} is not exported by {stub_path}")
    return len(missing)


def render(variants, symbols, sources):
    lines = [
        "// Generated by scripts/gen_driver_variants.py -- do not edit.",
        "// Sources:",
        *(f"//   {p}" for p in sources),
        "//",
        "// One row per ABI variant of a driver entry point:",
        "//   SPW_DRIVER_VARIANT(base, cuda_version, kind, exported_symbol, pfn_type)",
        "// kind is DEFAULT, PTSZ or PTDS (per-thread default stream variants).",
    ]
    conditional = sum(1 for rows in variants.values() for r in rows if r[3])
    if conditional:
        lines += [
            f"// {conditional} rows end in `// pfn type only #if <condition>`: cudaTypedefs.h",
            "// declares their PFN type only under that condition (the oldest ABI variants",
            "// need __CUDA_API_VERSION_INTERNAL defined before cuda.h is included).",
        ]
    for base, target in sorted(KNOWN_RENAMES.items()):
        if base in variants:
            lines.append(f"// Note: cuda.h #defines {base} as {target}, a different function;")
            lines.append(f"// the {base} rows below are its older, still-exported ABI variants.")
    lines += [
        "",
        "#ifndef SPW_DRIVER_VARIANT",
        "#error \"define SPW_DRIVER_VARIANT(base, version, kind, symbol, pfn) before including\"",
        "#endif",
        "",
    ]
    for base in sorted(variants):
        for ver, sfx, pfn, cond in sorted(variants[base], key=lambda r: (r[0], r[1] or "")):
            row = (f"SPW_DRIVER_VARIANT({base}, {ver}, {KINDS[sfx]}, "
                   f"{symbols[(base, ver, sfx)]}, {pfn})")
            lines.append(f"{row}  // pfn type only #if {cond}" if cond else row)
    return "\n".join(lines) + "\n"


def main(argv=None):
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: %(prog)s --out build/generated/spillway/driver_variants.inc")
    ap.add_argument("--typedefs", default=f"{cuda_home}/include/cudaTypedefs.h",
                    help="path to cudaTypedefs.h (default: $CUDA_HOME/include/cudaTypedefs.h)")
    ap.add_argument("--cuda-h", default=f"{cuda_home}/include/cuda.h",
                    help="path to cuda.h (default: $CUDA_HOME/include/cuda.h)")
    ap.add_argument("--stub-lib", help="optional stub libcuda.so whose exports every "
                    "generated symbol is checked against")
    ap.add_argument("--out", help="output .inc file (written only if its contents change)")
    ap.add_argument("--check", action="store_true",
                    help=f"print the rows for {', '.join(CHECK_BASES)} to stdout")
    args = ap.parse_args(argv)
    if not args.out and not args.check:
        ap.error("nothing to do: give --out and/or --check")

    variants, duplicates = parse_typedefs(read(args.typedefs))
    if not variants:
        sys.exit(f"gen_driver_variants: error: no PFN_cu*_v<N> typedefs in {args.typedefs}")
    cuda_h = read(args.cuda_h)
    defines = parse_defines(cuda_h)
    named = names_in_cuda_h(cuda_h, defines)
    symbols = compute_symbols(variants)
    checked, disagreements, renames = check_against_cuda_h(variants, symbols, defines, named)
    unnamed = check_named(symbols, named)
    missing = check_against_stub(symbols, args.stub_lib) if args.stub_lib else None

    sources = [os.path.abspath(args.typedefs), os.path.abspath(args.cuda_h)]
    text = render(variants, symbols, sources)
    if args.out:
        old = None
        if os.path.exists(args.out):
            with open(args.out, encoding="utf-8") as f:
                old = f.read()
        if old != text:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            tmp = args.out + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, args.out)
    if args.check:
        for line in text.splitlines():
            if any(line.startswith(f"SPW_DRIVER_VARIANT({b},") for b in CHECK_BASES):
                print(line)

    counts = {k: sum(1 for (_, _, s) in symbols if KINDS[s] == k) for k in KINDS.values()}
    summary = (f"{len(variants)} functions, {len(symbols)} variants "
               f"({counts['DEFAULT']} default, {counts['PTSZ']} ptsz, {counts['PTDS']} ptds), "
               f"{duplicates} duplicate typedefs skipped, "
               f"{sum(1 for rows in variants.values() for r in rows if r[3])} PFN types "
               f"declared only conditionally; cuda.h: {checked} defines checked, "
               f"{disagreements} disagreements, {renames} renames to other functions, "
               f"{unnamed} symbols it never names")
    if missing is not None:
        summary += f"; stub: {missing} symbols not exported"
    print(f"gen_driver_variants: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
