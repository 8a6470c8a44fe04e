#include "agent/api/images.h"

#include <fnmatch.h>

#include <nlohmann/json.hpp>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/image/archive_io.h"
#include "agent/image/digest.h"
#include "agent/image/time_util.h"

namespace berth::agent::api {
namespace {
using nlohmann::json;
namespace img = berth::agent::image;

bool truthy(const Request& req, std::string_view name) {
  auto v = req.query_param(name);
  return v && (*v == "1" || *v == "true" || *v == "True" || *v == "TRUE");
}


std::string json_lines(const std::vector<json>& messages) {
  std::string out;
  for (const auto& m : messages) out += m.dump() + "\n";
  return out;
}

Response json_stream_response(const std::vector<json>& messages) {
  Response r;
  r.status = 200;
  r.headers.set("Content-Type", "application/json");
  r.body = json_lines(messages);
  return r;
}

std::int64_t created_seconds(const img::ImageRecord& rec) {
  auto ns = img::parse_rfc3339(rec.config.value("created", ""));
  return ns ? *ns / 1000000000 : 0;
}

json string_list(const std::vector<img::Reference>& refs) {
  json out = json::array();
  for (const auto& r : refs) out.push_back(r.familiar_string());
  return out;
}

using EventsPtr = std::shared_ptr<events::EventBus>;

// dockerd's LogImageEvent: Actor.ID `actor`, attribute "name", plus the labels
// of the image `image_id` when it is still there.
void emit_image(const EventsPtr& bus, const img::ImageStore& store, const char* action,
                const std::string& actor, const std::string& name, const std::string& image_id) {
  if (!bus) return;
  events::Attributes a;
  if (auto rec = image_id.empty() ? std::nullopt : store.image(image_id)) {
    json labels = rec->config.value("config", json::object()).value("Labels", json(nullptr));
    if (labels.is_object())
      for (auto& [k, v] : labels.items())
        if (v.is_string()) a[k] = v.get<std::string>();
  }
  if (!name.empty()) a["name"] = name;
  bus->emit("image", action, actor, std::move(a));
}

img::Reference parse_ref_or_400(std::string_view text, bool default_tag) {
  try {
    return default_tag ? img::parse_reference_default_tag(text) : img::parse_reference(text);
  } catch (const std::invalid_argument& e) {
    throw HttpError(400, e.what());
  }
}

img::ImageRecord require_image(const img::ImageStore& store, const std::string& name) {
  auto id = store.find(name);
  auto rec = id ? store.image(*id) : std::nullopt;
  if (!rec) throw HttpError(404, "No such image: " + name);
  return *rec;
}


bool matches_reference(const img::ImageRecord& rec, const std::string& pattern) {
  for (const auto& r : rec.tags) {
    std::string full = r.familiar_string();
    std::string name = r.familiar_name();
    if (fnmatch(pattern.c_str(), full.c_str(), FNM_PATHNAME) == 0) return true;
    if (pattern.find(':') == std::string::npos && fnmatch(pattern.c_str(), name.c_str(), FNM_PATHNAME) == 0)
      return true;
  }
  for (const auto& r : rec.digests)
    if (fnmatch(pattern.c_str(), r.familiar_string().c_str(), FNM_PATHNAME) == 0) return true;
  return false;
}

bool matches_label(const img::ImageRecord& rec, const std::string& want) {
  const json labels = rec.config.value("config", json::object()).value("Labels", json::object());
  if (!labels.is_object()) return false;
  auto eq = want.find('=');
  std::string key = want.substr(0, eq);
  if (!labels.contains(key)) return false;
  return eq == std::string::npos || labels[key] == want.substr(eq + 1);
}

Response list_images(const img::ImageStore& store, const Request& req, const HiddenImage& hidden) {
  const bool all = query_bool(req, "all");
  auto filters = image_filters(req);
  for (const auto& [key, values] : filters)
    if (key != "reference" && key != "dangling" && key != "label" && key != "before" && key != "since" &&
        key != "until")
      throw HttpError(400, "invalid filter '" + key + "'");
  auto created_of = [&](const std::string& name) {
    return created_seconds(require_image(store, name));
  };
  json out = json::array();
  auto records = store.images();
  std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) {
    return created_seconds(a) > created_seconds(b);
  });
  for (const auto& rec : records) {
    bool ok = all || !hidden || !rec.tags.empty() || !hidden(rec.id);
    if (auto it = filters.find("dangling"); it != filters.end()) {
      for (const auto& v : it->second) {
        if (v != "true" && v != "false" && v != "1" && v != "0")
          throw HttpError(400, "invalid filter 'dangling=" + v + "'");
        bool want = v == "true" || v == "1";
        ok &= rec.tags.empty() == want;
      }
    }
    if (auto it = filters.find("reference"); it != filters.end()) {
      bool any = false;
      for (const auto& p : it->second) any |= matches_reference(rec, p);
      ok &= any;
    }
    if (auto it = filters.find("label"); it != filters.end())
      for (const auto& l : it->second) ok &= matches_label(rec, l);
    if (auto it = filters.find("before"); it != filters.end())
      for (const auto& b : it->second) ok &= created_seconds(rec) < created_of(b);
    if (auto it = filters.find("since"); it != filters.end())
      for (const auto& s : it->second) ok &= created_seconds(rec) > created_of(s);
    if (ok) out.push_back(image_summary_json(rec));
  }
  return Response::json(200, out);
}

