// Drives the real, static berth-agent binary: the stock docker CLI over mutual
// TLS, refused clients, SIGHUP certificate reload, SIGTERM, --daemon, bad configs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "test_support.h"

namespace berth::agent::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kAgent = BERTH_AGENT_BINARY;
constexpr const char* kDocker = "/usr/local/bin/docker";

// A berth-agent child process in the foreground; killed if a test leaves it running.
class AgentProcess {
 public:
  AgentProcess(const fs::path& config, const fs::path& output) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::execl(kAgent, "berth-agent", "--config", config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~AgentProcess() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !exited_; }
  // Exit code, or -1 if it is still running after `timeout`.
  int wait_exit(std::chrono::milliseconds timeout) {
    int status = 0;
    bool done = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
    if (!done) return -1;
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
};

class AgentBinary : public ::testing::Test {
 protected:
  TempDir tmp;
  TestPki pki{tmp.path};
  fs::path config = tmp.path / "agent.json";
  fs::path log = tmp.path / "agent.log";
  fs::path pidfile = tmp.path / "agent.pid";
  std::unique_ptr<AgentProcess> agent;
  int port = 0;

  void SetUp() override {
    pki.make_ca("ca", "berth test CA");
    pki.make_server_cert("ca", "server", "berth-test-host");
    pki.make_client_cert("ca", "client", "berth-client");
    write_config();
  }

  void write_config(json overrides = json::object()) {
    json c = {
        {"listen", "127.0.0.1"},
        {"port", 0},
        {"tls", {{"ca", pki.cert("ca")}, {"cert", pki.cert("server")}, {"key", pki.key("server")}}},
        {"log_file", log},
        {"pid_file", pidfile},
        {"data_root", tmp.path / "data"},
        {"manage_network", false},  // never a bridge or iptables rule on the build host
        {"labels", {"berth.test=yes"}}};
    c.merge_patch(overrides);
    write_text(config, c.dump());
  }

  // The port from the "started: listening on 127.0.0.1:PORT" line; 0 until then.
  int logged_port() const {
    std::smatch m;
    std::string text = read_text(log);
    static const std::regex started(R"(started: listening on 127\.0\.0\.1:(\d+))");
    return std::regex_search(text, m, started) ? std::stoi(m[1]) : 0;
  }

  void start() {
    agent = std::make_unique<AgentProcess>(config, tmp.path / "agent.out");
    ASSERT_TRUE(wait_until([&] { return logged_port() != 0; }, 5s))
        << "agent did not start; output: " << read_text(tmp.path / "agent.out") << read_text(log);
    port = logged_port();
  }

  std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(port) + path;
  }

  CommandResult curl(const std::string& args, const std::string& client = "client") {
    std::string cert = client.empty() ? ""
                                      : " --cert " + shell_quote(pki.cert(client).string()) +
                                            " --key " + shell_quote(pki.key(client).string());
    return run("curl -sS --max-time 5 --cacert " + shell_quote(pki.cert("ca").string()) + cert +
               " " + args);
  }

  CommandResult docker(const std::string& args) {
    return run("DOCKER_CONFIG=" + shell_quote((tmp.path / "docker-config").string()) + " " +
               kDocker + " --tlsverify --tlscacert " + shell_quote(pki.cert("ca").string()) +
               " --tlscert " + shell_quote(pki.cert("client").string()) + " --tlskey " +
               shell_quote(pki.key("client").string()) +
               " -H tcp://127.0.0.1:" + std::to_string(port) + " " + args);
  }

  // SHA-256 fingerprint of the certificate the agent presents to a new connection.
  std::string served_fingerprint() {
    CommandResult r = run("openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                          " -CAfile " + shell_quote(pki.cert("ca").string()) + " -cert " +
                          shell_quote(pki.cert("client").string()) + " -key " +
                          shell_quote(pki.key("client").string()) +
                          " </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256");
    auto eq = r.output.find('=');
    return eq == std::string::npos ? "<none: " + r.output + ">"
                                   : r.output.substr(eq + 1, r.output.find('\n') - eq - 1);
  }
};

