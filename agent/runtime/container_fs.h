#pragma once
// A container's files, held open for docker cp and docker export
// (ContainerManager::open_files): its root file system, mounted for the time
// being when the container is not running, and its volumes and bind mounts.
// While one lives, start, stop and remove of the container wait.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "agent/runtime/archive_path.h"

namespace berth::agent::runtime {

class ContainerFiles {
 public:
  struct State;
  explicit ContainerFiles(std::unique_ptr<State> state);
  ~ContainerFiles();  // unmounts what it mounted
  ContainerFiles(const ContainerFiles&) = delete;
  ContainerFiles& operator=(const ContainerFiles&) = delete;

  const ContainerTree& tree() const;
  const std::string& id() const;
  bool readonly_rootfs() const;  // HostConfig.ReadonlyRootfs
  // copyUIDGID: the container's Config.User as its own /etc/passwd and
  // /etc/group name it; nullopt when it has no User.
  std::optional<std::pair<std::uint32_t, std::uint32_t>> user_ids() const;
  // A container event (GET /events): "archive-path", "extract-to-dir", "export".
  void emit(const std::string& action) const;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace berth::agent::runtime
