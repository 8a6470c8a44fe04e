#pragma once
// The iptables rules behind container networking, as argv (the nft-backed
// iptables binary, run without a shell). Rule builders are pure so tests can
// check them; Iptables applies them idempotently (-C before -A/-I/-D).
//
// Chains (like dockerd's DOCKER*):
//   nat    BERTH              DNAT for published ports (from PREROUTING and
//                             OUTPUT, --dst-type LOCAL)
//   nat    BERTH-LOOPBACK     DNAT for ports published on 127.x (from OUTPUT
//                             only: the machine's own processes)
//   nat    BERTH-POSTROUTING  MASQUERADE (from POSTROUTING)
//   filter BERTH              ACCEPT for published ports (from FORWARD)
//   filter BERTH-ISOLATION-1/2  no traffic between different bridges
// The filter FORWARD policy is DROP (as dockerd sets it), and each bridge
// ends with its own DROP, so only replies, published ports, traffic inside a
// bridge and container egress are forwarded. raw PREROUTING drops 127.0.0.0/8
// arriving anywhere but lo: route_localnet is on for the bridges (for
// loopback publishing), and must not let a container or a neighbour reach
// the machine's loopback services (CVE-2020-8558, moby#41872).
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/process.h"

namespace berth::agent::network {

inline constexpr const char* kNatChain = "BERTH";
inline constexpr const char* kLoopbackChain = "BERTH-LOOPBACK";
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
  std::string subnet;  // "172.17.0.0/16", or an IPv6 one for ip6tables
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
// The same for ip6tables (no loopback publishing over IPv6).
std::vector<std::pair<std::string, std::string>> base_chains6();
std::vector<Rule> base_rules6();
// The filter FORWARD policy the agent sets.
inline constexpr const char* kForwardPolicy = "DROP";
// Forwarding, masquerade and isolation for one bridge network.
std::vector<Rule> bridge_rules(const BridgeSpec& bridge);
// DNAT, hairpin masquerade and the forward ACCEPT for one published port
// (no forward ACCEPT for a port published on 127.x: only the machine's own
// processes reach it, and their traffic is not forwarded).
std::vector<Rule> port_rules(const PortSpec& port);
// The rules older agents installed for a published port; removed at start.
std::vector<Rule> legacy_port_rules(const PortSpec& port);

class Iptables {
 public:
  // (argv, stdin). Defaults to run_process.
  using Runner = std::function<ProcessResult(const std::vector<std::string>&, const std::string&)>;
  explicit Iptables(std::string binary = "iptables", Runner runner = {});

  // {binary, "--wait", "-t", table, op, chain, args...}
  std::vector<std::string> argv(const std::string& op, const Rule& rule) const;

  void ensure_chain(const std::string& table, const std::string& chain);
  // Every missing chain at once: one BINARY-save and one BINARY-restore --noflush.
  void ensure_chains(const std::vector<std::pair<std::string, std::string>>& chains);
  // -P: the policy of a built-in chain. Throws std::runtime_error.
  void set_policy(const std::string& table, const std::string& chain, const std::string& target);
  bool exists(const Rule& rule);
  void ensure(const Rule& rule);  // throws std::runtime_error when iptables fails
  void remove(const Rule& rule);  // every copy; absent is fine
  // Adds the missing ones with one BINARY-save and one BINARY-restore --noflush.
  // A rule is missing when its chain has no rules yet (a fresh boot), present
  // when BINARY-save prints it as we write it, and asked with -C otherwise.
  // Every fork costs ~50 ms on an emulated machine.
  void ensure_all(const std::vector<Rule>& rules);
  void remove_all(const std::vector<Rule>& rules);

 private:
  ProcessResult run(const std::vector<std::string>& argv, const std::string& input = "");
  // BINARY-save's chains, the chains that have rules, and its rule lines
  // ("-A CHAIN ARGS"), per table; nullopt when it fails.
  struct Snapshot {
    std::set<std::pair<std::string, std::string>> chains, filled, lines;
  };
  std::optional<Snapshot> snapshot();
  bool restore(const std::string& script);  // BINARY-restore --noflush
  std::string binary_;
  Runner runner_;
};

}  // namespace berth::agent::network
