#include "cli/prompt.h"

#include <fmt/format.h>
#include <unistd.h>

#include <iostream>

#include "core/error.h"

namespace berth::cli {

bool confirm(const std::string& question, const std::string& yes_flag) {
  if (!::isatty(STDIN_FILENO))
    throw UsageError(question + " needs an answer, and stdin is not a terminal; add " + yes_flag);
  fmt::print("{} (y/n): ", question);
  std::fflush(stdout);
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "y" || answer == "Y" || answer == "yes";
}

}  // namespace berth::cli
