// POST /auth (docker login) against Debian's real docker-registry on
// 127.0.0.1 with htpasswd (basic) authentication.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/api/api.h"
#include "agent/api/images.h"
#include "agent/image/http_client.h"
#include "agent/image/registry.h"
#include "test_util.h"

extern char** environ;

namespace berth::agent::image {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

// bcrypt of "s3cret" (docker-registry's htpasswd reads bcrypt only).
constexpr const char* kHtpasswd = "alice:$2b$04$qWStqoJTRZopguYE5b.nle6.pIOrs1Z9qVH0y.qWV7O203hYZ3l9.\n";

int unused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class LoginTest : public ::testing::Test {
 protected:
  static inline TempDir* work = nullptr;
  static inline pid_t registry_pid = -1;
  static inline int port = 0;
  static inline std::string skip_reason;

  static void SetUpTestSuite() {
    if (!fs::exists("/usr/bin/docker-registry")) {
      skip_reason = "docker-registry is not installed";
      return;
    }
    work = new TempDir();
    port = unused_port();
    std::ofstream(work->path / "htpasswd") << kHtpasswd;
    std::ofstream(work->path / "config.yml")
        << "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
        << "    rootdirectory: " << (work->path / "storage").string() << "\nhttp:\n  addr: 127.0.0.1:" << port
        << "\nauth:\n  htpasswd:\n    realm: berth-test\n    path: " << (work->path / "htpasswd").string() << "\n";
    std::string config_path = (work->path / "config.yml").string();
    std::vector<char*> argv = {const_cast<char*>("/usr/bin/docker-registry"), const_cast<char*>("serve"),
                               config_path.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    std::string log_path = (work->path / "registry.log").string();
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    int spawned = posix_spawn(&registry_pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) {
      skip_reason = "cannot start docker-registry";
      return;
    }
    bool up = false;
    for (int i = 0; i < 100 && !up; ++i) {
      try {
        HttpRequest req;
        req.url = parse_url("http://127.0.0.1:" + std::to_string(port) + "/v2/");
        up = http_request(req).status == 401;  // it asks for credentials
      } catch (const std::exception&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (!up) skip_reason = "docker-registry did not come up";
  }

  static void TearDownTestSuite() {
    if (registry_pid > 0) {
      ::kill(registry_pid, SIGTERM);
      ::waitpid(registry_pid, nullptr, 0);
    }
    delete work;
    work = nullptr;
  }

  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
  }

  static std::string host() { return "127.0.0.1:" + std::to_string(port); }

  // POST /v1.47/auth through the whole API, as the docker CLI sends it.
  static api::Response login(const json& body) {
    api::Router router;
    api::add_auth_routes(router, RegistryOptions{});
    const api::Api api(std::move(router));
    api::Request req;
    req.method = "POST";
    req.target = "/v1.47/auth";
    req.body = body.dump();
    return api.handle(std::move(req));
  }
};

TEST_F(LoginTest, RightCredentialsLogIn) {
  api::Response r = login({{"username", "alice"}, {"password", "s3cret"}, {"serveraddress", host()}});
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(json::parse(r.body), json({{"Status", "Login Succeeded"}, {"IdentityToken", ""}}));
  // An address with a scheme, as `docker login http://host` sends it.
  r = login({{"username", "alice"}, {"password", "s3cret"}, {"serveraddress", "http://" + host() + "/"}});
  EXPECT_EQ(r.status, 200u) << r.body;
}

TEST_F(LoginTest, WrongCredentialsAre401WithDockerdsMessage) {
  for (const json& body : {json{{"username", "alice"}, {"password", "nope"}, {"serveraddress", host()}},
                           json{{"username", "bob"}, {"password", "s3cret"}, {"serveraddress", host()}},
                           json{{"serveraddress", host()}}}) {
    api::Response r = login(body);
    EXPECT_EQ(r.status, 401u) << body.dump() << " " << r.body;
    EXPECT_EQ(json::parse(r.body)["message"],
              "login attempt to http://" + host() + "/v2/ failed with status: 401 Unauthorized")
        << body.dump();
  }
}

TEST_F(LoginTest, UnreachableRegistryIs500NamingIt) {
  const std::string gone = "127.0.0.1:" + std::to_string(unused_port());
  api::Response r = login({{"username", "alice"}, {"password", "s3cret"}, {"serveraddress", gone}});
  EXPECT_EQ(r.status, 500u) << r.body;
  const std::string message = json::parse(r.body)["message"];
  EXPECT_EQ(message.rfind("Get \"http://" + gone + "/v2/\": ", 0), 0u) << message;
}

TEST_F(LoginTest, WrongTypedFieldsAre400) {
  api::Response r = login({{"username", 5}, {"password", "s3cret"}, {"serveraddress", host()}});
  EXPECT_EQ(r.status, 400u) << r.body;
  r = login(json::array({"alice"}));
  EXPECT_EQ(r.status, 400u) << r.body;
}

}  // namespace
}  // namespace berth::agent::image
