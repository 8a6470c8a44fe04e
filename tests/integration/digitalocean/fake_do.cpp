#include "tests/integration/digitalocean/fake_do.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace berth::it {
namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

fs::path spec_file() {
  for (const fs::path& p : {source_dir().parent_path() / "shared/specs/digitalocean/specification",
                            fs::path("/work/shared/specs/digitalocean/specification")}) {
    if (fs::exists(p / "DigitalOcean-public.v2.yaml")) return p / "DigitalOcean-public.v2.yaml";
  }
  return {};
}

}  // namespace

fs::path python3_binary() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    fs::path candidate = fs::path(dir) / "python3";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

fs::path fake_do_script() { return source_dir() / "tests/fakes/digitalocean/fake_do.py"; }

std::string fake_do_unavailable_reason() {
  if (::geteuid() != 0) return "the fake DigitalOcean API backs droplets with netns SSH hosts: needs root";
  const fs::path python = python3_binary();
  if (python.empty()) return "no python3 on PATH (the fake DigitalOcean API is Python)";
  auto probe = run({python.string(), "-c", "import openapi_schema_validator, jsonschema_path, yaml"}, {}, 60s);
  if (!probe.ok())
    return python.string() + " lacks openapi-schema-validator/jsonschema-path/PyYAML, which the fake needs to "
                             "check traffic against the DigitalOcean spec: " + trimmed(probe.err);
  if (spec_file().empty()) return "no DigitalOcean OpenAPI spec (../shared/specs/digitalocean/specification)";
  if (!fs::exists(fake_do_script())) return "missing " + fake_do_script().string();
  return "";
}

FakeDo::FakeDo() : dir_("berth-it-fakedo") {
  const fs::path port_file = dir_.path() / "port";
  process_.emplace(Process::start({python3_binary().string(), fake_do_script().string(), "--port", "0",
                                   "--port-file", port_file.string(), "--token", kToken, "--spec",
                                   spec_file().string(), "--testhost",
                                   (source_dir() / "scripts/testhost.sh").string()}));
  const bool up = eventually([&] { return fs::exists(port_file) || !process_->running(); }, 60s, 20ms);
  if (!up || !fs::exists(port_file)) {
    auto r = process_->wait(5s);
    throw std::runtime_error("the fake DigitalOcean API did not start:\n" + r.describe());
  }
  port_ = std::stoi(read_text(port_file));
  url_ = "http://127.0.0.1:" + std::to_string(port_);
}

FakeDo::~FakeDo() {
  if (!process_) return;
  process_->signal(SIGTERM, /*whole_group=*/false);
  auto r = process_->wait(120s);   // hosts going down take a while each
  (void)r;
}

std::string FakeDo::log() const { return process_ ? process_->stderr_so_far() : ""; }

nlohmann::json FakeDo::control(const std::string& method, const std::string& path,
                               const std::optional<nlohmann::json>& body) const {
  std::vector<std::string> argv = {"curl", "-sS", "--noproxy", "*", "-m", "150", "-X", method,
                                   "-w", "\n%{http_code}"};
  std::string data;
  if (body) {
    data = body->dump();
    argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", "@-"});
  }
  if (path.rfind("/v2/", 0) == 0) argv.insert(argv.end(), {"-H", std::string("Authorization: Bearer ") + kToken});
  argv.push_back(url_ + path);
  auto r = run(argv, {}, 160s, data);
  if (!r.ok()) throw std::runtime_error("fake DO " + method + " " + path + ": " + r.describe());
  auto nl = r.out.rfind('\n');
  const int status = std::stoi(r.out.substr(nl + 1));
  const std::string text = r.out.substr(0, nl);
  if (status >= 300)
    throw std::runtime_error("fake DO " + method + " " + path + " -> " + std::to_string(status) + ": " + text);
  return text.empty() ? nlohmann::json() : nlohmann::json::parse(text);
}

nlohmann::json FakeDo::state() const { return control("GET", "/_fake/state"); }
nlohmann::json FakeDo::violations() const { return control("GET", "/_fake/violations"); }
void FakeDo::faults(const nlohmann::json& list) const { control("POST", "/_fake/faults", list); }
void FakeDo::clear_faults() const { control("DELETE", "/_fake/faults"); }
void FakeDo::reset() const { control("POST", "/_fake/reset"); }
void FakeDo::config(const nlohmann::json& values) const { control("POST", "/_fake/config", values); }

nlohmann::json FakeDo::api(const std::string& method, const std::string& path,
                           const std::optional<nlohmann::json>& body) const {
  return control(method, path, body);
}

int FakeDo::count(const std::string& operation) const {
  auto counts = state().at("counts");
  return counts.contains(operation) ? counts.at(operation).get<int>() : 0;
}

}  // namespace berth::it
