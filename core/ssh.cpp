#include "core/ssh.h"

#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <optional>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/net.h"

namespace berth {
namespace {

constexpr std::string_view kLog = "ssh";
// SFTP writes are synchronous in libssh 0.10, so each chunk costs one round
// trip: use the largest message OpenSSH's sftp-server accepts (256 KiB frame).
constexpr size_t kSftpChunkOpenSsh = 255 * 1024 - 512;
constexpr size_t kSftpChunkDefault = 32 * 1024;  // the minimum every server must take
constexpr size_t kIoChunk = 64 * 1024;
// Once connected, blocking libssh calls (SFTP replies, exit status) wait at least this long.
constexpr std::chrono::milliseconds kMinOperationTimeout{60'000};

struct SessionDeleter {
  void operator()(ssh_session s) const {
    ssh_disconnect(s);
    ssh_free(s);
  }
};
struct ChannelDeleter {
  void operator()(ssh_channel c) const { ssh_channel_free(c); }
};
struct SftpDeleter {
  void operator()(sftp_session s) const { sftp_free(s); }
};
struct SftpFileDeleter {
  void operator()(sftp_file f) const { sftp_close(f); }
};
struct SftpDirDeleter {
  void operator()(sftp_dir d) const { sftp_closedir(d); }
};
struct SftpAttrDeleter {
  void operator()(sftp_attributes a) const { sftp_attributes_free(a); }
};
struct KeyDeleter {
  void operator()(ssh_key k) const { ssh_key_free(k); }
};
struct CharDeleter {
  void operator()(char* p) const { ssh_string_free_char(p); }
};
struct HashDeleter {
  void operator()(unsigned char* p) const { ssh_clean_pubkey_hash(&p); }
};

using SessionPtr = std::unique_ptr<ssh_session_struct, SessionDeleter>;
using ChannelPtr = std::unique_ptr<ssh_channel_struct, ChannelDeleter>;
using SftpPtr = std::unique_ptr<sftp_session_struct, SftpDeleter>;
using SftpFilePtr = std::unique_ptr<sftp_file_struct, SftpFileDeleter>;
using SftpDirPtr = std::unique_ptr<sftp_dir_struct, SftpDirDeleter>;
using SftpAttrPtr = std::unique_ptr<sftp_attributes_struct, SftpAttrDeleter>;
using KeyPtr = std::unique_ptr<ssh_key_struct, KeyDeleter>;
using LibsshString = std::unique_ptr<char, CharDeleter>;

// Internal: wait_for_ssh must not retry a host-key mismatch.
class HostKeyChanged : public SshError {
 public:
  using SshError::SshError;
};

std::string where(const SshTarget& t) {
  std::string s = fmt::format("{}:{}", host_for_url(t.host), t.port);
  if (!t.machine_name.empty()) s += fmt::format(" (machine '{}')", t.machine_name);
  return s;
}

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string errno_text() { return std::strerror(errno); }

std::string sh_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Lets the kernel notice a dead peer (~35 s) so no read waits forever.
void enable_keepalive(int fd) {
  int on = 1, idle = 15, interval = 5, count = 4;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

std::string sftp_error_text(int code) {
  switch (code) {
    case SSH_FX_EOF: return "end of file";
    case SSH_FX_NO_SUCH_FILE: return "no such file or directory";
    case SSH_FX_PERMISSION_DENIED: return "permission denied";
    case SSH_FX_FAILURE: return "failure";
    case SSH_FX_BAD_MESSAGE: return "bad message";
    case SSH_FX_NO_CONNECTION: return "no connection";
    case SSH_FX_CONNECTION_LOST: return "connection lost";
    case SSH_FX_OP_UNSUPPORTED: return "operation not supported by the server";
    case SSH_FX_INVALID_HANDLE: return "invalid handle";
    case SSH_FX_NO_SUCH_PATH: return "no such path";
    case SSH_FX_FILE_ALREADY_EXISTS: return "file already exists";
    case SSH_FX_WRITE_PROTECT: return "write-protected filesystem";
    case SSH_FX_NO_MEDIA: return "no media";
    default: return "";
  }
}

std::string random_suffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

void write_all_fd(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd pfd{fd, POLLOUT, 0};
        ::poll(&pfd, 1, 100);
        continue;
      }
      return;  // the local reader went away; keep draining the channel
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Puts the local terminal in raw mode for the lifetime of the object.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd_, TCSADRAIN, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSADRAIN, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

volatile sig_atomic_t g_window_changed = 0;
extern "C" void on_sigwinch(int) { g_window_changed = 1; }

// Installs the SIGWINCH handler and puts the previous one back on destruction.
class WinchHandler {
 public:
  WinchHandler() {
    struct sigaction sa {};
    sa.sa_handler = on_sigwinch;
    sigemptyset(&sa.sa_mask);
    installed_ = ::sigaction(SIGWINCH, &sa, &old_) == 0;
  }
  ~WinchHandler() {
    if (installed_) ::sigaction(SIGWINCH, &old_, nullptr);
  }
  WinchHandler(const WinchHandler&) = delete;
  WinchHandler& operator=(const WinchHandler&) = delete;

 private:
  struct sigaction old_ {};
  bool installed_ = false;
};

bool terminal_size(int fd, int& cols, int& rows) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) return false;
  cols = ws.ws_col;
  rows = ws.ws_row;
  return true;
}

class LocalFd {
 public:
  explicit LocalFd(int fd) : fd_(fd) {}
  LocalFd(LocalFd&& other) noexcept : fd_(other.release()) {}
  ~LocalFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  LocalFd(const LocalFd&) = delete;
  LocalFd& operator=(const LocalFd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

using Clock = std::chrono::steady_clock;
using StopFn = std::function<bool()>;

// How often connecting looks at should_stop.
constexpr std::chrono::milliseconds kStopSlice{100};

// Internal: the host took the TCP connection but sent no SSH banner.
class NoBanner : public SshError {
 public:
  NoBanner(const std::string& message, std::chrono::milliseconds waited) : SshError(message), waited(waited) {}
  std::chrono::milliseconds waited;
};

std::string seconds_text(Clock::duration d) {
  const double s = std::chrono::duration<double>(d).count();
  return s < 1 ? fmt::format("{:.1f}s", s) : fmt::format("{}s", std::lround(s));
}

void check_stop(const StopFn& should_stop, const SshTarget& t) {
  if (should_stop && should_stop())
    throw Interrupted(fmt::format("interrupted while connecting to SSH on {}", where(t)));
}

// Polls `fd` for `events` in slices, checking should_stop; false once `end` passed.
bool wait_fd(int fd, short events, Clock::time_point end, const StopFn& should_stop, const SshTarget& t) {
  while (true) {
    check_stop(should_stop, t);
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min(left, kStopSlice).count()));
    if (n > 0 || (n < 0 && errno != EINTR)) return true;  // the caller's next call says what happened
  }
}

std::string connect_error_text(int err) {
  switch (err) {
    case ECONNREFUSED: return "connection refused";
    case EHOSTUNREACH: case EHOSTDOWN: return "no route to the host";
    case ENETUNREACH: case ENETDOWN: return "no route to the host (network unreachable)";
    default: return std::strerror(err);
  }
}

// The TCP connection, in slices so that should_stop ends it at once. Throws
// SshError saying how far it got: refused, no route, no answer.
LocalFd tcp_connect(const SshTarget& t, Clock::time_point end, const StopFn& should_stop) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  const auto started = Clock::now();
  if (int rc = ::getaddrinfo(t.host.c_str(), std::to_string(t.port).c_str(), &hints, &raw); rc != 0)
    throw SshError(fmt::format("cannot connect to SSH on {}: cannot resolve '{}': {}", where(t), t.host,
                               gai_strerror(rc)));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(raw, &::freeaddrinfo);
  std::string why;
  for (const addrinfo* ai = list.get(); ai; ai = ai->ai_next) {
    LocalFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      why = errno_text();
      continue;
    }
    int err = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      if (!wait_fd(fd.get(), POLLOUT, end, should_stop, t)) {
        why = fmt::format("timed out connecting (no answer within {})", seconds_text(Clock::now() - started));
        continue;
      }
      socklen_t len = sizeof err;
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
    if (err == 0) return fd;
    why = err == ETIMEDOUT ? "timed out connecting (no answer)" : connect_error_text(err);
  }
  throw SshError(fmt::format("cannot connect to SSH on {}: {}", where(t), why));
}

