#include "core/live_line.h"

#include <mutex>

namespace berth {
namespace {
std::mutex g_mutex;
LiveLine* g_live = nullptr;  // under g_mutex
int g_pauses = 0;            // under g_mutex
}  // namespace

LiveLine::LiveLine(std::function<void()> wipe) : wipe_(std::move(wipe)) {
  std::lock_guard lock(g_mutex);
  if (g_live) return;
  g_live = this;
  live_ = true;
}

LiveLine::~LiveLine() {
  std::lock_guard lock(g_mutex);
  if (g_live == this) g_live = nullptr;
}

bool LiveLine::draw(const std::function<void()>& fn) {
  std::lock_guard lock(g_mutex);
  if (!live_ || g_live != this || g_pauses > 0) return false;
  fn();
  return true;
}

void LiveLine::last(const std::function<void()>& fn) {
  std::lock_guard lock(g_mutex);
  fn();
  if (g_live == this) g_live = nullptr;
}

LiveLine::Pause::Pause() {
  std::lock_guard lock(g_mutex);
  if (g_pauses++ == 0 && g_live) g_live->wipe_();
}

LiveLine::Pause::~Pause() {
  std::lock_guard lock(g_mutex);
  --g_pauses;
}

}  // namespace berth
