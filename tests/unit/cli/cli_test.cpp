#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <regex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/fs.h"

namespace fs = std::filesystem;

namespace {

struct Result {
  int code;
  std::string out;
};

class BerthCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/berth-cli-XXXXXX";
    dir_ = ::mkdtemp(t);
    const char* build = std::getenv("BERTH_BUILD_DIR");
    ASSERT_NE(build, nullptr);
    berth_ = fs::path(build) / "cli" / "berth";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs berth with a private store, HOME and docker config; stderr folded into out.
  // `env`: extra VAR=value words for env(1).
  Result berth(const std::string& args, const std::string& env = "") {
    std::string cmd = "env -u DOCKER_HOST -u DOCKER_CONTEXT -u BERTH_MACHINE_NAME -u DOCKER_MACHINE_NAME HOME=" +
                      dir_.string() + " DOCKER_CONFIG=" + (dir_ / "docker").string() + " " + env + " " +
                      berth_.string() + " --storage-path " + store().string() + " " + args + " 2>&1 </dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    int status = ::pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  }
  fs::path store() const { return dir_ / "store"; }
  void add_none_machine(const std::string& name, const std::string& url) {
    auto r = berth("create -d none --url " + url + " " + name);
    ASSERT_EQ(r.code, 0) << r.out;
  }

  fs::path dir_;
  fs::path berth_;
};

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST_F(BerthCli, InvalidNameIsRefusedBeforeAnythingIsWritten) {
  auto r = berth("create -d none --url tcp://127.0.0.1:1 'bad_name'");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("invalid machine name 'bad_name'"), std::string::npos) << r.out;
  EXPECT_EQ(lines(r.out), 1) << r.out;
  EXPECT_FALSE(fs::exists(store() / "machines" / "bad_name"));
  EXPECT_FALSE(fs::exists(store() / "certs"));
}

TEST_F(BerthCli, UnknownMachineExits4) {
  for (const char* cmd : {"env ghost", "ip ghost", "inspect ghost", "rm -y ghost", "status ghost", "ssh ghost true"}) {
    auto r = berth(cmd);
    EXPECT_EQ(r.code, 4) << cmd << ": " << r.out;
    EXPECT_NE(r.out.find("'ghost' does not exist"), std::string::npos) << r.out;
  }
}

TEST_F(BerthCli, UnknownDriverAndForeignFlagsAreUsageErrors) {
  auto r = berth("create -d hyperv x");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("unknown driver 'hyperv'"), std::string::npos) << r.out;
  r = berth("create -d none --url tcp://127.0.0.1:1 --generic-ip-address 1.2.3.4 x");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--generic-ip-address belongs to the generic driver"), std::string::npos) << r.out;
  r = berth("create -d none --url tcp://127.0.0.1:1 --engine-label novalue x");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("KEY=VALUE"), std::string::npos) << r.out;
  r = berth("create --no-such-flag x");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_FALSE(fs::exists(store() / "machines" / "x"));
}

TEST_F(BerthCli, PreCreateCheckFailureExits3AndLeavesNothing) {
  std::ofstream(dir_ / "key") << "k";
  auto r = berth("create -d generic --generic-ip-address 127.0.0.1 --generic-ssh-port 1 --generic-ssh-key " +
                 (dir_ / "key").string() + " g");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("127.0.0.1:1"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(store() / "machines" / "g"));
}

TEST_F(BerthCli, NoneDriverRecordsUrlAndWorksWithEnvAndLs) {
  add_none_machine("ext", "tcp://127.0.0.1:1");
  auto r = berth("url ext");
  EXPECT_EQ(r.out, "tcp://127.0.0.1:1\n");
  r = berth("env --shell bash ext");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("export DOCKER_HOST=\"tcp://127.0.0.1:1\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("export BERTH_MACHINE_NAME=\"ext\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("# eval \"$(berth env --shell bash ext)\""), std::string::npos) << r.out;
  r = berth("ls --format '{{.Name}} {{.DriverName}} {{.State}}'");
  EXPECT_EQ(r.out, "ext none Error\n");
  r = berth("create -d none --url tcp://127.0.0.1:1 ext");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("already exists"), std::string::npos) << r.out;
  r = berth("stop ext");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("can't stop"), std::string::npos) << r.out;
}

TEST_F(BerthCli, NoneDriverUrlsAreTcpHostPort) {
  add_none_machine("v6", "tcp://[::1]:2376");
  EXPECT_EQ(berth("url v6").out, "tcp://[::1]:2376\n");
  add_none_machine("named", "tcp://docker-host.example:1");
  EXPECT_EQ(berth("ip named").out, "docker-host.example\n");
  for (const char* bad : {"tcp://host", "tcp://:1", "http://h:1", "tcp://[::1:1", "tcp://h_x:1", "tcp://h:12a",
                          "tcp://[]:1", "tcp://h:123456"}) {
    auto r = berth(std::string("create -d none --url '") + bad + "' bad");
    EXPECT_NE(r.code, 0) << bad;
    EXPECT_NE(r.out.find("is not of the form tcp://HOST:PORT"), std::string::npos) << bad << ": " << r.out;
  }
  for (const char* bad : {"tcp://h:0", "tcp://h:70000"}) {
    auto r = berth(std::string("create -d none --url '") + bad + "' bad");
    EXPECT_NE(r.out.find("has an invalid port"), std::string::npos) << bad << ": " << r.out;
  }
  EXPECT_FALSE(fs::exists(store() / "machines" / "bad"));
}

