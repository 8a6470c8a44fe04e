#include "agent/network/dns_message.h"

#include <cctype>
#include <sstream>

namespace berth::agent::network::dns {
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

namespace {
// A response with one record of `type` per entry of `rdata`.
std::string build_records(std::string_view msg, const Query& q, int rcode, std::uint16_t type,
                          const std::vector<std::string>& rdata, std::uint32_t ttl) {
  std::string out;
  put16(out, q.id);
  // QR, the query's opcode and RD, AA (we are authoritative for our names), RA.
  std::uint16_t flags = 0x8000 | (q.flags & 0x7800) | (q.flags & 0x0100) | 0x0080 |
                        static_cast<std::uint16_t>(rcode & 0xf);
  if (rcode == kNoError || rcode == kNxDomain) flags |= 0x0400;
  put16(out, flags);
  put16(out, 1);
  put16(out, static_cast<std::uint16_t>(rdata.size()));
  put16(out, 0);
  put16(out, 0);
  out.append(msg.substr(12, q.question_end - 12));
  for (const std::string& data : rdata) {
    put16(out, 0xc00c);  // the name of the question
    put16(out, type);
    put16(out, 1);
    put32(out, ttl);
    put16(out, static_cast<std::uint16_t>(data.size()));
    out += data;
  }
  return out;
}
}  // namespace

std::string build_response(std::string_view msg, const Query& q, int rcode,
                           const std::vector<std::uint32_t>& ips, std::uint32_t ttl) {
  std::vector<std::string> rdata;
  for (std::uint32_t ip : ips) {
    std::string d;
    put32(d, ip);
    rdata.push_back(std::move(d));
  }
  return build_records(msg, q, rcode, kTypeA, rdata, ttl);
}

std::string build_response6(std::string_view msg, const Query& q, int rcode,
                            const std::vector<Ipv6Bytes>& ips, std::uint32_t ttl) {
  std::vector<std::string> rdata;
  for (const Ipv6Bytes& ip : ips) rdata.emplace_back(ip.begin(), ip.end());
  return build_records(msg, q, rcode, kTypeAAAA, rdata, ttl);
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
    if (type == kTypeAAAA && len == 16) {
      Ipv6Bytes ip{};
      for (std::size_t i = 0; i < 16; ++i) ip[i] = static_cast<std::uint8_t>(m[at + i]);
      r.aaaa.push_back(ip);
    }
    at += len;
  }
  return r;
}

Verdict answer(std::string_view msg, const NameLookup& lookup, std::uint32_t client) {
  auto q = parse_query(msg);
  if (!q) return {};
  if (q->klass == 1 && (q->type == kTypeA || q->type == kTypeAAAA)) {
    if (auto ips = lookup ? lookup(q->name, client) : std::nullopt) {
      // Known here: its addresses of that family, maybe none.
      return {Verdict::Action::Reply, q->type == kTypeA
                                          ? build_response(msg, *q, kNoError, ips->v4)
                                          : build_response6(msg, *q, kNoError, ips->v6)};
    }
  }
  return {Verdict::Action::Forward, build_response(msg, *q, kServFail, {})};
}

bool answers(std::string_view query, std::string_view reply) {
  auto q = parse_query(query);
  if (!q || reply.size() < 12 || get16(reply, 0) != q->id) return false;
  if (!(get16(reply, 2) & 0x8000) || get16(reply, 4) != 1) return false;
  std::string name;
  auto end = read_name(reply, 12, name);
  if (!end || *end + 4 > reply.size()) return false;
  return name == q->name && get16(reply, *end) == q->type && get16(reply, *end + 2) == q->klass;
}

std::string frame(std::string_view msg) {
  std::string out;
  put16(out, static_cast<std::uint16_t>(msg.size()));
  out.append(msg);
  return out;
}

std::optional<std::string> unframe(std::string& stream) {
  if (stream.size() < 2) return std::nullopt;
  std::size_t len = get16(stream, 0);
  if (stream.size() < 2 + len) return std::nullopt;
  std::string msg = stream.substr(2, len);
  stream.erase(0, 2 + len);
  return msg;
}

}  // namespace berth::agent::network::dns