TEST(AgentBinaryFile, IsStaticAndPrintsItsVersion) {
  CommandResult file = run(std::string("file -L ") + kAgent);
  EXPECT_NE(file.output.find("statically linked"), std::string::npos) << file.output;
  CommandResult version = run(std::string(kAgent) + " --version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.output, "berth-agent " BERTH_VERSION "\n");
}

TEST_F(AgentBinary, DockerCliVersionAndInfoWork) {
  if (!fs::exists(kDocker)) GTEST_SKIP() << kDocker << " is not installed";
  start();
  CommandResult v =
      docker("version --format '{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}'");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  EXPECT_EQ(v.output, BERTH_VERSION " 1.47 linux\n");

  CommandResult full = docker("version");
  ASSERT_EQ(full.exit_code, 0) << full.output;
  EXPECT_NE(full.output.find("Server: berth-agent"), std::string::npos) << full.output;

  CommandResult info = docker("info");
  ASSERT_EQ(info.exit_code, 0) << info.output;
  std::string id = read_text(tmp.path / "data" / "engine-id");
  id.pop_back();
  for (const std::string& expected : std::vector<std::string>{
           std::string("Server Version: ") + BERTH_VERSION, "Containers: 0",
           "Storage Driver: overlay2", "Default Runtime: crun", "ID: " + id,
           "Docker Root Dir: " + (tmp.path / "data").string(), std::string("berth.test=yes")}) {
    EXPECT_NE(info.output.find(expected), std::string::npos) << expected << " missing in:\n"
                                                             << info.output;
  }
  EXPECT_EQ(info.output.find("ERROR"), std::string::npos) << info.output;

  // The runtime's routes answer on the build host too (containers themselves
  // run in berth-os VMs: tests/integration/containers).
  CommandResult ps = docker("ps -a");
  ASSERT_EQ(ps.exit_code, 0) << ps.output;
  EXPECT_EQ(ps.output.rfind("CONTAINER ID", 0), 0u) << ps.output;
  EXPECT_EQ(ps.output.find('\n'), ps.output.size() - 1) << "no containers expected:\n" << ps.output;
  CommandResult vol = docker("volume create berth-test-vol");
  ASSERT_EQ(vol.exit_code, 0) << vol.output;
  EXPECT_TRUE(fs::is_directory(tmp.path / "data" / "volumes" / "berth-test-vol" / "_data"));
  CommandResult missing = docker("image inspect no-such-image:1");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("No such image: no-such-image:1"), std::string::npos)
      << missing.output;
}

TEST_F(AgentBinary, ServesPingAndLogsEachRequest) {
  start();
  CommandResult ok = curl("-i " + url("/v1.47/_ping"));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("HTTP/1.1 200 OK"), std::string::npos);
  EXPECT_NE(ok.output.find("Api-Version: 1.47"), std::string::npos);
  EXPECT_EQ(ok.output.substr(ok.output.size() - 2), "OK");

  CommandResult head = curl("-I " + url("/_ping"));
  EXPECT_NE(head.output.find("Content-Length: 0"), std::string::npos) << head.output;
  EXPECT_NE(head.output.find("Builder-Version: 1"), std::string::npos) << head.output;

  CommandResult too_new = curl("-s " + url("/v1.99/version"));
  EXPECT_EQ(too_new.output,
            R"({"message":"client version 1.99 is too new. Maximum supported API version is 1.47"})"
            "\n");

  // The last request's line is written last (under load, a moment after curl returns).
  EXPECT_TRUE(wait_until(
      [&] { return read_text(log).find(R"(method="GET" path="/v1.99/version" status=400)") != std::string::npos; },
      5s))
      << read_text(log);
  std::string text = read_text(log);
  EXPECT_EQ(text.find("PRIVATE KEY"), std::string::npos);
  EXPECT_NE(text.find(R"(request cn="berth-client" method="GET" path="/v1.47/_ping" status=200 duration_ms=)"),
            std::string::npos)
      << text;
}

TEST_F(AgentBinary, ClientWithoutCertificateIsRefused) {
  start();
  CommandResult r = curl(url("/_ping"), /*client=*/"");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("OK"), std::string::npos) << r.output;
  EXPECT_TRUE(wait_until(
      [&] {
        return read_text(log).find("failed: peer did not return a certificate") !=
               std::string::npos;
      },
      2s))
      << read_text(log);
  EXPECT_EQ(read_text(log).find("request cn="), std::string::npos) << "no request may get through";
}

TEST_F(AgentBinary, ClientCertificateFromAnotherCaIsRefused) {
  pki.make_ca("other-ca", "someone else's CA");
  pki.make_client_cert("other-ca", "intruder", "berth-client");  // same CN, wrong issuer
  start();
  CommandResult r = curl(url("/_ping"), "intruder");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(wait_until(
      [&] { return read_text(log).find("failed: certificate verify failed") != std::string::npos; },
      2s))
      << read_text(log);
  EXPECT_EQ(read_text(log).find("request cn="), std::string::npos);
  EXPECT_EQ(curl(url("/_ping")).output, "OK");  // the right client still gets in
}

