#include "core/remote.h"

#include <fmt/format.h>

#include "core/error.h"

namespace berth {
namespace {

// The tail of stderr on one line, short enough for an error message.
std::string summarize(std::string text, size_t limit) {
  for (char& c : text)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  auto first = text.find_first_not_of(' ');
  auto last = text.find_last_not_of(' ');
  if (first == std::string::npos) return {};
  text = text.substr(first, last - first + 1);
  if (text.size() > limit) text = "..." + text.substr(text.size() - limit);
  return text;
}

}  // namespace

std::string Remote::check(const std::string& command, std::string_view stdin_data) {
  ExecResult r = run(command, stdin_data);
  if (r.exit_code == 0) return r.out;
  std::string detail = summarize(r.err.empty() ? r.out : r.err, 400);
  std::string status = r.exit_code < 0 ? "was killed (no exit status)" : fmt::format("exited with {}", r.exit_code);
  throw SshError(fmt::format("remote command '{}' {}{}", summarize(command, 200), status,
                             detail.empty() ? "" : ": " + detail),
                 r.exit_code);
}

}  // namespace berth
