#pragma once
// NetworkManager's insides, shared by its source files: network_manager.cpp
// (records, lookup, endpoints, the /networks API) and ports.cpp (published
// ports). Internal to agent/network.
#include <unistd.h>

#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/network/bridge_driver.h"
#include "agent/network/iptables.h"
#include "agent/network/network_manager.h"
#include "agent/network/network_state.h"
#include "agent/network/overlay_driver.h"

namespace berth::agent::network {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
};

struct PortRec {
  std::string container_id, proto, host_ip, container_ip, bridge;
  int host_port = 0, container_port = 0;
  Fd reservation;  // the host port, bound (not listening) while published

  PortSpec spec() const { return {proto, host_ip, host_port, container_ip, container_port, bridge}; }
  nlohmann::json to_json() const;
  static PortRec from_json(const nlohmann::json& j);
};

// Binds proto host_ip:port without listening: the port is ours while held.
Fd reserve_port(const std::string& proto, const std::string& host_ip, int port);

struct NetworkManager::Impl : OverlayHost {
  std::filesystem::path root;
  NetworkSettings settings;
  Iptables ipt;
  Iptables ipt6;
  mutable std::mutex mutex;
  NetMap nets;  // by id
  std::list<PortRec> ports;
  std::map<std::string, int> next_port;  // by proto, for -P
  mutable std::mutex hooks_mutex;
  ContainerHooks hooks;
  std::shared_ptr<events::EventBus> events;  // set once at agent start
  DriverContext ctx;
  BridgeDriver bridge_driver;
  std::unique_ptr<OverlayDriver> overlay;  // on a cluster member

  Impl(std::filesystem::path r, NetworkSettings s);
  ~Impl() override;

  void emit(const char* action, const Net& n, const std::string& container_id = "");
  NetworkDriver* driver_for(const Net& n);

  Net* find(const std::string& name_or_id) const;
  Net& require(const std::string& name_or_id) const;
  // require(), but an overlay network made on another machine moments ago
  // (not yet seen by the watch) is read from the cluster store first.
  Net& require_fresh(const std::string& name_or_id);

  std::filesystem::path net_file(const Net& n) const;
  void save_ports() const;
  std::vector<std::string> upstreams() const;
  // This machine's unique local IPv6 /48 (its seed kept in root/ula-seed).
  Ipv6Net ula48() const;

  Endpoint endpoint_of(const Net& n, const EndpointRec& e) const;
  void drop_endpoint(Net& n, const std::string& container_id);
  void unpublish_ip(const std::string& container_id, const std::string& ip);
  void restore_ports();
  std::unique_ptr<Net> predefined(const std::string& name, const std::string& driver);
  nlohmann::json net_json(const Net& n, bool with_containers) const;

  // OverlayHost
  void with_networks(const std::function<void(NetMap&)>& fn) override;
  const NetMap& networks() const override { return nets; }
  void save(const Net& n) override;
  void forget_network(const Net& n) override;
};

}  // namespace berth::agent::network