// Waits until the server has sent something (its banner) on a fresh connection.
void wait_for_banner(int fd, const SshTarget& t, Clock::time_point end, const StopFn& should_stop) {
  const auto connected = Clock::now();
  if (!wait_fd(fd, POLLIN, end, should_stop, t)) {
    const auto waited = Clock::now() - connected;
    throw NoBanner(fmt::format("cannot connect to SSH on {}: TCP connected but no SSH banner within {}", where(t),
                               seconds_text(waited)),
                   std::chrono::duration_cast<std::chrono::milliseconds>(waited));
  }
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK);
  if (n == 0)
    throw SshError(fmt::format("cannot connect to SSH on {}: TCP connected but the host closed the connection "
                               "before the SSH banner", where(t)));
  if (n < 0 && errno != EAGAIN && errno != EINTR)
    throw SshError(fmt::format("cannot connect to SSH on {}: TCP connected but the connection failed before the "
                               "SSH banner: {}", where(t), errno_text()));
}

}  // namespace

struct SshSession::Impl {
  SshTarget target;
  SessionPtr session;  // declared before sftp: sftp is freed first
  SftpPtr sftp;
  size_t sftp_chunk = kSftpChunkDefault;
  std::string fingerprint;
  std::string host_key_line;   // "ssh-ed25519 AAAA..."

