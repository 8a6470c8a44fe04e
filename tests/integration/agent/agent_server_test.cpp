// The HTTPS transport in-process, with short limits: keep-alive, body and
// header limits, the slow-client timeout, bad requests and stop().
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <thread>

#include "agent/api/api.h"
#include "agent/log.h"
#include "agent/server.h"
#include "agent/tls_context.h"
#include "test_support.h"

namespace berth::agent::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

api::Api make_api() {
  api::Router r;
  r.add("GET", "/hello",
        [](const api::Request& req) { return api::Response::text(200, "hello " + req.client_cn); });
  r.add("POST", "/echo-size", [](const api::Request& req) {
    return api::Response::text(200, std::to_string(req.body.size()));
  });
  r.add(
      "POST", "/upload",
      [](const api::Request& req) {
        std::size_t total = 0;
        char buf[4096];
        while (std::size_t n = req.body_reader->read(buf, sizeof buf)) total += n;
        return api::Response::text(200, std::to_string(total));
      },
      api::RouteOptions{.stream_body = true});
  r.add("GET", "/count", [](const api::Request&) {
    api::Response res;
    res.stream = [](api::StreamWriter& w) {
      for (int i = 1; i <= 3; ++i) w.write(std::to_string(i) + "\n");
    };
    return res;
  });
  // Echoes what the client sends, prefixed, until the client half-closes.
  r.add("POST", "/attach", [](const api::Request&) {
    api::Response res;
    res.headers.set("Content-Type", "application/vnd.docker.raw-stream");
    res.hijack = [](api::Connection& c) {
      int sv[2];
      ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
      std::thread peer([fd = sv[1]] {
        std::string in;
        char buf[256];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) in.append(buf, static_cast<std::size_t>(n));
        std::string out = "got:" + in;
        ::write(fd, out.data(), out.size());
        ::close(fd);
      });
      c.pump(sv[0], sv[0]);
      peer.join();
      ::close(sv[0]);
    };
    return res;
  });
  return api::Api(std::move(r));
}

class AgentServer : public ::testing::Test {
 protected:
  TempDir tmp;
  TestPki pki{tmp.path};
  api::Api api = make_api();
  std::unique_ptr<Logger> log;
  std::unique_ptr<TlsContextHolder> tls;
  std::unique_ptr<Server> server;
  bool server_running = false;

  asio::io_context client_io;
  ssl::context client_ctx{ssl::context::tls_client};

  void SetUp() override {
    pki.make_ca("ca", "test CA");
    pki.make_server_cert("ca", "server", "server");
    pki.make_client_cert("ca", "client", "client-cn");
    log = std::make_unique<Logger>((tmp.path / "agent.log").string());
    tls = std::make_unique<TlsContextHolder>(make_server_tls_context(
        {pki.cert("ca").string(), pki.cert("server").string(), pki.key("server").string()}));
    ServerOptions options;
    options.listen = "127.0.0.1";
    options.port = 0;
    options.header_timeout = 300ms;
    options.body_timeout = 300ms;
    options.max_body_bytes = 1024;
    options.max_header_bytes = 2048;
    server = std::make_unique<Server>(options, *tls, api, *log);
    server->start();
    server_running = true;

    client_ctx.load_verify_file(pki.cert("ca").string());
    client_ctx.use_certificate_chain_file(pki.cert("client").string());
    client_ctx.use_private_key_file(pki.key("client").string(), ssl::context::pem);
    client_ctx.set_verify_mode(ssl::verify_peer);
  }

  void TearDown() override { stop_server(); }

  // True when stop() returned within `timeout`.
  bool stop_server(std::chrono::milliseconds timeout = 3s) {
    if (!server_running) return true;
    server_running = false;
    auto done = std::async(std::launch::async, [this] { server->stop(); });
    bool ok = done.wait_for(timeout) == std::future_status::ready;
    done.wait();
    return ok;
  }

  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> connect() {
    auto s = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(client_io, client_ctx);
    beast::get_lowest_layer(*s).connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()));
    beast::get_lowest_layer(*s).expires_after(5s);
    s->handshake(ssl::stream_base::client);
    return s;
  }

  template <class Stream>
  static http::response<http::string_body> read_response(Stream& s) {
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    return res;
  }
};

TEST_F(AgentServer, KeepAliveServesManyRequestsOnOneConnection) {
  auto s = connect();
  for (int i = 0; i < 5; ++i) {
    http::request<http::empty_body> req{http::verb::get, "/v1.47/hello", 11};
    req.set(http::field::host, "localhost");
    http::write(*s, req);
    auto res = read_response(*s);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(res.body(), "hello client-cn");
    EXPECT_TRUE(res.keep_alive());
    EXPECT_EQ(res["Api-Version"], "1.47");
  }
}

TEST_F(AgentServer, ConnectionCloseIsHonoured) {
  auto s = connect();
  http::request<http::empty_body> req{http::verb::get, "/hello", 11};
  req.keep_alive(false);
  http::write(*s, req);
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_FALSE(res.keep_alive());
  beast::flat_buffer buf;
  http::response<http::string_body> next;
  beast::error_code ec;
  http::read(*s, buf, next, ec);
  EXPECT_TRUE(ec) << "the server must close after Connection: close";
}