// env, url, inspect, active, config and ls -q are run by shell prompts: the
// loader opens none of the driver libraries for them (libvirt alone brings 55).
TEST_F(BerthCli, TheFastCommandsLoadNoDriverLibraries) {
  add_none_machine("ext", "tcp://127.0.0.1:1");
  for (const char* cmd : {"env ext", "url ext", "inspect ext", "active", "config ext", "ls -q"}) {
    auto r = berth(cmd, "LD_DEBUG=libs");
    EXPECT_NE(r.out.find("calling init: "), std::string::npos) << cmd << ": LD_DEBUG gave nothing";
    for (const char* lib : {"libvirt", "libcurl", "libxml2", "libgnutls", "libicu"})
      EXPECT_EQ(r.out.find(lib), std::string::npos) << cmd << " loaded " << lib;
  }
}

TEST_F(BerthCli, CorruptRecordIsListedWithItsErrorAndRemovable) {
  add_none_machine("good", "tcp://127.0.0.1:1");
  add_none_machine("bad", "tcp://127.0.0.1:2");
  std::ofstream(store() / "machines" / "bad" / "config.json") << "{{{";
  auto r = berth("ls --format '{{.Name}}|{{.Error}}'");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("bad|"), std::string::npos);
  EXPECT_NE(r.out.find("corrupt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("good|"), std::string::npos) << r.out;
  EXPECT_EQ(berth("rm -y bad").code, 1);
  EXPECT_TRUE(fs::exists(store() / "machines" / "bad"));
  r = berth("rm -f bad");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(fs::exists(store() / "machines" / "bad"));
  EXPECT_EQ(berth("ls -q").out, "good\n");
}

TEST_F(BerthCli, StoreFilesArePrivate) {
  add_none_machine("p", "tcp://127.0.0.1:1");
  for (const auto& e : fs::recursive_directory_iterator(store())) {
    auto perms = fs::status(e.path()).permissions();
    auto others = perms & (fs::perms::group_all | fs::perms::others_all);
    EXPECT_EQ(others, fs::perms::none) << e.path();
  }
}

TEST_F(BerthCli, InspectShowsNoKeyMaterial) {
  add_none_machine("i", "tcp://127.0.0.1:1");
  auto r = berth("inspect i");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("\"driver\": \"none\""), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(berth("inspect -f '{{.driver}}' i").out, "none\n");
}

TEST_F(BerthCli, RmWithoutTerminalNeedsYes) {
  add_none_machine("keep", "tcp://127.0.0.1:1");
  auto r = berth("rm keep");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("-y"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(store() / "machines" / "keep" / "config.json"));
}

// Runs `script` in `shell` with berth on PATH and this test's store.
Result shell_with_berth(const fs::path& berth, const fs::path& store, const std::string& shell, const std::string& script) {
  const fs::path file = store.parent_path() / ("script." + shell);
  std::ofstream(file) << script;
  std::string cmd = "env BERTH_STORAGE_PATH=" + store.string() + " PATH=" + berth.parent_path().string() + ":/usr/bin:/bin " +
                    shell + " " + file.string() + " 2>&1 </dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST_F(BerthCli, BashCompletionCompletesCommandsFlagsDriversAndMachines) {
  add_none_machine("alpha", "tcp://127.0.0.1:1");
  add_none_machine("beta", "tcp://127.0.0.1:2");
  auto script = berth("completion bash");
  ASSERT_EQ(script.code, 0) << script.out;
  auto complete = [&](const std::string& words, int cword) {
    return shell_with_berth(berth_, store(), "bash",
                            script.out + "\nCOMP_WORDS=(" + words + "); COMP_CWORD=" + std::to_string(cword) +
                                "; _berth; echo \"${COMPREPLY[*]}\"\n")
        .out;
  };
  EXPECT_EQ(complete("berth cre", 1), "create\n");
  EXPECT_EQ(complete("berth rm a", 2), "alpha\n");
  EXPECT_EQ(complete("berth env ''", 2), "alpha beta\n");
  EXPECT_EQ(complete("berth create -d gen", 3), "generic\n");
  EXPECT_EQ(complete("berth rm --fo", 2), "--force\n");
  EXPECT_EQ(complete("berth create --generic-ssh-u", 2), "--generic-ssh-user\n");
  EXPECT_EQ(complete("berth create ''", 2), "\n");   // a new name: nothing to offer
  EXPECT_EQ(complete("berth completion z", 2), "zsh\n");
}

TEST_F(BerthCli, ZshAndFishCompletionScriptsParseAndFishOffersMachines) {
  add_none_machine("gamma", "tcp://127.0.0.1:1");
  auto zsh = berth("completion zsh");
  ASSERT_EQ(zsh.code, 0);
  auto zr = shell_with_berth(berth_, store(), "zsh", "emulate zsh\n" + zsh.out + "\nprint ok\n");
  EXPECT_NE(zr.out.find("ok"), std::string::npos) << zr.out;
  auto fish = berth("completion fish");
  ASSERT_EQ(fish.code, 0);
  auto fr = shell_with_berth(berth_, store(), "fish", fish.out + "\ncomplete -C 'berth rm '\ncomplete -C 'berth st'\n");
  EXPECT_NE(fr.out.find("gamma"), std::string::npos) << fr.out;
  EXPECT_NE(fr.out.find("start"), std::string::npos) << fr.out;
  EXPECT_NE(fr.out.find("status"), std::string::npos) << fr.out;
  EXPECT_EQ(berth("completion tcsh").code, 2);
}

// As the package installs it: _berth in $fpath, autoloaded by compinit. The
// first TAB completes, and the file does not run compinit again.
TEST_F(BerthCli, ZshCompletesFromTheAutoloadedFileOnTheFirstTab) {
  if (std::system("command -v zsh >/dev/null 2>&1") != 0) GTEST_SKIP() << "no zsh";
  add_none_machine("gamma", "tcp://127.0.0.1:1");
  add_none_machine("delta", "tcp://127.0.0.1:2");
  auto zsh = berth("completion zsh");
  ASSERT_EQ(zsh.code, 0);
  const fs::path functions = store().parent_path() / "zfunc";
  fs::create_directories(functions);
  std::ofstream(functions / "_berth") << zsh.out;
  const std::string script =
      "{ sleep 20; kill $$ } >/dev/null 2>&1 &!\n"  // a watchdog: zpty -r -m waits for its pattern
      "watchdog=$!\n"
      "zmodload zsh/zpty\n"
      "zpty z zsh -f -i\n"
      "zpty -w z 'PS1=\"%% \"; fpath=(" + functions.string() + " $fpath); autoload -U compinit; compinit -D -u'\n"
      "zpty -w z 'compinit() { print COMPINIT-AGAIN }; print READY-$((6*7))'\n"
      "zpty -r -m z out '*READY-42*'\n"
      "zpty -w -n z $'berth rm ga\\t'\n"
      "zpty -r -m z out '*gamma*'\n"
      "print -r -- \"$out\"\n"
      "zpty -w -n z $'\\C-u'\n"
      "zpty -w z 'print DONE-$((6*7))'\n"
      "zpty -r -m z out '*DONE-42*'\n"
      "print -r -- \"$out\"\n"
      "zpty -d z\n"
      "kill $watchdog\n";
  auto r = shell_with_berth(berth_, store(), "zsh", script);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("berth rm gamma"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("COMPINIT-AGAIN"), std::string::npos) << r.out;
}

bool has(const std::string& out, const std::string& what) { return out.find(what) != std::string::npos; }

// A command line, the exit code the README's table gives it, and what the one-line message says.
struct Case {
  std::string args;
  int code;
  std::vector<std::string> says;
};

void expect_cases(const std::vector<Case>& cases, const std::function<Result(const std::string&)>& run) {
  for (const auto& c : cases) {
    auto r = run(c.args);
    EXPECT_EQ(r.code, c.code) << c.args << "\n" << r.out;
    for (const auto& s : c.says) EXPECT_TRUE(has(r.out, s)) << c.args << ": wanted \"" << s << "\" in\n" << r.out;
  }
}

TEST_F(BerthCli, MistypedCommandSaysSoAndSuggestsTheClosest) {
  expect_cases({
                   {"lss", 2, {"'lss' is not a berth command", "did you mean 'ls'?", "berth --help"}},
                   {"craete x", 2, {"'craete' is not a berth command", "did you mean 'create'?"}},
                   {"statsu web", 2, {"did you mean 'status'?"}},
                   {"frobnicate", 2, {"'frobnicate' is not a berth command"}},
                   {"help lss", 2, {"'lss' is not a berth command", "did you mean 'ls'?"}},
                   {"-D lss", 2, {"'lss' is not a berth command"}},
               },
               [&](const std::string& a) { return berth(a); });
  EXPECT_FALSE(has(berth("frobnicate").out, "did you mean"));
  EXPECT_FALSE(has(berth("lss").out, "subcommand is required"));
}

TEST_F(BerthCli, VersionAndHelpCommand) {
  for (const char* v : {"--version", "-v"}) {
    auto r = berth(v);
    EXPECT_EQ(r.code, 0) << v << r.out;
    EXPECT_TRUE(has(r.out, "berth version ")) << r.out;
    EXPECT_EQ(lines(r.out), 1) << r.out;
  }
  auto r = berth("help");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "create")) << r.out;
  EXPECT_TRUE(has(r.out, "Exit codes")) << r.out;
  r = berth("help create");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "--engine-label")) << r.out;
  EXPECT_EQ(r.out, berth("create --help").out);
  EXPECT_TRUE(has(berth("help ls").out, "--filter"));
}

