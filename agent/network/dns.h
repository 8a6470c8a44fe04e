#pragma once
// The embedded DNS server of user-defined networks: answers A queries for
// the names on its network and forwards everything else to the host's
// nameservers. One server (UDP and TCP, its own thread) per network, bound to
// the network's gateway address.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::network {

namespace dns {
inline constexpr std::uint16_t kTypeA = 1;
inline constexpr std::uint16_t kTypeAAAA = 28;
inline constexpr int kNoError = 0, kServFail = 2, kNxDomain = 3, kNotImp = 4;

struct Query {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;
  std::string name;  // lowercase, without the trailing dot
  std::uint16_t type = 0;
  std::uint16_t klass = 0;
  std::size_t question_end = 0;  // offset after the first question
};

// nullopt for anything that is not a well-formed query with one question.
std::optional<Query> parse_query(std::string_view msg);
// A response to `msg` (its question copied) with A records for `ips`.
std::string build_response(std::string_view msg, const Query& q, int rcode,
                           const std::vector<std::uint32_t>& ips, std::uint32_t ttl = 600);
// A standard recursive query (for tests and forwarding checks).
std::string build_query(std::uint16_t id, const std::string& name, std::uint16_t type);

struct Reply {
  std::uint16_t id = 0;
  int rcode = 0;
  bool truncated = false;
  std::vector<std::uint32_t> a;  // A records of the answer section
};
std::optional<Reply> parse_reply(std::string_view msg);
}  // namespace dns

class DnsServer {
 public:
  // The addresses of `name` (lowercase, no trailing dot) when it is a name on
  // this network; nullopt when it is not (then the query is forwarded).
  using Lookup = std::function<std::optional<std::vector<std::uint32_t>>(const std::string& name)>;
  // Upstream nameserver addresses ("10.0.2.3"), asked on port 53.
  using Upstreams = std::function<std::vector<std::string>()>;

  // Binds UDP and TCP on ip:port; throws std::runtime_error when it cannot.
  DnsServer(std::uint32_t ip, std::uint16_t port, Lookup lookup, Upstreams upstreams);
  ~DnsServer();  // stops and joins the thread
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;

  // The answer for one query message (what the thread sends back).
  std::string handle(std::string_view msg) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The nameserver addresses in a resolv.conf text.
std::vector<std::string> resolv_nameservers(const std::string& text);

}  // namespace berth::agent::network
