// SPDX-License-Identifier: Apache-2.0
//
// Runs a program as a child process with exactly the environment given, and captures its
// exit status, stdout and stderr (through files in a scratch folder, so that a chatty
// child never blocks on a full pipe).
//
// REQUIRES: `scratch_dir` exists and is writable; argv[0] is a path (no PATH search).
// Thread safety: concurrent calls need distinct scratch folders.
#ifndef SPILLWAY_TESTS_COMMON_PROCESS_H_
#define SPILLWAY_TESTS_COMMON_PROCESS_H_

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace spw_test {

struct ProcessResult {
  int status = -1;  // exit status, 128 + signal number, or -1 when it could not start
  std::string out;
  std::string err;
};

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The suites run once more with SPW_TEST_POLICY=lru in ctest's environment (the
// "*.UnderLruPolicy" tests; the default is learned): every Spillway process then runs under
// that policy, unless its test chose one.
inline void ApplyPolicyUnderTest(std::map<std::string, std::string>* env) {
  if (const char* policy = std::getenv("SPW_TEST_POLICY")) env->emplace("SPILLWAY_POLICY", policy);
}

inline ProcessResult RunProcess(std::vector<std::string> argv,
                                const std::map<std::string, std::string>& env,
                                const std::string& scratch_dir) {
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  for (auto& s : argv) args.push_back(s.data());
  args.push_back(nullptr);
  const std::string out_path = scratch_dir + "/stdout", err_path = scratch_dir + "/stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  pid_t pid;
  ProcessResult result;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return result;
  int status = 0;
  waitpid(pid, &status, 0);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = ReadWholeFile(out_path);
  result.err = ReadWholeFile(err_path);
  return result;
}

}  // namespace spw_test

#endif  // SPILLWAY_TESTS_COMMON_PROCESS_H_
