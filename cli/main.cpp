#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands/commands.h"
#include "cli/context.h"
#include "cli/usage.h"
#include "core/error.h"
#include "core/log.h"

namespace {

struct Command {
  const char* name;
  const char* alias;
  void (*setup)(CLI::App&, berth::cli::Context&);
};

// In the order `berth --help` lists them.
constexpr Command kCommands[] = {
    {"create", "", berth::cli::setup_create},
    {"ls", "list", berth::cli::setup_ls},
    {"active", "", berth::cli::setup_active},
    {"env", "", berth::cli::setup_env},
    {"use", "", berth::cli::setup_use},
    {"config", "", berth::cli::setup_config},
    {"inspect", "", berth::cli::setup_inspect},
    {"ip", "", berth::cli::setup_ip},
    {"url", "", berth::cli::setup_url},
    {"status", "", berth::cli::setup_status},
    {"ssh", "", berth::cli::setup_ssh},
    {"scp", "", berth::cli::setup_scp},
    {"start", "", berth::cli::setup_start},
    {"stop", "", berth::cli::setup_stop},
    {"restart", "", berth::cli::setup_restart},
    {"kill", "", berth::cli::setup_kill},
    {"provision", "", berth::cli::setup_provision},
    {"regenerate-certs", "", berth::cli::setup_regenerate_certs},
    {"upgrade", "", berth::cli::setup_upgrade},
    {"rm", "remove", berth::cli::setup_rm},
    {"version", "", berth::cli::setup_version},
    {"logs", "", berth::cli::setup_logs},
    {"completion", "", berth::cli::setup_completion},
    {"mount", "", berth::cli::setup_mount},
    {"import-docker-machine", "", berth::cli::setup_import_docker_machine},
    {"forward", "", berth::cli::setup_forward},
    {"cluster", "", berth::cli::setup_cluster},
};

}  // namespace

int main(int argc, char** argv) {
  using namespace berth::cli;
  std::signal(SIGPIPE, SIG_IGN);  // a peer that goes away is an error to report, not a silent death
  Context ctx;
  CLI::App app{"berth makes Docker hosts and points the docker CLI at them", "berth"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();
  app.add_option("-s,--storage-path", ctx.storage_path, "Where berth keeps its machines (default ~/.berth)")
      ->envname("BERTH_STORAGE_PATH");
  app.add_flag("-D,--debug", ctx.debug, "Print debug lines on stderr");
  app.set_version_flag("-v,--version", std::string("berth version ") + BERTH_VERSION);
  app.fallthrough();  // -D and -s after the command too
  setup_dropped_global_flags(app);
  app.footer("Exit codes: 0 ok, 1 error, 2 usage error, 3 pre-create check failed, 4 machine not found, 130 interrupted.");

  // Only the command named on the line is set up (create alone declares every
  // driver's flags); help, completion (which lists them), a typo or no command
  // get them all.
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::string word = command_word(app, args);
  const auto named = std::find_if(std::begin(kCommands), std::end(kCommands), [&](const Command& c) {
    return !word.empty() && (word == c.name || word == c.alias);
  });
  if (named != std::end(kCommands) && std::string_view(named->name) != "completion") {
    named->setup(app, ctx);
  } else {
    for (const Command& c : kCommands) c.setup(app, ctx);
  }

  app.parse_complete_callback([&] { berth::log::set_debug(ctx.debug); });
  try {
    args = resolve_command_word(app, std::move(args));
    std::reverse(args.begin(), args.end());  // CLI11 takes them last first
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "berth: error: {}\n", describe_parse_error(e, app));
    return berth::kExitUsage;
  } catch (const berth::Error& e) {
    fmt::print(stderr, "berth: error: {}\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    fmt::print(stderr, "berth: error: {}\n", e.what());
    return berth::kExitError;
  }
  return ctx.exit_code;
}
