#include "drivers/none/none.h"

#include <regex>

#include "core/error.h"
#include "core/net.h"

namespace berth {
namespace {

struct ParsedUrl {
  std::string host;
  int port = 0;
};

ParsedUrl parse_tcp_url(const std::string& url) {
  static const std::regex re(R"(^tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$)");
  std::smatch m;
  if (!std::regex_match(url, m, re))
    throw UserError("'" + url + "' is not of the form tcp://HOST:PORT");
  std::string host = m[1];
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = std::stoi(m[2]);
  if (port < 1 || port > 65535) throw UserError("'" + url + "' has an invalid port");
  return {host, port};
}

class NoneDriver final : public Driver {
 public:
  explicit NoneDriver(std::string url) : url_(std::move(url)), parsed_(parse_tcp_url(url_)) {}

  void create() override {}
  void start() override {}
  void stop() override {}
  void restart() override {}
  void kill() override {}
  void remove() override {}
  MachineState state(std::chrono::milliseconds timeout) override {
    return tcp_port_open(parsed_.host, parsed_.port, timeout) ? MachineState::Running
                                                              : MachineState::Error;
  }
  std::optional<SshEndpoint> ssh_endpoint() const override { return std::nullopt; }
  std::string ip() const override { return parsed_.host; }
  std::string url(int) const override { return url_; }
  nlohmann::json save_state() const override { return {{"url", url_}}; }

 private:
  std::string url_;
  ParsedUrl parsed_;
};

}  // namespace

std::vector<FlagSpec> NoneDriverFactory::flags() const {
  return {{"url", "URL of the existing Docker daemon (tcp://HOST:PORT)", FlagSpec::Kind::String, "", "", false}};
}

Capabilities NoneDriverFactory::capabilities() const {
  Capabilities c;
  c.has_ssh = false;
  c.remove_destroys_host = false;
  return c;
}

std::unique_ptr<Driver> NoneDriverFactory::make(const FlagValues& flags, const DriverContext&) const {
  if (!flags.has("url")) throw UserError("the none driver needs --url tcp://HOST:PORT");
  try {
    return std::make_unique<NoneDriver>(flags.get("url"));
  } catch (const UserError& e) {
    throw UserError(std::string("--url ") + e.what());
  }
}

std::unique_ptr<Driver> NoneDriverFactory::load(const nlohmann::json& state, const DriverContext& ctx) const {
  try {
    return std::make_unique<NoneDriver>(state.value("url", ""));
  } catch (const UserError& e) {
    throw UserError("machine '" + ctx.machine_name + "': its Docker URL " + e.what());
  }
}

}  // namespace berth
