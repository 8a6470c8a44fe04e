// SshPortForwarder against a real OpenSSH server on 127.0.0.1 (temp host key
// and config per test) and real TCP servers on 127.0.0.1 as the targets.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/net.h"
#include "core/ssh.h"
#include "core/ssh_forward.h"

namespace berth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

int sh(const std::string& command) { return std::system(command.c_str()); }

// SIGKILLs every descendant of `root` (not root itself), from /proc.
void kill_descendants(pid_t root) {
  std::vector<pid_t> frontier = {root};
  while (!frontier.empty()) {
    const pid_t parent = frontier.back();
    frontier.pop_back();
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(e.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      char state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid != parent) continue;
      const pid_t child = static_cast<pid_t>(std::stol(name));
      frontier.push_back(child);
      ::kill(child, SIGKILL);
    }
  }
}

// A listening socket on 127.0.0.1 (port 0: any free one).
int listen_on(int port, int* bound = nullptr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (bound) *bound = ntohs(a.sin_port);
  return fd;
}

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

std::string sha256(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

// Serves each connection on its own thread with `handle(fd)`, then closes it.
// The destructor ends open connections and joins every thread.
class Server {
 public:
  explicit Server(std::function<void(int)> handle) : handle_(std::move(handle)) {
    fd_ = listen_on(0, &port_);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::lock_guard lock(mu_);
        open_.insert(c);
        handlers_.emplace_back([this, c] {
          handle_(c);
          std::lock_guard lock(mu_);
          open_.erase(c);
          ::close(c);
        });
      }
    });
  }
  ~Server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    {
      std::lock_guard lock(mu_);
      for (int c : open_) ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : handlers_) t.join();
  }
  int port() const { return port_; }

 private:
  std::function<void(int)> handle_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::set<int> open_;                 // under mu_
  std::vector<std::thread> handlers_;  // under mu_ until thread_ is joined
};

class SshForward : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0 || !fs::exists("/usr/sbin/sshd"))
      GTEST_SKIP() << "needs root and /usr/sbin/sshd (apt-get install openssh-server)";
    dir_ = fs::temp_directory_path() / ("berth-fwd-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_EQ(sh("ssh-keygen -q -t ed25519 -N '' -C test-host -f " + (dir_ / "hostkey").string()), 0);
    generate_ed25519_key(dir_ / "client_key", "test-client");
    std::ofstream(dir_ / "authorized_keys") << read_public_key(dir_ / "client_key") << "\n";
    port_ = free_tcp_port();
    std::ofstream(dir_ / "sshd_config") << "Port " << port_ << "\nListenAddress 127.0.0.1\n"
                                        << "HostKey " << (dir_ / "hostkey").string() << "\n"
                                        << "AuthorizedKeysFile " << (dir_ / "authorized_keys").string() << "\n"
                                        << "UsePAM no\nPidFile none\nStrictModes no\nAllowTcpForwarding yes\n"
                                        << "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                                        << "PermitRootLogin prohibit-password\nLogLevel VERBOSE\n";
    fs::create_directories("/run/sshd");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-f", (dir_ / "sshd_config").c_str(), "-E",
              (dir_ / "sshd.log").c_str(), nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 100 && !tcp_port_open("127.0.0.1", port_, 100ms); ++i) std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(tcp_port_open("127.0.0.1", port_, 1s)) << "sshd did not start";
    target_.host = "127.0.0.1";
    target_.port = port_;
    target_.user = ::getpwuid(::geteuid())->pw_name;
    target_.key_path = dir_ / "client_key";
    target_.machine_name = "fwd";
  }

  void TearDown() override {
    stop();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // A forwarder serving on a thread; its run() outcome in `ended_`.
  void start(std::vector<PortForward> forwards) {
    fwd_ = std::make_unique<SshPortForwarder>(SshSession::connect(target_, 5s));
    fwd_->set_forwards(std::move(forwards));
    ended_ = std::async(std::launch::async, [this]() -> std::string {
      try {
        fwd_->run();
        return "";
      } catch (const Error& e) {
        return e.what();
      }
    });
  }
  void stop() {
    if (!fwd_) return;
    fwd_->stop();
    if (ended_.valid()) ended_.wait();
    fwd_.reset();
  }

  // Waits until the forward on `port` reports listening (true) or an error (false).
  std::optional<ForwardStatus> wait_status(int port, bool listening, std::chrono::milliseconds limit = 2s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      for (const auto& s : fwd_->status())
        if (s.forward.local_port == port && s.listening == listening && (listening || !s.error.empty())) return s;
      std::this_thread::sleep_for(10ms);
    }
    return std::nullopt;
  }

  fs::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  SshTarget target_;
  std::unique_ptr<SshPortForwarder> fwd_;
  std::future<std::string> ended_;
};

Server echo_server() {
  return Server([](int c) {
    char buf[65536];
    for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;)
      if (!send_all(c, std::string(buf, static_cast<size_t>(n)))) return;
  });
}