TEST_F(BerthCli, ParseErrorsAreSentencesThatPointAtTheCommandsHelp) {
  expect_cases({
                   {"rm", 2, {"'berth rm' needs one or more machine names; see 'berth rm --help'"}},
                   {"create", 2, {"'berth create' needs a machine name; see 'berth create --help'"}},
                   {"create -d none -d generic x", 2, {"--driver can be given only once", "see 'berth create --help'"}},
                   {"create --no-such-flag x", 2, {"'berth create' has no flag '--no-such-flag'; see 'berth create --help'"}},
                   {"ls extra", 2, {"'berth ls' does not take the argument 'extra'; see 'berth ls --help'"}},
                   {"", 2, {"no command given; see 'berth --help'"}},
                   {"create --engine-port abc x", 2, {"--engine-port can't be 'abc'; see 'berth create --help'"}},
                   {"ls --filter", 2, {"--filter needs a value; see 'berth ls --help'"}},
                   {"scp a", 2, {"'berth scp' needs its destination argument; see 'berth scp --help'"}},
                   {"cluster status", 2, {"'berth cluster status' needs a cluster name; see 'berth cluster status --help'"}},
                   {"cluster sttaus x", 2, {"'sttaus' is not a 'berth cluster' command; did you mean 'status'?"}},
                   {"cluster", 2, {"'berth cluster' needs a subcommand; see 'berth cluster --help'"}},
               },
               [&](const std::string& a) { return berth(a); });
  EXPECT_FALSE(has(berth("rm").out, "is required"));
  EXPECT_FALSE(has(berth("create -d none -d generic x").out, "At Most"));
}

