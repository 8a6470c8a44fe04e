#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

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
  Result berth(const std::string& args) {
    std::string cmd = "env -u DOCKER_HOST -u DOCKER_CONTEXT HOME=" + dir_.string() + " DOCKER_CONFIG=" +
                      (dir_ / "docker").string() + " " + berth_.string() + " --storage-path " +
                      store().string() + " " + args + " 2>&1 </dev/null";
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
  EXPECT_EQ(r.code, 1) << r.out;
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
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("unknown driver 'hyperv'"), std::string::npos) << r.out;
  r = berth("create -d none --url tcp://127.0.0.1:1 --generic-ip-address 1.2.3.4 x");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("--generic-ip-address belongs to the generic driver"), std::string::npos) << r.out;
  r = berth("create -d none --url tcp://127.0.0.1:1 --engine-label novalue x");
  EXPECT_EQ(r.code, 1);
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

}  // namespace
