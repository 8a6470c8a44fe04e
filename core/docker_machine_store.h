#pragma once
// Reading docker-machine's store (~/.docker/machine, ConfigVersion 3) and
// turning one of its hosts into a berth engine-host record. The docker-machine
// store is only ever read.
//
// Layout: ROOT/certs/{ca,ca-key,cert,key}.pem and ROOT/machines/NAME/{config.json,
// ca.pem, cert.pem, key.pem, server.pem, server-key.pem, id_rsa, id_rsa.pub}.
// config.json: {"ConfigVersion": 3, "Driver": {IPAddress, MachineName, SSHUser,
// SSHPort, SSHKeyPath, StorePath, ...per driver}, "DriverName", "HostOptions":
// {"EngineOptions", "SwarmOptions", "AuthOptions": {CertDir, CaCertPath,
// ClientCertPath, ClientKeyPath, ServerCertPath, ServerKeyPath, StorePath, ...}},
// "Name"}.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/machine.h"
#include "core/secrets.h"

namespace berth {

class Store;

namespace docker_machine {

namespace fs = std::filesystem;

inline constexpr int kConfigVersion = 3;

// $MACHINE_STORAGE_PATH, else ~/.docker/machine.
fs::path default_root();

// The drivers berth imports: generic, none, virtualbox, digitalocean, amazonec2.
const std::vector<std::string>& supported_drivers();

// Names of ROOT/machines/* that hold a config.json, sorted. Throws UserError
// when ROOT has no machines directory.
std::vector<std::string> list_hosts(const fs::path& root);

// One host's config.json, parsed and checked. Throws Error (one line, naming
// the file) when it is missing, not JSON, or not ConfigVersion 3.
struct Host {
  std::string name;
  std::string driver_name;
  fs::path root;                 // the docker-machine store
  fs::path dir;                  // ROOT/machines/NAME
  fs::path config_file;
  nlohmann::json driver;         // "Driver"
  nlohmann::json host_options;   // "HostOptions"
};
Host read_host(const fs::path& root, const std::string& name);

// What importing a host writes: the record, and files copied (0600) into the
// berth machine directory.
struct CopiedFile {
  fs::path from;
  std::string to;   // file name in the machine dir
};
struct ImportPlan {
  MachineRecord record;
  std::vector<CopiedFile> files;
};

// Maps the host onto a berth record for its driver; secrets (DigitalOcean
// token, AWS keys) are sealed with `secrets`. Missing credentials are taken
// from `env` (DIGITALOCEAN_ACCESS_TOKEN, AWS_ACCESS_KEY_ID, ...), the way
// docker-machine did. Throws UserError for a driver berth does not import and
// for missing key or TLS files; nothing is written.
struct Environment {
  std::string digitalocean_token;
  std::string aws_access_key, aws_secret_key, aws_session_token;
  static Environment from_process();
};
ImportPlan plan_import(const Host& host, const fs::path& berth_machine_dir, const SecretSealer& secrets,
                       const Environment& env = {});

// Creates machines/NAME in the berth store (0700), copies the files (0600) and
// saves the record. On any failure the new directory is removed again.
// Throws UserError when the machine already exists (nothing is touched then).
void write_import(const Store& store, const ImportPlan& plan);

}  // namespace docker_machine
}  // namespace berth
