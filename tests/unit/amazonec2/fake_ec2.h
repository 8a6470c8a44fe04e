#pragma once
// An in-memory EC2 behind the Transport interface, for the driver's unit tests:
// real state transitions (NotFound right after RunInstances, pending, running
// with an IP; shutting-down, terminated), ClientToken idempotency as EC2 has
// it, both error roots, and per-call fault injection. It checks each request's
// SigV4 signature against the headers it received.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "drivers/cloud/amazonec2/sigv4.h"
#include "drivers/cloud/http.h"
#include "drivers/driver.h"

namespace berth::test {

inline std::string form_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct Call {
  std::string action;
  std::map<std::string, std::string> params;
  cloud::Headers headers;
  std::string param(const std::string& k) const {
    auto it = params.find(k);
    return it == params.end() ? "" : it->second;
  }
};

class FakeClock final : public cloud::Clock {
 public:
  std::chrono::system_clock::time_point t = std::chrono::system_clock::from_time_t(1440938160);  // 2015-08-30T12:36:00Z
  std::chrono::milliseconds slept{0};
  int sleeps = 0;
  std::chrono::system_clock::time_point now() override { return t; }
  void sleep(std::chrono::milliseconds d, const CancelToken& cancel) override {
    cancel.throw_if_cancelled();
    t += d;
    slept += d;
    ++sleeps;
  }
};

class FakeSealer final : public SecretSealer {
 public:
  std::string seal(const std::string& p) const override { return "sealed:" + std::string(p.rbegin(), p.rend()); }
  std::string open(const std::string& s) const override {
    if (s.rfind("sealed:", 0) != 0) throw Error("not sealed");
    std::string p = s.substr(7);
    return std::string(p.rbegin(), p.rend());
  }
};

class FakeEc2 final : public cloud::Transport {
 public:
  struct Instance {
    std::string id, state, ip, group, key, token;
    std::vector<std::pair<std::string, std::string>> tags;
    int not_found_left = 0;        // DescribeInstances answers NotFound this many times first
    int pending_left = 0;          // then pending this many times
    bool ends_terminated = false;  // goes to terminated instead of running (a failed launch)
  };
  struct Group {
    std::string id, name, vpc;
    std::vector<int> ports;
    std::vector<std::pair<std::string, std::string>> tags;
  };
  // A fault: given the call and how many times this action came before, an
  // answer to send instead (nullopt: act normally). `act_first` acts and then
  // sends the answer (a lost response).
  struct Fault {
    std::string action;
    int nth = 1;  // 1 = the first call of that action
    cloud::HttpResponse answer;
    bool act_first = false;
    bool transport_error = false;
  };

  std::string secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  std::string access = "AKIDEXAMPLE";
  std::map<std::string, std::string> images = {{"ami-12345678", "/dev/sda1"}};
  std::string default_vpc = "vpc-1a2b3c4d";
  std::map<std::string, std::string> subnets = {{"subnet-9d4a7b6c", "vpc-9d4a7b6c"}};
  std::map<std::string, Group> groups;        // by id
  std::map<std::string, std::string> keys;    // name -> public key material (decoded)
  std::map<std::string, Instance> instances;  // by id
  std::vector<Call> calls;
  std::vector<Fault> faults;
  std::vector<std::string> signature_errors;
  int not_found_polls = 1;
  int pending_polls = 2;
  int dependency_violations = 0;   // DeleteSecurityGroup answers DependencyViolation this many times
  bool next_launch_fails = false;  // the next instance goes to terminated
  cloud::Clock* clock = nullptr;   // to check X-Amz-Date

  std::vector<std::string> actions() const {
    std::vector<std::string> out;
    for (const auto& c : calls) out.push_back(c.action);
    return out;
  }
  std::vector<Call> calls_of(const std::string& action) const {
    std::vector<Call> out;
    for (const auto& c : calls)
      if (c.action == action) out.push_back(c);
    return out;
  }
  size_t live_instances() const {
    return std::count_if(instances.begin(), instances.end(),
                         [](const auto& kv) { return kv.second.state != "terminated"; });
  }

