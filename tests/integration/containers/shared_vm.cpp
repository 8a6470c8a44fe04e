#include "tests/integration/containers/shared_vm.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace berth::it::containers {
namespace {

const std::string& kName = kSharedVmName;

fs::path state_dir() { return build_dir() / "it-vm"; }
fs::path state_file() { return state_dir() / "state.json"; }

std::optional<nlohmann::json> read_state() {
  if (!fs::exists(state_file())) return std::nullopt;
  auto j = nlohmann::json::parse(read_text(state_file()), nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

bool is_registry(int pid) {
  std::error_code ec;
  const fs::path cmdline = "/proc/" + std::to_string(pid) + "/cmdline";
  return pid > 0 && fs::exists(cmdline, ec) && read_text(cmdline).find("docker-registry") != std::string::npos;
}

// `argv` in a session of its own (so it outlives this process and no
// process-group kill reaches it), output to `log`. Returns its pid.
pid_t spawn_detached(const std::vector<std::string>& argv, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::setsid();
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0) ::_exit(127);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

// A docker-registry in a session of its own, so it outlives this process.
int start_registry(const fs::path& dir, int port) {
  const fs::path config = dir / "registry.yml";
  write_text(config,
             "version: 0.1\nlog:\n  level: warn\n"
             "storage:\n  filesystem:\n    rootdirectory: " + (dir / "registry").string() + "\n"
             "  delete:\n    enabled: true\n"
             "http:\n  addr: 127.0.0.1:" + std::to_string(port) + "\n");
  const int pid = spawn_detached({"docker-registry", "serve", config.string()}, dir / "registry.log");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v2/";
  if (!eventually([&] { return run({"curl", "-sf", "-o", "/dev/null", url}, {}, 5s).ok(); }, 20s, 100ms))
    throw std::runtime_error("docker-registry did not answer on " + url + ": " + read_text(dir / "registry.log"));
  return pid;
}

SharedVm attach(const nlohmann::json& state) {
  SharedVm vm;
  vm.machine = std::make_unique<Machine>(state.at("name").get<std::string>(), state_dir() / "cli");
  vm.registry_port = state.at("registry_port");
  vm.image.tarball = state.at("image").at("tarball").get<std::string>();
  vm.image.ref = state.at("image").at("ref");
  vm.image.id = state.at("image").at("id");
  vm.image.diff_id = state.at("image").at("diff_id");
  vm.machine->refresh_docker_env();
  return vm;
}

}  // namespace

void shared_vm_up() {
  shared_vm_down();  // what a crashed run left
  if (std::string why = unavailable_reason(); !why.empty()) throw std::runtime_error(why);
  const fs::path dir = state_dir();
  fs::create_directories(dir);
  nlohmann::json state = {{"name", kName}};
  const int port = free_port();
  state["registry_port"] = port;
  state["registry_pid"] = start_registry(dir, port);
  write_text(state_file(), state.dump(2));  // from here on, shared_vm_down() can clean up

  TestImage image = make_test_image(dir / "busybox.tar", "busybox:latest");
  state["image"] = {{"tarball", image.tarball.string()}, {"ref", image.ref}, {"id", image.id},
                    {"diff_id", image.diff_id}};
  auto copy = run({"skopeo", "copy", "--quiet", "docker-archive:" + image.tarball.string(),
                   "docker://127.0.0.1:" + std::to_string(port) + "/busybox:latest", "--dest-tls-verify=false"},
                  {}, 120s);
  if (!copy.ok()) throw std::runtime_error("skopeo copy to the registry failed: " + copy.describe());

  Machine machine(kName, dir / "cli");
  const auto t0 = std::chrono::steady_clock::now();
  auto created = machine.berth({"create", "-d", "libvirt", "--libvirt-cpus", "2", "--libvirt-no-share",
                                "--engine-insecure-registry", "10.0.2.2:" + std::to_string(port), kName},
                               600s);
  if (!created.ok()) throw std::runtime_error("berth create failed: " + created.describe());
  std::printf("[ figures  ] shared VM: berth create took %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  machine.refresh_docker_env();
  auto load = machine.docker({"load", "-i", image.tarball.string()}, 120s);
  if (!load.ok()) throw std::runtime_error("docker load failed: " + load.describe());
  write_text(state_file(), state.dump(2));
}

void shared_vm_down() {
  auto state = read_state();
  if (!state) return;
  try {
    Machine machine(state->value("name", kName), state_dir() / "cli");
    machine.berth({"rm", "-f", "-y", state->value("name", kName)}, 180s);
    drop_pools_under(machine.cli().store());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shared VM: removing the machine failed: %s\n", e.what());
  }
  const int pid = state->value("registry_pid", 0);
  if (is_registry(pid)) ::kill(pid, SIGTERM);
  std::error_code ec;
  fs::remove_all(state_dir(), ec);
}

SharedVmLease::SharedVmLease() {
  if (!read_state() || !read_state()->contains("image")) {
    shared_vm_up();
    owned_ = true;
  }
  vm_ = attach(*read_state());
}

SharedVmLease::~SharedVmLease() {
  vm_.machine.reset();
  if (owned_) shared_vm_down();
}

}  // namespace berth::it::containers
