// core/lazy_library: a library opened on first use, with one clear error when
// it or a symbol is missing.
#include "core/lazy_library.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"

namespace berth {
namespace {

TEST(LazyLibrary, OpensOnFirstUseAndFindsTheRealSymbol) {
  LazyLibrary libz("libz.so.1", "apt install zlib1g");
  using Version = const char* (*)();
  auto version = reinterpret_cast<Version>(libz.symbol("zlibVersion"));
  ASSERT_NE(version, nullptr);
  EXPECT_EQ(std::strncmp(version(), "1.", 2), 0) << version();
  EXPECT_EQ(libz.symbol("zlibVersion"), reinterpret_cast<void*>(version));
}

TEST(LazyLibrary, AMissingLibrarySaysWhichAndHowToGetIt) {
  LazyLibrary missing("libberth-no-such.so.7", "apt install berth-no-such");
  try {
    missing.symbol("anything");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot load libberth-no-such.so.7"), std::string::npos) << what;
    EXPECT_NE(what.find("apt install berth-no-such"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(LazyLibrary, AMissingSymbolNamesTheSymbol) {
  LazyLibrary libz("libz.so.1", "apt install zlib1g");
  try {
    libz.symbol("berthNoSuchFunction");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("libz.so.1 has no berthNoSuchFunction"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace berth
