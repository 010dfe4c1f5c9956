// SPDX-License-Identifier: Apache-2.0
//
// RunCommand: the pieces of `spillway run` that decide what to execute, each testable without
// executing anything: reading the command line into a RunRequest, checking the SPILLWAY_*
// values with the runtime's own parser (LoadOptions), finding libspillway.so, composing
// LD_PRELOAD. ExecRequest then puts them into effect and replaces the process.
//
// Contract: nothing here but ExecRequest touches the process (environment, working directory,
// /proc); what they need of it is passed in. Errors are InvalidArgument (NotFound for a missing
// library) with a message meant for the user as is, naming the flag and, where one is behind
// it, the variable.
//
// Thread safety: everything except ExecRequest is a pure function. ExecRequest calls setenv.
#ifndef SPILLWAY_TOOLS_RUN_COMMAND_H_
#define SPILLWAY_TOOLS_RUN_COMMAND_H_

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spillway::tools {

// A flag of `spillway run` that sets one SPILLWAY_* variable.
struct RunFlag {
  std::string_view flag;        // "--hbm-limit"
  std::string_view variable;    // "SPILLWAY_HBM_LIMIT"
  std::string_view value_name;  // "SIZE|N%"; empty for a flag that takes no value (sets "1")
  bool is_path;                 // made absolute against the working directory
};

// Every such flag, in the order of the options table; one per option.
std::span<const RunFlag> RunFlags();
// The flag that sets `variable`, or nullptr.
const RunFlag* FlagForVariable(std::string_view variable);

struct RunRequest {
  bool help = false;  // --help was given: nothing else is filled in
  // SPILLWAY_* variables the flags set, in the order given.
  std::vector<std::pair<std::string, std::string>> variables;
  std::string library;               // --lib, made absolute; empty when not given
  std::vector<std::string> command;  // COMMAND ARGS...; never empty when !help
};

// Reads the arguments after `run`. `cwd` is the directory relative paths are taken from.
// Checks the form of the command line only (known flags, each once, values present, a
// command); the values themselves are ValidateRunOptions' to check.
absl::StatusOr<RunRequest> ParseRunArguments(std::span<const std::string> args,
                                             std::string_view cwd);

// Checks every SPILLWAY_* value the child will see (the request's over `getenv_fn`'s) exactly as
// the runtime will at start-up. Each error line names the flag behind the variable, or says
// the variable came from the environment.
absl::Status ValidateRunOptions(const RunRequest& request,
                                const std::function<const char*(const char*)>& getenv_fn);

// Where libspillway.so is looked for next to the spillway binary at `exe_path`, in order.
std::vector<std::string> LibraryCandidates(std::string_view exe_path);

// The library to preload: `from_flag` (--lib) if not empty, else `from_env` ($SPILLWAY_LIB) if
// not empty, else the first of LibraryCandidates(exe_path) that `exists`. A path given by the
// user must exist (no fall-through to the next place); NotFound lists every place looked at.
absl::StatusOr<std::string> LocateLibrary(std::string_view from_flag, std::string_view from_env,
                                          std::string_view exe_path,
                                          const std::function<bool(const std::string&)>& exists);

// The LD_PRELOAD for the child: `library` first, then the entries of `existing` (nullptr or
// empty: none) in their order, colon-separated. An entry that is `library` or another
// libspillway.so is dropped: two interposers in one process would both hook the driver.
// InvalidArgument when `library` holds a character LD_PRELOAD cannot carry (':' or space).
absl::StatusOr<std::string> ComposeLdPreload(std::string_view library, const char* existing);

// The exit status a shell gives a command exec could not start: 127 when it was not found
// (ENOENT, ENOTDIR), 126 otherwise (not executable, a directory, ...).
int ExecFailureExitCode(int error_number);

// Sets the request's variables and LD_PRELOAD, removes SPILLWAY_LIB, and execvp's the command.
// Returns only when exec failed, having printed why: the exit status to end with.
int ExecRequest(const RunRequest& request, const std::string& ld_preload);

}  // namespace spillway::tools

#endif  // SPILLWAY_TOOLS_RUN_COMMAND_H_
