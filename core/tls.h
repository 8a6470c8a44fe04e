#pragma once
// Certificates with OpenSSL 3: one CA per store, a client certificate (clientAuth)
// and one server certificate per machine (serverAuth + SANs). PEM in, PEM out.
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace berth::tls {

enum class KeyType { Ecdsa, Rsa };   // ECDSA P-256 (default) | RSA-3072
KeyType parse_key_type(const std::string& s);   // "ecdsa"|"rsa", throws UserError

struct KeyPair {   // PEM text
  std::string cert_pem;
  std::string key_pem;
};

// Validity starts 5 minutes in the past.
KeyPair make_ca(const std::string& common_name, KeyType type, std::chrono::hours validity = std::chrono::hours(24 * 3650));
KeyPair make_client_cert(const KeyPair& ca, const std::string& common_name, KeyType type,
                         std::chrono::hours validity = std::chrono::hours(24 * 1095));
// `sans`: each an IP address (v4/v6) or a DNS name; duplicates are dropped.
KeyPair make_server_cert(const KeyPair& ca, const std::string& common_name,
                         const std::vector<std::string>& sans, KeyType type,
                         std::chrono::hours validity = std::chrono::hours(24 * 1095));

// Both a server's and a client's (etcd members and their clients use one certificate).
KeyPair make_peer_cert(const KeyPair& ca, const std::string& common_name,
                       const std::vector<std::string>& sans, KeyType type,
                       std::chrono::hours validity = std::chrono::hours(24 * 1095));

// Facts read back from a certificate (for tests, `inspect` and re-issue decisions).
struct CertInfo {
  std::string subject_cn;
  std::string issuer_cn;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
  bool is_ca = false;
  bool server_auth = false;
  bool client_auth = false;
  std::string key_type;            // "ecdsa-p256" | "rsa-3072" | ...
  long long not_before = 0;        // unix seconds
  long long not_after = 0;
  std::string sha256_fingerprint;  // hex
};
CertInfo inspect_cert(const std::string& cert_pem);

// True when `cert_pem` chains to `ca_pem` and is within its validity; `error` says why not.
bool verify_chain(const std::string& cert_pem, const std::string& ca_pem, std::string* error = nullptr);

// The store-wide CA and client certificate in DIR (ca.pem, ca-key.pem, cert.pem, key.pem),
// made once (0600 files, 0700 dir) and loaded after that. `renew` makes new ones.
struct StoreCerts {
  KeyPair ca;
  KeyPair client;
  std::filesystem::path dir;
};
StoreCerts ensure_store_certs(const std::filesystem::path& dir, KeyType type, bool renew = false);

}  // namespace berth::tls
