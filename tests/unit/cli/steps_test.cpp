// Steps: each step shows from its start and then its time; lines on a pipe, a
// spinner redrawn in place on a terminal; nothing when quiet.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>

#include "cli/host.h"
#include "core/live_line.h"

namespace berth::cli {
namespace {

using namespace std::chrono_literals;
using Mode = StepsOutput::Mode;

// A pipe: Steps writes to out(), the test reads what arrived.
class Pipe {
 public:
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    read_fd_ = fds[0];
    out_ = ::fdopen(fds[1], "w");  // fully buffered: Steps must flush
  }
  ~Pipe() {
    if (out_) std::fclose(out_);
    ::close(read_fd_);
  }
  std::FILE* out() const { return out_; }
  // What arrives within `wait`.
  std::string read(std::chrono::milliseconds wait = 50ms) {
    std::string got;
    const auto end = std::chrono::steady_clock::now() + wait;
    while (true) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      pollfd p{read_fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return got;
      char buf[4096];
      ssize_t n = ::read(read_fd_, buf, sizeof buf);
      if (n <= 0) return got;
      got.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int read_fd_ = -1;
  std::FILE* out_ = nullptr;
};

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

TEST(Steps, OnAPipeAStepIsALineWhenItStartsThenStillLinesThenItsTime) {
  Pipe pipe;
  {
    Steps steps("m1", false, {pipe.out(), Mode::Lines, 100ms, 150ms});
    steps("waiting for SSH");
    EXPECT_EQ(pipe.read(), "m1: waiting for SSH...\n");  // at once, not when it ends
    std::this_thread::sleep_for(400ms);
    const std::string still = pipe.read();
    EXPECT_TRUE(std::regex_match(still, std::regex("(m1: still waiting for SSH \\(0s\\)\n)+"))) << still;
    EXPECT_GE(count(still, "\n"), 1) << still;
    EXPECT_LE(count(still, "\n"), 3) << still;
    steps("detecting the host's OS");
    const std::string next = pipe.read();
    EXPECT_TRUE(std::regex_match(next, std::regex("m1: waiting for SSH \\(0\\.[3-9]s\\)\n"
                                                  "m1: detecting the host's OS\\.\\.\\.\n")))
        << next;
    steps("");
    EXPECT_TRUE(std::regex_match(pipe.read(), std::regex("m1: detecting the host's OS \\(0\\.[0-9]s\\)\n")));
    steps("issuing TLS certificates");
  }
  // The destructor ends the last step.
  EXPECT_TRUE(std::regex_match(pipe.read(), std::regex("m1: issuing TLS certificates\\.\\.\\.\n"
                                                       "m1: issuing TLS certificates \\(0\\.[0-9]s\\)\n")));
}

TEST(Steps, QuietPrintsNothing) {
  Pipe pipe;
  {
    Steps steps("m1", true, {pipe.out(), Mode::Lines, 10ms, 10ms});
    steps("waiting for SSH");
    std::this_thread::sleep_for(100ms);
    steps("");
  }
  EXPECT_EQ(pipe.read(), "");
}

TEST(Steps, OnATerminalASpinnerWithTheTimeIsRedrawnInPlace) {
  Pipe pipe;
  {
    Steps steps("m1", false, {pipe.out(), Mode::Terminal, 20ms, 10s});
    steps("booting");
    std::this_thread::sleep_for(300ms);
  }
  const std::string out = pipe.read();
  ASSERT_EQ(out.rfind("\r\033[K| m1: booting (0s)", 0), 0u) << out;  // drawn at once
  EXPECT_GE(count(out, "\r\033[K"), 5) << out;                      // and again, in place
  for (const char* frame : {"/ m1: booting (0s)", "- m1: booting (0s)", "\\ m1: booting (0s)"})
    EXPECT_TRUE(out.find(frame) != std::string::npos) << frame << " in " << out;
  EXPECT_EQ(count(out, "\n"), 1) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\r\033\\[Km1: booting \\(0\\.[2-9]s\\)\n$"))) << out;
}

TEST(Steps, OtherOutputPausesTheSpinnerAndWipesItsLine) {
  Pipe pipe;
  Steps steps("m1", false, {pipe.out(), Mode::Terminal, 20ms, 10s});
  steps("booting");
  pipe.read();
  {
    LiveLine::Pause pause;  // what log::warn and a download's bar do
    const std::string wiped = pipe.read();
    EXPECT_EQ(wiped.substr(wiped.rfind('\r')), "\r\033[K") << wiped;
    std::this_thread::sleep_for(150ms);
    EXPECT_EQ(pipe.read(), "");  // no redraw meanwhile
  }
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(pipe.read().find("m1: booting (0s)") != std::string::npos);  // back
  steps("");
}

}  // namespace
}  // namespace berth::cli
