#pragma once
// The samples behind every stats stream, as dockerd's collector takes them:
// one thread, once per interval, samples each container somebody streams
// (reading /proc/stat once per round), and every stream of that container
// gets the same sample. So `docker stats` over many containers costs one read
// of each container's files per second, whatever the number of streams. The
// thread runs only while somebody subscribes. Thread-safe.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "agent/runtime/stats.h"

namespace berth::agent::runtime {

class StatsCollector {
 public:
  // One container's sample (empty_stats when it is not running); nullopt
  // when it is gone, which ends its subscriptions.
  using Sampler = std::function<std::optional<nlohmann::json>(const std::string& id, const SystemCpu&)>;
  using SystemReader = std::function<SystemCpu()>;

  StatsCollector(Sampler sampler, SystemReader system,
                 std::chrono::milliseconds interval = std::chrono::seconds(1));
  ~StatsCollector();  // stop()
  StatsCollector(const StatsCollector&) = delete;
  StatsCollector& operator=(const StatsCollector&) = delete;

 private:
  struct Channel {
    std::uint64_t seq = 0;
    nlohmann::json latest;
    bool closed = false;
    int subscribers = 0;
  };

 public:
  // One stream's view of a container's samples; unsubscribes when destroyed.
  class Subscription {
   public:
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;
    // The next sample newer than the last one returned, waiting up to `wait`.
    // nullopt on timeout, when the container is gone or the collector stopped
    // (see ended()).
    std::optional<nlohmann::json> next(std::chrono::milliseconds wait);
    bool ended() const;

   private:
    friend class StatsCollector;
    Subscription(StatsCollector& c, std::string id, std::shared_ptr<Channel> ch)
        : collector_(c), id_(std::move(id)), channel_(std::move(ch)) {}
    StatsCollector& collector_;
    std::string id_;
    std::shared_ptr<Channel> channel_;
    std::uint64_t seen_ = 0;
  };

  std::unique_ptr<Subscription> subscribe(const std::string& id);
  // Ends every subscription and the thread.
  void stop();

  // A sample taken now, outside the rounds (a stream's first frame, one-shot).
  std::optional<nlohmann::json> sample_now(const std::string& id) const;

 private:
  void loop();

  Sampler sampler_;
  SystemReader system_;
  std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Channel>> channels_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace berth::agent::runtime
