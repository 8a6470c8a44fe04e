#include "agent/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.h"

namespace berth::agent {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(LogQuote, EscapesWhatCouldForgeALogLine) {
  EXPECT_EQ(log_quote("/_ping"), "\"/_ping\"");
  EXPECT_EQ(log_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(log_quote("x\n2025 info forged"), "\"x\\x0a2025 info forged\"");
  EXPECT_EQ(log_quote("abcdef", 3), "\"abc...\"");
}

TEST(Logger, WritesTimestampedLinesAndReopens) {
  fs::path path = fs::temp_directory_path() / ("berth-agent-log-" + std::to_string(::getpid()));
  fs::path rotated = path;
  rotated += ".1";
  {
    Logger log(path.string());
    log.info("started");
    log.error("boom");
    fs::rename(path, rotated);   // what logrotate does
    ASSERT_TRUE(log.reopen());
    log.warn("after rotation");
  }
  std::string old_text = slurp(rotated);
  EXPECT_TRUE(std::regex_search(
      old_text, std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info started\n)")))
      << old_text;
  EXPECT_NE(old_text.find(" error boom\n"), std::string::npos);
  EXPECT_EQ(old_text.find("after rotation"), std::string::npos);
  EXPECT_NE(slurp(path).find(" warn after rotation\n"), std::string::npos);
  fs::remove(path);
  fs::remove(rotated);
}

TEST(Logger, UnopenableFileIsAUserErrorNamingIt) {
  try {
    Logger log("/nonexistent-dir/agent.log");
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/agent.log"), std::string::npos);
  }
}

}  // namespace
}  // namespace berth::agent
