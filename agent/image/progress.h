#pragma once
// dockerd's JSON progress stream (what the docker CLI's jsonmessage renders):
// one JSON object per line: {"status","id","progressDetail","progress"},
// {"stream": "..."}, {"errorDetail":{"message"},"error"}.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace berth::agent::image {

// Where progress lines go; false once the client went away.
using MessageSink = std::function<bool(const nlohmann::json&)>;

nlohmann::json status_message(std::string_view status, std::string_view id = {});
// "Downloading" with {"current","total"} and the bar string older clients show.
nlohmann::json progress_message(std::string_view status, std::string_view id, std::uint64_t current,
                                std::uint64_t total);
nlohmann::json error_message(std::string_view message);
nlohmann::json stream_message(std::string_view text);

// docker's units.HumanSize: "1.05MB", "512B", "3.2GB".
std::string human_size(double bytes);
// "[=====>     ]  1.05MB/2.1MB" as docker's JSONProgress.String().
std::string progress_bar(std::uint64_t current, std::uint64_t total);

}  // namespace berth::agent::image
