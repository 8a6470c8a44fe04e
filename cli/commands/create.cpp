#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <map>
#include <memory>

#include "cli/cluster.h"
#include "cli/commands/commands.h"
#include "cli/forwarder.h"
#include "cli/host.h"
#include "core/error.h"
#include "core/tls.h"

namespace berth::cli {
namespace {

struct CreateOptions {
  std::string name;
  std::string driver = "libvirt";
  EngineOptions engine;
  std::string tls_key_type = "ecdsa";
  std::vector<std::string> tls_sans;
  bool quiet = false;
  bool no_forward = false;
  std::string cluster;            // --cluster NAME
  std::string cluster_advertise;  // --cluster-advertise ADDR
  std::map<std::string, std::vector<std::string>> driver_flags;   // flag name -> values given
  std::map<std::string, const DriverFactory*> flag_owner;
};

void require_key_value(const std::vector<std::string>& items, const char* flag) {
  for (const auto& item : items)
    if (item.find('=') == std::string::npos || item.front() == '=')
      throw UserError(fmt::format("--{} '{}' must look like KEY=VALUE", flag, item));
}

FlagValues collect_flags(const CreateOptions& o, const DriverFactory& factory) {
  for (const auto& [flag, values] : o.driver_flags) {
    if (values.empty()) continue;
    const DriverFactory* owner = o.flag_owner.at(flag);
    if (owner != &factory)
      throw UserError(fmt::format("--{} belongs to the {} driver, not {}", flag, owner->name(), factory.name()));
  }
  FlagValues values;
  for (const auto& spec : factory.flags()) {
    auto it = o.driver_flags.find(spec.name);
    if (it != o.driver_flags.end() && !it->second.empty())
      values.set(spec.name, it->second);
    else if (!spec.default_value.empty())
      values.set(spec.name, {spec.default_value});
  }
  return values;
}

// Two machines on one host would overwrite each other's agent, and removing
// one would remove the other's.
void refuse_shared_host(Context& ctx, const std::string& name, const Driver& driver) {
  auto ep = driver.ssh_endpoint();
  if (!ep) return;
  for (const auto& m : ctx.store().list()) {
    if (!m.record) continue;
    try {
      auto other = load_driver(ctx, *m.record)->ssh_endpoint();
      if (other && other->host == ep->host && other->port == ep->port)
        throw UserError(fmt::format("machine '{}': {}:{} is already machine '{}'; use that machine, or 'berth rm {}' first",
                                    name, ep->host, ep->port, m.name, m.name));
    } catch (const UserError&) {
      throw;
    } catch (const Error&) {
    }
  }
}

// Runs the checks of the command line: what they refuse is a usage error (exit 2).
template <class F>
decltype(auto) usage_check(F&& check) {
  try {
    return check();
  } catch (const UserError& e) {
    throw UsageError(e.what());
  }
}

void run_create(Context& ctx, CreateOptions& o) {
  usage_check([&] { validate_machine_name(o.name); });
  const DriverFactory& factory = usage_check([&]() -> const DriverFactory& { return ctx.drivers.get(o.driver); });
  usage_check([&] {
    require_key_value(o.engine.labels, "engine-label");
    require_key_value(o.engine.env, "engine-env");
    tls::parse_key_type(o.tls_key_type);
    if (o.engine.port < 1 || o.engine.port > 65535) throw UserError("--engine-port must be between 1 and 65535");
  });
  FlagValues flags = usage_check([&] { return collect_flags(o, factory); });

  Store& store = ctx.store();
  if (store.exists(o.name))
    throw UserError(fmt::format("machine '{}' already exists; pick another name or 'berth rm {}' first", o.name, o.name));

  install_interrupt_handler(ctx);
  Steps step(o.name, o.quiet);
  DriverContext dctx = driver_context(ctx, o.name, o.engine.port);
  dctx.quiet = o.quiet;
  dctx.step = step.reporter();
  std::optional<PendingMember> member;
  if (!o.cluster.empty()) {
    member = prepare_member(ctx, o.cluster, o.name, factory.name(), o.cluster_advertise);
    dctx.cluster_link = member->link;
  } else if (!o.cluster_advertise.empty()) {
    throw UserError("--cluster-advertise goes with --cluster NAME");
  }
  auto driver = usage_check([&] { return factory.make(flags, std::move(dctx)); });
  refuse_shared_host(ctx, o.name, *driver);
  driver->pre_create_check();
  tls::ensure_store_certs(store.certs_dir(), tls::parse_key_type(o.tls_key_type));

  auto lock = store.create_machine_dir(o.name);
  MachineRecord record;
  record.name = o.name;
  record.driver = factory.name();
  record.engine = o.engine;
  record.tls.key_type = o.tls_key_type;
  record.tls.extra_sans = o.tls_sans;
  record.created_at = now_rfc3339();
  record.phase = "creating";
  record.driver_state = driver->save_state();
  try {
    store.save(record);
    ctx.cancel().throw_if_cancelled();
    step(fmt::format("creating the {} machine", factory.name()));
    driver->create();
    record.driver_state = driver->save_state();
    store.save(record);
    ctx.cancel().throw_if_cancelled();
    step("issuing TLS certificates");
    issue_machine_certs(ctx, record);
    store.save(record);
    if (member) {
      step(fmt::format("joining cluster {} at {}", o.cluster, member->member.address));
      assign_member(ctx, record, *member);
      store.save(record);
    }
    if (factory.capabilities().has_ssh) provision_machine(ctx, record, step.reporter());
    if (member) commit_member(ctx, *member);
    member.reset();
    record.phase = "ready";
    store.save(record);
    step("");
  } catch (const Error& e) {
    step("");
    member.reset();  // its cluster lock: the cleanup below takes it again
    fmt::print(stderr, "{}: create failed, removing what was made\n", o.name);
    const bool interrupted = ctx.interrupted.exchange(false);  // let the cleanup itself run
    record.driver_state = driver->save_state();   // whatever the driver made and still knows of
    destroy_machine(ctx, o.name, record, /*force=*/true);
    if (interrupted) throw Interrupted(fmt::format("machine '{}': create interrupted; nothing was left behind", o.name));
    throw;
  }
  if (factory.capabilities().has_ssh) {
    if (o.no_forward) set_forwarder_disabled(ctx, o.name, true);
    start_forwarder(ctx, o.name, o.quiet);
  }
  fmt::print("Machine {} is ready. Point docker at it with: eval \"$(berth env {})\"\n", o.name, o.name);
}

}  // namespace

void setup_create(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<CreateOptions>();
  auto* cmd = app.add_subcommand("create", "Create a machine and install berth-agent on it");
  cmd->add_option("name", o->name, "Machine name")->required();
  cmd->add_option("-d,--driver", o->driver, "Driver: " + [&] {
    std::string names;
    for (const auto* f : ctx.drivers.all()) names += (names.empty() ? "" : ", ") + f->name();
    return names;
  }())->envname("BERTH_DRIVER");
  cmd->add_option("--engine-label", o->engine.labels, "Engine label KEY=VALUE (repeatable)");
  cmd->add_option("--engine-env", o->engine.env, "Environment variable KEY=VALUE for the agent (repeatable)");
  cmd->add_option("--engine-opt", o->engine.opts, "Engine option NAME=VALUE (repeatable)");
  cmd->add_option("--engine-insecure-registry", o->engine.insecure_registries, "Insecure registry (repeatable)");
  cmd->add_option("--engine-registry-mirror", o->engine.registry_mirrors, "Registry mirror URL (repeatable)");
  cmd->add_option("--engine-port", o->engine.port, "Port the agent listens on");
  cmd->add_option("--tls-key-type", o->tls_key_type, "Key type for new keys: ecdsa (P-256) or rsa (3072)")
      ->check(CLI::IsMember({"ecdsa", "rsa"}));
  cmd->add_option("--tls-san", o->tls_sans, "Extra name or IP for the server certificate (repeatable)");
  cmd->add_flag("-q,--quiet", o->quiet, "Do not print the steps");
  cmd->add_option("--cluster", o->cluster,
                  "Join the berth cluster NAME (made with its first member): overlay networks across its machines");
  cmd->add_option("--cluster-advertise", o->cluster_advertise,
                  "With --cluster on the generic driver: the address the other members reach this host at");
  cmd->add_flag("--no-forward", o->no_forward, "Do not forward published ports to 127.0.0.1 (turn on later with 'berth forward NAME')");
  setup_dropped_create_flags(*cmd);
  for (const auto* factory : ctx.drivers.all()) {
    for (const auto& spec : factory->flags()) {
      o->flag_owner[spec.name] = factory;
      auto& slot = o->driver_flags[spec.name];
      std::string help = spec.help + (spec.default_value.empty() ? "" : " (default " + spec.default_value + ")");
      CLI::Option* opt = nullptr;
      if (spec.kind == FlagSpec::Kind::Bool) {
        opt = cmd->add_flag_callback("--" + spec.name, [&slot] { slot = {"true"}; }, help);
      } else {
        opt = cmd->add_option("--" + spec.name, slot, help)->default_str("");
        opt->type_name(spec.kind == FlagSpec::Kind::Int ? "INT" : "TEXT");
        if (spec.kind != FlagSpec::Kind::StringList)
          opt->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      }
      if (!spec.env_var.empty()) opt->envname(spec.env_var);
      opt->group(factory->name() + " driver");
    }
  }
  cmd->callback([&ctx, o] { run_create(ctx, *o); });
}

}  // namespace berth::cli
