#pragma once
// A machine's membership of a berth cluster (core/cluster.h): joining it at
// create or later, leaving it, and what provisioning installs for it.
#include <optional>
#include <string>

#include "cli/context.h"
#include "core/cluster.h"
#include "core/machine.h"
#include "provision/provision.h"

namespace berth::cli {

ClusterStore cluster_store(Context& ctx);

// A member chosen before the machine is made: its address and, for local VMs,
// the NIC the driver gives it on the cluster's VDE switch. Holds the cluster's
// lock until the machine has joined or failed.
struct PendingMember {
  Cluster cluster;
  ClusterMember member;
  std::optional<ClusterLink> link;  // for drivers that make VMs
  FileLock lock;
};

// Picks the next member of `cluster_name` (made when it does not exist) for
// `machine` on `driver`. `advertise`: the address the others reach the machine
// at (needed for hosts berth does not wire itself: generic). Throws UserError.
PendingMember prepare_member(Context& ctx, const std::string& cluster_name, const std::string& machine,
                             const std::string& driver, const std::string& advertise);

// Makes `record` a member (etcd membership when it runs a voter, the agent's
// cluster section, its certificate); provision_machine then installs it.
void assign_member(Context& ctx, MachineRecord& record, PendingMember& pending);
// Records the member in the cluster once its machine is ready.
void commit_member(Context& ctx, PendingMember& pending);

// What provisioning installs for a member (nullopt for a machine in no cluster).
std::optional<provision::ClusterInstall> cluster_install(Context& ctx, const MachineRecord& record);

// Takes `record` out of its cluster: its endpoints withdrawn, its etcd member
// removed, its entry dropped (the cluster with its last member). Best effort
// against machines that are gone; never throws for an unreachable member.
void leave_cluster(Context& ctx, MachineRecord& record);

// Starts the cluster's VDE switch when a member VM is about to run.
void ensure_cluster_segment(Context& ctx, const MachineRecord& record);

}  // namespace berth::cli