Response history(const img::ImageStore& store, const std::string& name) {
  auto rec = require_image(store, name);
  std::vector<std::uint64_t> sizes;
  for (const auto& chain : rec.chain_ids) {
    auto layer = store.layer(chain);
    sizes.push_back(layer ? layer->size : 0);
  }
  json entries = json::array();
  const json hist = rec.config.value("history", json::array());
  std::size_t layer_index = 0;
  if (hist.empty()) {
    for (std::size_t i = 0; i < sizes.size(); ++i)
      entries.push_back({{"Id", "<missing>"}, {"Created", created_seconds(rec)}, {"CreatedBy", ""},
                         {"Tags", nullptr}, {"Size", sizes[i]}, {"Comment", ""}});
  }
  for (const auto& h : hist) {
    bool empty = h.value("empty_layer", false);
    std::uint64_t size = 0;
    if (!empty && layer_index < sizes.size()) size = sizes[layer_index++];
    auto ns = img::parse_rfc3339(h.value("created", ""));
    entries.push_back({{"Id", "<missing>"},
                       {"Created", ns ? *ns / 1000000000 : 0},
                       {"CreatedBy", h.value("created_by", "")},
                       {"Tags", nullptr},
                       {"Size", size},
                       {"Comment", h.value("comment", "")}});
  }
  std::reverse(entries.begin(), entries.end());
  if (!entries.empty()) {
    entries[0]["Id"] = rec.id;
    entries[0]["Tags"] = rec.tags.empty() ? json(nullptr) : string_list(rec.tags);
  }
  return Response::json(200, entries);
}

Response tag_image(img::ImageStore& store, const Request& req, const EventsPtr& bus) {
  auto rec = require_image(store, req.params.at("name"));
  std::string repo = req.query_param("repo").value_or("");
  std::string tag = req.query_param("tag").value_or("");
  if (repo.empty()) throw HttpError(400, "repository name must have at least one component");
  img::Reference ref = parse_ref_or_400(repo, false);
  if (!ref.digest.empty()) throw HttpError(400, "refusing to create a tag with a digest reference");
  if (!tag.empty()) {
    if (!img::is_valid_tag(tag)) throw HttpError(400, "invalid tag format");
    ref.tag = tag;
  }
  if (ref.tag.empty()) ref.tag = "latest";
  store.tag(rec.id, ref);
  emit_image(bus, store, "tag", rec.id, ref.familiar_string(), rec.id);
  Response r;
  r.status = 201;
  return r;
}

Response remove_image(img::ImageStore& store, const Request& req, const EventsPtr& bus) {
  try {
    auto before = store.find(req.params.at("name"));
    auto result = store.remove(req.params.at("name"), truthy(req, "force"), !truthy(req, "noprune"));
    // dockerd: "untag" per removed reference and "delete" for the image, both on the image id.
    std::string id = before.value_or("");
    if (!result.deleted.empty()) id = result.deleted.front();
    for (std::size_t i = 0; i < result.untagged.size(); ++i)
      emit_image(bus, store, "untag", id, id, "");
    if (!result.deleted.empty()) emit_image(bus, store, "delete", id, id, "");
    json out = json::array();
    for (const auto& u : result.untagged) out.push_back({{"Untagged", u}});
    for (const auto& d : result.deleted) out.push_back({{"Deleted", d}});
    return Response::json(200, out);
  } catch (const img::ConflictError& e) {
    throw HttpError(409, e.what());
  } catch (const img::NoSuchImage& e) {
    throw HttpError(404, e.what());
  }
}

Response load(img::ImageStore& store, const Request& req, const EventsPtr& bus) {
  std::vector<std::string> lines;
  try {
    lines = img::load_images(store, body_reader(req));
  } catch (const HttpError&) {
    throw;
  } catch (const std::exception& e) {
    throw HttpError(500, e.what());
  }
  for (const auto& l : lines) {
    for (std::string_view prefix : {"Loaded image ID: ", "Loaded image: "}) {
      if (l.rfind(prefix, 0) != 0) continue;
      std::string what = l.substr(prefix.size());
      std::string id = store.find(what).value_or(what);
      emit_image(bus, store, "load", id, id, id);
      break;
    }
  }
  std::vector<json> messages;
  for (const auto& l : lines) messages.push_back(img::stream_message(l + "\n"));
  return json_stream_response(messages);
}

