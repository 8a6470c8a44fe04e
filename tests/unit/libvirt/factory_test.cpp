#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>

#include "core/error.h"
#include "core/fs.h"
#include "drivers/driver.h"
#include "drivers/libvirt/libvirt.h"
#include "tests/unit/libvirt/test_util.h"

namespace berth {
namespace {

using virt::testing::TempDir;

// A fake berth-os build directory and a store with one machine dir.
struct Fixture {
  Fixture() {
    fs::create_directories(os_dir);
    write_file_atomic(os_dir / "vmlinuz", "kernel");
    write_file_atomic(os_dir / "initrd", "initrd");
    write_file_atomic(os_dir / "cmdline", "console=ttyS0 quiet\n");
    fs::create_directories(store / "machines" / "dev");
  }
  DriverContext ctx(const std::string& name = "dev") { return DriverContext{name, store / "machines" / name, {}}; }
  FlagValues flags(std::map<std::string, std::string> given = {}) {
    FlagValues v;
    given.emplace("libvirt-image", os_dir.string());
    for (auto& [k, val] : given) v.set(k, {val});
    return v;
  }
  TempDir t;
  fs::path os_dir = t.path / "os";
  fs::path store = t.path / "store";
};

TEST(LibvirtFactory, DeclaresItsFlagsAsData) {
  LibvirtDriverFactory f;
  EXPECT_EQ(f.name(), "libvirt");
  std::map<std::string, FlagSpec> by_name;
  for (const auto& s : f.flags()) by_name[s.name] = s;
  for (const char* n : {"libvirt-uri", "libvirt-cpus", "libvirt-memory", "libvirt-disk-size", "libvirt-image",
                        "libvirt-image-sha256", "libvirt-network", "libvirt-accel"})
    ASSERT_TRUE(by_name.count(n)) << n;
  EXPECT_EQ(by_name["libvirt-cpus"].default_value, "1");
  EXPECT_EQ(by_name["libvirt-memory"].default_value, "1024");
  EXPECT_EQ(by_name["libvirt-disk-size"].default_value, "5000");
  EXPECT_EQ(by_name["libvirt-network"].default_value, "user");
  EXPECT_EQ(by_name["libvirt-accel"].default_value, "auto");
  EXPECT_EQ(by_name["libvirt-uri"].default_value, ::geteuid() == 0 ? "qemu:///system" : "qemu:///session");
  EXPECT_EQ(by_name["libvirt-memory"].env_var, "LIBVIRT_MEMORY");
  auto caps = f.capabilities();
  EXPECT_TRUE(caps.can_start && caps.can_stop && caps.can_kill && caps.can_restart && caps.has_ssh);
  EXPECT_TRUE(caps.remove_destroys_host);
}

TEST(LibvirtFactory, RejectsBadFlags) {
  Fixture fx;
  LibvirtDriverFactory f;
  EXPECT_THROW(f.make(fx.flags({{"libvirt-cpus", "0"}}), fx.ctx()), UserError);
  EXPECT_THROW(f.make(fx.flags({{"libvirt-memory", "64"}}), fx.ctx()), UserError);
  EXPECT_THROW(f.make(fx.flags({{"libvirt-memory", "lots"}}), fx.ctx()), UserError);
  EXPECT_THROW(f.make(fx.flags({{"libvirt-disk-size", "10"}}), fx.ctx()), UserError);
  EXPECT_THROW(f.make(fx.flags({{"libvirt-accel", "hvf"}}), fx.ctx()), UserError);
  EXPECT_THROW(f.make(fx.flags({{"libvirt-image-sha256", "abc"}}), fx.ctx()), UserError);
  EXPECT_NO_THROW(f.make(fx.flags({{"libvirt-accel", "tcg"}}), fx.ctx()));
}

TEST(LibvirtFactory, StateRoundTripsAndNamesDeriveFromTheMachineDir) {
  Fixture fx;
  LibvirtDriverFactory f;
  auto d = f.make(fx.flags({{"libvirt-cpus", "2"}, {"libvirt-memory", "512"}, {"libvirt-uri", "qemu:///session"}}),
                  fx.ctx());
  // Before create there are no ports, so no SSH endpoint yet.
  EXPECT_FALSE(d->ssh_endpoint().has_value());
  EXPECT_EQ(d->ip(), "127.0.0.1");
  nlohmann::json j = d->save_state();
  EXPECT_EQ(j["uri"], "qemu:///session");
  EXPECT_EQ(j["cpus"], 2);
  EXPECT_EQ(j["memory_mb"], 512);
  EXPECT_EQ(j["image_kind"], "berth-os");
  EXPECT_EQ(j["image"], fx.os_dir.string());
  const std::string domain = j["domain"];
  EXPECT_TRUE(std::regex_match(domain, std::regex("berth-dev-[0-9a-f]{8}"))) << domain;
  EXPECT_TRUE(std::regex_match(std::string(j["mac"]), std::regex("52:54:00(:[0-9a-f]{2}){3}"))) << j.dump();

  // The same machine loaded back names the same domain; another store names another.
  j["ssh_port"] = 41022;
  j["agent_port"] = 41376;
  auto loaded = f.load(j, fx.ctx());
  EXPECT_EQ(loaded->save_state()["domain"], domain);
  auto ep = loaded->ssh_endpoint();
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 41022);
  EXPECT_EQ(ep->user, "root");
  EXPECT_EQ(ep->key_path, fx.store / "machines/dev/id_ed25519");
  EXPECT_EQ(loaded->url(2376), "tcp://127.0.0.1:41376");

