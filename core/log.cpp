#include "core/log.h"

#include <fmt/chrono.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <mutex>

#include "core/live_line.h"

namespace berth::log {
namespace {
std::atomic<bool> g_debug{false};
std::atomic<bool> g_timestamps{false};

std::string stamp() {
  if (!g_timestamps) return "";
  const auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z ", now);
}
std::mutex g_mutex;
}  // namespace

void set_debug(bool on) { g_debug = on; }
bool debug_enabled() { return g_debug; }
void set_timestamps(bool on) { g_timestamps = on; }

void write(std::string_view level, std::string_view category, std::string_view message) {
  std::lock_guard lock(g_mutex);
  LiveLine::Pause pause;  // off the spinner's line
  if (level == "warning")
    fmt::print(stderr, "{}berth: warning: {}\n", stamp(), message);
  else
    fmt::print(stderr, "{}berth: {} [{}] {}\n", stamp(), level, category, message);
}

}  // namespace berth::log
