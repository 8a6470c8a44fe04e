#include "cli/context.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "core/live_line.h"

namespace berth::cli {

Store& Context::store() {
  if (!store_) store_.emplace(storage_path.empty() ? Store::default_root() : fs::path(storage_path));
  return *store_;
}

const SecretSealer& Context::secrets() {
  if (!secrets_) secrets_.emplace(store().root() / "secret.key");
  return *secrets_;
}

std::filesystem::path Context::agent_binary() const {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (const char* p = std::getenv("BERTH_AGENT_BINARY"); p && *p) {
    if (!fs::is_regular_file(p, ec)) throw UserError(std::string("BERTH_AGENT_BINARY=") + p + " is not a file");
    return p;
  }
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const fs::path dir = self.parent_path();
  for (const fs::path& candidate : {dir / "berth-agent", dir / ".." / "agent" / "berth-agent",
                                    dir / ".." / "lib" / "berth" / "berth-agent",
                                    fs::path("/usr/lib/berth/berth-agent")}) {
    if (fs::is_regular_file(candidate, ec)) return fs::weakly_canonical(candidate, ec);
  }
  throw Error("cannot find berth-agent next to " + self.string() +
              " or in /usr/lib/berth; set BERTH_AGENT_BINARY to its path");
}

void install_interrupt_handler(Context& ctx) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set, &ctx]() mutable {
    int sig = 0;
    while (sigwait(&set, &sig) == 0) {
      LiveLine::Pause pause;  // off the step spinner's line
      if (ctx.interrupted.exchange(true)) {
        static const char msg[] = "berth: interrupted again; exiting without cleanup (run 'berth rm -f' on the machine)\n";
        ssize_t ignored = ::write(2, msg, sizeof msg - 1);
        (void)ignored;
        std::_Exit(kExitInterrupted);
      }
      static const char msg[] = "berth: interrupted; cleaning up (interrupt again to exit at once)\n";
      ssize_t ignored = ::write(2, msg, sizeof msg - 1);
      (void)ignored;
    }
  }).detach();
}

}  // namespace berth::cli
