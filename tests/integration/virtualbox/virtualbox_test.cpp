// The VirtualBox driver end to end: the real berth, berth-agent, berth-os and docker CLI against
// tests/fakes/vboxmanage/VBoxManage, a test double for VBoxManage (VirtualBox cannot be installed
// here) that keeps a VM registry and boots the VM in QEMU/TCG with its NAT rules as 127.0.0.1
// forwards. One VM is created once and shared by the cases (a TCG boot costs ~10 s); the last
// case removes it and checks that neither the fake nor the store keeps anything.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "tests/integration/support/run.h"

namespace berth::it {
namespace {

const std::string kVm = "vb";
// The fake runs QEMU under TCG, so the host needs no VT-x (these machines do not show vmx/svm).
const std::vector<std::string> kCreate = {"create", "-d", "virtualbox", "--virtualbox-no-vtx-check",
                                          "--virtualbox-memory", "512"};

std::vector<std::string> create_args(const std::string& name, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = kCreate;
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(name);
  return args;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

std::string trimmed(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

fs::path fake_vboxmanage() { return source_dir() / "tests" / "fakes" / "vboxmanage" / "VBoxManage"; }

// The real berth with its own store and HOME, the fake VBoxManage first on PATH and named by
// BERTH_VBOXMANAGE, and the fake's registry in FAKE_VBOX_HOME.
class VboxWorld {
 public:
  VboxWorld() : dir_("berth-it-vbox") {
    fs::create_directories(home() / ".docker");
    fs::create_directories(fake_home());
    const char* path = std::getenv("PATH");
    env_ = {
        {"HOME", home().string()},
        {"DOCKER_CONFIG", (home() / ".docker").string()},
        {"BERTH_STORAGE_PATH", store().string()},
        {"BERTH_AGENT_BINARY", agent_binary().string()},
        {"BERTH_VBOXMANAGE", fake_vboxmanage().string()},
        {"FAKE_VBOX_HOME", fake_home().string()},
        {"BERTH_OS_DIR", (source_dir() / "image" / "out").string()},
        {"PATH", fake_vboxmanage().parent_path().string() + ":" + berth_binary().parent_path().string() +
                     ":/usr/local/bin:" + (path ? path : "/usr/bin:/bin")},
        {"SHELL", "/bin/bash"},
        {"DOCKER_HOST", std::nullopt},
        {"DOCKER_TLS_VERIFY", std::nullopt},
        {"DOCKER_CERT_PATH", std::nullopt},
        {"DOCKER_CONTEXT", std::nullopt},
        {"BERTH_MACHINE_NAME", std::nullopt},
        {"SSH_AUTH_SOCK", std::nullopt},
        {"VBOX_MSI_INSTALL_PATH", std::nullopt},
    };
  }

  RunResult berth(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 240s,
                  const Env& extra = {}) const {
    std::vector<std::string> argv = {berth_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, with(extra), timeout);
  }
  Process start_berth(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {berth_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    SpawnOptions options;
    options.env = env_;
    return Process::start(argv, options);
  }
  RunResult bash(const std::string& script, std::chrono::milliseconds timeout = 120s) const {
    return run({"bash", "-c", script}, env_, timeout);
  }
  // The fake, called directly (as a test would inspect VirtualBox).
  RunResult vbox(const std::vector<std::string>& args, const Env& extra = {}) const {
    std::vector<std::string> argv = {fake_vboxmanage().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, with(extra), 60s);
  }

  // Registered VM names, from `VBoxManage list vms`.
  std::vector<std::string> registered() const {
    std::vector<std::string> names;
    static const std::regex re(R"re(^"(.*)" \{[0-9a-f-]+\}$)re");
    for (const auto& line : split_lines(vbox({"list", "vms"}).out)) {
      std::smatch m;
      if (std::regex_match(line, m, re)) names.push_back(m[1]);
    }
    return names;
  }
  bool is_registered(const std::string& name) const {
    for (const auto& n : registered())
      if (n == name) return true;
    return false;
  }
  // key -> value of `showvminfo NAME --machinereadable` (quotes removed); empty when missing.
  std::map<std::string, std::string> vminfo(const std::string& name) const {
    std::map<std::string, std::string> out;
    auto r = vbox({"showvminfo", name, "--machinereadable"});
    if (!r.ok()) return out;
    for (const auto& line : split_lines(r.out)) {
      auto eq = line.find('=');
      if (eq == std::string::npos) continue;
      std::string k = line.substr(0, eq), v = line.substr(eq + 1);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      out[k] = v;
    }
    return out;
  }
  // Processes (QEMU, the fake's VM supervisor) whose command line mentions this world's files.
  std::vector<std::string> vm_processes() const {
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
      const std::string pid = entry.path().filename().string();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      std::string cmdline;
      try {
        cmdline = read_text(entry.path() / "cmdline");
      } catch (...) {
        continue;
      }
      for (auto& c : cmdline)
        if (c == '\0') c = ' ';
      if (cmdline.find(dir_.path().string()) != std::string::npos && cmdline.find("qemu") != std::string::npos)
        found.push_back(pid + ": " + cmdline.substr(0, 160));
      else if (cmdline.find("--fake-vm-process " + fake_home().string()) != std::string::npos)
        found.push_back(pid + ": " + cmdline.substr(0, 160));
    }
    return found;
  }

  std::map<std::string, nlohmann::json> ls_json() const {
    std::map<std::string, nlohmann::json> out;
    auto r = berth({"ls", "--format", "json"}, 60s);
    if (!r.ok()) return out;
    for (const auto& line : split_lines(r.out)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("Name")) out[j["Name"].get<std::string>()] = j;
    }
    return out;
  }
  std::string status(const std::string& name) const { return trimmed(berth({"status", name}, 60s).out); }

  fs::path store() const { return dir_.path() / "store"; }
  fs::path machine_dir(const std::string& name) const { return store() / "machines" / name; }
  fs::path home() const { return dir_.path() / "home"; }
  fs::path fake_home() const { return dir_.path() / "vbox"; }
  const Env& env() const { return env_; }

 private:
  Env with(const Env& extra) const {
    Env e = env_;
    for (const auto& [k, v] : extra) e[k] = v;
    return e;
  }
  TempDir dir_;
  Env env_;
};

std::string missing_tool() {
  for (const char* tool : {"qemu-system-x86_64", "qemu-img", "python3", "docker", "xorriso"})
    if (!run_bash(std::string("command -v ") + tool + " >/dev/null", {}, 10s).ok()) return tool;
  return "";
}

// A port nothing listens on now (the kernel's choice for an ephemeral bind).
int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

bool loopback_port_taken(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool taken = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return taken;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class VirtualBoxDriver : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      if (auto tool = missing_tool(); !tool.empty()) {
        skip_ = "needs " + tool + " (qemu-system-x86, qemu-utils, python3, the docker CLI, xorriso)";
        return;
      }
      if (!fs::exists(source_dir() / "image" / "out" / "berth-os.iso")) {
        setup_error_ = "no berth-os ISO at image/out/berth-os.iso; build it with image/build.sh";
        return;
      }
      if (!fs::exists(berth_binary()) || !fs::exists(agent_binary())) {
        setup_error_ = "build the 'berth' and 'berth-agent' targets first";
        return;
      }
      world_ = std::make_unique<VboxWorld>();
      auto probe = world_->berth({"create", "-d", "virtualbox", "--help"}, 30s);
      if (probe.out.find("--virtualbox-memory") == std::string::npos) {
        setup_error_ = "the virtualbox driver is missing from this berth build (drivers/registry.cpp)";
        return;
      }
      const auto t0 = std::chrono::steady_clock::now();
      created_ = world_->berth(create_args(kVm), 300s);
      create_seconds_ = seconds_since(t0);
      std::printf("[ figures  ] berth create -d virtualbox: %.1f s (exit %d)\n", create_seconds_, created_.exit_code);
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }

  static void TearDownTestSuite() {
    if (!world_) return;
    for (const auto& name : {kVm, std::string("vint"), std::string("vnox"), std::string("vcidr")})
      world_->berth({"rm", "-f", "-y", name}, 120s);
    world_->vbox({"--fake-cleanup"});
    world_.reset();
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
  }

  void require_vm() { ASSERT_EQ(created_.exit_code, 0) << "berth create " << kVm << " failed:\n" << created_.describe(); }

  RunResult docker_version() const {
    return world().bash("set -e; eval \"$(berth env " + kVm + ")\"; docker version", 120s);
  }

  static const VboxWorld& world() { return *world_; }

  static inline std::string skip_;
  static inline std::string setup_error_;
  static inline std::unique_ptr<VboxWorld> world_;
  static inline RunResult created_;
  static inline double create_seconds_ = 0;
  static inline int kept_port_ = 0;
};

// --- the fake itself: it must fail like VBoxManage, or it would hide driver bugs ---------------
TEST(VBoxManageFake, RejectsBadSyntaxLikeVBoxManage) {
  if (!run_bash("command -v python3 qemu-img >/dev/null", {}, 10s).ok()) GTEST_SKIP() << "needs python3 and qemu-img";
  TempDir home("vbox-fake-grammar");
  const Env env = {{"FAKE_VBOX_HOME", home.path().string()}};
  const VboxWorld w;
  auto version = w.vbox({"--version"}, env);
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(std::regex_match(trimmed(version.out), std::regex(R"(\d+\.\d+\.\d+r\d+)"))) << version.out;
  EXPECT_NE(w.vbox({"--fake-info"}, env).out.find("test double"), std::string::npos);

  auto created = w.vbox({"createvm", "--name", "g", "--basefolder", (home.path() / "vms").string(), "--register"}, env);
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  EXPECT_NE(created.out.find("Virtual machine 'g' is created and registered."), std::string::npos) << created.out;

  // Unknown option: a syntax error, exit 2, with the usage.
  auto unknown = w.vbox({"modifyvm", "g", "--memroy", "512"}, env);
  EXPECT_EQ(unknown.exit_code, 2) << unknown.describe();
  EXPECT_NE(unknown.err.find("VBoxManage: error: Unknown option: --memroy"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("Usage"), std::string::npos) << unknown.err;
  // A value that is not on/off, a missing value, a short NAT rule: syntax errors too.
  EXPECT_EQ(w.vbox({"modifyvm", "g", "--acpi", "yes"}, env).exit_code, 2);
  EXPECT_EQ(w.vbox({"modifyvm", "g", "--memory"}, env).exit_code, 2);
  auto short_rule = w.vbox({"modifyvm", "g", "--natpf1", "ssh,tcp,127.0.0.1,2222"}, env);
  EXPECT_EQ(short_rule.exit_code, 2) << short_rule.describe();
  EXPECT_NE(short_rule.err.find("Missing or invalid argument to '--natpf1'"), std::string::npos) << short_rule.err;
  EXPECT_EQ(w.vbox({"storagectl", "g", "--add", "sata"}, env).exit_code, 2);  // no --name
  EXPECT_EQ(w.vbox({"startvm", "g", "--type"}, env).exit_code, 2);
  // Failed operations: exit 1 with VBoxManage's texts.
  auto missing = w.vbox({"showvminfo", "nope", "--machinereadable"}, env);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("VBoxManage: error: Could not find a registered machine named 'nope'"), std::string::npos)
      << missing.err;
  EXPECT_NE(missing.err.find("VBOX_E_OBJECT_NOT_FOUND"), std::string::npos) << missing.err;
  EXPECT_EQ(w.vbox({"modifyvm", "g", "--natpf1", "ssh,tcp,127.0.0.1,2222,,22"}, env).exit_code, 0);
  auto dup = w.vbox({"modifyvm", "g", "--natpf1", "ssh,tcp,127.0.0.1,2223,,22"}, env);
  EXPECT_EQ(dup.exit_code, 1);
  EXPECT_NE(dup.err.find("A NAT rule of this name already exists"), std::string::npos) << dup.err;
  EXPECT_EQ(w.vbox({"modifyvm", "g", "--natpf1", "delete", "nosuchrule"}, env).exit_code, 1);
  // Only loopback forwards are allowed in tests.
  auto wide = w.vbox({"modifyvm", "g", "--natpf1", "web,tcp,,8080,,80"}, env);
  EXPECT_EQ(wide.exit_code, 1);
  EXPECT_NE(wide.err.find("127.0.0.1"), std::string::npos) << wide.err;
  auto bad_medium = w.vbox({"storageattach", "g", "--storagectl", "SATA", "--port", "0", "--device", "0", "--type",
                            "hdd", "--medium", "/nonexistent.vdi"},
                           env);
  EXPECT_EQ(bad_medium.exit_code, 1);
  EXPECT_NE(bad_medium.err.find("Could not find a controller named 'SATA'"), std::string::npos) << bad_medium.err;
  auto stopped = w.vbox({"controlvm", "g", "acpipowerbutton"}, env);
  EXPECT_EQ(stopped.exit_code, 1);
  EXPECT_NE(stopped.err.find("Machine 'g' is not currently running"), std::string::npos) << stopped.err;
  // Host-only networks outside 192.168.56.0/21 are refused (VirtualBox 6.1.28+).
  ASSERT_EQ(w.vbox({"hostonlyif", "create"}, env).exit_code, 0);
  auto cidr = w.vbox({"hostonlyif", "ipconfig", "vboxnet0", "--ip", "10.20.30.1", "--netmask", "255.255.255.0"}, env);
  EXPECT_EQ(cidr.exit_code, 1);
  EXPECT_NE(cidr.err.find("E_ACCESSDENIED"), std::string::npos) << cidr.err;

  auto gone = w.vbox({"unregistervm", "g", "--delete"}, env);
  EXPECT_EQ(gone.exit_code, 0) << gone.describe();
  EXPECT_TRUE(trimmed(w.vbox({"list", "vms"}, env).out).empty());
  EXPECT_FALSE(fs::exists(home.path() / "vms" / "g"));
}

// --- pre-create checks and bad flags: clear errors, nothing registered ---------------------------
TEST_F(VirtualBoxDriver, MissingVBoxManageIsAPreCreateFailure) {
  auto r = world().berth(create_args("vnox"), 60s,
                         {{"BERTH_VBOXMANAGE", (world().fake_home() / "no-such-VBoxManage").string()},
                          {"PATH", "/usr/bin:/bin"}});
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  EXPECT_NE(r.err.find("VBoxManage"), std::string::npos) << r.err;
  EXPECT_EQ(split_lines(r.err).size(), 1u) << "one clear line:\n" << r.err;
  EXPECT_FALSE(world().is_registered("vnox"));
  EXPECT_FALSE(fs::exists(world().machine_dir("vnox")));
}

TEST_F(VirtualBoxDriver, TooOldVirtualBoxIsAPreCreateFailure) {
  auto r = world().berth(create_args("vnox"), 60s, {{"FAKE_VBOX_VERSION", "5.2.44r139111"}});
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  EXPECT_NE(r.err.find("5.2.44"), std::string::npos) << r.err;
  EXPECT_FALSE(world().is_registered("vnox"));
  EXPECT_FALSE(fs::exists(world().machine_dir("vnox")));
}

TEST_F(VirtualBoxDriver, HostonlyCidrOutsideTheAllowedRangeIsRefused) {
  auto r = world().berth(create_args("vcidr", {"--virtualbox-hostonly-cidr", "10.20.30.1/24"}), 120s);
  EXPECT_EQ(r.exit_code, 2) << r.describe();  // a bad flag value is a usage error
  EXPECT_NE(r.err.find("192.168.56.0/21"), std::string::npos) << "the error should name the allowed range:\n" << r.err;
  EXPECT_FALSE(world().is_registered("vcidr"));
  EXPECT_FALSE(fs::exists(world().machine_dir("vcidr")));
  for (const auto& proc : world().vm_processes()) EXPECT_EQ(proc.find("vcidr"), std::string::npos) << proc;
}

// --- the shared VM --------------------------------------------------------------------------------
TEST_F(VirtualBoxDriver, CreateBootsToDockerVersion) {
  require_vm();
  std::printf("[ figures  ] create to a working `docker version`: %.1f s\n", create_seconds_);
  EXPECT_TRUE(world().is_registered(kVm));
  auto info = world().vminfo(kVm);
  EXPECT_EQ(info["VMState"], "running");
  EXPECT_EQ(info["CfgFile"].rfind(world().machine_dir(kVm).string(), 0), 0u) << info["CfgFile"];
  bool ssh_forward = false;
  for (const auto& [k, v] : info)
    if (k.rfind("Forwarding(", 0) == 0 && std::regex_match(v, std::regex(R"(ssh,tcp,127\.0\.0\.1,\d+,,22)")))
      ssh_forward = true;
  EXPECT_TRUE(ssh_forward) << "no ssh NAT rule on 127.0.0.1";

  const auto t0 = std::chrono::steady_clock::now();
  auto version = docker_version();
  ASSERT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_NE(version.out.find("Server:"), std::string::npos) << version.out;
  std::printf("[ figures  ] docker version through berth env: %.1f s\n", seconds_since(t0));

  auto machines = world().ls_json();
  ASSERT_TRUE(machines.count(kVm)) << world().berth({"ls"}).describe();
  EXPECT_EQ(machines[kVm].value("DriverName", ""), "virtualbox");
  EXPECT_EQ(machines[kVm].value("State", ""), "Running");
  EXPECT_TRUE(std::regex_match(machines[kVm].value("URL", ""), std::regex(R"(tcp://127\.0\.0\.1:\d+)")))
      << machines[kVm].dump();
  EXPECT_EQ(world().status(kVm), "Running");
  auto ssh = world().berth({"ssh", kVm, "cat /etc/os-release; hostname"}, 60s);
  EXPECT_EQ(ssh.exit_code, 0) << ssh.describe();
  EXPECT_NE(ssh.out.find("ID=berth-os"), std::string::npos) << ssh.out;
  EXPECT_NE(ssh.out.find(kVm), std::string::npos) << ssh.out;
  // The serial console goes where `--uartmode1 file` said.
  auto logs = world().berth({"logs", kVm}, 30s);
  EXPECT_NE(logs.out.find("berth-os: "), std::string::npos) << logs.describe();
}

// A published port becomes a VirtualBox NAT rule on 127.0.0.1 (the forwarder's native forward;
// the double turns it into a QEMU hostfwd) and goes away when the container does.
TEST_F(VirtualBoxDriver, APublishedPortIsANatRuleOnLoopbackWhileTheContainerRuns) {
  require_vm();
  const fs::path tarball = world().home() / "busybox.tar";
  auto made = run({(source_dir() / "scripts" / "make-test-image.sh").string(), tarball.string()}, {}, 180s);
  ASSERT_TRUE(made.ok()) << made.describe();
  const std::string docker = "set -e; eval \"$(berth env " + kVm + ")\"; docker ";
  auto load = world().bash(docker + "load -i " + tarball.string(), 180s);
  ASSERT_TRUE(load.ok()) << load.describe();

  const std::string port = std::to_string(free_loopback_port());
  const std::string rule = "berth-tcp-" + port + ",tcp,127.0.0.1," + port + ",," + port;
  auto has_rule = [&] {
    for (const auto& [k, v] : world().vminfo(kVm))
      if (k.rfind("Forwarding(", 0) == 0 && v == rule) return true;
    return false;
  };
  auto curl = [&] {
    return run({"curl", "-sS", "--max-time", "2", "http://127.0.0.1:" + port + "/"}, {}, 10s);
  };
  auto started = world().bash(docker + "run -d --name web -p " + port +
                                  ":80 busybox:latest sh -c 'mkdir -p /www && echo hello-vbox > /www/index.html && "
                                  "exec httpd -f -p 80 -h /www'",
                              120s);
  ASSERT_TRUE(started.ok()) << started.describe();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(eventually([&] { return curl().out == "hello-vbox\n"; }, 10s, 100ms))
      << curl().describe() << world().berth({"logs", "--forwarder", kVm}).out;
  std::printf("[ figures  ] docker run returned -> answer on 127.0.0.1 (VirtualBox NAT rule): %.2f s\n",
              seconds_since(t0));
  EXPECT_TRUE(has_rule()) << "no NAT rule " << rule;
  auto status = world().berth({"forward", "--status", kVm});
  EXPECT_NE(status.out.find(" virtualbox "), std::string::npos) << status.describe();

  auto removed = world().bash(docker + "rm -f web", 60s);
  ASSERT_TRUE(removed.ok()) << removed.describe();
  EXPECT_TRUE(eventually([&] { return !has_rule(); }, 5s, 100ms)) << "the NAT rule " << rule << " stayed";
  EXPECT_EQ(curl().exit_code, 7) << "127.0.0.1:" << port << " still accepts connections";  // curl: cannot connect

  // Left running for the next case: stopping the machine must take its rule away too.
  kept_port_ = free_loopback_port();
  auto kept = world().bash(docker + "run -d --name kept -p " + std::to_string(kept_port_) + ":80 busybox:latest httpd -f -p 80",
                           120s);
  ASSERT_TRUE(kept.ok()) << kept.describe();
  EXPECT_TRUE(eventually([&] { return loopback_port_taken(kept_port_); }, 10s, 100ms));
}

TEST_F(VirtualBoxDriver, StopByAcpiThenStartAgain) {
  require_vm();
  // berth-os keeps its data on the SATA disk (VirtualBox has no virtio disk by default).
  const std::string token = "token-" + std::to_string(::getpid());
  auto mounts = world().berth({"ssh", kVm, "mount; echo " + token + " > /var/lib/berth/persist && sync"}, 60s);
  ASSERT_EQ(mounts.exit_code, 0) << mounts.describe();
  EXPECT_TRUE(std::regex_search(mounts.out, std::regex(R"(/dev/sd[a-z] on /var/lib/berth type ext4)"))) << mounts.out;
  auto t0 = std::chrono::steady_clock::now();
  auto stop = world().berth({"stop", kVm}, 180s);
  ASSERT_EQ(stop.exit_code, 0) << stop.describe();
  std::printf("[ figures  ] berth stop (ACPI power button): %.1f s\n", seconds_since(t0));
  EXPECT_EQ(world().status(kVm), "Stopped");
  EXPECT_EQ(world().vminfo(kVm)["VMState"], "poweroff");
  EXPECT_TRUE(world().vm_processes().empty()) << world().vm_processes().front();
  for (const auto& [k, v] : world().vminfo(kVm)) {  // the running `kept` container's port, among others
    if (k.rfind("Forwarding(", 0) == 0) {
      EXPECT_EQ(v.rfind("berth-tcp-", 0), std::string::npos) << k << "=" << v;
    }
  }
  if (kept_port_ > 0) {
    EXPECT_FALSE(loopback_port_taken(kept_port_)) << "127.0.0.1:" << kept_port_ << " after stop";
  }
  // The guest obeyed the ACPI button: the console shows berth-os powering down, and the fake's
  // log shows QEMU exiting on its own (not killed by `controlvm poweroff`).
  const std::string vbox_log = read_text(world().machine_dir(kVm) / kVm / "Logs" / "VBox.log");
  EXPECT_NE(vbox_log.find("QEMU exited with 0\n"), std::string::npos) << vbox_log.substr(vbox_log.size() > 600 ? vbox_log.size() - 600 : 0);

  t0 = std::chrono::steady_clock::now();
  auto start = world().berth({"start", kVm}, 300s);
  ASSERT_EQ(start.exit_code, 0) << start.describe();
  EXPECT_EQ(world().status(kVm), "Running");
  EXPECT_EQ(world().vminfo(kVm)["VMState"], "running");
  auto version = docker_version();
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_NE(version.out.find("Server:"), std::string::npos) << version.out;
  std::printf("[ figures  ] berth start to docker version: %.1f s\n", seconds_since(t0));
  auto persisted = world().berth({"ssh", kVm, "cat /var/lib/berth/persist"}, 60s);
  EXPECT_EQ(trimmed(persisted.out), token) << persisted.describe();
}

TEST_F(VirtualBoxDriver, KillPowersOffAtOnce) {
  require_vm();
  const auto t0 = std::chrono::steady_clock::now();
  auto kill = world().berth({"kill", kVm}, 60s);
  ASSERT_EQ(kill.exit_code, 0) << kill.describe();
  EXPECT_LT(seconds_since(t0), 15.0);
  EXPECT_EQ(world().status(kVm), "Stopped");
  EXPECT_EQ(world().vminfo(kVm)["VMState"], "poweroff");
  EXPECT_TRUE(world().vm_processes().empty()) << world().vm_processes().front();
}

TEST_F(VirtualBoxDriver, InterruptedCreateLeavesNothingRegistered) {
  auto p = world().start_berth(create_args("vint"));
  // Interrupt once the VM exists in VirtualBox and is booting.
  const bool booting =
      eventually([&] { return !p.running() || world().vminfo("vint")["VMState"] == "running"; }, 120s, 200ms);
  ASSERT_TRUE(booting && p.running()) << p.stderr_so_far();
  p.signal(SIGINT);
  auto r = p.wait(120s);
  EXPECT_EQ(r.exit_code, 130) << r.describe();
  EXPECT_FALSE(world().is_registered("vint")) << world().vbox({"list", "vms"}).out;
  EXPECT_FALSE(fs::exists(world().machine_dir("vint")));
  for (const auto& proc : world().vm_processes()) EXPECT_EQ(proc.find("vint"), std::string::npos) << proc;
}

TEST_F(VirtualBoxDriver, RmLeavesNothingBehind) {
  require_vm();
  // rm must also take down a running VM: start it behind berth's back, as a user could.
  auto started = world().vbox({"startvm", kVm, "--type", "headless"});
  ASSERT_EQ(started.exit_code, 0) << started.describe();
  ASSERT_EQ(world().vminfo(kVm)["VMState"], "running");
  auto rm = world().berth({"rm", "-y", kVm}, 120s);
  EXPECT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_TRUE(world().registered().empty()) << world().vbox({"list", "vms"}).out;
  EXPECT_TRUE(trimmed(world().vbox({"list", "hdds"}).out).empty()) << world().vbox({"list", "hdds"}).out;
  EXPECT_TRUE(trimmed(world().vbox({"list", "dvds"}).out).empty()) << world().vbox({"list", "dvds"}).out;
  EXPECT_TRUE(world().vm_processes().empty()) << world().vm_processes().front();
  EXPECT_FALSE(fs::exists(world().machine_dir(kVm)));
  EXPECT_TRUE(world().ls_json().empty());
}

}  // namespace
}  // namespace berth::it
