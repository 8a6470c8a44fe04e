#pragma once
// berth's own cluster routes (the CLI's `berth cluster ...`, create and rm):
// what this member sees of the cluster, and etcd membership changes made
// through it. Errors are api::HttpError: 503 when etcd cannot answer, 400
// when this machine is not a cluster member.
#include <nlohmann/json.hpp>
#include <string>

namespace berth::agent::network {

class OverlayDriver;

class ClusterAdmin {
 public:
  explicit ClusterAdmin(OverlayDriver* overlay) : overlay_(overlay) {}

  // {StoreHealthy, StoreError, Members[{Name, PeerURL, Healthy}],
  //  Networks[{Name, Id, VNI, Subnet}], Endpoints[{Machine, Containers}]}
  nlohmann::json status();
  // etcd member add for a new voter (idempotent for the same peer URL);
  // returns the --initial-cluster it must start with.
  std::string add_member(const std::string& name, const std::string& peer_url);
  // etcd member remove by name or peer URL; false when there was none.
  bool remove_member(const std::string& name);
  // This machine's endpoints, address leases and machine key leave the store.
  // Returns how many endpoints went.
  int leave();

 private:
  OverlayDriver& driver();
  OverlayDriver* overlay_;
};

}  // namespace berth::agent::network
