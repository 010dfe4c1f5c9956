// SPDX-License-Identifier: Apache-2.0
#include "tools/help_text.h"

#include <fmt/core.h>

#include "spillway/spillway.h"

namespace spillway::tools {

std::string_view MainHelp() {
  return R"(NAME
    spillway - run CUDA programs on Spillway's tiered device memory

SYNOPSIS
    spillway run [OPTIONS] [--] COMMAND [ARGS...]
    spillway stats [--json] FILE
    spillway options [--check]
    spillway help [run|stats|options]
    spillway --help | --version

DESCRIPTION
    Spillway lets an unmodified CUDA program use more memory than its GPU
    has. libspillway.so, preloaded into the program, keeps the program's large
    allocations in chunks that move between HBM, pinned host memory and NVMe
    as its kernels need them. The spillway command starts programs under it,
    checks their settings, and reads the statistics they leave.

COMMANDS
    run        Run COMMAND with libspillway.so preloaded and the SPILLWAY_*
               variables set from options.
    stats      Summarize a statistics file written at the end of a run.
    options    List every SPILLWAY_* option, or check the environment's.
    help       Print this help, or a command's.

    Each command has its own help: spillway COMMAND --help.

OPTIONS
    -h, --help
        Print this help and exit.
    --version
        Print spillway's version and exit.

EXIT STATUS
    0 on success and 2 on a usage error; each command's help says the rest.

EXAMPLES
    spillway run --hbm-limit 40G --stats run.json -- ./server
    spillway stats run.json
    SPILLWAY_HBM_LIMIT=40G spillway options --check

SEE ALSO
    docs/tools.md, docs/configuration.md
)";
}

std::string_view RunHelp() {
  return R"(NAME
    spillway run - run a program with its device memory tiered by Spillway

SYNOPSIS
    spillway run [OPTIONS] [--] COMMAND [ARGS...]

DESCRIPTION
    Runs COMMAND with libspillway.so preloaded, so that its CUDA allocations
    can spill from HBM to host memory and NVMe with no change to the program.
    Each option below sets one SPILLWAY_* variable in COMMAND's environment
    (docs/configuration.md); variables already set there are kept unless an
    option overrides them.

    Every value, from an option or from the environment, is checked before
    COMMAND starts, by the parser libspillway.so uses: a bad value stops here
    with a message that names the option and its variable. (Only the check of
    --chunk against the device's mapping granularity waits for the device.)
    Relative paths are made absolute, so they hold if COMMAND changes
    directory.

    libspillway.so goes first in LD_PRELOAD, and the entries already there
    follow it (an entry naming another libspillway.so is dropped). spillway
    then replaces itself with COMMAND (execvp(3): a COMMAND without a slash is
    looked up in PATH), so COMMAND keeps spillway's process ID, signals reach
    it directly and its exit status is spillway's.

OPTIONS
    --hbm-limit SIZE|N%
        The most HBM managed data may occupy; N% is of the device's memory
        (SPILLWAY_HBM_LIMIT, default 90%).
    --host-limit SIZE|N%
        The most pinned host memory the host tier may hold; N% is of the
        host's RAM (SPILLWAY_HOST_LIMIT, default 50%).
    --nvme DIR
        Turn the NVMe tier on, with its spill files in DIR
        (SPILLWAY_NVME_PATH, default off).
    --nvme-limit SIZE|N%
        The most the spill files may hold; N% is of the space free in DIR
        (SPILLWAY_NVME_LIMIT, default 50%). Needs --nvme.
    --nvme-queue-depth N
        NVMe requests kept in flight, 1 to 4096
        (SPILLWAY_NVME_QUEUE_DEPTH, default 8). Needs --nvme.
    --chunk SIZE
        The unit data moves between tiers in, a multiple of the device's
        mapping granularity (SPILLWAY_CHUNK, default 2MiB).
    --min-bytes SIZE
        Allocations smaller than SIZE stay plain device memory; 0 manages
        every allocation (SPILLWAY_MIN_BYTES, default 1MiB).
    --policy NAME
        The eviction and prefetch policy: learned (Belady's rule on the
        learned launch sequence, fetching ahead of need), or lru (least
        recently used, fetching on demand) (SPILLWAY_POLICY, default learned).
    --prefetch-ahead SIZE
        With --policy learned: bytes fetched ahead of need, at most; 0 picks
        what the measured link moves in 8 ms (at least a quarter of the
        widest launch), within an eighth and a half of the HBM limit
        (SPILLWAY_PREFETCH_AHEAD, default 0).
    --virtual-capacity
        Report the HBM limit plus the host tier as the device's memory, for
        programs that size themselves from free memory
        (SPILLWAY_VIRTUAL_CAPACITY=1).
    --log LEVEL
        off, error, warn, info, debug or trace (SPILLWAY_LOG, default warn).
    --log-file FILE
        Append log lines to FILE instead of stderr (SPILLWAY_LOG_FILE).
    --stats FILE
        Write statistics to FILE as JSON when COMMAND exits
        (SPILLWAY_STATS); spillway stats FILE summarizes them.
    --trace FILE
        Record the access trace (allocations, frees, what each launch names)
        to FILE, for the policy simulator bench/trace_sim (SPILLWAY_TRACE).
    --lib PATH
        The libspillway.so to preload (default: see ENVIRONMENT and FILES).
    -h, --help
        Print this help and exit.

    SIZE is a whole number of bytes with an optional binary unit: 40G,
    512MiB, 4096 (1K = 1KiB = 1024). N% is a share from 0.01% to 100%.
    An option's value is the next argument or follows "=": --hbm-limit 40G
    or --hbm-limit=40G. Options end at "--" or at the first argument that
    does not start with "-". Each option may be given once.

ENVIRONMENT
    SPILLWAY_*
        Passed on to COMMAND, and checked like the options; an option
        overrides its variable. spillway options lists them all.
    SPILLWAY_LIB
        The libspillway.so to preload when --lib is not given. It is taken
        out of COMMAND's environment.
    LD_PRELOAD
        Kept, after libspillway.so.

FILES
    Without --lib or SPILLWAY_LIB, libspillway.so is looked for next to the
    spillway binary (in BINDIR), the first that exists being used:
        BINDIR/../interpose/libspillway.so    a build tree
        BINDIR/../lib/libspillway.so          an installation
        BINDIR/libspillway.so                 a bundle

EXIT STATUS
    COMMAND's own exit status once it has started (spillway has become
    COMMAND). Before that:
    2      a usage error, a bad value, or no libspillway.so found
    126    COMMAND was found but could not be executed
    127    COMMAND was not found

EXAMPLES
    Keep a server within 40 GiB of HBM; the rest waits in host memory:
        spillway run --hbm-limit 40G -- ./server --port 8000

    Use 80% of HBM, at most 200 GiB of host memory, then NVMe, and keep
    statistics for later:
        spillway run --hbm-limit 80% --host-limit 200G \
            --nvme /mnt/nvme/spill --stats run.json -- python serve.py
        spillway stats run.json

    Let a server that sizes its KV cache from free memory see the tiers:
        spillway run --virtual-capacity -- vllm serve MODEL

SEE ALSO
    spillway stats --help, spillway options, docs/configuration.md
)";
}

