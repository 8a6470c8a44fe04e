#pragma once
// sha256 digests ("sha256:<64 hex>") over OpenSSL EVP.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace berth::agent::image {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, std::size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  // "sha256:<hex>"; finalizes (call once).
  std::string digest();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

std::string sha256_digest(std::string_view data);  // "sha256:<hex>"

// "sha256:" followed by 64 lowercase hex digits.
bool is_sha256_digest(std::string_view text);
bool is_hex(std::string_view text);  // lowercase hex, non-empty
// "sha256:abc" -> "abc" (unchanged when there is no algorithm).
std::string_view digest_hex(std::string_view digest);
// First 12 hex digits, as docker shows ids.
std::string short_id(std::string_view digest);

// The chain id of a layer on top of `parent_chain` ("" for the bottom layer).
std::string chain_id(std::string_view parent_chain, std::string_view diff_id);

}  // namespace berth::agent::image
