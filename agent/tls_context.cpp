#include "agent/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "core/error.h"

namespace berth::agent {
namespace {

namespace ssl = boost::asio::ssl;

// Intermediate compatibility (Mozilla) for TLS 1.2; TLS 1.3 suites are OpenSSL's defaults.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

using BignumPtr = std::unique_ptr<BIGNUM, decltype(&BN_free)>;
struct OpensslFree {
  void operator()(char* p) const { OPENSSL_free(p); }
};

// The first queued OpenSSL error as text; clears the queue.
std::string openssl_reason() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "OpenSSL error " + std::to_string(code);
}

[[noreturn]] void fail(const std::string& what, const std::string& path,
                       const std::string& reason) {
  throw TlsError("cannot load TLS " + what + " " + path + ": " + reason +
                 "; check the file or re-run `berth regenerate-certs`");
}

void require_readable(const std::string& what, const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(what, path, std::strerror(errno));
}

}  // namespace

SslContextPtr make_server_tls_context(const TlsPaths& paths) {
  require_readable("CA certificate", paths.ca);
  require_readable("certificate", paths.cert);
  require_readable("key", paths.key);

  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ERR_clear_error();
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use | SSL_OP_NO_RENEGOTIATION |
                   SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    throw TlsError("cannot set the TLS cipher list: " + openssl_reason());
  }

  if (SSL_CTX_load_verify_locations(native, paths.ca.c_str(), nullptr) != 1) {
    fail("CA certificate", paths.ca, openssl_reason());
  }
  // Tell clients which CA to present a certificate from.
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(paths.ca.c_str());
  if (names == nullptr) fail("CA certificate", paths.ca, "no certificate in the file");
  SSL_CTX_set_client_CA_list(native, names);

  if (SSL_CTX_use_certificate_chain_file(native, paths.cert.c_str()) != 1) {
    fail("certificate", paths.cert, openssl_reason());
  }
  if (SSL_CTX_use_PrivateKey_file(native, paths.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
    std::string reason = openssl_reason();
    fail("key", paths.key, mismatch ? "it does not match the certificate " + paths.cert : reason);
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    fail("key", paths.key, "it does not match the certificate " + paths.cert);
  }

  ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  static constexpr unsigned char kSessionContext[] = "berth-agent";
  SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
  return ctx;
}

std::string describe_server_certificate(ssl::context& ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  if (cert == nullptr) return "none";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  std::string serial = "?";
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr), &BN_free);
  if (bn) {
    std::unique_ptr<char, OpensslFree> hex(BN_bn2hex(bn.get()));
    if (hex) serial = hex.get();
  }
  return std::string("CN=") + cn + " serial=" + serial;
}

}  // namespace berth::agent
