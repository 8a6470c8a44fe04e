#include "drivers/ports.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/net.h"

namespace berth {

std::set<int> ports_of_other_machines(const fs::path& machine_dir) {
  std::set<int> taken;
  const fs::path self = machine_dir.lexically_normal();
  std::error_code ec;
  for (auto it = fs::directory_iterator(self.parent_path(), ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->path().lexically_normal() == self) continue;
    try {
      auto j = nlohmann::json::parse(read_file(it->path() / "config.json"));
      const auto& st = j.at("driver_state");
      taken.insert(st.value("ssh_port", 0));
      taken.insert(st.value("agent_port", 0));
    } catch (const std::exception&) {
    }
  }
  return taken;
}

void choose_forward_ports(const fs::path& machine_dir, const std::string& machine, int& ssh_port, int& agent_port,
                          bool force_new) {
  const auto taken = ports_of_other_machines(machine_dir);
  auto usable = [&](int p) { return p > 0 && !taken.count(p) && loopback_port_free(p); };
  auto pick = [&](int avoid) {
    for (int i = 0; i < 50; ++i) {
      int p = free_tcp_port();
      if (p != avoid && usable(p)) return p;
    }
    throw DriverError(fmt::format("machine '{}': cannot find a free port on 127.0.0.1", machine));
  };
  if (force_new || !usable(ssh_port)) ssh_port = pick(agent_port);
  if (force_new || !usable(agent_port) || agent_port == ssh_port) agent_port = pick(ssh_port);
}

}  // namespace berth