TEST_F(BerthCli, DroppedDockerMachineFlagsSayWhy) {
  expect_cases({
                   {"create -d none --url tcp://127.0.0.1:1 --engine-storage-driver overlay2 x1", 2,
                    {"--engine-storage-driver was dropped because", "storage driver"}},
                   {"create -d none --url tcp://127.0.0.1:1 --engine-install-url https://get.docker.com x1", 2,
                    {"--engine-install-url was dropped because", "berth-agent"}},
                   {"create --swarm --swarm-master x1", 2, {"--swarm", "was dropped because", "--cluster"}},
                   {"create --swarm-discovery token://x x1", 2, {"--swarm-discovery was dropped because"}},
                   {"--native-ssh ls", 2, {"--native-ssh was dropped because"}},
                   {"--tls-ca-cert /x/ca.pem ls", 2, {"--tls-ca-cert was dropped because", "regenerate-certs"}},
                   {"scp -d a:/x /tmp/y", 2, {"--delta was dropped because", "SFTP"}},
               },
               [&](const std::string& a) { return berth(a); });
  EXPECT_FALSE(fs::exists(store() / "machines" / "x1"));
  EXPECT_FALSE(has(berth("create --help").out, "--swarm"));
  EXPECT_FALSE(has(berth("completion bash").out, "--engine-storage-driver"));
}

TEST_F(BerthCli, SshPassesEverythingAfterTheNameToTheRemoteCommand) {
  for (const char* cmd : {"ssh ghost df -h", "ssh ghost -- ls -la", "ssh ghost ls --help", "ssh ghost uname",
                          "ssh -- ghost uname -a", "-D ssh ghost -- -weird"}) {
    auto r = berth(cmd);
    EXPECT_EQ(r.code, 4) << cmd << ": " << r.out;
    EXPECT_TRUE(has(r.out, "'ghost' does not exist")) << cmd << ": " << r.out;
    EXPECT_FALSE(has(r.out, "Usage")) << cmd << ": " << r.out;
  }
  EXPECT_EQ(berth("ssh --help").code, 0);
}

