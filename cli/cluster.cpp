#include "cli/cluster.h"

#include <fmt/format.h>

#include <cstdlib>

#include "cli/host.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"

namespace berth::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr auto kAdminTimeout = std::chrono::seconds(30);

std::string client_url(const ClusterMember& m) { return "https://" + m.address + ":2379"; }
std::string peer_url(const ClusterMember& m) { return "https://" + m.address + ":2380"; }

// Drivers whose VMs berth wires to the cluster's VDE switch itself.
bool makes_local_vms(const std::string& driver) { return driver == "libvirt"; }

fs::path etcd_binary() {
  if (const char* e = std::getenv("BERTH_ETCD_BINARY"); e && *e) return e;
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/usr/sbin"})
    if (fs::exists(fs::path(dir) / "etcd")) return fs::path(dir) / "etcd";
  throw UserError("the first three members of a cluster run etcd, and berth uploads this computer's: install "
                  "Debian's etcd-server here (apt-get install etcd-server) or set BERTH_ETCD_BINARY");
}

// An answer from another member's agent for berth's own /berth/cluster routes.
std::optional<json> ask_member(Context& ctx, const std::string& machine, const std::string& method,
                               const std::string& path, const json& body, std::string* error) {
  try {
    MachineRecord record = ctx.store().load(machine);
    AgentResponse r = agent_request(agent_endpoint(ctx, record), method, path, body.is_null() ? "" : body.dump(),
                                    kAdminTimeout);
    if (!r.error.empty()) {
      if (error) *error = machine + ": " + r.error;
      return std::nullopt;
    }
    json doc = json::parse(r.body, nullptr, false);
    if (r.status < 200 || r.status > 299) {
      if (error)
        *error = machine + ": " + (doc.is_object() ? doc.value("message", r.body) : r.body);
      return std::nullopt;
    }
    return doc.is_discarded() ? json::object() : doc;
  } catch (const Error& e) {
    if (error) *error = machine + ": " + e.what();
    return std::nullopt;
  }
}

fs::path member_cert(Context& ctx, const std::string& machine) {
  return ctx.store().machine_dir(machine) / "cluster-member.pem";
}
fs::path member_key(Context& ctx, const std::string& machine) {
  return ctx.store().machine_dir(machine) / "cluster-member-key.pem";
}

}  // namespace

ClusterStore cluster_store(Context& ctx) { return ClusterStore(ctx.store().root() / "clusters"); }

PendingMember prepare_member(Context& ctx, const std::string& cluster_name, const std::string& machine,
                             const std::string& driver, const std::string& advertise) {
  validate_cluster_name(cluster_name);
  ClusterStore cs = cluster_store(ctx);
  FileLock lock = cs.lock(cluster_name);
  Cluster cluster;
  if (cs.exists(cluster_name)) {
    cluster = cs.load(cluster_name);
  } else {
    cluster.name = cluster_name;
  }
  if (cluster.member(machine))
    throw UserError(fmt::format("machine '{}' is already a member of cluster '{}'", machine, cluster_name));
  ClusterMember member = next_member(cluster, machine);
  std::optional<ClusterLink> link;
  if (makes_local_vms(driver)) {
    if (!advertise.empty())
      throw UserError(fmt::format("machine '{}': --cluster-advertise is for hosts berth does not wire itself; "
                                  "a {} VM gets its address on the cluster's segment from berth",
                                  machine, driver));
    fs::create_directories(cs.dir(cluster_name));
    ensure_vde_switch(cs.dir(cluster_name));
    link = ClusterLink{vde_socket(cs.dir(cluster_name)), member.mac};
  } else if (driver == "generic") {
    if (advertise.empty())
      throw UserError(fmt::format("machine '{}': --cluster with the generic driver needs --cluster-advertise ADDR, "
                                  "the address the other members reach this host at",
                                  machine));
    member.address = advertise;
    member.mac.clear();
  } else {
    throw UserError(fmt::format("machine '{}': --cluster is not available with the {} driver yet (libvirt and "
                                "generic are); see the README's cluster section",
                                machine, driver));
  }
  if (member.etcd) etcd_binary();  // fail before anything is made
  return {std::move(cluster), std::move(member), std::move(link), std::move(lock)};
}

