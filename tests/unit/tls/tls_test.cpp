// Certificates from core/tls.cpp, checked with OpenSSL directly.
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <thread>

#include "core/error.h"
#include "core/tls.h"

namespace berth::tls {
namespace {

template <auto FreeFn>
struct Free {
  template <typename T>
  void operator()(T* p) const { FreeFn(p); }
};
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using StorePtr = std::unique_ptr<X509_STORE, Free<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;

X509Ptr cert_of(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  EXPECT_NE(cert, nullptr) << "not a PEM certificate";
  return cert;
}

PkeyPtr key_of(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  EXPECT_NE(key, nullptr) << "not a PEM private key";
  return key;
}

// X509_verify_cert of `leaf` against `ca` alone, for `purpose` (0: none).
int openssl_verify(const std::string& leaf, const std::string& ca, int purpose, std::string* why = nullptr) {
  auto l = cert_of(leaf);
  auto c = cert_of(ca);
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_add_cert(store.get(), c.get());
  X509_STORE_CTX_init(ctx.get(), store.get(), l.get(), nullptr);
  if (purpose) X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  int rc = X509_verify_cert(ctx.get());
  if (why) *why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
  return rc;
}

bool ext_critical(X509* cert, int nid) {
  int idx = X509_get_ext_by_NID(cert, nid, -1);
  EXPECT_GE(idx, 0) << OBJ_nid2sn(nid) << " missing";
  return idx >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, idx)) == 1;
}

struct Sans {
  std::vector<std::string> dns, ip;
};
Sans sans_of(X509* cert) {
  Sans out;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type == GEN_DNS) {
      out.dns.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                           ASN1_STRING_length(gn->d.dNSName));
    } else if (gn->type == GEN_IPADD) {
      const unsigned char* b = ASN1_STRING_get0_data(gn->d.iPAddress);
      out.ip.emplace_back(reinterpret_cast<const char*>(b), ASN1_STRING_length(gn->d.iPAddress));
    }
  }
  return out;
}

std::string raw_ip(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s += static_cast<char>(b);
  return s;
}

long long seconds_since(const ASN1_TIME* t) {
  int days = 0, secs = 0;
  EXPECT_EQ(ASN1_TIME_diff(&days, &secs, t, nullptr), 1);
  return days * 86400LL + secs;
}

std::string fingerprint(X509* cert) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  X509_digest(cert, EVP_sha256(), md.data(), &len);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", md[i]);
    hex += buf;
  }
  return hex;
}

const std::vector<std::string> kSansIn{"10.0.0.5", "localhost", "127.0.0.1", "m1",       "::1",
                                       "LOCALHOST", "10.0.0.5", "0:0:0:0:0:0:0:1", "", "Node.example.com"};

// RSA-3072 keys are slow, so each certificate is made once per process, and only when a test needs it.
const KeyPair& material(KeyType type, const std::string& what) {
  static std::map<std::pair<KeyType, std::string>, KeyPair> cache;
  const auto key = std::make_pair(type, what);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const auto t0 = std::chrono::steady_clock::now();
  KeyPair kp;
  if (what == "ca") kp = make_ca("test-ca", type);
  if (what == "other_ca") kp = make_ca("other-ca", type);
  if (what == "client") kp = make_client_cert(material(type, "ca"), "test-client", type);
  if (what == "server") kp = make_server_cert(material(type, "ca"), "m1", kSansIn, type);
  if (what == "other_client") kp = make_client_cert(material(type, "other_ca"), "intruder", type);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ timing ] %s %s: %.1f ms (one key generation + signing)\n",
              type == KeyType::Rsa ? "RSA-3072" : "ECDSA P-256", what.c_str(), ms);
  return cache.emplace(key, std::move(kp)).first->second;
}

