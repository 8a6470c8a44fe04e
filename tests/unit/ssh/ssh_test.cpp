// SshSession against a real OpenSSH server on 127.0.0.1 (a temp host key,
// authorized_keys and sshd_config per test; torn down afterwards).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <pty.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/net.h"
#include "core/ssh.h"

namespace berth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string sh(const std::string& command, int* exit_code = nullptr) {
  FILE* p = ::popen(command.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = p ? ::pclose(p) : -1;
  if (exit_code) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string field(const std::string& line, int index) {
  std::istringstream in(line);
  std::string w;
  for (int i = 0; i <= index; ++i) in >> w;
  return w;
}

int file_mode(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return static_cast<int>(st.st_mode & 07777);
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

class SshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0 || !fs::exists("/usr/sbin/sshd"))
      GTEST_SKIP() << "needs root and /usr/sbin/sshd (apt-get install openssh-server)";
    dir_ = fs::temp_directory_path() / ("berth-ssh-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "files");
    int rc = 0;
    sh("ssh-keygen -q -t ed25519 -N '' -C berth-test-host -f " + (dir_ / "hostkey").string(), &rc);
    ASSERT_EQ(rc, 0);
    generate_ed25519_key(dir_ / "client_key", "berth-test-client");
    generate_ed25519_key(dir_ / "other_key", "not-authorized");
    std::ofstream(dir_ / "authorized_keys") << read_public_key(dir_ / "client_key") << "\n";

    port_ = free_tcp_port();
    std::ofstream(dir_ / "sshd_config") << "Port " << port_ << "\n"
                                        << "ListenAddress 127.0.0.1\n"
                                        << "HostKey " << (dir_ / "hostkey").string() << "\n"
                                        << "AuthorizedKeysFile " << (dir_ / "authorized_keys").string() << "\n"
                                        << "UsePAM no\nPidFile none\nStrictModes no\n"
                                        << "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                                        << "PermitRootLogin prohibit-password\nPrintMotd no\nLogLevel VERBOSE\n"
                                        << "Subsystem sftp " << (dir_ / "sftp-server.sh").string() << "\n";
    // The real sftp-server, logging each request so tests can see what was asked.
    std::ofstream(dir_ / "sftp-server.sh") << "#!/bin/sh\nexec /usr/lib/openssh/sftp-server -e -l INFO 2>>"
                                           << (dir_ / "sftp.log").string() << "\n";
    fs::permissions(dir_ / "sftp-server.sh", fs::perms(0755));
    fs::create_directories("/run/sshd");  // sshd's privilege separation directory
    log_ = dir_ / "sshd.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-f", (dir_ / "sshd_config").c_str(), "-E", log_.c_str(), nullptr);
      ::_exit(127);
    }
    ASSERT_GT(pid_, 0);
    for (int i = 0; i < 100 && !tcp_port_open("127.0.0.1", port_, 100ms); ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "sshd exited: " << slurp(log_);
      }
      std::this_thread::sleep_for(50ms);
    }
    ASSERT_TRUE(tcp_port_open("127.0.0.1", port_, 1s)) << "sshd did not start: " << slurp(log_);

    target_.host = "127.0.0.1";
    target_.port = port_;
    target_.user = ::getpwuid(::geteuid())->pw_name;
    target_.key_path = dir_ / "client_key";
    target_.machine_name = "m1";
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string expected_fingerprint() {
    return field(sh("ssh-keygen -lf " + (dir_ / "hostkey.pub").string()), 1);
  }
  std::unique_ptr<SshSession> connect() { return SshSession::connect(target_, 5s); }

  fs::path dir_;
  fs::path log_;
  int port_ = 0;
  pid_t pid_ = -1;
  SshTarget target_;
};

TEST_F(SshTest, FingerprintMatchesSshKeygen) {
  auto s = connect();
  std::string expected = expected_fingerprint();
  ASSERT_EQ(expected.rfind("SHA256:", 0), 0u) << expected;
  EXPECT_EQ(s->host_key_fingerprint(), expected);
}

