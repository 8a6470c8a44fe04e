#pragma once
// Ready-made fake hosts for the provisioning tests.
#include <string>

#include "tests/unit/provision/fake_remote.h"

namespace berth::testing {

inline const char* kDebianOsRelease =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"
    "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\n"
    "VERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n";

inline const char* kUbuntuOsRelease =
    "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\n"
    "VERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nID=ubuntu\nID_LIKE=debian\n";

inline const char* kAlpineOsRelease =
    "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n";

inline const char* kDebianHosts =
    "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n\n"
    "# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\n";

// Debian 12 with systemd running; systemctl always succeeds.
inline void make_debian_systemd(FakeRemote& r) {
  r.add_file("/etc/os-release", kDebianOsRelease);
  r.add_file("/etc/hosts", kDebianHosts);
  r.add_file("/etc/hostname", "debian\n");
  r.hostname = "debian";
  r.add_dir("/run/systemd/system");
  r.add_dir("/etc/systemd/system");
  r.add_file("/usr/bin/systemctl", "", 0755);
  r.on("(sudo -n )?systemctl .*", 0);
}

// Alpine with OpenRC; rc-update and rc-service act on a fake runlevel and state.
struct OpenRcState {
  bool started = false;
};
inline void make_alpine_openrc(FakeRemote& r, OpenRcState& state) {
  r.add_file("/etc/os-release", kAlpineOsRelease);
  r.add_file("/etc/hosts", "127.0.0.1\tlocalhost localhost.localdomain\n");
  r.add_file("/etc/hostname", "alpine\n");
  r.hostname = "alpine";
  r.add_file("/sbin/rc-service", "", 0755);
  r.add_file("/sbin/rc-update", "", 0755);
  r.add_file("/sbin/openrc-run", "", 0755);
  r.add_dir("/etc/init.d");
  r.add_dir("/etc/runlevels/default");
  r.on("(sudo -n )?rc-update add berth-agent default", [&r](const std::smatch&, std::string_view) {
    r.files["/etc/runlevels/default/berth-agent"] = {"-> /etc/init.d/berth-agent", 0777, "root"};
    return ExecResult{};
  });
  r.on("(sudo -n )?rc-update del berth-agent default", [&r](const std::smatch&, std::string_view) {
    r.files.erase("/etc/runlevels/default/berth-agent");
    return ExecResult{};
  });
  r.on("(sudo -n )?rc-service berth-agent (start|stop|restart|reload|status)",
       [&state](const std::smatch& m, std::string_view) {
         std::string action = m[2];
         if (action == "status") return ExecResult{state.started ? 0 : 3, "", ""};
         if (action == "reload" && !state.started) return ExecResult{1, "", " * berth-agent not started\n"};
         state.started = action != "stop";
         return ExecResult{};
       });
}

// Debian without systemd (sysvinit): no /run/systemd/system, no OpenRC.
inline void make_debian_sysvinit(FakeRemote& r) {
  r.add_file("/etc/os-release", kDebianOsRelease);
  r.add_file("/etc/hosts", kDebianHosts);
  r.add_file("/etc/hostname", "debian\n");
  r.hostname = "debian";
  r.on("(sudo -n )?/etc/berth/berth-agent.sh (start|stop|restart|reload|status)", 0);
}

}  // namespace berth::testing
