// SPDX-License-Identifier: Apache-2.0
//
// ScratchDirTest: a gtest fixture with a fresh directory `dir_` under /tmp for each test,
// removed (with everything in it) after the test; removal failing fails the test.
#ifndef SPILLWAY_TESTS_COMMON_SCRATCH_DIR_TEST_H_
#define SPILLWAY_TESTS_COMMON_SCRATCH_DIR_TEST_H_

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace spw_test {

class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/spillway-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    const std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  std::string dir_;
};

}  // namespace spw_test

#endif  // SPILLWAY_TESTS_COMMON_SCRATCH_DIR_TEST_H_