// README: "Exit codes: 0 ok, 1 error, 2 usage error, 3 pre-create check failed, 4 machine not found, 130 interrupted."
TEST_F(BerthCli, ExitCodesFollowTheReadmeTable) {
  std::ifstream readme(fs::path(BERTH_TEST_SOURCE_DIR) / "README.md");
  ASSERT_TRUE(readme) << BERTH_TEST_SOURCE_DIR << "/README.md";
  const std::string text((std::istreambuf_iterator<char>(readme)), std::istreambuf_iterator<char>());
  const std::string table = "0 ok, 1 error, 2 usage error, 3 pre-create check failed, 4 machine\nnot found, 130 interrupted";
  ASSERT_TRUE(has(text, table)) << "the README's exit-code table changed; update this test with it";
  EXPECT_TRUE(has(berth("--help").out, "Exit codes: 0 ok, 1 error, 2 usage error, 3 pre-create check failed, 4 machine not found, 130 interrupted"));
  EXPECT_TRUE(has(berth("mount --help").out, "Exit codes: 0 ok"));

  add_none_machine("ok", "tcp://127.0.0.1:1");
  const std::string none = "create -d none --url tcp://127.0.0.1:1 ";
  expect_cases({
                   // 0 ok
                   {"ls -q", 0, {"ok"}},
                   {"url ok", 0, {"tcp://127.0.0.1:1"}},
                   // 1 error
                   {none + "ok", 1, {"already exists"}},
                   {"stop ok", 1, {"can't stop"}},
                   {"ls --format '{{.Nope}}'", 1, {"no field Nope", "DriverName"}},
                   // 2 usage error
                   {none + "--engine-port 0 x", 2, {"--engine-port must be between 1 and 65535"}},
                   {"create -d none --url junk x", 2, {"--url 'junk'"}},
                   {"create -d bogus x", 2, {"unknown driver 'bogus'"}},
                   {"create -d none x", 2, {"--url"}},
                   {none + "--engine-label junk x", 2, {"KEY=VALUE"}},
                   {"ls -t 0", 2, {"--timeout"}},
                   {"ls --filter state=bogus", 2, {"state=bogus", "Running"}},
                   {"ls --filter colour=red", 2, {"colour=red"}},
                   {"ls --format '{{.Name'", 2, {"invalid template"}},
                   {none + "'bad_name'", 2, {"invalid machine name 'bad_name'"}},
                   {"lss", 2, {"not a berth command"}},
                   {"env", 2, {"no machine name given"}},
                   // 3 pre-create check failed
                   {"create -d generic x", 3, {"--generic-ip-address"}},
                   // 4 machine not found
                   {"status ghost", 4, {"'ghost' does not exist"}},
                   {"status 機械", 4, {"'機械' does not exist"}},
                   {"inspect 'bad_name'", 4, {"'bad_name' does not exist"}},
                   {"rm ghost", 4, {"'ghost' does not exist"}},
                   {"ip ghost", 4, {"'ghost' does not exist"}},
               },
               [&](const std::string& a) { return berth(a); });
  EXPECT_FALSE(fs::exists(store() / "machines" / "x"));
}

TEST_F(BerthCli, NameLengthIsCheckedUpFrontWithItsLimit) {
  const std::string longest(64, 'a');
  add_none_machine(longest, "tcp://127.0.0.1:1");  // the certificate's common name is the name
  EXPECT_EQ(berth("ls -q").out, longest + "\n");
  for (size_t n : {65u, 300u}) {
    auto r = berth("create -d none --url tcp://127.0.0.1:1 " + std::string(n, 'b'));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(has(r.out, "at most 64 characters, this one has " + std::to_string(n))) << r.out;
    EXPECT_FALSE(has(r.out, "letters, digits")) << r.out;
    EXPECT_EQ(lines(r.out), 1) << r.out;
  }
  EXPECT_EQ(berth("status " + std::string(65, 'c')).code, 4);
}

TEST_F(BerthCli, LsTemplatesAreStrictAndHaveActions) {
  auto r = berth("ls --format '{{.Nope}}'");  // no machines: still checked
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "no field Nope; the fields are: Active, ActiveHost, DockerVersion, DriverName")) << r.out;
  add_none_machine("t1", "tcp://127.0.0.1:1");
  r = berth("create -d none --url tcp://127.0.0.1:2 --engine-label env=dev --engine-label gpu=1 t2");
  ASSERT_EQ(r.code, 0) << r.out;
  r = berth("ls -f '{{.Name}}:{{range .Labels}} {{.}}{{else}} none{{end}}{{if eq1}}{{end}}'");
  EXPECT_EQ(r.code, 2) << r.out;  // eq is not a function berth knows
  r = berth("ls -f '{{.Name}}:{{range .Labels}} {{.}}{{else}} none{{end}}{{with .DriverName}} ({{.}}){{end}}'");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "t1: none (none)\nt2: env=dev gpu=1 (none)\n");
  r = berth("ls --filter name=t2 --format '{{if .Active}}*{{else}}-{{end}}{{.Name}}'");
  EXPECT_EQ(r.out, "-t2\n") << r.out;
  r = berth("inspect -f '{{.Driver.IPAddress}} {{.DriverName}} {{.Name}} {{.HostOptions.EngineOptions.Labels}} {{.driver}}' t2");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "127.0.0.1 none t2 [env=dev gpu=1] none\n");
  r = berth("inspect -f '{{.HostOptions.Nope}}' t2");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "no field Nope; the fields are: AuthOptions, EngineOptions")) << r.out;
}

// A TCP listener on 127.0.0.1 that completes handshakes (the kernel does) and never answers.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("listener");
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

