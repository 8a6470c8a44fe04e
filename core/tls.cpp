#include "core/tls.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <ctime>
#include <memory>
#include <optional>

#include "core/error.h"
#include "core/fs.h"
#include "core/lock.h"
#include "core/log.h"

namespace berth::tls {
namespace {

// unique_ptr deleter that calls an OpenSSL free function.
template <auto FreeFn>
struct Free {
  template <typename T>
  void operator()(T* p) const { FreeFn(p); }
};
using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using X509ExtPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;
using Asn1IntPtr = std::unique_ptr<ASN1_INTEGER, Free<ASN1_INTEGER_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, Free<GENERAL_NAME_free>>;
using OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, Free<ASN1_OCTET_STRING_free>>;
using Ia5StringPtr = std::unique_ptr<ASN1_IA5STRING, Free<ASN1_IA5STRING_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Free<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX_free>>;

// OPENSSL_free is a macro; this wraps it for the deleter above.
void crypto_free(unsigned char* p) { OPENSSL_free(p); }
using OsslBytesPtr = std::unique_ptr<unsigned char, Free<crypto_free>>;

// Drains OpenSSL's error queue into "; "-joined text.
std::string openssl_errors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    if (!text.empty()) text += "; ";
    text += buf.data();
  }
  return text.empty() ? "no OpenSSL error detail" : text;
}

[[noreturn]] void fail(const std::string& what) { throw TlsError(what + ": " + openssl_errors()); }

void check(int rc, const char* what) {
  if (rc <= 0) fail(what);
}

template <typename T>
T* check(T* p, const char* what) {
  if (!p) fail(what);
  return p;
}

PkeyPtr generate_key(KeyType type) {
  ERR_clear_error();
  EVP_PKEY* key = type == KeyType::Rsa
                      ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072))
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  return PkeyPtr(check(key, type == KeyType::Rsa ? "cannot generate an RSA-3072 key"
                                                  : "cannot generate an ECDSA P-256 key"));
}

std::string key_to_pem(EVP_PKEY* key) {
  BioPtr bio(check(BIO_new(BIO_s_mem()), "cannot allocate a BIO"));
  check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
        "cannot encode a private key as PEM");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string cert_to_pem(X509* cert) {
  BioPtr bio(check(BIO_new(BIO_s_mem()), "cannot allocate a BIO"));
  check(PEM_write_bio_X509(bio.get(), cert), "cannot encode a certificate as PEM");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

BioPtr mem_bio(const std::string& pem) {
  if (pem.size() > static_cast<size_t>(INT_MAX)) throw TlsError("PEM text is too large");
  return BioPtr(check(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), "cannot allocate a BIO"));
}

// `what` names the source ("certificate", "/path/ca.pem") in the error.
X509Ptr parse_cert(const std::string& pem, const std::string& what) {
  ERR_clear_error();
  auto bio = mem_bio(pem);
  X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (!cert) fail(what + " is not a valid PEM certificate");
  return X509Ptr(cert);
}

PkeyPtr parse_key(const std::string& pem, const std::string& what) {
  ERR_clear_error();
  auto bio = mem_bio(pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (!key) fail(what + " is not a valid unencrypted PEM private key");
  return PkeyPtr(key);
}

// A positive random serial below 2^159 (RFC 5280: at most 20 octets).
void set_random_serial(X509* cert) {
  BnPtr bn(check(BN_new(), "cannot allocate a BIGNUM"));
  do {
    check(BN_rand(bn.get(), 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY), "cannot draw a random serial");
  } while (BN_is_zero(bn.get()));
  Asn1IntPtr serial(check(BN_to_ASN1_INTEGER(bn.get(), nullptr), "cannot convert the serial"));
  check(X509_set_serialNumber(cert, serial.get()), "cannot set the serial");
}

void set_common_name(X509_NAME* name, const std::string& cn) {
  if (cn.empty()) throw TlsError("a certificate needs a non-empty common name");
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0),
        "cannot set the common name");
}

void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509ExtPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext) fail(std::string("cannot build the ") + OBJ_nid2sn(nid) + " extension");
  check(X509_add_ext(cert, ext.get(), -1), "cannot add an extension");
}

// A v3 certificate for `key` with subject CN, issued by `issuer` (nullptr: self-signed),
// valid from now-300s for `validity`; extensions are added by the caller before signing.
X509Ptr new_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, std::chrono::hours validity) {
  X509Ptr cert(check(X509_new(), "cannot allocate a certificate"));
  check(X509_set_version(cert.get(), X509_VERSION_3), "cannot set the version");
  set_random_serial(cert.get());
  set_common_name(X509_get_subject_name(cert.get()), cn);
  check(X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer)
                                                : X509_get_subject_name(cert.get())),
        "cannot set the issuer");
  check(X509_set_pubkey(cert.get(), key), "cannot set the public key");
  check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) ? 1 : 0, "cannot set notBefore");
  const long seconds = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(validity).count());
  check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), seconds) ? 1 : 0, "cannot set notAfter");
  // A leaf never outlives its CA.
  if (issuer && ASN1_TIME_compare(X509_get0_notAfter(cert.get()), X509_get0_notAfter(issuer)) > 0)
    check(X509_set1_notAfter(cert.get(), X509_get0_notAfter(issuer)), "cannot set notAfter");
  return cert;
}

