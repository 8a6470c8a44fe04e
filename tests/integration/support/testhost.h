#pragma once
// A throwaway SSH host (scripts/testhost.sh): its own network, mount and UTS
// namespaces, an overlay of / as its root, root login with a key this object
// generates. Up in the constructor, down in the destructor.
#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/support/run.h"

namespace berth::it {

class TestHost {
 public:
  // `label` makes the name readable (e.g. "gen-a"); the pid and a counter make
  // it unique. Picks a free 10.231.X.0/30. Throws std::runtime_error on failure.
  explicit TestHost(const std::string& label);
  TestHost(const TestHost&) = delete;
  TestHost& operator=(const TestHost&) = delete;
  ~TestHost();

  const std::string& name() const { return name_; }
  const std::string& ip() const { return ip_; }
  int index() const { return index_; }
  fs::path private_key() const { return keys_.path() / "id_ed25519"; }
  fs::path public_key() const { return keys_.path() / "id_ed25519.pub"; }

  // Down and up again at the same IP: fresh host keys, and an empty overlay
  // (everything written inside before is gone).
  void restart();

  // "PID ARGS" lines of every process inside the host.
  std::string processes() const;
  // Runs argv inside the host's namespaces and root.
  RunResult exec(const std::vector<std::string>& argv,
                 std::chrono::milliseconds timeout = 60s) const;
  // The host's "/" as seen from outside (/proc/PID/root); cheap to poll.
  fs::path root() const;
  bool exists_inside(const fs::path& absolute) const;
  // ssh -i key root@ip argv... with no known_hosts (a sanity check independent of berth).
  RunResult ssh(const std::string& command, std::chrono::milliseconds timeout = 30s) const;

 private:
  void up(int first_index);
  void down() noexcept;

  std::string name_;
  std::string ip_;
  int index_ = 0;
  TempDir keys_;
};

fs::path testhost_script();   // $BERTH_SOURCE_DIR/scripts/testhost.sh
// Why integration tests cannot run here ("" when they can): not root, no `ip`, ...
std::string testhost_unavailable_reason();

}  // namespace berth::it
