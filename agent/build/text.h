#pragma once
// Small text helpers shared by the Dockerfile front end, each matching the Go
// function buildkit and moby use, so our messages and edge cases agree.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::build::text {

// One code point of UTF-8 text. An invalid byte decodes as itself
// (valid == false, width 1), so callers can copy the original bytes.
struct Rune {
  char32_t cp = 0;
  std::size_t width = 0;
  bool valid = true;
};
Rune decode(std::string_view s, std::size_t pos);
void append_utf8(std::string& out, char32_t cp);

// Go's unicode.IsSpace.
bool is_space(char32_t cp);
// [\t\n\v\f\r ], the bytes Go's regexps and strings.TrimSpace treat as space.
bool is_ascii_space(char c);
std::string_view trim_space(std::string_view s);
std::string to_lower(std::string_view s);
std::string to_upper(std::string_view s);
bool iequals(std::string_view a, std::string_view b);

// Go's strconv.Quote, i.e. what "%q" prints: "a\"b\n".
std::string go_quote(std::string_view s);

// Go's path.Clean: "./a//b/../c/" -> "a/c", "" -> ".".
std::string clean_path(std::string_view path);

// Go's time.ParseDuration ("1h30m", "1.5s", "300ms", "-2us"): true with the
// nanoseconds, or false with Go's message (`time: invalid duration "x"`,
// `time: missing unit in duration "1"`, `time: unknown unit "d" in duration "1d"`).
bool parse_go_duration(std::string_view s, std::int64_t& nanos, std::string& error);

// Go's strconv.ParseInt(s, 10, 32): true with the value, or false with Go's
// message (`strconv.ParseInt: parsing "x": invalid syntax`).
bool parse_go_int32(std::string_view s, std::int32_t& value, std::string& error);

// buildkit's suggest.WrapError: the option closest to `value` (Levenshtein
// distance below 3, ties to the first in `options`), cased like `value` when
// !case_sensitive; "" when none is close or `value` is itself an option.
std::string suggest(std::string_view value, const std::vector<std::string>& options,
                    bool case_sensitive);

}  // namespace berth::agent::build::text
