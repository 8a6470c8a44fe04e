#include "agent/api/detach_keys.h"

#include <stdexcept>

namespace berth::agent::api {

namespace {

char ctrl_key(char c) {
  if (c >= 'a' && c <= 'z') return static_cast<char>(c - 'a' + 1);
  switch (c) {
    case '@': return 0;
    case '[': return 27;
    case '\\': return 28;
    case ']': return 29;
    case '^': return 30;
    case '_': return 31;
    default: throw std::invalid_argument(std::string("Unknown character: '") + c + "'");
  }
}

}  // namespace

std::string parse_detach_keys(std::string_view spec) {
  std::string keys;
  while (true) {
    auto comma = spec.find(',');
    std::string_view key = spec.substr(0, comma);
    if (key.size() == 1) {
      keys += key[0];
    } else if (key.size() == 6 && key.substr(0, 5) == "ctrl-") {
      keys += ctrl_key(key[5]);
    } else {
      throw std::invalid_argument("Unknown character: '" + std::string(key) + "'");
    }
    if (comma == std::string_view::npos) break;
    spec.remove_prefix(comma + 1);
  }
  return keys;
}

bool DetachFilter::feed(std::string_view in, std::string& out) {
  for (char c : in) {
    if (keys_.empty()) {
      out += c;
      continue;
    }
    if (c == keys_[matched_]) {
      if (++matched_ == keys_.size()) return false;
      continue;
    }
    out.append(keys_, 0, matched_);  // a broken prefix goes through after all
    matched_ = 0;
    if (c == keys_[0]) {
      matched_ = 1;
      if (keys_.size() == 1) return false;
    } else {
      out += c;
    }
  }
  return true;
}

}  // namespace berth::agent::api
