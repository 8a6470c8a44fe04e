#include "agent/image/reference.h"

#include <cctype>
#include <stdexcept>

#include "agent/image/digest.h"

namespace berth::agent::image {
namespace {

bool is_alnum_lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*
bool valid_path_component(std::string_view c) {
  if (c.empty() || !is_alnum_lower(c.front()) || !is_alnum_lower(c.back())) return false;
  std::size_t i = 0;
  while (i < c.size()) {
    if (is_alnum_lower(c[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < c.size() && !is_alnum_lower(c[j])) ++j;
    std::string_view sep = c.substr(i, j - i);
    bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
    i = j;
  }
  return true;
}

// A host name or IPv4 (or [IPv6]), with an optional :port.
bool valid_domain(std::string_view d) {
  if (d.empty()) return false;
  std::string_view host = d;
  auto colon = d.rfind(':');
  if (!d.empty() && d.front() == '[') {
    auto close = d.find(']');
    if (close == std::string_view::npos) return false;
    host = d.substr(0, close + 1);
    if (close + 1 < d.size()) {
      if (d[close + 1] != ':') return false;
      colon = close + 1;
    } else {
      colon = std::string_view::npos;
    }
    if (colon != std::string_view::npos) {
      auto port = d.substr(colon + 1);
      if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos)
        return false;
    }
    return true;
  }
  if (colon != std::string_view::npos) {
    auto port = d.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos)
      return false;
    host = d.substr(0, colon);
  }
  if (host.empty()) return false;
  std::size_t start = 0;
  while (start <= host.size()) {
    auto dot = host.find('.', start);
    auto label = host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return false;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (label.front() == '-' || label.back() == '-') return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

[[noreturn]] void invalid() { throw std::invalid_argument("invalid reference format"); }

}  // namespace

bool is_valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(tag[0])) return false;
  for (char c : tag)
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

Reference parse_reference(std::string_view text) {
  if (text.empty()) invalid();
  Reference ref;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!is_sha256_digest(ref.digest)) invalid();
  }
  auto last_slash = rest.rfind('/');
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!is_valid_tag(ref.tag)) invalid();
  }
  if (rest.empty()) invalid();
  // The first component is a domain when it has '.' or ':', is "localhost"
  // or has upper case (which a repository path cannot).
  auto slash = rest.find('/');
  std::string_view path = rest;
  ref.domain = std::string(kDefaultDomain);
  if (slash != std::string_view::npos) {
    auto first = rest.substr(0, slash);
    bool upper = false;
    for (char c : first) upper |= std::isupper(static_cast<unsigned char>(c)) != 0;
    if (first.find_first_of(".:") != std::string_view::npos || first == "localhost" || upper) {
      if (!valid_domain(first)) invalid();
      ref.domain = std::string(first);
      path = rest.substr(slash + 1);
    }
  }
  if (ref.domain == "index.docker.io") ref.domain = std::string(kDefaultDomain);
  for (char c : path) {
    if (std::isupper(static_cast<unsigned char>(c)))
      throw std::invalid_argument("invalid reference format: repository name (" + std::string(path) +
                                  ") must be lowercase");
  }
  std::size_t start = 0;
  while (true) {
    auto next = path.find('/', start);
    if (!valid_path_component(path.substr(start, next == std::string_view::npos ? std::string_view::npos
                                                                              : next - start)))
      invalid();
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  ref.path = std::string(path);
  if (ref.domain == kDefaultDomain && ref.path.find('/') == std::string::npos)
    ref.path = "library/" + ref.path;
  if (ref.name().size() > 255) throw std::invalid_argument("repository name must not be more than 255 characters");
  return ref;
}

Reference parse_reference_default_tag(std::string_view text) {
  Reference ref = parse_reference(text);
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

std::string Reference::name() const { return domain + "/" + path; }

std::string Reference::familiar_name() const {
  if (domain != kDefaultDomain) return name();
  constexpr std::string_view lib = "library/";
  if (path.compare(0, lib.size(), lib) == 0 && path.find('/', lib.size()) == std::string::npos)
    return path.substr(lib.size());
  return path;
}

static std::string with_suffix(std::string base, const Reference& r) {
  if (!r.tag.empty()) base += ":" + r.tag;
  if (!r.digest.empty()) base += "@" + r.digest;
  return base;
}

std::string Reference::string() const { return with_suffix(name(), *this); }
std::string Reference::familiar_string() const { return with_suffix(familiar_name(), *this); }

}  // namespace berth::agent::image
