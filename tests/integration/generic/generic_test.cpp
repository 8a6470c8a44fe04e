// The generic driver end to end, on three throwaway SSH hosts shared by the
// cases below: the real berth binary, the real berth-agent, the real docker CLI.
#include <gtest/gtest.h>
#include <signal.h>

#include <array>
#include <fstream>
#include <sstream>
#include <memory>
#include <set>

#include "tests/integration/generic/berth_cli.h"

namespace berth::it {
namespace {

constexpr int kHosts = 3;
const std::array<std::string, kHosts> kNames = {"gen-a", "gen-b", "gen-c"};
const std::string kLabel = "berth.test=label-a";
const std::string kExtraSan = "gen-a.berth.test";

class GenericDriver : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      setup_error_ = testhost_unavailable_reason();
      if (!setup_error_.empty()) return;
      if (!fs::exists(berth_binary())) {
        setup_error_ = "no berth binary at " + berth_binary().string() + "; build the 'berth' target";
        return;
      }
      cli_ = std::make_unique<BerthCli>();
      for (int i = 0; i < kHosts; ++i) hosts_[i] = std::make_unique<TestHost>(kNames[i]);
      // Three creates at once, sharing one store (and its CA).
      std::vector<Process> creates;
      for (int i = 0; i < kHosts; ++i) {
        std::vector<std::string> extra;
        if (i == 0) extra = {"--engine-label", kLabel, "--tls-san", kExtraSan};
        creates.push_back(cli_->start(cli_->create_args(*hosts_[i], kNames[i], extra)));
      }
      for (int i = 0; i < kHosts; ++i) created_[i] = creates[i].wait(240s);
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }

  static void TearDownTestSuite() {
    if (cli_) {
      for (const auto& name : kNames) (*cli_)({"rm", "-f", name}, 60s);
    }
    for (auto& h : hosts_) h.reset();
    cli_.reset();
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
  }

  // Fails the test unless machine i was created.
  void require_machine(int i) {
    ASSERT_EQ(created_[i].exit_code, 0) << "berth create " << kNames[i] << " failed:\n" << created_[i].describe();
  }

  const BerthCli& cli() { return *cli_; }
  const TestHost& host(int i) { return *hosts_[i]; }

  // bash: point docker at machine i through `berth env`, then run `docker_args`.
  RunResult docker_via_env(int i, const std::string& docker_args) {
    return cli().bash("set -e; eval \"$(berth env " + kNames[i] + ")\"; docker " + docker_args);
  }

  struct TlsFiles {
    std::string ca, cert, key, host;
  };
  // From `berth config NAME`: --tlscacert="..." --tlscert="..." --tlskey="..." -H=tcp://...
  TlsFiles tls_files(int i) {
    auto r = cli()({"config", kNames[i]});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    TlsFiles files;
    auto value = [](const std::string& line, const std::string& prefix) -> std::optional<std::string> {
      if (line.rfind(prefix, 0) != 0) return std::nullopt;
      std::string v = line.substr(prefix.size());
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    };
    for (const auto& line : lines(r.out)) {
      if (auto v = value(line, "--tlscacert=")) files.ca = *v;
      if (auto v = value(line, "--tlscert=")) files.cert = *v;
      if (auto v = value(line, "--tlskey=")) files.key = *v;
      if (auto v = value(line, "-H=")) files.host = *v;
    }
    return files;
  }

  // SHA-256 fingerprint of the certificate the agent on machine i presents.
  std::string server_fingerprint(int i) {
    TlsFiles f = tls_files(i);
    auto r = run_bash("openssl s_client -connect " + host(i).ip() + ":2376 -CAfile '" + f.ca + "' -cert '" +
                          f.cert + "' -key '" + f.key +
                          "' </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
                      {}, 30s);
    return r.ok() ? trim(r.out) : "";
  }

  RunResult curl_ping(int i, const std::vector<std::string>& tls_args) {
    std::vector<std::string> argv = {"curl", "-sS", "--max-time", "10"};
    argv.insert(argv.end(), tls_args.begin(), tls_args.end());
    argv.push_back("https://" + host(i).ip() + ":2376/_ping");
    return run(argv, {}, 30s);
  }

