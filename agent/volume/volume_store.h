#pragma once
// Named volumes under <data_root>/volumes/NAME/_data with their metadata in
// <data_root>/volumes/NAME/volume.json. Thread-safe.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace berth::agent::events {
class EventBus;
}

namespace berth::agent::volume {

// The label dockerd (23+) puts on anonymous volumes; prune without all=true
// removes only these.
inline constexpr const char* kAnonymousLabel = "com.docker.volume.anonymous";

struct Volume {
  std::string name;
  std::string driver = "local";
  std::filesystem::path mountpoint;  // .../volumes/NAME/_data
  std::string created_at;            // RFC 3339
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> options;
  bool anonymous = false;  // made for a container's VOLUME or "-v /path"; rm -v removes it
};

class VolumeStore {
 public:
  explicit VolumeStore(std::filesystem::path root);  // <data_root>/volumes
  ~VolumeStore();
  VolumeStore(const VolumeStore&) = delete;
  VolumeStore& operator=(const VolumeStore&) = delete;

  // Creates it when missing (an empty name makes an anonymous one with a
  // random 64-hex name); returns the existing one otherwise. Throws
  // api::HttpError(400) for a name dockerd refuses.
  Volume ensure(const std::string& name, const std::map<std::string, std::string>& labels = {},
                bool anonymous = false);
  // As ensure, with the local driver's options (type, device, o).
  Volume ensure(const std::string& name, const std::map<std::string, std::string>& labels,
                const std::map<std::string, std::string>& options, bool anonymous);
  std::optional<Volume> get(const std::string& name) const;
  std::vector<Volume> list() const;  // by name
  // Throws api::HttpError(409) "remove NAME: volume is in use - [ID]" when
  // in use (even with force), 404 "get NAME: no such volume" when missing
  // (unless force).
  void remove(const std::string& name, bool force = false);

  // Which containers use a volume: for 409 on rm, dangling and UsageData.
  void set_users_query(std::function<std::vector<std::string>(const std::string& volume)> users);
  std::vector<std::string> users(const std::string& name) const;

  // GET /events: volume create and destroy go here (none while unset).
  void set_events(std::shared_ptr<events::EventBus> bus);

  // Bytes under _data (du-like, by allocated blocks).
  std::int64_t size(const std::string& name) const;

  // The API shape (GET /volumes/{name}); with usage: UsageData {Size, RefCount}
  // as /system/df reports it.
  nlohmann::json to_json(const Volume& v, bool with_usage = false) const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::agent::volume
