#include "agent/network/etcd_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <mutex>
#include <nlohmann/json.hpp>

namespace berth::agent::network {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using nlohmann::json;

namespace {

// --- wire helpers ---

std::string b64_encode(std::string_view data) {
  static constexpr char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(data[i]) << 16) |
                 (static_cast<unsigned char>(data[i + 1]) << 8) | static_cast<unsigned char>(data[i + 2]);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += kTable[v & 63];
  }
  if (i + 1 == data.size()) {
    unsigned v = static_cast<unsigned char>(data[i]) << 16;
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    unsigned v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string b64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    int v = value(c);
    if (v < 0) throw EtcdError("etcd sent malformed base64");
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// int64 fields come as JSON strings ("12"); absent means 0.
std::int64_t i64(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

std::uint64_t u64(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_unsigned()) return it->get<std::uint64_t>();
  if (it->is_string()) {
    try {
      return std::stoull(it->get<std::string>());
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

KeyValue kv_of(const json& j) {
  KeyValue kv;
  kv.key = b64_decode(j.value("key", ""));
  kv.value = b64_decode(j.value("value", ""));
  kv.create_revision = i64(j, "create_revision");
  kv.mod_revision = i64(j, "mod_revision");
  kv.version = i64(j, "version");
  kv.lease = i64(j, "lease");
  return kv;
}

RangeResult range_of(const json& j) {
  RangeResult r;
  if (j.contains("header")) r.revision = i64(j["header"], "revision");
  if (auto it = j.find("kvs"); it != j.end() && it->is_array())
    for (const json& kv : *it) r.kvs.push_back(kv_of(kv));
  r.count = i64(j, "count");
  r.more = j.value("more", false);
  return r;
}

json range_request(const std::string& key, const RangeOptions& o) {
  json j = {{"key", b64_encode(key)}};
  if (!o.range_end.empty()) j["range_end"] = b64_encode(o.range_end);
  if (o.revision) j["revision"] = o.revision;
  if (o.limit) j["limit"] = o.limit;
  if (o.keys_only) j["keys_only"] = true;
  if (o.count_only) j["count_only"] = true;
  if (o.serializable) j["serializable"] = true;
  return j;
}

json op_json(const TxnOp& op) {
  switch (op.kind) {
    case TxnOp::Kind::Put: {
      json p = {{"key", b64_encode(op.key)}, {"value", b64_encode(op.value)}};
      if (op.lease) p["lease"] = op.lease;
      return {{"request_put", p}};
    }
    case TxnOp::Kind::Delete: {
      json d = {{"key", b64_encode(op.key)}};
      if (!op.range_end.empty()) d["range_end"] = b64_encode(op.range_end);
      return {{"request_delete_range", d}};
    }
    case TxnOp::Kind::Range: {
      RangeOptions o;
      o.range_end = op.range_end;
      return {{"request_range", range_request(op.key, o)}};
    }
  }
  return nullptr;
}

json compare_json(const Compare& c) {
  static constexpr const char* kTargets[] = {"VERSION", "CREATE", "MOD", "VALUE"};
  static constexpr const char* kResults[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
  json j = {{"key", b64_encode(c.key)},
            {"target", kTargets[static_cast<int>(c.target)]},
            {"result", kResults[static_cast<int>(c.result)]}};
  if (!c.range_end.empty()) j["range_end"] = b64_encode(c.range_end);
  switch (c.target) {
    case Compare::Target::Version: j["version"] = c.number; break;
    case Compare::Target::Create: j["create_revision"] = c.number; break;
    case Compare::Target::Mod: j["mod_revision"] = c.number; break;
    case Compare::Target::Value: j["value"] = b64_encode(c.value); break;
  }
  return j;
}

EtcdMember member_of(const json& j) {
  EtcdMember m;
  m.id = u64(j, "ID");
  m.name = j.value("name", "");
  if (auto it = j.find("peerURLs"); it != j.end() && it->is_array())
    for (const json& u : *it) m.peer_urls.push_back(u.get<std::string>());
  if (auto it = j.find("clientURLs"); it != j.end() && it->is_array())
    for (const json& u : *it) m.client_urls.push_back(u.get<std::string>());
  m.learner = j.value("isLearner", false);
  return m;
}

// Splits a stream of concatenated JSON objects (the gateway writes one per
// message, newline separated) into whole objects.
class JsonStream {
 public:
  void feed(const char* data, std::size_t n) { buf_.append(data, n); }
  std::optional<json> next() {
    std::size_t start = buf_.find('{');
    if (start == std::string::npos) {
      buf_.clear();
      return std::nullopt;
    }
    int depth = 0;
    bool in_string = false, escape = false;
    for (std::size_t i = start; i < buf_.size(); ++i) {
      char c = buf_[i];
      if (in_string) {
        if (escape) escape = false;
        else if (c == '\\') escape = true;
        else if (c == '"') in_string = false;
        continue;
      }
      if (c == '"') in_string = true;
      else if (c == '{') ++depth;
      else if (c == '}' && --depth == 0) {
        std::string text = buf_.substr(start, i + 1 - start);
        buf_.erase(0, i + 1);
        json j = json::parse(text, nullptr, false);
        if (j.is_discarded()) throw EtcdError("etcd sent malformed JSON in a stream");
        return j;
      }
    }
    return std::nullopt;
  }

 private:
  std::string buf_;
};

// --- transport ---

struct Endpoint {
  std::string url;  // as configured
  std::string host, port;
};

Endpoint parse_endpoint(const std::string& url) {
  Endpoint e;
  e.url = url;
  std::string rest = url;
  if (rest.starts_with("https://")) rest = rest.substr(8);
  else throw std::runtime_error("etcd endpoint " + url + " is not an https:// URL");
  rest = rest.substr(0, rest.find('/'));
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos) throw std::runtime_error("bad etcd endpoint " + url);
    e.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') e.port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    e.host = rest.substr(0, colon);
    if (colon != std::string::npos) e.port = rest.substr(colon + 1);
  }
  if (e.port.empty()) e.port = "2379";
  if (e.host.empty()) throw std::runtime_error("bad etcd endpoint " + url);
  return e;
}

// The endpoint could not be used at all (refused, timeout, TLS, broken stream).
struct TransportFailure {
  std::string reason;
  bool timeout = false;
  bool connected = false;  // the request was on an established connection
};

struct Reply {
  unsigned status = 0;
  std::string body;
};

bool is_ip(const std::string& host) {
  in6_addr a{};
  return ::inet_pton(AF_INET, host.c_str(), &a) == 1 || ::inet_pton(AF_INET6, host.c_str(), &a) == 1;
}

// One HTTPS connection with its own io_context: synchronous calls run the
// context until the operation ends or its time is up.
class Connection {
 public:
  Connection(ssl::context& ctx, const Endpoint& ep) : ep_(ep), stream_(ioc_, ctx) {}

  void connect(std::chrono::milliseconds timeout) {
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    auto results = resolver.resolve(ep_.host, ep_.port, ec);
    if (ec) throw TransportFailure{"lookup " + ep_.host + ": " + ec.message()};
    ec = wait(timeout, [&](auto handler) {
      beast::get_lowest_layer(stream_).async_connect(
          results, [handler](beast::error_code e, const tcp::endpoint&) { handler(e, 0); });
    });
    if (ec) throw failure("dial", ec, false);
    stream_.set_verify_mode(ssl::verify_peer);
    stream_.set_verify_callback(ssl::host_name_verification(ep_.host));
    if (!is_ip(ep_.host)) SSL_set_tlsext_host_name(stream_.native_handle(), ep_.host.c_str());
    ec = wait(timeout, [&](auto handler) { stream_.async_handshake(ssl::stream_base::client, handler); });
    if (ec) throw failure("tls handshake", ec, false);
    connected_ = true;
  }

  Reply request(const std::string& target, const std::string& body, std::chrono::milliseconds timeout) {
    send(target, body, timeout);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    beast::error_code ec = wait(timeout, [&](auto handler) { http::async_read(stream_, buffer, parser, handler); });
    if (ec) throw failure("read", ec, true);
    reusable_ = parser.keep_alive();
    return {parser.get().result_int(), parser.get().body()};
  }

  // For a streaming response: sends the request and reads the header.
  unsigned open_stream(const std::string& target, const std::string& body, std::chrono::milliseconds timeout) {
    send(target, body, timeout);
    stream_parser_.emplace();
    stream_parser_->body_limit(boost::none);
    beast::error_code ec = wait(timeout, [&](auto handler) {
      http::async_read_header(stream_, stream_buffer_, *stream_parser_, handler);
    });
    if (ec) throw failure("read", ec, true);
    reusable_ = false;
    // A dead peer is noticed by TCP keepalive (about 15 s) even when idle.
    int fd = beast::get_lowest_layer(stream_).socket().native_handle();
    int one = 1, idle = 6, interval = 3, count = 3;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    return stream_parser_->get().result_int();
  }

  // Body bytes of the open stream into `out`; false when none came within
  // `wait` (the read stays pending for the next call). Throws
  // TransportFailure when the stream ends or breaks.
  bool read_stream(std::string& out, std::chrono::milliseconds wait_for) {
    if (!reading_) {
      if (stream_parser_->is_done()) throw TransportFailure{"stream ended", false, true};
      chunk_.resize(64 * 1024);
      stream_parser_->get().body().data = chunk_.data();
      stream_parser_->get().body().size = chunk_.size();
      read_done_ = false;
      reading_ = true;
      beast::get_lowest_layer(stream_).expires_never();
      http::async_read_some(stream_, stream_buffer_, *stream_parser_,
                            [this](beast::error_code ec, std::size_t) {
                              read_ec_ = ec;
                              read_done_ = true;
                            });
    }
    ioc_.restart();
    ioc_.run_for(wait_for);
    if (!read_done_) return false;
    reading_ = false;
    beast::error_code ec = read_ec_;
    if (ec == http::error::need_buffer) ec = {};
    std::size_t n = chunk_.size() - stream_parser_->get().body().size;
    out.append(chunk_.data(), n);
    if (ec) throw failure("read", ec, true);
    if (n == 0 && stream_parser_->is_done()) throw TransportFailure{"stream ended", false, true};
    return true;
  }

  bool reusable() const { return reusable_; }
  bool connected() const { return connected_; }

  // Safe from another thread: unblocks a pending read.
  void shutdown() {
    int fd = beast::get_lowest_layer(stream_).socket().native_handle();
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  template <class Start>
  beast::error_code wait(std::chrono::milliseconds timeout, Start&& start) {
    beast::error_code result = asio::error::would_block;
    beast::get_lowest_layer(stream_).expires_after(timeout);
    start([&result](beast::error_code ec, std::size_t = 0) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  TransportFailure failure(const std::string& what, const beast::error_code& ec, bool connected) {
    bool timeout = ec == beast::error::timeout;
    std::string reason = timeout ? "i/o timeout" : ec.message();
    if (ec == asio::error::connection_refused) reason = "connection refused";
    reusable_ = false;
    return {what + ": " + reason, timeout, connected};
  }

  void send(const std::string& target, const std::string& body, std::chrono::milliseconds timeout) {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, ep_.host + ":" + ep_.port);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::user_agent, "berth-agent");
    req.body() = body;
    req.prepare_payload();
    beast::error_code ec = wait(timeout, [&](auto handler) { http::async_write(stream_, req, handler); });
    if (ec) throw failure("write", ec, true);
  }

  Endpoint ep_;
  asio::io_context ioc_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  bool reusable_ = false, connected_ = false;
  // The open stream, when there is one.
  std::optional<http::response_parser<http::buffer_body>> stream_parser_;
  beast::flat_buffer stream_buffer_;
  std::vector<char> chunk_;
  bool reading_ = false;
  bool read_done_ = false;
  beast::error_code read_ec_;
};

bool unavailable_error(const std::string& message, std::int64_t code) {
  // gRPC Unavailable (14) and DeadlineExceeded (4), and etcd's own words.
  if (code == 14 || code == 4) return true;
  for (const char* words : {"no leader", "request timed out", "leader changed", "timed out",
                            "not capable", "too many requests", "stopped"})
    if (message.find(words) != std::string::npos) return true;
  return false;
}

}  // namespace

// --- EtcdClient ---

struct EtcdClient::Impl {
  EtcdOptions options;
  std::vector<Endpoint> endpoints;
  ssl::context ctx{ssl::context::tls_client};
  std::mutex pool_mutex;
  std::vector<std::vector<std::unique_ptr<Connection>>> idle;
  std::atomic<std::size_t> preferred{0};

  explicit Impl(EtcdOptions o) : options(std::move(o)) {
    if (options.endpoints.empty()) throw std::runtime_error("no etcd endpoints");
    for (const std::string& url : options.endpoints) endpoints.push_back(parse_endpoint(url));
    idle.resize(endpoints.size());
    beast::error_code ec;
    ctx.load_verify_file(options.tls.ca, ec);
    if (ec) throw std::runtime_error("cluster CA " + options.tls.ca + ": " + ec.message());
    ctx.use_certificate_chain_file(options.tls.cert, ec);
    if (ec) throw std::runtime_error("cluster certificate " + options.tls.cert + ": " + ec.message());
    ctx.use_private_key_file(options.tls.key, ssl::context::pem, ec);
    if (ec) throw std::runtime_error("cluster key " + options.tls.key + ": " + ec.message());
  }

  std::unique_ptr<Connection> take(std::size_t index, bool& pooled) {
    {
      std::lock_guard lock(pool_mutex);
      auto& list = idle[index];
      if (!list.empty()) {
        auto c = std::move(list.back());
        list.pop_back();
        pooled = true;
        return c;
      }
    }
    pooled = false;
    auto c = std::make_unique<Connection>(ctx, endpoints[index]);
    c->connect(options.connect_timeout);
    return c;
  }

  void give_back(std::size_t index, std::unique_ptr<Connection> c) {
    if (!c->reusable()) return;
    std::lock_guard lock(pool_mutex);
    if (idle[index].size() < 4) idle[index].push_back(std::move(c));
  }

  Reply exchange(std::size_t index, const std::string& target, const std::string& body,
                 std::chrono::milliseconds timeout) {
    for (int attempt = 0;; ++attempt) {
      bool pooled = false;
      auto c = take(index, pooled);
      try {
        Reply r = c->request(target, body, timeout);
        give_back(index, std::move(c));
        return r;
      } catch (const TransportFailure& f) {
        // A pooled connection the server closed meanwhile: once more, fresh.
        if (pooled && attempt == 0 && !f.timeout) continue;
        throw;
      }
    }
  }

  // Asks a member that did not answer in time whether it has a leader.
  std::string quorum_reason(std::size_t index) {
    try {
      Connection c(ctx, endpoints[index]);
      c.connect(std::chrono::milliseconds(1000));
      Reply r = c.request("/v3/maintenance/status", "{}", std::chrono::milliseconds(1000));
      json j = json::parse(r.body, nullptr, false);
      if (r.status == 200 && !j.is_discarded() && u64(j, "leader") == 0)
        return "no quorum: " + endpoints[index].url + " has no leader";
    } catch (const TransportFailure&) {
    }
    return "";
  }

  json call(const std::string& path, const json& body) {
    const std::string text = body.dump();
    std::vector<std::string> unreachable, silent, no_quorum;
    const std::size_t n = endpoints.size();
    const std::size_t start = preferred.load() % n;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t index = (start + i) % n;
      const std::string& url = endpoints[index].url;
      Reply r;
      try {
        r = exchange(index, path, text, options.request_timeout);
      } catch (const TransportFailure& f) {
        if (f.connected && f.timeout) {
          std::string q = quorum_reason(index);
          if (!q.empty()) {
            no_quorum.push_back(q);
            continue;
          }
          silent.push_back(url);  // connected, but no answer: a member still electing, or overloaded
          continue;
        }
        unreachable.push_back(url + " (" + f.reason + ")");
        continue;
      }
      json j = json::parse(r.body, nullptr, false);
      if (r.status == 200 && !j.is_discarded() && j.is_object()) {
        preferred = index;
        return j;
      }
      std::string message = "HTTP " + std::to_string(r.status);
      std::int64_t code = 0;
      if (!j.is_discarded() && j.is_object()) {
        if (j.contains("error") && j["error"].is_string()) message = j["error"].get<std::string>();
        else if (j.contains("message") && j["message"].is_string()) message = j["message"].get<std::string>();
        code = i64(j, "code");
      }
      if (unavailable_error(message, code) || r.status == 503) {
        no_quorum.push_back("no quorum: " + url + " says \"" + message + "\"");
        continue;
      }
      throw EtcdError("etcd " + path + ": " + message);
    }
    std::string reason;
    for (const std::string& q : no_quorum) reason += (reason.empty() ? "" : "; ") + q;
    if (!silent.empty()) {
      reason += (reason.empty() ? "" : "; ") + std::string("no answer within ") +
                std::to_string(options.request_timeout.count()) + " ms from ";
      for (std::size_t i = 0; i < silent.size(); ++i) reason += (i ? ", " : "") + silent[i];
    }
    if (!unreachable.empty()) {
      reason += (reason.empty() ? "" : "; ") + std::string("cannot reach ");
      for (std::size_t i = 0; i < unreachable.size(); ++i)
        reason += (i ? ", " : "") + unreachable[i];
    }
    throw StoreUnavailable(reason);
  }
};

EtcdClient::EtcdClient(EtcdOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
EtcdClient::~EtcdClient() = default;

const EtcdOptions& EtcdClient::options() const { return impl_->options; }

RangeResult EtcdClient::range(const std::string& key, const RangeOptions& options) {
  return range_of(impl_->call("/v3/kv/range", range_request(key, options)));
}

std::optional<KeyValue> EtcdClient::get(const std::string& key) {
  RangeResult r = range(key);
  if (r.kvs.empty()) return std::nullopt;
  return r.kvs.front();
}

RangeResult EtcdClient::get_prefix(const std::string& prefix) {
  RangeOptions o;
  o.range_end = prefix_end(prefix);
  return range(prefix, o);
}

std::int64_t EtcdClient::put(const std::string& key, const std::string& value, std::int64_t lease) {
  json body = {{"key", b64_encode(key)}, {"value", b64_encode(value)}};
  if (lease) body["lease"] = lease;
  json r = impl_->call("/v3/kv/put", body);
  return r.contains("header") ? i64(r["header"], "revision") : 0;
}

std::int64_t EtcdClient::del(const std::string& key, const std::string& range_end) {
  json body = {{"key", b64_encode(key)}};
  if (!range_end.empty()) body["range_end"] = b64_encode(range_end);
  return i64(impl_->call("/v3/kv/deleterange", body), "deleted");
}

TxnResult EtcdClient::txn(const std::vector<Compare>& compares, const std::vector<TxnOp>& success,
                          const std::vector<TxnOp>& failure) {
  json body = {{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const Compare& c : compares) body["compare"].push_back(compare_json(c));
  for (const TxnOp& op : success) body["success"].push_back(op_json(op));
  for (const TxnOp& op : failure) body["failure"].push_back(op_json(op));
  json r = impl_->call("/v3/kv/txn", body);
  TxnResult out;
  out.succeeded = r.value("succeeded", false);
  if (r.contains("header")) out.revision = i64(r["header"], "revision");
  if (auto it = r.find("responses"); it != r.end() && it->is_array())
    for (const json& resp : *it)
      if (resp.contains("response_range")) {
        RangeResult rr = range_of(resp["response_range"]);
        if (!rr.revision) rr.revision = out.revision;
        out.ranges.push_back(std::move(rr));
      }
  return out;
}

std::int64_t EtcdClient::lease_grant(std::int64_t ttl_seconds) {
  json r = impl_->call("/v3/lease/grant", {{"TTL", ttl_seconds}});
  if (r.contains("error") && r["error"].is_string() && !r["error"].get<std::string>().empty())
    throw EtcdError("etcd lease grant: " + r["error"].get<std::string>());
  return i64(r, "ID");
}

std::int64_t EtcdClient::lease_keepalive(std::int64_t id) {
  json r = impl_->call("/v3/lease/keepalive", {{"ID", id}});
  const json& result = r.contains("result") ? r["result"] : r;
  return i64(result, "TTL");
}

void EtcdClient::lease_revoke(std::int64_t id) { impl_->call("/v3/lease/revoke", {{"ID", id}}); }

std::vector<EtcdMember> EtcdClient::member_list() {
  json r = impl_->call("/v3/cluster/member/list", json::object());
  std::vector<EtcdMember> out;
  if (auto it = r.find("members"); it != r.end() && it->is_array())
    for (const json& m : *it) out.push_back(member_of(m));
  return out;
}

EtcdMember EtcdClient::member_add(const std::vector<std::string>& peer_urls, bool learner) {
  json body = {{"peerURLs", peer_urls}};
  if (learner) body["isLearner"] = true;
  json r = impl_->call("/v3/cluster/member/add", body);
  if (!r.contains("member")) throw EtcdError("etcd member add: no member in the answer");
  return member_of(r["member"]);
}

void EtcdClient::member_promote(std::uint64_t id) {
  impl_->call("/v3/cluster/member/promote", {{"ID", std::to_string(id)}});
}

void EtcdClient::member_remove(std::uint64_t id) {
  impl_->call("/v3/cluster/member/remove", {{"ID", std::to_string(id)}});
}

// --- watch ---

struct EtcdWatch::Impl {
  std::unique_ptr<Connection> conn;
  std::string url;
  JsonStream stream;
  std::atomic<bool> closed{false};
  std::mutex close_mutex;

  WatchBatch batch_of(const json& result) {
    if (result.value("canceled", false)) {
      std::int64_t compact = i64(result, "compact_revision");
      if (compact) throw WatchCompacted(compact);
      throw StoreUnavailable("the watch on " + url + " was cancelled: " +
                             result.value("cancel_reason", std::string("no reason given")));
    }
    if (std::int64_t compact = i64(result, "compact_revision")) throw WatchCompacted(compact);
    WatchBatch b;
    if (result.contains("header")) b.revision = i64(result["header"], "revision");
    if (auto it = result.find("events"); it != result.end() && it->is_array()) {
      for (const json& e : *it) {
        WatchEvent ev;
        ev.type = e.value("type", "PUT") == "DELETE" ? EventType::Delete : EventType::Put;
        if (e.contains("kv")) ev.kv = kv_of(e["kv"]);
        b.events.push_back(std::move(ev));
      }
    }
    return b;
  }
};

EtcdWatch::EtcdWatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdWatch::~EtcdWatch() = default;

std::optional<WatchBatch> EtcdWatch::next(std::chrono::milliseconds wait) {
  Impl& w = *impl_;
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    if (w.closed) throw StoreUnavailable("the watch on " + w.url + " was closed");
    while (auto j = w.stream.next()) {
      if (j->contains("error")) {
        const json& e = (*j)["error"];
        std::string message = e.is_object() ? e.value("message", e.value("error", std::string("error")))
                                            : e.dump();
        throw StoreUnavailable("the watch on " + w.url + " failed: " + message);
      }
      const json& result = j->contains("result") ? (*j)["result"] : *j;
      WatchBatch b = w.batch_of(result);
      if (!b.events.empty()) return b;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return std::nullopt;
    std::string data;
    try {
      if (!w.conn->read_stream(
              data, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now)))
        return std::nullopt;
    } catch (const TransportFailure& f) {
      throw StoreUnavailable("the watch on " + w.url + " broke: " + f.reason);
    }
    w.stream.feed(data.data(), data.size());
  }
}

void EtcdWatch::close() {
  if (impl_->closed.exchange(true)) return;
  impl_->conn->shutdown();
}

std::unique_ptr<EtcdWatch> EtcdClient::watch(const std::string& key, const std::string& range_end,
                                             std::int64_t start_revision) {
  json create = {{"key", b64_encode(key)}};
  if (!range_end.empty()) create["range_end"] = b64_encode(range_end);
  if (start_revision) create["start_revision"] = start_revision;
  const std::string body = json{{"create_request", create}}.dump();
  std::vector<std::string> unreachable;
  const std::size_t n = impl_->endpoints.size();
  const std::size_t start = impl_->preferred.load() % n;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t index = (start + i) % n;
    const Endpoint& ep = impl_->endpoints[index];
    try {
      auto c = std::make_unique<Connection>(impl_->ctx, ep);
      c->connect(impl_->options.connect_timeout);
      unsigned status = c->open_stream("/v3/watch", body, impl_->options.request_timeout);
      if (status != 200) {
        unreachable.push_back(ep.url + " (HTTP " + std::to_string(status) + ")");
        continue;
      }
      auto w = std::make_unique<EtcdWatch::Impl>();
      w->conn = std::move(c);
      w->url = ep.url;
      return std::unique_ptr<EtcdWatch>(new EtcdWatch(std::move(w)));
    } catch (const TransportFailure& f) {
      unreachable.push_back(ep.url + " (" + f.reason + ")");
    }
  }
  std::string reason = "cannot reach ";
  for (std::size_t i = 0; i < unreachable.size(); ++i) reason += (i ? ", " : "") + unreachable[i];
  throw StoreUnavailable(reason);
}

// --- helpers ---

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

Compare Compare::absent(std::string key) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::Create;
  c.result = Result::Equal;
  c.number = 0;
  return c;
}

Compare Compare::exists(std::string key) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::Version;
  c.result = Result::Greater;
  c.number = 0;
  return c;
}

Compare Compare::value_is(std::string key, std::string value) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::Value;
  c.result = Result::Equal;
  c.value = std::move(value);
  return c;
}

