// SPDX-License-Identifier: Apache-2.0
//
// HelpText: the usage text of the `spillway` command and of each subcommand, written as man
// pages (NAME, SYNOPSIS, DESCRIPTION, OPTIONS, ENVIRONMENT, EXIT STATUS, EXAMPLES), lines at
// most 80 columns. docs/tools.md carries the same texts; spillway_test keeps them equal and
// checks that every `spillway run` flag is documented.
//
// Thread safety: constant data.
#ifndef SPILLWAY_TOOLS_HELP_TEXT_H_
#define SPILLWAY_TOOLS_HELP_TEXT_H_

#include <string>
#include <string_view>

namespace spillway::tools {

std::string_view MainHelp();
std::string_view RunHelp();
std::string_view StatsHelp();
std::string_view OptionsHelp();

// "spillway 0.1.0", from the version macros of include/spillway/spillway.h.
std::string VersionText();

}  // namespace spillway::tools

#endif  // SPILLWAY_TOOLS_HELP_TEXT_H_
