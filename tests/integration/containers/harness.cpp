#include "tests/integration/containers/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace berth::it::containers {
namespace {

constexpr const char* kUri = "qemu:///system";

fs::path env_path_or(const char* var, const fs::path& fallback) {
  const char* v = std::getenv(var);
  return v && *v ? fs::path(v) : fallback;
}

fs::path berth_path() { return env_path_or("BERTH_BINARY", berth_binary()); }
fs::path agent_path() { return env_path_or("BERTH_AGENT_BINARY", agent_binary()); }

bool daemon_running(const std::string& name) { return run_bash("pgrep -x " + name + " >/dev/null", {}, 10s).ok(); }

}  // namespace

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string unavailable_reason() {
  if (::geteuid() != 0) return "needs root (qemu:///system)";
  if (!run_bash("command -v qemu-system-x86_64 && command -v libvirtd && command -v virsh && command -v docker "
                "&& command -v skopeo && command -v docker-registry && command -v curl && command -v jq",
                {}, 10s)
           .ok())
    return "needs qemu-system-x86, libvirt, the docker CLI, skopeo, docker-registry, curl and jq";
  const fs::path os = source_dir() / "image" / "out";
  if (!fs::exists(os / "vmlinuz") || !fs::exists(os / "initrd"))
    return "no berth-os at " + os.string() + "; build it with image/build.sh";
  if (!fs::exists(berth_path())) return "no berth CLI at " + berth_path().string() + " (set BERTH_BINARY)";
  if (!fs::exists(agent_path()))
    return "no berth-agent at " + agent_path().string() + " (set BERTH_AGENT_BINARY)";
  if (!daemon_running("virtlogd")) run_bash("virtlogd -d", {}, 30s);
  if (!daemon_running("libvirtd")) run_bash("libvirtd -d", {}, 30s);
  if (!eventually([] { return run({"virsh", "-c", kUri, "version"}, {}, 10s).ok(); }, 20s, 200ms))
    return "libvirtd does not answer";
  return "";
}

void drop_pools_under(const fs::path& store) {
  run_bash("for p in $(virsh -c " + std::string(kUri) + " pool-list --all --name); do "
           "  if virsh -c " + kUri + " pool-dumpxml \"$p\" | grep -q \"<path>" + store.string() + "\"; then "
           "    virsh -c " + kUri + " pool-destroy \"$p\"; virsh -c " + kUri + " pool-undefine \"$p\"; fi; done",
           {}, 60s);
}

std::string describe_call(const std::vector<std::string>& args, const RunResult& r) {
  std::string cmd;
  for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + a;
  return "`" + cmd + "`: " + r.describe();
}

// --- Registry ---

Registry::Registry() : dir_("berth-e2e-registry") {
  port_ = free_port();
  const fs::path config = dir_ / "config.yml";
  write_text(config,
             "version: 0.1\n"
             "log:\n  level: warn\n"
             "storage:\n  filesystem:\n    rootdirectory: " + (dir_ / "data").string() + "\n"
             "  delete:\n    enabled: true\n"
             "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n");
  process_ = std::make_unique<Process>(Process::start({"docker-registry", "serve", config.string()}));
  const std::string url = "http://" + host_address() + "/v2/";
  if (!eventually([&] { return run({"curl", "-sf", "-o", "/dev/null", url}, {}, 5s).ok(); }, 20s, 100ms))
    throw std::runtime_error("docker-registry did not answer on " + url + ": " + process_->stderr_so_far());
}

// --- test image ---

TestImage make_test_image(const fs::path& out, const std::string& ref) {
  auto r = run({(source_dir() / "scripts" / "make-test-image.sh").string(), out.string(), ref}, {}, 180s);
  if (!r.ok()) throw std::runtime_error("make-test-image.sh failed: " + r.describe());
  auto manifest = run({"tar", "-xOf", out.string(), "manifest.json"}, {}, 30s);
  if (!manifest.ok()) throw std::runtime_error("no manifest.json in " + out.string());
  auto m = nlohmann::json::parse(manifest.out).at(0);
  TestImage image;
  image.tarball = out;
  image.ref = ref;
  const std::string config = m.at("Config");
  image.id = "sha256:" + config.substr(0, config.find('.'));
  auto cfg = run({"tar", "-xOf", out.string(), config}, {}, 30s);
  image.diff_id = nlohmann::json::parse(cfg.out).at("rootfs").at("diff_ids").at(0);
  return image;
}

