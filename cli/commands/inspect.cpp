#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "cli/output/template.h"

namespace berth::cli {
namespace {

// The record as JSON, without anything secret: the driver's secret flags are
// never stored in clear, sealed values ("*_sealed") are left out too, and key
// material is only ever referenced by path.
nlohmann::json inspect_json(Context& ctx, const MachineRecord& r) {
  nlohmann::json j = r;
  auto driver = load_driver(ctx, r);
  j["url"] = driver->url(r.engine.port);
  j["ip"] = driver->ip();
  for (const auto& spec : driver_factory(ctx, r).flags())
    if (spec.secret) j["driver_state"].erase(spec.name);
  auto& state = j["driver_state"];
  for (auto it = state.begin(); it != state.end();) {
    const std::string& key = it.key();
    const bool sealed = key.size() > 7 && key.compare(key.size() - 7, 7, "_sealed") == 0;
    it = sealed ? state.erase(it) : std::next(it);
  }
  return j;
}

// docker-machine's `inspect` paths that scripts use ({{.Driver.IPAddress}},
// {{.DriverName}}, {{.HostOptions.EngineOptions.Labels}}...), for -f only: berth's
// own fields stay snake_case.
nlohmann::json with_docker_machine_paths(Context& ctx, const MachineRecord& r, nlohmann::json j) {
  j["Name"] = r.name;
  j["DriverName"] = r.driver;
  j["Driver"] = {{"IPAddress", j["ip"]},     {"MachineName", r.name},       {"SSHUser", r.ssh.user},
                 {"SSHPort", r.ssh.port},    {"SSHKeyPath", r.ssh.key_path}, {"StorePath", ctx.store().root().string()}};
  j["HostOptions"] = {
      {"EngineOptions",
       {{"Labels", r.engine.labels},
        {"Env", r.engine.env},
        {"ArbitraryFlags", r.engine.opts},
        {"InsecureRegistry", r.engine.insecure_registries},
        {"RegistryMirror", r.engine.registry_mirrors},
        {"TlsVerify", true}}},
      {"AuthOptions",
       {{"CertDir", ctx.store().machine_dir(r.name).string()},
        {"CaCertPath", r.tls.ca_cert},
        {"ClientCertPath", r.tls.client_cert},
        {"ClientKeyPath", r.tls.client_key},
        {"ServerCertPath", r.tls.server_cert},
        {"ServerKeyPath", r.tls.server_key},
        {"ServerCertSANs", r.tls.extra_sans},
        {"StorePath", ctx.store().machine_dir(r.name).string()}}}};
  return j;
}

}  // namespace

void setup_inspect(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto format = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("inspect", "Print what berth knows about a machine, as JSON");
  cmd->add_option("name", *name, "Machine name (default: the active one)");
  cmd->add_option("-f,--format", *format, "A template such as '{{.driver}} {{.ssh.host}}'; docker-machine's paths ({{.Driver.IPAddress}}, {{.DriverName}}, {{.HostOptions.EngineOptions.Labels}}...) work too");
  cmd->callback([&ctx, name, format] {
    auto r = ctx.store().load(machine_name_or_active(ctx, *name));
    auto j = inspect_json(ctx, r);
    if (format->empty())
      fmt::print("{}\n", j.dump(2));
    else
      fmt::print("{}\n", Template::parse(*format).render(with_docker_machine_paths(ctx, r, std::move(j)),
                                                          Template::Missing::Fail));
  });
}

}  // namespace berth::cli
