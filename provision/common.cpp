#include "provision/common.h"


#include <algorithm>
#include <cctype>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "core/sha256.h"

namespace berth::provision {

std::string to_string(InitSystem s) {
  switch (s) {
    case InitSystem::Systemd: return "systemd";
    case InitSystem::OpenRC: return "openrc";
    case InitSystem::Supervisor: return "supervisor";
  }
  return "unknown";
}

nlohmann::json make_agent_config(const EngineOptions& engine, const nlohmann::json& cluster) {
  nlohmann::json config{
      {"listen", "0.0.0.0"},
      {"port", engine.port},
      {"tls", {{"ca", kCaCert}, {"cert", kServerCert}, {"key", kServerKey}}},
      {"log_file", kLogFile},
      {"pid_file", kPidFile},
      {"data_root", kDataRoot},
      {"labels", engine.labels},
      {"env", engine.env},
      {"opts", engine.opts},
      {"insecure_registries", engine.insecure_registries},
      {"registry_mirrors", engine.registry_mirrors},
  };
  if (cluster.is_object()) config["cluster"] = cluster;
  return config;
}

namespace detail {
namespace {

constexpr std::string_view kLog = "provision";


std::string octal(int mode) { return fmt::format("{:04o}", mode); }

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string shell_quote(std::string_view text) {
  bool plain = !text.empty();
  for (char c : text)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("/._-=:,+@%").find(c) != std::string_view::npos))
      plain = false;
  if (plain) return std::string(text);
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex();
}

std::string sha256_file_hex(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot read the berth-agent binary " + path.string());
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw UserError("cannot read the berth-agent binary " + path.string());
  return h.hex();
}

std::string trim(std::string_view text) {
  auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

std::optional<std::string> hosts_with_name(std::string_view hosts, const std::string& name) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(hosts)};
  for (std::string line; std::getline(in, line);) lines.push_back(line);

  int loopback_line = -1;  // an existing 127.0.1.1 line (Debian names the host there)
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string body = lines[i].substr(0, lines[i].find('#'));
    std::istringstream fields(body);
    std::string address, alias;
    if (!(fields >> address)) continue;
    while (fields >> alias)
      if (alias == name) return std::nullopt;
    if (address == "127.0.1.1" && loopback_line < 0) loopback_line = static_cast<int>(i);
  }
  std::string entry = "127.0.1.1\t" + name;
  if (loopback_line >= 0) lines[static_cast<size_t>(loopback_line)] = entry;
  else lines.push_back(entry);
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_env(const std::vector<std::string>& env) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& entry : env) {
    auto eq = entry.find('=');
    std::string key = entry.substr(0, eq);
    bool valid = eq != std::string::npos && !key.empty() && !std::isdigit(static_cast<unsigned char>(key[0]));
    for (char c : key)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) valid = false;
    if (!valid || entry.find_first_of("\n\r") != std::string::npos)
      throw UserError(fmt::format("invalid engine env '{}': use KEY=value on one line, KEY made of letters, "
                                  "digits and '_'",
                                  entry));
    out.emplace_back(key, entry.substr(eq + 1));
  }
  return out;
}

