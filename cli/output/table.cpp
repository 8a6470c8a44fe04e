#include "cli/output/table.h"

#include <algorithm>

namespace berth::cli {
namespace {

constexpr size_t kPadding = 3;

size_t display_width(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

// A cell stays on its line and in its column.
std::string one_line(std::string s) {
  std::replace_if(s.begin(), s.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; }, ' ');
  return s;
}

}  // namespace

std::string render_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows) {
  std::vector<const std::vector<std::string>*> lines;
  lines.push_back(&headers);
  for (const auto& r : rows) lines.push_back(&r);

  size_t columns = 0;
  for (const auto* l : lines) columns = std::max(columns, l->size());
  std::vector<size_t> width(columns, 0);
  for (const auto* l : lines)
    for (size_t c = 0; c < l->size(); ++c) width[c] = std::max(width[c], display_width((*l)[c]));

  std::string out;
  for (const auto* l : lines) {
    std::string line;
    for (size_t c = 0; c < l->size(); ++c) {
      line += one_line((*l)[c]);
      if (c + 1 < columns) line.append(width[c] + kPadding - display_width((*l)[c]), ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line + "\n";
  }
  return out;
}

}  // namespace berth::cli
