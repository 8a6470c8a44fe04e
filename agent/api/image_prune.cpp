// POST /images/prune (docker image prune, docker system prune).
#include <cctype>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "agent/api/images.h"
#include "agent/api/routes.h"
#include "agent/image/time_util.h"

namespace berth::agent::api {
namespace {
using nlohmann::json;
namespace img = berth::agent::image;

// Go's time.ParseDuration for "24h", "1h30m", "10s", "1.5h".
std::optional<std::int64_t> parse_duration_ns(const std::string& s) {
  if (s.empty()) return std::nullopt;
  static const std::map<std::string, double> units = {{"ns", 1}, {"us", 1e3}, {"µs", 1e3}, {"ms", 1e6},
                                                      {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
  double total = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (start == i) return std::nullopt;
    double n = std::stod(s.substr(start, i - start));
    std::size_t ustart = i;
    while (i < s.size() && !std::isdigit(static_cast<unsigned char>(s[i])) && s[i] != '.') ++i;
    auto it = units.find(s.substr(ustart, i - ustart));
    if (it == units.end()) return std::nullopt;
    total += n * it->second;
  }
  return static_cast<std::int64_t>(total);
}

// dockerd's until: a unix timestamp (seconds[.fraction]), an RFC 3339 time, or
// a duration before now. Unix nanoseconds.
std::int64_t parse_until(const std::string& v) {
  if (auto t = img::parse_rfc3339(v)) return *t;
  if (!v.empty() && v.find_first_not_of("0123456789.") == std::string::npos) {
    try {
      return static_cast<std::int64_t>(std::stod(v) * 1e9);
    } catch (const std::exception&) {
    }
  }
  if (auto d = parse_duration_ns(v)) return img::now_unix_nanos() - *d;
  throw HttpError(400, "failed to parse value as time or duration: \"" + v + "\"");
}

bool has_label(const img::ImageRecord& rec, const std::string& want) {
  const json cfg = rec.config.value("config", json::object());
  const json labels = cfg.is_object() ? cfg.value("Labels", json::object()) : json::object();
  if (!labels.is_object()) return false;
  auto eq = want.find('=');
  std::string key = want.substr(0, eq);
  if (!labels.contains(key)) return false;
  return eq == std::string::npos || labels[key] == want.substr(eq + 1);
}

Response prune(img::ImageStore& store, const Request& req, const HiddenImage& hidden,
               const std::shared_ptr<events::EventBus>& bus) {
  auto filters = image_filters(req);
  bool dangling = true;
  std::optional<std::int64_t> until;
  for (const auto& [key, values] : filters) {
    if (key == "dangling") {
      for (const auto& v : values) {
        // Go's strconv.ParseBool, as dockerd's GetBoolOrDefault (docker-py sends "False").
        if (v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" || v == "True") dangling = true;
        else if (v == "0" || v == "f" || v == "F" || v == "false" || v == "FALSE" || v == "False") dangling = false;
        else throw HttpError(400, "invalid filter 'dangling=" + v + "'");
      }
    } else if (key == "until") {
      for (const auto& v : values) until = parse_until(v);
    } else if (key != "label" && key != "label!") {
      throw HttpError(400, "invalid filter '" + key + "'");
    }
  }
  json deleted = json::array();
  std::uint64_t reclaimed = 0;
  for (const auto& rec : store.images()) {
    if (dangling && !rec.tags.empty()) continue;
    // The builder's intermediate images belong to the build cache (docker builder prune).
    if (dangling && hidden && hidden(rec.id)) continue;
    if (!store.container_using(rec.id).empty()) continue;
    if (until) {
      auto created = img::parse_rfc3339(rec.config.value("created", ""));
      if (!created || *created >= *until) continue;
    }
    bool ok = true;
    if (auto it = filters.find("label"); it != filters.end())
      for (const auto& l : it->second) ok &= has_label(rec, l);
    if (auto it = filters.find("label!"); it != filters.end())
      for (const auto& l : it->second) ok &= !has_label(rec, l);
    if (!ok) continue;
    // As dockerd: each reference goes (the last one deletes the image), or the id when it has none.
    std::vector<std::string> names;
    for (const auto& r : rec.tags) names.push_back(r.string());
    for (const auto& r : rec.digests) names.push_back(r.string());
    if (names.empty()) names.push_back(rec.id);
    // dockerd reclaims the layers that went with the image, not those it shared.
    std::map<std::string, std::uint64_t> layer_sizes;
    for (const auto& chain : rec.chain_ids)
      if (auto info = store.layer(chain)) layer_sizes[chain] = info->size;
    bool gone = false;
    for (const auto& name : names) {
      try {
        auto result = store.remove(name, false, true);
        for (const auto& u : result.untagged) {
          deleted.push_back({{"Untagged", u}});
          if (bus) bus->emit("image", "untag", rec.id, {{"name", rec.id}});
        }
        for (const auto& d : result.deleted) {
          deleted.push_back({{"Deleted", d}});
          if (auto it = layer_sizes.find(d); it != layer_sizes.end()) reclaimed += it->second;
        }
        if (!result.deleted.empty()) gone = true;
      } catch (const std::exception&) {
        // In use or gone meanwhile: it stays.
      }
    }
    if (gone && bus) bus->emit("image", "delete", rec.id, {{"name", rec.id}});
  }
  if (bus) bus->emit("image", "prune", "", {{"reclaimed", std::to_string(reclaimed)}});
  return Response::json(200, {{"ImagesDeleted", deleted.empty() ? json(nullptr) : deleted},
                              {"SpaceReclaimed", reclaimed}});
}

}  // namespace

void add_image_prune_routes(Router& router, img::ImageStore& store, HiddenImage hidden,
                            std::shared_ptr<events::EventBus> events) {
  auto* s = &store;
  router.add("POST", "/images/prune",
             [s, hidden, events](const Request& req) { return prune(*s, req, hidden, events); });
}

void add_image_prune_routes(Router& router, Engine& engine) {
  add_image_prune_routes(router, engine.images, engine.intermediate_image, engine.events);
}

}  // namespace berth::agent::api