std::optional<std::string> rc_local_with_agent(std::optional<std::string> current, bool add) {
  const std::string line = std::string(kSupervisorScript) + " start";
  std::vector<std::string> lines;
  bool present = false;
  if (current) {
    std::istringstream in(*current);
    for (std::string l; std::getline(in, l);) {
      if (trim(l) == line) {
        present = true;
        if (!add) continue;
      }
      lines.push_back(l);
    }
  }
  if (add == present) return std::nullopt;
  if (!add) {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
  if (lines.empty()) lines = {"#!/bin/sh", "exit 0"};
  // Before a final "exit 0", or at the end.
  size_t at = lines.size();
  for (size_t i = lines.size(); i-- > 0;) {
    std::string t = trim(lines[i]);
    if (t.empty()) continue;
    if (t == "exit 0" || t == "exit") at = i;
    break;
  }
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(at), line);
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// ---- Host ----

Host::Host(Remote& remote, bool root) : remote_(remote), root_(root) {}

Host::~Host() {
  if (stage_dir_.empty()) return;
  try {
    remote_.run("rm -rf " + shell_quote(stage_dir_));
  } catch (const std::exception& e) {
    log::debug(kLog, "could not remove staging dir {}: {}", stage_dir_, e.what());
  }
}

std::string Host::as_root(const std::string& command) const { return root_ ? command : "sudo -n " + command; }

bool Host::exists(const std::string& path) { return run_root("test -e " + shell_quote(path)).exit_code == 0; }

bool Host::is_dir(const std::string& path) { return run_root("test -d " + shell_quote(path)).exit_code == 0; }

std::optional<std::string> Host::read(const std::string& path) {
  ExecResult r = run_root("cat " + shell_quote(path));
  if (r.exit_code != 0) return std::nullopt;
  return r.out;
}

std::string Host::staging_path(const std::string& path) {
  if (root_) return path + ".berth-new";
  if (stage_dir_.empty()) {
    // mktemp -d makes a 0700 directory only this user can enter.
    stage_dir_ = trim(remote_.check("mktemp -d"));
    if (stage_dir_.empty() || stage_dir_[0] != '/')
      throw Error("mktemp -d on the host printed no directory; cannot stage files for sudo");
  }
  return stage_dir_ + "/" + base_name(path);
}

void Host::commit(const std::string& staged, const std::string& path, int mode) {
  if (root_) {
    remote_.check("mv -f " + shell_quote(staged) + " " + shell_quote(path));
    return;
  }
  // Copy into the target's directory first so the final step is a same-filesystem rename.
  std::string next = path + ".berth-new";
  check_root(fmt::format("install -o root -g root -m {} {} {}", octal(mode), shell_quote(staged), shell_quote(next)));
  check_root("mv -f " + shell_quote(next) + " " + shell_quote(path));
  remote_.run("rm -f " + shell_quote(staged));
}

void Host::write(const std::string& path, std::string_view content, int mode) {
  std::string staged = staging_path(path);
  remote_.put(staged, content, mode);
  commit(staged, path, mode);
}

void Host::upload(const std::filesystem::path& local, const std::string& path, int mode) {
  std::string staged = staging_path(path);
  remote_.put_file(local, staged, mode);
  commit(staged, path, mode);
}

// ---- AgentProvisioner ----

AgentProvisioner::AgentProvisioner(Remote& remote, OsInfo os, bool root, InitSystem init)
    : host_(remote, root), os_(std::move(os)), init_(init) {}

void AgentProvisioner::install(const AgentInstall& spec, const Progress& progress) {
  auto step = [&](std::string_view name) {
    log::debug(kLog, "{}", name);
    if (progress) progress(name);
  };
  // Read the local binary before touching the host: a missing file fails early.
  std::string local_sha = sha256_file_hex(spec.agent_binary);
  parse_env(spec.engine.env);

  if (!spec.hostname.empty()) {
    step("set hostname");
    set_hostname(spec.hostname);
  }
  step("create directories");
  host_.check_root(fmt::format("mkdir -p {} {}", kConfigDir, kDataRoot));
  host_.check_root(fmt::format("chmod 0700 {} {}", kConfigDir, kDataRoot));

  step("upload berth-agent");
  upload_agent(spec.agent_binary, local_sha);

  if (spec.cluster) {
    step("install the cluster's files");
    write_cluster_files(*spec.cluster);
  }

  step("write agent config");
  host_.write(kAgentConfig, agent_config(spec).dump(2) + "\n", 0600);

  step("install TLS certificates");
  write_certs(spec.tls);

  step("install " + to_string(init_) + " service");
  install_service(spec.engine);

  step("start berth-agent");
  restart_service();
}

void AgentProvisioner::install_certs(const TlsMaterial& tls) {
  write_certs(tls);
  reload_service();
}

void AgentProvisioner::replace_agent(const std::filesystem::path& agent_binary) {
  upload_agent(agent_binary, sha256_file_hex(agent_binary));
  restart_service();
}

void AgentProvisioner::upgrade_agent(const AgentInstall& spec, const Progress& progress) {
  auto step = [&](std::string_view name) {
    log::debug(kLog, "{}", name);
    if (progress) progress(name);
  };
  std::string local_sha = sha256_file_hex(spec.agent_binary);
  parse_env(spec.engine.env);
  step("upload berth-agent");
  upload_agent(spec.agent_binary, local_sha);
  if (spec.cluster) {
    step("install the cluster's files");
    write_cluster_files(*spec.cluster);
  }
  step("write agent config");
  host_.write(kAgentConfig, agent_config(spec).dump(2) + "\n", 0600);
  step("update " + to_string(init_) + " service");
  install_service(spec.engine);
  step("restart berth-agent");
  restart_service();
}

void AgentProvisioner::uninstall() {
  remove_service();
  unmount_data_root();
  host_.check_root(fmt::format("rm -f {} {}.berth-new {} {}", kAgentBinary, kAgentBinary, kPidFile, kLogFile));
  host_.check_root(fmt::format("rm -rf {} {}", kConfigDir, kDataRoot));
}

void AgentProvisioner::set_hostname(const std::string& name) {
  std::string current = trim(host_.run("uname -n").out);
  if (current != name) host_.check_root("hostname " + shell_quote(name));
  if (trim(host_.read("/etc/hostname").value_or("")) != name) host_.write("/etc/hostname", name + "\n", 0644);
  std::string hosts = host_.read("/etc/hosts").value_or("127.0.0.1\tlocalhost\n");
  if (auto updated = hosts_with_name(hosts, name)) host_.write("/etc/hosts", *updated, 0644);
}

bool AgentProvisioner::upload_agent(const std::filesystem::path& local, const std::string& local_sha) {
  ExecResult remote_sum = host_.run_root(std::string("sha256sum ") + kAgentBinary);
  if (remote_sum.exit_code == 0 && remote_sum.out.substr(0, remote_sum.out.find_first_of(" \t")) == local_sha) {
    log::debug(kLog, "{} is already up to date ({})", kAgentBinary, local_sha);
    return false;
  }
  // Staged next to the target and renamed over it: a running agent keeps its old inode.
  host_.upload(local, kAgentBinary, 0755);
  return true;
}

nlohmann::json AgentProvisioner::agent_config(const AgentInstall& spec) const {
  return make_agent_config(spec.engine, spec.cluster ? spec.cluster->agent_config : nlohmann::json(nullptr));
}

void AgentProvisioner::write_cluster_files(const ClusterInstall& cluster) {
  host_.check_root(fmt::format("mkdir -p {} && chmod 0700 {}", kClusterDir, kClusterDir));
  host_.write(std::string(kClusterDir) + "/ca.pem", cluster.tls.ca_pem, 0644);
  host_.write(std::string(kClusterDir) + "/member.pem", cluster.tls.server_cert_pem, 0644);
  host_.write(std::string(kClusterDir) + "/member-key.pem", cluster.tls.server_key_pem, 0600);
  if (!cluster.etcd_binary.empty()) {
    std::string local_sha = sha256_file_hex(cluster.etcd_binary);
    ExecResult remote_sum = host_.run_root(std::string("sha256sum ") + kEtcdBinary);
    if (remote_sum.exit_code != 0 || remote_sum.out.substr(0, remote_sum.out.find_first_of(" \t")) != local_sha)
      host_.upload(cluster.etcd_binary, kEtcdBinary, 0755);
  }
  if (!cluster.interface.empty()) {
    // Kept for the next boots (berth-os applies it before the agent starts) and set now.
    host_.write(kInterfaces, cluster.interface + "\n", 0644);
    const std::string ifname = cluster.interface.substr(0, cluster.interface.find(' '));
    const std::string cidr = cluster.interface.substr(cluster.interface.find(' ') + 1);
    host_.check_root(fmt::format("ip link set {} up && (ip addr show dev {} | grep -q ' {} ' || ip addr add {} dev {})",
                                 shell_quote(ifname), shell_quote(ifname), shell_quote(cidr), shell_quote(cidr),
                                 shell_quote(ifname)));
  }
}

void AgentProvisioner::write_certs(const TlsMaterial& tls) {
  host_.write(kCaCert, tls.ca_pem, 0644);
  host_.write(kServerCert, tls.server_cert_pem, 0644);
  host_.write(kServerKey, tls.server_key_pem, 0600);
}

void AgentProvisioner::unmount_data_root() {
  // Container filesystems may still be mounted under the data root: unmount them
  // (deepest first) so rm -rf never walks into a mounted filesystem.
  std::string mounts = host_.read("/proc/self/mounts").value_or("");
  std::vector<std::string> targets;
  std::istringstream in(mounts);
  const std::string root = kDataRoot;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string device, target;
    if (!(fields >> device >> target)) continue;
    // /proc/mounts escapes space, tab, newline and backslash as \ooo.
    std::string decoded;
    for (size_t i = 0; i < target.size(); ++i) {
      if (target[i] == '\\' && i + 3 < target.size() && std::isdigit(static_cast<unsigned char>(target[i + 1]))) {
        decoded += static_cast<char>(std::stoi(target.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        decoded += target[i];
      }
    }
    if (decoded == root || decoded.rfind(root + "/", 0) == 0) targets.push_back(decoded);
  }
  std::sort(targets.begin(), targets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& t : targets) host_.check_root("umount -l " + shell_quote(t));
}

}  // namespace detail
}  // namespace berth::provision
