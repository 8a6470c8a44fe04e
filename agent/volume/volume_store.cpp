#include "agent/volume/volume_store.h"

#include <sys/stat.h>

#include <mutex>
#include <regex>
#include <set>

#include "agent/api/http.h"
#include "agent/events/event_bus.h"
#include "agent/network/util.h"

namespace berth::agent::volume {

namespace fs = std::filesystem;
using nlohmann::json;

struct VolumeStore::Impl {
  fs::path root;
  mutable std::mutex mutex;
  std::map<std::string, Volume> volumes;
  std::function<std::vector<std::string>(const std::string&)> users;
  std::shared_ptr<events::EventBus> events;

  void emit(const char* action, const Volume& v) {  // mutex held
    if (events) events->emit("volume", action, v.name, {{"driver", v.driver}});
  }

  void load() {
    std::error_code ec;
    fs::create_directories(root, ec);
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      fs::path meta = entry.path() / "volume.json";
      if (!entry.is_directory() || !fs::exists(meta)) continue;
      try {
        json j = json::parse(network::read_file(meta));
        Volume v;
        v.name = j.value("Name", entry.path().filename().string());
        v.driver = j.value("Driver", "local");
        v.created_at = j.value("CreatedAt", "");
        v.labels = j.value("Labels", std::map<std::string, std::string>{});
        v.options = j.value("Options", std::map<std::string, std::string>{});
        v.anonymous = j.value("Anonymous", false);
        v.mountpoint = entry.path() / "_data";
        volumes[v.name] = std::move(v);
      } catch (const std::exception&) {
        // A half-written record: ignore it rather than refuse to start.
      }
    }
  }

  void save(const Volume& v) {
    json j = {{"Name", v.name},       {"Driver", v.driver},   {"CreatedAt", v.created_at},
              {"Labels", v.labels},   {"Options", v.options}, {"Anonymous", v.anonymous}};
    network::write_file_atomic(root / v.name / "volume.json", j.dump(2));
  }
};

namespace {

void check_name(const std::string& name) {
  static const std::regex valid("^[a-zA-Z0-9][a-zA-Z0-9_.-]+$");
  if (!std::regex_match(name, valid))
    throw api::HttpError(400, "create " + name + ": \"" + name +
                                  "\" includes invalid characters for a local volume name, only "
                                  "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to "
                                  "pass a host directory, use absolute path");
}

void check_options(const std::map<std::string, std::string>& options) {
  static const std::set<std::string> known = {"type", "device", "o", "size"};
  for (const auto& [key, value] : options)
    if (!known.count(key)) throw api::HttpError(400, "invalid option: \"" + key + "\"");
}

std::string join_ids(const std::vector<std::string>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + ids[i];
  return s + "]";
}

}  // namespace

VolumeStore::VolumeStore(fs::path root) : impl_(std::make_unique<Impl>()) {
  impl_->root = std::move(root);
  impl_->load();
}

VolumeStore::~VolumeStore() = default;

Volume VolumeStore::ensure(const std::string& name, const std::map<std::string, std::string>& labels,
                           bool anonymous) {
  return ensure(name, labels, {}, anonymous);
}

Volume VolumeStore::ensure(const std::string& requested,
                           const std::map<std::string, std::string>& labels,
                           const std::map<std::string, std::string>& options, bool anonymous) {
  std::string name = requested;
  if (name.empty()) {
    name = network::random_hex(32);
    anonymous = true;
  }
  check_name(name);
  check_options(options);
  std::lock_guard lock(impl_->mutex);
  if (auto it = impl_->volumes.find(name); it != impl_->volumes.end()) return it->second;
  Volume v;
  v.name = name;
  v.mountpoint = impl_->root / name / "_data";
  v.created_at = network::rfc3339_seconds_now();
  v.labels = labels;
  v.options = options;
  v.anonymous = anonymous;
  if (anonymous) v.labels.emplace(kAnonymousLabel, "");
  std::error_code ec;
  fs::create_directories(v.mountpoint, ec);
  if (ec) throw std::runtime_error("create " + name + ": " + ec.message());
  ::chmod(v.mountpoint.c_str(), 0755);
  impl_->save(v);
  impl_->volumes[name] = v;
  impl_->emit("create", v);
  return v;
}

std::optional<Volume> VolumeStore::get(const std::string& name) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->volumes.find(name);
  if (it == impl_->volumes.end()) return std::nullopt;
  return it->second;
}

std::vector<Volume> VolumeStore::list() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<Volume> out;
  for (const auto& [name, v] : impl_->volumes) out.push_back(v);
  return out;
}

void VolumeStore::remove(const std::string& name, bool force) {
  if (!get(name)) {
    if (force) return;
    throw api::HttpError(404, "get " + name + ": no such volume");
  }
  // Asked without our lock: the runtime may call ensure() under its own.
  std::vector<std::string> in_use = users(name);
  if (!in_use.empty())
    throw api::HttpError(409, "remove " + name + ": volume is in use - " + join_ids(in_use));
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->volumes.find(name);
  if (it == impl_->volumes.end()) return;
  Volume gone = it->second;
  impl_->volumes.erase(it);
  std::error_code ec;
  fs::path dir = impl_->root / name;
  fs::remove_all(dir, ec);
  impl_->emit("destroy", gone);
  if (ec) throw std::runtime_error("remove " + name + ": " + ec.message());
}

void VolumeStore::set_events(std::shared_ptr<events::EventBus> bus) {
  std::lock_guard lock(impl_->mutex);
  impl_->events = std::move(bus);
}

void VolumeStore::set_users_query(
    std::function<std::vector<std::string>(const std::string& volume)> users) {
  std::lock_guard lock(impl_->mutex);
  impl_->users = std::move(users);
}

std::vector<std::string> VolumeStore::users(const std::string& name) const {
  std::function<std::vector<std::string>(const std::string&)> query;
  {
    std::lock_guard lock(impl_->mutex);
    query = impl_->users;
  }
  return query ? query(name) : std::vector<std::string>{};
}

std::int64_t VolumeStore::size(const std::string& name) const {
  auto v = get(name);
  if (!v) return -1;
  std::int64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(
           v->mountpoint, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<std::int64_t>(st.st_blocks) * 512;
  }
  return total;
}

json VolumeStore::to_json(const Volume& v, bool with_usage) const {
  json j = {{"CreatedAt", v.created_at},
            {"Driver", v.driver},
            {"Labels", v.labels.empty() ? json(nullptr) : json(v.labels)},
            {"Mountpoint", v.mountpoint.string()},
            {"Name", v.name},
            {"Options", v.options.empty() ? json(nullptr) : json(v.options)},
            {"Scope", "local"}};
  if (with_usage)
    j["UsageData"] = {{"Size", size(v.name)},
                      {"RefCount", static_cast<std::int64_t>(users(v.name).size())}};
  return j;
}

}  // namespace berth::agent::volume