void assign_member(Context& ctx, MachineRecord& record, PendingMember& pending) {
  const ClusterMember& me = pending.member;
  ClusterStore cs = cluster_store(ctx);
  tls::KeyPair ca = cs.ca(pending.cluster.name);
  tls::KeyPair cert = tls::make_peer_cert(ca, record.name, {me.address, "127.0.0.1", "localhost"}, tls::KeyType::Ecdsa);
  write_file_atomic(member_cert(ctx, record.name), cert.cert_pem, 0644);
  write_file_atomic(member_key(ctx, record.name), cert.key_pem, 0600);

  json endpoints = json::array();
  std::string voter;  // an existing voter to ask for the etcd membership
  for (const ClusterMember& m : pending.cluster.members)
    if (m.etcd) {
      endpoints.push_back(client_url(m));
      if (voter.empty()) voter = m.machine;
    }
  json config = {{"name", pending.cluster.name},
                 {"machine", record.name},
                 {"advertise", me.address},
                 {"tls",
                  {{"ca", std::string(provision::kClusterDir) + "/ca.pem"},
                   {"cert", std::string(provision::kClusterDir) + "/member.pem"},
                   {"key", std::string(provision::kClusterDir) + "/member-key.pem"}}}};
  if (me.etcd) {
    endpoints.push_back(client_url(me));
    std::string initial = record.name + "=" + peer_url(me), state = "new";
    if (!voter.empty()) {
      std::string error;
      auto added = ask_member(ctx, voter, "POST", "/berth/cluster/members",
                              {{"Name", record.name}, {"PeerURL", peer_url(me)}}, &error);
      if (!added)
        throw Error(fmt::format("machine '{}': cannot add it to cluster '{}''s etcd: {}", record.name,
                                pending.cluster.name, error));
      initial = added->value("InitialCluster", initial);
      state = "existing";
    }
    config["etcd"] = {{"binary", provision::kEtcdBinary},
                      {"data_dir", std::string(provision::kDataRoot) + "/etcd"},
                      {"initial_cluster", initial},
                      {"initial_cluster_state", state}};
  }
  config["etcd_endpoints"] = endpoints;
  record.cluster = pending.cluster.name;
  record.cluster_agent_config = config;
}

void commit_member(Context& ctx, PendingMember& pending) {
  pending.cluster.members.push_back(pending.member);
  cluster_store(ctx).save(pending.cluster);
}

std::optional<provision::ClusterInstall> cluster_install(Context& ctx, const MachineRecord& record) {
  if (record.cluster.empty()) return std::nullopt;
  ClusterStore cs = cluster_store(ctx);
  provision::ClusterInstall in;
  in.agent_config = record.cluster_agent_config;
  const std::string address = in.agent_config.value("advertise", "");
  if (makes_local_vms(record.driver)) {
    const std::string prefix = cs.exists(record.cluster) ? cs.load(record.cluster).subnet : "/24";
    in.interface = "eth1 " + address + prefix.substr(prefix.find('/'));
  }
  in.tls = {cs.ca(record.cluster).cert_pem, read_file(member_cert(ctx, record.name)),
            read_file(member_key(ctx, record.name))};
  if (in.agent_config.contains("etcd")) in.etcd_binary = etcd_binary();
  return in;
}

void leave_cluster(Context& ctx, MachineRecord& record) {
  if (record.cluster.empty()) return;
  ClusterStore cs = cluster_store(ctx);
  const std::string name = record.cluster;
  const bool voter = record.cluster_agent_config.is_object() && record.cluster_agent_config.contains("etcd");
  record.cluster.clear();
  record.cluster_agent_config = nullptr;
  if (!cs.exists(name)) return;
  FileLock lock = cs.lock(name);
  Cluster cluster = cs.load(name);
  std::string error;
  // Its containers' endpoints go first, while its agent can still say which they are.
  if (!ask_member(ctx, record.name, "POST", "/berth/cluster/leave", json::object(), &error))
    log::warn("cluster", "machine '{}' did not withdraw its endpoints from cluster '{}': {}", record.name, name, error);
  if (voter) {
    bool removed = false;
    for (const ClusterMember& m : cluster.members) {
      if (m.machine == record.name || !m.etcd) continue;
      if (ask_member(ctx, m.machine, "DELETE", "/berth/cluster/members/" + record.name, nullptr, &error)) {
        removed = true;
        break;
      }
    }
    if (!removed && cluster.voters() > 1)
      log::warn("cluster", "cluster '{}': could not remove {}'s etcd member ({}); another member can with "
                "'berth cluster leave {} {}' later", name, record.name, error, name, record.name);
  }
  std::erase_if(cluster.members, [&](const ClusterMember& m) { return m.machine == record.name; });
  std::error_code ec;
  fs::remove(member_cert(ctx, record.name), ec);
  fs::remove(member_key(ctx, record.name), ec);
  if (cluster.members.empty())
    cs.remove(name);
  else
    cs.save(cluster);
}

void ensure_cluster_segment(Context& ctx, const MachineRecord& record) {
  if (record.cluster.empty() || !makes_local_vms(record.driver)) return;
  ClusterStore cs = cluster_store(ctx);
  if (!cs.exists(record.cluster)) return;
  auto lock = cs.lock(record.cluster);  // members started together start one switch
  ensure_vde_switch(cs.dir(record.cluster));
}

}  // namespace berth::cli
