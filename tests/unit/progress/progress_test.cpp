#include "core/progress.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/unit/progress/pty_capture.h"

namespace berth {
namespace {

using testing::Capture;
using testing::count;

TEST(TransferProgress, PipeGetsAPercentageLineEveryTenPercent) {
  Capture out(Capture::Kind::Pipe);
  {
    TransferProgress p(out.file(), "downloading os.iso");
    EXPECT_FALSE(p.terminal());
    for (std::uint64_t done = 0; done <= 1000; done += 7) p.update(done, 1000);
    p.update(1000, 1000);
  }
  const std::string text = out.text();
  std::string want;
  for (int pct = 0; pct <= 100; pct += 10) want += "downloading os.iso: " + std::to_string(pct) + "%\n";
  EXPECT_EQ(text, want);
}

TEST(TransferProgress, TerminalGetsOneBarRedrawnInPlace) {
  Capture out(Capture::Kind::Pty);
  {
    TransferProgress p(out.file(), "downloading os.iso");
    EXPECT_TRUE(p.terminal());
    for (std::uint64_t done = 0; done <= 4000000; done += 400000) {
      p.update(done, 4000000);
      std::this_thread::sleep_for(std::chrono::milliseconds(110));  // past the redraw limit
    }
  }
  const std::string text = out.text();
  // Every step redraws the same line: "\r" before each, one newline at the end.
  EXPECT_EQ(count(text, "\r"), 11) << text;
  EXPECT_EQ(count(text, "\n"), 1) << text;
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find("\rdownloading os.iso: [###############               ]  50% 2.0/4.0 MB"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\rdownloading os.iso: [##############################] 100% 4.0/4.0 MB\n"), std::string::npos)
      << text;
  EXPECT_EQ(count(text, "%\n"), 0) << "no percentage lines on a terminal: " << text;
}

TEST(TransferProgress, TerminalRedrawsAreLimitedButTheLastOneIsShown) {
  Capture out(Capture::Kind::Pty);
  {
    TransferProgress p(out.file(), "x");
    for (std::uint64_t done = 0; done <= 100; ++done) p.update(done, 100);
  }
  const std::string text = out.text();
  EXPECT_LT(count(text, "\r"), 10) << text;  // 101 updates within far less than a second
  EXPECT_NE(text.find("100% 0.0/0.0 MB\n"), std::string::npos) << text;
}

TEST(TransferProgress, UnknownSizeCountsMegabytes) {
  Capture pipe(Capture::Kind::Pipe);
  {
    TransferProgress p(pipe.file(), "dl");
    for (std::uint64_t done = 0; done <= 25000000; done += 500000) p.update(done, 0);
  }
  EXPECT_EQ(pipe.text(), "dl: 10.0 MB\ndl: 20.0 MB\ndl: 25.0 MB\n");

  Capture tty(Capture::Kind::Pty);
  {
    TransferProgress p(tty.file(), "dl");
    for (std::uint64_t done = 0; done <= 3000000; done += 250000) p.update(done, 0);
  }
  EXPECT_EQ(tty.text(), "\rdl: 1.0 MB\rdl: 2.0 MB\rdl: 3.0 MB\n");
}

TEST(TransferProgress, ForcedModesOverrideTheTerminalCheck) {
  Capture tty(Capture::Kind::Pty);
  {
    TransferProgress p(tty.file(), "dl", TransferProgress::Mode::Lines);
    EXPECT_FALSE(p.terminal());
    p.update(100, 100);
  }
  EXPECT_EQ(tty.text(), "dl: 100%\n");

  Capture pipe(Capture::Kind::Pipe);
  {
    TransferProgress p(pipe.file(), "dl", TransferProgress::Mode::Terminal);
    p.update(100, 100);
  }
  EXPECT_EQ(pipe.text(), "\r" + TransferProgress::bar_line("dl", 100, 100) + "\n");
}

TEST(TransferProgress, NullStreamIsSilentAndFinishIsIdempotent) {
  TransferProgress silent(nullptr, "dl");
  silent.update(5, 10);
  silent.finish();
  EXPECT_FALSE(silent.terminal());

  Capture tty(Capture::Kind::Pty);
  TransferProgress p(tty.file(), "dl");
  p.update(10, 10);
  p.finish();
  p.finish();
  p.update(10, 10);  // after finish: nothing more
  EXPECT_EQ(count(tty.text(), "\n"), 1);
}

TEST(TransferProgress, BarLine) {
  EXPECT_EQ(TransferProgress::bar_line("a", 0, 2000000, 10), "a: [          ]   0% 0.0/2.0 MB");
  EXPECT_EQ(TransferProgress::bar_line("a", 1000000, 2000000, 10), "a: [#####     ]  50% 1.0/2.0 MB");
  EXPECT_EQ(TransferProgress::bar_line("a", 3000000, 2000000, 10), "a: [##########] 100% 3.0/2.0 MB");
  EXPECT_EQ(TransferProgress::bar_line("a", 1500000, 0, 10), "a: 1.5 MB");
}

}  // namespace
}  // namespace berth
