// libFuzzer: hostile packets through the embedded DNS server's message code,
// as they arrive. The first byte picks the path:
//   0: a UDP datagram from a container (dns::answer)
//   1: a TCP stream in the 2-byte length framing, cut into reads of
//      (first byte >> 2) + 1 bytes (dns::unframe, then dns::answer)
//   2: an upstream's reply to a forwarded query (dns::answers, parse_reply)
// Must never crash, hang or leak; every answer keeps the query's id.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/network/dns_message.h"

namespace {

namespace dns = berth::agent::network::dns;

std::optional<dns::Addresses> lookup(const std::string& name, std::uint32_t) {
  if (name == "web" || name == "web.front")
    return dns::Addresses{{0xac120002, 0xac120003}, {dns::Ipv6Bytes{0xfd, 0, 0, 1}, dns::Ipv6Bytes{0xfd, 0, 0, 2}}};
  if (name == "empty") return dns::Addresses{};
  return std::nullopt;
}

void require(bool ok) {
  if (!ok) __builtin_trap();
}

void client_message(std::string_view msg) {
  dns::Verdict v = dns::answer(msg, lookup);
  if (v.action == dns::Verdict::Action::Ignore) {
    require(v.reply.empty());
    return;
  }
  // Only queries get an answer, and it carries their id with QR set.
  auto q = dns::parse_query(msg);
  require(q.has_value());
  require(v.reply.size() >= 12 && v.reply.size() <= msg.size() + 2 * 28);
  require(v.reply.compare(0, 2, msg.substr(0, 2)) == 0);
  require(static_cast<unsigned char>(v.reply[2]) & 0x80);
  // What the server would send over TCP frames and unframes to itself.
  std::string stream = dns::frame(v.reply);
  require(dns::unframe(stream) == v.reply && stream.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned mode = data[0] % 3;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0) {
    client_message(in);
  } else if (mode == 1) {
    const std::size_t chunk = (data[0] >> 2) + 1;
    std::string stream;
    for (std::size_t at = 0; at < in.size(); at += chunk) {
      stream.append(in.substr(at, chunk));
      while (auto msg = dns::unframe(stream)) client_message(*msg);
    }
    require(stream.size() < 2 + dns::kMaxMessage);
  } else {
    static const std::string query = dns::build_query(0x1234, "example.org", dns::kTypeA);
    (void)dns::answers(query, in);
    (void)dns::answers(in, in);
    if (auto reply = dns::parse_reply(in)) require(reply->a.size() <= in.size() / 14);
  }
  return 0;
}
