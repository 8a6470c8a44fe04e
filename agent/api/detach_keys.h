#pragma once
// Detach keys (`docker attach/run/exec --detach-keys`): dockerd's notation
// ("ctrl-p,ctrl-q", "a,ctrl-@") and the filter that watches a TTY's input
// for the sequence, as moby/term's escape proxy does.
#include <string>
#include <string_view>

namespace berth::agent::api {

inline constexpr std::string_view kDefaultDetachKeys = "ctrl-p,ctrl-q";

// The bytes the notation names; std::invalid_argument names the bad key.
std::string parse_detach_keys(std::string_view spec);

class DetachFilter {
 public:
  explicit DetachFilter(std::string keys) : keys_(std::move(keys)) {}
  // Appends to `out` what passes through. A prefix of the sequence is held
  // back until the next byte decides; false once the whole sequence was read
  // (nothing of it is passed on, nor anything after it).
  bool feed(std::string_view in, std::string& out);

 private:
  std::string keys_;
  std::size_t matched_ = 0;
};

}  // namespace berth::agent::api
