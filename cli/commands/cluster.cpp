// berth cluster ls | status NAME | join NAME MACHINE | leave NAME MACHINE
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>

#include "cli/cluster.h"
#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {
namespace {

using nlohmann::json;

void run_ls(Context& ctx) {
  ClusterStore cs = cluster_store(ctx);
  fmt::print("{:<16} {:<7} {:<7} {:<9} {}\n", "NAME", "ETCD", "SEGMENT", "SUBNET", "MEMBERS");
  for (const std::string& name : cs.names()) {
    Cluster c = cs.load(name);
    std::string members;
    for (const ClusterMember& m : c.members)
      members += (members.empty() ? "" : ",") + m.machine + (m.etcd ? "*" : "");
    const bool local = std::filesystem::exists(cs.dir(name) / "vde.pid") || vde_switch_running(cs.dir(name));
    fmt::print("{:<16} {:<7} {:<7} {:<9} {}\n", name, fmt::format("{}/{}", c.voters(), kClusterVoters),
               vde_switch_running(cs.dir(name)) ? "up" : (local ? "down" : "-"), c.subnet, members);
  }
}

// Asks the members in turn for the cluster's state, as one of them sees it.
void run_status(Context& ctx, const std::string& name) {
  Cluster c = cluster_store(ctx).load(name);
  std::string errors;
  for (const ClusterMember& m : c.members) {
    MachineRecord record = ctx.store().load(m.machine);
    AgentResponse r = agent_get(agent_endpoint(ctx, record), "/berth/cluster", std::chrono::seconds(10));
    json doc = json::parse(r.body, nullptr, false);
    if (!r.error.empty() || r.status != 200 || !doc.is_object()) {
      errors += fmt::format("\n  {}: {}", m.machine, r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error);
      continue;
    }
    fmt::print("cluster {} (as {} sees it; the cluster store is {})\n", name, m.machine,
               doc.value("StoreHealthy", false) ? "healthy" : "UNAVAILABLE: " + doc.value("StoreError", "?"));
    fmt::print("\n{:<16} {:<16} {:<6} {:<8} {}\n", "MACHINE", "TUNNEL ENDPOINT", "ETCD", "HEALTHY", "CONTAINERS");
    for (const ClusterMember& each : c.members) {
      std::string etcd = "-", healthy = "-";
      for (const json& e : doc.value("Members", json::array()))
        if (e.value("Name", "") == each.machine) {
          etcd = "voter";
          healthy = e.value("Healthy", false) ? "yes" : "no";
        }
      int containers = 0;
      for (const json& t : doc.value("Endpoints", json::array()))
        if (t.value("Machine", "") == each.machine) containers = t.value("Containers", 0);
      fmt::print("{:<16} {:<16} {:<6} {:<8} {}\n", each.machine, each.address, etcd, healthy, containers);
    }
    fmt::print("\n{:<20} {:<8} {:<18} {}\n", "OVERLAY NETWORK", "VNI", "SUBNET", "ID");
    for (const json& n : doc.value("Networks", json::array()))
      fmt::print("{:<20} {:<8} {:<18} {}\n", n.value("Name", ""), n.value("VNI", 0), n.value("Subnet", ""),
                 n.value("Id", "").substr(0, 12));
    if (!errors.empty()) fmt::print(stderr, "members that did not answer:{}\n", errors);
    return;
  }
  throw Error(fmt::format("cluster '{}': no member answered:{}", name, errors));
}

void run_join(Context& ctx, const std::string& cluster, const std::string& machine, const std::string& advertise) {
  Store& store = ctx.store();
  auto lock = store.lock(machine);
  MachineRecord record = store.load(machine);
  refuse_on_engine_host(record, "join a cluster");
  if (!record.cluster.empty())
    throw UserError(fmt::format("machine '{}' is already in cluster '{}'; 'berth cluster leave {} {}' first", machine,
                                record.cluster, record.cluster, machine));
  install_interrupt_handler(ctx);
  PendingMember pending = prepare_member(ctx, cluster, machine, record.driver, advertise);
  Steps step(machine);
  if (pending.link) {
    // A VM gets its NIC on the segment from its next boot.
    step("restarting the VM with a NIC on the cluster's segment");
    auto dctx = driver_context(ctx, machine, record.engine.port);
    dctx.cluster_link = pending.link;
    auto driver = driver_factory(ctx, record).load(record.driver_state, dctx);
    driver->stop();
    record.driver_state = driver->save_state();
    store.save(record);
    driver->start();
    record.driver_state = driver->save_state();
    store.save(record);
  }
  step(fmt::format("joining cluster {} at {}", cluster, pending.member.address));
  assign_member(ctx, record, pending);
  store.save(record);
  provision_machine(ctx, record, step.reporter());
  commit_member(ctx, pending);
  store.save(record);
  step("");
  fmt::print("{} is a member of cluster {}\n", machine, cluster);
}

void run_leave(Context& ctx, const std::string& cluster, const std::string& machine) {
  Store& store = ctx.store();
  auto lock = store.lock(machine);
  MachineRecord record = store.load(machine);
  if (record.cluster != cluster)
    throw UserError(fmt::format("machine '{}' is not in cluster '{}'{}", machine, cluster,
                                record.cluster.empty() ? "" : " but in '" + record.cluster + "'"));
  Steps step(machine);
  step("leaving cluster " + cluster);
  leave_cluster(ctx, record);
  store.save(record);
  step("restarting the agent without the cluster");
  provision_machine(ctx, record, step.reporter());
  step("");
  fmt::print("{} left cluster {}\n", machine, cluster);
}

}  // namespace

void setup_cluster(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("cluster", "Berth clusters: machines sharing overlay networks (etcd + VXLAN)");
  cmd->require_subcommand(1);
  cmd->add_subcommand("ls", "List the clusters and their members (* runs etcd)")->callback([&ctx] { run_ls(ctx); });

  auto status_name = std::make_shared<std::string>();
  auto* status = cmd->add_subcommand("status", "Members, etcd health, overlay networks and tunnel endpoints");
  status->add_option("name", *status_name, "Cluster name")->required();
  status->callback([&ctx, status_name] { run_status(ctx, *status_name); });

  struct JoinOptions {
    std::string cluster, machine, advertise;
  };
  auto join_o = std::make_shared<JoinOptions>();
  auto* join = cmd->add_subcommand("join", "Make an existing machine a member (a VM restarts to get its NIC)");
  join->add_option("cluster", join_o->cluster, "Cluster name")->required();
  join->add_option("machine", join_o->machine, "Machine name")->required();
  join->add_option("--cluster-advertise", join_o->advertise,
                   "generic hosts: the address the other members reach this host at");
  join->callback([&ctx, join_o] { run_join(ctx, join_o->cluster, join_o->machine, join_o->advertise); });

  auto leave_o = std::make_shared<JoinOptions>();
  auto* leave = cmd->add_subcommand("leave", "Take a machine out of its cluster (its overlay endpoints go)");
  leave->add_option("cluster", leave_o->cluster, "Cluster name")->required();
  leave->add_option("machine", leave_o->machine, "Machine name")->required();
  leave->callback([&ctx, leave_o] { run_leave(ctx, leave_o->cluster, leave_o->machine); });
}

}  // namespace berth::cli
