#include "agent/build/parser.h"

#include <gtest/gtest.h>

#include "agent/build/error.h"

namespace berth::agent::build {
namespace {

using Strings = std::vector<std::string>;

// The message of the BuildError `fn` throws ("" when it does not throw).
template <class Fn>
std::string error_of(Fn fn, int* line = nullptr) {
  try {
    fn();
  } catch (const BuildError& e) {
    if (line) *line = e.line();
    return e.what();
  }
  return "";
}

TEST(ParserTest, SplitsInstructionsAndKeepsTheirLines) {
  auto df = parse_dockerfile("FROM busybox\n\n# say hi\nrun echo hi\nCMD [\"sh\"]\n");
  ASSERT_EQ(df.nodes.size(), 3u);
  EXPECT_EQ(df.nodes[0].keyword, "FROM");
  EXPECT_EQ(df.nodes[0].args, Strings({"busybox"}));
  EXPECT_EQ(df.nodes[1].keyword, "run");  // as written; instructions.h upper-cases
  EXPECT_EQ(df.nodes[1].args, Strings({"echo hi"}));
  EXPECT_EQ(df.nodes[1].start_line, 4);
  EXPECT_EQ(df.nodes[2].start_line, 5);
  EXPECT_TRUE(df.nodes[2].json);
  EXPECT_TRUE(df.warnings.empty());
}

TEST(ParserTest, JoinsContinuationLines) {
  auto df = parse_dockerfile(
      "FROM x\nRUN apt-get update && \\\n    apt-get install -y \\\n  curl\nUSER me\n");
  ASSERT_EQ(df.nodes.size(), 3u);
  const Node& run = df.nodes[1];
  EXPECT_EQ(run.args, Strings({"apt-get update &&     apt-get install -y   curl"}));
  EXPECT_EQ(run.original, "RUN apt-get update &&     apt-get install -y   curl");
  EXPECT_EQ(run.start_line, 2);
  EXPECT_EQ(run.end_line, 4);
  EXPECT_EQ(df.nodes[2].start_line, 5);
}

TEST(ParserTest, DropsCommentLinesInsideAContinuation) {
  auto df = parse_dockerfile("FROM x\nRUN a \\\n# explain b\n  # and c\n b\n");
  ASSERT_EQ(df.nodes.size(), 2u);
  EXPECT_EQ(df.nodes[1].args, Strings({"a  b"}));
  EXPECT_EQ(df.nodes[1].end_line, 5);
}

TEST(ParserTest, WarnsAboutEmptyContinuationLines) {
  auto df = parse_dockerfile("FROM x\nRUN a \\\n\n   \nb\n");
  ASSERT_EQ(df.nodes.size(), 2u);
  EXPECT_EQ(df.nodes[1].args, Strings({"a b"}));
  ASSERT_EQ(df.warnings.size(), 1u);
  EXPECT_EQ(df.warnings[0], "Empty continuation line found in: RUN a b");
}

TEST(ParserTest, HashIsACommentOnlyAtTheStartOfALine) {
  auto df = parse_dockerfile("FROM x\n   # indented comment\nRUN echo a # b\n");
  ASSERT_EQ(df.nodes.size(), 2u);
  EXPECT_EQ(df.nodes[1].args, Strings({"echo a # b"}));
}

TEST(ParserTest, AnEscapedEscapeAtTheEndDoesNotContinue) {
  auto df = parse_dockerfile("FROM x\nRUN echo a\\\\\nRUN echo b\n");
  ASSERT_EQ(df.nodes.size(), 3u);
  EXPECT_EQ(df.nodes[1].args, Strings({"echo a\\\\"}));
}

TEST(ParserTest, EscapeDirectiveSwitchesToBacktick) {
  auto df = parse_dockerfile("# escape=`\nFROM windows\nRUN dir `\n  c:\\ \nRUN a\\\n");
  EXPECT_EQ(df.directives.escape, '`');
  ASSERT_EQ(df.nodes.size(), 3u);
  EXPECT_EQ(df.nodes[1].args, Strings({"dir   c:\\"}));
  EXPECT_EQ(df.nodes[2].args, Strings({"a\\"}));  // backslash is an ordinary char now
}

TEST(ParserTest, DirectivesAreCaseInsensitiveAndMayHaveSpaces) {
  auto df = parse_dockerfile("#  ESCAPE = `\n# Syntax=docker/dockerfile:1\nFROM x\n");
  EXPECT_EQ(df.directives.escape, '`');
  EXPECT_EQ(df.directives.syntax, "docker/dockerfile:1");
  EXPECT_EQ(df.directives.syntax_line, 2);
}

TEST(ParserTest, DirectivesOnlyCountBeforeAnythingElse) {
  // After a comment, an instruction or a blank line, `# escape=` is a comment.
  for (const char* text : {"# hello\n# escape=`\nFROM x\n", "FROM x\n# escape=`\nRUN a\n",
                           "\n# escape=`\nFROM x\n", "# unknown=1\n# escape=`\nFROM x\n"}) {
    auto df = parse_dockerfile(text);
    EXPECT_EQ(df.directives.escape, '\\') << text;
  }
}

TEST(ParserTest, ADirectiveMayAppearOnlyOnce) {
  int line = 0;
  EXPECT_EQ(error_of([] { parse_dockerfile("# escape=`\n# escape=\\\nFROM x\n"); }, &line),
            "failed to parse Dockerfile: only one escape parser directive can be used");
  EXPECT_EQ(line, 2);
  EXPECT_EQ(error_of([] { parse_dockerfile("# escape=x\nFROM x\n"); }),
            "failed to parse Dockerfile: invalid escape token 'x' does not match ` or \\");
}

TEST(ParserTest, SyntaxMayOnlyNameTheBuiltInFrontend) {
  for (const char* ok :
       {"docker/dockerfile:1", "docker/dockerfile:1.7", "docker/dockerfile",
        "docker.io/docker/dockerfile:1.4.3",
        "docker/"
        "dockerfile:1@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021"}) {
    std::string text = std::string("# syntax=") + ok + "\nFROM x\n";
    EXPECT_EQ(parse_dockerfile(text).directives.syntax, ok);
  }
  int line = 0;
  const std::string message = error_of(
      [] { parse_dockerfile("# syntax=tonistiigi/dockerfile:runmount\nFROM x\n"); }, &line);
  EXPECT_NE(message.find("\"tonistiigi/dockerfile:runmount\""), std::string::npos) << message;
  EXPECT_NE(message.find("berth-agent only has the built-in Dockerfile frontend"),
            std::string::npos);
  EXPECT_EQ(line, 1);
}

TEST(ParserTest, EmptyAndInstructionlessFilesAreErrors) {
  EXPECT_EQ(error_of([] { parse_dockerfile(""); }), "the Dockerfile (Dockerfile) cannot be empty");
  EXPECT_EQ(error_of([] { parse_dockerfile("", "build/Dockerfile.dev"); }),
            "the Dockerfile (build/Dockerfile.dev) cannot be empty");
  EXPECT_EQ(error_of([] { parse_dockerfile("# only a comment\n\n   \n"); }),
            "failed to parse Dockerfile: file with no instructions");
}

TEST(ParserTest, StripsTheByteOrderMarkAndCarriageReturns) {
  auto df = parse_dockerfile("\xEF\xBB\xBF# escape=`\r\nFROM x\r\nRUN a `\r\n b\r\n");
  EXPECT_EQ(df.directives.escape, '`');
  ASSERT_EQ(df.nodes.size(), 2u);
  EXPECT_EQ(df.nodes[0].args, Strings({"x"}));
  EXPECT_EQ(df.nodes[1].args, Strings({"a  b"}));
}

TEST(ParserTest, ExtractsFlagsBeforeTheArguments) {
  auto df = parse_dockerfile(
      "FROM --platform=linux/amd64 x AS b\n"
      "COPY --from=build --chown=\"app user\" --link src dst\n"
      "RUN --mount=type=cache,target=/root/.cache -- --not-a-flag\n"
      "COPY a --chown=1 b\n");
  EXPECT_EQ(df.nodes[0].flags, Strings({"--platform=linux/amd64"}));
  EXPECT_EQ(df.nodes[0].args, Strings({"x", "AS", "b"}));
  EXPECT_EQ(df.nodes[1].flags, Strings({"--from=build", "--chown=app user", "--link"}));
  EXPECT_EQ(df.nodes[1].args, Strings({"src", "dst"}));
  EXPECT_EQ(df.nodes[2].flags, Strings({"--mount=type=cache,target=/root/.cache"}));
  EXPECT_EQ(df.nodes[2].args, Strings({"--not-a-flag"}));
  // Flags only come first.
  EXPECT_TRUE(df.nodes[3].flags.empty());
  EXPECT_EQ(df.nodes[3].args, Strings({"a", "--chown=1", "b"}));
}

TEST(ParserTest, TellsExecFormFromShellForm) {
  auto df = parse_dockerfile(
      "FROM x\nCMD [\"echo\", \"a b\", \"\\u00e9\"]\nCMD [\"echo\"] trailing\nCMD []\nENTRYPOINT "
      "[not json\n"
      "COPY [\"a b\", \"/c d/\"]\nCOPY a  b\n");
  EXPECT_TRUE(df.nodes[1].json);
  EXPECT_EQ(df.nodes[1].args, Strings({"echo", "a b", "\xC3\xA9"}));
  EXPECT_FALSE(df.nodes[2].json);
  EXPECT_EQ(df.nodes[2].args, Strings({"[\"echo\"] trailing"}));
  EXPECT_TRUE(df.nodes[3].json);
  EXPECT_TRUE(df.nodes[3].args.empty());
  EXPECT_FALSE(df.nodes[4].json);
  EXPECT_EQ(df.nodes[5].args, Strings({"a b", "/c d/"}));
  EXPECT_EQ(df.nodes[6].args, Strings({"a", "b"}));
}

TEST(ParserTest, JsonArraysMustHoldOnlyStrings) {
  int line = 0;
  EXPECT_EQ(error_of([] { parse_dockerfile("FROM x\nRUN [\"a\", 1]\n"); }, &line),
            "failed to parse Dockerfile: when using JSON array syntax, arrays must be comprised of "
            "strings only");
  EXPECT_EQ(line, 2);
  EXPECT_NE(error_of([] { parse_dockerfile("FROM x\nCMD [[\"a\"]]\n"); }), "");
}

TEST(ParserTest, SplitsEnvAndLabelIntoKeysAndValues) {
  auto df = parse_dockerfile(
      "FROM x\nENV A=1 B=\"two words\" C=a\\ b\nENV LEGACY   the  whole rest\nLABEL \"com.x\"=y\n");
  EXPECT_EQ(df.nodes[1].args, Strings({"A", "1", "B", "\"two words\"", "C", "a\\ b"}));
  EXPECT_EQ(df.nodes[2].args, Strings({"LEGACY", "the  whole rest"}));
  EXPECT_EQ(df.nodes[3].args, Strings({"\"com.x\"", "y"}));
  EXPECT_EQ(error_of([] { parse_dockerfile("FROM x\nENV ONLYKEY\n"); }),
            "failed to parse Dockerfile: ENV must have two arguments");
  EXPECT_EQ(
      error_of([] { parse_dockerfile("FROM x\nLABEL a=1 b\n"); }),
      "failed to parse Dockerfile: Syntax error - can't find = in \"b\". Must be of the form: "
      "name=value");
}

TEST(ParserTest, KeepsArgWordsWithTheirQuotes) {
  auto df = parse_dockerfile("ARG a b=2 c=\"x y\"\nFROM x\n");
  EXPECT_EQ(df.nodes[0].args, Strings({"a", "b=2", "c=\"x y\""}));
}

TEST(ParserTest, ReadsHeredocBodiesVerbatim) {
  auto df =
      parse_dockerfile("FROM x\nRUN <<EOF\n# not a comment\necho \\\n  a\nEOF\nRUN echo after\n");
  ASSERT_EQ(df.nodes.size(), 3u);
  const Node& run = df.nodes[1];
  EXPECT_EQ(run.args, Strings({"<<EOF"}));
  ASSERT_EQ(run.heredocs.size(), 1u);
  EXPECT_EQ(run.heredocs[0].name, "EOF");
  EXPECT_EQ(run.heredocs[0].content, "# not a comment\necho \\\n  a\n");
  EXPECT_TRUE(run.heredocs[0].expand);
  EXPECT_EQ(run.start_line, 2);
  EXPECT_EQ(run.end_line, 6);
  EXPECT_EQ(df.nodes[2].start_line, 7);
}

TEST(ParserTest, DashHeredocsMatchTabIndentedDelimiters) {
  auto df = parse_dockerfile("FROM x\nRUN <<-EOT\n\techo a\n\t\techo b\n\tEOT\n");
  const Heredoc& doc = df.nodes[1].heredocs.at(0);
  EXPECT_TRUE(doc.chomp);
  EXPECT_EQ(doc.content, "\techo a\n\t\techo b\n");  // kept as written
  EXPECT_EQ(doc.body(), "echo a\necho b\n");
}

TEST(ParserTest, QuotedDelimitersTurnExpansionOff) {
  auto df = parse_dockerfile(
      "FROM x\nRUN <<'A'\n$HOME\nA\nRUN <<\"B\"\nB\nRUN <<C\"C\"\nCC\nRUN <<D\\'D\nD'D\n");
  EXPECT_FALSE(df.nodes[1].heredocs.at(0).expand);
  EXPECT_EQ(df.nodes[1].heredocs.at(0).name, "A");
  EXPECT_FALSE(df.nodes[2].heredocs.at(0).expand);
  EXPECT_EQ(df.nodes[3].heredocs.at(0).name, "CC");
  EXPECT_FALSE(df.nodes[3].heredocs.at(0).expand);
  // An escaped quote is part of the name and does not count as quoting.
  EXPECT_EQ(df.nodes[4].heredocs.at(0).name, "D'D");
  EXPECT_TRUE(df.nodes[4].heredocs.at(0).expand);
}

TEST(ParserTest, ReadsSeveralHeredocsInOrder) {
  auto df =
      parse_dockerfile("FROM x\nCOPY <<A 3<<B /dest/\nB\nA\nA\nB\nRUN <<  SPACED cat\nSPACED\n");
  const auto& docs = df.nodes[1].heredocs;
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].name, "A");
  EXPECT_EQ(docs[0].content, "B\n");
  EXPECT_EQ(docs[1].name, "B");
  EXPECT_EQ(docs[1].fd, 3u);
  EXPECT_EQ(docs[1].content, "A\n");
  EXPECT_EQ(df.nodes[1].args, Strings({"<<A", "3<<B", "/dest/"}));
  EXPECT_EQ(df.nodes[2].heredocs.at(0).name, "SPACED");
}

