#pragma once
// The 127.0.0.1 ports VM drivers forward to a guest's SSH and agent.
#include <filesystem>
#include <set>
#include <string>

namespace berth {

// Ports the other machines of this store have recorded in their driver_state
// (ssh_port, agent_port), running or not, whatever their driver.
std::set<int> ports_of_other_machines(const std::filesystem::path& machine_dir);

// Keeps `ssh_port` and `agent_port` when they are free and nobody else's, and
// picks new ones otherwise (or always, with force_new). Throws DriverError
// naming the machine when 127.0.0.1 has no free port.
void choose_forward_ports(const std::filesystem::path& machine_dir, const std::string& machine, int& ssh_port,
                          int& agent_port, bool force_new = false);

}  // namespace berth