  ssh_session s() const { return session.get(); }

  [[noreturn]] void fail(std::string_view what) const {
    throw SshError(fmt::format("{} on {}: {}", what, where(target), one_line(ssh_get_error(s()))));
  }

  [[noreturn]] void fail_sftp(std::string_view what, const std::string& path) const {
    int code = sftp ? sftp_get_error(sftp.get()) : 0;
    std::string reason = sftp_error_text(code);
    if (reason.empty() || code == SSH_FX_FAILURE || code == SSH_FX_CONNECTION_LOST) {
      std::string lib = one_line(ssh_get_error(s()));
      if (!lib.empty()) reason = reason.empty() ? lib : reason + ": " + lib;
    }
    if (reason.empty()) reason = "unknown SFTP error";
    throw SshError(fmt::format("cannot {} {} on {}: {}", what, path, where(target), reason));
  }

  sftp_session sftp_session_get() {
    if (sftp) return sftp.get();
    SftpPtr fresh(sftp_new(s()));
    if (!fresh) fail("cannot start SFTP");
    if (sftp_init(fresh.get()) != SSH_OK) {
      int code = sftp_get_error(fresh.get());
      throw SshError(fmt::format("cannot start SFTP on {}: {} (is the sftp subsystem enabled in sshd_config?)",
                                 where(target), code ? sftp_error_text(code) : one_line(ssh_get_error(s()))));
    }
    // OpenSSH's sftp-server takes messages up to 256 KiB; others are only promised 32 KiB.
    bool openssh = sftp_extension_supported(fresh.get(), "limits@openssh.com", "1") ||
                   sftp_extension_supported(fresh.get(), "posix-rename@openssh.com", "1");
    sftp_chunk = openssh ? kSftpChunkOpenSsh : kSftpChunkDefault;
    sftp = std::move(fresh);
    return sftp.get();
  }

  // Runs a command, discarding its output; returns the exit status.
  int exec_status(const std::string& command) {
    ChannelPtr ch = open_channel();
    if (ssh_channel_request_exec(ch.get(), command.c_str()) != SSH_OK) return -1;
    ssh_channel_send_eof(ch.get());
    char buf[4096];
    while (ssh_channel_read(ch.get(), buf, sizeof buf, 0) > 0) {
    }
    while (ssh_channel_read(ch.get(), buf, sizeof buf, 1) > 0) {
    }
    return ssh_channel_get_exit_status(ch.get());
  }

  ChannelPtr open_channel() {
    ChannelPtr ch(ssh_channel_new(s()));
    if (!ch) fail("cannot create an SSH channel");
    if (ssh_channel_open_session(ch.get()) != SSH_OK) fail("cannot open an SSH channel");
    return ch;
  }

  // Hands every buffered stdout/stderr byte to on_data(is_stderr, data, n).
  template <typename OnData>
  void drain(ssh_channel ch, OnData&& on_data) {
    char buf[kIoChunk];
    for (int is_stderr = 0; is_stderr < 2; ++is_stderr) {
      while (true) {
        int n = ssh_channel_read_nonblocking(ch, buf, sizeof buf, is_stderr);
        if (n == SSH_ERROR) fail("lost the SSH connection while reading command output");
        if (n <= 0) break;  // nothing buffered, or SSH_EOF
        on_data(is_stderr != 0, buf, static_cast<size_t>(n));
      }
    }
  }