class TlsCerts : public ::testing::TestWithParam<KeyType> {
 protected:
  const KeyPair& get(const char* what) const { return material(GetParam(), what); }
  bool rsa() const { return GetParam() == KeyType::Rsa; }
  void expect_key(EVP_PKEY* key) {
    if (rsa()) {
      EXPECT_TRUE(EVP_PKEY_is_a(key, "RSA"));
      EXPECT_EQ(EVP_PKEY_get_bits(key), 3072);
    } else {
      ASSERT_TRUE(EVP_PKEY_is_a(key, "EC"));
      char group[64] = {};
      ASSERT_EQ(EVP_PKEY_get_group_name(key, group, sizeof group, nullptr), 1);
      EXPECT_STREQ(group, "prime256v1");
      EXPECT_EQ(EVP_PKEY_get_bits(key), 256);
    }
  }
  void expect_sha256_signature(X509* cert) {
    EXPECT_EQ(X509_get_signature_nid(cert), rsa() ? NID_sha256WithRSAEncryption : NID_ecdsa_with_SHA256);
  }
};

TEST_P(TlsCerts, CaIsASelfSignedCaWithCriticalConstraints) {
  auto ca = cert_of(get("ca").cert_pem);
  EXPECT_TRUE(X509_get_extension_flags(ca.get()) & EXFLAG_CA);
  EXPECT_TRUE(ext_critical(ca.get(), NID_basic_constraints));
  EXPECT_TRUE(ext_critical(ca.get(), NID_key_usage));
  EXPECT_EQ(X509_get_key_usage(ca.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_NE(X509_get0_subject_key_id(ca.get()), nullptr);
  EXPECT_EQ(X509_check_issued(ca.get(), ca.get()), X509_V_OK);
  EXPECT_EQ(X509_get_version(ca.get()), X509_VERSION_3);
  expect_sha256_signature(ca.get());
  auto key = key_of(get("ca").key_pem);
  EXPECT_EQ(X509_check_private_key(ca.get(), key.get()), 1);
  expect_key(X509_get0_pubkey(ca.get()));
}

TEST_P(TlsCerts, SerialIsPositiveAndAtMost159Bits) {
  for (const auto* pem : {&get("ca").cert_pem, &get("client").cert_pem, &get("server").cert_pem}) {
    auto cert = cert_of(*pem);
    BnPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
    EXPECT_FALSE(BN_is_negative(bn.get()));
    EXPECT_FALSE(BN_is_zero(bn.get()));
    EXPECT_LE(BN_num_bits(bn.get()), 159);
    EXPECT_GT(BN_num_bits(bn.get()), 64);   // random, not a counter (fails with p ~ 2^-95)
  }
  auto a = cert_of(get("client").cert_pem), b = cert_of(get("other_client").cert_pem);
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(a.get()), X509_get0_serialNumber(b.get())), 0);
}

TEST_P(TlsCerts, ValidityStartsFiveMinutesAgo) {
  for (const auto* pem : {&get("ca").cert_pem, &get("client").cert_pem, &get("server").cert_pem}) {
    auto cert = cert_of(*pem);
    // The material may have been made a few seconds before this test runs.
    const long long age = seconds_since(X509_get0_notBefore(cert.get()));
    EXPECT_GE(age, 290);
    EXPECT_LE(age, 310 + 30);
  }
  // A fresh one, timed exactly.
  auto fresh = cert_of(make_ca("fresh", KeyType::Ecdsa, std::chrono::hours(48)).cert_pem);
  const long long age = seconds_since(X509_get0_notBefore(fresh.get()));
  EXPECT_GE(age, 290);
  EXPECT_LE(age, 310);
  const long long left = -seconds_since(X509_get0_notAfter(fresh.get()));
  EXPECT_NEAR(static_cast<double>(left), 48 * 3600.0, 10.0);
}

TEST_P(TlsCerts, ClientCertIsForClientAuthOnlyAndChainsToItsCa) {
  auto ca = cert_of(get("ca").cert_pem);
  auto client = cert_of(get("client").cert_pem);
  const uint32_t flags = X509_get_extension_flags(client.get());
  EXPECT_TRUE(flags & EXFLAG_BCONS);   // basicConstraints present ...
  EXPECT_FALSE(flags & EXFLAG_CA);     // ... and CA:FALSE
  EXPECT_TRUE(flags & EXFLAG_XKUSAGE);
  EXPECT_EQ(X509_get_extended_key_usage(client.get()), static_cast<uint32_t>(XKU_SSL_CLIENT));
  const uint32_t ku = rsa() ? (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT) : KU_DIGITAL_SIGNATURE;
  EXPECT_EQ(X509_get_key_usage(client.get()), ku);
  ASSERT_NE(X509_get0_authority_key_id(client.get()), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(client.get()), X509_get0_subject_key_id(ca.get())), 0);
  expect_key(X509_get0_pubkey(client.get()));
  expect_sha256_signature(client.get());
  auto key = key_of(get("client").key_pem);
  EXPECT_EQ(X509_check_private_key(client.get(), key.get()), 1);

  std::string why;
  EXPECT_EQ(openssl_verify(get("client").cert_pem, get("ca").cert_pem, X509_PURPOSE_SSL_CLIENT, &why), 1) << why;
  EXPECT_NE(openssl_verify(get("client").cert_pem, get("ca").cert_pem, X509_PURPOSE_SSL_SERVER), 1);
  EXPECT_TRUE(verify_chain(get("client").cert_pem, get("ca").cert_pem, &why)) << why;
}

