// agent_get / agent_docker_version / wait_for_agent against a fake TLS agent on loopback.
#include "core/agent_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/net.h"
#include "core/tls.h"
#include "fake_agent_server.h"

namespace berth {
namespace {

namespace fs = std::filesystem;
using berth::testing::FakeAgentServer;
using berth::testing::FakeRoute;
using berth::testing::SilentListener;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "berth-agent-client-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// One CA with a server and client certificate, plus a second, unrelated CA.
struct Pki {
  tls::KeyPair ca = tls::make_ca("test-ca", tls::KeyType::Ecdsa);
  tls::KeyPair server = tls::make_server_cert(ca, "agent", {"127.0.0.1", "::1", "localhost"}, tls::KeyType::Ecdsa);
  tls::KeyPair client = tls::make_client_cert(ca, "berth-client", tls::KeyType::Ecdsa);
  tls::KeyPair other_ca = tls::make_ca("other-ca", tls::KeyType::Ecdsa);
  tls::KeyPair other_client = tls::make_client_cert(other_ca, "intruder", tls::KeyType::Ecdsa);
  tls::KeyPair other_server =
      tls::make_server_cert(other_ca, "agent", {"127.0.0.1", "::1", "localhost"}, tls::KeyType::Ecdsa);
  tls::KeyPair wrong_name_server = tls::make_server_cert(ca, "agent", {"10.9.9.9", "elsewhere"}, tls::KeyType::Ecdsa);
};

// The fake server counts a failed handshake a moment after the client has given up.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds within = 2s) {
  const auto end = Clock::now() + within;
  while (!pred() && Clock::now() < end) std::this_thread::sleep_for(10ms);
  return pred();
}

const Pki& pki() {
  static Pki p;
  return p;
}

class AgentClientTest : public ::testing::Test {
 protected:
  TempDir tmp;

  AgentEndpoint endpoint(const std::string& url, const tls::KeyPair& client) {
    write_file_atomic(tmp.path() / "ca.pem", pki().ca.cert_pem);
    write_file_atomic(tmp.path() / "cert.pem", client.cert_pem);
    write_file_atomic(tmp.path() / "key.pem", client.key_pem);
    return {url, (tmp.path() / "ca.pem").string(), (tmp.path() / "cert.pem").string(),
            (tmp.path() / "key.pem").string()};
  }
  AgentEndpoint endpoint(int port, const tls::KeyPair& client) {
    return endpoint("tcp://127.0.0.1:" + std::to_string(port), client);
  }
};

TEST_F(AgentClientTest, GetWithTheRightClientCert) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  auto r = agent_get(endpoint(server.port(), pki().client), "/_ping", 5s);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "OK");
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(server.last_client_cn(), "berth-client");

  auto missing = agent_get(endpoint(server.port(), pki().client), "/nope", 5s);
  EXPECT_EQ(missing.error, "");   // an HTTP answer is not a transport error
  EXPECT_EQ(missing.status, 404);
}

TEST_F(AgentClientTest, HttpsUrlAndPathWithoutSlashWork) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  auto r = agent_get(endpoint("https://127.0.0.1:" + std::to_string(server.port()) + "/", pki().client), "_ping", 5s);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.body, "OK");
}

TEST_F(AgentClientTest, PlainHttpIsRefused) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  auto r = agent_get(endpoint("http://127.0.0.1:" + std::to_string(server.port()), pki().client), "/_ping", 2s);
  EXPECT_NE(r.error, "");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(server.requests(), 0);
}

TEST_F(AgentClientTest, ClientCertFromAnotherCaIsRejected) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  auto r = agent_get(endpoint(server.port(), pki().other_client), "/_ping", 5s);
  EXPECT_NE(r.error, "");
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(eventually([&] { return server.failed_handshakes() == 1; })) << "client error: " << r.error;
  EXPECT_EQ(server.requests(), 0);
  std::printf("[ info ] rejected client cert error: %s\n", r.error.c_str());
}

TEST_F(AgentClientTest, ServerCertFromAnotherCaIsRejected) {
  FakeAgentServer server(pki().other_server, pki().ca.cert_pem);
  auto r = agent_get(endpoint(server.port(), pki().client), "/_ping", 5s);
  EXPECT_NE(r.error, "");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(server.requests(), 0);
}

TEST_F(AgentClientTest, ServerCertForAnotherAddressIsRejected) {
  FakeAgentServer server(pki().wrong_name_server, pki().ca.cert_pem);
  auto r = agent_get(endpoint(server.port(), pki().client), "/_ping", 5s);
  EXPECT_NE(r.error, "");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(server.requests(), 0);
}

TEST_F(AgentClientTest, TimeoutIsHonouredAgainstASilentServer) {
  SilentListener silent;
  const auto t0 = Clock::now();
  auto r = agent_get(endpoint(silent.port(), pki().client), "/_ping", 800ms);
  const auto took = Clock::now() - t0;
  EXPECT_NE(r.error, "");
  EXPECT_EQ(r.status, 0);
  EXPECT_GE(took, 750ms);
  EXPECT_LT(took, 800ms + 500ms);
}