  void wait_readable(int timeout_ms) const {
    pollfd pfd{ssh_get_fd(s()), POLLIN, 0};
    ::poll(&pfd, 1, timeout_ms);
  }

  // Writes `data` to a temp file next to `remote_path`, then renames it into place
  // with `mode`. `fill` writes the content through write_chunk().
  template <typename Fill>
  void atomic_upload(const std::string& remote_path, int mode, Fill&& fill) {
    sftp_session sf = sftp_session_get();
    std::string tmp = remote_path + ".berth-tmp-" + random_suffix();
    SftpFilePtr file(sftp_open(sf, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, 0600));
    if (!file) fail_sftp("create", tmp);
    auto cleanup = [&] {
      file.reset();
      sftp_unlink(sf, tmp.c_str());
    };
    try {
      auto write_chunk = [&](const char* p, size_t n) {
        while (n > 0) {
          size_t part = std::min(n, sftp_chunk);
          ssize_t w = sftp_write(file.get(), p, part);
          if (w <= 0) fail_sftp("write", tmp);
          p += w;
          n -= static_cast<size_t>(w);
        }
      };
      fill(write_chunk);
      if (sftp_extension_supported(sf, "fsync@openssh.com", "1") && sftp_fsync(file.get()) != 0)
        fail_sftp("fsync", tmp);
      if (sftp_close(file.release()) != SSH_OK) fail_sftp("close", tmp);
      if (sftp_chmod(sf, tmp.c_str(), static_cast<mode_t>(mode)) != 0) fail_sftp("chmod", tmp);
      // SFTP v3 rename (all libssh 0.10 sends) refuses an existing target. OpenSSH
      // servers (posix-rename@openssh.com) have a POSIX shell: replace atomically
      // with mv there; elsewhere remove the target first.
      if (sftp_rename(sf, tmp.c_str(), remote_path.c_str()) != 0) {
        bool replaced = sftp_extension_supported(sf, "posix-rename@openssh.com", "1") &&
                        exec_status("mv -f -- " + sh_quote(tmp) + " " + sh_quote(remote_path)) == 0;
        if (!replaced) {
          sftp_unlink(sf, remote_path.c_str());
          if (sftp_rename(sf, tmp.c_str(), remote_path.c_str()) != 0) fail_sftp("rename into", remote_path);
        }
      }
    } catch (...) {
      cleanup();
      throw;
    }
  }

  // Streams a remote file to `sink(data, n)`.
  template <typename Sink>
  void download(const std::string& remote_path, Sink&& sink) {
    sftp_session sf = sftp_session_get();
    SftpFilePtr file(sftp_open(sf, remote_path.c_str(), O_RDONLY, 0));
    if (!file) fail_sftp("open", remote_path);
    std::vector<char> buf(sftp_chunk);
    while (true) {
      ssize_t n = sftp_read(file.get(), buf.data(), buf.size());
      if (n < 0) fail_sftp("read", remote_path);
      if (n == 0) break;
      sink(buf.data(), static_cast<size_t>(n));
    }
  }
};

SshSession::SshSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SshSession::~SshSession() = default;