TEST_F(SshTest, RunReturnsExitCodesAndSeparatesStreams) {
  auto s = connect();
  EXPECT_EQ(s->run("exit 3").exit_code, 3);
  EXPECT_EQ(s->run("true").exit_code, 0);
  ExecResult r = s->run("echo out; echo err >&2; echo out2");
  EXPECT_EQ(r.out, "out\nout2\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.exit_code, 0);
  // Killed by a signal: no exit status at all.
  EXPECT_EQ(s->run("kill -9 $$").exit_code, -1);
  EXPECT_EQ(s->run("echo still usable").out, "still usable\n");
}

TEST_F(SshTest, RunPassesStdin) {
  auto s = connect();
  EXPECT_EQ(s->run("cat", "hello\nworld").out, "hello\nworld");
  EXPECT_EQ(s->run("cat >/dev/null; echo done").out, "done\n");  // empty stdin still ends with EOF
  std::string big(5 * 1024 * 1024 + 17, 'z');
  EXPECT_EQ(s->run("wc -c", big).out, std::to_string(big.size()) + "\n");
}

TEST_F(SshTest, RunHandlesLargeOutputOnBothStreamsAtOnce) {
  auto s = connect();
  ExecResult r = s->run("head -c 3000000 /dev/zero | tr '\\0' o & head -c 2000000 /dev/zero | tr '\\0' e >&2; wait");
  EXPECT_EQ(r.out.size(), 3000000u);
  EXPECT_EQ(r.err.size(), 2000000u);
  EXPECT_EQ(r.out.find_first_not_of('o'), std::string::npos);
  EXPECT_EQ(r.err.find_first_not_of('e'), std::string::npos);
}

TEST_F(SshTest, CheckThrowsWithExitCodeAndStderr) {
  auto s = connect();
  EXPECT_EQ(s->check("echo fine"), "fine\n");
  try {
    s->check("echo 'no such thing' >&2; exit 7");
    FAIL() << "expected SshError";
  } catch (const SshError& e) {
    EXPECT_EQ(e.remote_exit_code(), 7);
    EXPECT_TRUE(contains(e.what(), "exited with 7")) << e.what();
    EXPECT_TRUE(contains(e.what(), "no such thing")) << e.what();
  }
}

TEST_F(SshTest, PutAndGetRoundTripOfFiveMegabytes) {
  std::string data(5 * 1024 * 1024, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  std::ofstream(dir_ / "local.bin", std::ios::binary) << data;
  auto s = connect();
  const std::string remote = (dir_ / "files" / "agent.bin").string();

  auto t0 = std::chrono::steady_clock::now();
  s->put_file(dir_ / "local.bin", remote, 0640);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ throughput ] put_file 5 MiB over loopback: " << secs * 1000 << " ms, "
            << (5.0 / secs) << " MiB/s\n";
  RecordProperty("put_file_mib_per_s", std::to_string(5.0 / secs));

  EXPECT_EQ(file_mode(remote), 0640);  // sshd runs on this machine: check the file directly
  EXPECT_EQ(slurp(remote), data);

  t0 = std::chrono::steady_clock::now();
  s->get_file(remote, dir_ / "back.bin");
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ throughput ] get_file 5 MiB over loopback: " << secs * 1000 << " ms, "
            << (5.0 / secs) << " MiB/s\n";
  EXPECT_EQ(slurp(dir_ / "back.bin"), data);
  EXPECT_EQ(file_mode(dir_ / "back.bin"), 0640);
  EXPECT_EQ(s->get(remote), data);

  // Overwriting replaces content and mode atomically (never removes the target
  // first), and leaves no temp files behind.
  s->put(remote, "small\n", 0600);
  EXPECT_EQ(slurp(remote), "small\n");
  EXPECT_FALSE(contains(slurp(dir_ / "sftp.log"), "remove name \"" + remote + "\"")) << slurp(dir_ / "sftp.log");
  EXPECT_EQ(file_mode(remote), 0600);
  EXPECT_EQ(s->list_remote_dir((dir_ / "files").string()), std::vector<std::string>{"agent.bin"});
}

