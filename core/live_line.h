#pragma once
// The one status line redrawn in place on the terminal (the step spinner on
// stderr). Whatever else prints to that terminal while it may be shown does so
// inside a LiveLine::Pause, which wipes the line and holds its redraws off.
#include <functional>

namespace berth {

class LiveLine {
 public:
  // The owner's side. `wipe` erases what the owner drew; it and draw() run
  // under one lock. Only one line is live at a time: a second one never draws.
  explicit LiveLine(std::function<void()> wipe);
  ~LiveLine();
  LiveLine(const LiveLine&) = delete;
  LiveLine& operator=(const LiveLine&) = delete;

  // Runs `fn` (which draws the line) unless a Pause is on; false when it did not.
  bool draw(const std::function<void()>& fn);
  // Runs `fn` (the line's last drawing) even during a Pause; no draw() follows.
  void last(const std::function<void()>& fn);

  // Everyone else's side: wipes the live line, if any, for the pause's lifetime.
  class Pause {
   public:
    Pause();
    ~Pause();
    Pause(const Pause&) = delete;
    Pause& operator=(const Pause&) = delete;
  };

 private:
  std::function<void()> wipe_;
  bool live_ = false;  // the attached one
};

}  // namespace berth
