#include "core/docker_context.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"

namespace berth {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr const char* kPreviousContextFile = "previous-docker-context";

std::string sha256_hex(const std::string& s) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(s.data(), s.size(), digest, &len, EVP_sha256(), nullptr) != 1)
    throw Error("cannot compute SHA-256 of docker context name '" + s + "'");
  static const char* const hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xf];
  }
  return out;
}

// docker's own rule (cli/context/store: restrictedNamePattern) plus its reserved name.
void validate_context_name(const std::string& name) {
  static const std::regex pattern("^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$");
  if (name == "default") throw UserError("\"default\" is a reserved docker context name");
  if (!std::regex_match(name, pattern))
    throw UserError("invalid docker context name '" + name + "': use letters, digits and _.+- (at least 2 characters)");
}

fs::path meta_dir(const std::string& name) { return docker_config_dir() / "contexts" / "meta" / sha256_hex(name); }
fs::path tls_dir(const std::string& name) { return docker_config_dir() / "contexts" / "tls" / sha256_hex(name); }

// Creates DIR (and missing parents) 0700 without touching the modes of existing ones.
void make_dirs(const fs::path& dir) {
  if (!fs::is_directory(dir)) ensure_private_dir(dir);
}

fs::path config_json_path() {
  fs::path p = docker_config_dir() / "config.json";
  std::error_code ec;
  if (fs::is_symlink(p, ec)) {  // e.g. managed by a dotfiles repo: write the target
    fs::path target = fs::weakly_canonical(p, ec);
    if (!ec) return target;
  }
  return p;
}

ordered_json load_config(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return ordered_json::object();
  const std::string text = read_file(path);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return ordered_json::object();
  ordered_json j = ordered_json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw Error("cannot parse docker config " + path.string() + ": not a JSON object; fix or move it away");
  return j;
}

void remove_tree(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) throw Error("cannot remove " + p.string() + ": " + ec.message());
}

}  // namespace

fs::path docker_config_dir() {
  if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d) return d;
  return home_dir() / ".docker";
}

void write_docker_context(const DockerContextSpec& spec) {
  validate_context_name(spec.name);
  if (spec.host.empty()) throw UserError("docker context '" + spec.name + "' needs a host URL");

  // TLS first, so docker never sees the context without its material.
  const fs::path tls = tls_dir(spec.name) / "docker";
  const std::pair<const char*, const std::string*> files[] = {
      {"ca.pem", &spec.ca_pem_path}, {"cert.pem", &spec.cert_pem_path}, {"key.pem", &spec.key_pem_path}};
  bool any_tls = false;
  for (const auto& [file, src] : files) any_tls = any_tls || !src->empty();
  if (any_tls) {
    make_dirs(tls);
    for (const auto& [file, src] : files) {
      std::error_code ec;
      if (!src->empty())
        copy_file_private(*src, tls / file, 0600);
      else
        fs::remove(tls / file, ec);
    }
  } else {
    remove_tree(tls_dir(spec.name));
  }

  ordered_json meta = {
      {"Name", spec.name},
      {"Metadata", ordered_json::object()},
      {"Endpoints", {{"docker", {{"Host", spec.host}, {"SkipTLSVerify", false}}}}},
  };
  if (!spec.description.empty()) meta["Metadata"]["Description"] = spec.description;
  const fs::path dir = meta_dir(spec.name);
  make_dirs(dir);
  write_file_atomic(dir / "meta.json", meta.dump(), 0644);
}

void remove_docker_context(const std::string& name) {
  if (name.empty() || name == "default") return;
  if (current_docker_context() == name) set_current_docker_context("");
  remove_tree(meta_dir(name));
  remove_tree(tls_dir(name));
}

bool docker_context_exists(const std::string& name) {
  if (name.empty() || name == "default") return true;
  std::error_code ec;
  return fs::exists(meta_dir(name) / "meta.json", ec);
}

std::string current_docker_context() {
  const ordered_json config = load_config(config_json_path());
  auto it = config.find("currentContext");
  if (it == config.end() || !it->is_string()) return "";
  const std::string name = it->get<std::string>();
  return name == "default" ? "" : name;
}

void set_current_docker_context(const std::string& name) {
  if (!docker_context_exists(name))
    throw NotFound("docker context '" + name + "' does not exist in " + docker_config_dir().string() +
                   "; run 'docker context ls' to see the contexts");
  const fs::path path = config_json_path();
  ordered_json config = load_config(path);
  if (name.empty() || name == "default")
    config.erase("currentContext");
  else
    config["currentContext"] = name;
  make_dirs(path.parent_path());
  write_file_atomic(path, config.dump(1, '\t') + "\n", 0600);
}

void remember_previous_context(const fs::path& berth_store_root, const std::string& ctx) {
  const fs::path file = berth_store_root / kPreviousContextFile;
  if (ctx.empty() || ctx == "default") {
    std::error_code ec;
    fs::remove(file, ec);
    if (ec) throw Error("cannot remove " + file.string() + ": " + ec.message());
    return;
  }
  make_dirs(berth_store_root);
  write_file_atomic(file, ctx + "\n", 0600);
}

std::string recall_previous_context(const fs::path& berth_store_root) {
  const fs::path file = berth_store_root / kPreviousContextFile;
  std::error_code ec;
  if (!fs::exists(file, ec)) return "";
  std::string ctx = read_file(file);
  ctx.erase(ctx.find_last_not_of(" \t\r\n") + 1);
  return ctx == "default" ? "" : ctx;
}

}  // namespace berth