Compare Compare::mod_revision_is(std::string key, std::int64_t revision) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::Mod;
  c.result = Result::Equal;
  c.number = revision;
  return c;
}

Compare Compare::prefix_empty(const std::string& prefix) {
  Compare c;
  c.key = prefix;
  c.range_end = prefix_end(prefix);
  c.target = Target::Version;
  c.result = Result::Equal;
  c.number = 0;
  return c;
}

Compare Compare::prefix_unchanged_since(const std::string& prefix, std::int64_t revision) {
  Compare c;
  c.key = prefix;
  c.range_end = prefix_end(prefix);
  c.target = Target::Mod;
  c.result = Result::Less;
  c.number = revision + 1;
  return c;
}

TxnOp TxnOp::put(std::string key, std::string value, std::int64_t lease) {
  TxnOp op;
  op.kind = Kind::Put;
  op.key = std::move(key);
  op.value = std::move(value);
  op.lease = lease;
  return op;
}

TxnOp TxnOp::del(std::string key) {
  TxnOp op;
  op.kind = Kind::Delete;
  op.key = std::move(key);
  return op;
}

TxnOp TxnOp::del_prefix(const std::string& prefix) {
  TxnOp op;
  op.kind = Kind::Delete;
  op.key = prefix;
  op.range_end = prefix_end(prefix);
  return op;
}

TxnOp TxnOp::get(std::string key) {
  TxnOp op;
  op.kind = Kind::Range;
  op.key = std::move(key);
  return op;
}

TxnOp TxnOp::get_prefix(const std::string& prefix) {
  TxnOp op;
  op.kind = Kind::Range;
  op.key = prefix;
  op.range_end = prefix_end(prefix);
  return op;
}

}  // namespace berth::agent::network
