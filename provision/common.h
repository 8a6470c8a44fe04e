#pragma once
// Private to provision/: shell helpers, root access to the host (direct or via
// `sudo -n`), the install steps every init system shares, and the service files.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "provision/provision.h"

namespace berth::provision::detail {

// 'text' for /bin/sh; plain words (paths, names) stay unquoted.
std::string shell_quote(std::string_view text);
std::string sha256_hex(std::string_view data);
std::string sha256_file_hex(const std::filesystem::path& path);
std::string trim(std::string_view text);

// /etc/hosts with a "127.0.1.1 NAME" line so NAME resolves, or nullopt when it already does.
std::optional<std::string> hosts_with_name(std::string_view hosts, const std::string& name);

// Engine env entries as (KEY, value); throws UserError for an entry that is not KEY=value.
std::vector<std::pair<std::string, std::string>> parse_env(const std::vector<std::string>& env);

// Service definitions (pure text, unit-tested on their own).
inline constexpr const char* kSystemdUnit = "/etc/systemd/system/berth-agent.service";
inline constexpr const char* kOpenRcScript = "/etc/init.d/berth-agent";
inline constexpr const char* kOpenRcRunlevelLink = "/etc/runlevels/default/berth-agent";
inline constexpr const char* kSupervisorScript = "/etc/berth/berth-agent.sh";
inline constexpr const char* kLocalDDir = "/etc/local.d";
inline constexpr const char* kLocalDStart = "/etc/local.d/berth-agent.start";
inline constexpr const char* kRcLocal = "/etc/rc.local";

std::string systemd_unit(const EngineOptions& engine);
std::string openrc_script(const EngineOptions& engine);
struct SupervisorPaths {
  std::string agent_binary = kAgentBinary;
  std::string config = kAgentConfig;
  std::string pid_file = kPidFile;
  std::string log_file = kLogFile;
  int stop_timeout_s = 10;
};
std::string supervisor_script(const EngineOptions& engine, const SupervisorPaths& paths = {});
// /etc/rc.local with (add=true) or without (add=false) the line that starts the
// supervisor script; nullopt when nothing changes.
std::optional<std::string> rc_local_with_agent(std::optional<std::string> current, bool add);

// Root access to the host over a Remote. As root, commands run as they are and
// files are uploaded next to their target; as another user, commands get the
// `sudo -n ` prefix and files are staged in a private temp dir and installed
// with `sudo -n install`. Every file lands with an atomic rename.
class Host {
 public:
  Host(Remote& remote, bool root);
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  bool is_root() const { return root_; }
  std::string as_root(const std::string& command) const;
  ExecResult run(const std::string& command) { return remote_.run(command); }
  ExecResult run_root(const std::string& command) { return remote_.run(as_root(command)); }
  std::string check_root(const std::string& command) { return remote_.check(as_root(command)); }

  bool exists(const std::string& path);        // test -e, as root
  bool is_dir(const std::string& path);        // test -d, as root
  std::optional<std::string> read(const std::string& path);  // cat, as root; nullopt if unreadable
  void write(const std::string& path, std::string_view content, int mode);
  void upload(const std::filesystem::path& local, const std::string& path, int mode);

 private:
  std::string staging_path(const std::string& path);
  void commit(const std::string& staged, const std::string& path, int mode);

  Remote& remote_;
  bool root_;
  std::string stage_dir_;
};

// The steps shared by every init system; subclasses manage the service.
class AgentProvisioner : public Provisioner {
 public:
  AgentProvisioner(Remote& remote, OsInfo os, bool root, InitSystem init);
  OsInfo os() const override { return os_; }
  InitSystem init_system() const override { return init_; }
  void install(const AgentInstall& spec, const Progress& progress) override;
  void install_certs(const TlsMaterial& tls) override;
  void replace_agent(const std::filesystem::path& agent_binary) override;
  void upgrade_agent(const AgentInstall& spec, const Progress& progress) override;
  void uninstall() override;

 protected:
  virtual void install_service(const EngineOptions& engine) = 0;  // files + start at boot
  virtual void restart_service() = 0;                             // starts it when stopped
  virtual void reload_service() = 0;                              // SIGHUP when running, else nothing
  virtual void remove_service() = 0;                              // stop, disable, delete; fine when absent
  Host host_;

 private:
  void set_hostname(const std::string& name);
  bool upload_agent(const std::filesystem::path& local, const std::string& local_sha);  // false when the host already has it
  void write_certs(const TlsMaterial& tls);
  void write_cluster_files(const ClusterInstall& cluster);
  nlohmann::json agent_config(const AgentInstall& spec) const;
  void unmount_data_root();

  OsInfo os_;
  InitSystem init_;
};

std::unique_ptr<Provisioner> make_systemd_provisioner(Remote& remote, OsInfo os, bool root);
std::unique_ptr<Provisioner> make_openrc_provisioner(Remote& remote, OsInfo os, bool root);
std::unique_ptr<Provisioner> make_supervisor_provisioner(Remote& remote, OsInfo os, bool root);

}  // namespace berth::provision::detail
