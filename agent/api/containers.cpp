// The /containers/* and /exec/* routes on the runtime's ContainerManager.
#include <nlohmann/json.hpp>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/runtime/container_manager.h"
#include "agent/runtime/json_log.h"
#include "agent/runtime/query_params.h"

namespace berth::agent::api {
namespace {

using nlohmann::json;
using runtime::ContainerManager;
using runtime::query_filters;
using runtime::query_int;

json parse_body(const Request& r, bool allow_empty) {
  if (r.body.empty() || r.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (allow_empty) return json::object();
    throw HttpError(400, "config cannot be empty in order to create a container");
  }
  try {
    return json::parse(r.body);
  } catch (const json::parse_error& e) {
    throw HttpError(400, std::string("invalid JSON: ") + e.what());
  }
}

Response no_content() {
  Response r;
  r.status = 204;
  return r;
}

Response not_modified() {
  Response r;
  r.status = 304;
  return r;
}

const char* stream_type(bool tty) {
  return tty ? "application/vnd.docker.raw-stream" : "application/vnd.docker.multiplexed-stream";
}

// Headers of a hijacked attach/exec: 101 when the client asked to upgrade.
void set_hijack_headers(const Request& req, Response& r, bool tty) {
  auto upgrade = req.headers.get("Upgrade");
  if (upgrade) {
    r.status = 101;
    r.headers.set("Connection", "Upgrade");
    r.headers.set("Upgrade", "tcp");
  } else {
    r.status = 200;
  }
  r.headers.set("Content-Type", stream_type(tty));
}

}  // namespace

void add_container_routes(Router& router, Engine& engine) {
  ContainerManager& cm = engine.containers;

  router.add("POST", "/containers/create", [&cm](const Request& r) {
    json body = parse_body(r, false);
    if (!body.is_object()) throw HttpError(400, "invalid JSON: expected an object");
    auto created = cm.create(r.query_param("name").value_or(""), body);
    return Response::json(201, {{"Id", created.id}, {"Warnings", created.warnings}});
  });

  router.add("GET", "/containers/json", [&cm](const Request& r) {
    ContainerManager::ListOptions o;
    o.all = query_bool(r, "all");
    o.size = query_bool(r, "size");
    o.limit = static_cast<int>(query_int(r, "limit").value_or(-1));
    o.filters = query_filters(r);
    return Response::json(200, cm.list(o));
  });

  router.add("POST", "/containers/prune", [&cm](const Request& r) {
    return Response::json(200, cm.prune(query_filters(r)));
  });

  router.add("GET", "/containers/{id}/json", [&cm](const Request& r) {
    return Response::json(200, cm.inspect(r.params.at("id"), query_bool(r, "size")));
  });

  router.add("POST", "/containers/{id}/start", [&cm](const Request& r) {
    return cm.start(r.params.at("id")) ? no_content() : not_modified();
  });

  router.add("POST", "/containers/{id}/stop", [&cm](const Request& r) {
    auto t = query_int(r, "t");
    std::optional<int> timeout;
    if (t) timeout = static_cast<int>(*t);
    return cm.stop(r.params.at("id"), timeout, r.query_param("signal").value_or(""))
               ? no_content()
               : not_modified();
  });

  router.add("POST", "/containers/{id}/restart", [&cm](const Request& r) {
    auto t = query_int(r, "t");
    std::optional<int> timeout;
    if (t) timeout = static_cast<int>(*t);
    cm.restart(r.params.at("id"), timeout, r.query_param("signal").value_or(""));
    return no_content();
  });

  router.add("POST", "/containers/{id}/kill", [&cm](const Request& r) {
    cm.kill(r.params.at("id"), r.query_param("signal").value_or("KILL"));
    return no_content();
  });

  router.add("POST", "/containers/{id}/pause", [&cm](const Request& r) {
    cm.pause(r.params.at("id"));
    return no_content();
  });

  router.add("POST", "/containers/{id}/unpause", [&cm](const Request& r) {
    cm.unpause(r.params.at("id"));
    return no_content();
  });

  router.add("DELETE", "/containers/{id}", [&cm](const Request& r) {
    if (query_bool(r, "link"))
      throw HttpError(400, "Legacy container links are not supported");
    cm.remove(r.params.at("id"), query_bool(r, "force"), query_bool(r, "v"));
    return no_content();
  });

  router.add("POST", "/containers/{id}/rename", [&cm](const Request& r) {
    cm.rename(r.params.at("id"), r.query_param("name").value_or(""));
    return no_content();
  });

  router.add("POST", "/containers/{id}/resize", [&cm](const Request& r) {
    auto h = query_int(r, "h"), w = query_int(r, "w");
    if (!h || !w || *h < 0 || *w < 0) throw HttpError(400, "invalid resize dimensions");
    cm.resize(r.params.at("id"), static_cast<int>(*h), static_cast<int>(*w));
    return Response::text(200, "");
  });

  router.add("POST", "/containers/{id}/wait", [&cm](const Request& r) {
    auto waiter = cm.prepare_wait(r.params.at("id"), r.query_param("condition").value_or(""));
    Response resp;
    resp.status = 200;
    resp.headers.set("Content-Type", "application/json");
    resp.stream = [waiter](StreamWriter& w) {
      auto result = waiter([&w] { return w.client_gone(); });
      if (result) w.write(result->dump() + "\n");
    };
    return resp;
  });

  router.add("GET", "/containers/{id}/logs", [&cm](const Request& r) {
    ContainerManager::LogOptions o;
    o.follow = query_bool(r, "follow");
    o.stdout_stream = query_bool(r, "stdout");
    o.stderr_stream = query_bool(r, "stderr");
    o.timestamps = query_bool(r, "timestamps");
    if (!o.stdout_stream && !o.stderr_stream)
      throw HttpError(400, "Bad parameters: you must choose at least one stream");
    for (const char* key : {"since", "until"}) {
      auto v = r.query_param(key);
      if (!v || v->empty() || *v == "0") continue;
      auto t = runtime::parse_log_time(*v);
      if (!t) throw HttpError(400, std::string("invalid value for \"") + key + "\": " + *v);
      (std::string(key) == "since" ? o.since : o.until) = *t;
    }
    if (auto tail = r.query_param("tail")) o.tail = runtime::parse_tail(*tail);
    std::string id = cm.resolve(r.params.at("id"));
    bool tty = cm.is_tty(id);
    Response resp;
    resp.status = 200;
    resp.headers.set("Content-Type", stream_type(tty));
    resp.stream = [&cm, id, o](StreamWriter& w) {
      try {
        cm.logs(id, o, [&w](std::string_view chunk) {
          if (chunk.empty()) return !w.client_gone();
          return w.write(chunk);
        });
      } catch (const std::exception&) {
        // Removed while following: the stream just ends.
      }
    };
    return resp;
  });

  router.add("POST", "/containers/{id}/attach", [&cm](const Request& r) {
    ContainerManager::AttachOptions o;
    o.stream = query_bool(r, "stream");
    o.logs = query_bool(r, "logs");
    o.in = query_bool(r, "stdin");
    o.out = query_bool(r, "stdout");
    o.err = query_bool(r, "stderr");
    o.detach_keys = r.query_param("detachKeys").value_or("");
    std::string id = cm.prepare_attach(r.params.at("id"), o);
    Response resp;
    set_hijack_headers(r, resp, cm.is_tty(id));
    resp.hijack = [&cm, id, o](Connection& conn) {
      try {
        cm.attach(id, o, conn);
      } catch (const std::exception&) {
      }
    };
    return resp;
  });

  router.add("GET", "/containers/{id}/top", [&cm](const Request& r) {
    return Response::json(200, cm.top(r.params.at("id")));
  });

  // --- exec ---
  router.add("POST", "/containers/{id}/exec", [&cm](const Request& r) {
    json body = parse_body(r, false);
    canonical_keys(body, {"AttachStdin", "AttachStdout", "AttachStderr", "ConsoleSize", "DetachKeys",
                          "Tty", "Env", "Cmd", "Privileged", "User", "WorkingDir"});
    return Response::json(201, {{"Id", cm.exec_create(r.params.at("id"), body)}});
  });

  router.add("POST", "/exec/{id}/start", [&cm](const Request& r) {
    json body = parse_body(r, true);
    std::string id = r.params.at("id");
    bool tty = cm.exec_prepare(id);
    if (body.is_object() && body.value("Detach", false)) {
      cm.exec_start(id, nullptr);
      return Response::text(200, "");
    }
    std::optional<std::pair<int, int>> size;
    if (body.is_object() && body.contains("ConsoleSize") && body["ConsoleSize"].is_array() &&
        body["ConsoleSize"].size() == 2 && body["ConsoleSize"][0].is_number_integer())
      size = std::make_pair(body["ConsoleSize"][0].get<int>(), body["ConsoleSize"][1].get<int>());
    Response resp;
    set_hijack_headers(r, resp, tty);
    resp.hijack = [&cm, id, size](Connection& conn) {
      try {
        cm.exec_start(id, &conn, size);
      } catch (const std::exception&) {
      }
    };
    return resp;
  });

  router.add("POST", "/exec/{id}/resize", [&cm](const Request& r) {
    auto h = query_int(r, "h"), w = query_int(r, "w");
    if (!h || !w || *h < 0 || *w < 0) throw HttpError(400, "invalid resize dimensions");
    cm.exec_resize(r.params.at("id"), static_cast<int>(*h), static_cast<int>(*w));
    return Response::text(200, "");
  });

  router.add("GET", "/exec/{id}/json", [&cm](const Request& r) {
    return Response::json(200, cm.exec_inspect(r.params.at("id")));
  });

  add_container_stats_routes(router, engine);
}

}  // namespace berth::agent::api