std::unique_ptr<SshSession> SshSession::connect(const SshTarget& target, std::chrono::milliseconds timeout,
                                                const std::function<bool()>& should_stop) {
  const auto end = Clock::now() + timeout;
  auto impl = std::make_unique<Impl>();
  impl->target = target;
  impl->session.reset(ssh_new());
  if (!impl->session) throw SshError("cannot create an SSH session (out of memory)");
  ssh_session s = impl->s();

  bool process_config = false;
  unsigned int port = static_cast<unsigned int>(target.port);
  int verbosity = SSH_LOG_NOLOG;
  auto set_timeout = [&](std::chrono::milliseconds t) {
    long secs = static_cast<long>(t.count() / 1000);
    long usecs = static_cast<long>((t.count() % 1000) * 1000);
    ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &secs);
    ssh_options_set(s, SSH_OPTIONS_TIMEOUT_USEC, &usecs);
  };
  // We pin host keys ourselves: never read ~/.ssh/config or known_hosts files.
  if (ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_HOST, target.host.c_str()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_PORT, &port) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, "/dev/null") != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity) != SSH_OK ||
      (!target.user.empty() && ssh_options_set(s, SSH_OPTIONS_USER, target.user.c_str()) != SSH_OK))
    impl->fail("invalid SSH options");
  set_timeout(std::max(timeout, std::chrono::milliseconds(1)));

  log::debug(kLog, "connecting to {}", where(target));
  // TCP and the banner ourselves, so that each failure is named and should_stop
  // is heard within a slice; then libssh takes the socket (and closes it).
  {
    LocalFd fd = tcp_connect(target, end, should_stop);
    wait_for_banner(fd.get(), target, end, should_stop);
    socket_t raw_fd = fd.get();
    if (ssh_options_set(s, SSH_OPTIONS_FD, &raw_fd) != SSH_OK) impl->fail("invalid SSH options");
    fd.release();
  }
  ssh_set_blocking(s, 0);
  int connected;
  while ((connected = ssh_connect(s)) == SSH_AGAIN) {
    check_stop(should_stop, target);
    if (Clock::now() >= end)
      throw SshError(fmt::format("cannot connect to SSH on {}: the SSH handshake did not finish within {}",
                                 where(target), seconds_text(timeout)));
    impl->wait_readable(static_cast<int>(kStopSlice.count() / 2));
  }
  ssh_set_blocking(s, 1);
  if (connected != SSH_OK) impl->fail("cannot connect to SSH");
  enable_keepalive(ssh_get_fd(s));

  // Host key first: never authenticate to a host we do not trust.
  ssh_key raw_key = nullptr;
  if (ssh_get_server_publickey(s, &raw_key) != SSH_OK) impl->fail("cannot read the SSH host key");
  KeyPtr host_key(raw_key);
  unsigned char* raw_hash = nullptr;
  size_t hash_len = 0;
  if (ssh_get_publickey_hash(host_key.get(), SSH_PUBLICKEY_HASH_SHA256, &raw_hash, &hash_len) != 0)
    impl->fail("cannot hash the SSH host key");
  std::unique_ptr<unsigned char, HashDeleter> hash(raw_hash);
  LibsshString fp(ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash.get(), hash_len));
  if (!fp) impl->fail("cannot format the SSH host key fingerprint");
  impl->fingerprint = fp.get();
  char* raw_b64 = nullptr;
  if (ssh_pki_export_pubkey_base64(host_key.get(), &raw_b64) == SSH_OK && raw_b64) {
    impl->host_key_line = std::string(ssh_key_type_to_char(ssh_key_type(host_key.get()))) + " " + raw_b64;
    ssh_string_free_char(raw_b64);
  }
  if (!target.pinned_fingerprint.empty() && target.pinned_fingerprint != impl->fingerprint) {
    std::string name = target.machine_name.empty() ? target.host : target.machine_name;
    throw HostKeyChanged(fmt::format(
        "machine '{}': the SSH host key of {}:{} changed (expected {}, got {}). Someone may be "
        "intercepting the connection, or the host was reinstalled. If you trust the new key, "
        "re-pin it with 'berth provision --repin-host-key {}'.",
        name, host_for_url(target.host), target.port, target.pinned_fingerprint, impl->fingerprint, name));
  }

  ssh_key raw_priv = nullptr;
  if (ssh_pki_import_privkey_file(target.key_path.c_str(), nullptr, nullptr, nullptr, &raw_priv) != SSH_OK)
    throw SshError(fmt::format("cannot load SSH private key {} for {}: the file is missing, unreadable or "
                               "not a key (passphrase-protected keys are not supported)",
                               target.key_path.string(), where(target)));
  KeyPtr priv(raw_priv);
  int rc = ssh_userauth_publickey(s, nullptr, priv.get());
  if (rc == SSH_AUTH_ERROR) impl->fail("SSH authentication failed");
  if (rc != SSH_AUTH_SUCCESS) {
    std::string user = target.user.empty() ? "the login user" : "user '" + target.user + "'";
    throw SshError(fmt::format("{} refused SSH key {} for {}; add {}.pub to that user's "
                               "~/.ssh/authorized_keys on the host",
                               where(target), target.key_path.string(), user, target.key_path.string()));
  }
  set_timeout(std::max(timeout, kMinOperationTimeout));
  log::debug(kLog, "connected to {} (host key {})", where(target), impl->fingerprint);
  return std::unique_ptr<SshSession>(new SshSession(std::move(impl)));
}

