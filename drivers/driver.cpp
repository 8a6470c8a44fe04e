#include "drivers/driver.h"

#include <algorithm>

#include "core/error.h"

namespace berth {

std::string to_string(MachineState s) {
  switch (s) {
    case MachineState::Running: return "Running";
    case MachineState::Stopped: return "Stopped";
    case MachineState::Starting: return "Starting";
    case MachineState::Stopping: return "Stopping";
    case MachineState::Paused: return "Paused";
    case MachineState::Error: return "Error";
    case MachineState::Timeout: return "Timeout";
    case MachineState::NotFound: return "NotFound";
    case MachineState::Unknown: break;
  }
  return "Unknown";
}

bool FlagValues::has(const std::string& name) const {
  auto it = values_.find(name);
  return it != values_.end() && !it->second.empty();
}

std::string FlagValues::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return fallback;
  return it->second.back();
}

int FlagValues::get_int(const std::string& name, int fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  try {
    size_t used = 0;
    int n = std::stoi(v, &used);
    if (used == v.size()) return n;
  } catch (const std::exception&) {
  }
  throw UserError("--" + name + " takes a whole number, not '" + v + "'");
}

bool FlagValues::get_bool(const std::string& name) const {
  if (!has(name)) return false;
  const std::string v = get(name);
  return v == "true" || v == "1" || v == "yes";
}

std::vector<std::string> FlagValues::get_list(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

void CancelToken::throw_if_cancelled() const {
  if (cancelled()) throw Interrupted("interrupted");
}

void run_pre_create_check(const std::function<void()>& body) {
  try {
    body();
  } catch (const PreCreateCheckFailed&) {
    throw;
  } catch (const Interrupted&) {
    throw;
  } catch (const Error& e) {
    throw PreCreateCheckFailed(e.what());
  }
}

void DriverRegistry::add(std::unique_ptr<DriverFactory> factory) {
  factories_.push_back(std::move(factory));
}

const DriverFactory* DriverRegistry::find(const std::string& name) const {
  for (const auto& f : factories_)
    if (f->name() == name) return f.get();
  return nullptr;
}

const DriverFactory& DriverRegistry::get(const std::string& name) const {
  if (const auto* f = find(name)) return *f;
  std::string known;
  for (const auto& f : factories_) known += (known.empty() ? "" : ", ") + f->name();
  throw UserError("unknown driver '" + name + "'; the drivers are: " + known);
}

std::vector<const DriverFactory*> DriverRegistry::all() const {
  std::vector<const DriverFactory*> out;
  for (const auto& f : factories_) out.push_back(f.get());
  return out;
}

}  // namespace berth
