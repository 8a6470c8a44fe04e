// POST /commit: docker commit, as dockerd's CreateImageFromContainer does it.
// The container's upper directory becomes a real layer on its image's layers
// (image::write_layer_tar, stored as the builder stores its steps), and the
// new image config is the container's Config (or the body's, completed from
// the container's), with the `changes` applied as Dockerfile instructions.
#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/build/config_changes.h"
#include "agent/build/error.h"
#include "agent/build/store_layer.h"
#include "agent/build_info.h"
#include "agent/image/diff.h"
#include "agent/image/reference.h"
#include "agent/image/time_util.h"
#include "agent/runtime/container_manager.h"

namespace berth::agent::api {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The body's Config fields of the wrong JSON type are a 400, as dockerd's
// decoder answers them.
void check_config_types(const json& c) {
  auto bad = [](const std::string& key, const char* want) {
    throw HttpError(400, "invalid JSON: json: cannot unmarshal into Go struct field Config." + key + " of type " + want);
  };
  for (const char* k : {"Hostname", "Domainname", "User", "WorkingDir", "StopSignal", "Image", "MacAddress"})
    if (c.contains(k) && !c[k].is_null() && !c[k].is_string()) bad(k, "string");
  for (const char* k : {"AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce",
                        "NetworkDisabled", "ArgsEscaped"})
    if (c.contains(k) && !c[k].is_null() && !c[k].is_boolean()) bad(k, "bool");
  for (const char* k : {"Labels", "ExposedPorts", "Volumes", "Healthcheck"})
    if (c.contains(k) && !c[k].is_null() && !c[k].is_object()) bad(k, "object");
  if (c.contains("Labels") && c["Labels"].is_object())
    for (const auto& [_, v] : c["Labels"].items())
      if (!v.is_string()) bad("Labels", "map[string]string");
  for (const char* k : {"Env", "Cmd", "Entrypoint", "Shell", "OnBuild"}) {
    if (!c.contains(k) || c[k].is_null()) continue;
    if (c[k].is_string() && (std::string(k) == "Cmd" || std::string(k) == "Entrypoint")) continue;
    if (!c[k].is_array()) bad(k, "[]string");
    for (const json& v : c[k])
      if (!v.is_string()) bad(k, "[]string");
  }
}

// The body as dockerd decodes it into a container.Config: its fields only,
// their names matched without regard to case, Cmd and Entrypoint as a list
// even when given as a string (dockerd's StrSlice).
json config_fields(const json& body) {
  static const char* const kFields[] = {
      "Hostname",   "Domainname",  "User",         "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
      "Tty",        "OpenStdin",   "StdinOnce",    "Env",         "Cmd",          "Healthcheck",  "ArgsEscaped",
      "Image",      "Volumes",     "WorkingDir",   "Entrypoint",  "NetworkDisabled", "MacAddress", "OnBuild",
      "Labels",     "StopSignal",  "StopTimeout",  "Shell"};
  auto lower = [](std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  json out = json::object();
  for (const auto& [key, value] : body.items())
    for (const char* field : kFields)
      if (lower(key) == lower(field)) out[field] = value;
  for (const char* k : {"Cmd", "Entrypoint"})
    if (out.contains(k) && out[k].is_string()) out[k] = json::array({out[k]});
  return out;
}

bool empty_value(const json& j, const char* key) {
  return !j.contains(key) || j[key].is_null() || (j[key].is_string() && j[key].get<std::string>().empty()) ||
         ((j[key].is_array() || j[key].is_object()) && j[key].empty());
}

std::string env_key(const std::string& kv) { return kv.substr(0, kv.find('=')); }

// dockerd's merge(): what the committed config leaves empty comes from the
// container's.
void merge_config(json& user, const json& container) {
  auto take = [&](const char* k) {
    if (container.contains(k)) user[k] = container[k];
  };
  if (empty_value(user, "User")) take("User");
  if (empty_value(user, "ExposedPorts")) {
    take("ExposedPorts");
  } else if (container.contains("ExposedPorts") && container["ExposedPorts"].is_object()) {
    for (const auto& [port, v] : container["ExposedPorts"].items())
      if (!user["ExposedPorts"].contains(port)) user["ExposedPorts"][port] = v;
  }
  if (empty_value(user, "Env")) {
    take("Env");
  } else if (container.contains("Env") && container["Env"].is_array()) {
    for (const json& e : container["Env"]) {
      if (!e.is_string()) continue;
      bool found = false;
      for (const json& u : user["Env"])
        if (u.is_string() && env_key(u.get<std::string>()) == env_key(e.get<std::string>())) found = true;
      if (!found) user["Env"].push_back(e);
    }
  }
  if (!user.contains("Labels") || !user["Labels"].is_object()) user["Labels"] = json::object();
  if (container.contains("Labels") && container["Labels"].is_object())
    for (const auto& [k, v] : container["Labels"].items())
      if (!user["Labels"].contains(k)) user["Labels"][k] = v;
  if (empty_value(user, "Entrypoint")) {
    if (empty_value(user, "Cmd")) {
      take("Cmd");
      take("ArgsEscaped");
    }
    if (!user.contains("Entrypoint") || user["Entrypoint"].is_null()) take("Entrypoint");
  }
  if (container.contains("Healthcheck") && container["Healthcheck"].is_object()) {
    if (!user.contains("Healthcheck") || !user["Healthcheck"].is_object()) {
      take("Healthcheck");
    } else {
      json& h = user["Healthcheck"];
      for (const char* k : {"Test", "Interval", "Timeout", "StartPeriod", "Retries"})
        if (empty_value(h, k) || (h[k].is_number() && h[k].get<std::int64_t>() == 0))
          if (container["Healthcheck"].contains(k)) h[k] = container["Healthcheck"][k];
    }
  }
  if (empty_value(user, "WorkingDir")) take("WorkingDir");
  if (empty_value(user, "Volumes")) {
    take("Volumes");
  } else if (container.contains("Volumes") && container["Volumes"].is_object()) {
    for (const auto& [k, v] : container["Volumes"].items()) user["Volumes"][k] = v;
  }
  if (empty_value(user, "StopSignal")) take("StopSignal");
}

// `repo` and `tag` as dockerd's RepoTagReference reads them; nullopt without a repo.
std::optional<image::Reference> commit_reference(const std::string& repo, const std::string& tag) {
  if (repo.empty()) return std::nullopt;
  image::Reference ref;
  try {
    ref = image::parse_reference(repo);
  } catch (const std::exception& e) {
    throw HttpError(400, e.what());
  }
  if (!ref.digest.empty()) throw HttpError(400, "cannot import digest reference");
  if (!tag.empty()) {
    if (!image::is_valid_tag(tag)) throw HttpError(400, "invalid tag format");
    ref.tag = tag;
  }
  if (ref.tag.empty()) ref.tag = "latest";
  return ref;
}

std::string now_text() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return image::format_rfc3339_nano(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
}

std::string joined(const json& argv) {
  std::string out;
  if (argv.is_array())
    for (const json& a : argv)
      if (a.is_string()) out += (out.empty() ? "" : " ") + a.get<std::string>();
  return out;
}

// Pauses a running container for as long as it lives (commit's pause=true).
class PauseGuard {
 public:
  PauseGuard(runtime::ContainerManager& cm, const std::string& id, bool pause) : cm_(cm), id_(id) {
    if (!pause) return;
    try {
      cm_.pause(id_);
      paused_ = true;
    } catch (const HttpError& e) {
      if (e.status() != 409) throw;  // not running, or already paused: nothing to do
    }
  }
  ~PauseGuard() {
    if (!paused_) return;
    try {
      cm_.unpause(id_);
    } catch (const std::exception&) {
    }
  }
  PauseGuard(const PauseGuard&) = delete;
  PauseGuard& operator=(const PauseGuard&) = delete;

 private:
  runtime::ContainerManager& cm_;
  std::string id_;
  bool paused_ = false;
};

// The image config of the commit: the parent's layers and history plus the
// new layer (when something changed), as dockerd's NewChildImage.
json child_image(const json& parent, const json& config, const json& container_config, const std::string& container_id,
                 const std::string& author, const std::string& comment, const std::optional<std::string>& diff_id) {
  json img = json::object();
  img["architecture"] = parent.value("architecture", "amd64");
  if (parent.contains("variant")) img["variant"] = parent["variant"];
  img["os"] = "linux";
  for (const char* k : {"os.version", "os.features"})
    if (parent.contains(k)) img[k] = parent[k];
  img["config"] = config;
  img["container"] = container_id;
  img["container_config"] = container_config;
  img["created"] = now_text();
  img["docker_version"] = kAgentVersion;
  if (!author.empty()) img["author"] = author;
  if (!comment.empty()) img["comment"] = comment;  // what image inspect's Comment shows
  json rootfs = parent.contains("rootfs") && parent["rootfs"].is_object() ? parent["rootfs"] : json::object();
  rootfs["type"] = "layers";
  if (!rootfs.contains("diff_ids") || !rootfs["diff_ids"].is_array()) rootfs["diff_ids"] = json::array();
  if (diff_id) rootfs["diff_ids"].push_back(*diff_id);
  img["rootfs"] = rootfs;
  json history = parent.contains("history") && parent["history"].is_array() ? parent["history"] : json::array();
  json entry = {{"created", img["created"]}, {"created_by", joined(container_config.value("Cmd", json()))}};
  if (!author.empty()) entry["author"] = author;
  if (!comment.empty()) entry["comment"] = comment;
  if (!diff_id) entry["empty_layer"] = true;
  history.push_back(entry);
  img["history"] = history;
  return img;
}

bool has_entries(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && !fs::is_empty(dir, ec);
}

}  // namespace

void add_commit_routes(Router& router, Engine& engine) {
  router.add("POST", "/commit", [&engine](const Request& r) {
    runtime::ContainerManager& cm = engine.containers;
    const std::string name = r.query_param("container").value_or("");
    const std::string author = r.query_param("author").value_or("");
    const std::string comment = r.query_param("comment").value_or("");
    const bool pause = r.query_param("pause") ? query_bool(r, "pause") : true;

    // The body: a Config to commit instead of the container's, completed from it.
    json user_config;
    if (r.body.find_first_not_of(" \t\r\n") != std::string::npos) {
      try {
        user_config = json::parse(r.body);
      } catch (const json::parse_error& e) {
        throw HttpError(400, std::string("invalid JSON: ") + e.what());
      }
      if (!user_config.is_null() && !user_config.is_object())
        throw HttpError(400, "invalid JSON: json: cannot unmarshal " + std::string(user_config.type_name()) +
                                 " into Go value of type container.Config");
      if (user_config.is_object()) {
        user_config = config_fields(user_config);
        check_config_types(user_config);
      }
    }
    const auto ref = commit_reference(r.query_param("repo").value_or(""), r.query_param("tag").value_or(""));

    const json container = cm.inspect(name);
    const std::string id = container.value("Id", "");
    const json container_config = container.value("Config", json::object());
    if (container.value("State", json::object()).value("Dead", false))
      throw HttpError(409, "You cannot commit container " + id + " which is Dead");

    json config;
    try {
      const json& base = user_config.is_object() && !user_config.empty() ? user_config : container_config;
      config = build::apply_changes(base, query_values(r, "changes"));
    } catch (const build::BuildError& e) {
      throw HttpError(400, e.what());
    }
    merge_config(config, container_config);

    image::ImageStore& store = engine.images;
    const std::string parent_id = container.value("Image", "");
    auto parent = store.image(parent_id);
    if (!parent) throw HttpError(404, "No such image: " + parent_id);

    std::optional<std::string> diff_id;
    {
      PauseGuard paused(cm, id, pause);
      const fs::path upper = cm.changes_dir(id);
      if (has_entries(upper)) {
        const std::string chain = parent->chain_ids.empty() ? "" : parent->chain_ids.back();
        image::LayerTar layer =
            build::store_layer(store, chain, [&](const auto& sink) { image::write_layer_tar(upper, sink); });
        diff_id = layer.diff_id;
      }
    }
    const json img = child_image(parent->config, config, container_config, id, author, comment, diff_id);
    const std::string image_id = store.add_image(img.dump(-1, ' ', false, json::error_handler_t::replace));

    std::string image_ref;
    if (ref) {
      store.tag(image_id, *ref);
      image_ref = ref->familiar_string();
      if (engine.events) engine.events->emit("image", "tag", image_id, {{"name", image_ref}});
    }
    cm.emit_event(id, "commit", {{"comment", comment}, {"imageID", image_id}, {"imageRef", image_ref}});
    return Response::json(201, {{"Id", image_id}});
  });
}

}  // namespace berth::agent::api
