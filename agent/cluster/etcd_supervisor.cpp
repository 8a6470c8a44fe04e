#include "agent/cluster/etcd_supervisor.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "agent/log.h"
#include "agent/process.h"

namespace berth::agent::cluster {

namespace fs = std::filesystem;

EtcdProcess etcd_process(const ClusterConfig& cluster, const std::string& data_root) {
  EtcdProcess p;
  if (cluster.etcd) {
    p.binary = cluster.etcd->binary;
    p.data_dir = cluster.etcd->data_dir;
    p.initial_cluster = cluster.etcd->initial_cluster;
    p.initial_cluster_state = cluster.etcd->initial_cluster_state;
  }
  p.name = cluster.machine;
  p.advertise = cluster.advertise;
  p.token = cluster.name;
  p.tls = cluster.tls;
  p.log_file = (fs::path(data_root) / "etcd.log").string();
  return p;
}

std::vector<std::string> etcd_argv(const EtcdProcess& p) {
  const std::string client = "https://" + p.advertise + ":" + std::to_string(p.client_port);
  const std::string peer = "https://" + p.advertise + ":" + std::to_string(p.peer_port);
  std::string listen_client = client;
  if (p.advertise != "127.0.0.1")
    listen_client += ",https://127.0.0.1:" + std::to_string(p.client_port);
  return {p.binary,
          "--name", p.name,
          "--data-dir", p.data_dir,
          "--listen-client-urls", listen_client,
          "--advertise-client-urls", client,
          "--listen-peer-urls", peer,
          "--initial-advertise-peer-urls", peer,
          "--initial-cluster", p.initial_cluster,
          "--initial-cluster-state", p.initial_cluster_state,
          "--initial-cluster-token", p.token,
          "--client-cert-auth",
          "--trusted-ca-file", p.tls.ca,
          "--cert-file", p.tls.cert,
          "--key-file", p.tls.key,
          "--peer-client-cert-auth",
          "--peer-trusted-ca-file", p.tls.ca,
          "--peer-cert-file", p.tls.cert,
          "--peer-key-file", p.tls.key};
}

EtcdSupervisor::EtcdSupervisor(EtcdProcess process, Logger& log)
    : process_(std::move(process)), log_(log) {}

EtcdSupervisor::~EtcdSupervisor() { stop(); }

pid_t EtcdSupervisor::spawn() {
  if (::access(process_.binary.c_str(), X_OK) != 0)
    throw std::runtime_error("cannot run etcd " + process_.binary + ": " + std::strerror(errno));
  std::error_code ec;
  fs::create_directories(fs::path(process_.data_dir).parent_path(), ec);
  fs::create_directories(fs::path(process_.log_file).parent_path(), ec);
  int log_fd = ::open(process_.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0)
    throw std::runtime_error("cannot open " + process_.log_file + ": " + std::strerror(errno));
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<std::string> argv = etcd_argv(process_);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  // Forked here so the child can ask for SIGTERM when this thread (which
  // lives as long as the supervisor) goes away; only async-signal-safe calls
  // until exec.
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int saved = errno;
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  if (pid < 0) throw std::runtime_error(std::string("fork for etcd: ") + std::strerror(saved));
  return pid;
}

void EtcdSupervisor::start() {
  std::unique_lock lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  // The first start happens on the supervising thread (see spawn), and its
  // error comes back here.
  std::string error;
  bool started = false;
  thread_ = std::thread([this, &error, &started] {
    bool ok = false;
    {
      std::lock_guard l(mutex_);
      try {
        pid_ = spawn();
        ok = true;
        log_.info("etcd started (pid " + std::to_string(pid_) + "): " + process_.name + " at https://" +
                  process_.advertise + ":" + std::to_string(process_.client_port) + ", log " +
                  process_.log_file);
      } catch (const std::exception& e) {
        error = e.what();
      }
      started = true;
    }
    cv_.notify_all();  // start() returns: error and started are gone
    if (ok) supervise();
  });
  cv_.wait(lock, [&] { return started; });
  if (!error.empty()) {
    lock.unlock();
    thread_.join();
    throw std::runtime_error(error);
  }
}

void EtcdSupervisor::supervise() {
  auto backoff = std::chrono::seconds(1);
  for (;;) {
    pid_t pid;
    {
      std::lock_guard lock(mutex_);
      pid = pid_;
    }
    auto started_at = std::chrono::steady_clock::now();
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::unique_lock lock(mutex_);
    pid_ = 0;
    if (stopping_) return;
    if (std::chrono::steady_clock::now() - started_at > std::chrono::seconds(60))
      backoff = std::chrono::seconds(1);
    log_.warn("etcd exited (" + std::to_string(exit_code_of(status)) + "; see " + process_.log_file +
              ")");
    for (;;) {
      log_.info("starting etcd again in " + std::to_string(backoff.count()) + " s");
      if (cv_.wait_for(lock, backoff, [this] { return stopping_; })) return;
      backoff = std::min(backoff * 2, std::chrono::seconds(30));
      try {
        pid_ = spawn();
        ++restarts_;
        break;
      } catch (const std::exception& e) {
        log_.error(std::string("etcd: ") + e.what());
      }
    }
  }
}

void EtcdSupervisor::stop() {
  pid_t pid;
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    pid = pid_;
    if (pid > 0) ::kill(pid, SIGTERM);
  }
  cv_.notify_all();
  if (pid > 0) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (pid_ == 0) break;
        if (std::chrono::steady_clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  thread_.join();
  log_.info("etcd stopped");
}

pid_t EtcdSupervisor::pid() const {
  std::lock_guard lock(mutex_);
  return pid_;
}

int EtcdSupervisor::restarts() const {
  std::lock_guard lock(mutex_);
  return restarts_;
}

}  // namespace berth::agent::cluster
