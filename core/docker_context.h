#pragma once
// The docker CLI's context store, written the way `docker context create/use` does,
// so that `docker --context berth-NAME` and plain `docker` reach a machine:
//   $DOCKER_CONFIG/contexts/meta/<sha256hex(name)>/meta.json
//     {"Name":..,"Metadata":{"Description":..},"Endpoints":{"docker":{"Host":..,"SkipTLSVerify":false}}}
//   $DOCKER_CONFIG/contexts/tls/<sha256hex(name)>/docker/{ca,cert,key}.pem
//   $DOCKER_CONFIG/config.json  "currentContext" (every other key is kept)
// Checked against docker CLI 28. Not safe against a concurrent `docker context use`.
#include <filesystem>
#include <string>

namespace berth {

struct DockerContextSpec {
  std::string name;           // e.g. "berth-dev"
  std::string host;           // e.g. "tcp://192.0.2.7:2376"
  std::string ca_pem_path;    // files to copy in; empty: none
  std::string cert_pem_path;
  std::string key_pem_path;
  std::string description;
};

// $DOCKER_CONFIG, else ~/.docker.
std::filesystem::path docker_config_dir();

// Creates or replaces the context (TLS files 0600, directories 0700).
// Throws UserError for a name docker would refuse, Error when a file can't be read or written.
void write_docker_context(const DockerContextSpec& spec);

// Removes the context; when it was current, docker goes back to "default".
// Removing a missing context succeeds.
void remove_docker_context(const std::string& name);

bool docker_context_exists(const std::string& name);

// config.json's "currentContext"; "" when unset or "default". Ignores $DOCKER_CONTEXT.
std::string current_docker_context();

// "" or "default" removes the key. Writes config.json atomically (0600), creating it
// when missing and writing through a symlink. Throws NotFound for a context that doesn't exist.
void set_current_docker_context(const std::string& name);

// `berth use --unset` goes back to the context that was current before `berth use`:
// kept in <berth_store_root>/previous-docker-context ("" removes the file).
void remember_previous_context(const std::filesystem::path& berth_store_root, const std::string& ctx);
std::string recall_previous_context(const std::filesystem::path& berth_store_root);  // "" when none

}  // namespace berth