TEST(ParserTest, HeredocsOnlyForRunCopyAddOutsideJson) {
  auto df = parse_dockerfile(
      "FROM x\nUSER <<NOPE\nRUN [\"<<EOF\"]\nRUN echo \"<<QUOTED\"\nONBUILD COPY <<F "
      "/f\nbody\nF\n");
  ASSERT_EQ(df.nodes.size(), 5u);
  EXPECT_TRUE(df.nodes[1].heredocs.empty());
  EXPECT_TRUE(df.nodes[2].heredocs.empty());
  EXPECT_TRUE(df.nodes[3].heredocs.empty());
  ASSERT_EQ(df.nodes[4].heredocs.size(), 1u);
  EXPECT_EQ(df.nodes[4].heredocs[0].content, "body\n");
}

TEST(ParserTest, AnUnterminatedHeredocIsAnError) {
  int line = 0;
  EXPECT_EQ(error_of([] { parse_dockerfile("FROM x\nRUN <<EOF\necho a\n"); }, &line),
            "failed to parse Dockerfile: unterminated heredoc");
  EXPECT_EQ(line, 2);
}

TEST(ParserTest, RecognisesHeredocWords) {
  for (const char* word :
       {"<<EOF", "<<'EOF'", "<<\"EOF\"", "<<-EOF", "<<-'EOF'", "<<EO\"F\"", "<< EOF", "<<- EOF"}) {
    Heredoc doc;
    ASSERT_TRUE(parse_heredoc_word(word, doc)) << word;
    EXPECT_EQ(doc.name, "EOF") << word;
  }
  for (const char* word : {"", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "a<<EOF"}) {
    Heredoc doc;
    EXPECT_FALSE(parse_heredoc_word(word, doc)) << word;
  }
  Heredoc doc;
  ASSERT_TRUE(parse_heredoc_word("<< -EOF", doc));
  EXPECT_EQ(doc.name, "-EOF");
  EXPECT_FALSE(doc.chomp);
  EXPECT_THROW(parse_heredoc_word("<<'EOF", doc), BuildError);
}

