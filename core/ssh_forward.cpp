#include "core/ssh_forward.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libssh/libssh.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"
#include "core/log.h"

namespace berth {
namespace {

constexpr const char* kLog = "forward";
constexpr size_t kChunk = 64 * 1024;
constexpr size_t kMaxPendingToClient = 512 * 1024;  // then the SSH window fills and the VM side waits
constexpr auto kRetryBind = std::chrono::seconds(3);
constexpr auto kIdleProbe = std::chrono::seconds(10);
using Clock = std::chrono::steady_clock;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct ChannelFree {
  void operator()(ssh_channel c) const {
    if (ssh_channel_is_open(c)) ssh_channel_close(c);
    ssh_channel_free(c);
  }
};
using ChannelPtr = std::unique_ptr<ssh_channel_struct, ChannelFree>;


// Binds 127.0.0.1:port; "" on success, else why not (in words a user acts on).
std::string listen_loopback(int port, UniqueFd& out) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return std::string("cannot make a socket: ") + std::strerror(errno);
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    if (err == EADDRINUSE) return fmt::format("127.0.0.1:{} is already in use on this computer", port);
    if (err == EACCES)
      return fmt::format("cannot listen on 127.0.0.1:{}: ports below 1024 need root or CAP_NET_BIND_SERVICE", port);
    return fmt::format("cannot listen on 127.0.0.1:{}: {}", port, std::strerror(err));
  }
  if (::listen(fd.get(), 128) != 0) return fmt::format("cannot listen on 127.0.0.1:{}: {}", port, std::strerror(errno));
  out = std::move(fd);
  return "";
}

struct Listener {
  ForwardStatus status;
  UniqueFd fd;
  Clock::time_point retry_at{};
};

struct Conn {
  UniqueFd sock;
  ChannelPtr channel;
  Listener* listener = nullptr;   // for byte counts; cleared when the listener goes
  int local_port = 0;
  std::string to_remote;          // read from the client, not yet in the channel
  size_t to_remote_off = 0;
  std::string to_client;          // read from the channel, not yet written to the client
  size_t to_client_off = 0;
  bool client_eof = false;        // the client closed its write side
  bool eof_sent = false;          // ...and the channel was told
  bool remote_eof = false;        // the channel's far side closed its write side
  bool client_shut = false;       // ...and the client was told
  bool done = false;

  size_t remote_pending() const { return to_remote.size() - to_remote_off; }
  size_t client_pending() const { return to_client.size() - to_client_off; }
};

}  // namespace

struct SshPortForwarder::Impl {
  std::unique_ptr<SshSession> ssh;
  ssh_session session = nullptr;

  mutable std::mutex mu;
  std::vector<PortForward> wanted;  // under mu
  bool wanted_changed = true;       // under mu
  std::vector<ForwardStatus> published;  // under mu: a copy for status()
  std::atomic<bool> stopping{false};
  UniqueFd wake_read, wake_write;

  std::map<int, Listener> listeners;  // by local port; run() thread only
  std::list<Conn> conns;
  Clock::time_point last_traffic = Clock::now();

  void wake() {
    const char c = 1;
    [[maybe_unused]] auto n = ::write(wake_write.get(), &c, 1);
  }

  [[noreturn]] void session_lost(std::string_view what) {
    throw SshError(fmt::format("port forwarding lost its SSH connection to {}:{} ({}): {}", ssh->target().host,
                               ssh->target().port, what, ssh_get_error(session)));
  }

  bool session_alive() const {
    const int st = ssh_get_status(session);
    return ssh_is_connected(session) && !(st & (SSH_CLOSED | SSH_CLOSED_ERROR));
  }

  void publish() {
    std::vector<ForwardStatus> out;
    for (const auto& [port, l] : listeners) out.push_back(l.status);
    std::lock_guard lock(mu);
    published = std::move(out);
  }

  void apply_wanted() {
    std::vector<PortForward> want;
    {
      std::lock_guard lock(mu);
      if (!wanted_changed) return;
      want = wanted;
      wanted_changed = false;
    }
    std::map<int, PortForward> by_port;
    for (auto& f : want) by_port.emplace(f.local_port, f);
    for (auto it = listeners.begin(); it != listeners.end();) {
      auto w = by_port.find(it->first);
      if (w != by_port.end() && w->second == it->second.status.forward) {
        ++it;
        continue;
      }
      close_connections_of(it->first);
      log::debug(kLog, "stop forwarding 127.0.0.1:{}", it->first);
      it = listeners.erase(it);
    }
    for (auto& [port, f] : by_port) {
      if (listeners.count(port)) continue;
      Listener& l = listeners[port];
      l.status.forward = f;
      try_bind(l);
    }
    publish();
  }