TEST_F(AgentServer, BodyWithinTheLimitReachesTheHandler) {
  auto s = connect();
  http::request<http::string_body> req{http::verb::post, "/echo-size", 11, std::string(1000, 'x')};
  req.prepare_payload();
  http::write(*s, req);
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), "1000");
}

TEST_F(AgentServer, OversizedBodyGets413) {
  auto s = connect();
  http::request<http::string_body> req{http::verb::post, "/echo-size", 11, std::string(5000, 'x')};
  req.prepare_payload();
  http::write(*s, req);
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 413u);
  EXPECT_EQ(res.body(), "{\"message\":\"request body too large: the limit is 1024 bytes\"}\n");
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_FALSE(res.keep_alive());
}

// The server answers 413 after 1 KB and then reads and drops the rest, so the
// client can finish sending and still read the answer (no reset on close).
TEST_F(AgentServer, OversizedBodyAnswerSurvivesAClientStillSending) {
  auto s = connect();
  http::request<http::string_body> req{http::verb::post, "/echo-size", 11, std::string(4u << 20, 'x')};
  req.prepare_payload();
  beast::error_code ec;
  http::write(*s, req, ec);
  EXPECT_FALSE(ec) << ec.message();
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 413u);
  EXPECT_NE(res.body().find("too large"), std::string::npos) << res.body();
}

TEST_F(AgentServer, OversizedChunkedBodyGets413) {
  auto s = connect();
  std::string raw = "POST /echo-size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 5; ++i) raw += "200\r\n" + std::string(512, 'y') + "\r\n";
  raw += "0\r\n\r\n";
  asio::write(*s, asio::buffer(raw));
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 413u);
}

TEST_F(AgentServer, OversizedHeaderGets431) {
  auto s = connect();
  http::request<http::empty_body> req{http::verb::get, "/hello", 11};
  req.set("X-Padding", std::string(4096, 'p'));
  http::write(*s, req);
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 431u);
}

TEST_F(AgentServer, MalformedRequestGets400) {
  auto s = connect();
  asio::write(*s, asio::buffer(std::string("GET /hello HTTP/1.1\r\nBad Header Line\r\n\r\n")));
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 400u);
  EXPECT_NE(res.body().find("bad request"), std::string::npos) << res.body();
}

TEST_F(AgentServer, SlowHeadersAreCutOff) {
  auto s = connect();
  asio::write(*s,
              asio::buffer(std::string("GET /hello HTTP/1.1\r\nHost: x\r\n")));  // never finishes
  auto started = std::chrono::steady_clock::now();
  char byte;
  beast::error_code ec;
  s->read_some(asio::buffer(&byte, 1), ec);
  auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(ec) << "expected the server to close the connection";
  EXPECT_LT(waited, 3s);
  EXPECT_GE(waited, 200ms);
}

TEST_F(AgentServer, HandshakeWithoutClientCertificateFails) {
  ssl::context anon{ssl::context::tls_client};
  anon.load_verify_file(pki.cert("ca").string());
  beast::ssl_stream<beast::tcp_stream> s(client_io, anon);
  beast::get_lowest_layer(s).connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()));
  beast::get_lowest_layer(s).expires_after(5s);
  beast::error_code ec;
  s.handshake(ssl::stream_base::client, ec);
  if (!ec) {  // TLS 1.3: the server's refusal arrives with the first read
    http::request<http::empty_body> req{http::verb::get, "/hello", 11};
    http::write(s, req, ec);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    if (!ec) http::read(s, buf, res, ec);
  }
  EXPECT_TRUE(ec) << "a client without a certificate got a response";
}

TEST_F(AgentServer, StreamedBodyHasNoSizeLimit) {
  auto s = connect();
  http::request<http::string_body> req{http::verb::post, "/upload", 11};
  req.body() = std::string(100'000, 'x');  // far over max_body_bytes (1024)
  req.prepare_payload();
  http::write(*s, req);
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), "100000");
}

TEST_F(AgentServer, StreamedResponseIsChunked) {
  auto s = connect();
  http::request<http::empty_body> req{http::verb::get, "/count", 11};
  http::write(*s, req);
  auto res = read_response(*s);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_TRUE(res.chunked());
  EXPECT_EQ(res.body(), "1\n2\n3\n");
  // The connection stays usable after a chunked body.
  http::request<http::empty_body> again{http::verb::get, "/hello", 11};
  http::write(*s, again);
  EXPECT_EQ(read_response(*s).body(), "hello client-cn");
}

