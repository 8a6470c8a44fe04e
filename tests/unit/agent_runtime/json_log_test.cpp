#include "agent/runtime/json_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace berth::agent::runtime {
namespace {

constexpr std::int64_t kT = 1700000000LL * 1000000000LL;  // 2023-11-14T22:13:20Z

TEST(JsonLogTest, FormatsDockersJsonFileLines) {
  std::string line = format_log_line("hello\n", "stdout", kT + 120000000);
  EXPECT_EQ(line, "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2023-11-14T22:13:20.12Z\"}\n");
  auto parsed = parse_log_line(line.substr(0, line.size() - 1));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->text, "hello\n");
  EXPECT_EQ(parsed->stream, "stdout");
  EXPECT_EQ(parsed->unix_nanos, kT + 120000000);
}

TEST(JsonLogTest, TimeFormats) {
  EXPECT_EQ(rfc3339_nano(kT), "2023-11-14T22:13:20Z");
  EXPECT_EQ(rfc3339_nano(kT + 1), "2023-11-14T22:13:20.000000001Z");
  EXPECT_EQ(rfc3339_nano_fixed(kT + 5000), "2023-11-14T22:13:20.000005000Z");
  EXPECT_EQ(parse_rfc3339("2023-11-14T23:13:20.5+01:00"), kT + 500000000);
  EXPECT_EQ(parse_rfc3339("0001-01-01T00:00:00Z").has_value(), true);
  EXPECT_FALSE(parse_rfc3339("2023-11-14 22:13:20Z"));
  EXPECT_FALSE(parse_rfc3339("2023-13-14T22:13:20Z"));
  EXPECT_EQ(parse_log_time("1700000000"), kT);
  EXPECT_EQ(parse_log_time("1700000000.25"), kT + 250000000);
  EXPECT_EQ(parse_log_time("1700000000.000000001"), kT + 1);
  EXPECT_FALSE(parse_log_time("17x"));
  EXPECT_FALSE(parse_log_time("1.1234567890"));
}

TEST(JsonLogTest, SplitsLinesAndLongChunks) {
  LineSplitter s;
  EXPECT_TRUE(s.feed("par").empty());
  auto lines = s.feed("tial\nsecond\nrest");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "partial\n");
  EXPECT_EQ(lines[1], "second\n");
  EXPECT_EQ(s.flush(), "rest");
  EXPECT_FALSE(s.flush());
  std::string big(LineSplitter::kMaxLine + 10, 'x');
  lines = s.feed(big);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].size(), LineSplitter::kMaxLine);
  EXPECT_EQ(s.flush()->size(), 10u);
}

std::string sample_log() {
  std::string text;
  text += format_log_line("o1\n", "stdout", kT + 1'000'000'000);
  text += format_log_line("e1\n", "stderr", kT + 2'000'000'000);
  text += format_log_line("o2\n", "stdout", kT + 3'000'000'000);
  text += format_log_line("e2\n", "stderr", kT + 4'000'000'000);
  text += "{\"log\":\"partial";  // being written
  return text;
}

std::vector<std::string> texts(const std::vector<LogEntry>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.text);
  return out;
}

TEST(JsonLogTest, FiltersStreamsSinceUntilAndTail) {
  std::string log = sample_log();
  LogFilter all;
  EXPECT_EQ(texts(select_logs(log, all)), (std::vector<std::string>{"o1\n", "e1\n", "o2\n", "e2\n"}));
  LogFilter out_only;
  out_only.stderr_stream = false;
  EXPECT_EQ(texts(select_logs(log, out_only)), (std::vector<std::string>{"o1\n", "o2\n"}));
  LogFilter tail;
  tail.tail = 1;
  EXPECT_EQ(texts(select_logs(log, tail)), (std::vector<std::string>{"e2\n"}));
  tail.stderr_stream = false;
  EXPECT_EQ(texts(select_logs(log, tail)), (std::vector<std::string>{"o2\n"}));
  LogFilter window;
  window.since = kT + 2'000'000'000;
  window.until = kT + 4'000'000'000;
  EXPECT_EQ(texts(select_logs(log, window)), (std::vector<std::string>{"e1\n", "o2\n"}));
  LogFilter zero_tail;
  zero_tail.tail = 0;
  EXPECT_TRUE(select_logs(log, zero_tail).empty());
  EXPECT_EQ(parse_tail("all"), std::nullopt);
  EXPECT_EQ(parse_tail("3"), 3u);
  EXPECT_EQ(parse_tail("-1"), std::nullopt);
}

TEST(JsonLogTest, MultiplexedFrames) {
  std::string f = frame(StreamType::Stderr, "abc");
  ASSERT_EQ(f.size(), 11u);
  EXPECT_EQ(f[0], 2);
  EXPECT_EQ(f.substr(1, 3), std::string(3, '\0'));
  EXPECT_EQ(static_cast<unsigned char>(f[7]), 3);
  EXPECT_EQ(f.substr(8), "abc");
  std::string big = frame(StreamType::Stdout, std::string(0x010203, 'x'));
  EXPECT_EQ(big[0], 1);
  EXPECT_EQ(big[4], 0);
  EXPECT_EQ(big[5], 1);
  EXPECT_EQ(big[6], 2);
  EXPECT_EQ(big[7], 3);
}

TEST(JsonLogTest, RendersEntriesForTheLogsEndpoint) {
  LogEntry e{"stdout", "hi\n", kT, ""};
  EXPECT_EQ(render_log_entry(e, false, true), "hi\n");
  EXPECT_EQ(render_log_entry(e, true, true), "2023-11-14T22:13:20.000000000Z hi\n");
  EXPECT_EQ(render_log_entry(e, false, false), frame(StreamType::Stdout, "hi\n"));
  e.stream = "stderr";
  EXPECT_EQ(render_log_entry(e, false, false), frame(StreamType::Stderr, "hi\n"));
}

}  // namespace
}  // namespace berth::agent::runtime
