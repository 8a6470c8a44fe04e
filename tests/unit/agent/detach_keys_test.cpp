#include "agent/api/detach_keys.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace berth::agent::api {
namespace {

TEST(DetachKeys, ParsesDockerdsNotation) {
  EXPECT_EQ(parse_detach_keys("ctrl-p,ctrl-q"), std::string("\x10\x11"));
  EXPECT_EQ(parse_detach_keys("a,ctrl-@,ctrl-["), std::string("a\0\x1b", 3));
  EXPECT_EQ(parse_detach_keys("ctrl-\\,ctrl-],ctrl-^,ctrl-_"), std::string("\x1c\x1d\x1e\x1f"));
  EXPECT_EQ(parse_detach_keys("x"), "x");
}

TEST(DetachKeys, RejectsWhatDockerdRejects) {
  for (const char* bad : {"", "ctrl-", "ctrl-1", "ctrl-P", "ab", "ctrl-p,", "shift-a", "a,,b"})
    EXPECT_THROW(parse_detach_keys(bad), std::invalid_argument) << bad;
}

TEST(DetachKeys, TheWholeSequenceDetachesAndNothingOfItPasses) {
  DetachFilter f(parse_detach_keys("ctrl-p,ctrl-q"));
  std::string out;
  EXPECT_TRUE(f.feed("ls\x10", out));
  EXPECT_EQ(out, "ls");  // the prefix is held back
  EXPECT_FALSE(f.feed("\x11" "after", out));
  EXPECT_EQ(out, "ls");
}

TEST(DetachKeys, ABrokenPrefixPassesThroughInOrder) {
  DetachFilter f(parse_detach_keys("ctrl-p,ctrl-q"));
  std::string out;
  EXPECT_TRUE(f.feed("\x10x", out));
  EXPECT_EQ(out, "\x10x");
  out.clear();
  // ctrl-p twice: the first goes through, the second may still start the sequence.
  EXPECT_TRUE(f.feed("\x10\x10", out));
  EXPECT_EQ(out, "\x10");
  EXPECT_FALSE(f.feed("\x11", out));
}

TEST(DetachKeys, TheSequenceMaySpanReads) {
  DetachFilter f(parse_detach_keys("a,b,c"));
  std::string out;
  EXPECT_TRUE(f.feed("xa", out));
  EXPECT_TRUE(f.feed("b", out));
  EXPECT_FALSE(f.feed("c", out));
  EXPECT_EQ(out, "x");
}

}  // namespace
}  // namespace berth::agent::api
