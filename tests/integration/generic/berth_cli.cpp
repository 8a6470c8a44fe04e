#include "tests/integration/generic/berth_cli.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace berth::it {

BerthCli::BerthCli() : BerthCli(TempDir("berth-it-cli")) {}

BerthCli::BerthCli(const fs::path& root) : BerthCli(TempDir::kept(root)) {}

BerthCli::BerthCli(TempDir dir) : dir_(std::move(dir)) {
  fs::create_directories(home() / ".docker");
  fs::create_directories(scratch());
  const char* path = std::getenv("PATH");
  env_ = {
      {"HOME", home().string()},
      {"DOCKER_CONFIG", (home() / ".docker").string()},
      {"BERTH_STORAGE_PATH", store().string()},
      {"BERTH_AGENT_BINARY", agent_binary().string()},
      {"PATH", berth_binary().parent_path().string() + ":/usr/local/bin:" + (path ? path : "/usr/bin:/bin")},
      {"SHELL", "/bin/bash"},
      {"DOCKER_HOST", std::nullopt},
      {"DOCKER_TLS_VERIFY", std::nullopt},
      {"DOCKER_CERT_PATH", std::nullopt},
      {"DOCKER_CONTEXT", std::nullopt},
      {"BERTH_MACHINE_NAME", std::nullopt},
      {"SSH_AUTH_SOCK", std::nullopt},
  };
}

RunResult BerthCli::operator()(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {berth_binary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, env_, timeout);
}

Process BerthCli::start(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {berth_binary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  SpawnOptions options;
  options.env = env_;
  return Process::start(argv, options);
}

RunResult BerthCli::bash(const std::string& script, std::chrono::milliseconds timeout) const {
  return run({"bash", "-c", script}, env_, timeout);
}

std::vector<std::string> BerthCli::create_args(const TestHost& host, const std::string& name,
                                               const std::vector<std::string>& extra) const {
  std::vector<std::string> args = {"create", "-d", "generic", "--generic-ip-address", host.ip(),
                                   "--generic-ssh-user", "root", "--generic-ssh-key",
                                   host.private_key().string(), "--generic-ssh-port", "22"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(name);
  return args;
}

RunResult BerthCli::create(const TestHost& host, const std::string& name,
                           const std::vector<std::string>& extra) const {
  return (*this)(create_args(host, name, extra), 240s);
}

std::map<std::string, nlohmann::json> BerthCli::ls_json() const {
  auto r = (*this)({"ls", "--format", "json"}, 60s);
  if (!r.ok()) throw std::runtime_error("berth ls --format json failed: " + r.describe());
  std::map<std::string, nlohmann::json> out;
  for (const auto& line : lines(r.out)) {
    auto j = nlohmann::json::parse(line);
    out[j.at("Name").get<std::string>()] = j;
  }
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

std::string trim(const std::string& text) {
  auto b = text.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  auto e = text.find_last_not_of(" \t\r\n");
  return text.substr(b, e - b + 1);
}

bool contains_icase(const std::string& haystack, const std::string& needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
  return it != haystack.end();
}

std::vector<std::string> regular_files(const fs::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::exists(root, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(root, ec); it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (ec) break;
    // Lexically: root may be a /proc/PID/root path, which canonicalizes to "/".
    if (it->is_regular_file(ec)) out.push_back(it->path().lexically_relative(root).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace berth::it
