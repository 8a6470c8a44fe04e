#include "tests/integration/amazonec2/ec2_fake.h"

#include <signal.h>
#include <unistd.h>

#include <stdexcept>

#include "tests/integration/support/testhost.h"

namespace berth::it {

fs::path Ec2Fake::script() { return source_dir() / "tests/fakes/ec2proxy/ec2fake.py"; }

std::string Ec2Fake::unavailable_reason() {
  if (run_bash("command -v python3", {}, 10s).exit_code != 0) return "python3 is not on PATH";
  if (run_bash("command -v moto_server", {}, 10s).exit_code != 0)
    return "moto_server is not on PATH: the EC2 tests need moto 5 (pip install 'moto[server]')";
  auto imports = run({"python3", "-c", "import boto3, botocore, moto"}, {}, 60s);
  if (!imports.ok()) return "python3 cannot import boto3 and moto: " + imports.err;
  if (!fs::exists(script())) return "missing " + script().string();
  return "";
}

Ec2Fake::Ec2Fake() : dir_("berth-it-ec2fake") {
  const fs::path ready = dir_.path() / "ready.json";
  process_.emplace(Process::start({"python3", script().string(), "--ready-file", ready.string(),
                                   "--testhost-script", testhost_script().string(), "--first-index", "150",
                                   "--parent-pid", std::to_string(::getpid())}));
  const bool up = eventually([&] { return fs::exists(ready) || !process_->running(); }, 120s, 50ms);
  if (!up || !fs::exists(ready)) {
    auto r = process_->wait(5s);
    throw std::runtime_error("the EC2 fake did not start:\n" + r.describe());
  }
  auto j = nlohmann::json::parse(read_text(ready));
  endpoint_ = j.at("endpoint");
  moto_url_ = j.at("moto");
  access_key_ = j.at("access_key");
  secret_key_ = j.at("secret_key");
  region_ = j.at("region");
  ami_ = j.at("ami");
}

Ec2Fake::~Ec2Fake() {
  if (!process_) return;
  // SIGTERM to the fake alone: it takes its test hosts and moto down itself.
  process_->signal(SIGTERM, /*whole_group=*/false);
  process_->wait(90s);
}

nlohmann::json Ec2Fake::control(const std::string& method, const std::string& path, const std::string& body) const {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time", "60", "-X", method, "-H",
                                   "Content-Type: application/json", "-w", "\n%{http_code}"};
  if (!body.empty()) argv.insert(argv.end(), {"--data-binary", body});
  argv.push_back(endpoint_ + path);
  auto r = run(argv, {}, 90s);
  if (!r.ok()) throw std::runtime_error("EC2 fake control " + method + " " + path + " failed: " + r.describe());
  const auto nl = r.out.rfind('\n');
  const std::string status = r.out.substr(nl + 1);
  if (status != "200")
    throw std::runtime_error("EC2 fake control " + method + " " + path + " answered " + status + ": " +
                             r.out.substr(0, nl));
  return nlohmann::json::parse(r.out.substr(0, nl));
}

nlohmann::json Ec2Fake::state() const { return control("GET", "/_fake/state"); }
void Ec2Fake::add_fault(const nlohmann::json& rule) const { control("POST", "/_fake/faults", rule.dump()); }
nlohmann::json Ec2Fake::faults() const { return control("GET", "/_fake/faults"); }
void Ec2Fake::clear_faults() const { control("DELETE", "/_fake/faults"); }
nlohmann::json Ec2Fake::log() const { return control("GET", "/_fake/log"); }
void Ec2Fake::clear_log() const { control("DELETE", "/_fake/log"); }
nlohmann::json Ec2Fake::purge() const { return control("POST", "/_fake/purge"); }

nlohmann::json Ec2Fake::calls(const std::string& action) const {
  auto out = nlohmann::json::array();
  for (const auto& entry : log())
    if (entry.value("action", "") == action) out.push_back(entry);
  return out;
}

std::string leftovers(const nlohmann::json& state) {
  std::string out;
  auto add = [&](const char* key, const char* what) {
    const auto n = state.contains(key) ? state.at(key).size() : 0;
    if (n) out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + what;
  };
  add("instances", "instances");
  add("key_pairs", "key pairs");
  add("security_groups", "security groups");
  if (state.value("hosts_up", 0) > 0)
    out += (out.empty() ? "" : ", ") + std::to_string(state.value("hosts_up", 0)) + " test hosts";
  return out.empty() ? "" : out + ": " + state.dump();
}

}  // namespace berth::it
