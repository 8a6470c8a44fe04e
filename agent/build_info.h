#pragma once
// What this berth-agent binary is: its version, the Engine API versions it
// speaks, and how it was built.
#include <string>

namespace berth::agent {

inline constexpr const char* kApiVersion = "1.47";  // default and highest
inline constexpr const char* kMinApiVersion = "1.24";
inline constexpr const char* kAgentVersion = BERTH_VERSION;

struct BuildInfo {
  std::string version;     // BERTH_VERSION
  std::string git_commit;  // short commit at configure time, "unknown" outside git
  std::string build_time;  // RFC 3339 (honours SOURCE_DATE_EPOCH)
  std::string compiler;    // e.g. "gcc 12.2.0"
};

const BuildInfo& build_info();

}  // namespace berth::agent