TEST_P(TlsCerts, CertFromAnotherCaDoesNotVerify) {
  EXPECT_NE(openssl_verify(get("other_client").cert_pem, get("ca").cert_pem, X509_PURPOSE_SSL_CLIENT), 1);
  EXPECT_NE(openssl_verify(get("server").cert_pem, get("other_ca").cert_pem, X509_PURPOSE_SSL_SERVER), 1);
  std::string why;
  EXPECT_FALSE(verify_chain(get("other_client").cert_pem, get("ca").cert_pem, &why));
  EXPECT_NE(why, "");
  // A CA does not vouch for a different CA either.
  EXPECT_FALSE(verify_chain(get("other_ca").cert_pem, get("ca").cert_pem));
  EXPECT_TRUE(verify_chain(get("other_client").cert_pem, get("other_ca").cert_pem));
}

TEST_P(TlsCerts, ServerCertHasExactlyTheDeduplicatedSans) {
  auto server = cert_of(get("server").cert_pem);
  const Sans sans = sans_of(server.get());
  EXPECT_EQ(sans.dns, (std::vector<std::string>{"localhost", "m1", "Node.example.com"}));
  EXPECT_EQ(sans.ip, (std::vector<std::string>{raw_ip({10, 0, 0, 5}), raw_ip({127, 0, 0, 1}),
                                               raw_ip({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})}));
  // OpenSSL's own name matching agrees.
  EXPECT_EQ(X509_check_ip_asc(server.get(), "10.0.0.5", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "10.0.0.6", 0), 0);
  EXPECT_EQ(X509_check_host(server.get(), "node.example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(server.get(), "10.0.0.5", 0, 0, nullptr), 0);   // an IP is not a DNS SAN
  EXPECT_EQ(X509_check_host(server.get(), "other", 0, 0, nullptr), 0);
}

TEST_P(TlsCerts, ServerCertIsForServerAuthWithCommonName) {
  auto ca = cert_of(get("ca").cert_pem);
  auto server = cert_of(get("server").cert_pem);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(server.get()), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "m1");
  EXPECT_FALSE(X509_get_extension_flags(server.get()) & EXFLAG_CA);
  EXPECT_EQ(X509_get_extended_key_usage(server.get()), static_cast<uint32_t>(XKU_SSL_SERVER));
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(server.get()), X509_get0_subject_key_id(ca.get())), 0);
  expect_key(X509_get0_pubkey(server.get()));
  expect_sha256_signature(server.get());
  std::string why;
  EXPECT_EQ(openssl_verify(get("server").cert_pem, get("ca").cert_pem, X509_PURPOSE_SSL_SERVER, &why), 1) << why;
  EXPECT_NE(openssl_verify(get("server").cert_pem, get("ca").cert_pem, X509_PURPOSE_SSL_CLIENT), 1);
  EXPECT_TRUE(verify_chain(get("server").cert_pem, get("ca").cert_pem, &why)) << why;
}

