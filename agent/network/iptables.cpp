#include "agent/network/iptables.h"

#include <map>
#include <stdexcept>

#include "agent/network/ipam.h"

namespace berth::agent::network {

namespace {
bool is_loopback(const std::string& ip) {
  auto parsed = parse_ipv4(ip);
  return parsed && (*parsed >> 24) == 127;
}
}  // namespace

std::vector<std::pair<std::string, std::string>> base_chains() {
  return {{"nat", kNatChain},
          {"nat", kLoopbackChain},
          {"nat", kPostroutingChain},
          {"filter", kFilterChain},
          {"filter", kIsolation1},
          {"filter", kIsolation2}};
}

std::vector<Rule> base_rules() {
  return {
      {"nat", "PREROUTING", {"-m", "addrtype", "--dst-type", "LOCAL", "-j", kNatChain}},
      {"nat", "OUTPUT", {"-m", "addrtype", "--dst-type", "LOCAL", "-j", kNatChain}},
      {"nat", "OUTPUT", {"-d", "127.0.0.0/8", "-j", kLoopbackChain}},
      {"nat", "POSTROUTING", {"-j", kPostroutingChain}},
      {"filter", "FORWARD", {"-j", kIsolation1}, true},
      // raw sees packets before NAT: replies to loopback-published ports
      // still carry the bridge gateway as their destination here.
      {"raw", "PREROUTING", {"-d", "127.0.0.0/8", "!", "-i", "lo", "-j", "DROP"}, true},
  };
}

std::vector<std::pair<std::string, std::string>> base_chains6() {
  return {{"nat", kPostroutingChain},
          {"filter", kFilterChain},
          {"filter", kIsolation1},
          {"filter", kIsolation2}};
}

std::vector<Rule> base_rules6() {
  return {
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
    if (b.subnet.find(':') == std::string::npos)
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
  // Nor anything else, whatever the FORWARD policy says: unpublished ports
  // are not reachable by routing through the machine.
  rules.push_back({"filter", "FORWARD", {"-o", br, "-j", "DROP"}});
  return rules;
}

namespace {
std::vector<std::string> dnat_args(const PortSpec& p) {
  std::vector<std::string> dnat;
  if (!p.host_ip.empty() && p.host_ip != "0.0.0.0") dnat = {"-d", p.host_ip + "/32"};
  dnat.insert(dnat.end(), {"-p", p.proto, "-m", p.proto, "--dport", std::to_string(p.host_port),
                           "-j", "DNAT", "--to-destination",
                           p.container_ip + ":" + std::to_string(p.container_port)});
  return dnat;
}

Rule hairpin_rule(const PortSpec& p) {
  return {"nat", kPostroutingChain,
          {"-s", p.container_ip + "/32", "-d", p.container_ip + "/32", "-p", p.proto, "-m",
           p.proto, "--dport", std::to_string(p.container_port), "-j", "MASQUERADE"}};
}

std::vector<std::string> forward_match(const PortSpec& p) {
  return {"-d", p.container_ip + "/32", "!", "-i", p.bridge, "-o", p.bridge, "-p", p.proto,
          "-m", p.proto, "--dport", std::to_string(p.container_port)};
}
}  // namespace

std::vector<Rule> port_rules(const PortSpec& p) {
  if (is_loopback(p.host_ip)) return {{"nat", kLoopbackChain, dnat_args(p)}, hairpin_rule(p)};
  // Only connections this DNAT made: routing straight to the container's
  // address from outside does not open its port.
  std::vector<std::string> accept = forward_match(p);
  accept.insert(accept.end(), {"-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"});
  return {{"nat", kNatChain, dnat_args(p)}, hairpin_rule(p), {"filter", kFilterChain, accept}};
}

std::vector<Rule> legacy_port_rules(const PortSpec& p) {
  std::vector<std::string> accept = forward_match(p);
  accept.insert(accept.end(), {"-j", "ACCEPT"});
  std::vector<Rule> rules = {{"filter", kFilterChain, accept}};
  if (is_loopback(p.host_ip)) rules.push_back({"nat", kNatChain, dnat_args(p)});
  return rules;
}

Iptables::Iptables(std::string binary, Runner runner)
    : binary_(std::move(binary)), runner_(std::move(runner)) {}

std::vector<std::string> Iptables::argv(const std::string& op, const Rule& rule) const {
  std::vector<std::string> a = {binary_, "--wait", "-t", rule.table, op, rule.chain};
  a.insert(a.end(), rule.args.begin(), rule.args.end());
  return a;
}

ProcessResult Iptables::run(const std::vector<std::string>& argv, const std::string& input) {
  if (runner_) return runner_(argv, input);
  return run_process(argv, input, std::chrono::seconds(30));
}

std::optional<Iptables::Snapshot> Iptables::snapshot() {
  ProcessResult r = run({binary_ + "-save"});
  if (!r.ok()) return std::nullopt;
  Snapshot snap;
  std::string table;
  std::size_t pos = 0;
  while (pos < r.out.size()) {
    std::size_t end = r.out.find('\n', pos);
    if (end == std::string::npos) end = r.out.size();
    const std::string line = r.out.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() > 1 && line[0] == '*') {
      table = line.substr(1);
    } else if (line.size() > 1 && line[0] == ':') {
      snap.chains.insert({table, line.substr(1, line.find(' ') - 1)});
    } else if (line.rfind("-A ", 0) == 0) {
      snap.filled.insert({table, line.substr(3, line.find(' ', 3) - 3)});
      snap.lines.insert({table, line});
    }
  }
  return snap;
}

namespace {
// One word of a restore script: quoted when it has a space or a quote.
std::string restore_word(const std::string& w) {
  if (!w.empty() && w.find_first_of(" \t\"'") == std::string::npos) return w;
  std::string out = "\"";
  for (char c : w) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// "*table\n<lines>COMMIT\n" for each table, in a stable order.
std::string restore_script(const std::map<std::string, std::string>& lines_by_table) {
  std::string script;
  for (const auto& [table, lines] : lines_by_table) script += "*" + table + "\n" + lines + "COMMIT\n";
  return script;
}
}  // namespace

bool Iptables::restore(const std::string& script) {
  return run({binary_ + "-restore", "--wait", "--noflush"}, script).ok();
}

void Iptables::ensure_chains(const std::vector<std::pair<std::string, std::string>>& chains) {
  auto snap = snapshot();
  std::map<std::string, std::string> lines;
  if (snap) {
    for (const auto& [table, chain] : chains)
      if (!snap->chains.count({table, chain})) lines[table] += ":" + chain + " - [0:0]\n";
    if (lines.empty() || restore(restore_script(lines))) return;
  }
  for (const auto& [table, chain] : chains) ensure_chain(table, chain);  // one by one, as before
}

void Iptables::ensure_chain(const std::string& table, const std::string& chain) {
  if (run({binary_, "--wait", "-t", table, "-S", chain}).ok()) return;
  ProcessResult r = run({binary_, "--wait", "-t", table, "-N", chain});
  if (!r.ok() && !run({binary_, "--wait", "-t", table, "-S", chain}).ok())
    throw std::runtime_error("iptables -t " + table + " -N " + chain + " failed: " + r.err);
}

void Iptables::set_policy(const std::string& table, const std::string& chain,
                          const std::string& target) {
  ProcessResult r = run({binary_, "--wait", "-t", table, "-P", chain, target});
  if (!r.ok())
    throw std::runtime_error("iptables -t " + table + " -P " + chain + " " + target +
                             " failed: " + r.err);
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
  // One rule: -C (and -A) costs no more than a save and a restore.
  auto snap = rules.size() < 2 ? std::nullopt : snapshot();
  if (!snap) {
    for (const Rule& r : rules) ensure(r);
    return;
  }
  std::map<std::string, std::string> lines;
  std::set<std::pair<std::string, std::string>> batched;  // (table, line): a rule listed twice goes in once
  for (const Rule& r : rules) {
    std::string args;
    for (const std::string& a : r.args) args += " " + restore_word(a);
    if (snap->filled.count({r.table, r.chain})) {
      if (snap->lines.count({r.table, "-A " + r.chain + args})) continue;
      if (exists(r)) continue;
    }
    const std::string line = (r.insert ? "-I " : "-A ") + r.chain + args;
    if (batched.insert({r.table, line}).second) lines[r.table] += line + "\n";
  }
  if (!lines.empty() && !restore(restore_script(lines)))
    for (const Rule& r : rules) ensure(r);  // one by one, each with its own error
}

void Iptables::remove_all(const std::vector<Rule>& rules) {
  for (const Rule& r : rules) remove(r);
}

}  // namespace berth::agent::network