TEST_F(AgentBinary, SighupReloadsTheCertificateForNewConnections) {
  start();
  const std::string old_fp = pki.fingerprint("server");
  EXPECT_EQ(served_fingerprint(), old_fp);

  // A broken certificate file: the reload fails and the old certificate stays.
  write_text(pki.cert("server"), "not a certificate\n");
  ::kill(agent->pid(), SIGHUP);
  ASSERT_TRUE(
      wait_until([&] { return read_text(log).find("reload failed") != std::string::npos; }, 2s))
      << read_text(log);
  EXPECT_EQ(served_fingerprint(), old_fp);

  pki.make_server_cert("ca", "server", "berth-test-host");  // new key, new serial
  const std::string new_fp = pki.fingerprint("server");
  ASSERT_NE(new_fp, old_fp);
  ::kill(agent->pid(), SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] { return read_text(log).find("reloaded TLS files") != std::string::npos; }, 2s))
      << read_text(log);
  EXPECT_EQ(served_fingerprint(), new_fp);
  EXPECT_EQ(curl(url("/_ping")).output, "OK");
  EXPECT_TRUE(agent->running());
}

TEST_F(AgentBinary, SigtermStopsCleanlyAndRemovesThePidfile) {
  start();
  ASSERT_TRUE(fs::exists(pidfile));
  EXPECT_EQ(read_text(pidfile), std::to_string(agent->pid()) + "\n");
  ::kill(agent->pid(), SIGTERM);
  EXPECT_EQ(agent->wait_exit(5s), 0);
  EXPECT_FALSE(fs::exists(pidfile));
  std::string text = read_text(log);
  EXPECT_NE(text.find("received SIGTERM; stopping"), std::string::npos) << text;
  EXPECT_NE(text.find("berth-agent stopped"), std::string::npos) << text;
}

TEST_F(AgentBinary, SigintStopsToo) {
  start();
  ::kill(agent->pid(), SIGINT);
  EXPECT_EQ(agent->wait_exit(5s), 0);
  EXPECT_FALSE(fs::exists(pidfile));
}

TEST_F(AgentBinary, DaemonModeDetachesAfterStartup) {
  fs::path other_pid = tmp.path / "daemon.pid";
  CommandResult r = run(std::string(kAgent) + " --config " + shell_quote(config.string()) +
                        " --daemon --pidfile " + shell_quote(other_pid.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
  // Ready when the launcher returned: the pidfile and the listening line exist.
  ASSERT_TRUE(fs::exists(other_pid));
  EXPECT_FALSE(fs::exists(pidfile)) << "--pidfile overrides pid_file";
  pid_t pid = std::stoi(read_text(other_pid));
  port = logged_port();
  ASSERT_NE(port, 0);
  EXPECT_NE(::getsid(pid), ::getsid(0)) << "the daemon runs in its own session";
  EXPECT_NE(::getsid(pid), pid) << "and is not a session leader (no controlling tty)";
  EXPECT_EQ(curl(url("/_ping")).output, "OK");
  ::kill(pid, SIGTERM);
  EXPECT_TRUE(wait_until([&] { return !fs::exists(other_pid); }, 5s));
  // Gone, or a zombie waiting for whichever process adopted it.
  EXPECT_TRUE(wait_until(
      [&] {
        std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
        return stat.empty() || stat.find(") Z ") != std::string::npos;
      },
      5s));
}

TEST_F(AgentBinary, DaemonStartupFailureReachesTheLauncher) {
  start();  // holds the port
  write_config({{"port", port}, {"pid_file", (tmp.path / "second.pid").string()}});
  CommandResult r =
      run(std::string(kAgent) + " --config " + shell_quote(config.string()) + " --daemon");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("berth-agent: error: cannot bind to 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_FALSE(fs::exists(tmp.path / "second.pid"));
}

TEST_F(AgentBinary, BadConfigGivesOneErrorLineAndExit1) {
  struct Case {
    std::string config_text;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"{\"port\": 2376,,}", "invalid JSON"},
      {R"({"port": "x"})", "\"port\" must be an integer"},
      {json({{"tls",
              {{"ca", pki.cert("ca")},
               {"cert", (tmp.path / "missing.pem").string()},
               {"key", pki.key("server")}}},
             {"log_file", log}})
           .dump(),
       "cannot load TLS certificate " + (tmp.path / "missing.pem").string() + ": No such file"},
      {json({{"tls",
              {{"ca", pki.cert("ca")}, {"cert", pki.cert("server")}, {"key", pki.key("client")}}},
             {"log_file", log}})
           .dump(),
       "does not match the certificate"},
      {json({{"log_file", (tmp.path / "no/such/dir/agent.log").string()}}).dump(),
       "cannot open log file"},
  };
  for (const Case& c : cases) {
    write_text(config, c.config_text);
    CommandResult r = run(std::string(kAgent) + " --config " + shell_quote(config.string()));
    EXPECT_EQ(r.exit_code, 1) << c.config_text << "\n" << r.output;
    EXPECT_TRUE(r.output.starts_with("berth-agent: error: ")) << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_EQ(r.output.find("BEGIN"), std::string::npos) << "no key material: " << r.output;
  }
  CommandResult missing =
      run(std::string(kAgent) + " --config " + shell_quote((tmp.path / "nope.json").string()));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("cannot read config"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace berth::agent::testing
