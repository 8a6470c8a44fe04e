#pragma once
// DNS messages as the embedded server sees them: parsing, building, the
// answer to one query and the TCP length framing. Pure functions with no
// sockets, so tests and the fuzzer call them directly. Every input may be
// hostile: nothing here trusts a length or a pointer it reads.
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

// The addresses of `name` (lowercase, no trailing dot) when it is a name on
// the network; nullopt when it is not (then the query is forwarded).
using NameLookup =
    std::function<std::optional<std::vector<std::uint32_t>>(const std::string& name)>;

// What the server does with one message from a client.
struct Verdict {
  enum class Action { Ignore, Reply, Forward };
  Action action = Action::Ignore;
  // Reply: the answer. Forward: the SERVFAIL to send when no upstream answers.
  std::string reply;
};
// Names on the network are answered here (A records, an empty answer for
// AAAA); other well-formed queries are forwarded; the rest is ignored.
Verdict answer(std::string_view msg, const NameLookup& lookup);

// True when `reply` (from an upstream) is a response to `query`: the same id
// and the same question.
bool answers(std::string_view query, std::string_view reply);

// TCP carries each message after its length (2 bytes, big endian).
std::string frame(std::string_view msg);  // msg.size() <= kMaxMessage
// Takes the first complete message off the front of `stream`; nullopt while
// it is incomplete.
std::optional<std::string> unframe(std::string& stream);

}  // namespace berth::agent::network::dns