  Fixture other;
  EXPECT_NE(f.make(other.flags(), other.ctx())->save_state()["domain"], domain);
}

TEST(LibvirtFactory, LongMachineNamesGiveShortDomainNames) {
  Fixture fx;
  LibvirtDriverFactory f;
  const std::string long_name(200, 'x');
  fs::create_directories(fx.store / "machines" / long_name);
  const std::string domain = f.make(fx.flags(), fx.ctx(long_name))->save_state()["domain"];
  EXPECT_TRUE(std::regex_match(domain, std::regex("berth-x{40}-[0-9a-f]{8}"))) << domain;
}

TEST(LibvirtFactory, NamedNetworkUsesTheLeaseAddress) {
  Fixture fx;
  LibvirtDriverFactory f;
  auto d = f.make(fx.flags({{"libvirt-network", "lab"}}), fx.ctx());
  EXPECT_FALSE(d->ssh_endpoint().has_value());
  nlohmann::json j = d->save_state();
  j["ip"] = "192.168.122.50";
  auto loaded = f.load(j, fx.ctx());
  EXPECT_EQ(loaded->ip(), "192.168.122.50");
  EXPECT_EQ(loaded->url(2376), "tcp://192.168.122.50:2376");
  EXPECT_EQ(loaded->ssh_endpoint()->port, 22);
}

TEST(LibvirtFactory, UrlImageIsKeptForCreate) {
  Fixture fx;
  LibvirtDriverFactory f;
  auto d = f.make(fx.flags({{"libvirt-image", "https://images.example/debian.qcow2"}}), fx.ctx());
  auto j = d->save_state();
  EXPECT_EQ(j["image_url"], "https://images.example/debian.qcow2");
  EXPECT_EQ(j["image"], "");
}

TEST(LibvirtDriver, UnreachableLibvirtIsAnErrorStateAndAClearPreCreateFailure) {
  Fixture fx;
  LibvirtDriverFactory f;
  const std::string uri = "qemu+unix:///system?socket=" + (fx.t.path / "no-libvirtd.sock").string();
  auto d = f.make(fx.flags({{"libvirt-uri", uri}, {"libvirt-accel", "tcg"}}), fx.ctx());
  EXPECT_EQ(d->state(std::chrono::seconds(2)), MachineState::Error);
  try {
    d->pre_create_check();
    FAIL() << "expected PreCreateCheckFailed";
  } catch (const PreCreateCheckFailed& e) {
    EXPECT_NE(std::string(e.what()).find("libvirtd -d"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("machine 'dev'"), std::string::npos) << e.what();
  }
}

TEST(LibvirtDriver, MissingImageFailsThePreCreateCheck) {
  Fixture fx;
  LibvirtDriverFactory f;
  if (::geteuid() != 0 || !fs::exists("/var/run/libvirt/libvirt-sock")) GTEST_SKIP() << "needs libvirtd";
  auto d = f.make(fx.flags({{"libvirt-image", (fx.t.path / "nope.qcow2").string()}, {"libvirt-accel", "tcg"}}),
                  fx.ctx());
  EXPECT_THROW(d->pre_create_check(), PreCreateCheckFailed);
}

TEST(Registry, LibvirtIsListedFirst) {
  auto reg = make_default_registry();
  ASSERT_FALSE(reg.all().empty());
  EXPECT_EQ(reg.all().front()->name(), "libvirt");
}

TEST(LibvirtFactory, EnginePortIsTheForwardedGuestPort) {
  Fixture fx;
  LibvirtDriverFactory f;
  DriverContext ctx = fx.ctx();
  ctx.engine_port = 3376;
  auto d = f.make(fx.flags(), ctx);
  EXPECT_EQ(d->save_state().value("guest_agent_port", 0), 3376);
  // Records made before the field existed forward to the default port.
  nlohmann::json old = d->save_state();
  old.erase("guest_agent_port");
  EXPECT_EQ(f.load(old, fx.ctx())->save_state().value("guest_agent_port", 0), 2376);
}

}  // namespace
}  // namespace berth
