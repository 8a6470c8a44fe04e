#pragma once
// Progress of one byte transfer (a download): on a terminal a bar redrawn in
// place, otherwise plain "LABEL: N%" lines every 10%, so logs and CI output
// stay readable. A null stream is silent (--quiet).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "core/live_line.h"

namespace berth {

class TransferProgress {
 public:
  enum class Mode { Auto, Terminal, Lines };  // Auto: Terminal when `out` is a tty

  TransferProgress(std::FILE* out, std::string label, Mode mode = Mode::Auto);
  TransferProgress(const TransferProgress&) = delete;
  TransferProgress& operator=(const TransferProgress&) = delete;
  ~TransferProgress();  // finish()

  // `done` of `total` bytes so far; total 0 means the size is unknown.
  void update(std::uint64_t done, std::uint64_t total);
  // Ends the output: the bar's line gets its newline. Idempotent.
  void finish();

  bool terminal() const { return terminal_; }

  // One rendering of the bar (no "\r"), for a given width of the bar itself.
  static std::string bar_line(const std::string& label, std::uint64_t done, std::uint64_t total, int width = 30);

 private:
  void draw(const std::string& line);

  std::FILE* out_;
  std::string label_;
  bool terminal_;
  bool finished_ = false;
  bool drawn_ = false;
  int last_pct_ = -1;            // last percentage shown
  std::uint64_t last_bytes_ = 0;  // unknown size: bytes at the last line
  std::uint64_t done_ = 0;        // bytes at the last update
  std::size_t last_width_ = 0;    // terminal: length of the line drawn last
  std::chrono::steady_clock::time_point last_draw_{};
  std::optional<LiveLine::Pause> pause_;  // terminal: the bar has the line, not the step spinner
};

}  // namespace berth