TEST_F(AgentServer, HijackUpgradesAndPumpsBothWaysWithHalfClose) {
  // Plain OpenSSL on a socket: the client must send close_notify (its
  // half-close, as the docker CLI's CloseWrite does) and go on reading.
  tcp::socket sock(client_io);
  sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()));
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(client_ctx.native_handle()), &SSL_free);
  SSL_set_fd(ssl.get(), sock.native_handle());
  ASSERT_EQ(SSL_connect(ssl.get()), 1);
  std::string raw =
      "POST /attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
      "Content-Length: 0\r\n\r\nhello";  // stdin bytes right behind the request
  ASSERT_GT(SSL_write(ssl.get(), raw.data(), static_cast<int>(raw.size())), 0);
  ASSERT_GT(SSL_write(ssl.get(), " world", 6), 0);
  SSL_shutdown(ssl.get());
  std::string out;
  char chunk[256];
  int n;
  while ((n = SSL_read(ssl.get(), chunk, sizeof chunk)) > 0) out.append(chunk, static_cast<std::size_t>(n));
  auto body = out.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos) << out;
  EXPECT_TRUE(out.starts_with("HTTP/1.1 101 UPGRADED\r\n")) << out;
  EXPECT_NE(out.find("Upgrade: tcp\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.substr(body + 4), "got:hello world");
}

TEST_F(AgentServer, StopClosesOpenConnections) {
  auto idle = connect();  // a keep-alive connection sitting idle
  http::request<http::empty_body> req{http::verb::get, "/hello", 11};
  http::write(*idle, req);
  EXPECT_EQ(read_response(*idle).result_int(), 200u);
  EXPECT_TRUE(stop_server(1s));
  beast::error_code ec;
  tcp::socket probe(client_io);
  probe.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()), ec);
  EXPECT_TRUE(ec) << "still accepting after stop()";
}

// Raw TCP sockets that connect and never start TLS (an unauthenticated peer).
std::vector<tcp::socket> idle_sockets(asio::io_context& io, std::uint16_t port, int n) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  std::vector<tcp::socket> out;
  for (int i = 0; i < n; ++i) {
    out.emplace_back(io);
    out.back().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  return out;
}

// 600 idle sockets used to take every one of the 512 connection slots.
TEST_F(AgentServer, IdleSocketsDoNotLockOutAClientWithACertificate) {
  auto idle = idle_sockets(client_io, server->port(), 600);
  std::this_thread::sleep_for(200ms);  // let the server accept them all
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    auto s = connect();
    http::request<http::empty_body> req{http::verb::get, "/hello", 11};
    http::write(*s, req);
    auto res = read_response(*s);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(res.body(), "hello client-cn");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  // At most max_handshakes of them are still held open by the server.
  int open = 0;
  for (tcp::socket& sock : idle) {
    pollfd p{sock.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) ++open;  // nothing readable: no EOF yet
  }
  EXPECT_LE(open, 64) << "idle sockets still held by the server";
}

TEST(AgentServerLimits, OnlyAuthenticatedConnectionsCountAgainstTheCap) {
  TempDir tmp;
  TestPki pki{tmp.path};
  pki.make_ca("ca", "test CA");
  pki.make_server_cert("ca", "server", "server");
  pki.make_client_cert("ca", "client", "client-cn");
  Logger log((tmp.path / "agent.log").string());
  TlsContextHolder tls(make_server_tls_context(
      {pki.cert("ca").string(), pki.cert("server").string(), pki.key("server").string()}));
  api::Api api = make_api();
  ServerOptions options;
  options.listen = "127.0.0.1";
  options.port = 0;
  options.max_connections = 2;
  options.max_handshakes = 4;
  // Long enough for a real handshake on a loaded 2-core machine (ctest -j2).
  options.handshake_timeout = 1500ms;
  Server server(options, tls, api, log);
  server.start();

  asio::io_context io;
  ssl::context ctx{ssl::context::tls_client};
  ctx.load_verify_file(pki.cert("ca").string());
  ctx.use_certificate_chain_file(pki.cert("client").string());
  ctx.use_private_key_file(pki.key("client").string(), ssl::context::pem);
  auto hello = [&](beast::ssl_stream<beast::tcp_stream>& s) {
    http::request<http::empty_body> req{http::verb::get, "/hello", 11};
    beast::error_code ec;
    http::write(s, req, ec);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    if (!ec) http::read(s, buf, res, ec);
    return ec ? 0u : res.result_int();
  };
  auto connect = [&] {
    auto s = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io, ctx);
    beast::get_lowest_layer(*s).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
    beast::get_lowest_layer(*s).expires_after(5s);
    beast::error_code ec;
    s->handshake(ssl::stream_base::client, ec);
    return s;
  };

  auto idle = idle_sockets(io, server.port(), 10);  // more than max_connections and max_handshakes
  auto a = connect();
  auto b = connect();
  EXPECT_EQ(hello(*a), 200u);
  EXPECT_EQ(hello(*b), 200u);
  auto c = connect();  // a third authenticated one is over the cap
  EXPECT_EQ(hello(*c), 0u);
  a.reset();
  std::this_thread::sleep_for(100ms);
  auto d = connect();
  EXPECT_EQ(hello(*d), 200u);

  // An idle socket is dropped once the handshake deadline passes.
  tcp::socket late(io);
  late.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
  auto t0 = std::chrono::steady_clock::now();
  char byte;
  boost::system::error_code ec;
  late.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_TRUE(ec);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  server.stop();
}

}  // namespace
}  // namespace berth::agent::testing
