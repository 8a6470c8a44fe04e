#pragma once
// The etcd member a cluster machine runs (agent.json "cluster"."etcd"): a
// child process of the agent, started with client and peer TLS from the
// cluster's CA, restarted when it dies (1 s, doubling to 30 s), and stopped
// with the agent (SIGTERM, then SIGKILL after 10 s). It also gets SIGTERM if
// the agent dies without stopping it, so no etcd outlives its agent. Its
// output goes to <data_root>/etcd.log.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/config.h"

namespace berth::agent {
class Logger;
}

namespace berth::agent::cluster {

struct EtcdProcess {
  std::string binary;  // Debian's etcd-server 3.4
  std::string name;    // --name: the machine's name
  std::string data_dir;
  std::string advertise;  // the machine's address on the cluster segment
  std::string initial_cluster;
  std::string initial_cluster_state = "new";
  std::string token;  // --initial-cluster-token: the cluster's name
  TlsPaths tls;
  int client_port = 2379;
  int peer_port = 2380;
  std::string log_file;
};

// What agent.json says, with the log under data_root.
EtcdProcess etcd_process(const ClusterConfig& cluster, const std::string& data_root);

// The command line: every flag etcd 3.4 needs for a TLS member that listens
// on the advertise address and on 127.0.0.1.
std::vector<std::string> etcd_argv(const EtcdProcess& p);

class EtcdSupervisor {
 public:
  EtcdSupervisor(EtcdProcess process, Logger& log);
  ~EtcdSupervisor();  // stop()
  EtcdSupervisor(const EtcdSupervisor&) = delete;
  EtcdSupervisor& operator=(const EtcdSupervisor&) = delete;

  // Starts etcd now (throws std::runtime_error when it cannot be run) and
  // keeps it running on a thread of its own.
  void start();
  void stop();

  pid_t pid() const;     // 0 while it is not running
  int restarts() const;  // how often it was started again after dying

 private:
  pid_t spawn();
  void supervise();

  EtcdProcess process_;
  Logger& log_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  pid_t pid_ = 0;
  int restarts_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace berth::agent::cluster