void sign(X509* cert, EVP_PKEY* key) {
  check(X509_sign(cert, key, EVP_sha256()), "cannot sign the certificate");
}

struct LoadedCa {
  X509Ptr cert;
  PkeyPtr key;
};

LoadedCa load_ca(const KeyPair& ca, const std::string& cert_what = "the CA certificate",
                 const std::string& key_what = "the CA key") {
  LoadedCa out{parse_cert(ca.cert_pem, cert_what), parse_key(ca.key_pem, key_what)};
  if (!(X509_get_extension_flags(out.cert.get()) & EXFLAG_CA))
    throw TlsError(cert_what + " is not a CA certificate (basicConstraints CA:TRUE is missing)");
  ERR_clear_error();
  if (X509_check_private_key(out.cert.get(), out.key.get()) != 1)
    fail(key_what + " does not belong to " + cert_what);
  return out;
}

const char* leaf_key_usage(KeyType type) {
  return type == KeyType::Rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature";
}

KeyPair issue_leaf(const KeyPair& ca_pair, const std::string& cn, KeyType type, std::chrono::hours validity,
                   const char* eku, const GENERAL_NAMES* sans) {
  auto ca = load_ca(ca_pair);
  auto key = generate_key(type);
  auto cert = new_cert(key.get(), cn, ca.cert.get(), validity);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca.cert.get(), cert.get(), nullptr, nullptr, 0);
  add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), &ctx, NID_key_usage, leaf_key_usage(type));
  add_ext(cert.get(), &ctx, NID_ext_key_usage, eku);
  add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  add_ext(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  if (sans && sk_GENERAL_NAME_num(sans) > 0)
    check(X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, const_cast<GENERAL_NAMES*>(sans), 0,
                            X509V3_ADD_DEFAULT),
          "cannot add the subjectAltName extension");
  sign(cert.get(), ca.key.get());
  return {cert_to_pem(cert.get()), key_to_pem(key.get())};
}

// The 4 or 16 address bytes when `s` is an IPv4/IPv6 literal.
std::optional<std::string> ip_bytes(const std::string& s) {
  std::array<unsigned char, 16> buf{};
  if (inet_pton(AF_INET, s.c_str(), buf.data()) == 1) return std::string(buf.begin(), buf.begin() + 4);
  if (inet_pton(AF_INET6, s.c_str(), buf.data()) == 1) return std::string(buf.begin(), buf.end());
  return std::nullopt;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

GeneralNamesPtr build_sans(const std::vector<std::string>& sans) {
  GeneralNamesPtr names(check(sk_GENERAL_NAME_new_null(), "cannot allocate subjectAltNames"));
  std::vector<std::string> seen;   // "ip:<bytes>" or "dns:<lowercase name>"
  for (const auto& raw : sans) {
    if (raw.empty()) continue;
    const auto ip = ip_bytes(raw);
    std::string id = ip ? "ip:" + *ip : "dns:" + lower(raw);
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
    seen.push_back(id);

    GeneralNamePtr gn(check(GENERAL_NAME_new(), "cannot allocate a subjectAltName"));
    if (ip) {
      OctetStringPtr os(check(ASN1_OCTET_STRING_new(), "cannot allocate an IP subjectAltName"));
      check(ASN1_OCTET_STRING_set(os.get(), reinterpret_cast<const unsigned char*>(ip->data()),
                                  static_cast<int>(ip->size())),
            "cannot set an IP subjectAltName");
      GENERAL_NAME_set0_value(gn.get(), GEN_IPADD, os.release());
    } else {
      if (raw.find_first_of(" \t\r\n,/") != std::string::npos)
        throw TlsError("'" + raw + "' is neither an IP address nor a DNS name; fix the SAN list");
      Ia5StringPtr s(check(ASN1_IA5STRING_new(), "cannot allocate a DNS subjectAltName"));
      check(ASN1_STRING_set(s.get(), raw.data(), static_cast<int>(raw.size())),
            "cannot set a DNS subjectAltName");
      GENERAL_NAME_set0_value(gn.get(), GEN_DNS, s.release());
    }
    check(sk_GENERAL_NAME_push(names.get(), gn.get()), "cannot add a subjectAltName");
    gn.release();
  }
  return names;
}

std::string asn1_string_utf8(const ASN1_STRING* s) {
  unsigned char* out = nullptr;
  int n = ASN1_STRING_to_UTF8(&out, s);
  if (n < 0) return {};
  OsslBytesPtr holder(out);
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

std::string common_name(const X509_NAME* name) {
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0) return {};
  return asn1_string_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
}

long long unix_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) throw TlsError("certificate has an unreadable validity time");
  return static_cast<long long>(timegm(&tm));
}