TEST_F(AgentClientTest, TimeoutIsHonouredWhenTheRequestIsNeverAnswered) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  server.set_route("/_ping", {200, "OK", "text/plain", /*hang=*/true});
  const auto t0 = Clock::now();
  auto r = agent_get(endpoint(server.port(), pki().client), "/_ping", 800ms);
  const auto took = Clock::now() - t0;
  EXPECT_NE(r.error, "");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(server.requests(), 1);   // the TLS handshake and request went through
  EXPECT_GE(took, 750ms);
  EXPECT_LT(took, 800ms + 500ms);
}

TEST_F(AgentClientTest, DockerVersionIsReadFromJson) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  std::string err = "stale";
  EXPECT_EQ(agent_docker_version(endpoint(server.port(), pki().client), 5s, &err), "27.1.1-berth");
  EXPECT_EQ(err, "");

  server.set_route("/version", {200, "{not json", "application/json"});
  EXPECT_EQ(agent_docker_version(endpoint(server.port(), pki().client), 5s, &err), "");
  EXPECT_NE(err, "");

  server.set_route("/version", {200, R"({"ApiVersion":"1.46"})", "application/json"});
  EXPECT_EQ(agent_docker_version(endpoint(server.port(), pki().client), 5s, &err), "");
  EXPECT_NE(err.find("Version"), std::string::npos) << err;

  server.set_route("/version", {500, "boom", "text/plain"});
  EXPECT_EQ(agent_docker_version(endpoint(server.port(), pki().client), 5s, &err), "");
  EXPECT_NE(err.find("500"), std::string::npos) << err;
}

TEST_F(AgentClientTest, DockerVersionOfAnUnreachableAgentIsEmptyWithError) {
  std::string err;
  EXPECT_EQ(agent_docker_version(endpoint(free_tcp_port(), pki().client), 2s, &err), "");
  EXPECT_NE(err, "");
}

TEST_F(AgentClientTest, WaitForAgentReturnsOnceTheAgentAnswers) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  EXPECT_NO_THROW(wait_for_agent(endpoint(server.port(), pki().client), 5s));
}

TEST_F(AgentClientTest, WaitForAgentPollsUntilTheAgentStarts) {
  const int port = free_tcp_port();
  std::unique_ptr<FakeAgentServer> server;
  std::thread starter([&] {
    std::this_thread::sleep_for(700ms);
    server = std::make_unique<FakeAgentServer>(pki().server, pki().ca.cert_pem, "127.0.0.1", port);
  });
  const auto t0 = Clock::now();
  EXPECT_NO_THROW(wait_for_agent(endpoint(port, pki().client), 10s));
  const auto took = Clock::now() - t0;
  starter.join();
  EXPECT_GE(took, 650ms);
  EXPECT_LT(took, 3s);
}

TEST_F(AgentClientTest, WaitForAgentThrowsWithTheUrlAndLastError) {
  const std::string url = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
  const auto t0 = Clock::now();
  try {
    wait_for_agent(endpoint(url, pki().client), 700ms);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(url), std::string::npos) << msg;
    EXPECT_NE(msg.find("last error: "), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, 650ms);
  EXPECT_LT(took, 700ms + 500ms);
}

TEST_F(AgentClientTest, WaitForAgentHonoursTheDeadlineAgainstASilentServer) {
  SilentListener silent;
  const auto t0 = Clock::now();
  EXPECT_THROW(wait_for_agent(endpoint(silent.port(), pki().client), 1s), Error);
  EXPECT_LT(Clock::now() - t0, 1s + 500ms);
}

TEST_F(AgentClientTest, WaitForAgentNeedsPingToSayOk) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  server.set_route("/_ping", {500, "engine down", "text/plain"});
  try {
    wait_for_agent(endpoint(server.port(), pki().client), 700ms);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP 500"), std::string::npos) << e.what();
  }
  EXPECT_GE(server.requests(), 2);   // it kept polling
}

bool ipv6_loopback_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

TEST_F(AgentClientTest, Ipv6HostsAreBracketed) {
  if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback here";
  FakeAgentServer server(pki().server, pki().ca.cert_pem, "::1");
  const std::string port = std::to_string(server.port());
  for (const auto& url : {std::string("tcp://[::1]:") + port, "tcp://::1:" + port}) {
    auto r = agent_get(endpoint(url, pki().client), "/_ping", 5s);
    EXPECT_EQ(r.error, "") << url;
    EXPECT_EQ(r.body, "OK") << url;
  }
}

TEST_F(AgentClientTest, ConcurrentRequestsFromThreads) {
  FakeAgentServer server(pki().server, pki().ca.cert_pem);
  const auto ep = endpoint(server.port(), pki().client);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      if (agent_get(ep, "/_ping", 10s).body == "OK") ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 4);
}

}  // namespace
}  // namespace berth