  static inline std::string setup_error_;
  static inline std::unique_ptr<BerthCli> cli_;
  static inline std::array<std::unique_ptr<TestHost>, kHosts> hosts_;
  static inline std::array<RunResult, kHosts> created_;
};

// a) three creates in parallel, then ls
TEST_F(GenericDriver, ParallelCreatesAllSucceed) {
  for (int i = 0; i < kHosts; ++i) {
    SCOPED_TRACE(kNames[i]);
    EXPECT_EQ(created_[i].exit_code, 0) << created_[i].describe();
    EXPECT_FALSE(created_[i].timed_out);
    EXPECT_TRUE(fs::exists(cli().machine_dir(kNames[i]) / "config.json"));
    EXPECT_TRUE(host(i).exists_inside("/usr/local/bin/berth-agent"));
    EXPECT_NE(host(i).processes().find("berth-agent"), std::string::npos) << host(i).processes();
  }
}

TEST_F(GenericDriver, LsShowsAllRunningWithDockerVersion) {
  for (int i = 0; i < kHosts; ++i) require_machine(i);
  auto table = cli()({"ls"}, 60s);
  ASSERT_EQ(table.exit_code, 0) << table.describe();
  auto rows = lines(table.out);
  ASSERT_EQ(rows.size(), 1u + kHosts) << table.out;
  for (const char* column : {"NAME", "ACTIVE", "DRIVER", "STATE", "URL", "DOCKER", "ERRORS"})
    EXPECT_NE(rows[0].find(column), std::string::npos) << "header lacks " << column << ": " << rows[0];
  for (int i = 0; i < kHosts; ++i) {
    SCOPED_TRACE(kNames[i]);
    const std::string& row = rows[1 + i];  // sorted by name
    EXPECT_EQ(row.rfind(kNames[i] + " ", 0), 0u) << row;
    EXPECT_NE(row.find("generic"), std::string::npos) << row;
    EXPECT_NE(row.find("Running"), std::string::npos) << row;
    EXPECT_NE(row.find("tcp://" + host(i).ip() + ":2376"), std::string::npos) << row;
  }

  auto machines = cli().ls_json();
  ASSERT_EQ(machines.size(), static_cast<size_t>(kHosts));
  for (int i = 0; i < kHosts; ++i) {
    SCOPED_TRACE(kNames[i]);
    const auto& m = machines.at(kNames[i]);
    EXPECT_EQ(m.at("State"), "Running") << m.dump();
    EXPECT_EQ(m.at("DriverName"), "generic") << m.dump();
    EXPECT_EQ(m.at("URL"), "tcp://" + host(i).ip() + ":2376") << m.dump();
    const std::string docker = m.at("DockerVersion");
    EXPECT_FALSE(docker.empty()) << m.dump();
    EXPECT_NE(docker, "Unknown") << m.dump();
    EXPECT_EQ(m.at("Error"), "") << m.dump();
  }
}

TEST_F(GenericDriver, LsFiltersQuietAndTemplates) {
  for (int i = 0; i < kHosts; ++i) require_machine(i);
  auto quiet = cli()({"ls", "-q"}, 60s);
  ASSERT_EQ(quiet.exit_code, 0) << quiet.describe();
  EXPECT_EQ(lines(quiet.out), std::vector<std::string>(kNames.begin(), kNames.end()));

  auto by_name = cli()({"ls", "-q", "--filter", "name=^gen-b$"}, 60s);
  ASSERT_EQ(by_name.exit_code, 0) << by_name.describe();
  EXPECT_EQ(lines(by_name.out), std::vector<std::string>{"gen-b"});

  auto by_label = cli()({"ls", "-q", "--filter", "label=" + kLabel}, 60s);
  ASSERT_EQ(by_label.exit_code, 0) << by_label.describe();
  EXPECT_EQ(lines(by_label.out), std::vector<std::string>{"gen-a"});

  auto by_driver = cli()({"ls", "-q", "--filter", "driver=generic", "-t", "5"}, 60s);
  ASSERT_EQ(by_driver.exit_code, 0) << by_driver.describe();
  EXPECT_EQ(lines(by_driver.out).size(), static_cast<size_t>(kHosts)) << by_driver.out;

  auto stopped = cli()({"ls", "-q", "--filter", "state=Stopped"}, 60s);
  ASSERT_EQ(stopped.exit_code, 0) << stopped.describe();
  EXPECT_EQ(trim(stopped.out), "");

  auto templ = cli()({"ls", "--format", "{{.Name}} {{.State}}"}, 60s);
  ASSERT_EQ(templ.exit_code, 0) << templ.describe();
  EXPECT_EQ(lines(templ.out), (std::vector<std::string>{"gen-a Running", "gen-b Running", "gen-c Running"}));
}