TEST_F(SshForward, EchoesThroughTheMachine) {
  Server echo = echo_server();
  const int local = free_tcp_port();
  start({{local, "127.0.0.1", echo.port(), "web"}});
  ASSERT_TRUE(wait_status(local, true));
  for (int round = 0; round < 3; ++round) {  // several connections over the one session
    int fd = connect_to(local);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "hello " + std::to_string(round)));
    ::shutdown(fd, SHUT_WR);
    EXPECT_EQ(read_all(fd), "hello " + std::to_string(round));
    ::close(fd);
  }
  std::optional<ForwardStatus> s;
  for (int i = 0; i < 300 && !((s = wait_status(local, true)) && s->connections >= 3); ++i)
    std::this_thread::sleep_for(10ms);  // counts are published when a connection ends
  ASSERT_TRUE(s);
  EXPECT_EQ(s->forward.label, "web");
  EXPECT_EQ(s->connections, 3u);
  EXPECT_GE(s->bytes_in, 21u);
  EXPECT_GE(s->bytes_out, 21u);
}

TEST_F(SshForward, HalfCloseReachesTheTargetAndTheAnswerStillComesBack) {
  // The target answers only after the client's EOF: how many bytes it got.
  Server counter([](int c) {
    size_t total = 0;
    char buf[65536];
    for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;) total += static_cast<size_t>(n);
    send_all(c, "got " + std::to_string(total));
  });
  const int local = free_tcp_port();
  start({{local, "127.0.0.1", counter.port(), "counter"}});
  ASSERT_TRUE(wait_status(local, true));
  int fd = connect_to(local);
  ASSERT_GE(fd, 0);
  const std::string upload(3 * 1024 * 1024 + 5, 'u');
  ASSERT_TRUE(send_all(fd, upload));
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(read_all(fd), "got " + std::to_string(upload.size()));
  ::close(fd);
}

TEST_F(SshForward, LargeDownloadArrivesIntact) {
  std::string blob(64 * 1024 * 1024, '\0');
  std::mt19937_64 rng(7);
  for (size_t i = 0; i + 8 <= blob.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&blob[i], &v, 8);
  }
  Server source([&blob](int c) { send_all(c, blob); });
  const int local = free_tcp_port();
  start({{local, "127.0.0.1", source.port(), "big"}});
  ASSERT_TRUE(wait_status(local, true));
  int fd = connect_to(local);
  ASSERT_GE(fd, 0);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string got = read_all(fd);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  ASSERT_EQ(got.size(), blob.size());
  EXPECT_TRUE(sha256(got) == sha256(blob)) << "the bytes differ";
  std::printf("[ figures  ] 64 MiB through the forward in %.2f s (%.0f MiB/s)\n", secs, 64 / secs);
}

TEST_F(SshForward, APortInUseIsReportedAndTakenWhenItFrees) {
  Server echo = echo_server();
  int taken = 0;
  int occupier = listen_on(0, &taken);
  ASSERT_GE(occupier, 0);
  start({{taken, "127.0.0.1", echo.port(), "web"}});
  auto failed = wait_status(taken, false);
  ASSERT_TRUE(failed);
  EXPECT_NE(failed->error.find("127.0.0.1:" + std::to_string(taken) + " is already in use"), std::string::npos)
      << failed->error;
  ::close(occupier);
  ASSERT_TRUE(wait_status(taken, true, 6s)) << "the forward did not take the port once it was free";
  int fd = connect_to(taken);
  ASSERT_GE(fd, 0);
  send_all(fd, "x");
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(read_all(fd), "x");
  ::close(fd);
}

TEST_F(SshForward, DroppingAForwardClosesItsPort) {
  Server echo = echo_server();
  const int local = free_tcp_port();
  start({{local, "127.0.0.1", echo.port(), "web"}});
  ASSERT_TRUE(wait_status(local, true));
  EXPECT_TRUE(tcp_port_open("127.0.0.1", local, 1s));
  fwd_->set_forwards({});
  const auto end = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < end && tcp_port_open("127.0.0.1", local, 100ms))
    std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(tcp_port_open("127.0.0.1", local, 100ms));
  EXPECT_TRUE(fwd_->status().empty());
}

TEST_F(SshForward, ATargetThatRefusesClosesTheClientAndTheForwardLives) {
  const int nothing = free_tcp_port();
  Server echo = echo_server();
  const int local = free_tcp_port(), local2 = free_tcp_port();
  start({{local, "127.0.0.1", nothing, "down"}, {local2, "127.0.0.1", echo.port(), "up"}});
  ASSERT_TRUE(wait_status(local, true));
  int fd = connect_to(local);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(read_all(fd), "");  // closed, not hung
  ::close(fd);
  fd = connect_to(local2);
  ASSERT_GE(fd, 0);
  send_all(fd, "still here");
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(read_all(fd), "still here");
  ::close(fd);
}

TEST_F(SshForward, ALostSessionEndsRunWithAnError) {
  Server echo = echo_server();
  const int local = free_tcp_port();
  start({{local, "127.0.0.1", echo.port(), "web"}});
  ASSERT_TRUE(wait_status(local, true));
  kill_descendants(pid_);  // the per-connection sshd processes; the listener stays
  ASSERT_EQ(ended_.wait_for(15s), std::future_status::ready) << "run() did not notice the lost session";
  const std::string error = ended_.get();
  EXPECT_NE(error.find("lost its SSH connection to 127.0.0.1:" + std::to_string(port_)), std::string::npos) << error;
  EXPECT_FALSE(tcp_port_open("127.0.0.1", local, 200ms)) << "listeners must close with the session";
}

}  // namespace
}  // namespace berth
