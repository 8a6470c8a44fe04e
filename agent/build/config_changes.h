#pragma once
// What a Dockerfile instruction does to an image's config (its "config"
// object: Env, Cmd, Labels...), as dockerd's dispatchers do it. One place for
// the builder and for `docker commit --change` (dockerd's BuildFromConfig).
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/build/instructions.h"

namespace berth::agent::build {

// The config's SHELL, ["/bin/sh", "-c"] by default.
std::vector<std::string> config_shell(const nlohmann::json& config);
// A RUN, CMD or ENTRYPOINT as the argv it runs: exec form as is, shell form
// through the config's SHELL.
std::vector<std::string> command_argv(const nlohmann::json& config, const CommandLine& command);
// WORKDIR `path` from `current` as the builder sets it: "/a" + "b" -> "/a/b",
// no trailing "/".
std::string workdir_path(const std::string& current, const std::string& path);

// Applies an instruction that only changes the config (CMD, ENTRYPOINT, ENV,
// EXPOSE, HEALTHCHECK, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME), its
// variables already expanded. `cmd_set` says whether this stage gave a CMD
// (a later ENTRYPOINT then keeps it) and is updated. Returns what history
// shows after "#(nop) " ("ENV A=b"), or nullopt for any other instruction
// (config untouched). Throws BuildError in dockerd's words ("Invalid signal:
// X", "invalid containerPort: x", "VOLUME specified can not be an empty string").
std::optional<std::string> apply_config_instruction(nlohmann::json& config, const Instruction& in, bool& cmd_set);

// docker commit --change: `changes` (Dockerfile lines) applied to a container
// config as dockerd's BuildFromConfig does: only CMD, ENTRYPOINT, ENV, EXPOSE,
// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR, their variables
// expanded with the config's Env as it goes. Throws BuildError with dockerd's
// message (e.g. "run is not a valid change command"): a 400.
nlohmann::json apply_changes(nlohmann::json config, const std::vector<std::string>& changes);

}  // namespace berth::agent::build