  void try_bind(Listener& l) {
    const int port = l.status.forward.local_port;
    l.status.error = listen_loopback(port, l.fd);
    l.status.listening = l.status.error.empty();
    if (l.status.listening) {
      log::info(kLog, "forwarding 127.0.0.1:{} to {}:{} ({})", port, l.status.forward.remote_host,
                l.status.forward.remote_port, l.status.forward.label);
    } else {
      log::warn(kLog, "{} ({}'s port is not forwarded; retrying every {} s)", l.status.error,
                l.status.forward.label, kRetryBind.count());
      l.retry_at = Clock::now() + kRetryBind;
    }
  }

  void retry_unbound() {
    bool changed = false;
    const auto now = Clock::now();
    for (auto& [port, l] : listeners)
      if (!l.status.listening && now >= l.retry_at) {
        try_bind(l);
        changed = changed || l.status.listening;
      }
    if (changed) publish();
  }

  void close_connections_of(int port) {
    for (auto& c : conns)
      if (c.local_port == port) c.done = true;
    reap();
  }

  // A finished connection's counts are final: publish them now, not at the next throttled tick.
  void reap() {
    const size_t before = conns.size();
    for (auto it = conns.begin(); it != conns.end();) it = it->done ? conns.erase(it) : std::next(it);
    if (conns.size() != before) publish_now();
  }

  void accept_from(Listener& l) {
    for (;;) {
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      UniqueFd fd(::accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) return;
      int one = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ChannelPtr ch(ssh_channel_new(session));
      if (!ch) session_lost("cannot make a channel");
      const auto& f = l.status.forward;
      if (ssh_channel_open_forward(ch.get(), f.remote_host.c_str(), f.remote_port, "127.0.0.1",
                                   ntohs(peer.sin_port)) != SSH_OK) {
        if (!session_alive()) session_lost("opening a channel");
        log::warn(kLog, "127.0.0.1:{}: the machine refused a connection to {}:{}: {}", f.local_port, f.remote_host,
                  f.remote_port, ssh_get_error(session));
        continue;  // the client sees its connection closed
      }
      ++l.status.connections;
      Conn& c = conns.emplace_back();
      c.sock = std::move(fd);
      c.channel = std::move(ch);
      c.listener = &l;
      c.local_port = f.local_port;
      last_traffic = Clock::now();
    }
  }

  // Moves what it can in both directions; marks the connection done at the end.
  void pump(Conn& c, short revents) {
    char buf[kChunk];
    // client -> machine
    if (!c.client_eof && c.remote_pending() == 0 && (revents & (POLLIN | POLLHUP | POLLERR))) {
      const ssize_t n = ::read(c.sock.get(), buf, sizeof buf);
      if (n > 0) {
        c.to_remote.assign(buf, static_cast<size_t>(n));
        c.to_remote_off = 0;
      } else if (n == 0) {
        c.client_eof = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        c.done = true;
        return;
      }
    }
    if (c.remote_pending() > 0) {
      const uint32_t window = ssh_channel_window_size(c.channel.get());
      if (window > 0) {
        const auto len = static_cast<uint32_t>(std::min<size_t>(window, c.remote_pending()));
        const int w = ssh_channel_write(c.channel.get(), c.to_remote.data() + c.to_remote_off, len);
        if (w < 0) {
          if (!session_alive()) session_lost("writing");
          c.done = true;
          return;
        }
        c.to_remote_off += static_cast<size_t>(w);
        if (c.listener) c.listener->status.bytes_in += static_cast<uint64_t>(w);
        last_traffic = Clock::now();
      }
    }
    if (c.client_eof && c.remote_pending() == 0 && !c.eof_sent) {
      ssh_channel_send_eof(c.channel.get());
      c.eof_sent = true;
    }
    // machine -> client
    while (!c.remote_eof && c.client_pending() < kMaxPendingToClient) {
      const int n = ssh_channel_read_nonblocking(c.channel.get(), buf, sizeof buf, 0);
      if (n > 0) {
        if (c.to_client_off == c.to_client.size()) {
          c.to_client.clear();
          c.to_client_off = 0;
        }
        c.to_client.append(buf, static_cast<size_t>(n));
        last_traffic = Clock::now();
        continue;
      }
      if (n == SSH_EOF || (n == 0 && ssh_channel_is_eof(c.channel.get()))) {
        c.remote_eof = true;
      } else if (n < 0) {
        if (!session_alive()) session_lost("reading");
        c.remote_eof = true;
      }
      break;
    }
    if (c.client_pending() > 0) {
      const ssize_t w = ::send(c.sock.get(), c.to_client.data() + c.to_client_off, c.client_pending(), MSG_NOSIGNAL);
      if (w > 0) {
        c.to_client_off += static_cast<size_t>(w);
        if (c.listener) c.listener->status.bytes_out += static_cast<uint64_t>(w);
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        c.done = true;
        return;
      }
    }
    if (c.remote_eof && c.client_pending() == 0 && !c.client_shut) {
      ::shutdown(c.sock.get(), SHUT_WR);
      c.client_shut = true;
    }
    if ((c.client_shut && c.eof_sent) || (ssh_channel_is_closed(c.channel.get()) && c.client_pending() == 0))
      c.done = true;
  }

