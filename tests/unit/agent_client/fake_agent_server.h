#pragma once
// A tiny HTTPS server on loopback that requires a client certificate, for tests.
// Answers GET requests from a route table, one connection at a time.
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "core/tls.h"

namespace berth::testing {

struct FakeRoute {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain";
  bool hang = false;   // read the request, then hang up after 3 s without answering
};

class FakeAgentServer {
 public:
  // Listens on `host` ("127.0.0.1" or "::1"), port 0 picks a free one. `client_ca_pem` is
  // the CA that client certificates must chain to.
  FakeAgentServer(const tls::KeyPair& server, const std::string& client_ca_pem,
                  const std::string& host = "127.0.0.1", int port = 0);
  ~FakeAgentServer();
  FakeAgentServer(const FakeAgentServer&) = delete;
  FakeAgentServer& operator=(const FakeAgentServer&) = delete;

  int port() const { return port_; }
  void set_route(const std::string& path, FakeRoute route);
  int requests() const { return requests_; }
  int failed_handshakes() const { return failed_handshakes_; }
  std::string last_client_cn() const;

 private:
  void serve();
  void handle(int fd);

  void* ctx_ = nullptr;   // SSL_CTX*
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::atomic<int> failed_handshakes_{0};
  mutable std::mutex mu_;
  std::map<std::string, FakeRoute> routes_;
  std::string last_client_cn_;
  std::thread thread_;
};

// A TCP socket on 127.0.0.1 that listens but never accepts or answers.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace berth::testing
