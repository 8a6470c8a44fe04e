#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

namespace berth {
namespace {

constexpr std::uint64_t kMB = 1000 * 1000;
// Unknown size: a line per this many bytes (a redraw per MB on a terminal).
constexpr std::uint64_t kLineEvery = 10 * kMB;
constexpr auto kMinRedraw = std::chrono::milliseconds(100);

int percent(std::uint64_t done, std::uint64_t total) {
  if (total == 0) return 0;
  if (done >= total) return 100;
  return static_cast<int>(done * 100 / total);
}

}  // namespace

TransferProgress::TransferProgress(std::FILE* out, std::string label, Mode mode)
    : out_(out), label_(std::move(label)) {
  terminal_ = out_ && (mode == Mode::Terminal || (mode == Mode::Auto && ::isatty(::fileno(out_)) == 1));
  if (terminal_) pause_.emplace();
}

TransferProgress::~TransferProgress() { finish(); }

std::string TransferProgress::bar_line(const std::string& label, std::uint64_t done, std::uint64_t total,
                                       int width) {
  if (total == 0) return fmt::format("{}: {:.1f} MB", label, static_cast<double>(done) / kMB);
  const int pct = percent(done, total);
  const int filled = pct * width / 100;
  return fmt::format("{}: [{}{}] {:3d}% {:.1f}/{:.1f} MB", label, std::string(filled, '#'),
                     std::string(width - filled, ' '), pct, static_cast<double>(done) / kMB,
                     static_cast<double>(total) / kMB);
}

void TransferProgress::draw(const std::string& line) {
  // Pad over a longer previous line so no stale characters remain.
  const std::size_t pad = last_width_ > line.size() ? last_width_ - line.size() : 0;
  fmt::print(out_, "\r{}{}", line, std::string(pad, ' '));
  std::fflush(out_);
  last_width_ = line.size();
  drawn_ = true;
  last_draw_ = std::chrono::steady_clock::now();
}

void TransferProgress::update(std::uint64_t done, std::uint64_t total) {
  if (!out_ || finished_) return;
  done_ = done;
  if (total == 0) {
    if (done < last_bytes_ + (terminal_ ? kMB : kLineEvery)) return;
    last_bytes_ = done;
    if (terminal_)
      draw(bar_line(label_, done, 0));
    else
      fmt::print(out_, "{}: {:.1f} MB\n", label_, static_cast<double>(done) / kMB);
    return;
  }
  const int pct = percent(done, total);
  if (terminal_) {
    if (pct == last_pct_) return;
    // At most ten redraws a second, but always the last one.
    if (pct != 100 && drawn_ && std::chrono::steady_clock::now() - last_draw_ < kMinRedraw) return;
    draw(bar_line(label_, done, total));
  } else {
    if (last_pct_ >= 0 && pct / 10 == last_pct_ / 10) return;
    fmt::print(out_, "{}: {}%\n", label_, pct / 10 * 10);
  }
  last_pct_ = pct;
}

void TransferProgress::finish() {
  if (!out_ || finished_) return;
  finished_ = true;
  if (terminal_) {
    if (drawn_) fmt::print(out_, "\n");
    std::fflush(out_);
    pause_.reset();
  } else if (last_pct_ < 0 && done_ > last_bytes_) {
    // Unknown size: the total, once, at the end.
    fmt::print(out_, "{}: {:.1f} MB\n", label_, static_cast<double>(done_) / kMB);
  }
  std::fflush(out_);
}

}  // namespace berth
