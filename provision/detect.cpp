// /etc/os-release parsing, OS support check and init-system probe.
#include <fmt/format.h>

#include <map>
#include <sstream>

#include "core/error.h"
#include "provision/common.h"

namespace berth::provision {
namespace {

// One os-release value: "double quoted" (with \" \\ \$ \` escapes), 'single quoted' or bare.
std::string unquote(std::string_view v) {
  std::string out;
  char quote = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (quote == 0 && (c == '"' || c == '\'')) {
      quote = c;
    } else if (quote != 0 && c == quote) {
      quote = 0;
    } else if (c == '\\' && quote != '\'' && i + 1 < v.size()) {
      out += v[++i];
    } else if (quote == 0 && (c == ' ' || c == '\t' || c == '#')) {
      break;  // end of a bare value
    } else {
      out += c;
    }
  }
  return out;
}

bool has_word(const std::string& list, const std::string& word) {
  std::istringstream in(list);
  for (std::string w; in >> w;)
    if (w == word) return true;
  return false;
}

bool supported(const OsInfo& os) {
  if (os.id == "debian" || os.id == "ubuntu" || os.id == "alpine" || os.id == "berth-os") return true;
  return has_word(os.id_like, "debian") || has_word(os.id_like, "ubuntu");
}

}  // namespace

OsInfo parse_os_release(std::string_view text) {
  std::map<std::string, std::string> fields;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    std::string t = detail::trim(line);
    if (t.empty() || t[0] == '#') continue;
    auto eq = t.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    fields[detail::trim(t.substr(0, eq))] = unquote(detail::trim(t.substr(eq + 1)));
  }
  OsInfo os;
  os.id = fields["ID"];
  os.id_like = fields["ID_LIKE"];
  os.version_id = fields["VERSION_ID"];
  os.pretty_name = fields["PRETTY_NAME"];
  if (os.pretty_name.empty()) os.pretty_name = fields.count("NAME") ? fields["NAME"] : "Linux";
  if (os.id.empty()) os.id = "linux";  // the os-release default
  return os;
}

std::unique_ptr<Provisioner> detect(Remote& remote) {
  auto host_name = [&] {
    std::string name = detail::trim(remote.run("uname -n").out);
    return name.empty() ? std::string("the host") : "host '" + name + "'";
  };
  ExecResult release = remote.run("cat /etc/os-release");
  if (release.exit_code != 0) release = remote.run("cat /usr/lib/os-release");
  if (release.exit_code != 0)
    throw Error(fmt::format("cannot read /etc/os-release on {}: {}; berth can provision Debian, Ubuntu, Alpine "
                            "and berth-os hosts",
                            host_name(), detail::trim(release.err)));
  OsInfo os = parse_os_release(release.out);
  if (!supported(os))
    throw Error(fmt::format("unsupported OS '{}' on {}: berth can provision Debian, Ubuntu, Alpine and berth-os hosts",
                            os.pretty_name, host_name()));

  bool root = detail::trim(remote.check("id -u")) == "0";
  if (!root && remote.run("sudo -n true").exit_code != 0) {
    std::string user = detail::trim(remote.run("id -un").out);
    throw Error(fmt::format("user '{}' on {} is not root and cannot run sudo without a password; berth needs "
                            "root or passwordless sudo (e.g. '{} ALL=(ALL) NOPASSWD:ALL' in /etc/sudoers.d/{})",
                            user, host_name(), user, user));
  }

  if (remote.run("test -d /run/systemd/system").exit_code == 0)
    return detail::make_systemd_provisioner(remote, std::move(os), root);
  if (remote.run("command -v rc-service").exit_code == 0 && remote.run("test -e /sbin/openrc-run").exit_code == 0)
    return detail::make_openrc_provisioner(remote, std::move(os), root);
  return detail::make_supervisor_provisioner(remote, std::move(os), root);
}

}  // namespace berth::provision
