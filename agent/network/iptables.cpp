#include "agent/network/iptables.h"

#include <stdexcept>

namespace berth::agent::network {

std::vector<std::pair<std::string, std::string>> base_chains() {
  return {{"nat", kNatChain},
          {"nat", kPostroutingChain},
          {"filter", kFilterChain},
          {"filter", kIsolation1},
          {"filter", kIsolation2}};
}

std::vector<Rule> base_rules() {
  return {
      {"nat", "PREROUTING", {"-m", "addrtype", "--dst-type", "LOCAL", "-j", kNatChain}},
      {"nat", "OUTPUT", {"-m", "addrtype", "--dst-type", "LOCAL", "-j", kNatChain}},
      {"nat", "POSTROUTING", {"-j", kPostroutingChain}},
      {"filter", "FORWARD", {"-j", kIsolation1}, true},
  };
}

std::vector<Rule> bridge_rules(const BridgeSpec& b) {
  const std::string& br = b.bridge;
  std::vector<Rule> rules;
  if (b.internal) {
    // Only traffic inside the subnet, in and out of the bridge.
    rules.push_back({"filter", kIsolation1, {"-i", br, "!", "-d", b.subnet, "-j", "DROP"}});
    rules.push_back({"filter", kIsolation1, {"-o", br, "!", "-s", b.subnet, "-j", "DROP"}});
  } else {
    rules.push_back({"nat", kPostroutingChain, {"-s", b.subnet, "!", "-o", br, "-j", "MASQUERADE"}});
    // Published ports reached through 127.0.0.1 (route_localnet on the bridge).
    rules.push_back(
        {"nat", kPostroutingChain, {"-s", "127.0.0.0/8", "-o", br, "-j", "MASQUERADE"}});
    rules.push_back({"filter", kIsolation1, {"-i", br, "!", "-o", br, "-j", kIsolation2}});
    rules.push_back({"filter", "FORWARD",
                     {"-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j",
                      "ACCEPT"}});
    rules.push_back({"filter", "FORWARD", {"-o", br, "-j", kFilterChain}});
    rules.push_back({"filter", "FORWARD", {"-i", br, "!", "-o", br, "-j", "ACCEPT"}});
  }
  // Nothing from another bridge gets in.
  rules.push_back({"filter", kIsolation2, {"-o", br, "-j", "DROP"}});
  rules.push_back({"filter", "FORWARD", {"-i", br, "-o", br, "-j", "ACCEPT"}});
  return rules;
}

std::vector<Rule> port_rules(const PortSpec& p) {
  std::vector<std::string> dnat;
  if (!p.host_ip.empty() && p.host_ip != "0.0.0.0") dnat = {"-d", p.host_ip + "/32"};
  const std::string hport = std::to_string(p.host_port);
  const std::string cport = std::to_string(p.container_port);
  dnat.insert(dnat.end(), {"-p", p.proto, "-m", p.proto, "--dport", hport, "-j", "DNAT",
                           "--to-destination", p.container_ip + ":" + cport});
  return {
      {"nat", kNatChain, dnat},
      {"nat", kPostroutingChain,
       {"-s", p.container_ip + "/32", "-d", p.container_ip + "/32", "-p", p.proto, "-m", p.proto,
        "--dport", cport, "-j", "MASQUERADE"}},
      {"filter", kFilterChain,
       {"-d", p.container_ip + "/32", "!", "-i", p.bridge, "-o", p.bridge, "-p", p.proto, "-m",
        p.proto, "--dport", cport, "-j", "ACCEPT"}},
  };
}

Iptables::Iptables(std::string binary, Runner runner)
    : binary_(std::move(binary)), runner_(std::move(runner)) {}

std::vector<std::string> Iptables::argv(const std::string& op, const Rule& rule) const {
  std::vector<std::string> a = {binary_, "--wait", "-t", rule.table, op, rule.chain};
  a.insert(a.end(), rule.args.begin(), rule.args.end());
  return a;
}

ProcessResult Iptables::run(const std::vector<std::string>& argv) {
  if (runner_) return runner_(argv);
  return run_process(argv, "", std::chrono::seconds(30));
}

void Iptables::ensure_chain(const std::string& table, const std::string& chain) {
  if (run({binary_, "--wait", "-t", table, "-S", chain}).ok()) return;
  ProcessResult r = run({binary_, "--wait", "-t", table, "-N", chain});
  if (!r.ok() && !run({binary_, "--wait", "-t", table, "-S", chain}).ok())
    throw std::runtime_error("iptables -t " + table + " -N " + chain + " failed: " + r.err);
}

bool Iptables::exists(const Rule& rule) { return run(argv("-C", rule)).ok(); }

void Iptables::ensure(const Rule& rule) {
  if (exists(rule)) return;
  std::vector<std::string> a = argv(rule.insert ? "-I" : "-A", rule);
  ProcessResult r = run(a);
  if (!r.ok()) {
    std::string cmd;
    for (const std::string& s : a) cmd += (cmd.empty() ? "" : " ") + s;
    throw std::runtime_error(cmd + " failed: " + r.err);
  }
}

void Iptables::remove(const Rule& rule) {
  for (int i = 0; i < 16 && exists(rule); ++i)
    if (!run(argv("-D", rule)).ok()) break;
}

void Iptables::ensure_all(const std::vector<Rule>& rules) {
  for (const Rule& r : rules) ensure(r);
}

void Iptables::remove_all(const std::vector<Rule>& rules) {
  for (const Rule& r : rules) remove(r);
}

}  // namespace berth::agent::network
