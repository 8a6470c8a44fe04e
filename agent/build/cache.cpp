#include "agent/build/cache.h"

#include <nlohmann/json.hpp>

#include "agent/image/fs_util.h"

namespace berth::agent::build {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

BuildCache::BuildCache(fs::path file) : file_(std::move(file)) { load(); }

void BuildCache::load() {
  auto text = image::read_file(file_);
  if (!text) return;
  json doc = json::parse(*text, nullptr, false);
  if (!doc.is_object()) return;
  const json steps = doc.value("steps", json::object());
  if (!steps.is_object()) return;
  for (const auto& [key, e] : steps.items()) {
    if (!e.is_object()) continue;
    entries_[key] = {key, e.value("image", ""), e.value("created", std::int64_t{0}),
                     e.value("last_used", std::int64_t{0}), false};
  }
  const json results = doc.value("results", json::array());
  if (results.is_array())
    for (const json& id : results)
      if (id.is_string()) results_.insert(id.get<std::string>());
  for (auto& [_, e] : entries_) e.result = results_.count(e.image_id) > 0;
}

void BuildCache::save() const {
  json steps = json::object();
  for (const auto& [key, e] : entries_)
    steps[key] = {{"image", e.image_id}, {"created", e.created}, {"last_used", e.last_used}};
  json doc = {{"steps", steps}, {"results", results_}};
  fs::create_directories(file_.parent_path());
  image::write_file_atomic(file_, doc.dump(), file_.parent_path());
}

std::optional<std::string> BuildCache::lookup(const std::string& key,
                                              const std::function<bool(const std::string&)>& exists) {
  std::lock_guard l(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (!exists(it->second.image_id)) {
    entries_.erase(it);
    save();
    return std::nullopt;
  }
  it->second.last_used = now_seconds();
  save();
  return it->second.image_id;
}

void BuildCache::remember(const std::string& key, const std::string& image_id) {
  std::lock_guard l(mu_);
  const std::int64_t now = now_seconds();
  entries_[key] = {key, image_id, now, now, results_.count(image_id) > 0};
  save();
}

void BuildCache::mark_result(const std::string& image_id) {
  std::lock_guard l(mu_);
  results_.insert(image_id);
  for (auto& [_, e] : entries_)
    if (e.image_id == image_id) e.result = true;
  save();
}

bool BuildCache::is_intermediate(const std::string& image_id) const {
  std::lock_guard l(mu_);
  if (results_.count(image_id)) return false;
  for (const auto& [_, e] : entries_)
    if (e.image_id == image_id) return true;
  return false;
}

std::vector<BuildCache::Entry> BuildCache::entries() const {
  std::lock_guard l(mu_);
  std::vector<Entry> out;
  for (const auto& [_, e] : entries_) out.push_back(e);
  return out;
}

std::vector<BuildCache::Entry> BuildCache::forget(const std::function<bool(const Entry&)>& drop) {
  std::lock_guard l(mu_);
  std::vector<Entry> out;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (drop(it->second)) {
      out.push_back(it->second);
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  // A result stays a result only while the cache or a tag holds it.
  std::set<std::string> live;
  for (const auto& [_, e] : entries_) live.insert(e.image_id);
  std::erase_if(results_, [&](const std::string& id) { return !live.count(id); });
  save();
  return out;
}

}  // namespace berth::agent::build