  // Lets libssh read what arrived for no channel of ours (keepalives, window
  // adjusts, closes), without waiting.
  void drain_session() { ChannelPtr none(ssh_channel_open_forward_port(session, 0, nullptr, nullptr, nullptr)); }

  void run() {
    std::vector<pollfd> fds;
    std::vector<Conn*> conn_at;     // fds index -> connection
    std::vector<Listener*> listener_at;
    while (!stopping) {
      apply_wanted();
      retry_unbound();
      fds.clear();
      conn_at.clear();
      listener_at.clear();
      fds.push_back({wake_read.get(), POLLIN, 0});
      conn_at.push_back(nullptr);
      listener_at.push_back(nullptr);
      fds.push_back({ssh_get_fd(session), POLLIN, 0});
      conn_at.push_back(nullptr);
      listener_at.push_back(nullptr);
      for (auto& [port, l] : listeners) {
        if (!l.fd) continue;
        fds.push_back({l.fd.get(), POLLIN, 0});
        conn_at.push_back(nullptr);
        listener_at.push_back(&l);
      }
      for (auto& c : conns) {
        short events = 0;
        if (!c.client_eof && c.remote_pending() == 0) events |= POLLIN;
        if (c.client_pending() > 0) events |= POLLOUT;
        fds.push_back({c.sock.get(), events, 0});
        conn_at.push_back(&c);
        listener_at.push_back(nullptr);
      }
      // Channels may hold data libssh already read, and windows reopen without
      // a readable socket here: with connections open, look again soon.
      const int timeout_ms = conns.empty() ? 1000 : 5;
      if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR)
        throw Error(std::string("port forwarding: poll failed: ") + std::strerror(errno));
      if (fds[0].revents & POLLIN) {
        char drain[64];
        while (::read(wake_read.get(), drain, sizeof drain) > 0) {
        }
      }
      if (stopping) break;
      const bool ssh_readable = fds[1].revents != 0;
      if (ssh_readable && conns.empty()) {
        drain_session();
        if (!session_alive()) session_lost("connection closed");
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (listener_at[i] && (fds[i].revents & POLLIN)) accept_from(*listener_at[i]);
        if (conn_at[i]) pump(*conn_at[i], fds[i].revents);
      }
      reap();
      if (!session_alive()) session_lost("connection closed");
      if (Clock::now() - last_traffic > kIdleProbe) {
        // A write on a dead connection fails, so a VM that went away is noticed.
        if (ssh_send_ignore(session, "berth") != SSH_OK) session_lost("idle check");
        last_traffic = Clock::now();
      }
      publish_counts();
    }
    conns.clear();
    listeners.clear();
    publish();
  }

  Clock::time_point last_publish{};
  void publish_counts() {
    if (Clock::now() - last_publish < std::chrono::milliseconds(200)) return;
    publish_now();
  }
  void publish_now() {
    last_publish = Clock::now();
    publish();
  }
};

SshPortForwarder::SshPortForwarder(std::unique_ptr<SshSession> session) : impl_(std::make_unique<Impl>()) {
  impl_->ssh = std::move(session);
  impl_->session = impl_->ssh->native_handle();
  int pipefd[2];
  if (::pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) != 0)
    throw Error(std::string("port forwarding: cannot make a pipe: ") + std::strerror(errno));
  impl_->wake_read = UniqueFd(pipefd[0]);
  impl_->wake_write = UniqueFd(pipefd[1]);
}

SshPortForwarder::~SshPortForwarder() = default;

void SshPortForwarder::set_forwards(std::vector<PortForward> wanted) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->wanted = std::move(wanted);
    impl_->wanted_changed = true;
  }
  impl_->wake();
}

std::vector<ForwardStatus> SshPortForwarder::status() const {
  std::lock_guard lock(impl_->mu);
  return impl_->published;
}

void SshPortForwarder::run() {
  try {
    impl_->run();
  } catch (...) {
    impl_->conns.clear();
    impl_->listeners.clear();
    impl_->publish();
    throw;
  }
}

void SshPortForwarder::stop() {
  impl_->stopping = true;
  impl_->wake();
}

}  // namespace berth
