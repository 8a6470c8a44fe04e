#pragma once
// The iptables rules behind container networking, as argv (the nft-backed
// iptables binary, run without a shell). Rule builders are pure so tests can
// check them; Iptables applies them idempotently (-C before -A/-I/-D).
//
// Chains (like dockerd's DOCKER*):
//   nat    BERTH              DNAT for published ports (from PREROUTING and
//                             OUTPUT, --dst-type LOCAL)
//   nat    BERTH-POSTROUTING  MASQUERADE (from POSTROUTING)
//   filter BERTH              ACCEPT for published ports (from FORWARD)
//   filter BERTH-ISOLATION-1/2  no traffic between different bridges
#include <functional>
#include <string>
#include <vector>

#include "agent/process.h"

namespace berth::agent::network {

inline constexpr const char* kNatChain = "BERTH";
inline constexpr const char* kPostroutingChain = "BERTH-POSTROUTING";
inline constexpr const char* kFilterChain = "BERTH";
inline constexpr const char* kIsolation1 = "BERTH-ISOLATION-1";
inline constexpr const char* kIsolation2 = "BERTH-ISOLATION-2";

struct Rule {
  std::string table;
  std::string chain;
  std::vector<std::string> args;
  bool insert = false;  // -I (first) instead of -A
  bool operator==(const Rule&) const = default;
};

struct BridgeSpec {
  std::string bridge;  // "berth0", "br-0123456789ab"
  std::string subnet;  // "172.17.0.0/16"
  bool internal = false;
};

struct PortSpec {
  std::string proto;  // "tcp" or "udp"
  std::string host_ip;  // "0.0.0.0" for every address
  int host_port = 0;
  std::string container_ip;
  int container_port = 0;
  std::string bridge;
};

// The chains and the jumps into them from the built-in chains.
std::vector<std::pair<std::string, std::string>> base_chains();  // {table, chain}
std::vector<Rule> base_rules();
// Forwarding, masquerade and isolation for one bridge network.
std::vector<Rule> bridge_rules(const BridgeSpec& bridge);
// DNAT, hairpin masquerade and the forward ACCEPT for one published port.
std::vector<Rule> port_rules(const PortSpec& port);

class Iptables {
 public:
  using Runner = std::function<ProcessResult(const std::vector<std::string>&)>;
  // Runner defaults to run_process.
  explicit Iptables(std::string binary = "iptables", Runner runner = {});

  // {binary, "--wait", "-t", table, op, chain, args...}
  std::vector<std::string> argv(const std::string& op, const Rule& rule) const;

  void ensure_chain(const std::string& table, const std::string& chain);
  bool exists(const Rule& rule);
  void ensure(const Rule& rule);  // throws std::runtime_error when iptables fails
  void remove(const Rule& rule);  // every copy; absent is fine
  void ensure_all(const std::vector<Rule>& rules);
  void remove_all(const std::vector<Rule>& rules);

 private:
  ProcessResult run(const std::vector<std::string>& argv);
  std::string binary_;
  Runner runner_;
};

}  // namespace berth::agent::network
