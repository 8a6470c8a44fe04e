#include "agent/image/http_client.h"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <memory>
#include <variant>

namespace berth::agent::image {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::string Url::authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  bool default_port = (scheme == "https" && port == "443") || (scheme == "http" && port == "80");
  return default_port ? h : h + ":" + port;
}

std::string Url::origin() const { return scheme + "://" + authority(); }

Url parse_url(std::string_view text) {
  Url u;
  auto sep = text.find("://");
  if (sep == std::string_view::npos) throw std::invalid_argument("invalid URL: " + std::string(text));
  u.scheme = std::string(text.substr(0, sep));
  for (auto& c : u.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (u.scheme != "http" && u.scheme != "https") throw std::invalid_argument("unsupported URL scheme: " + u.scheme);
  std::string_view rest = text.substr(sep + 3);
  auto slash = rest.find_first_of("/?");
  std::string_view auth = rest.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!u.target.empty() && u.target[0] == '?') u.target = "/" + u.target;
  if (auto at = auth.rfind('@'); at != std::string_view::npos) auth = auth.substr(at + 1);
  if (!auth.empty() && auth[0] == '[') {
    auto close = auth.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("invalid URL: " + std::string(text));
    u.host = std::string(auth.substr(1, close - 1));
    if (close + 1 < auth.size() && auth[close + 1] == ':') u.port = std::string(auth.substr(close + 2));
  } else {
    auto colon = auth.rfind(':');
    u.host = std::string(auth.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(auth.substr(colon + 1));
  }
  if (u.host.empty()) throw std::invalid_argument("invalid URL: " + std::string(text));
  if (u.port.empty()) u.port = u.scheme == "https" ? "443" : "80";
  return u;
}

Url resolve_url(const Url& base, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return parse_url(location);
  Url u = base;
  if (location.substr(0, 2) == "//") return parse_url(base.scheme + ":" + std::string(location));
  if (!location.empty() && location[0] == '/') {
    u.target = std::string(location);
  } else {
    std::string path = base.target.substr(0, base.target.find('?'));
    u.target = path.substr(0, path.rfind('/') + 1) + std::string(location);
  }
  return u;
}

std::string HttpResponse::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

namespace {

using Stream = std::variant<std::unique_ptr<beast::tcp_stream>, std::unique_ptr<beast::ssl_stream<beast::tcp_stream>>>;

class Exchange {
 public:
  Exchange(const HttpRequest& req, std::chrono::seconds timeout) : req_(req), timeout_(timeout) {}

  HttpResponse run(const std::function<void(const char*, std::size_t)>& sink) {
    connect();
    send();
    return receive(sink);
  }

 private:
  std::string method_word() const {
    std::string m = req_.method;
    m[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(m[0])));
    for (std::size_t i = 1; i < m.size(); ++i) m[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(m[i])));
    return m;
  }
  [[noreturn]] void fail(const std::string& what, bool tls_mismatch = false) {
    throw TransportError(method_word() + " \"" + req_.url.string() + "\": " + what, tls_mismatch);
  }
  beast::tcp_stream& lowest() {
    return std::visit([](auto& s) -> beast::tcp_stream& { return beast::get_lowest_layer(*s); }, stream_);
  }

  // Runs one async operation to completion with the timeout.
  template <class Start>
  beast::error_code wait(Start&& start) {
    beast::error_code result;
    lowest().expires_after(timeout_);
    start([&result](beast::error_code ec, std::size_t = 0) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  void connect() {
    const Url& u = req_.url;
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    auto endpoints = resolver.resolve(u.host, u.port, ec);
    if (ec) fail("dial tcp: lookup " + u.host + ": " + ec.message());
    bool tls = u.scheme == "https";
    if (tls) {
      ctx_ = std::make_unique<ssl::context>(ssl::context::tls_client);
      ctx_->set_default_verify_paths();
      for (const char* bundle : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}) {
        beast::error_code ignored;
        ctx_->load_verify_file(bundle, ignored);
      }
      if (!req_.ca_file.empty()) ctx_->load_verify_file(req_.ca_file, ec);
      ctx_->set_verify_mode(req_.verify_tls ? ssl::verify_peer : ssl::verify_none);
      auto s = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc_, *ctx_);
      if (req_.verify_tls) s->set_verify_callback(ssl::host_name_verification(u.host));
      SSL_set_tlsext_host_name(s->native_handle(), u.host.c_str());
      stream_ = std::move(s);
    } else {
      stream_ = std::make_unique<beast::tcp_stream>(ioc_);
    }
    ec = wait([&](auto handler) {
      lowest().async_connect(endpoints, [handler](beast::error_code e, const tcp::endpoint&) { handler(e); });
    });
    if (ec) {
      std::string reason = ec == beast::error::timeout ? "i/o timeout" : ec.message();
      if (ec == asio::error::connection_refused) reason = "connect: connection refused";
      fail("dial tcp " + u.authority() + ": " + reason);
    }
    if (tls) {
      auto& s = *std::get<1>(stream_);
      ec = wait([&](auto handler) { s.async_handshake(ssl::stream_base::client, handler); });
      if (ec) {
        // A plain HTTP server answers a ClientHello with "HTTP/1.x 400".
        bool mismatch = ec.category() == asio::error::get_ssl_category() &&
                        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_WRONG_VERSION_NUMBER;
        if (mismatch) fail("http: server gave HTTP response to HTTPS client", true);
        fail("tls: " + ec.message());
      }
    }
  }

  void send() {
    http::request<http::buffer_body> req;
    req.method_string(req_.method);
    req.target(req_.url.target);
    req.version(11);
    req.set(http::field::host, req_.url.authority());
    req.set(http::field::user_agent, "docker/27.0 berth-agent");
    req.set(http::field::connection, "close");
    for (const auto& [k, v] : req_.headers) req.set(k, v);
    bool has_body = static_cast<bool>(req_.body);
    if (has_body || req_.method == "POST" || req_.method == "PUT" || req_.method == "PATCH")
      req.content_length(req_.body_size);
    req.body().data = nullptr;
    req.body().more = has_body && req_.body_size > 0;
    http::request_serializer<http::buffer_body> sr{req};
    auto write_some = [&]() {
      return std::visit([&](auto& s) {
        return wait([&](auto handler) { http::async_write(*s, sr, handler); });
      }, stream_);
    };
    auto write_header = [&]() {
      return std::visit([&](auto& s) {
        return wait([&](auto handler) { http::async_write_header(*s, sr, handler); });
      }, stream_);
    };
    beast::error_code ec = write_header();
    if (ec) fail(ec.message());
    if (!req.body().more) {
      ec = write_some();
      if (ec && ec != http::error::need_buffer) fail(ec.message());
      return;
    }
    std::vector<char> buf(256 * 1024);
    std::uint64_t sent = 0;
    while (sent < req_.body_size) {
      std::size_t n = req_.body(buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), req_.body_size - sent)));
      if (n == 0) throw std::runtime_error("request body ended early");
      sent += n;
      req.body().data = buf.data();
      req.body().size = n;
      req.body().more = true;
      ec = write_some();
      if (ec && ec != http::error::need_buffer) fail(ec.message());
    }
    req.body().data = nullptr;
    req.body().size = 0;
    req.body().more = false;
    ec = write_some();
    if (ec && ec != http::error::need_buffer) fail(ec.message());
  }

  HttpResponse receive(const std::function<void(const char*, std::size_t)>& sink) {
    HttpResponse out;
    out.url = req_.url;
    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    if (req_.method == "HEAD") parser.skip(true);
    auto read = [&](bool header_only) {
      return std::visit([&](auto& s) {
        return wait([&](auto handler) {
          if (header_only)
            http::async_read_header(*s, buffer, parser, handler);
          else
            http::async_read(*s, buffer, parser, handler);
        });
      }, stream_);
    };
    beast::error_code ec = read(true);
    if (ec) fail(ec.message());
    const auto& msg = parser.get();
    out.status = msg.result_int();
    for (const auto& field : msg) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "www-authenticate") out.www_authenticate.emplace_back(field.value());
      out.headers[name] = std::string(field.value());
    }
    bool to_sink = sink && out.status >= 200 && out.status < 300;
    std::vector<char> chunk(256 * 1024);
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      ec = read(false);
      if (ec == http::error::need_buffer) ec = {};
      if (ec && ec != http::error::end_of_stream) fail(ec.message());
      std::size_t n = chunk.size() - parser.get().body().size;
      if (to_sink) {
        if (n) sink(chunk.data(), n);
      } else if (out.body.size() < (1u << 20)) {
        out.body.append(chunk.data(), n);
      }
      if (ec == http::error::end_of_stream) break;
    }
    return out;
  }

  const HttpRequest& req_;
  std::chrono::seconds timeout_;
  asio::io_context ioc_;
  std::unique_ptr<ssl::context> ctx_;
  Stream stream_;
};

}  // namespace

HttpResponse http_request(HttpRequest request, const std::function<void(const char*, std::size_t)>& sink,
                          std::chrono::seconds timeout) {
  for (int hop = 0;; ++hop) {
    HttpResponse resp;
    {
      Exchange ex(request, timeout);
      resp = ex.run(sink);
    }
    bool redirect = resp.status == 301 || resp.status == 302 || resp.status == 303 || resp.status == 307 ||
                    resp.status == 308;
    if (!redirect || hop >= 5 || resp.header("location").empty() ||
        (request.method != "GET" && request.method != "HEAD"))
      return resp;
    Url next = resolve_url(request.url, resp.header("location"));
    if (next.origin() != request.url.origin()) {
      std::erase_if(request.headers, [](const auto& h) {
        std::string n = h.first;
        for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return n == "authorization";
      });
    }
    request.url = next;
  }
}

std::string base64_encode(std::string_view data) {
  static constexpr char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  while (i + 2 < data.size()) {
    unsigned v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8) |
                 static_cast<unsigned char>(data[i + 2]);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += kTable[v & 63];
    i += 3;
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

std::optional<std::string> base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  while (!text.empty() && (text.back() == '=' || text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace berth::agent::image
