// POST /build (dockerd's classic builder) and POST /build/prune.
#include <nlohmann/json.hpp>
#include <set>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/build/builder.h"
#include "agent/build/cache.h"
#include "agent/build/context.h"
#include "agent/build/error.h"
#include "agent/build/runtime_backend.h"
#include "agent/image/fs_util.h"
#include "agent/image/reference.h"

namespace berth::agent::api {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A build's private directory under <data_root>/build/tmp, removed at the end.
struct WorkDir {
  fs::path path;
  explicit WorkDir(const fs::path& root) : path(root / image::random_suffix()) {
    fs::create_directories(path / "context");
  }
  ~WorkDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The stream to the client: dockerd's JSON messages, one per line.
class StreamOutput final : public build::BuildOutput {
 public:
  StreamOutput(StreamWriter& writer, bool quiet) : writer_(writer), quiet_(quiet) {}
  void stream(std::string_view text) override {
    if (!quiet_) send({{"stream", std::string(text)}});
  }
  void message(const json& m) override {
    if (!quiet_ || m.contains("aux")) send(m);
  }
  bool cancelled() override { return gone_ || writer_.client_gone(); }
  void send(const json& m) {
    if (!gone_ && !writer_.write(m.dump(-1, ' ', false, json::error_handler_t::replace) + "\n")) gone_ = true;
  }

