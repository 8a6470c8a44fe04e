// wait_for_ssh against listeners on 127.0.0.1 that are no SSH server: what the
// timeout names, and how soon should_stop ends a wait. Needs no sshd.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/net.h"
#include "core/ssh.h"

namespace berth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// A TCP listener on 127.0.0.1. Without a greeting it never accepts (the kernel
// completes the handshakes) and never says a word; with one, a thread accepts
// each connection, sends the greeting (maybe "") and hangs up.
class Listener {
 public:
  explicit Listener(int backlog = 64, std::optional<std::string> greeting = std::nullopt)
      : greeting_(std::move(greeting)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, backlog) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("listener");
    port_ = ntohs(a.sin_port);
    if (!greeting_) return;
    thread_ = std::thread([this] {
      while (true) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0 || stop_) {
          if (c >= 0) ::close(c);
          return;
        }
        ssize_t ignored = ::write(c, greeting_->data(), greeting_->size());
        (void)ignored;
        ::close(c);
      }
    });
  }
  ~Listener() {
    if (thread_.joinable()) {
      stop_ = true;
      ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
      thread_.join();
    }
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::optional<std::string> greeting_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

SshTarget target_at(int port) {
  SshTarget t;
  t.host = "127.0.0.1";
  t.port = port;
  t.user = "nobody";
  t.key_path = "/nonexistent/id_ed25519";
  t.machine_name = "m1";
  return t;
}

std::string wait_error(const SshTarget& target, std::chrono::milliseconds deadline) {
  try {
    wait_for_ssh(target, deadline);
  } catch (const SshError& e) {
    return e.what();
  }
  return "(no error)";
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST(WaitForSsh, AListenerThatNeverSpeaksIsNamedNoSshBanner) {
  Listener silent;
  const auto t0 = Clock::now();
  const std::string m = wait_error(target_at(silent.port()), 2s);
  const auto took = Clock::now() - t0;
  EXPECT_TRUE(contains(m, "timed out after 2s waiting for SSH on 127.0.0.1:" + std::to_string(silent.port()) +
                              " (machine 'm1'): "))
      << m;
  EXPECT_TRUE(contains(m, "TCP connected but no SSH banner within 2s")) << m;
  EXPECT_GE(took, 1900ms);
  EXPECT_LT(took, 3s);
}

TEST(WaitForSsh, ShouldStopEndsAWaitOnASilentListenerWithinASecond) {
  Listener silent;
  const auto stop_at = Clock::now() + 300ms;
  EXPECT_THROW(wait_for_ssh(target_at(silent.port()), 30s, [&] { return Clock::now() >= stop_at; }), Interrupted);
  EXPECT_LT(Clock::now() - stop_at, 1s);
}

TEST(WaitForSsh, AClosedPortIsNamedConnectionRefused) {
  const int port = free_tcp_port();
  const std::string m = wait_error(target_at(port), 600ms);
  EXPECT_TRUE(contains(m, "127.0.0.1:" + std::to_string(port) + " (machine 'm1'): cannot connect to SSH: "
                          "connection refused")) << m;
}

TEST(WaitForSsh, AConnectionNobodyAnswersIsNamedTimedOutConnecting) {
  // Linux drops SYNs to a listener whose accept queue is full: a connect then
  // gets no answer at all, as from a host that drops packets.
  Listener full(0);
  const SshTarget target = target_at(full.port());
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(full.port()));
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    fillers.push_back(fd);
  }
  std::this_thread::sleep_for(100ms);
  const std::string m = wait_error(target, 1500ms);
  for (int fd : fillers) ::close(fd);
  EXPECT_TRUE(contains(m, "cannot connect to SSH: timed out connecting (no answer within ")) << m;
}

TEST(SshConnect, AServerThatHangsUpAfterItsBannerLeavesNoDescriptorBehind) {
  Listener fake(64, "SSH-2.0-berth-test\r\n");  // then no key exchange
  Listener silent;
  const SshTarget target = target_at(fake.port());
  EXPECT_THROW(SshSession::connect(target, 2s), SshError);
  const size_t before = open_fds();
  for (int i = 0; i < 5; ++i) EXPECT_THROW(SshSession::connect(target, 2s), SshError);  // libssh closed the socket
  for (int i = 0; i < 3; ++i) EXPECT_THROW(SshSession::connect(target_at(silent.port()), 200ms), SshError);
  EXPECT_EQ(open_fds(), before);
}

TEST(SshConnect, AServerThatHangsUpBeforeItsBannerIsNamed) {
  Listener closer(64, "");
  const std::string m = wait_error(target_at(closer.port()), 500ms);
  EXPECT_TRUE(contains(m, "cannot connect to SSH: TCP connected but the host closed the connection before the SSH "
                          "banner")) << m;
}

}  // namespace
}  // namespace berth
