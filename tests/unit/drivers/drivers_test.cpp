#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"
#include "drivers/driver.h"

namespace berth {
namespace {

struct TempDir {
  TempDir() { char t[] = "/tmp/berth-drv-XXXXXX"; path = ::mkdtemp(t); }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

// A listening socket on 127.0.0.1 that stands for an sshd.
struct Listener {
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd, 4);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
  int fd;
  int port;
};

TEST(FlagValues, TypedAccessAndErrors) {
  FlagValues v;
  v.set("n", {"42"});
  v.set("bad", {"4x"});
  v.set("list", {"a", "b"});
  v.set("flag", {"true"});
  EXPECT_EQ(v.get_int("n", 0), 42);
  EXPECT_EQ(v.get_int("missing", 7), 7);
  EXPECT_THROW(v.get_int("bad", 0), UserError);
  EXPECT_EQ(v.get("list"), "b");
  EXPECT_EQ(v.get_list("list"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(v.get_bool("flag"));
  EXPECT_FALSE(v.get_bool("missing"));
}

TEST(Registry, KnowsDriversAndNamesThemInErrors) {
  auto reg = make_default_registry();
  EXPECT_NE(reg.find("generic"), nullptr);
  EXPECT_NE(reg.find("none"), nullptr);
  try {
    reg.get("hyperv");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("generic"), std::string::npos);
  }
}

TEST(Registry, FlagsAreNamespacedByDriver) {
  auto reg = make_default_registry();
  for (const auto* f : reg.all()) {
    if (f->name() == "none") continue;
    for (const auto& spec : f->flags()) EXPECT_EQ(spec.name.rfind(f->name() + "-", 0), 0u) << spec.name;
  }
}

TEST(GenericDriver, CapabilitiesSayItCannotPowerCycle) {
  auto reg = make_default_registry();
  auto caps = reg.get("generic").capabilities();
  EXPECT_FALSE(caps.can_start);
  EXPECT_FALSE(caps.can_stop);
  EXPECT_FALSE(caps.can_kill);
  EXPECT_TRUE(caps.has_ssh);
  EXPECT_FALSE(caps.remove_destroys_host);
}

TEST(GenericDriver, StateFollowsTheSshPortAndStateRoundTrips) {
  TempDir tmp;
  Listener sshd;
  std::ofstream(tmp.path / "key") << "not really a key";
  auto reg = make_default_registry();
  FlagValues flags;
  flags.set("generic-ip-address", {"127.0.0.1"});
  flags.set("generic-ssh-port", {std::to_string(sshd.port)});
  flags.set("generic-ssh-key", {(tmp.path / "key").string()});
  DriverContext ctx{"g1", tmp.path, {}};
  auto d = reg.get("generic").make(flags, ctx);
  d->pre_create_check();
  d->create();
  EXPECT_TRUE(std::filesystem::exists(tmp.path / "id_generic"));
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::Running);
  EXPECT_EQ(d->url(2376), "tcp://127.0.0.1:2376");
  auto ep = d->ssh_endpoint();
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->port, sshd.port);
  EXPECT_EQ(ep->user, "root");
  auto again = reg.get("generic").load(d->save_state(), ctx);
  EXPECT_EQ(again->ip(), "127.0.0.1");
  EXPECT_EQ(again->ssh_endpoint()->key_path, tmp.path / "id_generic");
  EXPECT_THROW(again->stop(), UserError);
  again->remove();
  EXPECT_FALSE(std::filesystem::exists(tmp.path / "id_generic"));
}

TEST(GenericDriver, PreCreateCheckFailsOnClosedPortWithExit3) {
  TempDir tmp;
  int port;
  { Listener l; port = l.port; }
  std::ofstream(tmp.path / "key") << "k";
  FlagValues flags;
  flags.set("generic-ip-address", {"127.0.0.1"});
  flags.set("generic-ssh-port", {std::to_string(port)});
  flags.set("generic-ssh-key", {(tmp.path / "key").string()});
  auto d = make_default_registry().get("generic").make(flags, DriverContext{"g2", tmp.path, {}});
  try {
    d->pre_create_check();
    FAIL();
  } catch (const PreCreateCheckFailed& e) {
    EXPECT_EQ(e.exit_code(), 3);
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos) << e.what();
  }
}

TEST(GenericDriver, RequiresAddressAndValidPort) {
  auto registry = make_default_registry();
  auto& f = registry.get("generic");
  FlagValues none;
  EXPECT_THROW(f.make(none, DriverContext{"x", "/tmp", {}}), PreCreateCheckFailed);  // exit 3, like an unreachable host
  FlagValues badport;
  badport.set("generic-ip-address", {"1.2.3.4"});
  badport.set("generic-ssh-port", {"70000"});
  EXPECT_THROW(f.make(badport, DriverContext{"x", "/tmp", {}}), UserError);
}

TEST(NoneDriver, ParsesUrlAndHasNoSsh) {
  auto reg = make_default_registry();
  FlagValues flags;
  flags.set("url", {"tcp://[::1]:2376"});
  auto d = reg.get("none").make(flags, DriverContext{"n", "/tmp", {}});
  EXPECT_EQ(d->ip(), "::1");
  EXPECT_EQ(d->url(0), "tcp://[::1]:2376");
  EXPECT_FALSE(d->ssh_endpoint());
  FlagValues bad;
  bad.set("url", {"http://x"});
  EXPECT_THROW(reg.get("none").make(bad, DriverContext{"n", "/tmp", {}}), UserError);
}

}  // namespace
}  // namespace berth
