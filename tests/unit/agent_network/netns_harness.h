#pragma once
// Runs a scenario in a forked child that has its own network and mount
// namespaces, so bridges, veths and iptables rules never reach this
// machine's real namespace. CHECK failures inside the child come back as the
// test's failure message.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

#include "agent/network/netlink.h"

namespace berth::agent::testing {

#define NET_CHECK(cond)                                                                       \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + \
                               #cond);                                                        \
  } while (0)

enum class Outcome { Passed, Failed, Unsupported };

// Empty message and Passed when the scenario ran to its end.
inline Outcome run_in_private_netns(const std::function<void()>& scenario, std::string& message) {
  int fds[2];
  if (::pipe(fds) != 0) {
    message = "pipe failed";
    return Outcome::Failed;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string error;
    int code = 0;
    if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
      error = std::string("unshare: ") + std::strerror(errno);
      code = 2;
    } else if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      error = std::string("make / private: ") + std::strerror(errno);
      code = 2;
    } else {
      try {
        network::netlink::Socket s;
        network::netlink::set_link_up(s, "lo");
        scenario();
      } catch (const std::exception& e) {
        error = e.what();
        code = 1;
      }
    }
    if (!error.empty() && ::write(fds[1], error.data(), error.size()) < 0) code = 3;
    ::_exit(code);
  }
  ::close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) message.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Outcome::Passed;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 2) return Outcome::Unsupported;
  if (message.empty()) message = "child died with status " + std::to_string(status);
  return Outcome::Failed;
}

struct OwnedFd {
  int fd = -1;
  explicit OwnedFd(int f = -1) : fd(f) {}
  ~OwnedFd() {
    if (fd >= 0) ::close(fd);
  }
  OwnedFd(OwnedFd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  OwnedFd& operator=(OwnedFd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
};

inline sockaddr_in addr_of(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// A socket made inside `netns` (empty: here) stays in that namespace.
inline OwnedFd socket_in(const std::string& netns, int type) {
  OwnedFd s;
  auto make = [&] { s.fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0); };
  if (netns.empty())
    make();
  else
    network::netlink::run_in_netns(netns, make);
  if (s.fd < 0) throw std::runtime_error("socket failed");
  return s;
}

inline OwnedFd listen_in(const std::string& netns, const std::string& ip, int port) {
  OwnedFd s = socket_in(netns, SOCK_STREAM);
  int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = addr_of(ip, port);
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s.fd, 8) != 0)
    throw std::runtime_error("listen " + ip + ":" + std::to_string(port) + ": " +
                             std::strerror(errno));
  return s;
}

// Connects from `netns` to ip:port, sends `ping`, and returns what the peer
// answers; "" when it cannot connect within timeout_ms.
inline std::string tcp_exchange(const std::string& netns, const std::string& ip, int port,
                                int listen_fd, int timeout_ms = 2000) {
  OwnedFd s = socket_in(netns, SOCK_STREAM | SOCK_NONBLOCK);
  sockaddr_in a = addr_of(ip, port);
  int rc = ::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0 && errno != EINPROGRESS) return "";
  pollfd p{s.fd, POLLOUT, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return "";
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return "";
  // The server side: accept, read, answer with the peer address it saw.
  pollfd lp{listen_fd, POLLIN, 0};
  if (::poll(&lp, 1, timeout_ms) != 1) return "";
  sockaddr_in peer{};
  socklen_t plen = sizeof peer;
  OwnedFd conn(::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_CLOEXEC));
  if (conn.fd < 0) return "";
  char peer_ip[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &peer.sin_addr, peer_ip, sizeof peer_ip);
  std::string reply = std::string("hello ") + peer_ip;
  if (::send(conn.fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) return "";
  pollfd rp{s.fd, POLLIN, 0};
  if (::poll(&rp, 1, timeout_ms) != 1) return "";
  char buf[256];
  ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

// Sends a UDP message from `netns` to ip:port and returns the answer ("" on timeout).
inline std::string udp_exchange(const std::string& netns, const std::string& ip, int port,
                                const std::string& msg, int timeout_ms = 3000) {
  OwnedFd s = socket_in(netns, SOCK_DGRAM);
  sockaddr_in a = addr_of(ip, port);
  if (::sendto(s.fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    return "";
  pollfd p{s.fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return "";
  char buf[4096];
  ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

}  // namespace berth::agent::testing