std::string_view StatsHelp() {
  return R"(NAME
    spillway stats - summarize a Spillway statistics file

SYNOPSIS
    spillway stats [--json] FILE

DESCRIPTION
    Reads the statistics a run wrote when it ended (spillway run --stats
    FILE, or SPILLWAY_STATS=FILE) and prints a summary: what was live and
    resident in each tier at exit; peak HBM against the limit; the bytes
    moved over each link in each direction, with each one's share; chunks
    fetched on demand and ahead of need; evictions, spills to NVMe and the
    time application streams waited for moves; then the same per device,
    with the link's speed each way as the runtime measured it.

    The file is read strictly. Text that is not JSON is reported with the
    line and column where it goes wrong; JSON that is not a statistics file
    of a format this spillway reads, with the member at fault. Members it
    does not know are ignored. FILE "-" is standard input.

OPTIONS
    --json
        Print the statistics as normalized JSON instead: every member in the
        runtime's order, indented by two spaces. Members this spillway does
        not know are left out.
    -h, --help
        Print this help and exit.

EXIT STATUS
    0      the summary was printed
    1      FILE could not be read, or is not a valid statistics file
    2      a usage error

EXAMPLES
    spillway run --stats run.json -- ./train && spillway stats run.json
    spillway stats --json run.json > normalized.json

SEE ALSO
    spillway run --help, docs/tools.md
)";
}

std::string_view OptionsHelp() {
  return R"(NAME
    spillway options - list Spillway's options, or check the environment's

SYNOPSIS
    spillway options [--check]

DESCRIPTION
    Without --check, prints every SPILLWAY_* variable libspillway.so reads:
    its default, its unit, the values it accepts, the spillway run option
    that sets it, and what it does. The list comes from the runtime's own
    table of options, so it is that of the libspillway.so built with this
    spillway.

    With --check, reads the SPILLWAY_* variables of the environment as
    libspillway.so will when it starts: prints each error (one line per bad
    variable, naming it), warns about each SPILLWAY_* variable that is no
    option (with the option it is closest to, if it looks like a typo), and,
    when every value is good, prints the settings that would be in effect.

OPTIONS
    --check
        Check the environment instead of listing the options.
    -h, --help
        Print this help and exit.

ENVIRONMENT
    SPILLWAY_*
        What --check reads. SPILLWAY_LIB is spillway run's own and is not
        warned about.

EXIT STATUS
    0      the list was printed, or --check found every value good
           (warnings do not count)
    1      --check found a bad value
    2      a usage error

EXAMPLES
    spillway options
    SPILLWAY_HBM_LIMIT=40G SPILLWAY_NVME_PATH=/mnt/nvme spillway options --check

SEE ALSO
    docs/configuration.md, spillway run --help
)";
}

std::string VersionText() {
  return fmt::format("spillway {}.{}.{}", SPILLWAY_VERSION_MAJOR, SPILLWAY_VERSION_MINOR,
                     SPILLWAY_VERSION_PATCH);
}

}  // namespace spillway::tools
