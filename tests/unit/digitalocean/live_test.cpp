// Against the real DigitalOcean API: runs only with BERTH_DO_LIVE=1 and
// DIGITALOCEAN_ACCESS_TOKEN set (it makes and removes a real droplet, which
// costs money); skipped otherwise. These build machines are offline.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "drivers/cloud/digitalocean/digitalocean.h"

namespace berth {
namespace {

class PlainSealer final : public SecretSealer {
 public:
  std::string seal(const std::string& p) const override { return p; }
  std::string open(const std::string& s) const override { return s; }
};

TEST(DigitalOceanLive, CreateStateRemove) {
  const char* live = std::getenv("BERTH_DO_LIVE");
  const char* token = std::getenv("DIGITALOCEAN_ACCESS_TOKEN");
  if (!live || std::string(live) != "1" || !token || !*token)
    GTEST_SKIP() << "live DigitalOcean test: set BERTH_DO_LIVE=1 and DIGITALOCEAN_ACCESS_TOKEN to run it";
  char t[] = "/tmp/berth-do-live-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(t);
  PlainSealer sealer;
  DriverContext ctx{"berth-live-" + std::to_string(::getpid()), dir, CancelToken{}, 2376};
  ctx.secrets = &sealer;
  DigitalOceanDriverFactory factory;
  FlagValues flags;
  for (const auto& spec : factory.flags())
    if (!spec.default_value.empty()) flags.set(spec.name, {spec.default_value});
  flags.set("digitalocean-access-token", {token});
  auto d = factory.make(flags, ctx);
  d->pre_create_check();
  try {
    d->create();
    EXPECT_EQ(d->state(std::chrono::seconds(30)), MachineState::Running);
    EXPECT_FALSE(d->ip().empty());
  } catch (...) {
    d->remove();
    std::filesystem::remove_all(dir);
    throw;
  }
  d->remove();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace berth
