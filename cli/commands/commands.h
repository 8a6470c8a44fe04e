#pragma once
// One file per command: each adds its subcommand with its options to the app.
namespace CLI {
class App;
}

namespace berth::cli {

struct Context;

void setup_create(CLI::App& app, Context& ctx);
void setup_ls(CLI::App& app, Context& ctx);
void setup_active(CLI::App& app, Context& ctx);
void setup_env(CLI::App& app, Context& ctx);
void setup_use(CLI::App& app, Context& ctx);
void setup_config(CLI::App& app, Context& ctx);
void setup_inspect(CLI::App& app, Context& ctx);
void setup_ip(CLI::App& app, Context& ctx);
void setup_url(CLI::App& app, Context& ctx);
void setup_status(CLI::App& app, Context& ctx);
void setup_ssh(CLI::App& app, Context& ctx);
void setup_scp(CLI::App& app, Context& ctx);
void setup_start(CLI::App& app, Context& ctx);
void setup_stop(CLI::App& app, Context& ctx);
void setup_restart(CLI::App& app, Context& ctx);
void setup_kill(CLI::App& app, Context& ctx);
void setup_provision(CLI::App& app, Context& ctx);
void setup_regenerate_certs(CLI::App& app, Context& ctx);
void setup_upgrade(CLI::App& app, Context& ctx);
void setup_rm(CLI::App& app, Context& ctx);
void setup_version(CLI::App& app, Context& ctx);
void setup_logs(CLI::App& app, Context& ctx);
void setup_completion(CLI::App& app, Context& ctx);
void setup_mount(CLI::App& app, Context& ctx);
void setup_import_docker_machine(CLI::App& app, Context& ctx);
void setup_forward(CLI::App& app, Context& ctx);
void setup_cluster(CLI::App& app, Context& ctx);

// docker-machine flags berth dropped: using one says why (cli/commands/dropped.cpp).
void setup_dropped_global_flags(CLI::App& app);
void setup_dropped_create_flags(CLI::App& create);
void setup_dropped_scp_flags(CLI::App& scp);

}  // namespace berth::cli
