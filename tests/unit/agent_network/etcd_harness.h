#pragma once
// A real etcd (Debian's etcd-server) for the cluster tests: TLS certificates
// made with openssl for the addresses the test names, and one or more
// members started through the agent's own EtcdSupervisor on free ports of
// 127.0.0.1 (or, inside a test's network namespace, on the addresses there).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "agent/cluster/etcd_supervisor.h"
#include "agent/log.h"
#include "agent/network/etcd_client.h"
#include "agent/process.h"

namespace berth::agent::testing {

inline constexpr const char* kEtcdBinary = "/usr/bin/etcd";

inline bool have_etcd() { return ::access(kEtcdBinary, X_OK) == 0; }

// A port nobody listens on right now (the kernel's pick).
inline int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("no free port");
  ::close(s);
  return ntohs(a.sin_port);
}

// A CA and one certificate (serverAuth and clientAuth) for every address
// given, as the lead's cluster CA makes them.
struct ClusterPki {
  std::filesystem::path dir;
  ClusterPki(std::filesystem::path d, const std::vector<std::string>& ips) : dir(std::move(d)) {
    std::filesystem::create_directories(dir);
    run_checked({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-sha256", "-days", "2", "-subj", "/CN=berth cluster CA", "-keyout",
                 (dir / "ca-key.pem").string(), "-out", (dir / "ca.pem").string(), "-addext",
                 "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    std::string san = "subjectAltName=DNS:localhost";
    for (const std::string& ip : ips) san += ",IP:" + ip;
    std::ofstream(dir / "member.ext") << san << "\nextendedKeyUsage=serverAuth,clientAuth\n"
                                     << "keyUsage=critical,digitalSignature,keyEncipherment\n";
    run_checked({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-subj", "/CN=member", "-keyout", (dir / "member-key.pem").string(), "-out",
                 (dir / "member.csr").string()});
    run_checked({"openssl", "x509", "-req", "-sha256", "-days", "2", "-in", (dir / "member.csr").string(),
                 "-CA", (dir / "ca.pem").string(), "-CAkey", (dir / "ca-key.pem").string(),
                 "-set_serial", "0x1234", "-extfile", (dir / "member.ext").string(), "-out",
                 (dir / "member.pem").string()});
  }
  TlsPaths tls() const {
    return {(dir / "ca.pem").string(), (dir / "member.pem").string(), (dir / "member-key.pem").string()};
  }
  network::EtcdTls etcd_tls() const {
    TlsPaths t = tls();
    return {t.ca, t.cert, t.key};
  }
};

// One etcd member, supervised as the agent does it.
struct EtcdMemberProcess {
  cluster::EtcdProcess process;
  Logger log;  // discards
  std::unique_ptr<cluster::EtcdSupervisor> supervisor;

  std::string client_url() const {
    return "https://" + process.advertise + ":" + std::to_string(process.client_port);
  }
  std::string peer_url() const {
    return "https://" + process.advertise + ":" + std::to_string(process.peer_port);
  }
  void start() {
    supervisor = std::make_unique<cluster::EtcdSupervisor>(process, log);
    supervisor->start();
  }
  void stop() {
    if (supervisor) supervisor->stop();
    supervisor.reset();
  }
  ~EtcdMemberProcess() { stop(); }
};

inline network::EtcdOptions etcd_options(const std::vector<std::string>& endpoints, const ClusterPki& pki) {
  network::EtcdOptions o;
  o.endpoints = endpoints;
  o.tls = pki.etcd_tls();
  o.connect_timeout = std::chrono::milliseconds(1000);
  o.request_timeout = std::chrono::milliseconds(3000);
  return o;
}

// Waits until a write through these endpoints works.
inline void wait_for_etcd(const network::EtcdOptions& options,
                          std::chrono::seconds timeout = std::chrono::seconds(30)) {
  network::EtcdClient client(options);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      client.put("/health-check", "ok");
      return;
    } catch (const std::exception& e) {
      last = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("etcd did not come up: " + last);
}

// A cluster of `members` etcd processes on 127.0.0.1 (free ports), or on the
// given addresses with the standard ports.
class TestEtcd {
 public:
  TestEtcd(const std::filesystem::path& dir, int members = 1, std::vector<std::string> addresses = {})
      : pki_(dir / "pki", addresses.empty() ? std::vector<std::string>{"127.0.0.1"} : with_loopback(addresses)) {
    std::string initial;
    for (int i = 0; i < members; ++i) {
      auto m = std::make_unique<EtcdMemberProcess>();
      cluster::EtcdProcess& p = m->process;
      p.binary = kEtcdBinary;
      p.name = std::string(1, static_cast<char>('a' + i));
      p.data_dir = (dir / ("etcd-" + p.name)).string();
      p.advertise = addresses.empty() ? "127.0.0.1" : addresses.at(static_cast<std::size_t>(i));
      p.client_port = addresses.empty() ? free_port() : 2379;
      p.peer_port = addresses.empty() ? free_port() : 2380;
      p.token = "test";
      p.tls = pki_.tls();
      p.log_file = (dir / ("etcd-" + p.name + ".log")).string();
      initial += (initial.empty() ? "" : ",") + p.name + "=" + m->peer_url();
      members_.push_back(std::move(m));
    }
    for (auto& m : members_) {
      m->process.initial_cluster = initial;
      m->start();
    }
    wait_for_etcd(options());
  }

  network::EtcdOptions options() const {
    std::vector<std::string> endpoints;
    for (const auto& m : members_) endpoints.push_back(m->client_url());
    return etcd_options(endpoints, pki_);
  }
  network::EtcdOptions options_for(std::size_t member) const {
    return etcd_options({members_.at(member)->client_url()}, pki_);
  }
  EtcdMemberProcess& member(std::size_t i) { return *members_.at(i); }
  const ClusterPki& pki() const { return pki_; }

 private:
  static std::vector<std::string> with_loopback(std::vector<std::string> ips) {
    ips.push_back("127.0.0.1");
    return ips;
  }
  ClusterPki pki_;
  std::vector<std::unique_ptr<EtcdMemberProcess>> members_;
};

}  // namespace berth::agent::testing
