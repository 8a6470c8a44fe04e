// `berth import-docker-machine` end to end: a docker-machine store (written from
// docker-machine's documented schema) describing a generic host that is a real
// SSH host in a network namespace, with a real Engine API daemon on :2376 behind
// docker-machine-style certificates; then the real berth and docker CLIs.
//
// The daemon on the host is a real berth-agent started by this test, standing in
// for dockerd: it speaks the same Engine API (/_ping, /version, /info) over the
// same mutual TLS on port 2376 with a server certificate from docker-machine's
// CA, which is all that berth and the docker CLI see of dockerd. berth itself
// never installs or touches it (that is the point of an engine host).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "tests/integration/generic/berth_cli.h"
#include "tests/integration/support/run.h"
#include "tests/integration/support/testhost.h"
#include "tests/unit/import/docker_machine_fixture.h"

namespace berth::it {
namespace {

using nlohmann::json;

// Every path, mode, size, mtime and content under `root`: equal means untouched.
std::string digest(const fs::path& root) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::recursive_directory_iterator(root)) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  std::string out;
  for (const auto& p : paths) {
    struct stat st {};
    ::lstat(p.c_str(), &st);
    out += p.string() + "|" + std::to_string(st.st_mode) + "|" + std::to_string(st.st_size) + "|" +
           std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "\n";
    if (S_ISREG(st.st_mode)) out += read_text(p) + "\n";
  }
  return out;
}

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

class ImportDockerMachine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (auto why = testhost_unavailable_reason(); !why.empty()) {
      skip_ = why;
      return;
    }
    host_ = new TestHost("imp");
    pki_ = new TempDir("berth-it-dmpki");
    make_docker_machine_certs(pki_->path(), host_->ip());
    start_stand_in_dockerd();
  }
  static void TearDownTestSuite() {
    delete host_;   // kills every process in the host, the stand-in daemon too
    host_ = nullptr;
    delete pki_;
    pki_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_NE(host_, nullptr);
  }

  // RSA 2048 like docker-machine: a CA, a client certificate, and the host's
  // server certificate for its IP and localhost.
  static void make_docker_machine_certs(const fs::path& dir, const std::string& ip) {
    const std::string script = R"(set -e
cd ")" + dir.string() + R"("
openssl genrsa -out ca-key.pem 2048 2>/dev/null
openssl req -x509 -new -key ca-key.pem -days 3 -subj /O=tester -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment
openssl genrsa -out key.pem 2048 2>/dev/null
openssl req -new -key key.pem -subj /O=tester.client -out client.csr
printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3 -extfile client.ext \
  -out cert.pem 2>/dev/null
openssl genrsa -out server-key.pem 2048 2>/dev/null
openssl req -new -key server-key.pem -subj /O=tester.dm-gen -out server.csr
printf 'extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nsubjectAltName=IP:)" +
                               ip + R"(,DNS:localhost\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3 -extfile server.ext \
  -out server.pem 2>/dev/null
chmod 600 *.pem
)";
    auto r = run_bash(script, {}, 60s);
    if (!r.ok()) throw std::runtime_error("making certificates failed: " + r.describe());
  }

  // berth-agent on 0.0.0.0:2376 inside the host, with the docker-machine server certificate.
  static void start_stand_in_dockerd() {
    const fs::path etc = host_->root() / "etc" / "dockerd-stand-in";
    fs::create_directories(etc);
    for (const char* f : {"ca.pem", "server.pem", "server-key.pem"}) fs::copy_file(pki_->path() / f, etc / f);
    json config = {{"listen", "0.0.0.0"},
                   {"port", 2376},
                   {"tls",
                    {{"ca", "/etc/dockerd-stand-in/ca.pem"},
                     {"cert", "/etc/dockerd-stand-in/server.pem"},
                     {"key", "/etc/dockerd-stand-in/server-key.pem"}}},
                   {"log_file", "/var/log/dockerd-stand-in.log"},
                   {"pid_file", "/run/dockerd-stand-in.pid"},
                   {"data_root", "/var/lib/dockerd-stand-in"},
                   {"manage_network", false}};
    write_text(etc / "agent.json", config.dump());
    // Copied in: the host's /tmp is its own tmpfs, so a build tree under /tmp is not visible inside.
    const fs::path bin = host_->root() / "usr" / "local" / "sbin" / "dockerd-stand-in";
    fs::create_directories(bin.parent_path());
    fs::copy_file(stand_in_binary(), bin, fs::copy_options::overwrite_existing);
    fs::permissions(bin, fs::perms(0755));
    auto r = host_->exec({"/usr/local/sbin/dockerd-stand-in", "--config", "/etc/dockerd-stand-in/agent.json", "--daemon"}, 30s);
    if (!r.ok()) throw std::runtime_error("starting the stand-in daemon failed: " + r.describe());
    for (int i = 0; i < 100; ++i) {
      if (ping_directly().ok()) return;
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("the stand-in daemon does not answer on " + host_->ip() + ":2376: " +
                             ping_directly().describe());
  }

  // $BERTH_AGENT_BINARY, else the agent of this build.
  static fs::path stand_in_binary() {
    const char* p = std::getenv("BERTH_AGENT_BINARY");
    return p && *p ? fs::path(p) : agent_binary();
  }

  // The docker CLI straight at the host with docker-machine's own client certs (no berth involved).
  static RunResult ping_directly() {
    return run({"docker", "--tlsverify", "--tlscacert", (pki_->path() / "ca.pem").string(), "--tlscert",
                (pki_->path() / "cert.pem").string(), "--tlskey", (pki_->path() / "key.pem").string(), "-H",
                "tcp://" + host_->ip() + ":2376", "version", "--format", "{{.Server.Version}}"},
               {{"DOCKER_CONFIG", (pki_->path() / "docker").string()}, {"DOCKER_HOST", std::nullopt},
                {"DOCKER_CONTEXT", std::nullopt}},
               20s);
  }

  // A docker-machine store with host `name` = the generic driver on the test host.
  static void write_store(test::DockerMachineStore& dms, const std::string& name) {
    dms.add_generic(name, host_->ip(), 22, 2376, read_text(host_->private_key()));
    for (const char* f : {"ca.pem", "ca-key.pem", "cert.pem", "key.pem"})
      test::DockerMachineStore::write(dms.root() / "certs" / f, read_text(pki_->path() / f));
    for (const char* f : {"ca.pem", "cert.pem", "key.pem", "server.pem", "server-key.pem"})
      test::DockerMachineStore::write(dms.dir(name) / f, read_text(pki_->path() / f));
  }

  static inline std::string skip_;
  static inline TestHost* host_ = nullptr;
  static inline TempDir* pki_ = nullptr;
};

