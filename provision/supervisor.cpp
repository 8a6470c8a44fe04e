// berth-agent on hosts with neither systemd nor OpenRC: a pidfile script
// (/etc/berth/berth-agent.sh start|stop|restart|reload|status). The agent
// daemonizes itself and writes the pidfile. Start at boot goes through
// /etc/local.d/berth-agent.start where that directory exists (busybox/Alpine
// style), otherwise through a line in /etc/rc.local (sysvinit); on hosts that
// run neither, `berth start` starts the agent.
#include <fmt/format.h>

#include "provision/common.h"

namespace berth::provision::detail {
namespace {

class SupervisorProvisioner final : public AgentProvisioner {
 public:
  SupervisorProvisioner(Remote& remote, OsInfo os, bool root)
      : AgentProvisioner(remote, std::move(os), root, InitSystem::Supervisor) {}

  void start_agent() override { script("start"); }

  void stop_agent() override {
    if (host_.exists(kSupervisorScript)) script("stop");
  }

 protected:
  void install_service(const EngineOptions& engine) override {
    host_.write(kSupervisorScript, supervisor_script(engine), 0700);
    if (host_.is_dir(kLocalDDir)) {
      host_.write(kLocalDStart, fmt::format("#!/bin/sh\n{} start\n", kSupervisorScript), 0755);
    } else if (auto updated = rc_local_with_agent(host_.read(kRcLocal), true)) {
      host_.write(kRcLocal, *updated, 0755);
    }
  }

  void restart_service() override { script("restart"); }
  void reload_service() override { script("reload"); }  // the script does nothing when stopped

  void remove_service() override {
    if (host_.exists(kSupervisorScript)) script("stop");
    host_.check_root(std::string("rm -f ") + kLocalDStart);
    if (auto rc_local = host_.read(kRcLocal))
      if (auto updated = rc_local_with_agent(rc_local, false)) host_.write(kRcLocal, *updated, 0755);
  }

 private:
  void script(const char* action) { host_.check_root(fmt::format("{} {}", kSupervisorScript, action)); }
};

}  // namespace

std::string supervisor_script(const EngineOptions& engine, const SupervisorPaths& paths) {
  std::string env;
  for (const auto& [key, value] : parse_env(engine.env)) env += fmt::format("export {}={}\n", key, shell_quote(value));
  return fmt::format(R"SH(#!/bin/sh
# berth-agent service script, written by berth; 'berth provision' rewrites it.
# Usage: berth-agent.sh start|stop|restart|reload|status
AGENT={agent}
CONFIG={config}
PIDFILE={pidfile}
LOG={log}
TIMEOUT={timeout}
{env}
nap() {{ sleep 0.2 2>/dev/null || sleep 1; }}

# alive PID: the process exists and is not a zombie.
alive() {{
	kill -0 "$1" 2>/dev/null || return 1
	state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ "$state" != Z ]
}}

# running: the pidfile names a live berth-agent; sets $pid.
running() {{
	pid=
	[ -r "$PIDFILE" ] || return 1
	read -r pid <"$PIDFILE" || [ -n "$pid" ] || return 1
	case "$pid" in '' | *[!0-9]*) pid=; return 1 ;; esac
	alive "$pid" || return 1
	# A recycled pid belongs to another program.
	if [ -r "/proc/$pid/cmdline" ] && ! tr '\000' ' ' <"/proc/$pid/cmdline" | grep -q berth-agent; then
		return 1
	fi
	return 0
}}

start() {{
	if running; then
		echo "berth-agent is already running (pid $pid)"
		return 0
	fi
	rm -f "$PIDFILE"
	if ! "$AGENT" --config "$CONFIG" --daemon --pidfile "$PIDFILE" </dev/null >>"$LOG" 2>&1; then
		echo "berth-agent failed to start; see $LOG" >&2
		return 1
	fi
	i=0
	while [ "$i" -lt $((TIMEOUT * 5)) ]; do
		if running; then
			echo "berth-agent started (pid $pid)"
			return 0
		fi
		nap
		i=$((i + 1))
	done
	echo "berth-agent did not write $PIDFILE within ${{TIMEOUT}}s; see $LOG" >&2
	return 1
}}

stop() {{
	if ! running; then
		rm -f "$PIDFILE"
		echo "berth-agent is not running"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	i=0
	while [ "$i" -lt $((TIMEOUT * 5)) ]; do
		if ! alive "$pid"; then
			rm -f "$PIDFILE"
			echo "berth-agent stopped"
			return 0
		fi
		nap
		i=$((i + 1))
	done
	echo "berth-agent did not stop within ${{TIMEOUT}}s; killing it" >&2
	kill -KILL "$pid" 2>/dev/null
	rm -f "$PIDFILE"
	return 0
}}

reload() {{
	if running; then
		kill -HUP "$pid" && echo "berth-agent reloading (pid $pid)"
	else
		echo "berth-agent is not running; nothing to reload"
	fi
}}

status() {{
	if running; then
		echo "berth-agent is running (pid $pid)"
		return 0
	fi
	echo "berth-agent is stopped"
	return 3
}}

case "$1" in
start | stop | reload | status) "$1" ;;
restart) stop && start ;;
*)
	echo "usage: $0 start|stop|restart|reload|status" >&2
	exit 2
	;;
esac
)SH",
                     fmt::arg("agent", shell_quote(paths.agent_binary)), fmt::arg("config", shell_quote(paths.config)),
                     fmt::arg("pidfile", shell_quote(paths.pid_file)), fmt::arg("log", shell_quote(paths.log_file)),
                     fmt::arg("timeout", paths.stop_timeout_s), fmt::arg("env", env));
}

std::unique_ptr<Provisioner> make_supervisor_provisioner(Remote& remote, OsInfo os, bool root) {
  return std::make_unique<SupervisorProvisioner>(remote, std::move(os), root);
}

}  // namespace berth::provision::detail
