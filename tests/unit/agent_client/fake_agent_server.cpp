#include "fake_agent_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace berth::testing {
namespace {

template <auto FreeFn>
struct Free {
  template <typename T>
  void operator()(T* p) const { FreeFn(p); }
};
using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using SslPtr = std::unique_ptr<SSL, Free<SSL_free>>;

SSL_CTX* ssl_ctx(void* p) { return static_cast<SSL_CTX*>(p); }

BioPtr bio_of(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

int listen_on(const std::string& host, int port, int* bound_port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  const bool v6 = host.find(':') != std::string::npos;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, host.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 16) != 0) {
    std::string err = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot listen on " + host + ": " + err);
  }
  len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  *bound_port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                         : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 404: return "Not Found";
    case 500: return "Internal Server Error";
    default: return "Status";
  }
}

}  // namespace

FakeAgentServer::FakeAgentServer(const tls::KeyPair& server, const std::string& client_ca_pem,
                                 const std::string& host, int port) {
  routes_["/_ping"] = {200, "OK", "text/plain"};
  routes_["/version"] = {200, R"({"Version":"27.1.1-berth","ApiVersion":"1.46","Os":"linux"})", "application/json"};

  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ctx_ = ctx;
  X509Ptr cert(PEM_read_bio_X509(bio_of(server.cert_pem).get(), nullptr, nullptr, nullptr));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio_of(server.key_pem).get(), nullptr, nullptr, nullptr));
  X509Ptr ca(PEM_read_bio_X509(bio_of(client_ca_pem).get(), nullptr, nullptr, nullptr));
  if (!cert || !key || !ca || SSL_CTX_use_certificate(ctx, cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca.get()) != 1)
    throw std::runtime_error("fake agent server: bad TLS material");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  listen_fd_ = listen_on(host, port, &port_);
  thread_ = std::thread([this] { serve(); });
}

FakeAgentServer::~FakeAgentServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  SSL_CTX_free(ssl_ctx(ctx_));
}

void FakeAgentServer::set_route(const std::string& path, FakeRoute route) {
  std::lock_guard lock(mu_);
  routes_[path] = std::move(route);
}

std::string FakeAgentServer::last_client_cn() const {
  std::lock_guard lock(mu_);
  return last_client_cn_;
}

void FakeAgentServer::serve() {
  // Writing to a client that hung up must give EPIPE here, not kill the test process.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv{2, 0};   // a stuck client cannot hang the server
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    handle(fd);
    ::close(fd);
  }
}

void FakeAgentServer::handle(int fd) {
  SslPtr ssl(SSL_new(ssl_ctx(ctx_)));
  SSL_set_fd(ssl.get(), fd);
  if (SSL_accept(ssl.get()) != 1) {
    ++failed_handshakes_;
    ERR_clear_error();
    return;
  }
  if (X509* peer = SSL_get0_peer_certificate(ssl.get())) {
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    std::lock_guard lock(mu_);
    last_client_cn_ = cn;
  }
  std::string request;
  char buf[4096];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
    int n = SSL_read(ssl.get(), buf, sizeof buf);
    if (n <= 0) {
      ERR_clear_error();
      return;
    }
    request.append(buf, static_cast<size_t>(n));
  }
  ++requests_;
  // "GET /path HTTP/1.1"
  const auto sp1 = request.find(' ');
  const auto sp2 = request.find(' ', sp1 + 1);
  const std::string path = request.substr(sp1 + 1, sp2 - sp1 - 1);
  FakeRoute route{404, "page not found", "text/plain"};
  {
    std::lock_guard lock(mu_);
    if (auto it = routes_.find(path); it != routes_.end()) route = it->second;
  }
  if (route.hang) {   // bounded, so a client without a timeout fails the test instead of hanging it
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (!stop_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return;
  }
  const std::string response = "HTTP/1.1 " + std::to_string(route.status) + " " + reason(route.status) +
                               "\r\nContent-Type: " + route.content_type +
                               "\r\nContent-Length: " + std::to_string(route.body.size()) +
                               "\r\nConnection: close\r\n\r\n" + route.body;
  SSL_write(ssl.get(), response.data(), static_cast<int>(response.size()));
  SSL_shutdown(ssl.get());
  ERR_clear_error();
}

SilentListener::SilentListener() { fd_ = listen_on("127.0.0.1", 0, &port_); }
SilentListener::~SilentListener() { ::close(fd_); }

}  // namespace berth::testing