template <class F>
long long millis(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

// berth in the background with a private HOME; its stderr read as it comes.
class BerthProcess {
 public:
  BerthProcess(const fs::path& berth, const fs::path& home, const std::vector<std::string>& args) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      const std::string var(*e);
      const std::string name = var.substr(0, var.find('='));
      if (name != "DOCKER_HOST" && name != "DOCKER_CONTEXT" && name != "BERTH_MACHINE_NAME" &&
          name != "DOCKER_MACHINE_NAME" && name != "HOME" && name != "DOCKER_CONFIG")
        env.push_back(var);
    }
    env.push_back("HOME=" + home.string());
    env.push_back("DOCKER_CONFIG=" + (home / "docker").string());
    std::vector<std::string> argv{berth.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto pointers = [](std::vector<std::string>& v) {
      std::vector<char*> p;
      for (auto& s : v) p.push_back(s.data());
      p.push_back(nullptr);
      return p;
    };
    auto envp = pointers(env);
    auto argvp = pointers(argv);
    int err[2];
    if (::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(err[1], 2);
      ::signal(SIGINT, SIG_DFL);  // a test runner may have it ignored, and exec keeps that
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(argvp[0], argvp.data(), envp.data());
      ::_exit(127);
    }
    ::close(err[1]);
    err_fd_ = err[0];
  }
  ~BerthProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(err_fd_);
  }
  pid_t pid() const { return pid_; }
  const std::string& err() const { return err_; }

  // Reads stderr until it holds `text` or `timeout` passes.
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!has(err_, text)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !read_some(left)) return has(err_, text);
    }
    return true;
  }
  // The exit code once berth ends within `timeout`, else -1.
  int wait_exit(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        while (read_some(std::chrono::milliseconds(100))) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      read_some(std::chrono::milliseconds(10));
    }
    return -1;
  }

 private:
  bool read_some(std::chrono::milliseconds wait) {
    pollfd p{err_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return false;
    char buf[4096];
    ssize_t n = ::read(err_fd_, buf, sizeof buf);
    if (n <= 0) return false;
    err_.append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int err_fd_ = -1;
  bool exited_ = false;
  std::string err_;
};

// A host whose SSH port takes connections and never speaks (a VM whose sshd is
// not up behind a NAT forward): the step shows at once and Ctrl-C ends it at once.
TEST_F(BerthCli, CreateShowsWaitingForSshAtOnceAndCtrlCEndsItWithinASecond) {
  using namespace std::chrono_literals;
  SilentListener silent;
  std::ofstream(dir_ / "key") << "k";
  const auto started = std::chrono::steady_clock::now();
  BerthProcess p(berth_, dir_,
                 {"--storage-path", store().string(), "create", "-d", "generic", "--generic-ip-address", "127.0.0.1",
                  "--generic-ssh-port", std::to_string(silent.port()), "--generic-ssh-key", (dir_ / "key").string(),
                  "g"});
  EXPECT_TRUE(p.wait_for("g: creating the generic machine...\n", 1s)) << p.err();  // the first step, as it starts
  EXPECT_TRUE(p.wait_for("g: waiting for SSH...\n", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          started + 1500ms - std::chrono::steady_clock::now())))
      << p.err();
  std::this_thread::sleep_until(started + 1500ms);
  ASSERT_EQ(::kill(p.pid(), SIGINT), 0);
  const auto interrupted = std::chrono::steady_clock::now();
  const int code = p.wait_exit(5s);
  const auto took = std::chrono::steady_clock::now() - interrupted;
  EXPECT_EQ(code, 130) << p.err();  // README: 130 interrupted
  EXPECT_LT(took, 1s) << p.err();
  EXPECT_TRUE(std::regex_search(p.err(), std::regex("\ng: waiting for SSH \\([0-9]+\\.[0-9]s\\)\n")))
      << p.err();  // the step's last line, with its time
  EXPECT_TRUE(has(p.err(), "create interrupted; nothing was left behind")) << p.err();
  EXPECT_FALSE(fs::exists(store() / "machines" / "g"));
  EXPECT_EQ(berth("ls -q").out, "");
}

TEST_F(BerthCli, LsQuietFiltersAndCompletionNeverContactAHost) {
  SilentListener silent;
  add_none_machine("web", "tcp://127.0.0.1:" + std::to_string(silent.port()));
  add_none_machine("db", "tcp://127.0.0.1:1");
  // A bound that a 10 s host timeout can't meet, but a slow shared machine can.
  constexpr long long kBoundMs = 500;
  Result r;
  EXPECT_LT(millis([&] { r = berth("ls -q"); }), kBoundMs);
  EXPECT_EQ(r.out, "db\nweb\n");
  EXPECT_LT(millis([&] { r = berth("ls -q --filter name=^w --filter driver=none"); }), kBoundMs);
  EXPECT_EQ(r.out, "web\n");
  EXPECT_LT(millis([&] { r = berth("ls -q --filter label=none"); }), kBoundMs);
  EXPECT_EQ(r.out, "");
  // Only the machines the store-only filters leave are asked about.
  EXPECT_LT(millis([&] { r = berth("ls --filter name=db --format '{{.Name}} {{.State}}'"); }), 5000);
  EXPECT_EQ(r.out, "db Error\n");
  auto script = berth("completion bash");
  ASSERT_EQ(script.code, 0);
  EXPECT_LT(millis([&] {
              r = shell_with_berth(berth_, store(), "bash",
                                   script.out + "\nCOMP_WORDS=(berth env w); COMP_CWORD=2; _berth; echo \"${COMPREPLY[*]}\"\n");
            }),
            kBoundMs + 500);
  EXPECT_EQ(r.out, "web\n");
}

