#include "agent/api/router.h"

#include <stdexcept>

namespace berth::agent::api {
namespace {

// "/a/b/" -> {"a", "b", ""}; nullopt unless it starts with '/'.
std::optional<std::vector<std::string_view>> split_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  std::vector<std::string_view> out;
  std::string_view rest = path.substr(1);
  for (;;) {
    auto slash = rest.find('/');
    out.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  return out;
}

std::string join(const std::vector<std::string_view>& parts, std::size_t from, std::size_t to) {
  std::string out;
  for (std::size_t i = from; i < to; ++i) {
    if (i > from) out += '/';
    out += parts[i];
  }
  return out;
}

}  // namespace

void Router::add(std::string method, std::string_view pattern, Handler handler,
                 RouteOptions options) {
  auto parts = split_path(pattern);
  if (!parts)
    throw std::invalid_argument("route pattern must start with '/': " + std::string(pattern));
  Route route{std::move(method), {}, std::move(handler), options};
  for (std::string_view part : *parts) {
    if (part.size() >= 2 && part.front() == '{' && part.back() == '}') {
      std::string_view name = part.substr(1, part.size() - 2);
      bool rest = name.ends_with("...");
      if (rest) name.remove_suffix(3);
      if (name.empty())
        throw std::invalid_argument("empty parameter name in " + std::string(pattern));
      route.segments.push_back(
          {rest ? Segment::Kind::Rest : Segment::Kind::Param, std::string(name)});
    } else {
      route.segments.push_back({Segment::Kind::Literal, std::string(part)});
    }
  }
  routes_.push_back(std::move(route));
}

bool Router::match_segments(const std::vector<Segment>& pattern, std::size_t pi,
                            const std::vector<std::string_view>& path, std::size_t si,
                            Params& params) {
  if (pi == pattern.size()) return si == path.size();
  if (si == path.size()) return false;
  const Segment& seg = pattern[pi];
  switch (seg.kind) {
    case Segment::Kind::Literal:
      return seg.text == path[si] && match_segments(pattern, pi + 1, path, si + 1, params);
    case Segment::Kind::Param:
      if (path[si].empty() || !match_segments(pattern, pi + 1, path, si + 1, params)) return false;
      params[seg.text] = std::string(path[si]);
      return true;
    case Segment::Kind::Rest:
      // Longest first, like a greedy ".*", leaving what the rest of the pattern needs.
      for (std::size_t end = path.size(); end > si; --end) {
        std::string value = join(path, si, end);
        if (value.empty()) continue;
        if (match_segments(pattern, pi + 1, path, end, params)) {
          params[seg.text] = std::move(value);
          return true;
        }
      }
      return false;
  }
  return false;
}

std::optional<Router::Match> Router::match(std::string_view method, std::string_view path) const {
  auto parts = split_path(path);
  if (!parts) return std::nullopt;
  for (const Route& route : routes_) {
    if (route.method != method) continue;
    Params params;
    if (match_segments(route.segments, 0, *parts, 0, params))
      return Match{&route.handler, std::move(params), route.options};
  }
  return std::nullopt;
}

}  // namespace berth::agent::api
