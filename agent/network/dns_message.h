#pragma once
// DNS messages as the embedded server sees them: parsing, building, the
// answer to one query and the TCP length framing. Pure functions with no
// sockets, so tests and the fuzzer call them directly. Every input may be
// hostile: nothing here trusts a length or a pointer it reads.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::network::dns {

inline constexpr std::uint16_t kTypeA = 1;
inline constexpr std::uint16_t kTypeAAAA = 28;
inline constexpr int kNoError = 0, kServFail = 2, kNxDomain = 3, kNotImp = 4, kRefused = 5;
// The largest message TCP framing can carry.
inline constexpr std::size_t kMaxMessage = 65535;

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
using Ipv6Bytes = std::array<std::uint8_t, 16>;  // network order
// A response to `msg` (its question copied) with A records for `ips`.
std::string build_response(std::string_view msg, const Query& q, int rcode,
                           const std::vector<std::uint32_t>& ips, std::uint32_t ttl = 600);
// The same with AAAA records.
std::string build_response6(std::string_view msg, const Query& q, int rcode,
                            const std::vector<Ipv6Bytes>& ips, std::uint32_t ttl = 600);
// A standard recursive query (for tests and forwarding checks).
std::string build_query(std::uint16_t id, const std::string& name, std::uint16_t type);

struct Reply {
  std::uint16_t id = 0;
  int rcode = 0;
  bool truncated = false;
  std::vector<std::uint32_t> a;  // A records of the answer section
  std::vector<Ipv6Bytes> aaaa;   // AAAA records
};
std::optional<Reply> parse_reply(std::string_view msg);

// The addresses of a name on the network.
struct Addresses {
  std::vector<std::uint32_t> v4;
  std::vector<Ipv6Bytes> v6;
};
// The addresses of `name` (lowercase, no trailing dot) as the container at
// `client` (host order) sees it: its links come first; nullopt when it is
// not a name on the network (then the query is forwarded).
using NameLookup =
    std::function<std::optional<Addresses>(const std::string& name, std::uint32_t client)>;

// What the server does with one message from a client.
struct Verdict {
  enum class Action { Ignore, Reply, Forward };
  Action action = Action::Ignore;
  // Reply: the answer. Forward: the SERVFAIL to send when no upstream answers.
  std::string reply;
};
// Names on the network are answered here (A and AAAA records, an empty
// answer when the name has none of that family); other well-formed queries
// are forwarded; the rest is ignored.
Verdict answer(std::string_view msg, const NameLookup& lookup, std::uint32_t client = 0);

// True when `reply` (from an upstream) is a response to `query`: the same id
// and the same question.
bool answers(std::string_view query, std::string_view reply);

// TCP carries each message after its length (2 bytes, big endian).
std::string frame(std::string_view msg);  // msg.size() <= kMaxMessage
// Takes the first complete message off the front of `stream`; nullopt while
// it is incomplete.
std::optional<std::string> unframe(std::string& stream);

}  // namespace berth::agent::network::dns