Response save(const img::ImageStore& store, std::vector<std::string> names) {
  if (names.empty()) throw HttpError(400, "no images specified");
  for (const auto& n : names)
    if (!store.find(n)) throw HttpError(404, "No such image: " + n);
  Response r;
  r.headers.set("Content-Type", "application/x-tar");
  r.stream = [&store, names = std::move(names)](StreamWriter& out) {
    try {
      img::save_images(store, names, [&](std::string_view chunk) { return out.write(chunk); });
    } catch (const std::exception&) {
      // Headers are gone: the client sees a truncated tarball.
    }
  };
  return r;
}

Response create(img::ImageStore& store, const img::RegistryOptions& registry, const Request& req,
                const EventsPtr& bus) {
  auto from_src = req.query_param("fromSrc");
  auto from_image = req.query_param("fromImage");
  if (from_src && !from_src->empty()) {
    if (*from_src != "-") throw HttpError(400, "importing from a URL is not supported; use fromSrc=-");
    img::ImportOptions options;
    options.repo = req.query_param("repo").value_or("");
    options.tag = req.query_param("tag").value_or("");
    options.message = req.query_param("message").value_or("");
    options.changes = query_values(req, "changes");
    if (auto platform = req.query_param("platform"); platform && !platform->empty()) {
      auto slash = platform->find('/');
      options.platform_os = platform->substr(0, slash);
      if (slash != std::string::npos) options.architecture = platform->substr(slash + 1);
    }
    std::string id;
    try {
      id = img::import_image(store, body_reader(req), options);
    } catch (const std::invalid_argument& e) {
      throw HttpError(400, e.what());
    } catch (const std::exception& e) {
      throw HttpError(500, e.what());
    }
    if (!options.repo.empty()) {
      try {
        img::Reference ref = img::parse_reference(options.repo);
        if (!options.tag.empty()) ref.tag = options.tag;
        if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
        emit_image(bus, store, "tag", id, ref.familiar_string(), id);
      } catch (const std::exception&) {
      }
    }
    emit_image(bus, store, "import", id, id, id);
    return json_stream_response({{{"status", id}}});
  }
  if (!from_image || from_image->empty()) throw HttpError(400, "fromImage or fromSrc is required");
  std::string text = *from_image;
  std::string tag = req.query_param("tag").value_or("");
  img::Reference ref = parse_ref_or_400(text, false);
  if (!tag.empty()) {
    if (tag.rfind("sha256:", 0) == 0) {
      if (!img::is_sha256_digest(tag)) throw HttpError(400, "invalid reference format");
      ref.digest = tag;
      ref.tag.clear();
    } else {
      if (!img::is_valid_tag(tag)) throw HttpError(400, "invalid reference format");
      ref.tag = tag;
    }
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  auto pull = std::make_shared<img::Pull>(store, registry, ref,
                                           img::parse_registry_auth(req.headers.get("X-Registry-Auth").value_or("")));
  try {
    pull->resolve();
  } catch (const img::RegistryError& e) {
    throw HttpError(e.status(), e.what());
  }
  Response r;
  r.headers.set("Content-Type", "application/json");
  r.stream = [pull, bus, &store, ref](StreamWriter& out) {
    bool failed = false;
    pull->run([&](const json& m) {
      if (m.contains("errorDetail") || m.contains("error")) failed = true;
      return out.write(m.dump() + "\n");
    });
    if (!failed)
      emit_image(bus, store, "pull", ref.familiar_string(), ref.familiar_name(),
                 store.find(ref.string()).value_or(""));
  };
  return r;
}

Response push(img::ImageStore& store, const img::RegistryOptions& registry, const Request& req,
              const EventsPtr& bus) {
  img::Reference repo = parse_ref_or_400(req.params.at("name"), false);
  std::string tag = req.query_param("tag").value_or("");
  if (!repo.tag.empty() && tag.empty()) tag = repo.tag;
  repo.tag.clear();
  if (!tag.empty() && !img::is_valid_tag(tag)) throw HttpError(400, "invalid tag format");
  auto push = std::make_shared<img::Push>(store, registry, repo, tag,
                                           img::parse_registry_auth(req.headers.get("X-Registry-Auth").value_or("")));
  try {
    push->check();
  } catch (const img::RegistryError& e) {
    throw HttpError(e.status(), e.what());
  }
  Response r;
  r.headers.set("Content-Type", "application/json");
  r.stream = [push, bus, &store, repo, tag](StreamWriter& out) {
    bool failed = false;
    push->run([&](const json& m) {
      if (m.contains("errorDetail") || m.contains("error")) failed = true;
      return out.write(m.dump() + "\n");
    });
    if (!failed && !tag.empty()) {
      img::Reference ref = repo;
      ref.tag = tag;
      emit_image(bus, store, "push", ref.familiar_string(), ref.familiar_name(),
                 store.find(ref.string()).value_or(""));
    }
  };
  return r;
}

}  // namespace

