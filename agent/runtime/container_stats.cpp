// docker stats: the manager's side of stats.h. Samples come from one
// StatsCollector shared by every stream; a stream's first sample, and the one
// of --no-stream's first read, is taken at once.
#include "agent/runtime/container_impl.h"

namespace berth::agent::runtime {

StatsCollector& ContainerManager::Impl::stats_collector() {
  std::call_once(stats_once, [this] {
    stats = std::make_unique<StatsCollector>(
        [this](const std::string& id, const SystemCpu& system) { return stats_sample(id, system); },
        [] { return read_system_cpu().value_or(SystemCpu{}); });
  });
  return *stats;
}

std::optional<json> ContainerManager::Impl::stats_sample(const std::string& id, const SystemCpu& system) const {
  StatsSource source;
  {
    std::lock_guard l(mu);
    auto it = containers.find(id);
    if (it == containers.end() || it->second->removed) return std::nullopt;
    const Container& c = *it->second;
    source.id = c.id;
    source.name = c.name();
    if (!c.running() || c.status() == "restarting") return empty_stats(source.id, source.name);
    source.cgroup_dir = fs::path(opt.cgroup_root) / "berth" / c.id;
    int pid = c.doc["State"].value("Pid", 0);
    if (pid > 0 && c.doc["HostConfig"].value("NetworkMode", "") != "host")
      source.net_dev = "/proc/" + std::to_string(pid) + "/net/dev";
  }
  static const std::uint64_t machine_memory = read_machine_memory();
  return read_stats(source, system, machine_memory, to_unix_nanos(Clock::now()));
}

void ContainerManager::stats(const std::string& ref, const StatsOptions& o,
                             const std::function<bool(const json&)>& sink) {
  Impl& m = *impl_;
  const std::string id = m.get(ref)->id;
  if (o.stream && o.one_shot) throw HttpError(400, "cannot have stream=true and one-shot=true");
  StatsCollector& collector = m.stats_collector();
  StatsChain chain;
  auto now_sample = [&] { return collector.sample_now(id); };
  auto first = now_sample();
  if (!first) throw HttpError(404, "No such container: " + ref);
  const bool running = first->value("read", std::string(kZeroTime)) != kZeroTime;
  if (!o.stream && (o.one_shot || !running)) {
    sink(chain.link(std::move(*first)));
    return;
  }
  auto subscription = collector.subscribe(id);
  if (!o.stream) {
    // dockerd primes with one sample and answers with the next; the first is
    // taken now, and the answer is the next round's at least half a second later.
    chain.link(std::move(*first));
    const auto primed = std::chrono::steady_clock::now();
    for (;;) {
      auto sample = subscription->next(std::chrono::seconds(2));
      if (!sample) {
        if (subscription->ended()) return;
        continue;
      }
      if (std::chrono::steady_clock::now() - primed < std::chrono::milliseconds(500)) continue;
      sink(chain.link(std::move(*sample)));
      return;
    }
  }
  if (!sink(chain.link(std::move(*first)))) return;
  for (;;) {
    auto sample = subscription->next(std::chrono::seconds(2));
    if (!sample) {
      if (subscription->ended()) return;
      continue;
    }
    if (!sink(chain.link(std::move(*sample)))) return;
  }
}

}  // namespace berth::agent::runtime
