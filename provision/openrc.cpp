// berth-agent as an OpenRC service (Alpine).
#include <fmt/format.h>

#include "provision/common.h"

namespace berth::provision::detail {
namespace {

constexpr int kStatusStopped = 3;  // `rc-service NAME status` exit code for a stopped service

class OpenRcProvisioner final : public AgentProvisioner {
 public:
  OpenRcProvisioner(Remote& remote, OsInfo os, bool root)
      : AgentProvisioner(remote, std::move(os), root, InitSystem::OpenRC) {}

  void start_agent() override {
    if (running()) return;
    host_.check_root("rc-service berth-agent start");
  }

  void stop_agent() override {
    if (!host_.exists(kOpenRcScript)) return;
    if (host_.run_root("rc-service berth-agent status").exit_code == kStatusStopped) return;
    host_.check_root("rc-service berth-agent stop");
  }

 protected:
  void install_service(const EngineOptions& engine) override {
    host_.write(kOpenRcScript, openrc_script(engine), 0755);
    if (!host_.exists(kOpenRcRunlevelLink)) host_.check_root("rc-update add berth-agent default");
  }

  void restart_service() override { host_.check_root("rc-service berth-agent restart"); }

  void reload_service() override {
    if (running()) host_.check_root("rc-service berth-agent reload");
  }

  void remove_service() override {
    if (!host_.exists(kOpenRcScript)) return;
    stop_agent();
    if (host_.exists(kOpenRcRunlevelLink)) host_.check_root("rc-update del berth-agent default");
    host_.check_root(std::string("rm -f ") + kOpenRcScript);
  }

 private:
  bool running() { return host_.run_root("rc-service berth-agent status").exit_code == 0; }
};

}  // namespace

std::string openrc_script(const EngineOptions& engine) {
  std::string env;
  for (const auto& [key, value] : parse_env(engine.env)) env += fmt::format("export {}={}\n", key, shell_quote(value));
  return fmt::format(
      "#!/sbin/openrc-run\n"
      "# Written by berth; 'berth provision' rewrites it.\n"
      "description=\"berth agent (Docker Engine API over mutual TLS)\"\n"
      "command=\"{}\"\n"
      "command_args=\"--config {}\"\n"
      "command_background=\"yes\"\n"
      "pidfile=\"{}\"\n"
      "error_log=\"{}\"\n"
      "retry=\"TERM/10/KILL/5\"\n"
      "extra_started_commands=\"reload\"\n"
      "{}"
      "\n"
      "depend() {{\n"
      "\tneed net\n"
      "\tafter firewall\n"
      "}}\n"
      "\n"
      "reload() {{\n"
      "\tebegin \"Reloading ${{RC_SVCNAME}}\"\n"
      "\tstart-stop-daemon --signal HUP --pidfile \"${{pidfile}}\"\n"
      "\teend $?\n"
      "}}\n",
      kAgentBinary, kAgentConfig, kPidFile, kLogFile, env);
}

std::unique_ptr<Provisioner> make_openrc_provisioner(Remote& remote, OsInfo os, bool root) {
  return std::make_unique<OpenRcProvisioner>(remote, std::move(os), root);
}

}  // namespace berth::provision::detail