TEST(ParserTest, OnbuildHoldsItsTrigger) {
  auto df = parse_dockerfile("FROM x\nONBUILD RUN --mount=type=tmpfs,target=/t [\"make\"]\n");
  const Node& on = df.nodes[1];
  ASSERT_EQ(on.sub.size(), 1u);
  EXPECT_EQ(on.sub[0].keyword, "RUN");
  EXPECT_TRUE(on.sub[0].json);
  EXPECT_EQ(on.sub[0].flags, Strings({"--mount=type=tmpfs,target=/t"}));
  EXPECT_EQ(on.args, Strings({"RUN", "make"}));
}

TEST(ParserTest, SplitsHealthcheckTypeFromItsCommand) {
  auto df = parse_dockerfile(
      "FROM x\nHEALTHCHECK --interval=5s CMD curl -f http://localhost/\nHEALTHCHECK CMD "
      "[\"true\"]\n"
      "HEALTHCHECK NONE\n");
  EXPECT_EQ(df.nodes[1].flags, Strings({"--interval=5s"}));
  EXPECT_EQ(df.nodes[1].args, Strings({"CMD", "curl -f http://localhost/"}));
  EXPECT_FALSE(df.nodes[1].json);
  EXPECT_EQ(df.nodes[2].args, Strings({"CMD", "true"}));
  EXPECT_TRUE(df.nodes[2].json);
  EXPECT_EQ(df.nodes[3].args, Strings({"NONE"}));
}

