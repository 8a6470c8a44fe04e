#pragma once
// The "overlay" driver: networks that span the machines of a berth cluster.
//
//   cluster store   etcd (cluster_store.h): the network records, VNIs, address
//                   leases and every machine's endpoints, all taken by
//                   compare-and-swap.
//   data plane      per network, on each machine where one of its containers
//                   runs: a bridge ov-<id> holding the network's gateway (the
//                   same address on every machine; it never leaves the
//                   machine) and a vxlan device vx-<id> (the network's VNI,
//                   local = this machine's advertise address, UDP 4789,
//                   learning off, ARP proxy, MTU 1450) enslaved to it. Outbound
//                   traffic leaves through this machine's NAT, as on bridges.
//   forwarding      a watch on etcd keeps the vxlan device's FDB and neighbour
//                   entries equal to the other machines' endpoints
//                   (overlay_dataplane.h); a full read reconciles after an
//                   agent restart, a lost watch, and every resync interval.
//   names           the network's DNS server answers for its containers
//                   wherever they run.
//
// When etcd cannot answer (no quorum, unreachable), creating networks and
// joining containers fails with one clear error (503), while the kernel keeps
// forwarding for the containers that run.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "agent/network/cluster_store.h"
#include "agent/network/network_driver.h"

namespace berth::agent::network {

// What the overlay driver needs from the manager for what its watch learns.
class OverlayHost {
 public:
  virtual ~OverlayHost() = default;
  // Runs fn with the manager's lock held, on its networks.
  virtual void with_networks(const std::function<void(NetMap&)>& fn) = 0;
  // The manager's networks; only while its lock is held (driver calls).
  virtual const NetMap& networks() const = 0;
  virtual void save(const Net& n) = 0;           // lock held
  virtual void forget_network(const Net& n) = 0;  // its state file; lock held
};

class OverlayDriver : public NetworkDriver {
 public:
  OverlayDriver(DriverContext ctx, ClusterSettings cluster, OverlayHost& host);
  ~OverlayDriver() override;  // stops the watch
  const char* name() const override { return "overlay"; }

  void create_network(Net& n, const NetworkCreate& req, const TakenResources& taken) override;
  void delete_network(Net& n) override;
  void restore(Net& n) override;
  void join(Net& n, EndpointRec& e, const EndpointRequest& req,
            const std::filesystem::path& sandbox) override;
  void leave(Net& n, const EndpointRec& e) override;
  void forget(Net& n, const EndpointRec& e) override;

  // The watch thread: list, reconcile, watch; again after any failure.
  void start();
  void stop();
  // One full read and reconcile now, on the calling thread (tests; throws
  // StoreUnavailable).
  void resync();
  // A network by name, id or id prefix straight from the store (nullopt
  // when it is not there or the store cannot answer).
  std::optional<OverlayNetworkRecord> fetch(const std::string& name_or_id);
  // The last read or watch worked.
  bool store_available() const { return available_; }
  const ClusterSettings& cluster() const { return cluster_; }
  ClusterStore& store() { return store_; }

 private:
  void run();
  void apply(const ClusterSnapshot& snap, bool full);
  void sync(NetMap& nets, const ClusterSnapshot& snap, bool full);
  void collect_garbage(NetMap& nets, const ClusterSnapshot& snap);
  void ensure_dataplane(Net& n);
  void teardown_dataplane(Net& n);
  void reconcile(Net& n);
  OverlayNetworkRecord record_of(const Net& n) const;
  ClusterEndpoint cluster_endpoint(const Net& n, const EndpointRec& e) const;
  void warn(const std::string& message) const;

  DriverContext ctx_;
  ClusterSettings cluster_;
  OverlayHost& host_;
  EtcdClient etcd_;
  ClusterStore store_;
  std::atomic<bool> available_{false};
  std::mutex run_mutex_;
  std::condition_variable run_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Fills a Net (driver "overlay") from the cluster's record of it.
std::unique_ptr<Net> overlay_net_from_record(const OverlayNetworkRecord& rec);

}  // namespace berth::agent::network