json image_summary_json(const img::ImageRecord& rec) {
  json labels = rec.config.value("config", json::object()).value("Labels", json(nullptr));
  if (!labels.is_object()) labels = json::object();
  return {{"Id", rec.id},
          {"ParentId", ""},
          {"RepoTags", string_list(rec.tags)},
          {"RepoDigests", string_list(rec.digests)},
          {"Created", created_seconds(rec)},
          {"Size", rec.size},
          {"SharedSize", -1},
          {"Labels", labels},
          {"Containers", -1}};
}

json image_inspect_json(const img::ImageRecord& rec) {
  json rootfs_layers = json::array();
  for (const auto& d : rec.diff_ids) rootfs_layers.push_back(d);
  json out = {{"Id", rec.id},
              {"RepoTags", string_list(rec.tags)},
              {"RepoDigests", string_list(rec.digests)},
              {"Parent", ""},
              {"Comment", rec.config.value("comment", "")},
              {"Created", rec.config.value("created", "")},
              {"DockerVersion", rec.config.value("docker_version", "")},
              {"Author", rec.config.value("author", "")},
              {"Config", rec.config.value("config", json::object())},
              {"Architecture", rec.config.value("architecture", "")},
              {"Os", rec.config.value("os", "")},
              {"Size", rec.size},
              {"GraphDriver", {{"Name", "overlay2"}, {"Data", nullptr}}},
              {"RootFS", {{"Type", "layers"}, {"Layers", rootfs_layers}}},
              {"Metadata", {{"LastTagTime", rec.last_tag_time ? img::format_rfc3339_nano(rec.last_tag_time)
                                                               : "0001-01-01T00:00:00Z"}}}};
  if (rec.config.contains("variant")) out["Variant"] = rec.config["variant"];
  if (rec.config.contains("os.version")) out["OsVersion"] = rec.config["os.version"];
  return out;
}

void add_image_routes(Router& router, img::ImageStore& store, img::RegistryOptions registry, HiddenImage hidden,
                      EventsPtr bus) {
  auto* s = &store;
  auto reg = std::make_shared<const img::RegistryOptions>(std::move(registry));
  router.add("GET", "/images/json",
             [s, hidden](const Request& req) { return list_images(*s, req, hidden); });
  router.add("POST", "/images/load", [s, bus](const Request& req) { return load(*s, req, bus); },
             RouteOptions{.stream_body = true});
  router.add("GET", "/images/get", [s](const Request& req) { return save(*s, query_values(req, "names")); });
  router.add("POST", "/images/create", [s, reg, bus](const Request& req) { return create(*s, *reg, req, bus); },
             RouteOptions{.stream_body = true});
  router.add("GET", "/images/{name...}/get",
             [s](const Request& req) { return save(*s, {req.params.at("name")}); });
  router.add("GET", "/images/{name...}/json", [s](const Request& req) {
    return Response::json(200, image_inspect_json(require_image(*s, req.params.at("name"))));
  });
  router.add("GET", "/images/{name...}/history",
             [s](const Request& req) { return history(*s, req.params.at("name")); });
  router.add("POST", "/images/{name...}/tag", [s, bus](const Request& req) { return tag_image(*s, req, bus); });
  router.add("POST", "/images/{name...}/push", [s, reg, bus](const Request& req) { return push(*s, *reg, req, bus); });
  router.add("DELETE", "/images/{name...}", [s, bus](const Request& req) { return remove_image(*s, req, bus); });
}

void add_image_routes(Router& router, Engine& engine) {
  add_image_routes(router, engine.images,
                   img::RegistryOptions{engine.options.insecure_registries, engine.options.registry_mirrors, {}},
                   engine.intermediate_image, engine.events);
}

std::map<std::string, std::vector<std::string>> image_filters(const Request& req) {
  std::map<std::string, std::vector<std::string>> out;
  auto text = req.query_param("filters");
  if (!text || text->empty()) return out;
  json f = json::parse(*text, nullptr, false);
  if (!f.is_object()) throw HttpError(400, "invalid filter: " + *text);
  for (const auto& [key, values] : f.items()) {
    if (values.is_object()) {
      for (const auto& [v, on] : values.items()) out[key].push_back(v);
    } else if (values.is_array()) {
      for (const auto& v : values) {
        if (!v.is_string()) throw HttpError(400, "invalid filter: " + *text);
        out[key].push_back(v.get<std::string>());
      }
    } else {
      throw HttpError(400, "invalid filter: " + *text);
    }
  }
  return out;
}

}  // namespace berth::agent::api