TEST(ParserTest, KeepsUnknownInstructionsForTheNextStage) {
  auto df = parse_dockerfile("FROM x\nFOO bar baz\n");
  EXPECT_EQ(df.nodes[1].keyword, "FOO");
  EXPECT_TRUE(df.nodes[1].args.empty());
}

TEST(ParserTest, RecordsTheCheckDirectiveAndIgnoresLateSyntaxLines) {
  auto df = parse_dockerfile("# check=skip=all\nFROM x\n# syntax=example.com/other:1\n");
  EXPECT_EQ(df.directives.check, "skip=all");
  EXPECT_EQ(df.directives.syntax, "");  // a comment by then, not a directive
}

TEST(ParserTest, SurvivesPathologicalInput) {
  const std::string nested = std::string(20000, '[') + std::string(20000, ']');
  EXPECT_EQ(error_of([&] { parse_dockerfile("FROM x\nRUN " + nested + "\n"); }),
            "failed to parse Dockerfile: when using JSON array syntax, arrays must be comprised of "
            "strings only");
  std::string chain = "FROM x\n";
  for (int i = 0; i < 3000; ++i) chain += "ONBUILD ";
  auto df = parse_dockerfile(chain + "RUN a\n");
  EXPECT_EQ(df.nodes[1].args.at(0), "ONBUILD");  // not parsed deeper than one trigger
}

}  // namespace
}  // namespace berth::agent::build
