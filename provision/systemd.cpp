// berth-agent as a systemd service.
#include <fmt/format.h>

#include "provision/common.h"

namespace berth::provision::detail {
namespace {

constexpr const char* kUnitName = "berth-agent.service";

// A value for Environment="...": backslash and quote are escaped, % is a specifier.
std::string systemd_env_value(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '%') out += '%';
    out += c;
  }
  return out;
}

class SystemdProvisioner final : public AgentProvisioner {
 public:
  SystemdProvisioner(Remote& remote, OsInfo os, bool root)
      : AgentProvisioner(remote, std::move(os), root, InitSystem::Systemd) {}

  void start_agent() override { host_.check_root(fmt::format("systemctl start {}", kUnitName)); }

  void stop_agent() override {
    if (!host_.exists(kSystemdUnit)) return;
    host_.check_root(fmt::format("systemctl stop {}", kUnitName));
  }

 protected:
  void install_service(const EngineOptions& engine) override {
    host_.write(kSystemdUnit, systemd_unit(engine), 0644);
    host_.check_root("systemctl daemon-reload");
    host_.check_root(fmt::format("systemctl enable {}", kUnitName));
  }

  void restart_service() override { host_.check_root(fmt::format("systemctl restart {}", kUnitName)); }

  // Reloads (SIGHUP) only when the agent runs; a stopped agent reads the files at start.
  void reload_service() override { host_.check_root(fmt::format("systemctl try-reload-or-restart {}", kUnitName)); }

  void remove_service() override {
    if (!host_.exists(kSystemdUnit)) return;
    host_.check_root(fmt::format("systemctl stop {}", kUnitName));
    host_.check_root(fmt::format("systemctl disable {}", kUnitName));
    host_.check_root(std::string("rm -f ") + kSystemdUnit);
    host_.check_root("systemctl daemon-reload");
    host_.run_root(fmt::format("systemctl reset-failed {}", kUnitName));  // fails when it never failed
  }
};

}  // namespace

std::string systemd_unit(const EngineOptions& engine) {
  std::string env;
  for (const auto& [key, value] : parse_env(engine.env))
    env += fmt::format("Environment=\"{}={}\"\n", key, systemd_env_value(value));
  return fmt::format(
      "# Written by berth; 'berth provision' rewrites it.\n"
      "[Unit]\n"
      "Description=berth agent (Docker Engine API over mutual TLS)\n"
      "After=network-online.target\n"
      "Wants=network-online.target\n"
      "\n"
      "[Service]\n"
      "Type=simple\n"
      "ExecStart={} --config {}\n"
      "ExecReload=/bin/kill -HUP $MAINPID\n"
      "Restart=on-failure\n"
      "RestartSec=2s\n"
      "Delegate=yes\n"
      // Stop and restart end the agent alone: container shims live in this
      // unit's cgroup and must outlive an agent restart (berth upgrade).
      "KillMode=process\n"
      "LimitNOFILE=1048576\n"
      "TasksMax=infinity\n"
      "{}"
      "\n"
      "[Install]\n"
      "WantedBy=multi-user.target\n",
      kAgentBinary, kAgentConfig, env);
}

std::unique_ptr<Provisioner> make_systemd_provisioner(Remote& remote, OsInfo os, bool root) {
  return std::make_unique<SystemdProvisioner>(remote, std::move(os), root);
}

}  // namespace berth::provision::detail
