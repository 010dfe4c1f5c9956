// SPDX-License-Identifier: Apache-2.0
//
// OptionListing: what `spillway options` prints. Everything comes from the runtime's options
// table (SPILLWAY_OPTIONS in runtime/options.h) and its parser, so the listing and the check
// cannot drift from what libspillway.so does: the accepted forms are the very words of the
// runtime's error messages.
//
// Contract: OptionsListing never fails. CheckEnvironment reports what LoadOptions reports
// (errors, one per bad variable) and what UnknownVariables reports (warnings), leaving out
// SPILLWAY_LIB, which is `spillway run`'s own variable and no runtime option.
//
// Thread safety: pure functions over their arguments.
#ifndef SPILLWAY_TOOLS_OPTION_LISTING_H_
#define SPILLWAY_TOOLS_OPTION_LISTING_H_

#include <functional>
#include <string>
#include <vector>

namespace spillway::tools {

// Every option: its variable, the `spillway run` flag that sets it, default, unit, accepted
// values, the option it needs, and its description wrapped to 80 columns.
std::string OptionsListing();

struct EnvironmentCheck {
  std::vector<std::string> errors;    // empty: every value is good
  std::vector<std::string> warnings;  // unknown SPILLWAY_* variables
  std::string settings;               // when no errors: DescribeOptions of the values
};

// `getenv_fn` reads a variable (nullptr when unset); `environment` is the NULL-terminated
// "NAME=value" array the warnings are looked for in (as the global `environ`).
EnvironmentCheck CheckEnvironment(const std::function<const char*(const char*)>& getenv_fn,
                                  const char* const* environment);

}  // namespace spillway::tools

#endif  // SPILLWAY_TOOLS_OPTION_LISTING_H_
