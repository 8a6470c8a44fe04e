#pragma once
// The composition root's products, handed to every command.
#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "core/secrets.h"
#include "core/store.h"
#include "drivers/driver.h"

namespace berth::cli {

struct Context {
  std::string storage_path;            // --storage-path; empty: Store::default_root()
  bool debug = false;
  int exit_code = 0;                   // set by commands that pass through a remote exit code
  DriverRegistry drivers = make_default_registry();
  std::atomic<bool> interrupted{false};

  Store& store();
  // Seals drivers' secrets with the store's key (ROOT/secret.key).
  const SecretSealer& secrets();
  CancelToken cancel() { return CancelToken{&interrupted}; }
  // berth-agent to upload: $BERTH_AGENT_BINARY, next to berth, the build tree, or /usr/lib/berth.
  std::filesystem::path agent_binary() const;

 private:
  std::optional<Store> store_;
  std::optional<StoreSecrets> secrets_;
};

// Blocks SIGINT/SIGTERM/SIGHUP and sets ctx.interrupted from a watcher thread,
// so long commands can stop at a safe point and clean up. A second signal exits at once.
void install_interrupt_handler(Context& ctx);

}  // namespace berth::cli
