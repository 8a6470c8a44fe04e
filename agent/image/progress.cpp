#include "agent/image/progress.h"

#include <cstdio>

namespace berth::agent::image {

nlohmann::json status_message(std::string_view status, std::string_view id) {
  nlohmann::json m = {{"status", status}};
  if (!id.empty()) {
    m["id"] = id;
    m["progressDetail"] = nlohmann::json::object();
  }
  return m;
}

nlohmann::json progress_message(std::string_view status, std::string_view id, std::uint64_t current,
                                std::uint64_t total) {
  nlohmann::json detail = {{"current", current}};
  if (total > 0) detail["total"] = total;
  return {{"status", status}, {"id", id}, {"progressDetail", detail},
          {"progress", progress_bar(current, total)}};
}

nlohmann::json error_message(std::string_view message) {
  return {{"errorDetail", {{"message", message}}}, {"error", message}};
}

nlohmann::json stream_message(std::string_view text) { return {{"stream", text}}; }

std::string human_size(double bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int unit = 0;
  while (bytes >= 1000.0 && unit < 5) {
    bytes /= 1000.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g%s", bytes, kUnits[unit]);
  // %.4g keeps 4 significant digits like Go's "%.4g".
  return buf;
}

std::string progress_bar(std::uint64_t current, std::uint64_t total) {
  std::string sizes = human_size(static_cast<double>(current));
  if (total == 0) return sizes;
  sizes += "/" + human_size(static_cast<double>(total));
  constexpr int kWidth = 50;
  int filled = static_cast<int>(kWidth * (current > total ? 1.0 : static_cast<double>(current) / total));
  std::string bar = "[";
  for (int i = 0; i < kWidth; ++i) bar += i < filled ? "=" : (i == filled ? ">" : " ");
  bar += "] ";
  // docker pads the numbers to a fixed width.
  char buf[64];
  std::snprintf(buf, sizeof buf, "%18s", sizes.c_str());
  return bar + buf;
}

}  // namespace berth::agent::image