TEST_F(BerthCli, ErrorStateSaysWhy) {
  add_none_machine("down", "tcp://127.0.0.1:1");
  auto r = berth("ls --format '{{.Name}} {{.State}} {{.Error}}'");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "down Error agent at tcp://127.0.0.1:1: ")) << r.out;
  r = berth("ls --format json");
  EXPECT_FALSE(has(r.out, "\"Error\":\"\"")) << r.out;
  r = berth("status down");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(r.out.rfind("Error\n", 0) == 0) << r.out;
  EXPECT_TRUE(has(r.out, "machine 'down': agent at tcp://127.0.0.1:1: ")) << r.out;
}

TEST_F(BerthCli, DockerMachineHabits) {
  add_none_machine("a", "tcp://127.0.0.1:1");
  add_none_machine("b", "tcp://127.0.0.2:1");
  add_none_machine("twin", "tcp://127.0.0.1:1");
  auto r = berth("ip a b");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "127.0.0.1\n127.0.0.2\n");
  r = berth("ip a ghost b");
  EXPECT_EQ(r.code, 4) << r.out;
  EXPECT_TRUE(has(r.out, "127.0.0.1\n") && has(r.out, "127.0.0.2\n") && has(r.out, "'ghost' does not exist")) << r.out;
  // env with no name: the active machine; DOCKER_MACHINE_NAME names it like BERTH_MACHINE_NAME.
  r = berth("env --shell bash", "DOCKER_HOST=tcp://127.0.0.2:1");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "export BERTH_MACHINE_NAME=\"b\"")) << r.out;
  EXPECT_TRUE(has(r.out, "export DOCKER_MACHINE_NAME=\"b\"")) << r.out;
  EXPECT_EQ(berth("active", "DOCKER_HOST=tcp://127.0.0.1:1 DOCKER_MACHINE_NAME=twin").out, "twin\n");
  EXPECT_EQ(berth("active", "DOCKER_HOST=tcp://127.0.0.1:1 BERTH_MACHINE_NAME=twin").out, "twin\n");
  EXPECT_EQ(berth("active", "DOCKER_HOST=tcp://127.0.0.1:1 BERTH_MACHINE_NAME=a").out, "a\n");
  // scp: -q is accepted; user@ must be the machine's SSH user (none has none: nothing to check).
  r = berth("scp -q a:/x ghost:/y");
  EXPECT_EQ(r.code, 4) << r.out;
  EXPECT_TRUE(has(r.out, "machine 'ghost' in 'ghost:/y' does not exist")) << r.out;
  r = berth("scp -q docker@a:/x /tmp/y");
  EXPECT_NE(r.code, 2) << r.out;
  // ls -f is --format, as in docker-machine; --filter is spelled out.
  EXPECT_EQ(berth("ls -f '{{.Name}}' --filter name=^b").out, "b\n");
}

TEST_F(BerthCli, SmallerThings) {
  auto r = berth("ls");  // the store does not exist yet
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "is not a directory")) << r.out;
  r = berth("ls -q -D");
  EXPECT_TRUE(has(r.out, "is not a directory")) << r.out;  // -D after the command is berth's
  EXPECT_FALSE(has(r.out, "not expected")) << r.out;
  add_none_machine("m", "tcp://127.0.0.1:1");
  EXPECT_EQ(berth("ls -q -D").code, 0);
  EXPECT_EQ(shell_with_berth(berth_, store(), "sh", "berth ls -q -s " + store().string() + "\n").out, "m\n");
  r = berth("env --unset --shell fish");
  EXPECT_TRUE(has(r.out, "berth env --unset --shell fish")) << r.out;
  r = berth("rm ghost");  // checked before the question
  EXPECT_EQ(r.code, 4) << r.out;
  EXPECT_FALSE(has(r.out, "-y")) << r.out;
}

TEST_F(BerthCli, CompletionValueFlagsAreEachCommandsOwn) {
  add_none_machine("alpha", "tcp://127.0.0.1:1");
  auto script = berth("completion bash");
  ASSERT_EQ(script.code, 0) << script.out;
  auto complete = [&](const std::string& words, int cword) {
    return shell_with_berth(berth_, store(), "bash",
                            script.out + "\nCOMP_WORDS=(" + words + "); COMP_CWORD=" + std::to_string(cword) +
                                "; _berth; echo \"${COMPREPLY[*]}\"\n")
        .out;
  };
  EXPECT_EQ(complete("berth rm -f ''", 3), "alpha\n");
  EXPECT_EQ(complete("berth regenerate-certs -f ''", 3), "alpha\n");
  EXPECT_EQ(complete("berth logs -f ''", 3), "alpha\n");
  EXPECT_EQ(complete("berth ls -f ''", 3), "\n");      // a format: nothing to offer
  EXPECT_EQ(complete("berth inspect -f ''", 3), "\n");
  EXPECT_EQ(complete("berth rm -y al", 3), "alpha\n");
  fs::create_directories(dir_ / "dm" / "machines" / "old-host");
  auto r = shell_with_berth(berth_, store(), "bash",
                            "MACHINE_STORAGE_PATH=" + (dir_ / "dm").string() + "\n" + script.out +
                                "\nCOMP_WORDS=(berth import-docker-machine ''); COMP_CWORD=2; _berth; echo \"${COMPREPLY[*]}\"\n");
  EXPECT_EQ(r.out, "old-host\n");
  auto fish = berth("completion fish");
  ASSERT_EQ(fish.code, 0);
  auto fr = shell_with_berth(berth_, store(), "fish",
                             "set -e BERTH_STORAGE_PATH\n" + fish.out + "\ncomplete -C 'berth -s " + store().string() +
                                 " rm '\necho end\n");
  EXPECT_TRUE(has(fr.out, "alpha")) << fr.out;
}

