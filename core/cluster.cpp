#include "core/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <fstream>
#include <regex>
#include <thread>

#include "core/error.h"
#include "core/fs.h"

namespace berth {
namespace fs = std::filesystem;

const ClusterMember* Cluster::member(const std::string& machine) const {
  for (const ClusterMember& m : members)
    if (m.machine == machine) return &m;
  return nullptr;
}

std::size_t Cluster::voters() const {
  std::size_t n = 0;
  for (const ClusterMember& m : members) n += m.etcd;
  return n;
}

void to_json(nlohmann::json& j, const ClusterMember& m) {
  j = {{"machine", m.machine}, {"address", m.address}, {"mac", m.mac}, {"etcd", m.etcd}};
}
void from_json(const nlohmann::json& j, ClusterMember& m) {
  m.machine = j.value("machine", "");
  m.address = j.value("address", "");
  m.mac = j.value("mac", "");
  m.etcd = j.value("etcd", false);
}
void to_json(nlohmann::json& j, const Cluster& c) {
  j = {{"schema_version", 1}, {"name", c.name}, {"subnet", c.subnet}, {"members", c.members}};
}
void from_json(const nlohmann::json& j, Cluster& c) {
  c.name = j.value("name", "");
  c.subnet = j.value("subnet", c.subnet);
  c.members = j.value("members", std::vector<ClusterMember>{});
}

void validate_cluster_name(const std::string& name) {
  static const std::regex rule("[a-z0-9][a-z0-9-]{0,31}");
  if (!std::regex_match(name, rule))
    throw UserError(fmt::format("cluster name '{}' is not valid: use 1 to 32 lower-case letters, digits and '-', "
                                "starting with a letter or digit",
                                name));
}

ClusterStore::ClusterStore(fs::path root) : root_(std::move(root)) {}

bool ClusterStore::exists(const std::string& name) const {
  std::error_code ec;
  return fs::exists(dir(name) / "cluster.json", ec);
}

std::vector<std::string> ClusterStore::names() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(root_, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (fs::exists(it->path() / "cluster.json")) out.push_back(it->path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

Cluster ClusterStore::load(const std::string& name) const {
  validate_cluster_name(name);
  const fs::path file = dir(name) / "cluster.json";
  std::ifstream in(file);
  if (!in) throw NotFound(fmt::format("cluster '{}' does not exist; 'berth cluster ls' lists the clusters", name));
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object())
    throw Error(fmt::format("cluster '{}': {} is not valid JSON; fix or remove it", name, file.string()));
  return j.get<Cluster>();
}

void ClusterStore::save(const Cluster& cluster) const {
  fs::create_directories(dir(cluster.name));
  fs::permissions(dir(cluster.name), fs::perms::owner_all, fs::perm_options::replace);
  write_file_atomic(dir(cluster.name) / "cluster.json", nlohmann::json(cluster).dump(2) + "\n", 0600);
}

void ClusterStore::remove(const std::string& name) const {
  stop_vde_switch(dir(name));
  std::error_code ec;
  fs::remove_all(dir(name), ec);
}

FileLock ClusterStore::lock(const std::string& name) const {
  fs::create_directories(dir(name));
  auto lock = FileLock::acquire(dir(name) / ".lock", std::chrono::seconds(120));
  if (!lock)
    throw Error(fmt::format("cluster '{}' is busy: another berth command is changing it; try again", name));
  return std::move(*lock);
}

tls::KeyPair ClusterStore::ca(const std::string& name) const {
  const fs::path cert = dir(name) / "ca.pem", key = dir(name) / "ca-key.pem";
  std::error_code ec;
  if (fs::exists(cert, ec) && fs::exists(key, ec)) return {read_file(cert), read_file(key)};
  fs::create_directories(dir(name));
  tls::KeyPair ca = tls::make_ca("berth cluster " + name, tls::KeyType::Ecdsa);
  write_file_atomic(key, ca.key_pem, 0600);
  write_file_atomic(cert, ca.cert_pem, 0644);
  return ca;
}

ClusterMember next_member(const Cluster& cluster, const std::string& machine) {
  const std::string base = cluster.subnet.substr(0, cluster.subnet.find('/'));
  in_addr net{};
  if (::inet_pton(AF_INET, base.c_str(), &net) != 1)
    throw Error(fmt::format("cluster '{}': subnet {} is not an IPv4 network", cluster.name, cluster.subnet));
  std::uint32_t first = ntohl(net.s_addr);
  for (std::uint32_t host = 11; host < 255; ++host) {
    in_addr a{htonl(first + host)};
    char text[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &a, text, sizeof text);
    bool used = false;
    for (const ClusterMember& m : cluster.members) used |= m.address == text;
    if (used) continue;
    ClusterMember m;
    m.machine = machine;
    m.address = text;
    m.mac = fmt::format("52:54:00:be:{:02x}:{:02x}", (first >> 8) & 0xff, host);
    m.etcd = cluster.voters() < kClusterVoters;
    return m;
  }
  throw UserError(fmt::format("cluster '{}' is full: {} has no free address", cluster.name, cluster.subnet));
}

// --- the VDE switch ---

fs::path vde_socket(const fs::path& cluster_dir) { return cluster_dir / "vde"; }

namespace {
pid_t vde_pid(const fs::path& cluster_dir) {
  std::ifstream in(cluster_dir / "vde.pid");
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
  std::string text((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  return text.find("vde_switch") != std::string::npos ? pid : 0;
}
}  // namespace

bool vde_switch_running(const fs::path& cluster_dir) { return vde_pid(cluster_dir) != 0; }

void ensure_vde_switch(const fs::path& cluster_dir) {
  if (vde_switch_running(cluster_dir)) return;
  const fs::path sock = vde_socket(cluster_dir);
  std::error_code ec;
  fs::remove_all(sock, ec);
  fs::remove(cluster_dir / "vde.pid", ec);
  // QEMU runs as another user under qemu:///system: the switch's sockets are 0777
  // inside a directory only that user and root can reach through the store.
  pid_t pid = ::fork();
  if (pid < 0) throw Error("cannot start vde_switch: fork failed");
  if (pid == 0) {
    // berth blocks SIGTERM, SIGINT and SIGHUP for its signal thread; a mask
    // survives exec, and with it the switch would never end on SIGTERM.
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::signal(sig, SIG_DFL);
    int log = ::open((cluster_dir / "vde.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log >= 0 && null >= 0) {
      ::dup2(null, 0);
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    ::execlp("vde_switch", "vde_switch", "--sock", sock.c_str(), "--mode", "0777", "--daemon", "--pidfile",
             (cluster_dir / "vde.pid").c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    throw UserError("vde_switch is not installed: a cluster of local VMs needs it (apt-get install vde2)");
  for (int i = 0; i < 50 && !vde_switch_running(cluster_dir); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!vde_switch_running(cluster_dir))
    throw Error(fmt::format("vde_switch did not start; see {}", (cluster_dir / "vde.log").string()));
  fs::permissions(cluster_dir, fs::perms::owner_all | fs::perms::others_exec | fs::perms::group_exec,
                  fs::perm_options::replace, ec);
}

void stop_vde_switch(const fs::path& cluster_dir) {
  if (pid_t pid = vde_pid(cluster_dir)) ::kill(pid, SIGTERM);
  std::error_code ec;
  fs::remove(cluster_dir / "vde.pid", ec);
}

}  // namespace berth
