#include "agent/network/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace berth::agent::network {

std::vector<std::string> resolv_nameservers(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, value;
    if (words >> key >> value && key == "nameserver") out.push_back(value);
  }
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

// Answers a TCP client has not read yet; past this it is closed.
constexpr std::size_t kMaxTcpUnsent = 256 * 1024;
// Work done per wakeup on one socket, so a flood on one cannot starve the rest.
constexpr int kBatch = 64;

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

sockaddr_in make_addr(std::uint32_t ip, std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(ip);
  return a;
}

// A non-blocking socket bound to ip:port; invalid when the port is taken.
Fd bound_socket(int type, std::uint32_t ip, std::uint16_t port, int& error) {
  Fd s(::socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (s.fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = make_addr(ip, port);
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    error = errno;
    return Fd();
  }
  return s;
}

std::uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

int millis_until(Clock::time_point t, Clock::time_point now) {
  if (t <= now) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1;
  return static_cast<int>(std::min<long long>(ms, 60'000));
}

}  // namespace

struct DnsServer::Impl {
  // A TCP connection: framed queries in, framed answers out.
  struct TcpClient {
    Fd fd;
    std::string in, out;
    Clock::time_point since;     // accepted; the oldest goes first when full
    Clock::time_point deadline;  // the next whole query by then, or closed
    std::uint32_t peer = 0;      // its address (host order)
    bool eof = false;            // it has shut down its sending side
    std::size_t waiting = 0;     // its queries still at upstreams
  };
  // Where an answer goes: a UDP peer, or a TCP client by id (0: UDP).
  struct Origin {
    std::uint64_t tcp_client = 0;
    sockaddr_in udp_peer{};
  };
  // A query out at an upstream, one connected socket (its own port) each.
  struct Forward {
    Fd sock;
    std::string query, servfail;
    Origin origin;
    std::vector<std::string> servers;
    std::size_t next = 0;  // the next upstream to try
    Clock::time_point deadline;
  };

  DnsServerConfig config;
  std::uint32_t client_mask = 0;
  Fd udp, tcp, stop;
  std::uint16_t port = 0;
  std::map<std::uint64_t, TcpClient> clients;
  std::uint64_t next_client_id = 1;
  std::list<Forward> forwards;
  std::string buffer = std::string(dns::kMaxMessage + 1, '\0');
  std::thread thread;

  bool allowed(const sockaddr_in& from) const {
    return from.sin_family == AF_INET &&
           (ntohl(from.sin_addr.s_addr) & client_mask) == (config.client_net & client_mask);
  }

  // --- answers ---
  void deliver(const Origin& to, const std::string& reply) {
    if (to.tcp_client == 0) {
      ::sendto(udp.fd, reply.data(), reply.size(), MSG_DONTWAIT,
               reinterpret_cast<const sockaddr*>(&to.udp_peer), sizeof to.udp_peer);
      return;
    }
    if (clients.count(to.tcp_client)) queue(to.tcp_client, reply);  // else gone meanwhile
  }

  // The end of a forward: its answer (or SERVFAIL) goes out.
  void forwarded(const Origin& to, const std::string& reply) {
    if (auto it = clients.find(to.tcp_client); to.tcp_client && it != clients.end())
      --it->second.waiting;
    deliver(to, reply);
  }

  void queue(std::uint64_t id, const std::string& reply) {
    TcpClient& c = clients.at(id);
    c.out += dns::frame(reply);
    if (c.out.size() > kMaxTcpUnsent) {
      clients.erase(id);  // it does not read its answers
      return;
    }
    flush(id);
  }

  // Sends what the socket takes now; closes the client when it is done or broken.
  void flush(std::uint64_t id) {
    TcpClient& c = clients.at(id);
    while (!c.out.empty()) {
      ssize_t n = ::send(c.fd.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out.erase(0, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      clients.erase(id);
      return;
    }
    if (c.eof && c.waiting == 0) clients.erase(id);
  }

  void handle(std::string_view msg, const Origin& from) {
    std::uint32_t client = from.tcp_client ? clients.at(from.tcp_client).peer
                                           : ntohl(from.udp_peer.sin_addr.s_addr);
    dns::Verdict v = dns::answer(msg, config.lookup, client);
    if (v.action == dns::Verdict::Action::Reply) deliver(from, v.reply);
    if (v.action == dns::Verdict::Action::Forward) forward(msg, std::move(v.reply), from);
  }

  // --- upstreams ---
  void forward(std::string_view query, std::string servfail, const Origin& from) {
    if (from.tcp_client) ++clients.at(from.tcp_client).waiting;
    if (forwards.size() >= config.max_forwards) return forwarded(from, servfail);
    Forward f;
    f.query = std::string(query);
    f.servfail = std::move(servfail);
    f.origin = from;
    if (config.upstreams) f.servers = config.upstreams();
    if (!send_next(f)) return forwarded(from, f.servfail);
    forwards.push_back(std::move(f));
  }

  // Sends the query to the next upstream that takes it; false when none is left.
  bool send_next(Forward& f) {
    f.sock.reset();
    while (f.next < f.servers.size()) {
      in_addr addr{};
      if (::inet_pton(AF_INET, f.servers[f.next++].c_str(), &addr) != 1) continue;
      Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (s.fd < 0) continue;
      sockaddr_in a = make_addr(ntohl(addr.s_addr), config.upstream_port);
      if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) continue;
      if (::send(s.fd, f.query.data(), f.query.size(), MSG_DONTWAIT) < 0) continue;
      f.sock = std::move(s);
      f.deadline = Clock::now() + config.upstream_timeout;
      return true;
    }
    return false;
  }

  void on_upstream(std::list<Forward>::iterator it) {
    for (int i = 0; i < kBatch; ++i) {
      ssize_t n = ::recv(it->sock.fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0) return retry(it);  // refused (ICMP): on to the next upstream
      std::string_view reply(buffer.data(), static_cast<std::size_t>(n));
      if (dns::answers(it->query, reply)) {
        forwarded(it->origin, std::string(reply));
        forwards.erase(it);
        return;
      }
    }
  }

  void retry(std::list<Forward>::iterator it) {
    if (send_next(*it)) return;
    forwarded(it->origin, it->servfail);
    forwards.erase(it);
  }

  // --- clients ---
  void on_udp() {
    for (int i = 0; i < kBatch; ++i) {
      Origin from;
      socklen_t len = sizeof from.udp_peer;
      ssize_t n = ::recvfrom(udp.fd, buffer.data(), buffer.size(), MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&from.udp_peer), &len);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;
      if (!allowed(from.udp_peer)) continue;  // not one of the network's containers
      handle(std::string_view(buffer.data(), static_cast<std::size_t>(n)), from);
    }
  }

  void on_accept() {
    for (int i = 0; i < kBatch; ++i) {
      sockaddr_in from{};
      socklen_t len = sizeof from;
      Fd fd(::accept4(tcp.fd, reinterpret_cast<sockaddr*>(&from), &len,
                      SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (fd.fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      if (!allowed(from)) continue;
      if (clients.size() >= config.max_tcp_clients) {
        auto oldest = std::min_element(clients.begin(), clients.end(), [](auto& a, auto& b) {
          return a.second.since < b.second.since;
        });
        clients.erase(oldest);
      }
      TcpClient c;
      c.fd = std::move(fd);
      c.peer = ntohl(from.sin_addr.s_addr);
      c.since = Clock::now();
      c.deadline = c.since + config.tcp_idle_timeout;
      clients.emplace(next_client_id++, std::move(c));
    }
  }

  void on_client(std::uint64_t id, short revents) {
    if (revents & POLLOUT) {
      flush(id);
      if (!clients.count(id)) return;
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
    TcpClient& c = clients.at(id);
    ssize_t n = ::recv(c.fd.fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
      clients.erase(id);
      return;
    }
    if (n == 0) {
      c.eof = true;
      if (c.waiting == 0 && c.out.empty()) clients.erase(id);
      return;
    }
    c.in.append(buffer.data(), static_cast<std::size_t>(n));
    while (auto msg = dns::unframe(c.in)) {
      c.deadline = Clock::now() + config.tcp_idle_timeout;
      handle(*msg, Origin{id, {}});
      if (!clients.count(id)) return;
    }
  }

  // Closes clients past their deadline (unless an upstream still owes them
  // an answer) and moves timed-out forwards on to the next upstream.
  void expire() {
    auto now = Clock::now();
    std::erase_if(clients, [&](auto& entry) {
      return entry.second.waiting == 0 && entry.second.deadline <= now;
    });
    for (auto it = forwards.begin(); it != forwards.end();) {
      auto current = it++;
      if (current->deadline <= now) retry(current);
    }
  }

  int poll_timeout() const {
    auto now = Clock::now();
    std::optional<Clock::time_point> first;
    auto consider = [&](Clock::time_point t) {
      if (!first || t < *first) first = t;
    };
    for (const auto& [id, c] : clients)
      if (c.waiting == 0) consider(c.deadline);
    for (const Forward& f : forwards) consider(f.deadline);
    return first ? millis_until(*first, now) : -1;
  }

  void run() {
    std::vector<pollfd> fds;
    std::vector<std::uint64_t> client_ids;
    std::vector<std::list<Forward>::iterator> forward_its;
    for (;;) {
      fds = {{stop.fd, POLLIN, 0}, {udp.fd, POLLIN, 0}, {tcp.fd, POLLIN, 0}};
      client_ids.clear();
      forward_its.clear();
      for (const auto& [id, c] : clients) {
        short events = static_cast<short>((c.eof ? 0 : POLLIN) | (c.out.empty() ? 0 : POLLOUT));
        // Nothing to wait for on a client that has shut down and is owed
        // nothing yet (poll would keep reporting its hangup).
        fds.push_back({events ? c.fd.fd : -1, events, 0});
        client_ids.push_back(id);
      }
      for (auto it = forwards.begin(); it != forwards.end(); ++it) {
        fds.push_back({it->sock.fd, POLLIN, 0});
        forward_its.push_back(it);
      }
      if (::poll(fds.data(), fds.size(), poll_timeout()) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents) return;
      if (fds[1].revents) on_udp();
      if (fds[2].revents) on_accept();
      std::size_t at = 3;
      for (std::uint64_t id : client_ids) {
        short revents = fds[at++].revents;
        // Looked up again: an earlier step may have closed it.
        if (revents && clients.count(id)) on_client(id, revents);
      }
      // Forwards are erased only by on_upstream/retry on themselves, so the
      // remaining iterators stay valid.
      for (auto it : forward_its)
        if (fds[at++].revents) on_upstream(it);
      expire();
    }
  }
};

DnsServer::DnsServer(DnsServerConfig config) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = std::move(config);
  m.client_mask = m.config.client_prefix <= 0
                      ? 0
                      : ~std::uint32_t{0} << (32 - std::min(m.config.client_prefix, 32));
  int error = 0;
  // Port 0: the TCP socket takes the port the kernel gave the UDP one.
  for (int attempt = 0; attempt < 16 && m.tcp.fd < 0; ++attempt) {
    m.udp = bound_socket(SOCK_DGRAM, m.config.ip, m.config.port, error);
    if (m.udp.fd < 0) break;
    m.port = local_port(m.udp.fd);
    m.tcp = bound_socket(SOCK_STREAM, m.config.ip, m.port, error);
    if (m.config.port != 0) break;
  }
  if (m.udp.fd < 0 || m.tcp.fd < 0)
    throw std::runtime_error("DNS bind " + std::to_string(m.config.port) + ": " +
                             std::strerror(error));
  if (::listen(m.tcp.fd, 64) != 0)
    throw std::runtime_error(std::string("DNS listen: ") + std::strerror(errno));
  m.stop = Fd(::eventfd(0, EFD_CLOEXEC));
  if (m.stop.fd < 0) throw std::runtime_error("eventfd failed");
  m.thread = std::thread([&m] { m.run(); });
}

DnsServer::~DnsServer() {
  std::uint64_t one = 1;
  if (::write(impl_->stop.fd, &one, sizeof one) < 0) {
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::uint16_t DnsServer::port() const { return impl_->port; }

}  // namespace berth::agent::network