std::string describe_key(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA")) return "rsa-" + std::to_string(EVP_PKEY_get_bits(key));
  if (EVP_PKEY_is_a(key, "EC")) {
    std::array<char, 64> group{};
    if (EVP_PKEY_get_group_name(key, group.data(), group.size(), nullptr) != 1) return "ecdsa";
    std::string g = group.data();
    if (g == "prime256v1" || g == "P-256") return "ecdsa-p256";
    if (g == "secp384r1" || g == "P-384") return "ecdsa-p384";
    if (g == "secp521r1" || g == "P-521") return "ecdsa-p521";
    return "ecdsa-" + g;
  }
  if (const char* name = EVP_PKEY_get0_type_name(key)) return lower(name);
  return "unknown";
}

// --- the store ---------------------------------------------------------------------------

constexpr auto kStoreLockTimeout = std::chrono::minutes(2);

std::string read_store_file(const fs::path& path) {
  try {
    return read_file(path);
  } catch (const Error& e) {
    throw TlsError(std::string(e.what()) + "; check its permissions");
  }
}

// One line for a damaged store file: which file, and what to do.
std::string damaged_hint(const fs::path& dir) {
  return "; restore it from a backup, or remove " + dir.string() +
         " to make a new CA and then run `berth regenerate-certs` for every machine";
}

void tighten_mode(const fs::path& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 0077) != 0) {
    log::warn("tls", "{} was readable by others; setting its mode to 0600", path.string());
    ::chmod(path.c_str(), 0600);
  }
}

}  // namespace

KeyType parse_key_type(const std::string& s) {
  const std::string v = lower(s);
  if (v == "ecdsa" || v == "ecdsa-p256" || v == "ec") return KeyType::Ecdsa;
  if (v == "rsa" || v == "rsa-3072") return KeyType::Rsa;
  throw UserError("unknown TLS key type '" + s + "': use ecdsa or rsa");
}

KeyPair make_ca(const std::string& common_name, KeyType type, std::chrono::hours validity) {
  auto key = generate_key(type);
  auto cert = new_cert(key.get(), common_name, nullptr, validity);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
  add_ext(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  sign(cert.get(), key.get());
  return {cert_to_pem(cert.get()), key_to_pem(key.get())};
}

KeyPair make_client_cert(const KeyPair& ca, const std::string& common_name, KeyType type,
                         std::chrono::hours validity) {
  return issue_leaf(ca, common_name, type, validity, "clientAuth", nullptr);
}

KeyPair make_server_cert(const KeyPair& ca, const std::string& common_name,
                         const std::vector<std::string>& sans, KeyType type, std::chrono::hours validity) {
  auto names = build_sans(sans);
  return issue_leaf(ca, common_name, type, validity, "serverAuth", names.get());
}

KeyPair make_peer_cert(const KeyPair& ca, const std::string& common_name,
                       const std::vector<std::string>& sans, KeyType type, std::chrono::hours validity) {
  auto names = build_sans(sans);
  return issue_leaf(ca, common_name, type, validity, "serverAuth,clientAuth", names.get());
}

CertInfo inspect_cert(const std::string& cert_pem) {
  auto cert = parse_cert(cert_pem, "certificate");
  CertInfo info;
  info.subject_cn = common_name(X509_get_subject_name(cert.get()));
  info.issuer_cn = common_name(X509_get_issuer_name(cert.get()));

  GeneralNamesPtr sans(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
    int gtype = 0;
    const void* value = GENERAL_NAME_get0_value(gn, &gtype);
    if (gtype == GEN_DNS) {
      info.dns_sans.push_back(asn1_string_utf8(static_cast<const ASN1_STRING*>(value)));
    } else if (gtype == GEN_IPADD) {
      const auto* os = static_cast<const ASN1_OCTET_STRING*>(value);
      std::array<char, INET6_ADDRSTRLEN> text{};
      const int len = ASN1_STRING_length(os);
      const int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (family && inet_ntop(family, ASN1_STRING_get0_data(os), text.data(), text.size()))
        info.ip_sans.emplace_back(text.data());
    }
  }

  const uint32_t flags = X509_get_extension_flags(cert.get());
  info.is_ca = (flags & EXFLAG_CA) != 0;
  if (flags & EXFLAG_XKUSAGE) {
    const uint32_t xku = X509_get_extended_key_usage(cert.get());
    info.server_auth = (xku & XKU_SSL_SERVER) != 0;
    info.client_auth = (xku & XKU_SSL_CLIENT) != 0;
  }
  if (EVP_PKEY* key = X509_get0_pubkey(cert.get())) info.key_type = describe_key(key);
  info.not_before = unix_time(X509_get0_notBefore(cert.get()));
  info.not_after = unix_time(X509_get0_notAfter(cert.get()));

  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  check(X509_digest(cert.get(), EVP_sha256(), md.data(), &md_len), "cannot hash the certificate");
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < md_len; ++i) {
    info.sha256_fingerprint += kHex[md[i] >> 4];
    info.sha256_fingerprint += kHex[md[i] & 0xf];
  }
  return info;
}

