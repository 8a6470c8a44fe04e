#pragma once
// The classic builder's cache: each step's key (its parent image and what it
// did) -> the image it made. Kept in <data_root>/build/cache.json, written
// atomically. Intermediate images belong to the cache: `docker images` hides
// them (unless tagged or the result of a build) and `docker builder prune`
// removes them. Thread-safe.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace berth::agent::build {

class BuildCache {
 public:
  explicit BuildCache(std::filesystem::path file);  // a missing or damaged file is an empty cache

  // The image stored under `key`, when `exists(image)` still holds.
  std::optional<std::string> lookup(const std::string& key, const std::function<bool(const std::string&)>& exists);
  void remember(const std::string& key, const std::string& image_id);
  // A build's final image: shown by `docker images` even untagged.
  void mark_result(const std::string& image_id);

  // An image the cache made that is not a build's result.
  bool is_intermediate(const std::string& image_id) const;

  struct Entry {
    std::string key, image_id;
    std::int64_t created = 0, last_used = 0;  // unix seconds
    bool result = false;
  };
  std::vector<Entry> entries() const;
  // Forgets the entries `drop` selects; returns them.
  std::vector<Entry> forget(const std::function<bool(const Entry&)>& drop);

 private:
  void load();
  void save() const;  // mu_ held

  std::filesystem::path file_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;  // by key
  std::set<std::string> results_;
};

}  // namespace berth::agent::build
