#pragma once
// Containers: records persisted under <data_root>/containers/ID, bundles
// (config.json + overlay rootfs) run by crun under a per-container
// "berth-agent shim" process that owns the stdio, the json-file log and the
// exit status, so containers outlive an agent restart. Thread-safe.
// The public surface is owned by the runtime module and grows with it.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/image_store.h"

namespace berth::agent {
struct Engine;
namespace api {
class Connection;
}
}  // namespace berth::agent

namespace berth::agent::runtime {

class ContainerFiles;  // container_fs.h

class ContainerManager {
 public:
  struct Options {
    // Mount the image layers with overlayfs at start. Off in host tests
    // (the rootfs is then a plain directory).
    bool mount_overlay = true;
    // Where crun's cgroupfs manager puts containers (cgroupsPath "/berth/<id>").
    std::string cgroup_root = "/sys/fs/cgroup";
    // Image lookup; empty: engine.images.resolve.
    std::function<std::optional<image::ResolvedImage>(std::string_view)> resolve_image;
    // Marker of "the agent already started once since boot".
    std::string boot_marker = "/run/berth/runtime-started";
    // Short-lived sockets (exec consoles); unix socket paths must stay short.
    std::string run_dir = "/run/berth";
  };
  ContainerManager();
  explicit ContainerManager(Options options);
  ~ContainerManager();
  ContainerManager(const ContainerManager&) = delete;
  ContainerManager& operator=(const ContainerManager&) = delete;

  // Loads every record, reconciles with live shims, and (once per boot)
  // starts containers whose restart policy asks for it.
  void restore(Engine& engine);
  // Agent shutdown: stops watching; containers keep running under their shims.
  void shutdown();

  struct Counts {
    int running = 0, paused = 0, stopped = 0;
  };
  Counts counts() const;
  std::vector<std::string> users_of_image(const std::string& image_id) const;
  std::vector<std::string> users_of_volume(const std::string& volume) const;

  // --- the Engine API operations; errors are api::HttpError like dockerd's ---
  // Full id for a full id, a name ("/x" or "x") or a unique id prefix; 404 otherwise.
  std::string resolve(const std::string& ref) const;

  struct Created {
    std::string id;
    std::vector<std::string> warnings;
  };
  Created create(const std::string& name, const nlohmann::json& body);
  bool start(const std::string& ref);  // false: already running (304)
  // false: not running (304). timeout nullopt: Config.StopTimeout or 10 s; -1 waits forever.
  bool stop(const std::string& ref, std::optional<int> timeout, const std::string& signal = "");
  void kill(const std::string& ref, const std::string& signal);
  void restart(const std::string& ref, std::optional<int> timeout, const std::string& signal = "");
  void pause(const std::string& ref);
  void unpause(const std::string& ref);
  void remove(const std::string& ref, bool force, bool remove_volumes);
  void rename(const std::string& ref, const std::string& new_name);
  void resize(const std::string& ref, int height, int width);

  nlohmann::json inspect(const std::string& ref, bool size = false) const;
  struct ListOptions {
    bool all = false;
    int limit = -1;
    bool size = false;
    nlohmann::json filters = nlohmann::json::object();  // {"status":["running"],...}
  };
  nlohmann::json list(const ListOptions& options) const;
  nlohmann::json prune(const nlohmann::json& filters);

  // POST /containers/{id}/wait: checks (404, 400 for a bad condition) and
  // takes the baseline now; the returned waiter blocks until the condition
  // ("not-running", "next-exit", "removed") holds and gives the response body.
  // `gone` is polled: when it returns true, waiting stops (nullopt).
  using Waiter = std::function<std::optional<nlohmann::json>(const std::function<bool()>& gone)>;
  Waiter prepare_wait(const std::string& ref, const std::string& condition);
  // Logs: calls `sink` with rendered chunks; false from sink stops.
  struct LogOptions {
    bool follow = false, stdout_stream = false, stderr_stream = false, timestamps = false;
    std::optional<std::int64_t> since, until;
    std::optional<std::size_t> tail;
  };
  bool is_tty(const std::string& ref) const;
  void logs(const std::string& ref, const LogOptions& options,
            const std::function<bool(std::string_view)>& sink);
  // Attach: checks (404/409) happen in prepare_attach, before the hijack.
  struct AttachOptions {
    bool stream = false, logs = false, in = false, out = false, err = false;
    std::string detach_keys;  // dockerd's notation; empty: ctrl-p,ctrl-q (TTY only)
  };
  std::string prepare_attach(const std::string& ref, const AttachOptions& options);
  void attach(const std::string& id, const AttachOptions& options, api::Connection& conn);

  // The container's writable layer: the overlayfs upper directory with what
  // it changed (deletions as 0:0 character devices). For builds and commit.
  std::filesystem::path changes_dir(const std::string& ref) const;

  // GET /containers/{id}/top: {"Titles": [...], "Processes": [[...]]} from /proc.
  nlohmann::json top(const std::string& ref) const;

  // Exec.
  std::string exec_create(const std::string& ref, const nlohmann::json& body);
  // Checks before the hijack; returns whether the exec has a TTY.
  bool exec_prepare(const std::string& exec_id);
  // conn == nullptr: detached. size: the initial terminal size (h, w).
  void exec_start(const std::string& exec_id, api::Connection* conn,
                  std::optional<std::pair<int, int>> size = std::nullopt);
  void exec_resize(const std::string& exec_id, int height, int width);
  nlohmann::json exec_inspect(const std::string& exec_id) const;

  // --- docker cp, export and diff (agent/runtime/container_fs.cpp) ---
  // The container's files until the result goes (container_fs.h); 404 for
  // an unknown container.
  std::unique_ptr<ContainerFiles> open_files(const std::string& ref);
  // GET /containers/{id}/changes: [{"Path", "Kind"}] from its upper directory
  // against its image's layers (Kind 0 modified, 1 added, 2 deleted); null
  // when nothing changed, as dockerd answers.
  nlohmann::json changes(const std::string& ref) const;
  // A container event (GET /events) with dockerd's attributes plus `extra`.
  void emit_event(const std::string& ref, const std::string& action,
                  const std::map<std::string, std::string>& extra = {});

  struct Impl;
  Impl& impl() { return *impl_; }

  // --- docker stats, docker update (container_stats.cpp, container_update.cpp) ---
  struct StatsOptions {
    bool stream = true;     // a sample per second until the container is removed
    bool one_shot = false;  // with !stream: one sample at once, without precpu_stats
  };
  // GET /containers/{id}/stats: `sink` gets each sample in dockerd's shape;
  // false from it stops. Without stream (nor one_shot) the one sample has a
  // real precpu_stats. A container that is not running gives dockerd's
  // zeroed sample. 404 for an unknown container.
  void stats(const std::string& ref, const StatsOptions& options,
             const std::function<bool(const nlohmann::json&)>& sink);
  // POST /containers/{id}/update: checks and stores the new resources and
  // restart policy, and applies them to a running container's cgroup.
  // Returns {"Warnings": [...]}; errors as dockerd's (400, 404, 409, 500).
  nlohmann::json update(const std::string& ref, const nlohmann::json& body);

 private:
  std::unique_ptr<Impl> impl_;
};

// "berth-agent shim ..." (argv after "shim"). Returns the exit code.
int shim_main(int argc, char** argv);

}  // namespace berth::agent::runtime
