#include "agent/build/expand.h"

#include <gtest/gtest.h>

#include "agent/build/error.h"

namespace berth::agent::build {
namespace {

using Strings = std::vector<std::string>;

class ExpandTest : public ::testing::Test {
 protected:
  VarMap vars{{{"HOME", "/root"},
               {"EMPTY", ""},
               {"TWO", "a b"},
               {"FILE", "dir/name.tar.gz"},
               {"KOREAN", "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4"}}};

  std::string word(std::string_view text, ExpandOptions options = {}) {
    return expand_word(text, vars, options);
  }
  Strings words(std::string_view text, ExpandOptions options = {}) {
    return expand_words(text, vars, options);
  }
  std::string error(std::string_view text) {
    try {
      expand_word(text, vars);
    } catch (const BuildError& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(ExpandTest, SubstitutesVariables) {
  EXPECT_EQ(word("$HOME/x"), "/root/x");
  EXPECT_EQ(word("${HOME}x"), "/rootx");
  EXPECT_EQ(word("$HOMEx"), "");  // the name runs on
  EXPECT_EQ(word("a$UNSET-b"), "a-b");
  EXPECT_EQ(word("$KOREAN"), "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4");
  EXPECT_EQ(word("cost: 5$"), "cost: 5$");
  EXPECT_EQ(word("$ {HOME}"), "$ {HOME}");
  EXPECT_EQ(word("$1x $@"), "x ");  // positional and special parameters are just unset names
}

TEST_F(ExpandTest, DefaultAndAlternativeValues) {
  EXPECT_EQ(word("${HOME:-d}"), "/root");
  EXPECT_EQ(word("${EMPTY:-d}"), "d");
  EXPECT_EQ(word("${UNSET:-d}"), "d");
  EXPECT_EQ(word("${EMPTY-d}"), "");  // without ':' only unset counts
  EXPECT_EQ(word("${UNSET-d}"), "d");
  EXPECT_EQ(word("${HOME:+alt}"), "alt");
  EXPECT_EQ(word("${EMPTY:+alt}"), "");
  EXPECT_EQ(word("${EMPTY+alt}"), "alt");
  EXPECT_EQ(word("${UNSET+alt}"), "");
  EXPECT_EQ(word("${UNSET:-${EMPTY:-${HOME}}}"), "/root");
  EXPECT_EQ(word("${UNSET:-\"a }\"}"), "a }");
  EXPECT_EQ(word("${UNSET:-a\\}b}"), "a}b");
}

TEST_F(ExpandTest, RequiredValues) {
  EXPECT_EQ(word("${HOME:?}"), "/root");
  EXPECT_EQ(word("${EMPTY?}"), "");
  EXPECT_EQ(error("${UNSET:?}"),
            "failed to process \"${UNSET:?}\": UNSET: is not allowed to be unset");
  EXPECT_EQ(error("${EMPTY:?}"),
            "failed to process \"${EMPTY:?}\": EMPTY: is not allowed to be empty");
  EXPECT_EQ(error("${UNSET?}"),
            "failed to process \"${UNSET?}\": UNSET: is not allowed to be unset");
  EXPECT_EQ(error("x${EMPTY:?please set EMPTY}"),
            "failed to process \"x${EMPTY:?please set EMPTY}\": EMPTY: please set EMPTY");
}

TEST_F(ExpandTest, SingleQuotesKeepEverything) {
  EXPECT_EQ(word("'$HOME \\n'"), "$HOME \\n");
  EXPECT_EQ(word("a'b c'd"), "ab cd");
  EXPECT_EQ(words("'a b' c"), Strings({"a b", "c"}));
}

TEST_F(ExpandTest, DoubleQuotesExpandButKeepWordsTogether) {
  EXPECT_EQ(word("\"$HOME is home\""), "/root is home");
  EXPECT_EQ(word("\"it's\""), "it's");
  // Inside "", the escape only escapes " $ and itself.
  EXPECT_EQ(word("\"a\\\"b \\$HOME \\\\ \\n\""), "a\"b $HOME \\ \\n");
  EXPECT_EQ(words("\"$TWO\" $TWO"), Strings({"a b", "a", "b"}));
}

TEST_F(ExpandTest, EscapesOutsideQuotes) {
  EXPECT_EQ(word("\\$HOME"), "$HOME");
  EXPECT_EQ(word("a\\ b"), "a b");
  EXPECT_EQ(words("a\\ b c"), Strings({"a b", "c"}));
  EXPECT_EQ(word("\\'x"), "'x");
  EXPECT_EQ(word("trailing\\"), "trailing");
  ExpandOptions backtick;
  backtick.escape = '`';
  EXPECT_EQ(word("c:\\dir `$HOME", backtick), "c:\\dir $HOME");
}

TEST_F(ExpandTest, SplitsWordsAfterSubstitution) {
  EXPECT_EQ(words("  x   $TWO\t\"\" ''  y  "), Strings({"x", "a", "b", "y"}));
  EXPECT_EQ(words("pre$TWO"), Strings({"prea", "b"}));
  EXPECT_EQ(words("$EMPTY"), Strings{});
  EXPECT_EQ(words(""), Strings{});
}

TEST_F(ExpandTest, ReportsSyntaxErrors) {
  EXPECT_EQ(error("'open"),
            "failed to process \"'open\": unexpected end of statement while looking for matching "
            "single-quote");
  EXPECT_EQ(
      error("\"open"),
      "failed to process \"\\\"open\": unexpected end of statement while looking for matching "
      "double-quote");
  EXPECT_EQ(error("${HOME"), "failed to process \"${HOME\": syntax error: missing '}'");
  EXPECT_EQ(error("${HOME:-x"), "failed to process \"${HOME:-x\": syntax error: missing '}'");
  EXPECT_EQ(error("${}"), "failed to process \"${}\": syntax error: bad substitution");
  EXPECT_EQ(error("${:x}"), "failed to process \"${:x}\": syntax error: bad substitution");
  EXPECT_EQ(error("${HOME!}"),
            "failed to process \"${HOME!}\": unsupported modifier (!) in substitution");
  EXPECT_EQ(error("${HOME:=x}"),
            "failed to process \"${HOME:=x}\": unsupported modifier (:=) in substitution");
  EXPECT_EQ(error("${HOME:#x}"),
            "failed to process \"${HOME:#x}\": unsupported modifier (:#) in substitution");
}

TEST_F(ExpandTest, RemovesPrefixesAndSuffixes) {
  EXPECT_EQ(word("${FILE#*/}"), "name.tar.gz");
  EXPECT_EQ(word("${FILE#*.}"), "tar.gz");
  EXPECT_EQ(word("${FILE##*.}"), "gz");
  EXPECT_EQ(word("${FILE%.*}"), "dir/name.tar");
  EXPECT_EQ(word("${FILE%%.*}"), "dir/name");
  EXPECT_EQ(word("${FILE#nomatch}"), "dir/name.tar.gz");
  EXPECT_EQ(word("${FILE%n?me*}"), "dir/");
  EXPECT_EQ(word("${UNSET#x}"), "");
  EXPECT_EQ(error("${FILE#\\a}"),
            "failed to process \"${FILE#\\\\a}\": invalid pattern (\\a) in substitution: "
            "invalid escape '\\a'");
}

TEST_F(ExpandTest, ReplacesMatches) {
  EXPECT_EQ(word("${FILE/./-}"), "dir/name-tar.gz");
  EXPECT_EQ(word("${FILE//./-}"), "dir/name-tar-gz");
  EXPECT_EQ(word("${FILE/n*e/X}"), "dir/X.tar.gz");  // greedy: up to the last "e"
  EXPECT_EQ(word("${TWO// /_}"), "a_b");
  EXPECT_EQ(word("${FILE/\\/\\//x}"), "dir/name.tar.gz");
  EXPECT_EQ(error("${FILE/x"), "failed to process \"${FILE/x\": syntax error: missing '/' in ${}");
}

TEST_F(ExpandTest, RawOptionsKeepWhatTheParserNeeds) {
  ExpandOptions keep;
  keep.keep_quotes = true;
  keep.keep_escapes = true;
  keep.keep_unset = true;
  EXPECT_EQ(word("'a' \"$HOME\" \\x $UNSET ${UNSET:-d} ${UNSET}", keep),
            "'a' \"/root\" \\x $UNSET ${UNSET:-d} ${UNSET}");
  ExpandOptions raw;
  raw.process_quotes = false;
  EXPECT_EQ(word("echo '$HOME' \"it's\"", raw), "echo '/root' \"it's\"");
}

TEST_F(ExpandTest, LooksUpEnvLists) {
  EnvList env({"PATH=/bin", "A=1", "A=2", "FLAG", "EQ=a=b"});
  EXPECT_EQ(expand_word("$PATH $A [$FLAG] $EQ ${FLAG-unset}", env), "/bin 2 [] a=b ");
  EXPECT_EQ(env.get("FLAG"), "");
  EXPECT_FALSE(env.get("NOPE").has_value());
}

TEST_F(ExpandTest, BoundsNesting) {
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "${A:-";
  EXPECT_NE(error(deep + "x"), "");
  std::string quotes;
  for (int i = 0; i < 5000; ++i) quotes += "\"${A:-";
  EXPECT_NE(error(quotes), "");
}

}  // namespace
}  // namespace berth::agent::build