// --- Machine ---

Machine::Machine(std::string name) : name_(std::move(name)) { init_env(); }

Machine::Machine(std::string name, const fs::path& root) : name_(std::move(name)), cli_(root) { init_env(); }

void Machine::init_env() {
  env_ = cli_.env();
  env_["BERTH_AGENT_BINARY"] = agent_path().string();
  const char* path = std::getenv("PATH");
  env_["PATH"] = berth_path().parent_path().string() + ":/usr/local/bin:" + (path ? path : "/usr/bin:/bin");
  docker_env_ = env_;
}

RunResult Machine::berth(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {berth_path().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, env_, timeout);
}

Process Machine::start_berth(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {berth_path().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  SpawnOptions options;
  options.env = env_;
  return Process::start(argv, options);
}

RunResult Machine::ssh(const std::string& command, std::chrono::milliseconds timeout) const {
  return berth({"ssh", name_, command}, timeout);
}

void Machine::refresh_docker_env() {
  auto r = berth({"env", "--shell", "bash", name_}, 60s);
  if (!r.ok()) throw std::runtime_error("berth env failed: " + r.describe());
  docker_env_ = env_;
  static const std::regex line(R"re(^export ([A-Za-z_][A-Za-z0-9_]*)="(.*)"\s*$)re");
  for (const auto& l : lines(r.out)) {
    std::smatch m;
    if (std::regex_match(l, m, line)) {
      docker_env_[m[1]] = m[2].str();
    }
  }
  if (!docker_env_.count("DOCKER_HOST") || !docker_env_.at("DOCKER_HOST"))
    throw std::runtime_error("berth env printed no DOCKER_HOST: " + r.out);
}

RunResult Machine::docker(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                          const std::string& input) const {
  std::vector<std::string> argv = {"docker"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, docker_env_, timeout, input);
}

RunResult Machine::sh(const std::string& script, std::chrono::milliseconds timeout) const {
  return run({"bash", "-c", script}, docker_env_, timeout);
}

std::pair<int, std::string> Machine::api(const std::string& method, const std::string& path,
                                         const std::string& body) const {
  const std::string host = docker_env_.at("DOCKER_HOST").value_or("");
  const std::string certs = docker_env_.count("DOCKER_CERT_PATH") ? docker_env_.at("DOCKER_CERT_PATH").value_or("") : "";
  const std::string url = std::regex_replace(host, std::regex("^tcp://"), "https://") + path;
  const fs::path out = scratch() / "api-body";
  std::vector<std::string> argv = {"curl", "-s", "--max-time", "30", "-o", out.string(), "-w", "%{http_code}",
                                   "--cacert", certs + "/ca.pem", "--cert", certs + "/cert.pem", "--key",
                                   certs + "/key.pem", "-X", method, "-H", "Content-Type: application/json"};
  if (!body.empty()) {
    const fs::path in = scratch() / "api-request";
    write_text(in, body);
    argv.push_back("--data-binary");
    argv.push_back("@" + in.string());
  }
  argv.push_back(url);
  auto r = run(argv, {}, 40s);
  int status = 0;
  try {
    status = std::stoi(trim(r.out));
  } catch (...) {
  }
  std::string text;
  if (fs::exists(out)) text = read_text(out);
  return {status, text};
}

std::string Machine::domain() const {
  auto r = berth({"inspect", name_}, 30s);
  std::smatch m;
  static const std::regex re("\"domain\"\\s*:\\s*\"([^\"]+)\"");
  return std::regex_search(r.out, m, re) ? m[1].str() : "";
}

RunResult Machine::monitor(const std::string& hmp) const {
  return run({"virsh", "-c", kUri, "qemu-monitor-command", "--hmp", domain(), hmp}, {}, 30s);
}

}  // namespace berth::it::containers
