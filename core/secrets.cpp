#include "core/secrets.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>
#include <optional>
#include <system_error>

#include "core/error.h"
#include "core/fs.h"

namespace berth {
namespace {

constexpr std::string_view kPrefix = "berth-sealed-v1:";
constexpr size_t kKeyBytes = 32, kNonceBytes = 12, kTagBytes = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

std::string base64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(n);
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * text.size() / 4 + 1, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = (text.size() >= 2 && text[text.size() - 2] == '=') ? 2 : 1;
  out.resize(n - pad);
  return out;
}

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw Error("cannot get random bytes from OpenSSL");
  return out;
}

}  // namespace

std::string StoreSecrets::key(bool create) const {
  std::lock_guard lock(mu_);
  if (!key_.empty()) return key_;
  std::error_code ec;
  if (fs::exists(key_file_, ec)) {
    std::string k = read_file(key_file_);
    if (k.size() != kKeyBytes)
      throw Error("secret key " + key_file_.string() + " is damaged (" + std::to_string(k.size()) +
                  " bytes, not 32); restore it from a backup, or remove it and re-create the cloud machines");
    key_ = k;
    return key_;
  }
  if (!create)
    throw Error("secret key " + key_file_.string() +
                " is missing, so stored credentials can't be read; restore it, or pass the credentials again");
  ensure_private_dir(key_file_.parent_path());
  std::string k = random_bytes(kKeyBytes);
  write_file_atomic(key_file_, k, 0600);
  key_ = k;
  return key_;
}

std::string StoreSecrets::seal(const std::string& plaintext) const {
  const std::string k = key(true);
  const std::string nonce = random_bytes(kNonceBytes);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  std::string out(plaintext.size() + kTagBytes, '\0');
  int len = 0, fin = 0;
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, reinterpret_cast<const unsigned char*>(k.data()),
                         reinterpret_cast<const unsigned char*>(nonce.data())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), o, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), o + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, o + len + fin) != 1)
    throw Error("cannot seal a secret with OpenSSL");
  out.resize(len + fin + kTagBytes);
  return std::string(kPrefix) + base64(nonce + out);
}

std::string StoreSecrets::open(const std::string& sealed) const {
  auto bad = [&] {
    return Error("a stored secret does not open with " + key_file_.string() +
                 " (the key changed or the record was edited); pass the credentials again");
  };
  if (sealed.rfind(kPrefix, 0) != 0) throw bad();
  auto raw = unbase64(std::string_view(sealed).substr(kPrefix.size()));
  if (!raw || raw->size() < kNonceBytes + kTagBytes) throw bad();
  const std::string k = key(false);
  const auto* r = reinterpret_cast<const unsigned char*>(raw->data());
  const size_t text_len = raw->size() - kNonceBytes - kTagBytes;
  std::string out(text_len + 16, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int len = 0, fin = 0;
  std::string tag = raw->substr(kNonceBytes + text_len);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, reinterpret_cast<const unsigned char*>(k.data()), r) != 1 ||
      EVP_DecryptUpdate(ctx.get(), o, &len, r + kNonceBytes, static_cast<int>(text_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), o + len, &fin) != 1)
    throw bad();
  out.resize(len + fin);
  return out;
}

}  // namespace berth
