#include "agent/runtime/stats_collector.h"

#include <vector>

namespace berth::agent::runtime {

using nlohmann::json;

StatsCollector::StatsCollector(Sampler sampler, SystemReader system, std::chrono::milliseconds interval)
    : sampler_(std::move(sampler)), system_(std::move(system)), interval_(interval) {}

StatsCollector::~StatsCollector() { stop(); }

std::unique_ptr<StatsCollector::Subscription> StatsCollector::subscribe(const std::string& id) {
  std::lock_guard l(mu_);
  auto& ch = channels_[id];
  if (!ch) ch = std::make_shared<Channel>();
  if (stopping_) ch->closed = true;
  ++ch->subscribers;
  if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { loop(); });
  cv_.notify_all();
  auto sub = std::unique_ptr<Subscription>(new Subscription(*this, id, ch));
  sub->seen_ = ch->seq;  // only samples taken from now on
  return sub;
}

StatsCollector::Subscription::~Subscription() {
  std::lock_guard l(collector_.mu_);
  if (--channel_->subscribers == 0) {
    auto it = collector_.channels_.find(id_);
    if (it != collector_.channels_.end() && it->second == channel_) collector_.channels_.erase(it);
  }
}

std::optional<json> StatsCollector::Subscription::next(std::chrono::milliseconds wait) {
  std::unique_lock l(collector_.mu_);
  collector_.cv_.wait_for(l, wait, [&] { return channel_->closed || channel_->seq != seen_; });
  if (channel_->seq == seen_ || channel_->closed) return std::nullopt;
  seen_ = channel_->seq;
  return channel_->latest;
}

bool StatsCollector::Subscription::ended() const {
  std::lock_guard l(collector_.mu_);
  return channel_->closed;
}

std::optional<json> StatsCollector::sample_now(const std::string& id) const {
  return sampler_(id, system_());
}

void StatsCollector::stop() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
    for (auto& [id, ch] : channels_) ch->closed = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StatsCollector::loop() {
  std::unique_lock l(mu_);
  while (!stopping_) {
    if (channels_.empty()) {
      cv_.wait(l, [&] { return stopping_ || !channels_.empty(); });
      continue;
    }
    const auto round = std::chrono::steady_clock::now();
    std::vector<std::string> ids;
    for (const auto& [id, ch] : channels_) ids.push_back(id);
    l.unlock();
    // One read of /proc/stat per round, close to the containers' own reads.
    const SystemCpu system = system_();
    std::vector<std::optional<json>> samples;
    samples.reserve(ids.size());
    for (const std::string& id : ids) samples.push_back(sampler_(id, system));
    l.lock();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      auto it = channels_.find(ids[i]);
      if (it == channels_.end()) continue;
      Channel& ch = *it->second;
      if (!samples[i]) {
        ch.closed = true;
        channels_.erase(it);
        continue;
      }
      ch.latest = std::move(*samples[i]);
      ++ch.seq;
    }
    cv_.notify_all();
    cv_.wait_until(l, round + interval_, [&] { return stopping_; });
  }
}

}  // namespace berth::agent::runtime
