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
#include <sstream>
#include <stdexcept>
#include <thread>

namespace berth::agent::network {

namespace dns {
namespace {

std::uint16_t get16(std::string_view m, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(m[at]) << 8) |
                                    static_cast<unsigned char>(m[at + 1]));
}

void put16(std::string& out, std::uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

void put32(std::string& out, std::uint32_t v) {
  put16(out, static_cast<std::uint16_t>(v >> 16));
  put16(out, static_cast<std::uint16_t>(v & 0xffff));
}

// Reads a (possibly compressed) name at `at`; returns the offset after it in
// the original position, or nullopt when malformed.
std::optional<std::size_t> read_name(std::string_view m, std::size_t at, std::string& name) {
  std::optional<std::size_t> end;
  for (int jumps = 0; jumps < 32;) {
    if (at >= m.size()) return std::nullopt;
    auto len = static_cast<unsigned char>(m[at]);
    if (len == 0) {
      if (!end) end = at + 1;
      return end;
    }
    if ((len & 0xc0) == 0xc0) {
      if (at + 1 >= m.size()) return std::nullopt;
      if (!end) end = at + 2;
      at = get16(m, at) & 0x3fff;
      ++jumps;
      continue;
    }
    if ((len & 0xc0) != 0 || at + 1 + len > m.size()) return std::nullopt;
    if (!name.empty()) name += '.';
    for (std::size_t i = 0; i < len; ++i)
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(m[at + 1 + i])));
    if (name.size() > 255) return std::nullopt;
    at += 1 + len;
  }
  return std::nullopt;
}

}  // namespace

std::optional<Query> parse_query(std::string_view m) {
  if (m.size() < 12) return std::nullopt;
  Query q;
  q.id = get16(m, 0);
  q.flags = get16(m, 2);
  if (q.flags & 0x8000) return std::nullopt;  // a response
  if (get16(m, 4) != 1) return std::nullopt;
  auto end = read_name(m, 12, q.name);
  if (!end || *end + 4 > m.size()) return std::nullopt;
  q.type = get16(m, *end);
  q.klass = get16(m, *end + 2);
  q.question_end = *end + 4;
  return q;
}

std::string build_response(std::string_view msg, const Query& q, int rcode,
                           const std::vector<std::uint32_t>& ips, std::uint32_t ttl) {
  std::string out;
  put16(out, q.id);
  // QR, the query's opcode and RD, AA (we are authoritative for our names), RA.
  std::uint16_t flags = 0x8000 | (q.flags & 0x7800) | (q.flags & 0x0100) | 0x0080 |
                        static_cast<std::uint16_t>(rcode & 0xf);
  if (rcode == kNoError || rcode == kNxDomain) flags |= 0x0400;
  put16(out, flags);
  put16(out, 1);
  put16(out, static_cast<std::uint16_t>(ips.size()));
  put16(out, 0);
  put16(out, 0);
  out.append(msg.substr(12, q.question_end - 12));
  for (std::uint32_t ip : ips) {
    put16(out, 0xc00c);  // the name of the question
    put16(out, kTypeA);
    put16(out, 1);
    put32(out, ttl);
    put16(out, 4);
    put32(out, ip);
  }
  return out;
}

std::string build_query(std::uint16_t id, const std::string& name, std::uint16_t type) {
  std::string out;
  put16(out, id);
  put16(out, 0x0100);  // RD
  put16(out, 1);
  put16(out, 0);
  put16(out, 0);
  put16(out, 0);
  std::istringstream labels(name);
  std::string label;
  while (std::getline(labels, label, '.')) {
    if (label.empty()) continue;
    out += static_cast<char>(label.size());
    out += label;
  }
  out += '\0';
  put16(out, type);
  put16(out, 1);
  return out;
}

std::optional<Reply> parse_reply(std::string_view m) {
  if (m.size() < 12) return std::nullopt;
  Reply r;
  r.id = get16(m, 0);
  std::uint16_t flags = get16(m, 2);
  if (!(flags & 0x8000)) return std::nullopt;
  r.rcode = flags & 0xf;
  r.truncated = flags & 0x0200;
  std::size_t at = 12;
  for (int i = 0, n = get16(m, 4); i < n; ++i) {
    std::string name;
    auto end = read_name(m, at, name);
    if (!end || *end + 4 > m.size()) return std::nullopt;
    at = *end + 4;
  }
  for (int i = 0, n = get16(m, 6); i < n; ++i) {
    std::string name;
    auto end = read_name(m, at, name);
    if (!end || *end + 10 > m.size()) return std::nullopt;
    std::uint16_t type = get16(m, *end);
    std::uint16_t len = get16(m, *end + 8);
    at = *end + 10;
    if (at + len > m.size()) return std::nullopt;
    if (type == kTypeA && len == 4)
      r.a.push_back((static_cast<std::uint32_t>(get16(m, at)) << 16) | get16(m, at + 2));
    at += len;
  }
  return r;
}

}  // namespace dns

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