bool verify_chain(const std::string& cert_pem, const std::string& ca_pem, std::string* error) {
  auto set_error = [&](const std::string& e) {
    if (error) *error = e;
    return false;
  };
  X509Ptr cert, ca;
  try {
    cert = parse_cert(cert_pem, "the certificate");
    ca = parse_cert(ca_pem, "the CA certificate");
  } catch (const TlsError& e) {
    return set_error(e.what());
  }
  ERR_clear_error();
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1)
    return set_error("cannot set up verification: " + openssl_errors());
  // No purpose is set: client and server certificates are both checked as plain chains.
  X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_X509_STRICT);
  if (X509_verify_cert(ctx.get()) != 1) {
    const int code = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return set_error(std::string("certificate does not verify against the CA: ") +
                     X509_verify_cert_error_string(code));
  }
  if (error) error->clear();
  return true;
}

StoreCerts ensure_store_certs(const std::filesystem::path& dir, KeyType type, bool renew) {
  ensure_private_dir(dir);
  auto lock = FileLock::acquire(dir / ".lock", kStoreLockTimeout);
  if (!lock)
    throw TlsError("another berth process has held " + (dir / ".lock").string() +
                   " for 2 minutes; wait for it to finish and retry");

  const fs::path ca_cert = dir / "ca.pem", ca_key = dir / "ca-key.pem";
  const fs::path client_cert = dir / "cert.pem", client_key = dir / "key.pem";
  StoreCerts out{{}, {}, dir};

  // Keys are written before certificates, so a missing certificate means "not made yet".
  const bool new_ca = renew || !fs::exists(ca_cert);
  if (new_ca) {
    log::debug("tls", "making a new CA in {}", dir.string());
    out.ca = make_ca("berth-ca", type);
    write_file_atomic(ca_key, out.ca.key_pem, 0600);
    write_file_atomic(ca_cert, out.ca.cert_pem, 0600);
  } else {
    if (!fs::exists(ca_key))
      throw TlsError(ca_key.string() + " is missing but " + ca_cert.string() + " exists" + damaged_hint(dir));
    out.ca = {read_store_file(ca_cert), read_store_file(ca_key)};
    try {
      load_ca(out.ca, ca_cert.string(), ca_key.string());
    } catch (const TlsError& e) {
      throw TlsError(e.what() + damaged_hint(dir));
    }
    tighten_mode(ca_key);
    tighten_mode(ca_cert);
  }

  bool issue_client = new_ca || !fs::exists(client_cert);
  if (!issue_client) {
    const std::string remove_hint = "; remove " + client_cert.string() + " to make a new client certificate";
    if (!fs::exists(client_key))
      throw TlsError(client_key.string() + " is missing but " + client_cert.string() + " exists" + remove_hint);
    out.client = {read_store_file(client_cert), read_store_file(client_key)};
    try {
      auto cert = parse_cert(out.client.cert_pem, client_cert.string());
      auto key = parse_key(out.client.key_pem, client_key.string());
      ERR_clear_error();
      if (X509_check_private_key(cert.get(), key.get()) != 1)
        fail(client_key.string() + " does not belong to " + client_cert.string());
    } catch (const TlsError& e) {
      throw TlsError(e.what() + remove_hint);
    }
    std::string why;
    if (!verify_chain(out.client.cert_pem, out.ca.cert_pem, &why)) {
      // The client certificate is only trusted through the CA, so re-issuing it is safe.
      log::warn("tls", "re-issuing {} ({})", client_cert.string(), why);
      issue_client = true;
    } else {
      tighten_mode(client_key);
      tighten_mode(client_cert);
    }
  }
  if (issue_client) {
    out.client = make_client_cert(out.ca, "berth-client", type);
    write_file_atomic(client_key, out.client.key_pem, 0600);
    write_file_atomic(client_cert, out.client.cert_pem, 0600);
  }
  return out;
}

}  // namespace berth::tls
