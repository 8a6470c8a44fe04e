#include "core/store.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "core/fs.h"

namespace berth {

namespace {

std::string shown(const std::string& name) { return name.size() <= 40 ? name : name.substr(0, 40) + "..."; }

// A name that can't be valid names no machine.
void require_lookup_name(const std::string& name) {
  if (auto why = machine_name_problem(name); !why.empty())
    throw NotFound("machine '" + shown(name) + "' does not exist (" + why + "); 'berth ls' lists the machines");
}

}  // namespace

void validate_machine_name(const std::string& name) {
  if (auto why = machine_name_problem(name); !why.empty())
    throw UserError("invalid machine name '" + shown(name) + "': " + why);
}

fs::path Store::default_root() {
  if (const char* p = std::getenv("BERTH_STORAGE_PATH"); p && *p) return p;
  return home_dir() / ".berth";
}

Store::Store(fs::path root) : root_(std::move(root)) {}

bool Store::exists(const std::string& name) const {
  std::error_code ec;
  return is_valid_machine_name(name) && fs::exists(config_path(name), ec);
}

std::vector<std::string> Store::names() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(machines_dir(), ec)) {
    if (!entry.is_directory(ec)) continue;
    std::string n = entry.path().filename().string();
    if (is_valid_machine_name(n)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<StoredMachine> Store::list() const {
  std::vector<StoredMachine> out;
  for (const auto& n : names()) {
    StoredMachine m{n, std::nullopt, {}};
    try {
      m.record = load(n);
    } catch (const Error& e) {
      m.error = e.what();
    }
    out.push_back(std::move(m));
  }
  return out;
}

MachineRecord Store::load(const std::string& name) const {
  require_lookup_name(name);
  const fs::path path = config_path(name);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (fs::is_directory(machine_dir(name), ec))
      throw Error("machine '" + name + "' has no config.json (" + path.string() +
                  "); remove it with 'berth rm -f " + name + "'");
    throw NotFound("machine '" + name + "' does not exist; 'berth ls' lists the machines");
  }
  std::string text = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
    migrate_machine_json(j);
    MachineRecord r = j.get<MachineRecord>();
    if (r.name != name)
      throw Error("it names machine '" + r.name + "'");
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error("machine '" + name + "': " + path.string() + " is corrupt (" + e.what() +
                "); fix the file or remove the machine with 'berth rm -f " + name + "'");
  } catch (const NotFound&) {
    throw;
  } catch (const Error& e) {
    throw Error("machine '" + name + "': " + path.string() + " is unusable: " + e.what() +
                "; fix the file or remove the machine with 'berth rm -f " + name + "'");
  }
}

void Store::save(const MachineRecord& record) const {
  validate_machine_name(record.name);
  ensure_private_dir(machine_dir(record.name));
  nlohmann::json j = record;
  write_file_atomic(config_path(record.name), j.dump(2) + "\n", 0600);
}

FileLock Store::create_machine_dir(const std::string& name) const {
  validate_machine_name(name);
  ensure_private_dir(machines_dir());
  const fs::path dir = machine_dir(name);
  std::error_code ec;
  fs::create_directory(dir, ec);  // atomic: exactly one concurrent creator sees "created"
  if (ec) throw Error("cannot create " + dir.string() + ": " + ec.message());
  auto lock = FileLock::try_acquire(dir / ".lock");
  if (!lock)
    throw UserError("machine '" + name + "' is being created by another berth process");
  if (fs::exists(dir / "config.json", ec))
    throw UserError("machine '" + name + "' already exists; pick another name or 'berth rm " +
                    name + "' first");
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  return std::move(*lock);
}

FileLock Store::lock(const std::string& name, std::chrono::milliseconds timeout) const {
  require_lookup_name(name);
  std::error_code ec;
  if (!fs::is_directory(machine_dir(name), ec))
    throw NotFound("machine '" + name + "' does not exist; 'berth ls' lists the machines");
  auto lock = FileLock::acquire(machine_dir(name) / ".lock", timeout);
  if (!lock)
    throw Error("machine '" + name + "' is busy: another berth command is working on it; "
                "wait for it to finish and try again");
  return std::move(*lock);
}

void Store::remove_machine_dir(const std::string& name) const {
  validate_machine_name(name);
  std::error_code ec;
  fs::remove_all(machine_dir(name), ec);
  if (ec) throw Error("machine '" + name + "': cannot remove " + machine_dir(name).string() +
                      ": " + ec.message());
}

}  // namespace berth
