#pragma once
#include <string>

namespace berth::cli {

// Asks "question (y/n): " on a terminal. Without a terminal it throws UsageError
// telling the user which flag answers yes (`yes_flag`).
bool confirm(const std::string& question, const std::string& yes_flag);

}  // namespace berth::cli