std::string SshSession::host_key_fingerprint() const { return impl_->fingerprint; }
std::string SshSession::host_public_key() const { return impl_->host_key_line; }
ssh_session_struct* SshSession::native_handle() const { return impl_->s(); }
const SshTarget& SshSession::target() const { return impl_->target; }

ExecResult SshSession::run(const std::string& command, std::string_view stdin_data) {
  log::debug(kLog, "run on {}: {}", where(impl_->target), command);
  ChannelPtr ch = impl_->open_channel();
  if (ssh_channel_request_exec(ch.get(), command.c_str()) != SSH_OK) impl_->fail("cannot run a command");

  ExecResult result;
  size_t sent = 0;
  bool eof_sent = false;
  while (true) {
    // Feed stdin only as far as the remote window allows, so a command that
    // writes a lot before reading cannot deadlock against us.
    if (!eof_sent) {
      if (sent < stdin_data.size()) {
        uint32_t window = ssh_channel_window_size(ch.get());
        size_t n = std::min<size_t>({window, stdin_data.size() - sent, kIoChunk});
        if (n > 0) {
          int w = ssh_channel_write(ch.get(), stdin_data.data() + sent, static_cast<uint32_t>(n));
          if (w == SSH_ERROR) impl_->fail("cannot send input to a command");
          sent += static_cast<size_t>(w);
        }
      }
      if (sent == stdin_data.size()) {
        if (ssh_channel_send_eof(ch.get()) != SSH_OK && !ssh_channel_is_closed(ch.get()))
          impl_->fail("cannot close a command's input");
        eof_sent = true;
      }
    }
    impl_->drain(ch.get(), [&](bool is_stderr, const char* p, size_t n) {
      (is_stderr ? result.err : result.out).append(p, n);
    });
    if (ssh_channel_is_eof(ch.get()) || ssh_channel_is_closed(ch.get())) break;
    impl_->wait_readable(eof_sent ? 200 : 20);
  }
  result.exit_code = ssh_channel_get_exit_status(ch.get());
  ssh_channel_close(ch.get());
  return result;
}

void SshSession::put(const std::string& remote_path, std::string_view content, int mode) {
  impl_->atomic_upload(remote_path, mode, [&](auto& write_chunk) { write_chunk(content.data(), content.size()); });
}

