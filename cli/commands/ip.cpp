#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {

// berth ip [NAME...]: one address a line; with several machines, one that fails
// is reported and the others are still printed.
void setup_ip(CLI::App& app, Context& ctx) {
  auto names = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand("ip", "Print machines' IP addresses or host names");
  cmd->add_option("names", *names, "Machine names (default: the active one)");
  cmd->callback([&ctx, names] {
    if (names->empty()) names->push_back(machine_name_or_active(ctx, ""));
    for (const auto& name : *names) {
      try {
        auto r = ctx.store().load(name);
        fmt::print("{}\n", load_driver(ctx, r)->ip());
      } catch (const Error& e) {
        if (names->size() == 1) throw;
        std::fflush(stdout);
        fmt::print(stderr, "berth: error: {}\n", e.what());
        if (!ctx.exit_code) ctx.exit_code = e.exit_code();
      }
    }
  });
}

}  // namespace berth::cli
