#include "agent/build/dockerignore.h"

#include <gtest/gtest.h>

#include "agent/build/error.h"

namespace berth::agent::build {
namespace {

using Strings = std::vector<std::string>;

bool excluded(const Strings& patterns, std::string_view path) {
  return IgnoreMatcher(patterns).excluded(path);
}

std::string error_of(const Strings& patterns) {
  try {
    IgnoreMatcher matcher(patterns);
  } catch (const BuildError& e) {
    return e.what();
  }
  return "";
}

TEST(DockerignoreTest, ReadsAndCleansPatterns) {
  const char* file =
      "\xEF\xBB\xBF# comment\r\n"
      "node_modules/\r\n"
      "\n"
      "   \n"
      "/build\n"
      "./docs//api/../guide/\n"
      "  *.log  \n"
      "! /keep/me.log\n"
      "  # not a comment: only a leading # is\n"
      "!\n";
  EXPECT_EQ(read_dockerignore(file),
            Strings({"node_modules", "build", "docs/guide", "*.log", "!keep/me.log",
                     "# not a comment: only a leading # is", "!"}));
  EXPECT_TRUE(read_dockerignore("").empty());
}

TEST(DockerignoreTest, StarStaysWithinOneDirectory) {
  EXPECT_TRUE(excluded({"*.go"}, "main.go"));
  EXPECT_FALSE(excluded({"*.go"}, "cmd/main.go"));
  EXPECT_TRUE(excluded({"*/*.go"}, "cmd/main.go"));
  EXPECT_TRUE(excluded({"a*/b"}, "abc/b"));
  EXPECT_FALSE(excluded({"a*/b"}, "a/c/b"));
  EXPECT_TRUE(excluded({"*"}, "anything/below/too"));  // "*" matches the top directory
  EXPECT_TRUE(excluded({".*"}, ".git"));
  EXPECT_FALSE(excluded({".*"}, "git"));
}

TEST(DockerignoreTest, QuestionMarkIsOneCharButSlash) {
  EXPECT_TRUE(excluded({"abc?def"}, "abcZdef"));
  EXPECT_FALSE(excluded({"abc?def"}, "abcdef"));
  EXPECT_FALSE(excluded({"a?b"}, "a/b"));
  EXPECT_TRUE(excluded({"a?b"},
                       "a\xE2\x98\xBA"
                       "b"));  // one rune, three bytes
}

TEST(DockerignoreTest, DoubleStarMatchesAnyDepth) {
  EXPECT_TRUE(excluded({"**/*.log"}, "a.log"));
  EXPECT_TRUE(excluded({"**/*.log"}, "x/y/z/a.log"));
  EXPECT_FALSE(excluded({"**/*.log"}, "x/y/a.txt"));
  EXPECT_TRUE(excluded({"a/**/b"}, "a/b"));
  EXPECT_TRUE(excluded({"a/**/b"}, "a/x/y/b"));
  EXPECT_FALSE(excluded({"a/**/b"}, "a/x/yb"));
  EXPECT_TRUE(excluded({"dir/**"}, "dir/sub/file"));
  EXPECT_FALSE(excluded({"dir/**"}, "dir"));
  EXPECT_TRUE(excluded({"**"}, "everything/at/all"));
  EXPECT_TRUE(excluded({"**/foo"}, "foo"));
  EXPECT_TRUE(excluded({"**/foo"}, "a/foo"));
  EXPECT_FALSE(excluded({"**/foo"}, "afoo"));
  EXPECT_TRUE(excluded({"a**/*.txt"}, "a/dir/dir/file.txt"));
  EXPECT_TRUE(excluded({"**/**/*.txt"}, "file.txt"));
}

TEST(DockerignoreTest, CharacterClasses) {
  EXPECT_TRUE(excluded({"a[b-d]e"}, "ace"));
  EXPECT_FALSE(excluded({"a[b-d]e"}, "aae"));
  EXPECT_TRUE(excluded({"a[^b-d]e"}, "aze"));
  EXPECT_FALSE(excluded({"a[^b-d]e"}, "ace"));
  EXPECT_TRUE(excluded({"[\\]a]"}, "]"));
  EXPECT_TRUE(excluded({"[x\\-]"}, "-"));
  EXPECT_TRUE(excluded({"[*?]x"}, "*x"));                // wildcards are literal inside a class
  EXPECT_TRUE(excluded({"[a-\xCE\xB6]*"}, "\xCE\xB1"));  // ranges are over code points
}

TEST(DockerignoreTest, EscapesAndRegexpCharsAreLiteral) {
  EXPECT_TRUE(excluded({"a\\*b"}, "a*b"));
  EXPECT_FALSE(excluded({"a\\*b"}, "axb"));
  EXPECT_TRUE(excluded({"a.|)$(}+{bc"}, "a.|)$(}+{bc"));
  EXPECT_FALSE(excluded({"abc.def"}, "abcXdef"));
  EXPECT_TRUE(excluded({"dist/*.whl"}, "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"));
}

TEST(DockerignoreTest, RejectsMalformedPatterns) {
  for (const char* bad : {"[", "a[", "[^", "[]a]", "[-]", "[x-]", "[a-b-c]", "a\\", "[z-a]"}) {
    EXPECT_EQ(error_of({bad}), "syntax error in pattern") << bad;
  }
  EXPECT_EQ(error_of({"ok", "!"}), "illegal exclusion pattern: \"!\"");
  EXPECT_EQ(error_of({"  ", "ok"}), "");
}

TEST(DockerignoreTest, ExclusionsFollowTheirOrder) {
  EXPECT_FALSE(excluded({"*.md", "!README.md"}, "README.md"));
  EXPECT_TRUE(excluded({"*.md", "!README.md"}, "CHANGES.md"));
  EXPECT_TRUE(excluded({"!README.md", "*.md"}, "README.md"));  // the last matching line wins
  EXPECT_TRUE(excluded({"*.md", "!README.md", "README*"}, "README.md"));
}

TEST(DockerignoreTest, ExcludingADirectoryExcludesWhatIsBelow) {
  const Strings patterns = {"docs", "!docs/README.md", "build/"};
  IgnoreMatcher m(patterns);
  EXPECT_TRUE(m.excluded("docs"));
  EXPECT_TRUE(m.excluded("docs/guide/index.md"));
  EXPECT_FALSE(m.excluded("docs/README.md"));
  EXPECT_TRUE(m.excluded("build/out/app"));
  EXPECT_FALSE(m.excluded("docsrc/x"));
  EXPECT_FALSE(m.excluded("src/docs"));
}

TEST(DockerignoreTest, TellsTheWalkerWhenToDescendIntoAnExcludedDirectory) {
  IgnoreMatcher m(
      {"docs", "!docs/README.md", "vendor", "node_modules", "!**/keep.txt", "*", "!src/*/main.go"});
  EXPECT_TRUE(m.may_include_below("docs"));
  EXPECT_TRUE(m.may_include_below("vendor"));  // "!**/keep.txt" may match anywhere
  IgnoreMatcher plain({"docs", "!docs/README.md", "vendor", "*", "!src/*/main.go"});
  EXPECT_TRUE(plain.may_include_below("docs"));
  EXPECT_FALSE(plain.may_include_below("vendor"));
  EXPECT_TRUE(plain.may_include_below("src"));
  EXPECT_TRUE(plain.may_include_below("src/cmd"));
  EXPECT_FALSE(plain.may_include_below("src/cmd/deep"));
  EXPECT_FALSE(plain.may_include_below("lib"));
  EXPECT_FALSE(plain.excluded("src/cmd/main.go"));
  EXPECT_TRUE(plain.excluded("src/cmd/other.go"));
  EXPECT_FALSE(IgnoreMatcher({"node_modules"}).may_include_below("node_modules"));
  EXPECT_TRUE(IgnoreMatcher({"a", "!a/b/**"}).may_include_below("a/b/c"));
}

TEST(DockerignoreTest, PathsAreCleanedAndTheRootIsNeverExcluded) {
  IgnoreMatcher m({"**", "!keep"});
  EXPECT_FALSE(m.excluded("."));
  EXPECT_FALSE(m.excluded(""));
  EXPECT_TRUE(m.excluded("./a//b/"));
  EXPECT_FALSE(m.excluded("/keep"));
  EXPECT_FALSE(m.excluded("keep/inside"));
  EXPECT_TRUE(m.has_exceptions());
  EXPECT_FALSE(IgnoreMatcher({}).has_exceptions());
  EXPECT_TRUE(IgnoreMatcher({" ", ""}).empty());
}

TEST(DockerignoreTest, KeepsTheDockerfileAndDockerignore) {
  EXPECT_EQ(keep_build_files({"*"}, "Dockerfile"), Strings({"*", "!.dockerignore", "!Dockerfile"}));
  EXPECT_EQ(keep_build_files({"*.go"}, "Dockerfile"), Strings({"*.go"}));
  EXPECT_EQ(keep_build_files({"build"}, "./build/Dockerfile.ci"),
            Strings({"build", "!build/Dockerfile.ci"}));
  IgnoreMatcher sent(keep_build_files({"**", "!src"}, "Dockerfile"));
  EXPECT_FALSE(sent.excluded("Dockerfile"));
  EXPECT_FALSE(sent.excluded(".dockerignore"));
  EXPECT_TRUE(sent.excluded("README.md"));
}

TEST(DockerignoreTest, NamesTheBuildFilesDockerdDropsFromTheContext) {
  EXPECT_EQ(excluded_build_files(IgnoreMatcher({".dockerignore", "Dockerfile*"}), "Dockerfile.dev"),
            Strings({".dockerignore", "Dockerfile.dev"}));
  EXPECT_TRUE(excluded_build_files(IgnoreMatcher({"*.md"}), "Dockerfile").empty());
}

TEST(DockerignoreTest, TheRootMayAlwaysHoldExceptions) {
  IgnoreMatcher m({"*", "!app"});
  EXPECT_TRUE(m.may_include_below("."));
  EXPECT_FALSE(m.excluded("app/main.c"));
  EXPECT_TRUE(m.excluded("lib/x.c"));
  EXPECT_FALSE(m.may_include_below("lib"));
}

}  // namespace
}  // namespace berth::agent::build