TEST_F(BerthCli, NoneMachineAdviceLeadsSomewhere) {
  add_none_machine("ext", "tcp://127.0.0.1:1");
  auto r = berth("logs --forwarder ext");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "machine 'ext' uses the none driver")) << r.out;
  EXPECT_FALSE(has(r.out, "berth forward")) << r.out;
  const std::string before = [&] {
    std::ifstream in(store() / "machines" / "ext" / "server.pem");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }();
  r = berth("regenerate-certs -f ext");  // create wrote them; berth renews them, their owner installs them
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "install ")) << r.out;
  EXPECT_TRUE(has(r.out, "server.pem")) << r.out;
  EXPECT_FALSE(has(r.out, "does not manage")) << r.out;
}

// Every command in 'berth --help', with bad input: an unknown flag is a usage
// error naming the flag and the command's own help; a name that can't be a
// machine (invalid, over-long) is "does not exist", like any unknown machine.
TEST_F(BerthCli, EveryCommandWithBadInput) {
  // The arguments each command needs so that the flag is what is wrong; ssh passes flags after NAME on.
  const std::map<std::string, std::string> needs = {
      {"create", "x"},          {"ls", ""},           {"active", ""},          {"env", "m"},
      {"use", "m"},             {"config", "m"},      {"inspect", "m"},        {"ip", "m"},
      {"url", "m"},             {"status", "m"},      {"ssh", "m"},            {"scp", "m:/a /tmp/b"},
      {"start", "m"},           {"stop", "m"},        {"restart", "m"},        {"kill", "m"},
      {"provision", "m"},       {"regenerate-certs", "m"}, {"upgrade", "m"},   {"rm", "m"},
      {"version", ""},          {"logs", "m"},        {"completion", "bash"},  {"mount", "m:/a /tmp/b"},
      {"import-docker-machine", ""}, {"forward", "m"}, {"cluster", "status c"},
  };
  const std::string help = berth("--help").out;
  const auto at = help.find("Subcommands:\n");
  ASSERT_NE(at, std::string::npos) << help;
  std::vector<std::string> commands;
  for (size_t pos = help.find('\n', at) + 1; pos < help.size() && help.compare(pos, 2, "  ") == 0;
       pos = help.find('\n', pos) + 1) {
    const size_t start = help.find_first_not_of(' ', pos);
    commands.push_back(help.substr(start, help.find_first_of(" ,", start) - start));
  }
  ASSERT_EQ(commands.size(), needs.size()) << help;
  for (const auto& cmd : commands) {
    ASSERT_TRUE(needs.count(cmd)) << "a new command: add it to this table: " << cmd;
    auto r = berth(cmd + " --no-such-flag " + needs.at(cmd));
    EXPECT_EQ(r.code, 2) << cmd << ": " << r.out;
    std::string path = cmd == "cluster" ? "berth cluster status" : "berth " + cmd;
    if (cmd == "ssh") {
      EXPECT_TRUE(has(r.out, "'berth ssh' has no flag '--no-such-flag'; see 'berth ssh --help'")) << r.out;
      continue;
    }
    EXPECT_TRUE(has(r.out, "'" + path + "' has no flag '--no-such-flag'; see '" + path + " --help'")) << cmd << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1) << cmd << ": " << r.out;
  }
  add_none_machine("m", "tcp://127.0.0.1:1");
  for (const char* cmd : {"env", "use", "config", "inspect", "ip", "url", "status", "ssh", "start", "stop", "restart",
                          "kill", "provision", "regenerate-certs -f", "regenerate-certs", "upgrade", "rm -y", "rm", "version", "logs",
                          "forward"}) {
    for (const std::string& name : {std::string("bad_name"), std::string(65, 'a'), std::string(300, 'b')}) {
      auto r = berth(std::string(cmd) + " " + name);
      EXPECT_EQ(r.code, 4) << cmd << " " << name << ": " << r.out;
      EXPECT_TRUE(has(r.out, "does not exist (")) << cmd << ": " << r.out;
      EXPECT_TRUE(has(r.out, name.size() > 64 ? "at most 64 characters, this one has " + std::to_string(name.size())
                                              : "use letters, digits"))
          << cmd << ": " << r.out;
      EXPECT_EQ(lines(r.out), 1) << cmd << ": " << r.out;
    }
  }
  auto r = berth("ls --format '{{.Name}} {{.Sate}}'");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "{{.Sate}}: there is no field Sate; the fields are:")) << r.out;
  EXPECT_TRUE(has(r.out, "State")) << r.out;
  r = berth("inspect -f '{{.Name' m");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(has(r.out, "invalid template")) << r.out;
}

}  // namespace