TEST_P(TlsCerts, InspectReportsWhatOpenSslSees) {
  const std::string type = rsa() ? "rsa-3072" : "ecdsa-p256";
  auto ca = inspect_cert(get("ca").cert_pem);
  EXPECT_EQ(ca.subject_cn, "test-ca");
  EXPECT_EQ(ca.issuer_cn, "test-ca");
  EXPECT_TRUE(ca.is_ca);
  EXPECT_FALSE(ca.server_auth);
  EXPECT_FALSE(ca.client_auth);
  EXPECT_EQ(ca.key_type, type);
  EXPECT_EQ(ca.sha256_fingerprint, fingerprint(cert_of(get("ca").cert_pem).get()));
  EXPECT_EQ(ca.sha256_fingerprint.size(), 64u);

  auto server = inspect_cert(get("server").cert_pem);
  EXPECT_EQ(server.subject_cn, "m1");
  EXPECT_EQ(server.issuer_cn, "test-ca");
  EXPECT_FALSE(server.is_ca);
  EXPECT_TRUE(server.server_auth);
  EXPECT_FALSE(server.client_auth);
  EXPECT_EQ(server.key_type, type);
  EXPECT_EQ(server.dns_sans, (std::vector<std::string>{"localhost", "m1", "Node.example.com"}));
  EXPECT_EQ(server.ip_sans, (std::vector<std::string>{"10.0.0.5", "127.0.0.1", "::1"}));
  const long long now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_GE(now - server.not_before, 290);
  EXPECT_LE(now - server.not_before, 340);
  EXPECT_NEAR(static_cast<double>(server.not_after - server.not_before), 1095 * 86400.0 + 300, 5.0);

  auto client = inspect_cert(get("client").cert_pem);
  EXPECT_TRUE(client.client_auth);
  EXPECT_FALSE(client.server_auth);
  EXPECT_TRUE(client.dns_sans.empty());
  EXPECT_NE(client.sha256_fingerprint, server.sha256_fingerprint);
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, TlsCerts, ::testing::Values(KeyType::Ecdsa, KeyType::Rsa),
                         [](const auto& info) { return info.param == KeyType::Rsa ? "Rsa" : "Ecdsa"; });

TEST(Tls, ParseKeyType) {
  EXPECT_EQ(parse_key_type("ecdsa"), KeyType::Ecdsa);
  EXPECT_EQ(parse_key_type("RSA"), KeyType::Rsa);
  EXPECT_THROW(parse_key_type("dsa"), UserError);
  EXPECT_THROW(parse_key_type(""), UserError);
}

TEST(Tls, LeafNeverOutlivesItsCa) {
  auto ca = make_ca("short-ca", KeyType::Ecdsa, std::chrono::hours(24));
  auto client = make_client_cert(ca, "c", KeyType::Ecdsa);   // asks for 3 years
  EXPECT_EQ(inspect_cert(client.cert_pem).not_after, inspect_cert(ca.cert_pem).not_after);
}

TEST(Tls, ExpiredCertDoesNotVerify) {
  auto ca = make_ca("ca", KeyType::Ecdsa);
  auto client = make_client_cert(ca, "c", KeyType::Ecdsa, std::chrono::hours(0));   // notAfter = now
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  std::string why;
  EXPECT_FALSE(verify_chain(client.cert_pem, ca.cert_pem, &why));
  EXPECT_NE(why.find("expired"), std::string::npos) << why;
}

TEST(Tls, BadInputIsATlsError) {
  auto ca = make_ca("ca", KeyType::Ecdsa);
  auto leaf = make_client_cert(ca, "c", KeyType::Ecdsa);
  EXPECT_THROW(make_client_cert(leaf, "c2", KeyType::Ecdsa), TlsError);                    // not a CA
  EXPECT_THROW(make_client_cert({ca.cert_pem, leaf.key_pem}, "c2", KeyType::Ecdsa), TlsError);   // wrong key
  EXPECT_THROW(make_client_cert({"garbage", ca.key_pem}, "c2", KeyType::Ecdsa), TlsError);
  EXPECT_THROW(make_server_cert(ca, "s", {"bad name"}, KeyType::Ecdsa), TlsError);
  EXPECT_THROW(inspect_cert("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), TlsError);
  try {
    make_client_cert({"garbage", ca.key_pem}, "c2", KeyType::Ecdsa);
  } catch (const TlsError& e) {
    EXPECT_NE(std::string(e.what()).find("CA certificate"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
  std::string why;
  EXPECT_FALSE(verify_chain("garbage", ca.cert_pem, &why));
  EXPECT_NE(why, "");
}

}  // namespace
}  // namespace berth::tls
