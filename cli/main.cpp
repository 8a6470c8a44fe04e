#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands/commands.h"
#include "cli/context.h"
#include "cli/usage.h"
#include "core/error.h"
#include "core/log.h"

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

  setup_create(app, ctx);
  setup_ls(app, ctx);
  setup_active(app, ctx);
  setup_env(app, ctx);
  setup_use(app, ctx);
  setup_config(app, ctx);
  setup_inspect(app, ctx);
  setup_ip(app, ctx);
  setup_url(app, ctx);
  setup_status(app, ctx);
  setup_ssh(app, ctx);
  setup_scp(app, ctx);
  setup_start(app, ctx);
  setup_stop(app, ctx);
  setup_restart(app, ctx);
  setup_kill(app, ctx);
  setup_provision(app, ctx);
  setup_regenerate_certs(app, ctx);
  setup_upgrade(app, ctx);
  setup_rm(app, ctx);
  setup_version(app, ctx);
  setup_logs(app, ctx);
  setup_completion(app, ctx);
  setup_mount(app, ctx);
  setup_import_docker_machine(app, ctx);
  setup_forward(app, ctx);
  setup_cluster(app, ctx);

  app.parse_complete_callback([&] { berth::log::set_debug(ctx.debug); });
  std::vector<std::string> args(argv + 1, argv + argc);
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
