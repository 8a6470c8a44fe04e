#pragma once
// The container's configuration as dockerd derives it: image config merged
// into the create body, -v/--mount parsing, user lookup in the rootfs, and
// the OCI runtime spec (config.json) handed to crun.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace berth::agent::runtime {

// Fills Env (image first, then the body's, same names replaced), Cmd and
// Entrypoint (the body's Entrypoint drops the image's Cmd), WorkingDir, User,
// ExposedPorts, Volumes, Labels, StopSignal, Healthcheck from the image's
// "config" when the body leaves them empty. Returns the stored Config.
nlohmann::json merge_image_config(const nlohmann::json& body_config,
                                  const nlohmann::json& image_config);

// One mount request from HostConfig.Binds, HostConfig.Mounts or Config.Volumes.
struct MountRequest {
  enum class Kind { Bind, Volume, Tmpfs } kind = Kind::Bind;
  std::string source;  // host path (Bind), volume name ("" = anonymous) (Volume)
  std::string destination;
  bool read_only = false;
  std::string mode;         // as given ("ro", "rw,z", ...) for the inspect Mounts entry
  std::string propagation;  // "rprivate" by default for binds
};
// "src:dst[:opts]" or "dst". Throws api::HttpError(400) "invalid volume specification: '...'".
MountRequest parse_bind(const std::string& spec);
// One HostConfig.Mounts entry ({"Type","Source","Target","ReadOnly"}). Throws 400.
MountRequest parse_mount(const nlohmann::json& m);
// All mounts of a container: Binds, Mounts, then Config.Volumes not already covered
// (anonymous). Throws 400 on a duplicate destination.
// A Config.Volumes key (the image's VOLUME, or `docker run -v /path`) is only
// ever a path inside the container: it becomes an anonymous volume, whatever it
// contains (a ':' or a host path never mounts anything of the host's).
std::vector<MountRequest> collect_mounts(const nlohmann::json& config,
                                         const nlohmann::json& host_config);
// The anonymous volume for one Config.Volumes key. Throws 400 for a relative path or '/'.
MountRequest anonymous_volume(const std::string& path);

struct ResolvedUser {
  std::uint32_t uid = 0, gid = 0;
  std::vector<std::uint32_t> additional_gids;
  std::string home = "/";
};
// "", "name", "uid", "name:group", "uid:gid" against /etc/passwd and /etc/group
// text. Throws api::HttpError(400) "unable to find user NAME: no matching entries in passwd file".
ResolvedUser resolve_user(const std::string& user, const std::string& passwd,
                          const std::string& group);

// A mount in the OCI spec.
struct OciMount {
  std::string destination, type, source;
  std::vector<std::string> options;
};

struct SpecInput {
  std::string id;
  nlohmann::json config;       // the stored (merged) Config
  nlohmann::json host_config;  // HostConfig
  std::filesystem::path rootfs;
  std::string hostname;
  ResolvedUser user;
  std::optional<std::string> netns_path;  // nullopt: the host's network namespace
  std::vector<OciMount> extra_mounts;     // binds, volumes, /etc/hosts etc., after the defaults
  std::string cgroups_path;               // "/berth/<id>"
  // Confinement (agent/runtime/security.h): linux.seccomp (nullopt: none),
  // process.apparmorProfile, process.noNewPrivileges, a writable /sys/fs/cgroup.
  std::optional<nlohmann::json> seccomp;
  std::optional<std::string> apparmor_profile;
  bool no_new_privileges = false;
  bool writable_cgroups = false;
};

// The OCI runtime spec (version 1.0.2) for crun.
nlohmann::json build_oci_spec(const SpecInput& in);

// The process entry for `crun exec --process`: args, env (container env plus
// the exec's), cwd, user, terminal, capabilities as the container's.
nlohmann::json build_exec_process(const nlohmann::json& container_spec,
                                  const nlohmann::json& exec_config, const ResolvedUser* user);

// The container's capabilities: the default set, or all when privileged, with CapAdd/CapDrop.
std::vector<std::string> container_capabilities(const nlohmann::json& host_config);
// Docker's default capability set.
std::vector<std::string> default_capabilities();
// Signal names ("SIGTERM", "TERM", "15") to numbers; nullopt if unknown.
std::optional<int> parse_signal(const std::string& text);

}  // namespace berth::agent::runtime