TEST_F(SshTest, PutIntoMissingDirectoryNamesThePath) {
  auto s = connect();
  try {
    s->put((dir_ / "nope" / "x").string(), "x", 0644);
    FAIL() << "expected SshError";
  } catch (const SshError& e) {
    EXPECT_TRUE(contains(e.what(), (dir_ / "nope").string())) << e.what();
    EXPECT_TRUE(contains(e.what(), "127.0.0.1:" + std::to_string(port_))) << e.what();
  }
  EXPECT_THROW(s->get((dir_ / "missing").string()), SshError);
}

TEST_F(SshTest, DirectoryHelpers) {
  auto s = connect();
  const std::string d = (dir_ / "files" / "sub").string();
  EXPECT_FALSE(s->is_remote_dir(d));
  s->make_remote_dir(d, 0750);
  s->make_remote_dir(d, 0750);  // idempotent
  EXPECT_TRUE(s->is_remote_dir(d));
  EXPECT_EQ(file_mode(d), 0750);
  s->put(d + "/b", "b", 0644);
  s->put(d + "/a", "a", 0644);
  EXPECT_FALSE(s->is_remote_dir(d + "/a"));
  EXPECT_EQ(s->list_remote_dir(d), (std::vector<std::string>{"a", "b"}));
}

TEST_F(SshTest, ChangedHostKeyIsRefusedBeforeAuthenticating) {
  target_.pinned_fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  try {
    connect();
    FAIL() << "expected SshError";
  } catch (const SshError& e) {
    std::string m = e.what();
    EXPECT_TRUE(contains(m, "machine 'm1': the SSH host key of 127.0.0.1:" + std::to_string(port_) + " changed"))
        << m;
    EXPECT_TRUE(contains(m, "expected SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA, got " +
                                expected_fingerprint()))
        << m;
    EXPECT_TRUE(contains(m, "berth provision --repin-host-key m1")) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos);
  }
  // The server never saw a public key offered; a trusted connection does offer one.
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(contains(slurp(log_), "Accepted publickey")) << slurp(log_);
  EXPECT_FALSE(contains(slurp(log_), "Accepted key")) << slurp(log_);
  target_.pinned_fingerprint = expected_fingerprint();
  connect();
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(contains(slurp(log_), "Accepted publickey")) << slurp(log_);
}

TEST_F(SshTest, RefusedKeyIsAClearError) {
  target_.key_path = dir_ / "other_key";
  try {
    connect();
    FAIL() << "expected SshError";
  } catch (const SshError& e) {
    EXPECT_TRUE(contains(e.what(), "refused SSH key")) << e.what();
    EXPECT_TRUE(contains(e.what(), "(machine 'm1')")) << e.what();
  }
  target_.key_path = dir_ / "does-not-exist";
  try {
    connect();
    FAIL() << "expected SshError";
  } catch (const SshError& e) {
    EXPECT_TRUE(contains(e.what(), "cannot load SSH private key")) << e.what();
  }
}

