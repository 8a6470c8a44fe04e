#pragma once
// The machine store: ROOT/certs (CA + client), ROOT/machines/NAME/{config.json,
// id_ed25519, server.pem, server-key.pem, ca.pem, cert.pem, key.pem, .lock}.
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/lock.h"
#include "core/machine.h"

namespace berth {

namespace fs = std::filesystem;

struct StoredMachine {
  std::string name;
  std::optional<MachineRecord> record;   // empty when config.json is unusable
  std::string error;                     // why, when record is empty
};

class Store {
 public:
  // Root from --storage-path, else $BERTH_STORAGE_PATH, else ~/.berth.
  static fs::path default_root();
  explicit Store(fs::path root);

  const fs::path& root() const { return root_; }
  fs::path certs_dir() const { return root_ / "certs"; }
  fs::path machines_dir() const { return root_ / "machines"; }
  fs::path machine_dir(const std::string& name) const { return machines_dir() / name; }
  fs::path config_path(const std::string& name) const { return machine_dir(name) / "config.json"; }

  bool exists(const std::string& name) const;
  std::vector<std::string> names() const;          // sorted
  std::vector<StoredMachine> list() const;         // one entry per machine dir, errors kept per machine

  // Throws NotFound (exit 4) or Error naming the machine and file.
  MachineRecord load(const std::string& name) const;
  void save(const MachineRecord& record) const;    // atomic, 0600

  // Creates machines/NAME (0700) and takes its lock; throws UserError when the
  // name is invalid or the machine already exists (or is being created).
  FileLock create_machine_dir(const std::string& name) const;
  // Serializes commands on one machine. Throws Error when another berth
  // process keeps it past `timeout`.
  FileLock lock(const std::string& name,
                std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  void remove_machine_dir(const std::string& name) const;

 private:
  fs::path root_;
};

void validate_machine_name(const std::string& name);  // throws UserError

}  // namespace berth
