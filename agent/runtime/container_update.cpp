// docker update: the manager's side of update.h. The new HostConfig is
// applied to a running container's cgroup first, and stored only when that
// worked, as dockerd restores the old one when the runtime refuses.
#include "agent/runtime/container_impl.h"
#include "agent/runtime/update.h"

namespace berth::agent::runtime {

json ContainerManager::update(const std::string& ref, const json& body) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  static const HostResources host = HostResources::probe();
  std::lock_guard op(c->op);
  json host_config;
  bool live;
  {
    std::lock_guard l(m.mu);
    if (c->removed) throw HttpError(404, "No such container: " + ref);
    host_config = c->doc["HostConfig"];
    live = c->running() && c->status() != "restarting";
  }
  UpdatePlan plan = plan_update(c->id, host_config, body, host);
  if (live) {
    const fs::path dir = fs::path(m.opt.cgroup_root) / "berth" / c->id;
    try {
      apply_cgroup_writes(dir, cgroup_writes(plan.host_config, body, dir));
    } catch (const std::exception& e) {
      throw HttpError(500, "Cannot update container " + c->id + ": " + e.what());
    }
  }
  {
    std::lock_guard l(m.mu);
    if (c->removed) throw HttpError(404, "No such container: " + ref);
    c->doc["HostConfig"] = plan.host_config;
    m.save(*c);
    m.emit(*c, "update");
  }
  m.log().info("updated container " + short_id(c->id));
  return {{"Warnings", plan.warnings}};
}

}  // namespace berth::agent::runtime
