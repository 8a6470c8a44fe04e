// The embedded DNS server over real sockets on 127.0.0.1 (no namespaces
// needed): slow clients, idle clients, silent upstreams and strangers.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "agent/network/dns.h"
#include "agent/network/ipam.h"
#include "netns_harness.h"

namespace berth::agent::network {
namespace {

using agent::testing::addr_of;
using agent::testing::OwnedFd;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::uint32_t ip(const char* s) { return *parse_ipv4(s); }

long long millis_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// A server on 127.0.0.1 that knows "web" and answers 127.0.0.1 only
// (127.0.0.2 plays a stranger).
DnsServerConfig local_config() {
  DnsServerConfig c;
  c.ip = ip("127.0.0.1");
  c.port = 0;
  c.client_net = ip("127.0.0.1");
  c.client_prefix = 32;
  c.lookup = [](const std::string& name, std::uint32_t) -> std::optional<dns::Addresses> {
    if (name == "web") return dns::Addresses{{ip("172.18.0.2")}, {}};
    return std::nullopt;
  };
  return c;
}

OwnedFd socket_from(const char* source, int type, int port = 0) {
  OwnedFd s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in a = addr_of(source, port);
  if (s.fd < 0 || ::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("bind socket on " + std::string(source));
  return s;
}

std::uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

std::string recv_within(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return "";
  char buf[4096];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

// One UDP query from `source`; the parsed reply (nullopt on timeout).
std::optional<dns::Reply> ask_udp(std::uint16_t port, const std::string& name,
                                  const char* source = "127.0.0.1", int timeout_ms = 2000) {
  static std::atomic<std::uint16_t> id{1};
  OwnedFd s = socket_from(source, SOCK_DGRAM);
  std::string q = dns::build_query(++id, name, dns::kTypeA);
  sockaddr_in a = addr_of("127.0.0.1", port);
  ::sendto(s.fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  return dns::parse_reply(recv_within(s.fd, timeout_ms));
}

OwnedFd tcp_connect(std::uint16_t port, const char* source = "127.0.0.1") {
  OwnedFd s = socket_from(source, SOCK_STREAM);
  sockaddr_in a = addr_of("127.0.0.1", port);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("connect");
  return s;
}

// A whole framed answer from a TCP connection ("" on timeout or close).
std::string tcp_answer(int fd, int timeout_ms = 2000) {
  std::string stream;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    if (auto msg = dns::unframe(stream)) return *msg;
    std::string more = recv_within(fd, timeout_ms);
    if (more.empty()) return "";
    stream += more;
  }
  return "";
}

// True when the server closed the connection within timeout_ms.
bool closed_within(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

// A UDP "nameserver" that reads queries and never answers.
struct SilentUpstream {
  OwnedFd sock;
  explicit SilentUpstream(const char* ip = "127.0.0.1", int port = 0)
      : sock(socket_from(ip, SOCK_DGRAM, port)) {}
  std::uint16_t port() const { return port_of(sock.fd); }
  int received() const {
    int n = 0;
    char buf[1500];
    while (::recv(sock.fd, buf, sizeof buf, MSG_DONTWAIT) > 0) ++n;
    return n;
  }
};

// A nameserver that answers every query with 192.0.2.7.
struct AnsweringUpstream {
  OwnedFd sock;
  std::atomic<bool> stop{false};
  std::thread thread;
  AnsweringUpstream(const char* ip, int port) : sock(socket_from(ip, SOCK_DGRAM, port)) {
    thread = std::thread([this] {
      while (!stop) {
        pollfd p{sock.fd, POLLIN, 0};
        if (::poll(&p, 1, 50) != 1) continue;
        char buf[1500];
        sockaddr_in from{};
        socklen_t len = sizeof from;
        ssize_t n =
            ::recvfrom(sock.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n <= 0) continue;
        std::string_view msg(buf, static_cast<std::size_t>(n));
        auto q = dns::parse_query(msg);
        if (!q) continue;
        std::string r = dns::build_response(msg, *q, dns::kNoError, {ip_of("192.0.2.7")});
        ::sendto(sock.fd, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    });
  }
  ~AnsweringUpstream() {
    stop = true;
    thread.join();
  }
  static std::uint32_t ip_of(const char* s) { return *parse_ipv4(s); }
};

TEST(DnsServer, AnswersLocalNamesOverUdpAndTcp) {
  DnsServer server(local_config());
  auto r = ask_udp(server.port(), "WEB");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->a.size(), 1u);
  EXPECT_EQ(format_ipv4(r->a[0]), "172.18.0.2");
  // Two queries in one write: two answers, in order.
  OwnedFd c = tcp_connect(server.port());
  std::string two = dns::frame(dns::build_query(1, "web", dns::kTypeA)) +
                    dns::frame(dns::build_query(2, "web", dns::kTypeAAAA));
  ASSERT_EQ(::send(c.fd, two.data(), two.size(), MSG_NOSIGNAL), static_cast<ssize_t>(two.size()));
  std::string stream;
  while (stream.size() < 4) stream += recv_within(c.fd, 2000);
  std::vector<dns::Reply> replies;
  for (int i = 0; i < 20 && replies.size() < 2; ++i) {
    while (auto msg = dns::unframe(stream)) replies.push_back(*dns::parse_reply(*msg));
    if (replies.size() < 2) stream += recv_within(c.fd, 200);
  }
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].id, 1);
  EXPECT_EQ(replies[0].a.size(), 1u);
  EXPECT_EQ(replies[1].id, 2);
  EXPECT_TRUE(replies[1].a.empty());
}

TEST(DnsServer, StrangersGetNoAnswer) {
  DnsServer server(local_config());
  EXPECT_TRUE(ask_udp(server.port(), "web", "127.0.0.1"));
  EXPECT_FALSE(ask_udp(server.port(), "web", "127.0.0.2", 300));
  EXPECT_FALSE(ask_udp(server.port(), "example.org", "127.0.0.2", 300));
  OwnedFd c = tcp_connect(server.port(), "127.0.0.2");
  std::string q = dns::frame(dns::build_query(3, "web", dns::kTypeA));
  ::send(c.fd, q.data(), q.size(), MSG_NOSIGNAL);
  EXPECT_EQ(tcp_answer(c.fd, 300), "");
  EXPECT_TRUE(closed_within(c.fd, 1000));
}

TEST(DnsServer, TricklingTcpClientDoesNotStallOthers) {
  DnsServer server(local_config());
  OwnedFd silent = tcp_connect(server.port());  // connects, sends nothing
  OwnedFd trickler = tcp_connect(server.port());
  std::string q = dns::frame(dns::build_query(4, "web", dns::kTypeA));
  for (std::size_t i = 0; i < 6; ++i) {
    ASSERT_EQ(::send(trickler.fd, q.data() + i, 1, MSG_NOSIGNAL), 1);
    auto start = Clock::now();
    auto r = ask_udp(server.port(), "web");
    EXPECT_LT(millis_since(start), 100) << "byte " << i;
    ASSERT_TRUE(r);
    EXPECT_EQ(r->a.size(), 1u);
    OwnedFd other = tcp_connect(server.port());
    ::send(other.fd, q.data(), q.size(), MSG_NOSIGNAL);
    start = Clock::now();
    EXPECT_TRUE(dns::parse_reply(tcp_answer(other.fd)));
    EXPECT_LT(millis_since(start), 100) << "byte " << i;
    std::this_thread::sleep_for(500ms);
  }
  // The trickler finishes its query and still gets its answer.
  ::send(trickler.fd, q.data() + 6, q.size() - 6, MSG_NOSIGNAL);
  EXPECT_TRUE(dns::parse_reply(tcp_answer(trickler.fd)));
}

TEST(DnsServer, IdleTcpClientsAreBoundedAndTimedOut) {
  DnsServerConfig config = local_config();
  config.max_tcp_clients = 8;
  config.tcp_idle_timeout = 600ms;
  DnsServer server(config);
  std::vector<OwnedFd> idle;
  for (int i = 0; i < 100; ++i) idle.push_back(tcp_connect(server.port()));
  auto start = Clock::now();
  EXPECT_TRUE(ask_udp(server.port(), "web"));
  EXPECT_LT(millis_since(start), 100);
  // A new client is served; the oldest idle ones made room for it.
  OwnedFd fresh = tcp_connect(server.port());
  std::string q = dns::frame(dns::build_query(5, "web", dns::kTypeA));
  ::send(fresh.fd, q.data(), q.size(), MSG_NOSIGNAL);
  EXPECT_TRUE(dns::parse_reply(tcp_answer(fresh.fd)));
  EXPECT_TRUE(closed_within(idle.front().fd, 200));
  // A client that never completes a query is closed after the idle timeout.
  EXPECT_TRUE(closed_within(idle.back().fd, 2000));
  OwnedFd partial = tcp_connect(server.port());
  ::send(partial.fd, q.data(), 3, MSG_NOSIGNAL);
  start = Clock::now();
  EXPECT_TRUE(closed_within(partial.fd, 3000));
  EXPECT_GE(millis_since(start), 400);
  // So is one that had its answer and went quiet.
  EXPECT_TRUE(closed_within(fresh.fd, 3000));
  // One that shuts down its side after a query gets the answer, then the end.
  OwnedFd done = tcp_connect(server.port());
  ::send(done.fd, q.data(), q.size(), MSG_NOSIGNAL);
  ::shutdown(done.fd, SHUT_WR);
  start = Clock::now();
  EXPECT_TRUE(dns::parse_reply(tcp_answer(done.fd)));
  EXPECT_TRUE(closed_within(done.fd, 300));
  EXPECT_LT(millis_since(start), 300);
}

TEST(DnsServer, SilentUpstreamDoesNotDelayLocalNames) {
  SilentUpstream upstream;
  DnsServerConfig config = local_config();
  config.upstreams = [] { return std::vector<std::string>{"127.0.0.1"}; };
  config.upstream_port = upstream.port();
  config.upstream_timeout = 800ms;
  DnsServer server(config);
  // A forwarded query over UDP and one over TCP wait on the upstream...
  OwnedFd waiting = socket_from("127.0.0.1", SOCK_DGRAM);
  std::string fwd = dns::build_query(77, "example.org", dns::kTypeA);
  sockaddr_in a = addr_of("127.0.0.1", server.port());
  ::sendto(waiting.fd, fwd.data(), fwd.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  OwnedFd tcp_waiting = tcp_connect(server.port());
  std::string framed = dns::frame(dns::build_query(78, "example.org", dns::kTypeA));
  ::send(tcp_waiting.fd, framed.data(), framed.size(), MSG_NOSIGNAL);
  // ...while local names are answered at once.
  auto start = Clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ask_udp(server.port(), "web"));
  EXPECT_LT(millis_since(start), 100);
  // Then SERVFAIL, once the upstream's time is up.
  auto late = dns::parse_reply(recv_within(waiting.fd, 3000));
  ASSERT_TRUE(late);
  EXPECT_EQ(late->id, 77);
  EXPECT_EQ(late->rcode, dns::kServFail);
  EXPECT_GE(millis_since(start), 600);
  auto late_tcp = dns::parse_reply(tcp_answer(tcp_waiting.fd, 3000));
  ASSERT_TRUE(late_tcp);
  EXPECT_EQ(late_tcp->rcode, dns::kServFail);
  EXPECT_EQ(upstream.received(), 2);
}

TEST(DnsServer, ForwardsToTheNextUpstreamAndRelaysItsAnswer) {
  // Both upstreams on one port: 127.0.0.1 never answers, 127.0.0.2 does.
  SilentUpstream dead("127.0.0.1");
  AnsweringUpstream alive("127.0.0.2", dead.port());
  DnsServerConfig config = local_config();
  config.upstream_port = dead.port();
  config.upstreams = [] {
    return std::vector<std::string>{"127.0.0.1", "not an address", "127.0.0.2"};
  };
  config.upstream_timeout = 300ms;
  DnsServer server(config);
  auto start = Clock::now();
  auto r = ask_udp(server.port(), "example.org");
  ASSERT_TRUE(r);
  EXPECT_GE(millis_since(start), 250);  // the first upstream had its time
  EXPECT_EQ(r->rcode, dns::kNoError);
  ASSERT_EQ(r->a.size(), 1u);
  EXPECT_EQ(format_ipv4(r->a[0]), "192.0.2.7");
  OwnedFd c = tcp_connect(server.port());
  std::string q = dns::frame(dns::build_query(9, "example.org", dns::kTypeA));
  ::send(c.fd, q.data(), q.size(), MSG_NOSIGNAL);
  auto over_tcp = dns::parse_reply(tcp_answer(c.fd));
  ASSERT_TRUE(over_tcp);
  EXPECT_EQ(over_tcp->id, 9);
  EXPECT_EQ(over_tcp->a.size(), 1u);
  EXPECT_EQ(dead.received(), 2);
}

TEST(DnsServer, TooManyForwardsGetServfailAtOnce) {
  SilentUpstream upstream;
  DnsServerConfig config = local_config();
  config.upstreams = [] { return std::vector<std::string>{"127.0.0.1"}; };
  config.upstream_port = upstream.port();
  config.max_forwards = 2;
  DnsServer server(config);
  OwnedFd s = socket_from("127.0.0.1", SOCK_DGRAM);
  sockaddr_in a = addr_of("127.0.0.1", server.port());
  for (std::uint16_t id = 1; id <= 3; ++id) {
    std::string q = dns::build_query(id, "example.org", dns::kTypeA);
    ::sendto(s.fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  auto r = dns::parse_reply(recv_within(s.fd, 500));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 3);
  EXPECT_EQ(r->rcode, dns::kServFail);
}

}  // namespace
}  // namespace berth::agent::network