  cloud::HttpResponse send(const cloud::HttpRequest& r, std::chrono::milliseconds) override {
    Call c;
    c.headers = r.headers;
    size_t start = 0;
    while (start < r.body.size()) {
      size_t end = r.body.find('&', start);
      if (end == std::string::npos) end = r.body.size();
      std::string pair = r.body.substr(start, end - start);
      size_t eq = pair.find('=');
      c.params[form_decode(pair.substr(0, eq))] = eq == std::string::npos ? "" : form_decode(pair.substr(eq + 1));
      start = end + 1;
    }
    c.action = c.param("Action");
    check_signature(r, c.action);
    calls.push_back(c);
    int nth = static_cast<int>(calls_of(c.action).size());
    for (const auto& f : faults) {
      if (f.action != c.action || f.nth != nth) continue;
      if (f.act_first) handle(c);
      if (f.transport_error) throw cloud::TransportError("connection reset by peer", false, true);
      return f.answer;
    }
    return handle(c);
  }

  static cloud::HttpResponse ok(const std::string& action, const std::string& inner) {
    return {200,
            {{"Content-Type", "text/xml;charset=UTF-8"}},
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<" + action +
                "Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
                "<requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>" +
                inner + "</" + action + "Response>"};
  }
  static cloud::HttpResponse error(long status, const std::string& code, const std::string& message) {
    return {status,
            {{"Content-Type", "text/xml;charset=UTF-8"}},
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>" + code + "</Code><Message>" +
                message + "</Message></Error></Errors><RequestID>req-" + code + "</RequestID></Response>"};
  }

 private:
  void check_signature(const cloud::HttpRequest& r, const std::string& action) {
    std::string auth, date;
    cloud::Headers signed_headers;
    for (const auto& [k, v] : r.headers) {
      std::string lk = k;
      std::transform(lk.begin(), lk.end(), lk.begin(), ::tolower);
      if (lk == "authorization") {
        auth = v;
        continue;
      }
      if (lk == "x-amz-date") date = v;
      signed_headers.emplace_back(k, v);
    }
    if (auth.empty() || date.empty()) {
      signature_errors.push_back(action + ": unsigned");
      return;
    }
    if (clock && date != cloud::sigv4::amz_date(clock->now()))
      signature_errors.push_back(action + ": stale X-Amz-Date " + date);
    auto s = cloud::sigv4::sign(r.method, "/", signed_headers, r.body, {access, secret, ""}, "us-east-1", "ec2", date);
    if (s.authorization != auth) signature_errors.push_back(action + ": signature mismatch");
  }

  static std::string instance_xml(const Instance& i) {
    std::string tags;
    for (const auto& [k, v] : i.tags) tags += "<item><key>" + k + "</key><value>" + v + "</value></item>";
    const int code = i.state == "pending"         ? 0
                     : i.state == "running"       ? 16
                     : i.state == "shutting-down" ? 32
                     : i.state == "terminated"    ? 48
                     : i.state == "stopping"      ? 64
                                                  : 80;
    return "<item><instanceId>" + i.id + "</instanceId><imageId>ami-12345678</imageId><instanceState><code>" +
           std::to_string(code) + "</code><name>" + i.state + "</name></instanceState>" +
           "<privateIpAddress>10.0.0.12</privateIpAddress>" +
           (i.ip.empty() || i.state != "running" ? "" : "<ipAddress>" + i.ip + "</ipAddress>") + "<keyName>" + i.key +
           "</keyName><groupSet><item><groupId>" + i.group + "</groupId></item></groupSet><tagSet>" + tags +
           "</tagSet></item>";
  }

  std::string next_id(const std::string& prefix) { return prefix + "-0" + std::to_string(++counter_) + "abcdef"; }

