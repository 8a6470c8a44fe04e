#include "agent/runtime/devices.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <sstream>

#include "agent/api/http.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Node {
  std::string path;  // in the container
  char type;         // 'c' or 'b'
  unsigned major, minor;
  std::uint32_t mode, uid, gid;
};

std::optional<Node> device_node(const fs::path& host, const std::string& in_container) {
  struct stat st {};
  if (::stat(host.c_str(), &st) != 0) return std::nullopt;
  char type;
  if (S_ISCHR(st.st_mode))
    type = 'c';
  else if (S_ISBLK(st.st_mode))
    type = 'b';
  else
    return std::nullopt;
  return Node{in_container, type, ::major(st.st_rdev), ::minor(st.st_rdev), st.st_mode & 07777,
              st.st_uid, st.st_gid};
}

void add_node(json& spec, const Node& n, const std::string& access) {
  json& devices = spec["linux"]["devices"];
  if (!devices.is_array()) devices = json::array();
  for (auto it = devices.begin(); it != devices.end();) {
    if (it->value("path", "") == n.path)
      it = devices.erase(it);
    else
      ++it;
  }
  devices.push_back({{"path", n.path},
                     {"type", std::string(1, n.type)},
                     {"major", n.major},
                     {"minor", n.minor},
                     {"fileMode", n.mode},
                     {"uid", n.uid},
                     {"gid", n.gid}});
  json& rules = spec["linux"]["resources"]["devices"];
  if (!rules.is_array()) rules = json::array();
  rules.push_back({{"allow", true},
                   {"type", std::string(1, n.type)},
                   {"major", n.major},
                   {"minor", n.minor},
                   {"access", access}});
}

bool valid_permissions(const std::string& p) {
  if (p.empty() || p.size() > 3) return false;
  for (char c : p)
    if (c != 'r' && c != 'w' && c != 'm') return false;
  return true;
}

// dockerd's devices.HostDevices: every node under /dev but these.
bool skipped_dir(const std::string& name) {
  return name == "pts" || name == "shm" || name == "fd" || name == "mqueue" || name == ".lxc" ||
         name == ".lxd-mounts" || name == ".udev";
}

void walk_devices(const fs::path& dir, const fs::path& host_root, const std::string& dest_root,
                  std::vector<std::pair<fs::path, std::string>>& out, bool skip_special) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    std::string name = p.filename().string();
    if (it->is_symlink(ec)) continue;
    if (it->is_directory(ec)) {
      if (skip_special && dir == host_root && skipped_dir(name)) continue;
      walk_devices(p, host_root, dest_root, out, skip_special);
      continue;
    }
    if (skip_special && p == host_root / "console") continue;
    std::string rel = fs::relative(p, host_root).string();
    out.emplace_back(p, dest_root + (dest_root.ends_with('/') ? "" : "/") + rel);
  }
}

}  // namespace

void apply_devices(json& spec, const json& hc, const fs::path& host_dev) {
  if (!hc.is_object()) return;
  if (hc.value("Privileged", false)) {
    std::vector<std::pair<fs::path, std::string>> all;
    walk_devices(host_dev, host_dev, "/dev", all, true);
    std::sort(all.begin(), all.end());
    for (const auto& [host, dest] : all)
      if (auto n = device_node(host, dest)) add_node(spec, *n, "rwm");
  }
  auto it = hc.find("Devices");
  if (it == hc.end() || !it->is_array()) return;
  for (const json& d : *it) {
    if (!d.is_object()) throw api::HttpError(400, "invalid device mapping: not an object");
    std::string host = d.value("PathOnHost", "");
    std::string dest = d.value("PathInContainer", "");
    std::string perms = d.value("CgroupPermissions", "");
    if (perms.empty()) perms = "rwm";
    if (dest.empty()) dest = host;
    if (!valid_permissions(perms))
      throw api::HttpError(400, "invalid device mode: " + perms);
    struct stat st {};
    if (host.empty() || ::stat(host.c_str(), &st) != 0)
      throw api::HttpError(400, "error gathering device information while adding custom device \"" +
                                    host + "\": no such file or directory");
    if (S_ISDIR(st.st_mode)) {
      std::vector<std::pair<fs::path, std::string>> nodes;
      walk_devices(host, host, dest, nodes, false);
      std::sort(nodes.begin(), nodes.end());
      for (const auto& [h, c] : nodes)
        if (auto n = device_node(h, c)) add_node(spec, *n, perms);
      continue;
    }
    auto n = device_node(host, dest);
    if (!n)
      throw api::HttpError(400, "error gathering device information while adding custom device \"" +
                                    host + "\": not a device node");
    add_node(spec, *n, perms);
  }
}

void apply_group_add(json& spec, const json& hc, const std::string& group_text) {
  if (!hc.is_object()) return;
  auto it = hc.find("GroupAdd");
  if (it == hc.end() || !it->is_array() || it->empty()) return;
  json& user = spec["process"]["user"];
  std::vector<std::uint32_t> gids;
  if (user.contains("additionalGids") && user["additionalGids"].is_array())
    gids = user["additionalGids"].get<std::vector<std::uint32_t>>();
  for (const json& g : *it) {
    if (!g.is_string()) throw api::HttpError(400, "invalid GroupAdd entry: not a string");
    const std::string name = g.get<std::string>();
    std::optional<std::uint32_t> gid;
    std::istringstream in(group_text);
    std::string line;
    while (!gid && std::getline(in, line)) {
      // name:password:gid:members
      auto c1 = line.find(':');
      if (c1 == std::string::npos || line[0] == '#') continue;
      auto c2 = line.find(':', c1 + 1);
      if (c2 == std::string::npos) continue;
      auto c3 = line.find(':', c2 + 1);
      std::string num = line.substr(c2 + 1, c3 == std::string::npos ? std::string::npos : c3 - c2 - 1);
      std::uint32_t v;
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
      if (ec != std::errc() || p != num.data() + num.size()) continue;
      if (line.substr(0, c1) == name || num == name) gid = v;
    }
    if (!gid) {
      std::uint32_t v;
      auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), v);
      if (!name.empty() && ec == std::errc() && p == name.data() + name.size()) gid = v;
    }
    if (!gid)
      throw api::HttpError(400, "Unable to find group " + name + ": no matching entries in group file");
    if (std::find(gids.begin(), gids.end(), *gid) == gids.end()) gids.push_back(*gid);
  }
  user["additionalGids"] = gids;
}

}  // namespace berth::agent::runtime
