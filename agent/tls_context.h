#pragma once
// The server's mutual-TLS context (TLS 1.2+, client certificate required and
// verified against the configured CA), and a holder that swaps it atomically
// when SIGHUP reloads the files. Connections keep the context they started with.
#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "agent/config.h"

namespace berth::agent {

using SslContextPtr = std::shared_ptr<boost::asio::ssl::context>;

// Loads CA, certificate chain and key. Throws berth::TlsError naming the file
// and the OpenSSL reason (never any key material).
SslContextPtr make_server_tls_context(const TlsPaths& paths);

class TlsContextHolder {
 public:
  explicit TlsContextHolder(SslContextPtr initial) : ctx_(std::move(initial)) {}
  SslContextPtr current() const { return ctx_.load(); }
  void replace(SslContextPtr next) { ctx_.store(std::move(next)); }

 private:
  std::atomic<SslContextPtr> ctx_;
};

// "CN=..." of the certificate a context serves, and its serial in hex (for the log).
std::string describe_server_certificate(boost::asio::ssl::context& ctx);

}  // namespace berth::agent
