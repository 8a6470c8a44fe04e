#include "agent/image/digest.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace berth::agent::image {

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  if (!ctx_->md || EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256: cannot initialize");
}

Sha256::~Sha256() = default;

void Sha256::update(const void* data, std::size_t size) {
  if (size && EVP_DigestUpdate(ctx_->md, data, size) != 1)
    throw std::runtime_error("sha256: update failed");
}

std::string Sha256::digest() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx_->md, out, &len) != 1) throw std::runtime_error("sha256: final failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text = "sha256:";
  for (unsigned i = 0; i < len; ++i) {
    text += kHex[out[i] >> 4];
    text += kHex[out[i] & 15];
  }
  return text;
}

std::string sha256_digest(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.digest();
}

bool is_hex(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

bool is_sha256_digest(std::string_view text) {
  return text.size() == 71 && text.substr(0, 7) == "sha256:" && is_hex(text.substr(7));
}

std::string_view digest_hex(std::string_view digest) {
  auto colon = digest.find(':');
  return colon == std::string_view::npos ? digest : digest.substr(colon + 1);
}

std::string short_id(std::string_view digest) { return std::string(digest_hex(digest).substr(0, 12)); }

std::string chain_id(std::string_view parent_chain, std::string_view diff_id) {
  if (parent_chain.empty()) return std::string(diff_id);
  std::string text(parent_chain);
  text += ' ';
  text += diff_id;
  return sha256_digest(text);
}

}  // namespace berth::agent::image
