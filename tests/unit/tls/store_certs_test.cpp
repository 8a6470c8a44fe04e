// ensure_store_certs: files, modes, reuse, renewal, damage and concurrent callers.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "core/tls.h"

namespace berth::tls {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "berth-tls-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

mode_t mode_of(const fs::path& p) {
  struct stat st{};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

void spit(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::trunc) << s; }

const char* kFiles[] = {"ca.pem", "ca-key.pem", "cert.pem", "key.pem"};

class StoreCertsTest : public ::testing::Test {
 protected:
  TempDir tmp;
  fs::path dir = tmp.path() / "nested" / "certs";
};

TEST_F(StoreCertsTest, CreatesPrivateFilesOnceAndLoadsThemAfter) {
  auto first = ensure_store_certs(dir, KeyType::Ecdsa);
  EXPECT_EQ(first.dir, dir);
  EXPECT_EQ(mode_of(dir), 0700u);
  for (const char* f : kFiles) EXPECT_EQ(mode_of(dir / f), 0600u) << f;
  EXPECT_EQ(slurp(dir / "ca.pem"), first.ca.cert_pem);
  EXPECT_EQ(slurp(dir / "ca-key.pem"), first.ca.key_pem);
  EXPECT_EQ(slurp(dir / "cert.pem"), first.client.cert_pem);
  EXPECT_EQ(slurp(dir / "key.pem"), first.client.key_pem);

  auto ca = inspect_cert(first.ca.cert_pem);
  EXPECT_TRUE(ca.is_ca);
  EXPECT_EQ(ca.key_type, "ecdsa-p256");
  auto client = inspect_cert(first.client.cert_pem);
  EXPECT_TRUE(client.client_auth);
  std::string why;
  EXPECT_TRUE(verify_chain(first.client.cert_pem, first.ca.cert_pem, &why)) << why;

  auto second = ensure_store_certs(dir, KeyType::Ecdsa);
  EXPECT_EQ(inspect_cert(second.ca.cert_pem).sha256_fingerprint, ca.sha256_fingerprint);
  EXPECT_EQ(second.ca.key_pem, first.ca.key_pem);
  EXPECT_EQ(second.client.cert_pem, first.client.cert_pem);
  EXPECT_EQ(second.client.key_pem, first.client.key_pem);
}

TEST_F(StoreCertsTest, RenewMakesANewCaAndClient) {
  auto first = ensure_store_certs(dir, KeyType::Ecdsa);
  auto renewed = ensure_store_certs(dir, KeyType::Ecdsa, /*renew=*/true);
  EXPECT_NE(inspect_cert(renewed.ca.cert_pem).sha256_fingerprint, inspect_cert(first.ca.cert_pem).sha256_fingerprint);
  EXPECT_NE(renewed.client.cert_pem, first.client.cert_pem);
  EXPECT_TRUE(verify_chain(renewed.client.cert_pem, renewed.ca.cert_pem));
  EXPECT_FALSE(verify_chain(renewed.client.cert_pem, first.ca.cert_pem));
  EXPECT_EQ(slurp(dir / "ca.pem"), renewed.ca.cert_pem);
  EXPECT_EQ(slurp(dir / "cert.pem"), renewed.client.cert_pem);
  for (const char* f : kFiles) EXPECT_EQ(mode_of(dir / f), 0600u) << f;
}

TEST_F(StoreCertsTest, RsaStoreHasRsaKeys) {
  auto certs = ensure_store_certs(dir, KeyType::Rsa);
  EXPECT_EQ(inspect_cert(certs.ca.cert_pem).key_type, "rsa-3072");
  EXPECT_EQ(inspect_cert(certs.client.cert_pem).key_type, "rsa-3072");
}

TEST_F(StoreCertsTest, CorruptFilesAreTlsErrorsNamingTheFile) {
  ensure_store_certs(dir, KeyType::Ecdsa);
  for (const char* f : kFiles) {
    const fs::path p = dir / f;
    const std::string good = slurp(p);
    spit(p, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    try {
      ensure_store_certs(dir, KeyType::Ecdsa);
      ADD_FAILURE() << "no error for a corrupt " << f;
    } catch (const TlsError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
      EXPECT_NE(msg.find("remove"), std::string::npos) << "says what to do: " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    spit(p, good);
  }
  // Repaired, it loads again.
  EXPECT_NO_THROW(ensure_store_certs(dir, KeyType::Ecdsa));
}

TEST_F(StoreCertsTest, MissingCaKeyIsATlsError) {
  ensure_store_certs(dir, KeyType::Ecdsa);
  fs::remove(dir / "ca-key.pem");
  try {
    ensure_store_certs(dir, KeyType::Ecdsa);
    FAIL() << "no error";
  } catch (const TlsError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "ca-key.pem").string()), std::string::npos) << e.what();
  }
}

TEST_F(StoreCertsTest, MismatchedCaKeyIsATlsError) {
  ensure_store_certs(dir, KeyType::Ecdsa);
  spit(dir / "ca-key.pem", make_ca("x", KeyType::Ecdsa).key_pem);
  EXPECT_THROW(ensure_store_certs(dir, KeyType::Ecdsa), TlsError);
}

TEST_F(StoreCertsTest, ClientCertFromAnotherCaIsReissued) {
  auto first = ensure_store_certs(dir, KeyType::Ecdsa);
  auto other_ca = make_ca("other", KeyType::Ecdsa);
  auto foreign = make_client_cert(other_ca, "foreign", KeyType::Ecdsa);
  spit(dir / "cert.pem", foreign.cert_pem);
  spit(dir / "key.pem", foreign.key_pem);
  auto again = ensure_store_certs(dir, KeyType::Ecdsa);
  EXPECT_EQ(again.ca.cert_pem, first.ca.cert_pem);
  EXPECT_TRUE(verify_chain(again.client.cert_pem, first.ca.cert_pem));
  EXPECT_EQ(slurp(dir / "cert.pem"), again.client.cert_pem);
}

TEST_F(StoreCertsTest, LooseKeyModeIsTightened) {
  ensure_store_certs(dir, KeyType::Ecdsa);
  ASSERT_EQ(::chmod((dir / "key.pem").c_str(), 0644), 0);
  ensure_store_certs(dir, KeyType::Ecdsa);
  EXPECT_EQ(mode_of(dir / "key.pem"), 0600u);
}

TEST_F(StoreCertsTest, ConcurrentCallersAgreeOnOneCa) {
  constexpr int kCallers = 4;
  std::vector<std::string> fingerprints(kCallers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i)
    threads.emplace_back([&, i] { fingerprints[i] = inspect_cert(ensure_store_certs(dir, KeyType::Ecdsa).ca.cert_pem).sha256_fingerprint; });
  for (auto& t : threads) t.join();
  for (int i = 1; i < kCallers; ++i) EXPECT_EQ(fingerprints[i], fingerprints[0]);
  EXPECT_EQ(inspect_cert(slurp(dir / "ca.pem")).sha256_fingerprint, fingerprints[0]);
}

}  // namespace
}  // namespace berth::tls