TEST_F(GenericDriver, IpUrlStatusConfigAndInspect) {
  require_machine(0);
  const std::string url = "tcp://" + host(0).ip() + ":2376";
  auto ip = cli()({"ip", "gen-a"});
  EXPECT_EQ(ip.exit_code, 0) << ip.describe();
  EXPECT_EQ(trim(ip.out), host(0).ip());
  auto u = cli()({"url", "gen-a"});
  EXPECT_EQ(u.exit_code, 0) << u.describe();
  EXPECT_EQ(trim(u.out), url);
  auto status = cli()({"status", "gen-a"});
  EXPECT_EQ(status.exit_code, 0) << status.describe();
  EXPECT_EQ(trim(status.out), "Running");

  auto config = cli()({"config", "gen-a"});
  ASSERT_EQ(config.exit_code, 0) << config.describe();
  EXPECT_NE(config.out.find("--tlsverify"), std::string::npos) << config.out;
  EXPECT_NE(config.out.find("-H=" + url), std::string::npos) << config.out;
  TlsFiles files = tls_files(0);
  for (const auto& f : {files.ca, files.cert, files.key}) {
    ASSERT_FALSE(f.empty()) << config.out;
    EXPECT_TRUE(fs::is_regular_file(f)) << f;
  }
  EXPECT_EQ(fs::status(files.key).permissions() & (fs::perms::group_all | fs::perms::others_all), fs::perms::none)
      << files.key << " is readable by others";

  auto inspect = cli()({"inspect", "gen-a"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.describe();
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(inspect.out)) << inspect.out;
  EXPECT_NE(inspect.out.find("gen-a"), std::string::npos);
  EXPECT_NE(inspect.out.find(host(0).ip()), std::string::npos);
  EXPECT_EQ(inspect.out.find("PRIVATE KEY"), std::string::npos) << "inspect leaks key material";
}

// b) the docker CLI through `berth env`
TEST_F(GenericDriver, DockerVersionThroughEnv) {
  require_machine(0);
  auto env = cli()({"env", "gen-a"});
  ASSERT_EQ(env.exit_code, 0) << env.describe();
  EXPECT_NE(env.out.find("export DOCKER_HOST=\"tcp://" + host(0).ip() + ":2376\""), std::string::npos) << env.out;
  EXPECT_NE(env.out.find("export DOCKER_TLS_VERIFY=\"1\""), std::string::npos) << env.out;
  EXPECT_NE(env.out.find("export DOCKER_CERT_PATH="), std::string::npos) << env.out;

  auto fish = cli()({"env", "--shell", "fish", "gen-a"});
  ASSERT_EQ(fish.exit_code, 0) << fish.describe();
  EXPECT_NE(fish.out.find("set -gx DOCKER_HOST \"tcp://" + host(0).ip() + ":2376\""), std::string::npos)
      << fish.out;
  EXPECT_EQ(fish.out.find("export "), std::string::npos) << fish.out;

  auto version = docker_via_env(0, "version --format '{{.Server.Version}}'");
  ASSERT_EQ(version.exit_code, 0) << version.describe();
  const std::string server_version = trim(version.out);
  EXPECT_FALSE(server_version.empty());
  auto machines = cli().ls_json();
  EXPECT_EQ(machines.at("gen-a").at("DockerVersion"), server_version);
}

TEST_F(GenericDriver, DockerInfoShowsEngineLabel) {
  require_machine(0);
  require_machine(1);
  auto info = docker_via_env(0, "info --format '{{json .Labels}}'");
  ASSERT_EQ(info.exit_code, 0) << info.describe();
  EXPECT_NE(info.out.find(kLabel), std::string::npos) << info.out;
  auto other = docker_via_env(1, "info --format '{{json .Labels}}'");
  ASSERT_EQ(other.exit_code, 0) << other.describe();
  EXPECT_EQ(other.out.find(kLabel), std::string::npos) << "gen-b got gen-a's label: " << other.out;
}

// c) berth use: a docker context
TEST_F(GenericDriver, UseMakesMachineTheCurrentDockerContext) {
  require_machine(1);
  auto use = cli()({"use", "gen-b"});
  ASSERT_EQ(use.exit_code, 0) << use.describe();

  auto show = cli().bash("docker context show");
  EXPECT_EQ(trim(show.out), "berth-gen-b") << show.describe();
  auto endpoint = cli().bash("docker context inspect berth-gen-b --format '{{.Endpoints.docker.Host}}'");
  EXPECT_EQ(trim(endpoint.out), "tcp://" + host(1).ip() + ":2376") << endpoint.describe();
  auto by_name = cli().bash("docker --context berth-gen-b version --format '{{.Server.Version}}'");
  EXPECT_EQ(by_name.exit_code, 0) << by_name.describe();
  EXPECT_FALSE(trim(by_name.out).empty());
  auto current = cli().bash("docker version --format '{{.Server.Version}}'");
  EXPECT_EQ(current.exit_code, 0) << current.describe();
  EXPECT_EQ(trim(current.out), trim(by_name.out));
  auto active = cli()({"ls", "--format", "{{.Name}} {{.ActiveHost}}"}, 60s);
  EXPECT_NE(active.out.find("gen-b *"), std::string::npos) << active.describe();
  EXPECT_NE(active.out.find("gen-a -"), std::string::npos) << active.describe();

  auto unset = cli()({"use", "--unset"});
  ASSERT_EQ(unset.exit_code, 0) << unset.describe();
  auto after = cli().bash("docker context show");
  EXPECT_EQ(trim(after.out), "default") << after.describe();
}

// d) ssh and scp
TEST_F(GenericDriver, SshRunsCommandsAndReturnsTheirExitCode) {
  require_machine(0);
  auto hi = cli()({"ssh", "gen-a", "echo", "hi"});
  EXPECT_EQ(hi.exit_code, 0) << hi.describe();
  EXPECT_EQ(trim(hi.out), "hi");
  auto f = cli()({"ssh", "gen-a", "false"});
  EXPECT_EQ(f.exit_code, 1) << f.describe();
  auto seven = cli()({"ssh", "gen-a", "exit 7"});
  EXPECT_EQ(seven.exit_code, 7) << seven.describe();
  auto where = cli()({"ssh", "gen-a", "hostname"});
  EXPECT_EQ(where.exit_code, 0) << where.describe();
  EXPECT_EQ(trim(where.out), "gen-a") << "the host name should be the machine name";
}

TEST_F(GenericDriver, ScpCopiesBetweenHostAndMachinesAndBetweenMachines) {
  require_machine(0);
  require_machine(1);
  std::string content = "line one\nline two with 'quotes' and $dollar\n";
  for (int i = 0; i < 70000; ++i) content += static_cast<char>((i * 31) % 256);
  const fs::path local = cli().scratch() / "payload.bin";
  write_text(local, content);

  auto up = cli()({"scp", local.string(), "gen-a:/tmp/payload.bin"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_EQ(read_text(host(0).root() / "tmp/payload.bin"), content);

  const fs::path back = cli().scratch() / "back.bin";
  auto down = cli()({"scp", "gen-a:/tmp/payload.bin", back.string()});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_EQ(read_text(back), content);

  auto across = cli()({"scp", "gen-a:/tmp/payload.bin", "gen-b:/tmp/across.bin"});
  ASSERT_EQ(across.exit_code, 0) << across.describe();
  EXPECT_EQ(read_text(host(1).root() / "tmp/across.bin"), content);
}

TEST_F(GenericDriver, ScpRecursiveCopiesDirectories) {
  require_machine(2);
  const fs::path tree = cli().scratch() / "tree";
  fs::create_directories(tree / "sub" / "deeper");
  write_text(tree / "top.txt", "top\n");
  write_text(tree / "sub" / "mid.txt", "mid\n");
  write_text(tree / "sub" / "deeper" / "low.txt", "low\n");

  auto up = cli()({"scp", "-r", tree.string(), "gen-c:/tmp/tree-copy"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  const fs::path remote = host(2).root() / "tmp/tree-copy";
  EXPECT_EQ(regular_files(remote), regular_files(tree));
  EXPECT_EQ(read_text(remote / "sub/deeper/low.txt"), "low\n");

  const fs::path back = cli().scratch() / "tree-back";
  auto down = cli()({"scp", "-r", "gen-c:/tmp/tree-copy", back.string()});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_EQ(regular_files(back), regular_files(tree));
  EXPECT_EQ(read_text(back / "sub/mid.txt"), "mid\n");
}

// True when something is mounted on `dir` (read from mountinfo, never touching
// the directory: a dead FUSE mount would block).
bool is_mount_point(const fs::path& dir) {
  std::ifstream in("/proc/self/mountinfo");
  const std::string want = fs::absolute(dir).lexically_normal().string();
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    if ((f >> id >> parent >> dev >> root >> point) && point == want) return true;
  }
  return false;
}

// Lazily detaches whatever a failing case left mounted on `dir`, before the
// store's TempDir is removed: removal would otherwise walk into the FUSE mount
// and block once its SSH host is gone.
class MountGuard {
 public:
  explicit MountGuard(fs::path dir) : dir_(std::move(dir)) {}
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;
  ~MountGuard() {
    for (int i = 0; i < 3 && is_mount_point(dir_); ++i) run({"fusermount", "-uz", dir_.string()}, {}, 10s);
  }

 private:
  fs::path dir_;
};

// The mount is read and written by child processes with a timeout, so a hung
// sshfs fails the case instead of blocking the suite.
RunResult through_mount(const std::string& script) { return run_bash(script, {}, 20s); }

// The listing of `dir`, sorted, one name a line.
std::string listing(const fs::path& dir) { return through_mount("ls -1 '" + dir.string() + "'").out; }

TEST_F(GenericDriver, MountShowsTheMachinesFolderThroughSshfsWithThePinnedKey) {
  require_machine(1);
  ASSERT_EQ(cli()({"ssh", "gen-b", "mkdir -p /srv/share && echo before > /srv/share/before.txt"}).exit_code, 0);
  const fs::path dir = cli().scratch() / "mnt-b";
  fs::create_directories(dir);
  MountGuard guard(dir);

  auto m = cli()({"mount", "gen-b:/srv/share", dir.string()});
  ASSERT_EQ(m.exit_code, 0) << m.describe();
  ASSERT_TRUE(is_mount_point(dir));
  // sshfs and its ssh run in their own session: ending the process group that
  // ran `berth mount` (as a closing terminal or this test's runner does) leaves
  // the mount working.
  EXPECT_EQ(through_mount("cat '" + (dir / "before.txt").string() + "'").out, "before\n");

  EXPECT_EQ(listing(dir), "before.txt\n");
  // Made on the machine after the mount (and after a listing, which sshfs would
  // otherwise cache for 20 s): listed and readable here at once.
  auto made = cli()({"ssh", "gen-b", "echo from gen-b > /srv/share/remote.txt"});
  ASSERT_EQ(made.exit_code, 0) << made.describe();
  EXPECT_EQ(listing(dir), "before.txt\nremote.txt\n");
  EXPECT_EQ(through_mount("cat '" + (dir / "remote.txt").string() + "'").out, "from gen-b\n");
  // Written here: on the machine, seen both over SSH and in the host's own root.
  auto wrote = through_mount("printf 'from the laptop\\n' > '" + (dir / "local.txt").string() + "'");
  ASSERT_EQ(wrote.exit_code, 0) << wrote.describe();
  auto seen = cli()({"ssh", "gen-b", "cat /srv/share/local.txt"});
  EXPECT_EQ(seen.out, "from the laptop\n") << seen.describe();
  EXPECT_EQ(read_text(host(1).root() / "srv/share/local.txt"), "from the laptop\n");
  // OpenSSH got exactly the pinned key, nothing else.
  auto known = lines(read_text(cli().machine_dir("gen-b") / "known_hosts"));
  ASSERT_EQ(known.size(), 1u);
  EXPECT_EQ(known[0].rfind(host(1).ip() + " ssh-", 0), 0u) << known[0];

  // Mounting again on the same folder, or on a folder with files in it, is refused.
  auto again = cli()({"mount", "gen-b:/tmp", dir.string()});
  EXPECT_EQ(again.exit_code, 1) << again.describe();
  EXPECT_NE(again.err.find("already a mount point"), std::string::npos) << again.describe();
  const fs::path full = cli().scratch() / "not-empty";
  fs::create_directories(full);
  write_text(full / "keep.txt", "mine\n");
  auto over = cli()({"mount", "gen-b:/tmp", full.string()});
  EXPECT_EQ(over.exit_code, 1) << over.describe();
  EXPECT_NE(over.err.find("is not empty"), std::string::npos) << over.describe();
  EXPECT_FALSE(is_mount_point(full));

  auto u = cli()({"mount", "-u", dir.string()});
  ASSERT_EQ(u.exit_code, 0) << u.describe();
  EXPECT_FALSE(is_mount_point(dir));
  EXPECT_TRUE(fs::is_empty(dir));
  EXPECT_TRUE(fs::exists(host(1).root() / "srv/share/local.txt")) << "unmounting must not touch the machine's files";
  auto twice = cli()({"mount", "-u", dir.string()});
  EXPECT_EQ(twice.exit_code, 1) << twice.describe();
  EXPECT_NE(twice.err.find("nothing is mounted"), std::string::npos) << twice.describe();

  auto bad = cli()({"mount", "gen-b", dir.string()});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  // Without sshfs on PATH: one line that says so, exit 1, nothing mounted.
  auto no_sshfs = cli().bash("PATH=/nonexistent " + berth_binary().string() + " mount gen-b:/tmp " + dir.string());
  EXPECT_EQ(no_sshfs.exit_code, 1) << no_sshfs.describe();
  EXPECT_EQ(lines(no_sshfs.err).size(), 1u) << no_sshfs.describe();
  EXPECT_NE(no_sshfs.err.find("needs sshfs"), std::string::npos) << no_sshfs.describe();
  EXPECT_FALSE(is_mount_point(dir));
}

// f) the agent speaks mutual TLS only with the machine's client certificate
TEST_F(GenericDriver, AgentRequiresAClientCertificateFromTheMachineCa) {
  require_machine(0);
  TlsFiles f = tls_files(0);
  ASSERT_FALSE(f.ca.empty());

  auto good = curl_ping(0, {"--cacert", f.ca, "--cert", f.cert, "--key", f.key});
  ASSERT_EQ(good.exit_code, 0) << good.describe();
  EXPECT_EQ(trim(good.out), "OK");

  // curl exit codes that mean "never reached the TLS layer": not what we test.
  const std::set<int> unreachable = {6, 7, 28};
  auto no_cert = curl_ping(0, {"--cacert", f.ca});
  EXPECT_NE(no_cert.exit_code, 0) << "the agent answered a client without a certificate:\n" << no_cert.describe();
  EXPECT_FALSE(unreachable.count(no_cert.exit_code)) << no_cert.describe();

  TempDir other("berth-it-otherca");
  auto mk = run_bash(
      "set -e; cd '" + other.path().string() + "'\n"
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "  -subj /CN=other-ca -keyout ca-key.pem -out ca.pem 2>/dev/null\n"
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=client "
      "  -keyout key.pem -out client.csr 2>/dev/null\n"
      "printf 'extendedKeyUsage=clientAuth\\nkeyUsage=digitalSignature\\n' > ext.cnf\n"
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 "
      "  -extfile ext.cnf -out cert.pem 2>/dev/null\n",
      {}, 30s);
  ASSERT_EQ(mk.exit_code, 0) << mk.describe();
  auto foreign = curl_ping(0, {"--cacert", f.ca, "--cert", (other.path() / "cert.pem").string(), "--key",
                               (other.path() / "key.pem").string()});
  EXPECT_NE(foreign.exit_code, 0) << "the agent answered a certificate from another CA:\n" << foreign.describe();
  EXPECT_FALSE(unreachable.count(foreign.exit_code)) << foreign.describe();

  auto again = curl_ping(0, {"--cacert", f.ca, "--cert", f.cert, "--key", f.key});
  EXPECT_EQ(again.exit_code, 0) << "the agent stopped answering:\n" << again.describe();
}

TEST_F(GenericDriver, ServerCertificateCoversIpAndExtraSan) {
  require_machine(0);
  TlsFiles f = tls_files(0);
  auto sans = run_bash("openssl s_client -connect " + host(0).ip() + ":2376 -CAfile '" + f.ca + "' -cert '" +
                           f.cert + "' -key '" + f.key +
                           "' </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName",
                       {}, 30s);
  ASSERT_EQ(sans.exit_code, 0) << sans.describe();
  EXPECT_NE(sans.out.find("IP Address:" + host(0).ip()), std::string::npos) << sans.out;
  EXPECT_NE(sans.out.find("DNS:" + kExtraSan), std::string::npos) << sans.out;
}

// g) new server certificate, same CA: docker keeps working
TEST_F(GenericDriver, RegenerateCertsReplacesTheServerCertificate) {
  require_machine(2);
  const std::string before = server_fingerprint(2);
  ASSERT_FALSE(before.empty()) << "could not read the agent's certificate";
  auto regen = cli()({"regenerate-certs", "-f", "gen-c"});
  ASSERT_EQ(regen.exit_code, 0) << regen.describe();
  std::string after;
  // The agent reloads its certificate on SIGHUP; give it a moment.
  EXPECT_TRUE(eventually([&] { after = server_fingerprint(2); return !after.empty() && after != before; }, 10s, 200ms))
      << "server certificate unchanged: " << before << " -> " << after;
  auto version = docker_via_env(2, "version --format '{{.Server.Version}}'");
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_FALSE(trim(version.out).empty());
}

TEST_F(GenericDriver, ProvisionReinstallsABrokenAgent) {
  require_machine(1);
  // Break the host: agent gone, binary gone. (Only this host's processes: the
  // hosts share the machine's pid namespace, so no pkill.)
  for (const auto& line : lines(host(1).processes()))
    if (line.find("berth-agent") != std::string::npos) ::kill(std::stoi(line), SIGKILL);
  auto rm = host(1).exec({"rm", "-f", "/usr/local/bin/berth-agent"});
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  ASSERT_TRUE(eventually([&] { return host(1).processes().find("berth-agent") == std::string::npos; }, 5s))
      << host(1).processes();
  ASSERT_FALSE(host(1).exists_inside("/usr/local/bin/berth-agent"));
  auto dead = docker_via_env(1, "version --format '{{.Server.Version}}'");
  ASSERT_NE(dead.exit_code, 0) << "docker still reached an agent that was killed";

  auto prov = cli()({"provision", "gen-b"});
  ASSERT_EQ(prov.exit_code, 0) << prov.describe();
  EXPECT_TRUE(host(1).exists_inside("/usr/local/bin/berth-agent"));
  auto version = docker_via_env(1, "version --format '{{.Server.Version}}'");
  EXPECT_EQ(version.exit_code, 0) << version.describe();
}

TEST_F(GenericDriver, StopIsRefusedForGenericMachines) {
  require_machine(0);
  auto stop = cli()({"stop", "gen-a"});
  EXPECT_EQ(stop.exit_code, 1) << stop.describe();
  EXPECT_TRUE(contains_icase(stop.err, "generic")) << stop.err;
  EXPECT_TRUE(contains_icase(stop.err, "stop")) << stop.err;
  auto status = cli()({"status", "gen-a"});
  EXPECT_EQ(trim(status.out), "Running") << status.describe();
}

TEST_F(GenericDriver, CreateWithAnExistingNameFails) {
  require_machine(0);
  const std::string config_before = read_text(cli().machine_dir("gen-a") / "config.json");
  auto again = cli().create(host(0), "gen-a");
  EXPECT_EQ(again.exit_code, 1) << again.describe();
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
  EXPECT_EQ(read_text(cli().machine_dir("gen-a") / "config.json"), config_before);
  auto version = docker_via_env(0, "version --format '{{.Server.Version}}'");
  EXPECT_EQ(version.exit_code, 0) << "the existing machine was damaged:\n" << version.describe();
}

TEST_F(GenericDriver, CreateFailsThePreCreateCheckWhenSshIsUnreachable) {
  auto r = cli()({"create", "-d", "generic", "--generic-ip-address", host(0).ip(), "--generic-ssh-user", "root",
                  "--generic-ssh-key", host(0).private_key().string(), "--generic-ssh-port", "2222", "gen-noport"},
                 60s);
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  EXPECT_NE(r.err.find("2222"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(cli().machine_dir("gen-noport")));
  auto quiet = cli()({"ls", "-q"}, 60s);
  EXPECT_EQ(quiet.out.find("gen-noport"), std::string::npos) << quiet.out;
}

TEST_F(GenericDriver, UnknownMachineExitsWithCode4) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"ip", "nosuch"}, {"env", "nosuch"}, {"ssh", "nosuch", "true"}, {"inspect", "nosuch"},
           {"status", "nosuch"}, {"stop", "nosuch"}, {"rm", "-y", "nosuch"}}) {
    auto r = cli()(args, 60s);
    EXPECT_EQ(r.exit_code, 4) << "berth " << args[0] << ":\n" << r.describe();
    EXPECT_NE(r.err.find("nosuch"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace berth::it

namespace berth::it {
namespace {

// pids of berth-agent on a test host, from `testhost.sh pids` ("PID COMMAND" lines).
std::vector<std::string> agent_pids(const TestHost& h) {
  std::vector<std::string> pids;
  for (const auto& line : lines(h.processes()))
    if (line.find("berth-agent") != std::string::npos) pids.push_back(line.substr(0, line.find(' ')));
  return pids;
}

// ls asks hosts in parallel, each with its own deadline: a hung agent costs one timeout, not one per host.
TEST_F(GenericDriver, LsIsNotHeldUpByAHungAgent) {
  for (int i = 0; i < kHosts; ++i) require_machine(i);
  auto pids = agent_pids(host(1));
  ASSERT_FALSE(pids.empty()) << host(1).processes();
  for (const auto& pid : pids) ::kill(std::stoi(pid), SIGSTOP);
  const auto start = std::chrono::steady_clock::now();
  auto r = cli()({"ls", "-t", "2", "--format", "{{.Name}}|{{.State}}|{{.DockerVersion}}|{{.Error}}"}, 60s);
  const auto took = std::chrono::steady_clock::now() - start;
  for (const auto& pid : pids) ::kill(std::stoi(pid), SIGCONT);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_LT(took, 4s) << r.out;
  auto rows = lines(r.out);
  ASSERT_EQ(rows.size(), static_cast<size_t>(kHosts)) << r.out;
  EXPECT_EQ(rows[1].rfind(kNames[1] + "|Running|Unknown|agent: ", 0), 0u) << rows[1];
  for (int i : {0, 2}) {
    EXPECT_EQ(rows[i].rfind(kNames[i] + "|Running|", 0), 0u) << rows[i];
    EXPECT_EQ(rows[i].find("Unknown"), std::string::npos) << rows[i];
  }
}

}  // namespace
}  // namespace berth::it
