#pragma once
// Writes a docker-machine store the way docker-machine 0.16 left it, from its
// documented schema (libmachine/host.Host with ConfigVersion 3, the drivers'
// BaseDriver fields plus each driver's own, HostOptions with EngineOptions,
// SwarmOptions and AuthOptions). Shared by the unit and integration tests.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace berth::test {

namespace fs = std::filesystem;
using nlohmann::json;

class DockerMachineStore {
 public:
  explicit DockerMachineStore(fs::path root) : root_(std::move(root)) {
    fs::create_directories(root_ / "certs");
    fs::create_directories(root_ / "machines");
    for (const char* f : {"ca.pem", "ca-key.pem", "cert.pem", "key.pem"})
      write(root_ / "certs" / f, std::string("store ") + f + "\n");
  }

  const fs::path& root() const { return root_; }
  fs::path dir(const std::string& name) const { return root_ / "machines" / name; }

  // BaseDriver (libmachine/drivers/base.go) as docker-machine serialized it.
  json base_driver(const std::string& name, const std::string& ip, const std::string& user, int ssh_port) const {
    return {{"IPAddress", ip},
            {"MachineName", name},
            {"SSHUser", user},
            {"SSHPort", ssh_port},
            {"SSHKeyPath", (dir(name) / "id_rsa").string()},
            {"StorePath", root_.string()},
            {"SwarmMaster", false},
            {"SwarmHost", "tcp://0.0.0.0:3376"},
            {"SwarmDiscovery", ""}};
  }

  // machines/NAME with config.json, the client certs docker used, the server
  // cert and the SSH key pair (`ssh_key` or a stand-in). `driver` is the whole "Driver" object.
  json add(const std::string& name, const std::string& driver_name, const json& driver,
           const std::string& ssh_key = "") {
    const fs::path d = dir(name);
    fs::create_directories(d);
    json config = {
        {"ConfigVersion", 3},
        {"Driver", driver},
        {"DriverName", driver_name},
        {"HostOptions",
         {{"Driver", ""},
          {"Memory", 0},
          {"Disk", 0},
          {"EngineOptions",
           {{"ArbitraryFlags", json::array({"log-level=debug"})},
            {"Dns", nullptr},
            {"GraphDir", ""},
            {"Env", json::array({"HTTP_PROXY=http://proxy:3128"})},
            {"Ipv6", false},
            {"InsecureRegistry", json::array({"registry.local:5000"})},
            {"Labels", json::array({"team=web"})},
            {"LogLevel", ""},
            {"StorageDriver", ""},
            {"SelinuxEnabled", false},
            {"TlsVerify", true},
            {"RegistryMirror", json::array({"https://mirror.local"})},
            {"InstallURL", "https://get.docker.com"}}},
          {"SwarmOptions",
           {{"IsSwarm", false},
            {"Address", ""},
            {"Discovery", ""},
            {"Agent", false},
            {"Master", false},
            {"Host", "tcp://0.0.0.0:3376"},
            {"Image", "swarm:latest"},
            {"Strategy", "spread"},
            {"Heartbeat", 0},
            {"Overcommit", 0},
            {"ArbitraryFlags", json::array()},
            {"ArbitraryJoinFlags", json::array()},
            {"Env", nullptr},
            {"IsExperimental", false}}},
          {"AuthOptions",
           {{"CertDir", (root_ / "certs").string()},
            {"CaCertPath", (root_ / "certs" / "ca.pem").string()},
            {"CaPrivateKeyPath", (root_ / "certs" / "ca-key.pem").string()},
            {"CaCertRemotePath", ""},
            {"ServerCertPath", (d / "server.pem").string()},
            {"ServerKeyPath", (d / "server-key.pem").string()},
            {"ClientKeyPath", (root_ / "certs" / "key.pem").string()},
            {"ServerCertRemotePath", ""},
            {"ServerKeyRemotePath", ""},
            {"ClientCertPath", (root_ / "certs" / "cert.pem").string()},
            {"ServerCertSANs", json::array()},
            {"StorePath", d.string()}}}}},
        {"Name", name}};
    write(d / "config.json", config.dump(4));
    for (const char* f : {"ca.pem", "cert.pem", "key.pem", "server.pem", "server-key.pem"})
      write(d / f, name + " " + f + "\n");
    write(d / "id_rsa", ssh_key.empty() ? "private key of " + name + "\n" : ssh_key);
    write(d / "id_rsa.pub", "ssh-rsa AAAA " + name + "\n");
    return config;
  }

