// docker cp (HEAD, GET and PUT /containers/{id}/archive), docker export
// (GET /containers/{id}/export) and docker diff (GET /containers/{id}/changes)
// on the runtime's ContainerManager and agent/runtime/archive.h.
#include <memory>
#include <nlohmann/json.hpp>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/image/http_client.h"
#include "agent/runtime/archive.h"
#include "agent/runtime/container_fs.h"
#include "agent/runtime/container_manager.h"

namespace berth::agent::api {
namespace {

using runtime::ContainerFiles;

// ?path=, which dockerd requires (its message has no space before "cannot").
std::string archive_path(const Request& r) {
  std::string path = r.query_param("path").value_or("");
  if (path.empty()) throw HttpError(400, "bad parameter: pathcannot be empty");
  return path;
}

// X-Docker-Container-Path-Stat: base64 of the stat's JSON.
std::string stat_header(const runtime::PathStat& stat) {
  return image::base64_encode(runtime::to_json(stat).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

HttpError file_not_found(const std::string& path, const std::string& container) {
  return HttpError(404, "Could not find the file " + path + " in container " + container);
}

// The client stopped reading: the tar stops.
struct ClientGone {};

// Tar bytes out in chunks of a useful size (libarchive hands over 10 KiB blocks).
class ChunkedSink {
 public:
  explicit ChunkedSink(StreamWriter& out) : out_(out) { buf_.reserve(kChunk); }
  void write(const char* data, std::size_t size) {
    buf_.append(data, size);
    if (buf_.size() >= kChunk) flush();
  }
  void flush() {
    if (buf_.empty()) return;
    if (!out_.write(buf_)) throw ClientGone{};
    buf_.clear();
  }

 private:
  static constexpr std::size_t kChunk = 512 * 1024;
  StreamWriter& out_;
  std::string buf_;
};

// A tar streamed after the headers; a failure midway ends the stream early,
// which the client sees as a truncated archive, as with dockerd.
Response tar_stream(std::function<void(const runtime::TarSink&)> write) {
  Response resp;
  resp.status = 200;
  resp.headers.set("Content-Type", "application/x-tar");
  resp.stream = [write = std::move(write)](StreamWriter& w) {
    ChunkedSink sink(w);
    try {
      write([&sink](const char* p, std::size_t n) { sink.write(p, n); });
      sink.flush();
    } catch (...) {
    }
  };
  return resp;
}

}  // namespace

void add_container_archive_routes(Router& router, Engine& engine) {
  runtime::ContainerManager& cm = engine.containers;

  router.add("HEAD", "/containers/{id}/archive", [&cm](const Request& r) {
    const std::string& name = r.params.at("id");
    const std::string path = archive_path(r);
    auto files = cm.open_files(name);
    runtime::PathStat stat;
    try {
      stat = runtime::stat_path(files->tree(), path);
    } catch (const runtime::PathNotFound&) {
      throw file_not_found(path, name);
    }
    Response resp;
    resp.status = 200;
    resp.headers.set("X-Docker-Container-Path-Stat", stat_header(stat));
    return resp;
  });

  router.add("GET", "/containers/{id}/archive", [&cm](const Request& r) {
    const std::string& name = r.params.at("id");
    const std::string path = archive_path(r);
    std::shared_ptr<ContainerFiles> files = cm.open_files(name);
    runtime::Resource resource;
    try {
      resource = runtime::find_resource(files->tree(), path);
    } catch (const runtime::PathNotFound&) {
      throw file_not_found(path, name);
    }
    files->emit("archive-path");
    Response resp = tar_stream([files, resource](const runtime::TarSink& out) {
      runtime::write_resource(files->tree(), resource, out);
    });
    resp.headers.set("X-Docker-Container-Path-Stat", stat_header(resource.stat));
    return resp;
  });

  router.add(
      "PUT", "/containers/{id}/archive",
      [&cm](const Request& r) {
        const std::string& name = r.params.at("id");
        const std::string path = archive_path(r);
        auto files = cm.open_files(name);
        runtime::ExtractOptions options;
        options.no_overwrite_dir_non_dir = query_bool(r, "noOverwriteDirNonDir");
        options.readonly_rootfs = files->readonly_rootfs();
        if (query_bool(r, "copyUIDGID")) options.owner = [&files] { return files->user_ids(); };
        try {
          runtime::extract_archive(files->tree(), path, body_reader(r), options);
        } catch (const runtime::PathNotFound&) {
          throw file_not_found(path, name);
        }
        files->emit("extract-to-dir");
        return Response::text(200, "");
      },
      RouteOptions{.stream_body = true});

  router.add("GET", "/containers/{id}/export", [&cm](const Request& r) {
    std::shared_ptr<ContainerFiles> files = cm.open_files(r.params.at("id"));
    return tar_stream([files](const runtime::TarSink& out) {
      runtime::write_export(files->tree(), out);
      files->emit("export");
    });
  });

  router.add("GET", "/containers/{id}/changes", [&cm](const Request& r) {
    return Response::json(200, cm.changes(r.params.at("id")));
  });
}

}  // namespace berth::agent::api
