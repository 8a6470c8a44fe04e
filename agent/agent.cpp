#include "agent/agent.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include "agent/api/api.h"
#include "agent/api/http.h"
#include "agent/api/routes.h"
#include "agent/api/system.h"
#include "agent/build/cache.h"
#include "agent/build_info.h"
#include "agent/cluster/etcd_supervisor.h"
#include "agent/config.h"
#include "agent/daemon.h"
#include "agent/engine.h"
#include "agent/host_info.h"
#include "agent/image/image_store.h"
#include "agent/log.h"
#include "agent/network/network_manager.h"
#include "agent/runtime/container_manager.h"
#include "agent/runtime/oci_spec.h"
#include "agent/runtime/security.h"
#include "agent/server.h"
#include "agent/tls_context.h"
#include "agent/volume/volume_store.h"
#include "core/error.h"

namespace berth::agent {
namespace {

namespace asio = boost::asio;

// The daemon changes directory to "/", so relative paths are resolved first.
void make_paths_absolute(AgentConfig& c) {
  for (std::string* p :
       {&c.tls.ca, &c.tls.cert, &c.tls.key, &c.log_file, &c.pid_file, &c.data_root}) {
    *p = std::filesystem::absolute(*p).lexically_normal().string();
  }
  if (c.cluster) {
    std::vector<std::string*> paths = {&c.cluster->tls.ca, &c.cluster->tls.cert, &c.cluster->tls.key};
    if (c.cluster->etcd) paths.insert(paths.end(), {&c.cluster->etcd->binary, &c.cluster->etcd->data_dir});
    for (std::string* p : paths) *p = std::filesystem::absolute(*p).lexically_normal().string();
  }
}

// agent.json "cluster": overlay networks through etcd.
network::ClusterSettings cluster_settings(const ClusterConfig& c, Logger& log) {
  network::ClusterSettings s;
  s.name = c.name;
  s.machine = c.machine;
  s.advertise = c.advertise;
  s.etcd.endpoints = c.etcd_endpoints;
  s.etcd.tls = {c.tls.ca, c.tls.cert, c.tls.key};
  s.log = [&log](const std::string& message) { log.warn(message); };
  return s;
}

void apply_env(const AgentConfig& c) {
  for (const std::string& kv : c.env) {
    auto eq = kv.find('=');
    ::setenv(kv.substr(0, eq).c_str(), kv.substr(eq + 1).c_str(), 1);
  }
}

// The daemon's seccomp profile: nullptr for the built-in one, a JSON null for
// "unconfined", else the file's profile, checked now so a bad one stops start-up.
std::shared_ptr<const nlohmann::json> load_seccomp_profile(const std::string& setting) {
  if (setting == "builtin") return nullptr;
  if (setting == "unconfined") return std::make_shared<const nlohmann::json>(nullptr);
  std::ifstream in(setting, std::ios::binary);
  if (!in)
    throw UserError("cannot read the seccomp profile " + setting +
                    " (security.seccomp_profile): " + std::strerror(errno));
  auto profile = std::make_shared<nlohmann::json>(nlohmann::json::parse(in, nullptr, false));
  try {
    if (profile->is_discarded()) throw api::HttpError(400, "not valid JSON");
    runtime::oci_seccomp(*profile, runtime::default_capabilities(), runtime::host_platform());
  } catch (const api::HttpError& e) {
    throw UserError("seccomp profile " + setting + " (security.seccomp_profile): " + e.what());
  }
  return profile;
}

std::vector<std::string> security_options(const SecurityDefaults& security) {
  std::vector<std::string> out;
  if (runtime::apparmor_enabled()) out.push_back("name=apparmor");
  out.push_back("name=seccomp,profile=" + (security.seccomp_profile == "builtin" ||
                                                   security.seccomp_profile == "unconfined"
                                               ? security.seccomp_profile
                                               : "custom"));
  if (security.no_new_privileges) out.push_back("name=no-new-privileges");
  out.push_back("name=cgroupns");
  return out;
}

void reload(const TlsPaths& paths, TlsContextHolder& tls, Logger& log) {
  if (!log.reopen())
    log.error("cannot reopen log file " + log.path() + "; still writing to the old one");
  try {
    SslContextPtr next = make_server_tls_context(paths);
    tls.replace(next);
    log.info("reloaded TLS files for new connections: " + describe_server_certificate(*next));
  } catch (const Error& e) {
    log.error(std::string("reload failed, keeping the previous certificates: ") + e.what());
  }
}

}  // namespace

int run_agent(const RunOptions& options) {
  std::signal(SIGPIPE, SIG_IGN);
  StartupReport report;
  std::unique_ptr<Logger> log;
  try {
    AgentConfig config = load_config(options.config_path);
    if (!options.pid_file.empty()) config.pid_file = options.pid_file;
    make_paths_absolute(config);
    apply_env(config);

    log = std::make_unique<Logger>(config.log_file);
    TlsContextHolder tls(make_server_tls_context(config.tls));
    auto host = std::make_shared<HostSystemInfo>(config.data_root);

    EngineOptions engine_options;
    engine_options.data_root = config.data_root;
    engine_options.insecure_registries = config.insecure_registries;
    engine_options.registry_mirrors = config.registry_mirrors;
    engine_options.no_new_privileges = config.security.no_new_privileges;
    engine_options.seccomp_profile = load_seccomp_profile(config.security.seccomp_profile);
    engine_options.build_max_context_bytes = config.build_max_context_bytes;
    std::error_code self_ec;
    engine_options.agent_path = std::filesystem::read_symlink("/proc/self/exe", self_ec).string();

    if (options.daemon) report = daemonize();

    // A cluster member's etcd runs as the agent's child (after daemonize: it
    // belongs to a thread of this process), before the overlay driver needs it.
    std::unique_ptr<cluster::EtcdSupervisor> etcd;
    if (config.cluster && config.cluster->etcd) {
      etcd = std::make_unique<cluster::EtcdSupervisor>(
          cluster::etcd_process(*config.cluster, config.data_root), *log);
      etcd->start();
    }

    image::ImageStore images(config.data_root + "/image");
    volume::VolumeStore volumes(config.data_root + "/volumes");
    network::NetworkSettings network_settings;
    network_settings.manage_host = config.manage_network;
    if (config.cluster) network_settings.cluster = cluster_settings(*config.cluster, *log);
    network::NetworkManager networks(config.data_root + "/network", network_settings);
    runtime::ContainerManager containers;
    Engine engine{engine_options, *log, images, volumes, networks, containers};
    engine.build_cache = std::make_shared<build::BuildCache>(config.data_root + "/build/cache.json");
    engine.intermediate_image = [cache = engine.build_cache](const std::string& id) {
      return cache->is_intermediate(id);
    };
    std::filesystem::remove_all(config.data_root + "/build/tmp");  // what builds cut short left
    networks.set_events(engine.events);
    volumes.set_events(engine.events);
    images.set_in_use_lookup([&containers](const std::string& id) {
      auto users = containers.users_of_image(id);
      return users.empty() ? std::string() : users.front();
    });
    volumes.set_users_query(
        [&containers](const std::string& name) { return containers.users_of_volume(name); });
    networks.init();
    containers.restore(engine);

    api::Router router;
    api::add_system_routes(router, host,
                           {config.data_root, config.labels, config.insecure_registries,
                            config.registry_mirrors,
                            [&containers, &images] {
                              auto c = containers.counts();
                              return api::EngineCounts{c.running, c.paused, c.stopped,
                                                       images.count()};
                            },
                            security_options(config.security)});
    api::add_image_prune_routes(router, engine);  // before /images/{name...}
    api::add_image_routes(router, engine);
    api::add_auth_routes(router, engine);
    api::add_distribution_routes(router, engine);
    api::add_system_df_routes(router, engine);
    api::add_swarm_routes(router);
    api::add_build_routes(router, engine);
    api::add_container_routes(router, engine);
    api::add_container_archive_routes(router, engine);
    api::add_commit_routes(router, engine);
    api::add_network_routes(router, engine);
    api::add_cluster_routes(router, engine);
    api::add_volume_routes(router, engine);
    api::add_event_routes(router, engine);
    const api::Api api(std::move(router));

    asio::io_context io(1);
    ServerOptions server_options;
    server_options.listen = config.listen;
    server_options.port = config.port;
    Server server(server_options, tls, api, *log);
    PidFile pid_file(config.pid_file);

    asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
    bool stopping = false;
    std::function<void()> wait_for_signal = [&] {
      signals.async_wait([&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP) {
          reload(config.tls, tls, *log);
        } else if (!stopping) {
          stopping = true;
          log->info(std::string("received ") + (signo == SIGTERM ? "SIGTERM" : "SIGINT") +
                    "; stopping");
          engine.events->close();
          server.stop();
          return;
        }
        wait_for_signal();
      });
    };
    wait_for_signal();

    server.start();
    log->info(std::string("berth-agent ") + kAgentVersion + " started: listening on " +
              server.address() + " pid=" + std::to_string(::getpid()) + " api=" + kApiVersion +
              " cert: " + describe_server_certificate(*tls.current()));
    for (const std::string& opt : config.opts) {
      log->warn("engine option " + log_quote(opt) + " has no effect yet; ignored");
    }
    report.ready();

    io.run();
    engine.events->close();  // ends every GET /events stream at once
    server.stop();
    containers.shutdown();
    log->info("berth-agent stopped");
    return kExitOk;
  } catch (const std::exception& e) {
    if (log) log->error(std::string("startup failed: ") + e.what());
    if (report.active()) {
      report.failed(e.what());
    } else {
      std::cerr << "berth-agent: error: " << e.what() << std::endl;
    }
    return kExitError;
  }
}

}  // namespace berth::agent