  json add_generic(const std::string& name, const std::string& ip, int ssh_port = 22, int engine_port = 2376,
                   const std::string& ssh_key = "") {
    json d = base_driver(name, ip, "root", ssh_port);
    d["EnginePort"] = engine_port;
    d["SSHKey"] = "/home/someone/.ssh/id_rsa";
    return add(name, "generic", d, ssh_key);
  }

  json add_none(const std::string& name, const std::string& url) {
    json d = base_driver(name, "", "", 0);
    d["SSHKeyPath"] = "";
    d["URL"] = url;
    return add(name, "none", d);
  }

  json add_virtualbox(const std::string& name) {
    json d = base_driver(name, "192.168.99.100", "docker", 50301);
    d.update({{"VBoxManager", json::object()},
              {"HostInterfaces", json::object()},
              {"CPU", 2},
              {"Memory", 2048},
              {"DiskSize", 30000},
              {"NatNicType", "82540EM"},
              {"Boot2DockerURL", ""},
              {"Boot2DockerImportVM", ""},
              {"HostDNSResolver", false},
              {"HostOnlyCIDR", "192.168.99.1/24"},
              {"HostOnlyNicType", "82540EM"},
              {"HostOnlyPromiscMode", "deny"},
              {"UIType", "headless"},
              {"HostOnlyNoDHCP", false},
              {"NoShare", false},
              {"DNSProxy", true},
              {"NoVTXCheck", false},
              {"ShareFolder", ""}});
    return add(name, "virtualbox", d);
  }

  json add_digitalocean(const std::string& name, const std::string& token) {
    json d = base_driver(name, "203.0.113.10", "root", 22);
    d.update({{"AccessToken", token},
              {"DropletID", 123456789},
              {"DropletName", ""},
              {"Image", "ubuntu-16-04-x64"},
              {"Region", "ams3"},
              {"SSHKeyID", 987654},
              {"SSHKeyFingerprint", ""},
              {"SSHKey", ""},
              {"Size", "s-1vcpu-1gb"},
              {"IPv6", false},
              {"Backups", false},
              {"PrivateNetworking", true},
              {"UserDataFile", ""},
              {"Monitoring", true},
              {"Tags", "web, prod"}});
    return add(name, "digitalocean", d);
  }

  json add_amazonec2(const std::string& name, const std::string& access, const std::string& secret) {
    json d = base_driver(name, "198.51.100.7", "ubuntu", 22);
    d.update({{"Id", "5d2a0b1c3e4f5a6b"},
              {"AccessKey", access},
              {"SecretKey", secret},
              {"SessionToken", ""},
              {"Region", "eu-west-1"},
              {"AMI", "ami-0b541372"},
              {"SSHKeyID", 0},
              {"ExistingKey", false},
              {"KeyName", name},
              {"InstanceId", "i-0abc1234def567890"},
              {"InstanceType", "t2.micro"},
              {"PrivateIPAddress", "172.31.5.9"},
              {"SecurityGroupId", ""},
              {"SecurityGroupIds", json::array({"sg-0123abcd"})},
              {"SecurityGroupName", ""},
              {"SecurityGroupNames", json::array({"docker-machine"})},
              {"SecurityGroupReadOnly", false},
              {"OpenPorts", nullptr},
              {"Tags", "team,web,env,prod"},
              {"ReservationId", "r-0aa"},
              {"DeviceName", "/dev/sda1"},
              {"RootSize", 16},
              {"VolumeType", "gp2"},
              {"IamInstanceProfile", ""},
              {"VpcId", "vpc-0abc"},
              {"SubnetId", "subnet-0abc"},
              {"Zone", "a"},
              {"RequestSpotInstance", false},
              {"SpotPrice", "0.50"},
              {"BlockDurationMinutes", 0},
              {"PrivateIPOnly", false},
              {"UsePrivateIP", false},
              {"UseEbsOptimizedInstance", false},
              {"Monitoring", false},
              {"SSHPrivateKeyPath", ""},
              {"RetryCount", 5},
              {"Endpoint", ""},
              {"DisableSSL", false},
              {"UserDataFile", ""}});
    return add(name, "amazonec2", d);
  }

  static void write(const fs::path& p, const std::string& content) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    ::chmod(p.c_str(), 0600);
  }

 private:
  fs::path root_;
};

}  // namespace berth::test
