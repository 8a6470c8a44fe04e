#pragma once
// Column tables like Go's text/tabwriter (minwidth 0, padding 3, padchar ' '):
// every column but the last is as wide as its widest cell plus 3. Widths count
// UTF-8 code points. No line has trailing spaces.
#include <string>
#include <vector>

namespace berth::cli {

// One line per row (header first), each ending in "\n". Rows may have fewer cells than headers.
std::string render_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows);

}  // namespace berth::cli
