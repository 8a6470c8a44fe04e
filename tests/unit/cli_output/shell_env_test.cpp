#include "cli/output/shell_env.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"

namespace berth::cli {
namespace {

namespace fs = std::filesystem;

const char* const kVar = "BERTH_TEST_VALUE";
const std::string kNasty = "a \"b\" $HOME `x` \\ 'q'";

struct RunResult {
  int status = -1;
  std::string out;
};

RunResult run(const std::string& command) {
  RunResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool have(const std::string& program) { return run("command -v " + program + " >/dev/null").status == 0; }

class ShellEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("berth-shell-env-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write_script(const std::string& text) {
    fs::path p = dir_ / "env.out";
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

  // Evaluates render_env's output the way its usage comment says, then prints the variable.
  RunResult eval_in(Shell shell, const std::string& script, const std::string& preset = "") {
    const std::string p = write_script(script).string();
    const std::string env = "env " + (preset.empty() ? std::string("-u ") + kVar : std::string(kVar) + "=" + preset) + " ";
    const std::string show = std::string("; printenv ") + kVar;
    switch (shell) {
      case Shell::Bash: return run(env + "bash --norc --noprofile -c 'eval \"$(cat " + p + ")\"" + show + "'");
      case Shell::Zsh: return run(env + "zsh -f -c 'eval \"$(cat " + p + ")\"" + show + "'");
      case Shell::Fish: return run(env + "fish --no-config -c 'eval (cat " + p + ")" + show + "'");
      case Shell::Tcsh: return run(env + "tcsh -f -c 'eval \"`cat " + p + "`\"" + show + "'");
      default: ADD_FAILURE() << "no runner for " << shell_name(shell); return {};
    }
  }

  fs::path dir_;
};

struct ShellCase {
  Shell shell;
  const char* program;
};

void PrintTo(const ShellCase& c, std::ostream* os) { *os << c.program; }

class RoundTrip : public ShellEnvTest, public ::testing::WithParamInterface<ShellCase> {};

TEST_P(RoundTrip, ValuesSurviveEvaluation) {
  const auto [shell, program] = GetParam();
  if (!have(program)) GTEST_SKIP() << program << " is not installed";
  std::vector<std::string> values = {
      kNasty,
      "two  spaces\tand a tab",
      "bang!x !! !$",
      "* ? [a] ~ {a,b}",
      "$(id) ${HOME} %PATH% ; & | < > #",
      "trailing backslash\\",
      "",
      "utf-8: \xc3\xbc \xe2\x80\x9cq\xe2\x80\x9d",
      "tcp://192.0.2.7:2376",
  };
  if (shell != Shell::Tcsh) values.push_back("line one\nline two\n");
  for (const auto& value : values) {
    const std::string script = render_env(shell, {{kVar, value}}, {}, "berth env dev");
    RunResult r = eval_in(shell, script);
    EXPECT_EQ(r.status, 0) << program << " failed on:\n" << script << "\noutput: " << r.out;
    EXPECT_EQ(r.out, value + "\n") << program << " evaluated:\n" << script;
  }
}

TEST_P(RoundTrip, UnsetRemovesTheVariable) {
  const auto [shell, program] = GetParam();
  if (!have(program)) GTEST_SKIP() << program << " is not installed";
  const std::string script = render_env(shell, {}, {kVar}, "berth env --unset");
  RunResult r = eval_in(shell, script, "was-set");
  EXPECT_NE(r.status, 0) << "printenv found the variable after:\n" << script;
  EXPECT_EQ(r.out.find("was-set"), std::string::npos) << r.out;
  // Control: without the unset script the variable is visible.
  RunResult control = eval_in(shell, "", "was-set");
  EXPECT_EQ(control.out, "was-set\n");
}

TEST_P(RoundTrip, SeveralVariablesAtOnce) {
  const auto [shell, program] = GetParam();
  if (!have(program)) GTEST_SKIP() << program << " is not installed";
  const std::string script = render_env(shell, {{"BERTH_OTHER", "first"}, {kVar, kNasty}}, {}, "berth env dev");
  RunResult r = eval_in(shell, script);
  EXPECT_EQ(r.out, kNasty + "\n") << script;
}

INSTANTIATE_TEST_SUITE_P(Shells, RoundTrip,
                         ::testing::Values(ShellCase{Shell::Bash, "bash"}, ShellCase{Shell::Zsh, "zsh"},
                                           ShellCase{Shell::Fish, "fish"}, ShellCase{Shell::Tcsh, "tcsh"}),
                         [](const auto& info) { return std::string(info.param.program); });

// An interactive tcsh treats '#' as a command, so the usage lines must be harmless there.
TEST_F(ShellEnvTest, InteractiveTcshEvaluatesTheWholeOutput) {
  if (!have("tcsh") || !have("script")) GTEST_SKIP() << "tcsh or script is not installed";
  const std::string p = write_script(render_env(Shell::Tcsh, {{kVar, kNasty}}, {}, "berth env dev")).string();
  const fs::path result = dir_ / "value";
  const fs::path input = dir_ / "input";
  std::ofstream(input) << "eval \"`cat " << p << "`\"\nprintenv " << kVar << " > " << result.string() << "\nexit\n";
  RunResult r = run("script -qc 'tcsh -f -i' /dev/null < " + input.string());
  EXPECT_EQ(r.out.find("not found"), std::string::npos) << r.out;
  std::ifstream in(result);
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ(got.str(), kNasty + "\n") << r.out;
}

TEST(RenderEnv, BashShapeAndUsageComment) {
  EXPECT_EQ(render_env(Shell::Bash, {{"DOCKER_HOST", "tcp://1.2.3.4:2376"}}, {"DOCKER_TLS_VERIFY"}, "berth env dev"),
            "export DOCKER_HOST=\"tcp://1.2.3.4:2376\"\n"
            "unset DOCKER_TLS_VERIFY\n"
            "# Run this command to configure your shell:\n"
            "# eval \"$(berth env dev)\"\n");
}

TEST(RenderEnv, OtherShellsShapes) {
  const std::vector<EnvVar> set = {{"A", "v"}};
  const std::vector<std::string> unset = {"B"};
  EXPECT_EQ(render_env(Shell::Fish, set, unset, "berth env dev"),
            "set -gx A \"v\";\nset -e B;\n# Run this command to configure your shell:\n# eval (berth env dev)\n");
  EXPECT_EQ(render_env(Shell::PowerShell, set, unset, "berth env dev"),
            "$Env:A = \"v\"\nRemove-Item Env:\\\\B\n# Run this command to configure your shell:\n"
            "# & berth env dev | Invoke-Expression\n");
  EXPECT_EQ(render_env(Shell::Cmd, set, unset, "berth env dev"),
            "SET A=v\nSET B=\nREM Run this command to configure your shell:\n"
            "REM \t@FOR /f \"tokens=*\" %i IN ('berth env dev') DO @%i\n");
  EXPECT_EQ(render_env(Shell::Tcsh, set, unset, "berth env dev"),
            "setenv A \"v\";\nunsetenv B;\n: Run this command to configure your shell:\n: eval \"`berth env dev`\"\n");
  EXPECT_EQ(render_env(Shell::Emacs, set, unset, "berth env dev"),
            "(setenv \"A\" \"v\")\n(setenv \"B\" nil)\n;; Run this command to configure your shell:\n"
            ";; (with-temp-buffer (shell-command \"berth env dev\" (current-buffer)) (eval-buffer))\n");
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

TEST(RenderEnv, QuotesForShellsWeCannotRun) {
  EXPECT_EQ(first_line(render_env(Shell::PowerShell, {{"A", "a\"$`b\nc"}}, {}, "x")), "$Env:A = \"a`\"`$``b`nc\"");
  EXPECT_EQ(first_line(render_env(Shell::Emacs, {{"A", "a\"\\b"}}, {}, "x")), "(setenv \"A\" \"a\\\"\\\\b\")");
  EXPECT_EQ(first_line(render_env(Shell::Cmd, {{"A", "a b&c"}}, {}, "x")), "SET A=a b&c");
}

TEST(RenderEnv, RefusesWhatAShellCannotCarry) {
  EXPECT_THROW(render_env(Shell::Cmd, {{"A", "x\ny"}}, {}, "x"), UserError);
  EXPECT_THROW(render_env(Shell::Tcsh, {{"A", "x\ny"}}, {}, "x"), UserError);
  EXPECT_THROW(render_env(Shell::Bash, {{"BAD NAME", "x"}}, {}, "x"), UserError);
  EXPECT_THROW(render_env(Shell::Bash, {}, {"1X"}, "x"), UserError);
}

TEST(ParseShell, KnownNamesAndAliases) {
  EXPECT_EQ(parse_shell("bash"), Shell::Bash);
  EXPECT_EQ(parse_shell("zsh"), Shell::Zsh);
  EXPECT_EQ(parse_shell("fish"), Shell::Fish);
  EXPECT_EQ(parse_shell("powershell"), Shell::PowerShell);
  EXPECT_EQ(parse_shell("pwsh"), Shell::PowerShell);
  EXPECT_EQ(parse_shell("cmd"), Shell::Cmd);
  EXPECT_EQ(parse_shell("tcsh"), Shell::Tcsh);
  EXPECT_EQ(parse_shell("csh"), Shell::Tcsh);
  EXPECT_EQ(parse_shell("emacs"), Shell::Emacs);
}

TEST(ParseShell, UnknownNameListsTheValidOnes) {
  try {
    parse_shell("ksh");
    FAIL() << "no exception";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ksh"), std::string::npos);
    for (const char* name : {"bash", "zsh", "fish", "powershell", "cmd", "tcsh", "emacs"})
      EXPECT_NE(msg.find(name), std::string::npos) << msg;
  }
}

class DetectShell : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* s = std::getenv("SHELL")) saved_ = s;
  }
  void TearDown() override {
    if (saved_) ::setenv("SHELL", saved_->c_str(), 1);
    else ::unsetenv("SHELL");
  }
  std::optional<std::string> saved_;
};

TEST_F(DetectShell, FromTheBasenameOfSHELL) {
  const std::pair<const char*, Shell> cases[] = {
      {"/bin/bash", Shell::Bash},          {"/usr/bin/zsh", Shell::Zsh},   {"/usr/local/bin/fish", Shell::Fish},
      {"/bin/tcsh", Shell::Tcsh},          {"/bin/csh", Shell::Tcsh},      {"/opt/microsoft/pwsh", Shell::PowerShell},
      {"/usr/bin/powershell", Shell::PowerShell}, {"/bin/ksh", Shell::Bash}, {"", Shell::Bash},
  };
  for (const auto& [path, want] : cases) {
    ::setenv("SHELL", path, 1);
    EXPECT_EQ(detect_shell(), want) << path;
  }
  ::unsetenv("SHELL");
  EXPECT_EQ(detect_shell(), Shell::Bash);
}

TEST(AddNoProxy, AppendsWithoutDuplicates) {
  EXPECT_EQ(add_no_proxy("", "192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(add_no_proxy("localhost", "192.0.2.7"), "localhost,192.0.2.7");
  EXPECT_EQ(add_no_proxy("localhost,192.0.2.7", "192.0.2.7"), "localhost,192.0.2.7");
  EXPECT_EQ(add_no_proxy("localhost, 192.0.2.7", "192.0.2.7"), "localhost, 192.0.2.7");
  EXPECT_EQ(add_no_proxy("192.0.2.70", "192.0.2.7"), "192.0.2.70,192.0.2.7");
  EXPECT_EQ(add_no_proxy("localhost,", "192.0.2.7"), "localhost,192.0.2.7");
  EXPECT_EQ(add_no_proxy("localhost", ""), "localhost");
}

}  // namespace
}  // namespace berth::cli
