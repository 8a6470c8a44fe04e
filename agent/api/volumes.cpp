// /volumes/*: docker volume create/ls/inspect/rm/prune.
#include <nlohmann/json.hpp>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/network/util.h"
#include "agent/volume/volume_routes.h"
#include "agent/volume/volume_store.h"

namespace berth::agent::api {
namespace {

using nlohmann::json;
using volume::Volume;
using volume::VolumeStore;

Response create(VolumeStore& store, const Request& req) {
  json body = parse_json_object(req);
  std::string name = body.value("Name", "");
  std::string driver = body.value("Driver", "");
  if (!driver.empty() && driver != "local")
    throw HttpError(404, "error looking up volume plugin " + driver + ": plugin \"" + driver +
                             "\" not found");
  Volume v = store.ensure(name, string_map_field(body, "Labels"), string_map_field(body, "DriverOpts"), false);
  return Response::json(201, store.to_json(v));
}

Response list(VolumeStore& store, const Request& req) {
  auto filters = network::parse_filters(req.query_param("filters").value_or(""),
                                        {"name", "label", "dangling", "driver"});
  std::optional<bool> dangling;
  for (const std::string& d : filters["dangling"]) dangling = network::filter_bool("dangling", d);
  json volumes = json::array();
  for (const Volume& v : store.list()) {
    bool ok = true;
    if (!filters["name"].empty()) {
      ok = false;
      for (const std::string& n : filters["name"]) ok = ok || v.name.find(n) != std::string::npos;
    }
    for (const std::string& l : filters["label"]) ok = ok && network::label_matches(v.labels, l);
    if (!filters["driver"].empty()) {
      bool any = false;
      for (const std::string& d : filters["driver"]) any = any || d == v.driver;
      ok = ok && any;
    }
    if (ok && dangling) ok = store.users(v.name).empty() == *dangling;
    if (ok) volumes.push_back(store.to_json(v));
  }
  return Response::json(200, {{"Volumes", volumes}, {"Warnings", nullptr}});
}

Response inspect(VolumeStore& store, const Request& req) {
  const std::string& name = req.params.at("name");
  auto v = store.get(name);
  if (!v) throw HttpError(404, "get " + name + ": no such volume");
  return Response::json(200, store.to_json(*v));
}

Response remove(VolumeStore& store, const Request& req) {
  store.remove(req.params.at("name"), query_bool(req, "force"));
  Response r;
  r.status = 204;
  return r;
}

Response prune(VolumeStore& store, const Request& req) {
  auto filters = network::parse_filters(req.query_param("filters").value_or(""),
                                        {"label", "label!", "all"});
  bool all = false;
  for (const std::string& a : filters["all"]) all = network::filter_bool("all", a);
  json deleted = json::array();
  std::int64_t reclaimed = 0;
  for (const Volume& v : store.list()) {
    if (!all && !v.labels.count(volume::kAnonymousLabel)) continue;
    bool ok = true;
    for (const std::string& l : filters["label"]) ok = ok && network::label_matches(v.labels, l);
    for (const std::string& l : filters["label!"]) ok = ok && !network::label_matches(v.labels, l);
    if (!ok || !store.users(v.name).empty()) continue;
    std::int64_t size = store.size(v.name);
    try {
      store.remove(v.name, true);
    } catch (const HttpError&) {
      continue;  // became used meanwhile
    }
    deleted.push_back(v.name);
    reclaimed += size > 0 ? size : 0;
  }
  return Response::json(200, {{"VolumesDeleted", deleted.empty() ? json(nullptr) : deleted},
                              {"SpaceReclaimed", reclaimed}});
}

}  // namespace

void add_volume_routes(Router& router, Engine& engine) { add_volume_routes(router, engine.volumes); }

void add_volume_routes(Router& router, VolumeStore& store) {
  router.add("POST", "/volumes/create", [&store](const Request& r) { return create(store, r); });
  router.add("GET", "/volumes", [&store](const Request& r) { return list(store, r); });
  router.add("POST", "/volumes/prune", [&store](const Request& r) { return prune(store, r); });
  router.add("GET", "/volumes/{name}", [&store](const Request& r) { return inspect(store, r); });
  router.add("DELETE", "/volumes/{name}", [&store](const Request& r) { return remove(store, r); });
}

}  // namespace berth::agent::api
