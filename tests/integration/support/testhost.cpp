#include "tests/integration/support/testhost.h"

#include <unistd.h>

#include <atomic>
#include <mutex>
#include <stdexcept>

namespace berth::it {
namespace {

constexpr int kIndexTaken = 75;  // testhost.sh: pick another index

std::atomic<int> g_counter{0};

Env script_env() { return {{"BERTH_TESTHOST_OWNER", std::to_string(::getpid())}}; }

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Once per process: reclaim hosts left by test processes that died.
void collect_garbage_once() {
  static std::once_flag once;
  std::call_once(once, [] { run({testhost_script().string(), "gc"}, script_env(), 60s); });
}

}  // namespace

fs::path testhost_script() { return source_dir() / "scripts" / "testhost.sh"; }

std::string testhost_unavailable_reason() {
  if (::geteuid() != 0) return "integration tests need root (network and mount namespaces)";
  if (!fs::exists(testhost_script())) return "missing " + testhost_script().string();
  if (run({"ip", "netns", "list"}, {}, 10s).exit_code != 0) return "'ip netns' does not work here";
  if (!fs::exists("/usr/sbin/sshd")) return "no /usr/sbin/sshd";
  return "";
}

TestHost::TestHost(const std::string& label)
    : name_(label + "-" + std::to_string(::getpid()) + "-" + std::to_string(++g_counter)),
      keys_("berth-it-key") {
  if (name_.size() > 40) throw std::invalid_argument("TestHost label too long: " + label);
  auto keygen = run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "berth-it-" + name_, "-f",
                     private_key().string()},
                    {}, 30s);
  if (!keygen.ok()) throw std::runtime_error("ssh-keygen failed: " + keygen.describe());
  collect_garbage_once();
  up(1 + static_cast<int>((::getpid() * 7 + g_counter * 13) % 254));
}

TestHost::~TestHost() { down(); }

void TestHost::up(int first_index) {
  std::string last_error;
  for (int i = 0; i < 254; ++i) {
    const int index = 1 + (first_index - 1 + i) % 254;
    auto r = run({testhost_script().string(), "up", name_, std::to_string(index),
                  public_key().string()},
                 script_env(), 30s);
    if (r.exit_code == kIndexTaken) continue;
    if (!r.ok()) throw std::runtime_error("testhost.sh up " + name_ + " failed: " + r.describe());
    ip_ = trim(r.out);
    index_ = index;
    return;
  }
  throw std::runtime_error("no free test host index (10.231.1-254.0/30 all taken)");
}

void TestHost::down() noexcept {
  try {
    run({testhost_script().string(), "down", name_}, script_env(), 60s);
  } catch (...) {
    // A destructor must not throw; `testhost.sh gc` reclaims it later.
  }
}

void TestHost::restart() {
  auto r = run({testhost_script().string(), "down", name_}, script_env(), 60s);
  if (!r.ok()) throw std::runtime_error("testhost.sh down " + name_ + " failed: " + r.describe());
  auto again = run({testhost_script().string(), "up", name_, std::to_string(index_),
                    public_key().string()},
                   script_env(), 30s);
  if (!again.ok()) throw std::runtime_error("testhost.sh up " + name_ + " failed: " + again.describe());
}

std::string TestHost::processes() const {
  auto r = run({testhost_script().string(), "pids", name_}, {}, 30s);
  if (!r.ok()) throw std::runtime_error("testhost.sh pids " + name_ + " failed: " + r.describe());
  return r.out;
}

RunResult TestHost::exec(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) const {
  std::vector<std::string> full = {testhost_script().string(), "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return run(full, {}, timeout);
}

fs::path TestHost::root() const {
  auto r = run({testhost_script().string(), "rootdir", name_}, {}, 10s);
  if (!r.ok()) throw std::runtime_error("testhost.sh rootdir " + name_ + " failed: " + r.describe());
  return trim(r.out);
}

bool TestHost::exists_inside(const fs::path& absolute) const {
  std::error_code ec;
  return fs::exists(root() / absolute.relative_path(), ec);
}

RunResult TestHost::ssh(const std::string& command, std::chrono::milliseconds timeout) const {
  return run({"ssh", "-i", private_key().string(), "-o", "BatchMode=yes", "-o",
              "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
              "LogLevel=ERROR", "-o", "ConnectTimeout=5", "root@" + ip_, command},
             {}, timeout);
}

}  // namespace berth::it