TEST_F(ImportDockerMachine, GenericHostWorksThroughBerthAndStaysAfterRm) {
  TempDir dm_dir("berth-it-dmstore");
  test::DockerMachineStore dms(dm_dir.path() / "machine");
  write_store(dms, "dm-gen");
  const std::string before = digest(dms.root());
  BerthCli berth;

  auto r = berth({"import-docker-machine", "--from", dms.root().string()});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(has(r.out, "Imported dm-gen (generic driver, dockerd at tcp://" + host_->ip() + ":2376)")) << r.out;

  // ls: Running, with the daemon's version.
  auto rows = berth.ls_json();
  ASSERT_EQ(rows.count("dm-gen"), 1u);
  EXPECT_EQ(rows["dm-gen"]["State"], "Running") << rows["dm-gen"].dump();
  const std::string version = rows["dm-gen"]["DockerVersion"];
  EXPECT_FALSE(version.empty() || version == "Unknown") << rows["dm-gen"].dump();
  RecordProperty("daemon_version", version);
  EXPECT_EQ(rows["dm-gen"]["URL"], "tcp://" + host_->ip() + ":2376");

  // The stock docker CLI through `berth env`.
  r = berth.bash("eval \"$(berth env dm-gen)\" && docker version --format '{{.Server.Version}}' && "
                 "docker info --format 'info-ok {{.ServerVersion}}' && echo \"$DOCKER_CERT_PATH\"",
                 60s);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(has(r.out, version + "\n")) << r.out;
  EXPECT_TRUE(has(r.out, "info-ok " + version)) << r.out;
  EXPECT_TRUE(has(r.out, berth.machine_dir("dm-gen").string())) << r.out;

  // SSH with docker-machine's key; the host key is pinned at first contact.
  r = berth({"ssh", "dm-gen", "echo", "hi"}, 60s);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out, "hi\n");
  auto cfg = json::parse(read_text(berth.machine_dir("dm-gen") / "config.json"));
  EXPECT_EQ(std::string(cfg["ssh"]["host_key_fingerprint"]).rfind("SHA256:", 0), 0u) << cfg.dump();
  EXPECT_EQ(cfg["engine_kind"], "dockerd");

  r = berth({"status", "dm-gen"});
  EXPECT_EQ(r.out, "Running\n") << r.describe();

  // berth-agent's commands are refused, in one line that says what to do.
  r = berth({"provision", "dm-gen"}, 60s);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_TRUE(has(r.err, "is a docker-machine engine host")) << r.err;
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  EXPECT_FALSE(host_->exists_inside("/usr/local/bin/berth-agent"));   // nothing was installed

  // rm forgets the machine; the host keeps its daemon, docker-machine's store is untouched.
  // A canary: rm on a berth-agent host uninstalls the agent, which deletes /etc/berth.
  fs::create_directories(host_->root() / "etc" / "berth");
  write_text(host_->root() / "etc" / "berth" / "canary", "rm must not uninstall anything here\n");
  r = berth({"rm", "-y", "dm-gen"}, 120s);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_FALSE(fs::exists(berth.machine_dir("dm-gen")));
  EXPECT_TRUE(host_->exists_inside("/etc/berth/canary"));
  EXPECT_TRUE(has(host_->processes(), "dockerd-stand-in")) << host_->processes();
  auto direct = ping_directly();
  EXPECT_TRUE(direct.ok()) << direct.describe();
  EXPECT_EQ(direct.out, version + "\n");
  EXPECT_EQ(digest(dms.root()), before);
}

}  // namespace
}  // namespace berth::it
