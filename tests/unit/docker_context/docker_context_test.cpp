#include "core/docker_context.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"

namespace berth {
namespace {

// sha256("berth-x"), checked against the context docker 28 itself created.
const char* const kBerthXDigest = "d572554fa15f245d5e6d5d57895b4841116de864d6b9c9944afc4a2f532e5ed4";

struct RunResult {
  int status = -1;
  std::string out;
};

RunResult run(const std::string& command) {
  RunResult r;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class DockerContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("berth-docker-ctx-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "pem");
    for (const char* var : {"DOCKER_CONFIG", "DOCKER_HOST", "DOCKER_CONTEXT"}) {
      if (const char* v = std::getenv(var)) saved_.emplace_back(var, v);
      ::unsetenv(var);
    }
    config_ = root_ / "docker-config";
    ::setenv("DOCKER_CONFIG", config_.c_str(), 1);
    // Stand-in PEM files: the context store copies them without parsing.
    for (const char* f : {"ca.pem", "cert.pem", "key.pem"})
      std::ofstream(root_ / "pem" / f) << "-----BEGIN TEST " << f << "-----\n";
  }
  void TearDown() override {
    ::unsetenv("DOCKER_CONFIG");
    for (const auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
    fs::remove_all(root_);
  }

  DockerContextSpec spec(const std::string& name = "berth-x") const {
    return {name, "tcp://192.0.2.7:2376", (root_ / "pem/ca.pem").string(), (root_ / "pem/cert.pem").string(),
            (root_ / "pem/key.pem").string(), "berth machine x"};
  }

  static bool have_docker() { return run("command -v docker >/dev/null 2>&1").status == 0; }
  RunResult docker(const std::string& args) const {
    return run("env -u DOCKER_HOST -u DOCKER_CONTEXT DOCKER_CONFIG='" + config_.string() + "' docker " + args + " 2>&1");
  }

  fs::path root_, config_;
  std::vector<std::pair<std::string, std::string>> saved_;
};

TEST_F(DockerContextTest, ConfigDirFromEnvironmentOrHome) {
  EXPECT_EQ(docker_config_dir(), config_);
  ::unsetenv("DOCKER_CONFIG");
  EXPECT_EQ(docker_config_dir(), home_dir() / ".docker");
}

TEST_F(DockerContextTest, WritesDockersLayout) {
  write_docker_context(spec());
  const fs::path meta = config_ / "contexts/meta" / kBerthXDigest / "meta.json";
  ASSERT_TRUE(fs::exists(meta));
  EXPECT_EQ(nlohmann::json::parse(read_file(meta)), nlohmann::json::parse(R"({"Name":"berth-x",
      "Metadata":{"Description":"berth machine x"},
      "Endpoints":{"docker":{"Host":"tcp://192.0.2.7:2376","SkipTLSVerify":false}}})"));
  const fs::path tls = config_ / "contexts/tls" / kBerthXDigest / "docker";
  for (const char* f : {"ca.pem", "cert.pem", "key.pem"}) {
    EXPECT_EQ(read_file(tls / f), read_file(root_ / "pem" / f));
    EXPECT_EQ(mode_of(tls / f), 0600u) << f;
  }
  EXPECT_EQ(mode_of(tls), 0700u);
  EXPECT_TRUE(docker_context_exists("berth-x"));
  EXPECT_FALSE(docker_context_exists("berth-y"));
}

TEST_F(DockerContextTest, RewriteReplacesHostAndDropsTlsNoLongerGiven) {
  write_docker_context(spec());
  DockerContextSpec s = spec();
  s.host = "tcp://192.0.2.8:2376";
  s.ca_pem_path = s.cert_pem_path = s.key_pem_path = "";
  write_docker_context(s);
  const fs::path meta = config_ / "contexts/meta" / kBerthXDigest / "meta.json";
  EXPECT_EQ(nlohmann::json::parse(read_file(meta))["Endpoints"]["docker"]["Host"], "tcp://192.0.2.8:2376");
  EXPECT_FALSE(fs::exists(config_ / "contexts/tls" / kBerthXDigest));
}

TEST_F(DockerContextTest, RejectsNamesDockerRefuses) {
  for (const std::string bad : {"", "default", "x", "-x", "a b", "a/b", "dev:1"}) {
    EXPECT_THROW(write_docker_context(spec(bad)), UserError) << bad;
  }
  EXPECT_FALSE(fs::exists(config_ / "contexts"));
}

TEST_F(DockerContextTest, MissingPemFileIsAnError) {
  DockerContextSpec s = spec();
  s.key_pem_path = (root_ / "no-such.pem").string();
  EXPECT_THROW(write_docker_context(s), Error);
}

TEST_F(DockerContextTest, CurrentContextRoundTripAndOtherKeysSurvive) {
  fs::create_directories(config_);
  const std::string original = R"({"auths":{"registry.example":{"auth":"dXNlcjpzZWNyZXQ="}},"credsStore":"pass","zzz":[1,2]})";
  std::ofstream(config_ / "config.json") << original;
  EXPECT_EQ(current_docker_context(), "");

  write_docker_context(spec());
  set_current_docker_context("berth-x");
  EXPECT_EQ(current_docker_context(), "berth-x");
  auto j = nlohmann::ordered_json::parse(read_file(config_ / "config.json"));
  EXPECT_EQ(j["auths"]["registry.example"]["auth"], "dXNlcjpzZWNyZXQ=");
  EXPECT_EQ(j["credsStore"], "pass");
  EXPECT_EQ(j["zzz"], nlohmann::json({1, 2}));
  EXPECT_EQ(j.begin().key(), "auths");  // order kept
  EXPECT_EQ(mode_of(config_ / "config.json"), 0600u);

  set_current_docker_context("");
  EXPECT_EQ(current_docker_context(), "");
  j = nlohmann::ordered_json::parse(read_file(config_ / "config.json"));
  EXPECT_FALSE(j.contains("currentContext"));
  EXPECT_EQ(j, nlohmann::ordered_json::parse(original));
}

TEST_F(DockerContextTest, CreatesConfigWhenMissingAndTreatsDefaultAsUnset) {
  write_docker_context(spec());
  ASSERT_FALSE(fs::exists(config_ / "config.json"));
  set_current_docker_context("berth-x");
  EXPECT_EQ(nlohmann::json::parse(read_file(config_ / "config.json")), nlohmann::json({{"currentContext", "berth-x"}}));
  set_current_docker_context("default");
  EXPECT_EQ(nlohmann::json::parse(read_file(config_ / "config.json")), nlohmann::json::object());
  std::ofstream(config_ / "config.json") << R"({"currentContext":"default"})";
  EXPECT_EQ(current_docker_context(), "");
}

TEST_F(DockerContextTest, SettingAMissingContextIsNotFound) {
  EXPECT_THROW(set_current_docker_context("berth-nope"), NotFound);
  EXPECT_FALSE(fs::exists(config_ / "config.json"));
}

TEST_F(DockerContextTest, BrokenConfigJsonIsReportedNotOverwritten) {
  fs::create_directories(config_);
  std::ofstream(config_ / "config.json") << "{not json";
  write_docker_context(spec());
  EXPECT_THROW(current_docker_context(), Error);
  EXPECT_THROW(set_current_docker_context("berth-x"), Error);
  EXPECT_EQ(read_file(config_ / "config.json"), "{not json");
}

TEST_F(DockerContextTest, WritesThroughASymlinkedConfig) {
  fs::create_directories(config_);
  std::ofstream(root_ / "real-config.json") << R"({"auths":{}})";
  fs::create_symlink(root_ / "real-config.json", config_ / "config.json");
  write_docker_context(spec());
  set_current_docker_context("berth-x");
  EXPECT_TRUE(fs::is_symlink(config_ / "config.json"));
  EXPECT_EQ(nlohmann::json::parse(read_file(root_ / "real-config.json"))["currentContext"], "berth-x");
}

TEST_F(DockerContextTest, RemoveDeletesFilesAndUnsetsCurrent) {
  write_docker_context(spec());
  write_docker_context(spec("berth-other"));
  set_current_docker_context("berth-x");
  remove_docker_context("berth-x");
  EXPECT_FALSE(fs::exists(config_ / "contexts/meta" / kBerthXDigest));
  EXPECT_FALSE(fs::exists(config_ / "contexts/tls" / kBerthXDigest));
  EXPECT_EQ(current_docker_context(), "");
  EXPECT_TRUE(docker_context_exists("berth-other"));
  EXPECT_NO_THROW(remove_docker_context("berth-x"));  // already gone

  set_current_docker_context("berth-other");
  write_docker_context(spec());
  remove_docker_context("berth-x");
  EXPECT_EQ(current_docker_context(), "berth-other");  // not current: left alone
}

TEST_F(DockerContextTest, PreviousContextIsRememberedInTheStore) {
  const fs::path store = root_ / "berth-store";
  EXPECT_EQ(recall_previous_context(store), "");
  remember_previous_context(store, "desktop-linux");
  EXPECT_EQ(recall_previous_context(store), "desktop-linux");
  EXPECT_EQ(mode_of(store / "previous-docker-context"), 0600u);
  remember_previous_context(store, "");
  EXPECT_EQ(recall_previous_context(store), "");
  EXPECT_FALSE(fs::exists(store / "previous-docker-context"));
}

// The real docker CLI must read what we wrote.
TEST_F(DockerContextTest, RealDockerCliSeesTheContext) {
  if (!have_docker()) GTEST_SKIP() << "docker CLI not installed";
  fs::create_directories(config_);
  std::ofstream(config_ / "config.json") << R"({"auths":{"registry.example":{"auth":"dXNlcjpzZWNyZXQ="}}})";
  write_docker_context(spec());
  set_current_docker_context("berth-x");

  RunResult ls = docker("context ls --format '{{.Name}} {{.Current}} {{.DockerEndpoint}}'");
  ASSERT_EQ(ls.status, 0) << ls.out;
  EXPECT_NE(ls.out.find("berth-x true tcp://192.0.2.7:2376"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("default false"), std::string::npos) << ls.out;

  RunResult show = docker("context show");
  EXPECT_EQ(show.out, "berth-x\n");

  RunResult inspect = docker("context inspect berth-x");
  ASSERT_EQ(inspect.status, 0) << inspect.out;
  auto j = nlohmann::json::parse(inspect.out);
  ASSERT_TRUE(j.is_array() && j.size() == 1) << inspect.out;
  EXPECT_EQ(j[0]["Name"], "berth-x");
  EXPECT_EQ(j[0]["Metadata"]["Description"], "berth machine x");
  EXPECT_EQ(j[0]["Endpoints"]["docker"]["Host"], "tcp://192.0.2.7:2376");
  EXPECT_EQ(j[0]["TLSMaterial"]["docker"], nlohmann::json({"ca.pem", "cert.pem", "key.pem"}));
  EXPECT_EQ(j[0]["Storage"]["TLSPath"], (config_ / "contexts/tls" / kBerthXDigest).string());

  // docker keeps our other keys too, and we read what docker writes.
  RunResult use = docker("context use default");
  ASSERT_EQ(use.status, 0) << use.out;
  EXPECT_EQ(current_docker_context(), "");
  EXPECT_EQ(nlohmann::json::parse(read_file(config_ / "config.json"))["auths"]["registry.example"]["auth"], "dXNlcjpzZWNyZXQ=");

  remove_docker_context("berth-x");
  RunResult after = docker("context ls --format '{{.Name}}'");
  EXPECT_EQ(after.out, "default\n");
}

// A context docker created is read and replaced by ours without confusion.
TEST_F(DockerContextTest, ReplacesAContextDockerCreated) {
  if (!have_docker()) GTEST_SKIP() << "docker CLI not installed";
  RunResult create = docker("context create berth-x --docker host=tcp://198.51.100.1:2375");
  ASSERT_EQ(create.status, 0) << create.out;
  ASSERT_EQ(docker("context use berth-x").status, 0);
  EXPECT_EQ(current_docker_context(), "berth-x");
  write_docker_context(spec());
  RunResult ls = docker("context ls --format '{{.Name}} {{.DockerEndpoint}}'");
  EXPECT_NE(ls.out.find("berth-x tcp://192.0.2.7:2376"), std::string::npos) << ls.out;
  EXPECT_EQ(ls.out.find("198.51.100.1"), std::string::npos) << ls.out;
}

}  // namespace
}  // namespace berth
