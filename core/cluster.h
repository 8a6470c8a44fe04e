#pragma once
// A berth cluster: machines whose berth-agents share overlay networks through
// etcd (the cluster store) and VXLAN over a private segment. Kept in
// ROOT/clusters/NAME/: cluster.json (its members and their addresses),
// ca.pem and ca-key.pem (0600; the cluster's own CA for etcd and the agents as
// etcd clients), and for local VMs the VDE switch that joins them (vde/,
// vde.pid, vde.log).
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/lock.h"
#include "core/tls.h"

namespace berth {

// etcd voters: the first three members run one each.
inline constexpr std::size_t kClusterVoters = 3;

struct ClusterMember {
  std::string machine;
  std::string address;  // on the cluster segment: the VXLAN underlay and etcd
  std::string mac;      // of its NIC on the segment ("" when the driver chose it)
  bool etcd = false;    // runs an etcd voter
};

struct Cluster {
  std::string name;
  std::string subnet = "192.168.200.0/24";  // the segment between local VMs
  std::vector<ClusterMember> members;

  const ClusterMember* member(const std::string& machine) const;
  std::size_t voters() const;
};

void to_json(nlohmann::json& j, const ClusterMember& m);
void from_json(const nlohmann::json& j, ClusterMember& m);
void to_json(nlohmann::json& j, const Cluster& c);
void from_json(const nlohmann::json& j, Cluster& c);

void validate_cluster_name(const std::string& name);  // throws UserError

class ClusterStore {
 public:
  explicit ClusterStore(std::filesystem::path root);  // ROOT/clusters

  std::filesystem::path dir(const std::string& name) const { return root_ / name; }
  bool exists(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  // Throws NotFound naming the cluster.
  Cluster load(const std::string& name) const;
  void save(const Cluster& cluster) const;  // atomic, 0600; makes the dir (0700)
  void remove(const std::string& name) const;
  // Serializes changes to one cluster's membership.
  FileLock lock(const std::string& name) const;
  // The cluster's CA, made on first use.
  tls::KeyPair ca(const std::string& name) const;

 private:
  std::filesystem::path root_;
};

// The next member: the lowest free address from .11 of the subnet, and a
// locally administered MAC derived from it.
ClusterMember next_member(const Cluster& cluster, const std::string& machine);

// The VDE switch (vde_switch from Debian's vde2) joining a cluster's local
// VMs through unix sockets only; no interface or address on this computer.
bool vde_switch_running(const std::filesystem::path& cluster_dir);
// Starts it when it does not run; throws UserError when vde_switch is missing.
void ensure_vde_switch(const std::filesystem::path& cluster_dir);
void stop_vde_switch(const std::filesystem::path& cluster_dir);
std::filesystem::path vde_socket(const std::filesystem::path& cluster_dir);

}  // namespace berth
