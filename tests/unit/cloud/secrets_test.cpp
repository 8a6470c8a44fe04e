#include "core/secrets.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "core/fs.h"

namespace berth {
namespace {

struct TempStore {
  std::filesystem::path path;
  TempStore() {
    char tmpl[] = "/tmp/berth-secrets-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempStore() { std::filesystem::remove_all(path); }
};

TEST(StoreSecrets, SealsAndOpensWithoutTheClearTextAtRest) {
  TempStore dir;
  StoreSecrets box(dir.path / "secret.key");
  const std::string token = "dop_v1_0123456789abcdef";
  const std::string sealed = box.seal(token);
  EXPECT_EQ(sealed.rfind("berth-sealed-v1:", 0), 0u);
  EXPECT_EQ(sealed.find(token), std::string::npos);
  EXPECT_NE(box.seal(token), sealed);   // a fresh nonce each time
  EXPECT_EQ(box.open(sealed), token);
  EXPECT_EQ(StoreSecrets(dir.path / "secret.key").open(sealed), token);   // another process
  struct stat st{};
  ASSERT_EQ(::stat((dir.path / "secret.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(StoreSecrets, RefusesTamperedValuesAndOtherKeys) {
  TempStore a, b;
  StoreSecrets box(a.path / "secret.key");
  std::string sealed = box.seal("secret");
  std::string tampered = sealed;
  const size_t mid = tampered.size() / 2;   // inside the ciphertext, never in padding bits
  tampered[mid] = tampered[mid] == 'A' ? 'B' : 'A';
  EXPECT_THROW(box.open(tampered), Error);
  EXPECT_THROW(box.open("secret"), Error);
  StoreSecrets other(b.path / "secret.key");
  other.seal("x");
  EXPECT_THROW(other.open(sealed), Error);
}

TEST(StoreSecrets, AMissingKeyIsAClearErrorNotANewKey) {
  TempStore dir;
  std::string sealed = StoreSecrets(dir.path / "secret.key").seal("secret");
  std::filesystem::remove(dir.path / "secret.key");
  try {
    StoreSecrets(dir.path / "secret.key").open(sealed);
    FAIL() << "opened without a key";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("secret.key is missing"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path / "secret.key"));
}

TEST(StoreSecrets, EmptySecretRoundTrips) {
  TempStore dir;
  StoreSecrets box(dir.path / "secret.key");
  EXPECT_EQ(box.open(box.seal("")), "");
}

}  // namespace
}  // namespace berth
