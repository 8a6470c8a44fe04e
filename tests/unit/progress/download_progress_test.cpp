// The libvirt/VirtualBox downloader's progress, end to end: a real libcurl
// transfer from 127.0.0.1 into a pty (a terminal) or a pipe (a log).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "drivers/libvirt/download.h"
#include "tests/unit/progress/pty_capture.h"

namespace berth {
namespace {

using testing::Capture;
using testing::count;
namespace fs = std::filesystem;

// Serves one body on 127.0.0.1 to every GET, in 64 KB pieces a little apart, with
// or without a Content-Length (unknown size).
class SlowHttpServer {
 public:
  SlowHttpServer(std::string body, bool with_length) : body_(std::move(body)), with_length_(with_length) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 4) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("cannot listen on 127.0.0.1");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~SlowHttpServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      char buf[4096];
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      std::string head = "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n";
      if (with_length_) head += "Content-Length: " + std::to_string(body_.size()) + "\r\n";
      head += "\r\n";
      send_all(c, head);
      for (size_t at = 0; at < body_.size() && !stop_; at += kPiece) {
        send_all(c, body_.substr(at, kPiece));
        std::this_thread::sleep_for(std::chrono::milliseconds(15));
      }
      ::close(c);
    }
  }
  static void send_all(int fd, const std::string& s) {
    for (size_t at = 0; at < s.size();) {
      ssize_t n = ::send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return;
      at += static_cast<size_t>(n);
    }
  }
  static constexpr size_t kPiece = 64 * 1024;
  std::string body_;
  bool with_length_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct Scratch {
  Scratch() {
    char tmpl[] = "/tmp/berth-progress-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

std::string body_of(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

fs::path fetch(const SlowHttpServer& server, const fs::path& cache, std::FILE* progress) {
  virt::DownloadRequest r;
  r.url = server.url("/images/berth-os.iso");
  r.cache_dir = cache;
  r.machine = "dev";
  r.progress = progress;
  return virt::download_image(r);
}

constexpr size_t kSize = 3 * 1000 * 1000;  // 46 pieces, about 0.7 s

TEST(DownloadProgress, TerminalShowsABarThatEndsAtOneHundredPercent) {
  SlowHttpServer server(body_of(kSize), true);
  Scratch dir;
  Capture tty(Capture::Kind::Pty);
  const fs::path got = fetch(server, dir.path, tty.file());
  EXPECT_EQ(fs::file_size(got), kSize);
  const std::string text = tty.text();
  EXPECT_GE(count(text, "\r"), 3) << "the bar is redrawn as data arrives: " << text;
  EXPECT_NE(text.find("] 100% 3.0/3.0 MB\n"), std::string::npos) << text;
  EXPECT_EQ(count(text, "\n"), 1) << text;
  EXPECT_EQ(count(text, "%\n"), 0) << "no percentage lines on a terminal: " << text;
}

TEST(DownloadProgress, PipeGetsPlainPercentageLines) {
  SlowHttpServer server(body_of(kSize), true);
  Scratch dir;
  Capture pipe(Capture::Kind::Pipe);
  fetch(server, dir.path, pipe.file());
  const std::string text = pipe.text();
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  EXPECT_GE(count(text, "%\n"), 5) << text;
  EXPECT_NE(text.find("downloading berth-os.iso: 50%\n"), std::string::npos) << text;
  EXPECT_EQ(text.substr(text.size() - std::string("downloading berth-os.iso: 100%\n").size()),
            "downloading berth-os.iso: 100%\n")
      << text;
}

TEST(DownloadProgress, PipeShowsTheSizeWhenTheServerGivesNoLength) {
  SlowHttpServer server(body_of(kSize), false);
  Scratch dir;
  Capture pipe(Capture::Kind::Pipe);
  fetch(server, dir.path, pipe.file());
  EXPECT_EQ(pipe.text(), "downloading berth-os.iso: 3.0 MB\n");
}

TEST(DownloadProgress, QuietPrintsNothingAndACachedImageIsNotDownloadedAgain) {
  SlowHttpServer server(body_of(kSize), true);
  Scratch dir;
  Capture tty(Capture::Kind::Pty);
  fetch(server, dir.path, nullptr);
  EXPECT_EQ(tty.text(), "");
  fetch(server, dir.path, tty.file());  // cached: no transfer, no bar
  EXPECT_EQ(tty.text(), "");
}

}  // namespace
}  // namespace berth
