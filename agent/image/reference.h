#pragma once
// Image references parsed and normalized like docker's distribution/reference:
//   busybox                  -> docker.io/library/busybox      (shown as busybox)
//   user/app:1               -> docker.io/user/app:1
//   host:5000/team/app@sha256:<hex>
#include <string>
#include <string_view>

namespace berth::agent::image {

inline constexpr std::string_view kDefaultDomain = "docker.io";

struct Reference {
  std::string domain;  // "docker.io", "127.0.0.1:5000", "localhost"
  std::string path;    // "library/busybox"
  std::string tag;     // empty when absent
  std::string digest;  // "sha256:<hex>", empty when absent

  std::string name() const;           // "docker.io/library/busybox"
  std::string familiar_name() const;  // "busybox", "127.0.0.1:5000/busybox"
  std::string string() const;         // name() + ":tag" / "@digest"
  std::string familiar_string() const;
  bool is_docker_hub() const { return domain == kDefaultDomain; }
};

// Throws std::invalid_argument with dockerd's wording ("invalid reference
// format", "... must be lowercase"). Does not add a tag.
Reference parse_reference(std::string_view text);
// parse_reference, adding ":latest" when there is neither tag nor digest.
Reference parse_reference_default_tag(std::string_view text);

bool is_valid_tag(std::string_view tag);

}  // namespace berth::agent::image