Fd bound_socket(int type, std::uint32_t ip, std::uint16_t port) {
  Fd s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (s.fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = make_addr(ip, port);
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("DNS bind " + std::to_string(port) + ": " + std::strerror(errno));
  return s;
}

// Reads exactly n bytes within `timeout_ms` each; false on EOF/timeout.
bool read_full(int fd, char* buf, std::size_t n, int timeout_ms) {
  std::size_t got = 0;
  while (got < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
    got += static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace

struct DnsServer::Impl {
  Lookup lookup;
  Upstreams upstreams;
  Fd udp, tcp, stop;
  std::thread thread;

  std::string forward(std::string_view msg, const dns::Query& q) const {
    for (const std::string& server : upstreams ? upstreams() : std::vector<std::string>{}) {
      in_addr addr{};
      if (::inet_pton(AF_INET, server.c_str(), &addr) != 1) continue;
      Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      if (s.fd < 0) continue;
      sockaddr_in a = make_addr(ntohl(addr.s_addr), 53);
      if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) continue;
      if (::send(s.fd, msg.data(), msg.size(), 0) < 0) continue;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (std::chrono::steady_clock::now() < deadline) {
        int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        deadline - std::chrono::steady_clock::now())
                                        .count());
        pollfd p{s.fd, POLLIN, 0};
        if (::poll(&p, 1, std::max(left, 1)) <= 0) break;
        char buf[4096];
        ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
        if (n >= 12 && dns::parse_reply(std::string_view(buf, n)) &&
            dns::parse_reply(std::string_view(buf, n))->id == q.id)
          return std::string(buf, static_cast<std::size_t>(n));
        if (n < 0 && errno != EINTR) break;
      }
    }
    return dns::build_response(msg, q, dns::kServFail, {});
  }

  std::string handle(std::string_view msg) const {
    auto q = dns::parse_query(msg);
    if (!q) return {};
    if (q->klass == 1 && (q->type == dns::kTypeA || q->type == dns::kTypeAAAA)) {
      if (auto ips = lookup(q->name)) {
        // Known here: addresses for A, an empty answer for AAAA (no IPv6).
        return dns::build_response(msg, *q, dns::kNoError,
                                   q->type == dns::kTypeA ? *ips : std::vector<std::uint32_t>{});
      }
    }
    return forward(msg, *q);
  }

  void serve_tcp_client(int fd) const {
    char len_buf[2];
    while (read_full(fd, len_buf, 2, 2000)) {
      std::size_t len = (static_cast<unsigned char>(len_buf[0]) << 8) |
                        static_cast<unsigned char>(len_buf[1]);
      std::string msg(len, '\0');
      if (!read_full(fd, msg.data(), len, 2000)) return;
      std::string reply = handle(msg);
      if (reply.empty()) return;
      std::string framed;
      framed += static_cast<char>(reply.size() >> 8);
      framed += static_cast<char>(reply.size() & 0xff);
      framed += reply;
      if (::send(fd, framed.data(), framed.size(), MSG_NOSIGNAL) < 0) return;
    }
  }

  void run() {
    pollfd fds[3] = {{udp.fd, POLLIN, 0}, {tcp.fd, POLLIN, 0}, {stop.fd, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[2].revents) return;
      if (fds[0].revents & POLLIN) {
        char buf[4096];
        sockaddr_in from{};
        socklen_t from_len = sizeof from;
        ssize_t n = ::recvfrom(udp.fd, buf, sizeof buf, MSG_DONTWAIT,
                               reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n > 0) {
          std::string reply = handle(std::string_view(buf, static_cast<std::size_t>(n)));
          if (!reply.empty())
            ::sendto(udp.fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
                     from_len);
        }
      }
      if (fds[1].revents & POLLIN) {
        Fd client(::accept4(tcp.fd, nullptr, nullptr, SOCK_CLOEXEC));
        if (client.fd >= 0) serve_tcp_client(client.fd);
      }
    }
  }
};

DnsServer::DnsServer(std::uint32_t ip, std::uint16_t port, Lookup lookup, Upstreams upstreams)
    : impl_(std::make_unique<Impl>()) {
  impl_->lookup = std::move(lookup);
  impl_->upstreams = std::move(upstreams);
  impl_->udp = bound_socket(SOCK_DGRAM, ip, port);
  impl_->tcp = bound_socket(SOCK_STREAM, ip, port);
  if (::listen(impl_->tcp.fd, 16) != 0)
    throw std::runtime_error(std::string("DNS listen: ") + std::strerror(errno));
  impl_->stop = Fd(::eventfd(0, EFD_CLOEXEC));
  if (impl_->stop.fd < 0) throw std::runtime_error("eventfd failed");
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

DnsServer::~DnsServer() {
  std::uint64_t one = 1;
  if (::write(impl_->stop.fd, &one, sizeof one) < 0) {
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::string DnsServer::handle(std::string_view msg) const { return impl_->handle(msg); }

}  // namespace berth::agent::network
