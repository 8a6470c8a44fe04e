#pragma once
// The HostConfig fields dockerd fills at create when the client leaves them
// empty, so that inspect shows what dockerd shows.
#include <nlohmann/json.hpp>

namespace berth::agent::runtime {

// LogConfig {"Type":"json-file","Config":{}} (its json-file options checked:
// api::HttpError(400) for a bad max-size/max-file or an unknown option) and
// Runtime "runc" (the name dockerd reports; crun runs it here).
void fill_run_defaults(nlohmann::json& host_config);

}  // namespace berth::agent::runtime