TEST_F(SshTest, WaitForSshConnectsAndDoesNotRetryAChangedHostKey) {
  auto s = wait_for_ssh(target_, 5s);
  EXPECT_EQ(s->run("echo hi").out, "hi\n");
  target_.pinned_fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  auto t0 = std::chrono::steady_clock::now();
  try {
    wait_for_ssh(target_, 20s);
    FAIL() << "expected SshError";
  } catch (const SshError& e) {
    EXPECT_TRUE(contains(e.what(), "changed")) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST_F(SshTest, WaitForSshTimesOutOnAClosedPort) {
  target_.port = free_tcp_port();
  auto t0 = std::chrono::steady_clock::now();
  try {
    wait_for_ssh(target_, 1200ms);
    FAIL() << "expected SshError";
  } catch (const SshError& e) {
    std::string m = e.what();
    EXPECT_TRUE(contains(m, "timed out after 1s waiting for SSH on 127.0.0.1:" + std::to_string(target_.port) +
                                " (machine 'm1'): "))
        << m;
    EXPECT_TRUE(contains(m, "): cannot connect to SSH: ")) << m;
    EXPECT_TRUE(contains(m, "refused")) << m;
  }
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 1100ms);
  EXPECT_LT(took, 3s);
}

TEST_F(SshTest, WaitForSshStopsWhenAsked) {
  target_.port = free_tcp_port();
  int calls = 0;
  EXPECT_THROW(wait_for_ssh(target_, 30s, [&] { return ++calls > 3; }), Interrupted);
}

TEST_F(SshTest, GeneratedKeysHaveSafeModesAndOpenSshFormat) {
  fs::path key = dir_ / "gen" / "id_ed25519";
  fs::create_directories(key.parent_path());
  generate_ed25519_key(key, "berth@test");
  EXPECT_EQ(file_mode(key), 0600);
  EXPECT_EQ(file_mode(key.string() + ".pub"), 0644);
  EXPECT_EQ(slurp(key).rfind("-----BEGIN OPENSSH PRIVATE KEY-----", 0), 0u);
  std::string pub = read_public_key(key);
  EXPECT_EQ(pub.rfind("ssh-ed25519 AAAA", 0), 0u) << pub;
  EXPECT_EQ(field(pub, 2), "berth@test");
  // OpenSSH reads the private key and derives the same public key.
  int rc = 0;
  std::string derived = sh("ssh-keygen -y -f " + key.string(), &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(field(derived, 1), field(pub, 1));
  // Without the .pub file the public key comes from the private one.
  fs::remove(key.string() + ".pub");
  EXPECT_EQ(read_public_key(key), field(pub, 0) + " " + field(pub, 1));
}

// Runs `body` with this process's stdin/stdout replaced, restoring them after.
template <typename Body>
void with_stdio(int in_fd, int out_fd, Body&& body) {
  std::fflush(stdout);
  int saved_in = ::dup(0), saved_out = ::dup(1);
  ::dup2(in_fd, 0);
  ::dup2(out_fd, 1);
  body();
  ::dup2(saved_in, 0);
  ::dup2(saved_out, 1);
  ::close(saved_in);
  ::close(saved_out);
}

TEST_F(SshTest, InteractiveWithoutTerminalPumpsStdinAndStdout) {
  auto s = connect();
  std::ofstream(dir_ / "in.txt") << "line one\nline two\n";
  int in = ::open((dir_ / "in.txt").c_str(), O_RDONLY);
  int out = ::open((dir_ / "out.txt").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int status = -1;
  with_stdio(in, out, [&] { status = s->interactive("cat; exit 4"); });
  ::close(in);
  ::close(out);
  EXPECT_EQ(status, 4);
  EXPECT_EQ(slurp(dir_ / "out.txt"), "line one\nline two\n");
}

TEST_F(SshTest, InteractiveWithTerminalGetsAPtyAndRestoresTheTerminal) {
  auto s = connect();
  int master = -1, slave = -1;
  winsize ws{};
  ws.ws_col = 132;
  ws.ws_row = 43;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, &ws), 0);
  termios before{};
  ::tcgetattr(slave, &before);
  int out = ::open((dir_ / "out.txt").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int status = -1;
  with_stdio(slave, out, [&] { status = s->interactive("tty; stty size; exit 5"); });
  ::close(out);
  termios after{};
  ::tcgetattr(slave, &after);
  ::close(slave);
  ::close(master);
  EXPECT_EQ(status, 5);
  std::string output = slurp(dir_ / "out.txt");
  EXPECT_TRUE(contains(output, "/dev/pts/")) << output;
  EXPECT_TRUE(contains(output, "43 132")) << output;
  EXPECT_EQ(before.c_lflag, after.c_lflag);
  EXPECT_EQ(before.c_iflag, after.c_iflag);
}

}  // namespace
}  // namespace berth
