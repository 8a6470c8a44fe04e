#include "drivers/none/none.h"

#include <string_view>

#include "core/error.h"
#include "core/net.h"

namespace berth {
namespace {

struct ParsedUrl {
  std::string host;
  int port = 0;
};

// tcp://HOST:PORT, HOST a name, an IPv4 address or [an IPv6 address].
ParsedUrl parse_tcp_url(const std::string& url) {
  const auto bad = [&] { return UserError("'" + url + "' is not of the form tcp://HOST:PORT"); };
  constexpr std::string_view kScheme = "tcp://";
  if (url.rfind(kScheme, 0) != 0) throw bad();
  const std::string_view rest = std::string_view(url).substr(kScheme.size());
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) throw bad();
  std::string_view host = rest.substr(0, colon);
  const std::string_view port_text = rest.substr(colon + 1);
  auto in = [](std::string_view set, char c) { return set.find(c) != std::string_view::npos; };
  const bool bracketed = host.front() == '[';
  if (bracketed) {
    if (host.size() < 3 || host.back() != ']') throw bad();
    host = host.substr(1, host.size() - 2);
  }
  const std::string_view allowed = bracketed ? "0123456789abcdefABCDEF:." : "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-";
  for (char c : host)
    if (!in(allowed, c)) throw bad();
  if (port_text.empty() || port_text.size() > 5) throw bad();
  for (char c : port_text)
    if (c < '0' || c > '9') throw bad();
  const int port = std::stoi(std::string(port_text));
  if (port < 1 || port > 65535) throw UserError("'" + url + "' has an invalid port");
  return {std::string(host), port};
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