void SshSession::put_file(const std::filesystem::path& local, const std::string& remote_path, int mode) {
  LocalFd fd(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw Error("cannot read " + local.string() + ": " + errno_text());
  auto started = std::chrono::steady_clock::now();
  size_t total = 0;
  impl_->atomic_upload(remote_path, mode, [&](auto& write_chunk) {
    std::vector<char> buf(1024 * 1024);
    while (true) {
      ssize_t n = ::read(fd.get(), buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        throw Error("cannot read " + local.string() + ": " + errno_text());
      }
      if (n == 0) break;
      write_chunk(buf.data(), static_cast<size_t>(n));
      total += static_cast<size_t>(n);
    }
  });
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  log::debug(kLog, "uploaded {} ({} bytes) to {}:{} in {} ms", local.string(), total, impl_->target.host,
             remote_path, ms.count());
}

std::string SshSession::get(const std::string& remote_path) {
  std::string out;
  impl_->download(remote_path, [&](const char* p, size_t n) { out.append(p, n); });
  return out;
}

void SshSession::get_file(const std::string& remote_path, const std::filesystem::path& local) {
  sftp_session sf = impl_->sftp_session_get();
  SftpAttrPtr attrs(sftp_stat(sf, remote_path.c_str()));
  if (!attrs) impl_->fail_sftp("stat", remote_path);
  mode_t mode = (attrs->flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? (attrs->permissions & 07777) : 0644;

  std::filesystem::path tmp = local;
  tmp += ".berth-tmp-" + random_suffix();
  LocalFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) throw Error("cannot write " + tmp.string() + ": " + errno_text());
  try {
    impl_->download(remote_path, [&](const char* p, size_t n) {
      while (n > 0) {
        ssize_t w = ::write(fd.get(), p, n);
        if (w < 0) {
          if (errno == EINTR) continue;
          throw Error("cannot write " + local.string() + ": " + errno_text());
        }
        p += w;
        n -= static_cast<size_t>(w);
      }
    });
    if (::fchmod(fd.get(), mode) != 0 || ::close(fd.release()) != 0 || ::rename(tmp.c_str(), local.c_str()) != 0)
      throw Error("cannot write " + local.string() + ": " + errno_text());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

bool SshSession::is_remote_dir(const std::string& remote_path) {
  sftp_session sf = impl_->sftp_session_get();
  SftpAttrPtr attrs(sftp_stat(sf, remote_path.c_str()));
  if (!attrs) {
    int code = sftp_get_error(sf);
    if (code == SSH_FX_NO_SUCH_FILE || code == SSH_FX_NO_SUCH_PATH) return false;
    impl_->fail_sftp("stat", remote_path);
  }
  return attrs->type == SSH_FILEXFER_TYPE_DIRECTORY;
}

std::vector<std::string> SshSession::list_remote_dir(const std::string& remote_path) {
  sftp_session sf = impl_->sftp_session_get();
  SftpDirPtr dir(sftp_opendir(sf, remote_path.c_str()));
  if (!dir) impl_->fail_sftp("list", remote_path);
  std::vector<std::string> names;
  while (true) {
    SftpAttrPtr entry(sftp_readdir(sf, dir.get()));
    if (!entry) break;
    std::string name = entry->name ? entry->name : "";
    if (name != "." && name != ".." && !name.empty()) names.push_back(std::move(name));
  }
  if (!sftp_dir_eof(dir.get())) impl_->fail_sftp("list", remote_path);
  std::sort(names.begin(), names.end());
  return names;
}

void SshSession::make_remote_dir(const std::string& remote_path, int mode) {
  sftp_session sf = impl_->sftp_session_get();
  if (sftp_mkdir(sf, remote_path.c_str(), static_cast<mode_t>(mode)) == 0) return;
  if (is_remote_dir(remote_path)) return;  // already there
  impl_->fail_sftp("create directory", remote_path);
}

int SshSession::interactive(const std::string& command) {
  ChannelPtr ch = impl_->open_channel();
  ssh_channel c = ch.get();
  const bool tty = ::isatty(STDIN_FILENO) == 1;
  std::optional<WinchHandler> winch;
  std::optional<RawTerminal> raw;
  if (tty) {
    int cols = 80, rows = 24;
    terminal_size(STDIN_FILENO, cols, rows);
    const char* term = std::getenv("TERM");
    if (ssh_channel_request_pty_size(c, term && *term ? term : "xterm-256color", cols, rows) != SSH_OK)
      impl_->fail("cannot allocate a terminal");
    g_window_changed = 0;
    winch.emplace();
  }
  int rc = command.empty() ? ssh_channel_request_shell(c) : ssh_channel_request_exec(c, command.c_str());
  if (rc != SSH_OK) impl_->fail(command.empty() ? "cannot start a shell" : "cannot run a command");
  if (tty) raw.emplace(STDIN_FILENO);

  bool stdin_open = true;
  char buf[kIoChunk];
  while (true) {
    if (g_window_changed) {
      g_window_changed = 0;
      int cols = 0, rows = 0;
      if (terminal_size(STDIN_FILENO, cols, rows)) ssh_channel_change_pty_size(c, cols, rows);
    }
    impl_->drain(c, [](bool is_stderr, const char* p, size_t n) {
      write_all_fd(is_stderr ? STDERR_FILENO : STDOUT_FILENO, p, n);
    });
    if (ssh_channel_is_eof(c) || ssh_channel_is_closed(c)) break;

    pollfd fds[2] = {{ssh_get_fd(impl_->s()), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    int n = ::poll(fds, stdin_open ? 2 : 1, 200);
    if (n < 0 && errno != EINTR) throw Error("poll failed during an interactive SSH session: " + errno_text());
    if (n > 0 && stdin_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = ::read(STDIN_FILENO, buf, sizeof buf);
      if (r > 0) {
        if (ssh_channel_write(c, buf, static_cast<uint32_t>(r)) == SSH_ERROR)
          impl_->fail("cannot send input to the session");
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = false;
        ssh_channel_send_eof(c);
      }
    }
  }
  raw.reset();
  int status = ssh_channel_get_exit_status(c);
  ssh_channel_close(c);
  return status;
}

std::unique_ptr<SshSession> wait_for_ssh(const SshTarget& target, std::chrono::milliseconds deadline,
                                         const std::function<bool()>& should_stop) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto end = start + deadline;
  const std::chrono::milliseconds retry_every{250};
  std::string last_error = "no attempt made";
  std::chrono::milliseconds longest_silence{0};  // connected, no banner
  auto stop_requested = [&] {
    if (should_stop && should_stop())
      throw Interrupted(fmt::format("interrupted while waiting for SSH on {}", where(target)));
  };
  while (true) {
    stop_requested();
    auto attempt_started = clock::now();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - attempt_started);
    if (left.count() <= 0) break;
    try {
      return SshSession::connect(target, std::min(left, std::chrono::milliseconds(15'000)), should_stop);
    } catch (const HostKeyChanged&) {
      throw;
    } catch (const NoBanner& e) {
      // A short last attempt would understate how long the host stayed silent.
      longest_silence = std::max(longest_silence, e.waited);
      last_error = "cannot connect to SSH: TCP connected but no SSH banner within " + seconds_text(longest_silence);
      log::debug(kLog, "waiting for SSH: {}", last_error);
    } catch (const SshError& e) {
      last_error = e.what();
      // The timeout message names host and machine once; drop them from the cause.
      if (auto at = last_error.find(" on " + where(target)); at != std::string::npos)
        last_error.erase(at, 4 + where(target).size());
      log::debug(kLog, "waiting for SSH: {}", last_error);
    }
    auto next = attempt_started + retry_every;
    while (clock::now() < std::min(next, end)) {
      stop_requested();
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  long waited = std::max(1L, std::lround(std::chrono::duration<double>(clock::now() - start).count()));
  throw SshError(fmt::format("timed out after {}s waiting for SSH on {}:{}{}: {}", waited,
                             host_for_url(target.host), target.port,
                             target.machine_name.empty() ? "" : " (machine '" + target.machine_name + "')",
                             last_error));
}

void generate_ed25519_key(const std::filesystem::path& private_key, const std::string& comment) {
  ssh_key raw = nullptr;
  if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &raw) != SSH_OK)
    throw SshError("cannot generate an ed25519 SSH key");
  KeyPtr key(raw);
  char* raw_priv = nullptr;
  if (ssh_pki_export_privkey_base64(key.get(), nullptr, nullptr, nullptr, &raw_priv) != SSH_OK)
    throw SshError("cannot encode the new SSH key for " + private_key.string());
  LibsshString priv(raw_priv);
  std::string priv_text = priv.get();
  if (!priv_text.empty() && priv_text.back() != '\n') priv_text += '\n';
  char* raw_pub = nullptr;
  if (ssh_pki_export_pubkey_base64(key.get(), &raw_pub) != SSH_OK)
    throw SshError("cannot encode the public half of " + private_key.string());
  LibsshString pub(raw_pub);
  std::string pub_line = fmt::format("{} {}", ssh_key_type_to_char(ssh_key_type(key.get())), pub.get());
  if (!comment.empty()) pub_line += " " + comment;
  write_file_atomic(private_key, priv_text, 0600);
  std::filesystem::path pub_path = private_key;
  pub_path += ".pub";
  write_file_atomic(pub_path, pub_line + "\n", 0644);
}

std::string read_public_key(const std::filesystem::path& private_key) {
  std::filesystem::path pub_path = private_key;
  pub_path += ".pub";
  std::error_code ec;
  if (std::filesystem::exists(pub_path, ec)) {
    std::string text = read_file(pub_path);
    auto eol = text.find_first_of("\r\n");
    if (eol != std::string::npos) text.resize(eol);
    if (!text.empty()) return text;
  }
  // No .pub next to it: derive the public key from the private one.
  ssh_key raw = nullptr;
  if (ssh_pki_import_privkey_file(private_key.c_str(), nullptr, nullptr, nullptr, &raw) != SSH_OK)
    throw SshError("cannot read SSH private key " + private_key.string());
  KeyPtr priv(raw);
  ssh_key raw_pubkey = nullptr;
  if (ssh_pki_export_privkey_to_pubkey(priv.get(), &raw_pubkey) != SSH_OK)
    throw SshError("cannot derive the public key of " + private_key.string());
  KeyPtr pubkey(raw_pubkey);
  char* raw_b64 = nullptr;
  if (ssh_pki_export_pubkey_base64(pubkey.get(), &raw_b64) != SSH_OK)
    throw SshError("cannot encode the public key of " + private_key.string());
  LibsshString b64(raw_b64);
  return fmt::format("{} {}", ssh_key_type_to_char(ssh_key_type(pubkey.get())), b64.get());
}

}  // namespace berth