  cloud::HttpResponse handle(const Call& c) {
    const std::string& a = c.action;
    if (a == "DescribeImages") {
      auto it = images.find(c.param("ImageId.1"));
      if (it == images.end())
        return error(400, "InvalidAMIID.NotFound", "The image id '[" + c.param("ImageId.1") + "]' does not exist");
      return ok(a, "<imagesSet><item><imageId>" + it->first + "</imageId><rootDeviceName>" + it->second +
                       "</rootDeviceName></item></imagesSet>");
    }
    if (a == "DescribeVpcs") {
      return ok(a, default_vpc.empty()
                       ? "<vpcSet/>"
                       : "<vpcSet><item><vpcId>" + default_vpc + "</vpcId><isDefault>true</isDefault></item></vpcSet>");
    }
    if (a == "DescribeSubnets") {
      auto it = subnets.find(c.param("SubnetId.1"));
      if (it == subnets.end()) return error(400, "InvalidSubnetID.NotFound", "The subnet ID does not exist");
      return ok(a, "<subnetSet><item><subnetId>" + it->first + "</subnetId><vpcId>" + it->second +
                       "</vpcId></item></subnetSet>");
    }
    if (a == "DescribeSecurityGroups") {
      const std::string wanted = c.param("GroupId.1");
      if (!wanted.empty() && !groups.count(wanted))
        return error(400, "InvalidGroup.NotFound", "The security group '" + wanted + "' does not exist");
      std::string items;
      for (const auto& [id, g] : groups) {
        bool match = wanted.empty() || wanted == id;
        for (int i = 1; i <= 3; ++i) {
          const std::string name = c.param("Filter." + std::to_string(i) + ".Name");
          const std::string value = c.param("Filter." + std::to_string(i) + ".Value.1");
          if (name == "group-name" && g.name != value) match = false;
          if (name == "vpc-id" && g.vpc != value) match = false;
          if (name.rfind("tag:", 0) == 0 &&
              std::find(g.tags.begin(), g.tags.end(), std::make_pair(name.substr(4), value)) == g.tags.end())
            match = false;
        }
        if (!match) continue;
        std::string perms, tags;
        for (int p : g.ports)
          perms += "<item><ipProtocol>tcp</ipProtocol><fromPort>" + std::to_string(p) + "</fromPort><toPort>" +
                   std::to_string(p) + "</toPort><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges></item>";
        for (const auto& [k, v] : g.tags) tags += "<item><key>" + k + "</key><value>" + v + "</value></item>";
        items += "<item><ownerId>123456789012</ownerId><groupId>" + id + "</groupId><groupName>" + g.name +
                 "</groupName><groupDescription>d</groupDescription><vpcId>" + g.vpc + "</vpcId><ipPermissions>" +
                 perms + "</ipPermissions><tagSet>" + tags + "</tagSet></item>";
      }
      return ok(a, "<securityGroupInfo>" + items + "</securityGroupInfo>");
    }
    if (a == "CreateSecurityGroup") {
      for (const auto& [id, g] : groups)
        if (g.name == c.param("GroupName") && g.vpc == c.param("VpcId"))
          return error(400, "InvalidGroup.Duplicate", "The security group '" + g.name + "' already exists");
      Group g{next_id("sg"), c.param("GroupName"), c.param("VpcId"), {}, {}};
      for (int i = 1; c.params.count("TagSpecification.1.Tag." + std::to_string(i) + ".Key"); ++i)
        g.tags.emplace_back(c.param("TagSpecification.1.Tag." + std::to_string(i) + ".Key"),
                            c.param("TagSpecification.1.Tag." + std::to_string(i) + ".Value"));
      groups[g.id] = g;
      return ok(a, "<return>true</return><groupId>" + g.id + "</groupId>");
    }
    if (a == "AuthorizeSecurityGroupIngress") {
      auto it = groups.find(c.param("GroupId"));
      if (it == groups.end()) return error(400, "InvalidGroup.NotFound", "no such group");
      for (int i = 1; c.params.count("IpPermissions." + std::to_string(i) + ".FromPort"); ++i)
        it->second.ports.push_back(std::stoi(c.param("IpPermissions." + std::to_string(i) + ".FromPort")));
      return ok(a, "<return>true</return>");
    }
    if (a == "DeleteSecurityGroup") {
      auto it = groups.find(c.param("GroupId"));
      if (it == groups.end()) return error(400, "InvalidGroup.NotFound", "The security group does not exist");
      for (const auto& [id, i] : instances)
        if (i.group == it->first && i.state != "terminated")
          return error(400, "DependencyViolation", "resource " + it->first + " has a dependent object");
      if (dependency_violations > 0) {
        --dependency_violations;
        return error(400, "DependencyViolation", "resource " + it->first + " has a dependent object");
      }
      groups.erase(it);
      return ok(a, "<return>true</return>");
    }
    if (a == "ImportKeyPair") {
      if (keys.count(c.param("KeyName"))) return error(400, "InvalidKeyPair.Duplicate", "The keypair already exists");
      keys[c.param("KeyName")] = c.param("PublicKeyMaterial");
      return ok(a, "<keyFingerprint>1f:51:ae:28</keyFingerprint><keyName>" + c.param("KeyName") + "</keyName>");
    }
    if (a == "DeleteKeyPair") {
      keys.erase(c.param("KeyName"));  // EC2 answers true for a missing key too
      return ok(a, "<return>true</return>");
    }
    if (a == "RunInstances") {
      const std::string token = c.param("ClientToken");
      for (const auto& [id, i] : instances)
        if (!token.empty() && i.token == token) return ok(a, run_xml(i));
      if (!images.count(c.param("ImageId"))) return error(400, "InvalidAMIID.NotFound", "no such image");
      if (!keys.count(c.param("KeyName"))) return error(400, "InvalidKeyPair.NotFound", "The key pair does not exist");
      Instance i;
      i.id = next_id("i");
      i.state = "pending";
      i.ip = "203.0.113." + std::to_string(10 + counter_);
      i.group = c.param("SecurityGroupId.1");
      i.key = c.param("KeyName");
      i.token = token;
      i.not_found_left = not_found_polls;
      i.pending_left = pending_polls;
      i.ends_terminated = next_launch_fails;
      next_launch_fails = false;
      for (int n = 1; c.params.count("TagSpecification.1.Tag." + std::to_string(n) + ".Key"); ++n)
        i.tags.emplace_back(c.param("TagSpecification.1.Tag." + std::to_string(n) + ".Key"),
                            c.param("TagSpecification.1.Tag." + std::to_string(n) + ".Value"));
      instances[i.id] = i;
      return ok(a, run_xml(i));
    }
    if (a == "DescribeInstances") {
      std::string items;
      if (c.params.count("InstanceId.1")) {
        auto it = instances.find(c.param("InstanceId.1"));
        if (it == instances.end() || it->second.not_found_left > 0) {
          if (it != instances.end()) --it->second.not_found_left;
          return error(400, "InvalidInstanceID.NotFound",
                       "The instance ID '" + c.param("InstanceId.1") + "' does not exist");
        }
        advance(it->second);
        items = instance_xml(it->second);
      } else {
        for (auto& [id, inst] : instances) {
          bool match = true;
          for (int f = 1; c.params.count("Filter." + std::to_string(f) + ".Name"); ++f) {
            const std::string name = c.param("Filter." + std::to_string(f) + ".Name");
            std::set<std::string> values;
            for (int v = 1; c.params.count("Filter." + std::to_string(f) + ".Value." + std::to_string(v)); ++v)
              values.insert(c.param("Filter." + std::to_string(f) + ".Value." + std::to_string(v)));
            if (name == "instance-state-name" && !values.count(inst.state)) match = false;
            if (name == "instance.group-id" && !values.count(inst.group)) match = false;
            if (name.rfind("tag:", 0) == 0) {
              bool any = false;
              for (const auto& [k, v] : inst.tags)
                if (k == name.substr(4) && values.count(v)) any = true;
              if (!any) match = false;
            }
          }
          if (match) items += instance_xml(inst);
        }
      }
      return ok(a, "<reservationSet>" +
                       (items.empty() ? ""
                                      : "<item><reservationId>r-1</reservationId><instancesSet>" + items +
                                            "</instancesSet></item>") +
                       "</reservationSet>");
    }
    if (a == "TerminateInstances" || a == "StopInstances" || a == "StartInstances" || a == "RebootInstances") {
      auto it = instances.find(c.param("InstanceId.1"));
      if (it == instances.end()) return error(400, "InvalidInstanceID.NotFound", "The instance ID does not exist");
      auto& i = it->second;
      i.not_found_left = 0;
      i.pending_left = 0;
      if (a == "TerminateInstances" && i.state != "terminated") i.state = "shutting-down";
      if (a == "StopInstances" && i.state == "running") i.state = "stopping";
      if (a == "StartInstances" && i.state == "stopped") {
        i.state = "pending";
        i.ip = "198.51.100." + std::to_string(++counter_);  // a new public IP after stop/start
      }
      return ok(a, "<instancesSet><item><instanceId>" + i.id + "</instanceId></item></instancesSet>");
    }
    if (a == "CreateTags") return ok(a, "<return>true</return>");
    return error(400, "InvalidAction", "The action " + a + " is not valid for this web service.");
  }

  static std::string run_xml(const Instance& i) {
    return "<reservationId>r-1a2b3c4d</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>" +
           instance_xml(Instance{i.id, "pending", "", i.group, i.key, i.token, i.tags, 0, 0, false}) +
           "</instancesSet>";
  }

  void advance(Instance& i) {
    if (i.state == "pending") {
      if (i.pending_left > 0) {
        --i.pending_left;
      } else {
        i.state = i.ends_terminated ? "terminated" : "running";
      }
    } else if (i.state == "shutting-down") {
      i.state = "terminated";
    } else if (i.state == "stopping") {
      i.state = "stopped";
    }
  }

  int counter_ = 0;
};

}  // namespace berth::test
