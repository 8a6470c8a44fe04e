#pragma once
// Secrets at rest: AES-256-GCM with a per-store key (ROOT/secret.key, 0600,
// made on first use). A sealed value is "berth-sealed-v1:" + base64(nonce |
// ciphertext | tag); config.json and inspect output hold only that.
#include <filesystem>
#include <mutex>
#include <string>


namespace berth {

// Seals secrets (cloud tokens, keys) for a machine's driver_state, so
// config.json never holds them in clear. Drivers store sealed values under
// keys ending in "_sealed"; inspect leaves those out.
class SecretSealer {
 public:
  virtual ~SecretSealer() = default;
  virtual std::string seal(const std::string& plaintext) const = 0;
  virtual std::string open(const std::string& sealed) const = 0;   // throws Error when it can't
};

class StoreSecrets final : public SecretSealer {
 public:
  explicit StoreSecrets(std::filesystem::path key_file) : key_file_(std::move(key_file)) {}
  std::string seal(const std::string& plaintext) const override;
  // Throws Error naming the key file when the key is missing or the value was
  // not sealed with it (tampered, or a store copied without its key).
  std::string open(const std::string& sealed) const override;

 private:
  std::string key(bool create) const;
  std::filesystem::path key_file_;
  mutable std::mutex mu_;
  mutable std::string key_;
};

}  // namespace berth
