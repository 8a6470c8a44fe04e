#pragma once
// The "bridge" driver: the default bridge (berth0) and user-defined bridge
// networks, with their addresses leased on this machine (Net::ipam).
#include "agent/network/network_driver.h"

namespace berth::agent::network {

class BridgeDriver : public NetworkDriver {
 public:
  explicit BridgeDriver(DriverContext ctx) : ctx_(std::move(ctx)) {}
  const char* name() const override { return "bridge"; }

  void create_network(Net& n, const NetworkCreate& req, const TakenResources& taken) override;
  void delete_network(Net& n) override;
  void restore(Net& n) override;
  void join(Net& n, EndpointRec& e, const EndpointRequest& req,
            const std::filesystem::path& sandbox) override;
  void leave(Net& n, const EndpointRec& e) override;
  void forget(Net& n, const EndpointRec& e) override;

 private:
  DriverContext ctx_;
};

}  // namespace berth::agent::network
