#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "core/lock.h"

namespace berth {
namespace {

TEST(FileLock, ExcludesAnotherProcessUntilReleased) {
  char tmpl[] = "/tmp/berth-lock-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(tmpl);
  auto path = dir / ".lock";
  int to_child[2], from_child[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(from_child), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto lock = FileLock::try_acquire(path);
    char c = lock ? 'L' : 'x';
    (void)!::write(from_child[1], &c, 1);
    (void)!::read(to_child[0], &c, 1);  // hold until told to go
    std::_Exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(from_child[0], &c, 1), 1);
  ASSERT_EQ(c, 'L');
  EXPECT_FALSE(FileLock::try_acquire(path).has_value());
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(FileLock::acquire(path, std::chrono::milliseconds(200)).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  (void)!::write(to_child[1], "g", 1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(FileLock::acquire(path, std::chrono::seconds(2)).has_value());
  std::filesystem::remove_all(dir);
}

TEST(FileLock, MovedLockStillHeld) {
  char tmpl[] = "/tmp/berth-lock-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(tmpl);
  auto a = FileLock::try_acquire(dir / ".lock");
  ASSERT_TRUE(a);
  FileLock b = std::move(*a);
  a.reset();
  EXPECT_FALSE(FileLock::try_acquire(dir / ".lock").has_value());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace berth