 private:
  StreamWriter& writer_;
  bool quiet_;
  bool gone_ = false;
};

std::int64_t query_int(const Request& req, const char* name) {
  auto v = req.query_param(name);
  if (!v || v->empty()) return 0;
  try {
    std::size_t used = 0;
    long long n = std::stoll(*v, &used);
    if (used != v->size()) throw std::invalid_argument(name);
    return n;
  } catch (const std::exception&) {
    throw HttpError(400, std::string("invalid value for ") + name + ": " + *v);
  }
}

json query_json(const Request& req, const char* name) {
  auto v = req.query_param(name);
  if (!v || v->empty()) return nullptr;
  json j = json::parse(*v, nullptr, false);
  if (j.is_discarded()) throw HttpError(400, std::string("invalid ") + name + " JSON: " + *v);
  return j;
}

build::BuildOptions parse_options(const Request& req) {
  if (auto remote = req.query_param("remote"); remote && !remote->empty())
    throw HttpError(400, "remote build contexts (remote=" + *remote +
                             ") are not supported by berth-agent: send the context as the request body "
                             "(docker build PATH, or docker build - < context.tar)");
  if (auto outputs = req.query_param("outputs"); outputs && !outputs->empty() && *outputs != "[]" &&
                                                   *outputs != "null")
    throw HttpError(400, "the outputs option needs BuildKit, which berth-agent does not run; leave out --output");
  if (query_bool(req, "squash"))
    throw HttpError(400, "--squash is only supported on a Docker daemon with experimental features enabled, "
                         "which berth-agent is not");
  if (auto version = req.query_param("version"); version && *version == "2")
    throw HttpError(400, "BuildKit (version=2) is not supported by berth-agent: use the classic builder "
                         "(DOCKER_BUILDKIT=0)");
  if (auto platform = req.query_param("platform"); platform && !platform->empty() &&
                                                    *platform != "linux/amd64" && *platform != "linux")
    throw HttpError(400, "\"" + *platform + "\": berth-agent builds for linux/amd64 only");

  build::BuildOptions o;
  for (const std::string& t : query_values(req, "t")) {
    if (t.empty()) continue;
    try {
      o.tags.push_back(image::parse_reference_default_tag(t).familiar_string());
    } catch (const std::exception& e) {
      throw HttpError(400, "invalid reference format: " + t);
    }
  }
  if (auto f = req.query_param("dockerfile"); f && !f->empty()) o.dockerfile = *f;
  if (json args = query_json(req, "buildargs"); args.is_object()) {
    for (const auto& [k, v] : args.items())
      o.build_args[k] = v.is_string() ? std::optional<std::string>(v.get<std::string>()) : std::nullopt;
  } else if (!args.is_null()) {
    throw HttpError(400, "invalid buildargs: expected a JSON object");
  }
  if (json labels = query_json(req, "labels"); labels.is_object()) {
    for (const auto& [k, v] : labels.items())
      if (v.is_string()) o.labels[k] = v.get<std::string>();
  }
  o.target = req.query_param("target").value_or("");
  o.no_cache = query_bool(req, "nocache");
  o.pull = query_bool(req, "pull");
  if (auto rm = req.query_param("rm"); rm) o.remove = query_bool(req, "rm");
  o.force_remove = query_bool(req, "forcerm");
  o.quiet = query_bool(req, "q");
  if (json from = query_json(req, "cachefrom"); from.is_array())
    for (const json& f : from)
      if (f.is_string()) o.cache_from.push_back(f);

  json& hc = o.host_config;
  std::string network = req.query_param("networkmode").value_or("");
  hc["NetworkMode"] = network.empty() || network == "default" ? "bridge" : network;
  if (json hosts = query_values(req, "extrahosts"); !hosts.empty()) hc["ExtraHosts"] = hosts;
  for (const auto& [param, field] : std::vector<std::pair<const char*, const char*>>{
           {"shmsize", "ShmSize"}, {"memory", "Memory"}, {"memswap", "MemorySwap"},
           {"cpushares", "CpuShares"}, {"cpuperiod", "CpuPeriod"}, {"cpuquota", "CpuQuota"}})
    if (std::int64_t v = query_int(req, param); v != 0) hc[field] = v;
  if (auto cpus = req.query_param("cpusetcpus"); cpus && !cpus->empty()) hc["CpusetCpus"] = *cpus;
  if (auto mems = req.query_param("cpusetmems"); mems && !mems->empty()) hc["CpusetMems"] = *mems;
  if (json ulimits = query_json(req, "ulimits"); ulimits.is_array()) hc["Ulimits"] = ulimits;
  return o;
}


Response build(Engine& engine, const Request& req) {
  build::BuildOptions options = parse_options(req);
  const fs::path root = fs::path(engine.options.data_root) / "build" / "tmp";
  auto work = std::make_shared<WorkDir>(root);
  options.work_dir = work->path;
  try {
    build::receive_context(body_reader(req), work->path / "context", engine.options.build_max_context_bytes);
  } catch (const build::BuildError& e) {
    throw HttpError(400, e.what());
  }
  const std::string registry_config = req.headers.get("X-Registry-Config").value_or("");
  Response r;
  r.headers.set("Content-Type", "application/json");
  r.stream = [&engine, work, options, registry_config](StreamWriter& writer) {
    StreamOutput out(writer, options.quiet);
    build::RuntimeBackend backend(engine, *engine.build_cache, registry_config);
    try {
      build::Builder builder(backend, out, options);
      std::string id = builder.build(work->path / "context");
      engine.build_cache->mark_result(id);
      if (options.quiet) out.send({{"stream", id + "\n"}});
    } catch (const build::RunFailed& e) {
      out.send({{"errorDetail", {{"code", e.exit_code()}, {"message", e.what()}}}, {"error", e.what()}});
    } catch (const std::exception& e) {
      out.send({{"errorDetail", {{"message", e.what()}}}, {"error", e.what()}});
    }
  };
  return r;
}

// POST /build/prune: the cache's intermediate images that nothing else holds.
Response prune(Engine& engine, const Request& req) {
  const bool all = query_bool(req, "all");
  std::int64_t keep_storage = 0;
  keep_storage = query_int(req, "keep-storage");
  json filters = query_json(req, "filters");
  std::int64_t until = 0;  // unix seconds; entries last used before it go
  if (filters.is_object())
    for (const auto& [key, values] : filters.items()) {
      if (key != "until" && key != "unused-for")
        throw HttpError(400, "invalid filter '" + key + "'");
      for (const auto& [v, _] : values.items()) {
        auto parse = [&](const std::string& text) -> std::int64_t {
          // "24h", "90m", "30s" or a unix time.
          char unit = text.empty() ? 's' : text.back();
          std::string digits = std::isdigit(static_cast<unsigned char>(unit)) ? text : text.substr(0, text.size() - 1);
          std::int64_t n = std::stoll(digits);
          std::int64_t mult = unit == 'h' ? 3600 : unit == 'm' ? 60 : 1;
          auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
          return std::isdigit(static_cast<unsigned char>(unit)) && key == "until" ? n : now - n * mult;
        };
        try {
          until = parse(v);
        } catch (const std::exception&) {
          throw HttpError(400, "invalid filter value " + key + "=" + v);
        }
      }
    }
  auto& store = engine.images;
  std::uint64_t total = 0;
  std::set<std::string> intermediate;
  for (const auto& e : engine.build_cache->entries()) {
    if (auto rec = store.image(e.image_id)) total += rec->size;
    if (engine.build_cache->is_intermediate(e.image_id)) intermediate.insert(e.image_id);
  }
  std::vector<build::BuildCache::Entry> dropped = engine.build_cache->forget([&](const build::BuildCache::Entry& e) {
    if (until && e.last_used >= until) return false;
    if (keep_storage > 0 && total <= static_cast<std::uint64_t>(keep_storage)) return false;
    // Without --all, the steps of images someone can still name are kept.
    if (!all && !intermediate.count(e.image_id)) return false;
    if (auto rec = store.image(e.image_id)) total -= std::min<std::uint64_t>(total, rec->size);
    return true;
  });
  json deleted = json::array();
  std::uint64_t reclaimed = 0;
  for (const auto& e : dropped) {
    auto rec = store.image(e.image_id);
    if (!rec || !rec->tags.empty() || !rec->digests.empty() || !store.container_using(e.image_id).empty()) continue;
    try {
      auto removed = store.remove(e.image_id, false);
      reclaimed += rec->size;
      for (const std::string& id : removed.deleted) deleted.push_back(id);
    } catch (const std::exception&) {
      // Still a parent of a kept image, or in use: it stays.
    }
  }
  return Response::json(200, {{"CachesDeleted", deleted}, {"SpaceReclaimed", reclaimed}});
}

}  // namespace

void add_build_routes(Router& router, Engine& engine) {
  Engine* e = &engine;
  router.add("POST", "/build", [e](const Request& req) { return build(*e, req); },
             RouteOptions{.stream_body = true});
  router.add("POST", "/build/prune", [e](const Request& req) { return prune(*e, req); });
}

}  // namespace berth::agent::api
