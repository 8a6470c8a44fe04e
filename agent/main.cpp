// berth-agent --config /etc/berth/agent.json [--daemon] [--pidfile PATH] | --version
#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "agent/agent.h"
#include "agent/build_info.h"
#include "agent/config.h"
#include "agent/runtime/container_manager.h"
#include "core/error.h"

int main(int argc, char** argv) {
  // The per-container supervisor the agent starts; not for people.
  if (argc >= 2 && std::strcmp(argv[1], "shim") == 0) {
    return berth::agent::runtime::shim_main(argc - 2, argv + 2);
  }
  CLI::App app{"berth-agent: serves the Docker Engine API over mutual TLS", "berth-agent"};
  berth::agent::RunOptions options;
  options.config_path = berth::agent::kDefaultConfigPath;
  bool version = false;
  app.add_option("--config", options.config_path, "Config file")->capture_default_str();
  app.add_flag("--daemon", options.daemon, "Detach into the background after startup");
  app.add_option("--pidfile", options.pid_file, "Pidfile (overrides pid_file in the config)");
  app.add_flag("--version", version, "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return berth::kExitOk;
  } catch (const CLI::ParseError& e) {
    std::cerr << "berth-agent: error: " << e.what() << "; see --help" << std::endl;
    return berth::kExitUsage;
  }
  if (version) {
    std::cout << "berth-agent " << berth::agent::kAgentVersion << std::endl;
    return berth::kExitOk;
  }
  return berth::agent::run_agent(options);
}
