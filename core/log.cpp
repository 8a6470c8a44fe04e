#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace berth::log {
namespace {
std::atomic<bool> g_debug{false};
std::mutex g_mutex;
}  // namespace

void set_debug(bool on) { g_debug = on; }
bool debug_enabled() { return g_debug; }

void write(std::string_view level, std::string_view category, std::string_view message) {
  std::lock_guard lock(g_mutex);
  if (level == "warning")
    fmt::print(stderr, "berth: warning: {}\n", message);
  else
    fmt::print(stderr, "berth: {} [{}] {}\n", level, category, message);
}

}  // namespace berth::log
