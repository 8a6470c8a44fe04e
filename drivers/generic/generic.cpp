#include "drivers/generic/generic.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/net.h"

namespace berth {
namespace {

constexpr const char* kKeyFile = "id_generic";

struct GenericState {
  std::string ip;
  int port = 22;
  std::string user = "root";
  std::string source_key;  // the user's key, copied into the machine dir at create
};

class GenericDriver final : public Driver {
 public:
  GenericDriver(GenericState s, DriverContext ctx) : s_(std::move(s)), ctx_(std::move(ctx)) {}

  void pre_create_check() override {
    std::error_code ec;
    if (!fs::is_regular_file(s_.source_key, ec))
      throw PreCreateCheckFailed("machine '" + ctx_.machine_name + "': SSH key '" + s_.source_key +
                                 "' does not exist; pass --generic-ssh-key PATH");
    std::string why;
    if (!tcp_port_open(s_.ip, s_.port, std::chrono::seconds(10), &why))
      throw PreCreateCheckFailed("machine '" + ctx_.machine_name + "': cannot reach SSH on " +
                                 host_for_url(s_.ip) + ":" + std::to_string(s_.port) + " (" + why +
                                 "); check --generic-ip-address and --generic-ssh-port");
  }

  void create() override { copy_file_private(s_.source_key, key_path(), 0600); }
  void start() override { unsupported("start"); }
  void stop() override { unsupported("stop"); }
  void restart() override { unsupported("restart"); }
  void kill() override { unsupported("kill"); }
  void remove() override {
    std::error_code ec;
    fs::remove(key_path(), ec);
  }

  MachineState state(std::chrono::milliseconds timeout) override {
    return tcp_port_open(s_.ip, s_.port, timeout) ? MachineState::Running : MachineState::Stopped;
  }

  std::optional<SshEndpoint> ssh_endpoint() const override {
    return SshEndpoint{s_.ip, s_.port, s_.user, key_path()};
  }
  std::string ip() const override { return s_.ip; }
  std::string url(int agent_port) const override {
    return "tcp://" + host_for_url(s_.ip) + ":" + std::to_string(agent_port);
  }
  nlohmann::json save_state() const override {
    return {{"ip_address", s_.ip}, {"ssh_port", s_.port}, {"ssh_user", s_.user}, {"ssh_key_source", s_.source_key}};
  }

 private:
  fs::path key_path() const { return ctx_.machine_dir / kKeyFile; }
  [[noreturn]] void unsupported(const std::string& what) const {
    throw UserError("machine '" + ctx_.machine_name + "': the generic driver can't " + what +
                    " machines; " + what + " the host yourself");
  }

  GenericState s_;
  DriverContext ctx_;
};

std::string default_key() {
  for (const char* name : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
    fs::path p = home_dir() / ".ssh" / name;
    std::error_code ec;
    if (fs::exists(p, ec)) return p.string();
  }
  return (home_dir() / ".ssh" / "id_ed25519").string();
}

}  // namespace

std::vector<FlagSpec> GenericDriverFactory::flags() const {
  using K = FlagSpec::Kind;
  return {
      {"generic-ip-address", "IP address or host name of the host", K::String, "", "GENERIC_IP_ADDRESS", false},
      {"generic-ssh-user", "SSH user", K::String, "root", "GENERIC_SSH_USER", false},
      {"generic-ssh-key", "SSH private key (default ~/.ssh/id_ed25519, id_ecdsa or id_rsa)", K::String, "",
       "GENERIC_SSH_KEY", false},
      {"generic-ssh-port", "SSH port", K::Int, "22", "GENERIC_SSH_PORT", false},
  };
}

Capabilities GenericDriverFactory::capabilities() const {
  Capabilities c;
  c.remove_destroys_host = false;
  return c;
}

std::unique_ptr<Driver> GenericDriverFactory::make(const FlagValues& flags, const DriverContext& ctx) const {
  GenericState s;
  s.ip = flags.get("generic-ip-address");
  if (s.ip.empty())  // like an unreachable host: the pre-create check fails
    throw PreCreateCheckFailed("machine '" + ctx.machine_name +
                               "': the generic driver needs the host's address: --generic-ip-address ADDRESS");
  s.user = flags.get("generic-ssh-user", "root");
  s.port = flags.get_int("generic-ssh-port", 22);
  if (s.port < 1 || s.port > 65535) throw UserError("--generic-ssh-port must be between 1 and 65535");
  s.source_key = flags.has("generic-ssh-key") ? flags.get("generic-ssh-key") : default_key();
  std::error_code ec;
  s.source_key = fs::absolute(s.source_key, ec).string();
  return std::make_unique<GenericDriver>(std::move(s), ctx);
}

std::unique_ptr<Driver> GenericDriverFactory::load(const nlohmann::json& state, const DriverContext& ctx) const {
  GenericState s;
  s.ip = state.value("ip_address", "");
  s.port = state.value("ssh_port", 22);
  s.user = state.value("ssh_user", "root");
  s.source_key = state.value("ssh_key_source", "");
  return std::make_unique<GenericDriver>(std::move(s), ctx);
}

}  // namespace berth
