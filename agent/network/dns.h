#pragma once
// The embedded DNS server of user-defined networks: answers A queries for
// (and AAAA) the names on its network and forwards everything else to the host's
// nameservers. One server per network, bound to the network's gateway
// address, serving UDP and TCP from one thread with non-blocking sockets: a
// slow or silent client or upstream never holds up anybody else. Only the
// network's own subnet is answered; other sources get no reply.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/network/dns_message.h"

namespace berth::agent::network {

struct DnsServerConfig {
  std::uint32_t ip = 0;  // where to listen (host byte order)
  std::uint16_t port = 53;  // 0: any free port (tests)
  // Who may ask: clients whose address is inside client_net/client_prefix.
  std::uint32_t client_net = 0;
  int client_prefix = 32;
  dns::NameLookup lookup;
  // Upstream nameserver addresses ("10.0.2.3"), read for every forwarded query.
  std::function<std::vector<std::string>()> upstreams;
  std::uint16_t upstream_port = 53;
  std::chrono::milliseconds upstream_timeout{2000};  // per upstream, then the next
  // A TCP client must send a whole query within this (else it is closed).
  std::chrono::milliseconds tcp_idle_timeout{5000};
  std::size_t max_tcp_clients = 32;  // past this the oldest is closed
  std::size_t max_forwards = 256;  // queries waiting on upstreams; past this SERVFAIL
};

class DnsServer {
 public:
  // Binds UDP and TCP; throws std::runtime_error when it cannot.
  explicit DnsServer(DnsServerConfig config);
  ~DnsServer();  // stops and joins the thread
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;

  std::uint16_t port() const;  // the bound port (useful with port 0)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The nameserver addresses in a resolv.conf text.
std::vector<std::string> resolv_nameservers(const std::string& text);

}  // namespace berth::agent::network
