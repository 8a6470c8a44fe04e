#include <CLI/CLI.hpp>

#include "cli/commands/commands.h"
#include "cli/host.h"

namespace berth::cli {
namespace {

// Quotes one argument for the remote POSIX shell.
std::string shell_quote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,@%+") == std::string::npos)
    return arg;
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

void setup_ssh(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("ssh", "Log into a machine, or run the command after its name there (berth ssh NAME CMD ARG...) and return its exit code");
  cmd->add_option("name", *name, "Machine name")->required();
  // Everything after the name, flags included, is the remote command (`berth ssh web df -h`).
  cmd->prefix_command();
  cmd->fallthrough(false);
  cmd->callback([&ctx, name, cmd] {
    std::vector<std::string> words = cmd->remaining();
    if (!words.empty() && words.front() == "--") words.erase(words.begin());
    std::string command;
    for (const auto& w : words) command += (command.empty() ? "" : " ") + (words.size() == 1 ? w : shell_quote(w));
    MachineRecord record = ctx.store().load(*name);
    auto session = connect_ssh(ctx, record, std::chrono::seconds(30));
    ctx.exit_code = session->interactive(command);
  });
}

}  // namespace berth::cli
