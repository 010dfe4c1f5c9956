// SPDX-License-Identifier: Apache-2.0
//
// The policy registry: a new policy is one file defining Make<Name>Policy() plus one row here.

#include "simulator.h"

namespace spillway::trace_sim {

std::unique_ptr<Policy> MakeLruPolicy();
std::unique_ptr<Policy> MakeBeladyPolicy();
std::unique_ptr<Policy> MakeLearnedPolicy();

namespace {
struct PolicyRow {
  const char* name;
  std::unique_ptr<Policy> (*make)();
};
constexpr PolicyRow kPolicies[] = {
    {"ondemand-lru", MakeLruPolicy},
    {"belady", MakeBeladyPolicy},
    {"learned", MakeLearnedPolicy},
};
}  // namespace

std::unique_ptr<Policy> MakePolicy(const std::string& name) {
  for (const PolicyRow& row : kPolicies) {
    if (name == row.name) return row.make();
  }
  return nullptr;
}

std::vector<std::string> PolicyNames() {
  std::vector<std::string> names;
  for (const PolicyRow& row : kPolicies) names.emplace_back(row.name);
  return names;
}

}  // namespace spillway::trace_sim
