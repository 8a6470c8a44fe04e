#include "cli/output/table.h"

#include <gtest/gtest.h>

namespace berth::cli {
namespace {

TEST(Table, PadsColumnsByWidestCellPlusThree) {
  EXPECT_EQ(render_table({"NAME", "STATE", "URL"}, {{"dev", "Running", "tcp://1.2.3.4:2376"}, {"a-long-name", "Stopped", ""}}),
            "NAME          STATE     URL\n"
            "dev           Running   tcp://1.2.3.4:2376\n"
            "a-long-name   Stopped\n");
}

TEST(Table, NoTrailingSpacesWhenLastCellsAreEmpty) {
  const std::string t = render_table({"A", "B", "C"}, {{"x", "", ""}, {"", "", ""}});
  EXPECT_EQ(t, "A   B   C\nx\n\n");
}

TEST(Table, HeaderOnlyAndShortRows) {
  EXPECT_EQ(render_table({"NAME", "STATE"}, {}), "NAME   STATE\n");
  EXPECT_EQ(render_table({"NAME", "STATE"}, {{"dev"}}), "NAME   STATE\ndev\n");
}

TEST(Table, CountsCodePointsNotBytes) {
  EXPECT_EQ(render_table({"N", "X"}, {{"\xc3\xbc\xc3\xbc", "1"}}), "N    X\n\xc3\xbc\xc3\xbc   1\n");
}

TEST(Table, CellsStayOnOneLine) {
  EXPECT_EQ(render_table({"N", "ERR"}, {{"a", "line1\nline2"}}), "N   ERR\na   line1 line2\n");
}

}  // namespace
}  // namespace berth::cli
