// Pure parts of the network module: IPAM, MACs, DNS messages, iptables argv.
#include <gtest/gtest.h>

#include <algorithm>

#include "agent/api/http.h"
#include "agent/network/dns.h"
#include "agent/network/iptables.h"
#include "agent/network/ipam.h"
#include "agent/network/ipam6.h"
#include "agent/network/network_manager.h"
#include "agent/network/network_state.h"
#include "agent/network/util.h"

namespace berth::agent::network {
namespace {

std::uint32_t ip(const char* s) { return *parse_ipv4(s); }

TEST(Ipv4Net, ParsesAndMasks) {
  auto n = Ipv4Net::parse("172.18.5.9/16");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->str(), "172.18.0.0/16");
  EXPECT_EQ(format_ipv4(n->broadcast()), "172.18.255.255");
  EXPECT_TRUE(n->contains(ip("172.18.200.1")));
  EXPECT_FALSE(n->contains(ip("172.19.0.1")));
  EXPECT_FALSE(Ipv4Net::parse("172.18.0.0"));
  EXPECT_FALSE(Ipv4Net::parse("172.18.0.0/33"));
  EXPECT_FALSE(Ipv4Net::parse("bad/8"));
  EXPECT_TRUE(Ipv4Net::parse("10.0.0.0/8")->overlaps(*Ipv4Net::parse("10.1.0.0/16")));
  EXPECT_FALSE(Ipv4Net::parse("10.0.0.0/16")->overlaps(*Ipv4Net::parse("10.1.0.0/16")));
}

TEST(Ipam, PicksSubnetsLikeDocker) {
  std::vector<Ipv4Net> used = {*Ipv4Net::parse("172.17.0.0/16")};
  EXPECT_EQ(pick_subnet(used).str(), "172.18.0.0/16");
  used.push_back(*Ipv4Net::parse("172.18.0.0/16"));
  used.push_back(*Ipv4Net::parse("172.19.3.0/24"));  // overlaps 172.19/16
  EXPECT_EQ(pick_subnet(used).str(), "172.20.0.0/16");
  used.push_back(*Ipv4Net::parse("172.16.0.0/12"));  // all of 172.16-31
  EXPECT_EQ(pick_subnet(used).str(), "192.168.0.0/20");
}

TEST(Ipam, AllocatesLowestFreeSkipsGatewayNoDuplicates) {
  Ipam ipam(*Ipv4Net::parse("172.17.0.0/16"), ip("172.17.0.1"));
  EXPECT_EQ(format_ipv4(ipam.allocate("a")), "172.17.0.2");
  EXPECT_EQ(format_ipv4(ipam.allocate("b")), "172.17.0.3");
  EXPECT_EQ(format_ipv4(ipam.allocate("a")), "172.17.0.2");  // same owner, same lease
  ipam.release("a");
  EXPECT_FALSE(ipam.lease_of("a"));
  EXPECT_EQ(format_ipv4(ipam.allocate("c")), "172.17.0.2");  // reused after release
  EXPECT_EQ(ipam.leases().size(), 2u);
}

TEST(Ipam, HonoursRequestedAddress) {
  Ipam ipam(*Ipv4Net::parse("10.5.0.0/24"), ip("10.5.0.1"));
  EXPECT_EQ(format_ipv4(ipam.allocate("a", "10.5.0.50")), "10.5.0.50");
  EXPECT_EQ(format_ipv4(ipam.allocate("b")), "10.5.0.2");
  auto status = [&](const std::string& owner, const std::string& req) {
    try {
      ipam.allocate(owner, req);
      return 0u;
    } catch (const api::HttpError& e) {
      return e.status();
    }
  };
  EXPECT_EQ(status("c", "10.5.0.50"), 403u);  // Address already in use
  EXPECT_EQ(status("c", "10.5.0.1"), 403u);   // the gateway
  EXPECT_EQ(status("c", "10.6.0.5"), 400u);   // outside
  EXPECT_EQ(status("c", "10.5.0.255"), 400u);  // broadcast
  EXPECT_EQ(status("c", "nonsense"), 400u);
}

TEST(Ipam, ExhaustionIs503AndStateRoundTrips) {
  Ipam ipam(*Ipv4Net::parse("10.9.0.0/30"), ip("10.9.0.1"));
  EXPECT_EQ(format_ipv4(ipam.allocate("a")), "10.9.0.2");
  try {
    ipam.allocate("b");
    ADD_FAILURE();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 503u);
  }
  Ipam copy = Ipam::from_json(ipam.to_json());
  EXPECT_EQ(copy.subnet(), ipam.subnet());
  EXPECT_EQ(copy.gateway(), ipam.gateway());
  EXPECT_EQ(copy.leases(), ipam.leases());
}

TEST(Ipv6Net, ParsesPicksAndAllocates) {
  auto n = Ipv6Net::parse("FD00:db8:1::7/64");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->str(), "fd00:db8:1::/64");
  EXPECT_TRUE(n->contains(*parse_ipv6("fd00:db8:1::ffff")));
  EXPECT_FALSE(n->contains(*parse_ipv6("fd00:db8:2::1")));
  EXPECT_FALSE(Ipv6Net::parse("fd00::/129"));
  EXPECT_FALSE(Ipv6Net::parse("10.0.0.0/8"));
  EXPECT_TRUE(Ipv6Net::parse("fd00::/16")->overlaps(*n));

  // A /48 of fd00::/8 from the seed, the same each time; then its /64s in order.
  Ipv6Net ula = ula_prefix("seed");
  EXPECT_EQ(ula, ula_prefix("seed"));
  EXPECT_NE(ula, ula_prefix("other"));
  EXPECT_EQ(ula.prefix, 48);
  EXPECT_EQ(format_ipv6(ula.addr).substr(0, 2), "fd");
  Ipv6Net first = pick_subnet6(ula, {});
  EXPECT_EQ(first, (Ipv6Net{ula.addr, 64}));
  Ipv6Net second = pick_subnet6(ula, {first});
  EXPECT_EQ(second.addr - first.addr, Ipv6Addr{1} << 64);

  Ipam6 ipam(*n, *parse_ipv6("fd00:db8:1::1"));
  EXPECT_EQ(format_ipv6(ipam.allocate("a")), "fd00:db8:1::2");
  EXPECT_EQ(format_ipv6(ipam.allocate("b", "fd00:db8:1::50")), "fd00:db8:1::50");
  EXPECT_EQ(format_ipv6(ipam.allocate("c")), "fd00:db8:1::3");
  auto status = [&](auto fn) {
    try {
      fn();
    } catch (const api::HttpError& e) {
      return e.status();
    }
    return 0u;
  };
  EXPECT_EQ(status([&] { ipam.allocate("d", "fd00:db8:1::50"); }), 403u);
  EXPECT_EQ(status([&] { ipam.allocate("d", "fd00:db8:1::1"); }), 403u);
  EXPECT_EQ(status([&] { ipam.allocate("d", "fd00:db8:2::9"); }), 400u);
  EXPECT_EQ(status([&] { ipam.allocate("d", "nonsense"); }), 400u);
  Ipam6 back = Ipam6::from_json(ipam.to_json());
  EXPECT_EQ(back.lease_of("b"), parse_ipv6("fd00:db8:1::50"));
  back.release("a");
  EXPECT_EQ(format_ipv6(back.allocate("e")), "fd00:db8:1::2");
}

TEST(EndpointRequest, ReadsEndpointSettingsAndNormalisesLinks) {
  auto r = EndpointRequest::from_json(nlohmann::json::parse(R"({
    "Aliases": ["web"], "Links": ["db", "/cache:/app/kv"], "MacAddress": "02:42:ac:11:00:09",
    "IPAMConfig": {"IPv4Address": "172.18.0.9", "IPv6Address": "fd00::9"}})"));
  EXPECT_EQ(r.aliases, std::vector<std::string>{"web"});
  EXPECT_EQ(r.links, (std::vector<std::string>{"db:db", "cache:kv"}));
  EXPECT_EQ(r.ipv4, "172.18.0.9");
  EXPECT_EQ(r.ipv6, "fd00::9");
  EXPECT_EQ(r.mac, "02:42:ac:11:00:09");
  EXPECT_EQ(EndpointRequest::from_json(r.to_json()).links, r.links);
  EXPECT_TRUE(EndpointRequest::from_json(nullptr).aliases.empty());
  EXPECT_THROW(normalize_link(":x"), api::HttpError);
  EXPECT_THROW(normalize_link("a/b:x"), api::HttpError);
}

TEST(NameTable, LinksResolveForTheirContainerOnly) {
  Net n;
  n.driver = "bridge";
  n.names->network_name = "six";
  n.ipv6 = true;
  EndpointRec db;
  db.container_id = std::string(64, 'b');
  db.container_name = "bravo";
  db.ip = ip("172.18.0.3");
  db.ip6 = *parse_ipv6("fd00::3");
  EndpointRec app;
  app.container_id = std::string(64, 'a');
  app.container_name = "alpha";
  app.ip = ip("172.18.0.2");
  app.links = {"bravo:db"};
  n.endpoints[db.container_id] = db;
  n.endpoints[app.container_id] = app;
  n.refresh_names();
  auto bravo = n.names->lookup("bravo.six");
  ASSERT_TRUE(bravo);
  EXPECT_EQ(bravo->v4, std::vector<std::uint32_t>{ip("172.18.0.3")});
  ASSERT_EQ(bravo->v6.size(), 1u);
  EXPECT_EQ(bravo->v6[0], ipv6_bytes(*parse_ipv6("fd00::3")));
  auto linked = n.names->lookup("db", ip("172.18.0.2"));
  ASSERT_TRUE(linked);
  EXPECT_EQ(linked->v4, bravo->v4);
  EXPECT_FALSE(n.names->lookup("db", ip("172.18.0.3")));
  EXPECT_FALSE(n.names->lookup("db"));
}

TEST(Dns, AaaaAnswersCarryIpv6Addresses) {
  dns::NameLookup both = [](const std::string& name, std::uint32_t) -> std::optional<dns::Addresses> {
    if (name == "web") return dns::Addresses{{ip("172.18.0.2")}, {ipv6_bytes(*parse_ipv6("fd00::2"))}};
    return std::nullopt;
  };
  auto aaaa = dns::answer(dns::build_query(3, "web", dns::kTypeAAAA), both);
  ASSERT_EQ(aaaa.action, dns::Verdict::Action::Reply);
  auto reply = dns::parse_reply(aaaa.reply);
  ASSERT_TRUE(reply);
  EXPECT_TRUE(reply->a.empty());
  ASSERT_EQ(reply->aaaa.size(), 1u);
  EXPECT_EQ(reply->aaaa[0], ipv6_bytes(*parse_ipv6("fd00::2")));
  auto a = dns::parse_reply(dns::answer(dns::build_query(4, "web", dns::kTypeA), both).reply);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->a, std::vector<std::uint32_t>{ip("172.18.0.2")});
  EXPECT_TRUE(a->aaaa.empty());
}

TEST(Mac, DerivedFromAddressLikeDocker) {
  EXPECT_EQ(mac_for(ip("172.17.0.2")), "02:42:ac:11:00:02");
  EXPECT_EQ(mac_for(ip("192.168.16.255")), "02:42:c0:a8:10:ff");
}

TEST(Dns, QueryRoundTripAndAnswer) {
  std::string q = dns::build_query(0x1234, "Web.MyNet.", dns::kTypeA);
  auto parsed = dns::parse_query(q);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->id, 0x1234);
  EXPECT_EQ(parsed->name, "web.mynet");
  EXPECT_EQ(parsed->type, dns::kTypeA);
  EXPECT_EQ(parsed->klass, 1);
  EXPECT_EQ(parsed->question_end, q.size());
  std::string r = dns::build_response(q, *parsed, dns::kNoError,
                                      {ip("172.18.0.2"), ip("172.18.0.3")});
  auto reply = dns::parse_reply(r);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->id, 0x1234);
  EXPECT_EQ(reply->rcode, dns::kNoError);
  ASSERT_EQ(reply->a.size(), 2u);
  EXPECT_EQ(format_ipv4(reply->a[0]), "172.18.0.2");
  EXPECT_EQ(format_ipv4(reply->a[1]), "172.18.0.3");
  // Recursion desired is echoed; the response flag is set.
  EXPECT_EQ(static_cast<unsigned char>(r[2]) & 0x81, 0x81);
}

TEST(Dns, RejectsMalformedMessages) {
  EXPECT_FALSE(dns::parse_query(""));
  EXPECT_FALSE(dns::parse_query(std::string(11, '\0')));
  std::string q = dns::build_query(1, "a.b", dns::kTypeA);
  EXPECT_FALSE(dns::parse_query(q.substr(0, q.size() - 3)));  // truncated question
  std::string loop = q.substr(0, 12) + std::string("\xc0\x0c", 2) + std::string(4, '\0');
  EXPECT_FALSE(dns::parse_query(loop));  // a pointer to itself
  std::string response = q;
  response[2] = static_cast<char>(response[2] | 0x80);
  EXPECT_FALSE(dns::parse_query(response));
}

TEST(Dns, ResolvConfNameservers) {
  EXPECT_EQ(resolv_nameservers("# x\nnameserver 10.0.2.3\nsearch lan\nnameserver  1.1.1.1 \n"),
            (std::vector<std::string>{"10.0.2.3", "1.1.1.1"}));
}

dns::NameLookup web_only() {
  return [](const std::string& name, std::uint32_t) -> std::optional<dns::Addresses> {
    if (name == "web") return dns::Addresses{{ip("172.18.0.2")}, {}};
    return std::nullopt;
  };
}

TEST(Dns, AnswerIsDecidedWithoutNetworking) {
  auto a = dns::answer(dns::build_query(7, "WEB", dns::kTypeA), web_only());
  ASSERT_EQ(a.action, dns::Verdict::Action::Reply);
  auto reply = dns::parse_reply(a.reply);
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->a.size(), 1u);
  EXPECT_EQ(format_ipv4(reply->a[0]), "172.18.0.2");
  // Known here without IPv6: an empty answer for AAAA, not a forward.
  auto aaaa = dns::answer(dns::build_query(8, "web", dns::kTypeAAAA), web_only());
  ASSERT_EQ(aaaa.action, dns::Verdict::Action::Reply);
  EXPECT_EQ(dns::parse_reply(aaaa.reply)->rcode, dns::kNoError);
  EXPECT_TRUE(dns::parse_reply(aaaa.reply)->a.empty());
  // Unknown: forwarded, with SERVFAIL ready for when no upstream answers.
  std::string other = dns::build_query(9, "example.org", dns::kTypeA);
  auto fwd = dns::answer(other, web_only());
  ASSERT_EQ(fwd.action, dns::Verdict::Action::Forward);
  EXPECT_EQ(dns::parse_reply(fwd.reply)->rcode, dns::kServFail);
  EXPECT_TRUE(dns::answers(other, fwd.reply));
  // Garbage and responses get nothing.
  EXPECT_EQ(dns::answer("junk", web_only()).action, dns::Verdict::Action::Ignore);
  EXPECT_EQ(dns::answer(a.reply, web_only()).action, dns::Verdict::Action::Ignore);
}

TEST(Dns, UpstreamReplyMustMatchIdAndQuestion) {
  std::string q = dns::build_query(0x4242, "example.org", dns::kTypeA);
  auto parsed = *dns::parse_query(q);
  EXPECT_TRUE(dns::answers(q, dns::build_response(q, parsed, dns::kNoError, {ip("1.2.3.4")})));
  std::string other_id = dns::build_query(0x4243, "example.org", dns::kTypeA);
  EXPECT_FALSE(dns::answers(
      q, dns::build_response(other_id, *dns::parse_query(other_id), dns::kNoError, {})));
  std::string other_name = dns::build_query(0x4242, "example.net", dns::kTypeA);
  EXPECT_FALSE(dns::answers(
      q, dns::build_response(other_name, *dns::parse_query(other_name), dns::kNoError, {})));
  EXPECT_FALSE(dns::answers(q, q));  // a query is no reply
  EXPECT_FALSE(dns::answers(q, q.substr(0, 11)));
}

TEST(Dns, TcpFramingSplitsAndJoinsMessages) {
  std::string a = dns::build_query(1, "a", dns::kTypeA), b = dns::build_query(2, "bb", dns::kTypeA);
  std::string stream = dns::frame(a) + dns::frame(b);
  EXPECT_EQ(static_cast<unsigned char>(stream[1]), a.size());
  std::string partial = stream.substr(0, 1);
  EXPECT_FALSE(dns::unframe(partial));
  partial = stream.substr(0, a.size() + 1);  // one byte short
  EXPECT_FALSE(dns::unframe(partial));
  EXPECT_EQ(partial.size(), a.size() + 1);  // untouched while incomplete
  EXPECT_EQ(dns::unframe(stream), a);
  EXPECT_EQ(dns::unframe(stream), b);
  EXPECT_TRUE(stream.empty());
  std::string empty_msg("\0\0", 2);
  EXPECT_EQ(dns::unframe(empty_msg), "");
}

TEST(Iptables, ArgvAndRules) {
  Iptables ipt("iptables", [](const std::vector<std::string>&, const std::string&) { return ProcessResult{}; });
  Rule r{"nat", "BERTH", {"-p", "tcp", "-j", "DNAT"}};
  EXPECT_EQ(ipt.argv("-A", r), (std::vector<std::string>{"iptables", "--wait", "-t", "nat", "-A",
                                                          "BERTH", "-p", "tcp", "-j", "DNAT"}));
  auto ports = port_rules({"tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "berth0"});
  ASSERT_EQ(ports.size(), 3u);
  EXPECT_EQ(ports[0].chain, kNatChain);
  EXPECT_EQ(ports[0].args,
            (std::vector<std::string>{"-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "DNAT",
                                      "--to-destination", "172.17.0.2:80"}));
  // Forwarded only when this DNAT made the connection.
  EXPECT_EQ(ports[2].table, "filter");
  EXPECT_EQ(ports[2].args,
            (std::vector<std::string>{"-d", "172.17.0.2/32", "!", "-i", "berth0", "-o", "berth0",
                                      "-p", "tcp", "-m", "tcp", "--dport", "80", "-m",
                                      "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"}));
  // Published on loopback: DNAT from nat OUTPUT only, and nothing forwarded.
  auto bound = port_rules({"udp", "127.0.0.1", 53, "172.17.0.2", 5353, "berth0"});
  ASSERT_EQ(bound.size(), 2u);
  EXPECT_EQ(bound[0].chain, kLoopbackChain);
  EXPECT_EQ(bound[0].args[0], "-d");
  EXPECT_EQ(bound[0].args[1], "127.0.0.1/32");
  for (const Rule& b : bound) EXPECT_NE(b.table, "filter");
  auto legacy = legacy_port_rules({"udp", "127.0.0.1", 53, "172.17.0.2", 5353, "berth0"});
  ASSERT_EQ(legacy.size(), 2u);
  EXPECT_EQ(legacy[1].chain, kNatChain);
  EXPECT_EQ(legacy[1].args, bound[0].args);
  auto bridge = bridge_rules({"br-abc", "172.18.0.0/16", false});
  bool masquerade = false, isolation = false;
  for (const Rule& b : bridge) {
    masquerade = masquerade || (b.chain == kPostroutingChain && b.args ==
                                std::vector<std::string>{"-s", "172.18.0.0/16", "!", "-o", "br-abc",
                                                         "-j", "MASQUERADE"});
    isolation = isolation || (b.chain == kIsolation2 &&
                              b.args == std::vector<std::string>{"-o", "br-abc", "-j", "DROP"});
  }
  EXPECT_TRUE(masquerade);
  EXPECT_TRUE(isolation);
  // The bridge's last FORWARD rule drops what nothing above accepted.
  EXPECT_EQ(bridge.back(), (Rule{"filter", "FORWARD", {"-o", "br-abc", "-j", "DROP"}}));
  for (const Rule& b : bridge_rules({"br-int", "10.0.0.0/24", true}))
    EXPECT_NE(b.args.back(), "MASQUERADE");  // internal networks never leave
  // Nothing for 127/8 comes in from anywhere but lo.
  auto base = base_rules();
  Rule guard{"raw", "PREROUTING", {"-d", "127.0.0.0/8", "!", "-i", "lo", "-j", "DROP"}, true};
  EXPECT_NE(std::find(base.begin(), base.end(), guard), base.end());
}

TEST(Iptables, SetsPolicy) {
  std::vector<std::string> seen;
  Iptables ipt("iptables", [&](const std::vector<std::string>& argv, const std::string&) {
    seen = argv;
    return ProcessResult{0, "", ""};
  });
  ipt.set_policy("filter", "FORWARD", kForwardPolicy);
  EXPECT_EQ(seen, (std::vector<std::string>{"iptables", "--wait", "-t", "filter", "-P", "FORWARD",
                                            "DROP"}));
}

TEST(Iptables, EnsureChecksBeforeAppendingAndRemoveDeletesEveryCopy) {
  std::vector<std::vector<std::string>> calls;
  int copies = 0;
  Iptables ipt("iptables", [&](const std::vector<std::string>& argv, const std::string&) {
    calls.push_back(argv);
    ProcessResult r;
    const std::string& op = argv[4];
    if (op == "-C") r.exit_code = copies > 0 ? 0 : 1;
    if (op == "-A" || op == "-I") ++copies, r.exit_code = 0;
    if (op == "-D") --copies, r.exit_code = 0;
    return r;
  });
  Rule r{"filter", "FORWARD", {"-j", "BERTH-ISOLATION-1"}, true};
  ipt.ensure(r);
  ipt.ensure(r);
  EXPECT_EQ(copies, 1);
  ASSERT_EQ(calls.size(), 3u);  // -C, -I, -C
  EXPECT_EQ(calls[1][4], "-I");
  copies = 3;
  ipt.remove(r);
  EXPECT_EQ(copies, 0);
}

// A fresh machine: one iptables-save, then every missing chain and rule in one
// iptables-restore --noflush; after that, rules iptables-save prints as we
// write them cost no fork at all, and the others are asked with -C.
TEST(Iptables, EnsureAllBatchesWhatIsMissing) {
  std::vector<std::vector<std::string>> calls;
  std::vector<std::string> scripts;
  std::string saved = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";
  bool restore_fails = false;
  Iptables ipt("iptables", [&](const std::vector<std::string>& argv, const std::string& input) {
    calls.push_back(argv);
    ProcessResult r;
    r.exit_code = 0;
    if (argv[0] == "iptables-save") r.out = saved;
    if (argv[0] == "iptables-restore") {
      scripts.push_back(input);
      r.exit_code = restore_fails ? 2 : 0;
    }
    if (argv.size() > 4 && argv[4] == "-C") r.exit_code = 1;
    return r;
  });
  ipt.ensure_chains({{"filter", "BERTH-ISOLATION-1"}, {"filter", "FORWARD"}, {"nat", "BERTH-POSTROUTING"}});
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1], (std::vector<std::string>{"iptables-restore", "--wait", "--noflush"}));
  EXPECT_EQ(scripts.back(), "*filter\n:BERTH-ISOLATION-1 - [0:0]\nCOMMIT\n*nat\n:BERTH-POSTROUTING - [0:0]\nCOMMIT\n");

  calls.clear();
  std::vector<Rule> rules = {{"filter", "FORWARD", {"-j", "BERTH-ISOLATION-1"}, true},
                             {"filter", "FORWARD", {"-m", "comment", "--comment", "two words", "-j", "ACCEPT"}},
                             {"filter", "FORWARD", {"-j", "BERTH-ISOLATION-1"}, true},
                             {"nat", "POSTROUTING", {"-j", "BERTH-POSTROUTING"}}};
  ipt.ensure_all(rules);
  ASSERT_EQ(calls.size(), 2u);  // save, restore: no -C for chains with no rules
  EXPECT_EQ(scripts.back(),
            "*filter\n-I FORWARD -j BERTH-ISOLATION-1\n-A FORWARD -m comment --comment \"two words\" -j ACCEPT\nCOMMIT\n"
            "*nat\n-A POSTROUTING -j BERTH-POSTROUTING\nCOMMIT\n");

  // Now FORWARD has rules: the ones iptables-save prints as we write them are
  // there; one it prints otherwise ("-p tcp -m tcp --dport") is asked with -C.
  saved = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j BERTH-ISOLATION-1\n"
          "-A FORWARD -m comment --comment \"two words\" -j ACCEPT\n-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";
  calls.clear();
  Rule web{"filter", "FORWARD", {"-p", "tcp", "--dport", "80", "-j", "ACCEPT"}};
  ipt.ensure_all({rules[0], rules[1], web});
  ASSERT_EQ(calls.size(), 3u);  // save, -C (this fake says no), restore
  EXPECT_EQ(calls[1], ipt.argv("-C", web));
  EXPECT_EQ(scripts.back(), "*filter\n-A FORWARD -p tcp --dport 80 -j ACCEPT\nCOMMIT\n");

  // A failed restore: each rule again, one by one (-C, then -A), each with its own error.
  restore_fails = true;
  calls.clear();
  ipt.ensure_all({rules[3], {"nat", "POSTROUTING", {"-j", "MASQUERADE"}}});
  std::vector<std::string> ops;
  for (const auto& c : calls) ops.push_back(c.size() > 4 ? c[4] : c[0]);
  EXPECT_EQ(ops, (std::vector<std::string>{"iptables-save", "iptables-restore", "-C", "-A", "-C", "-A"}));
}

TEST(Filters, ParsesBothShapesAndRefusesUnknownKeys) {
  auto f = parse_filters(R"({"name":{"a":true,"b":false},"label":["x=y"]})", {"name", "label"});
  EXPECT_EQ(f["name"], std::vector<std::string>{"a"});
  EXPECT_EQ(f["label"], std::vector<std::string>{"x=y"});
  EXPECT_THROW(parse_filters(R"({"nope":["1"]})", {"name"}), api::HttpError);
  EXPECT_THROW(parse_filters("{", {"name"}), api::HttpError);
  EXPECT_TRUE(label_matches({{"x", "y"}}, "x"));
  EXPECT_TRUE(label_matches({{"x", "y"}}, "x=y"));
  EXPECT_FALSE(label_matches({{"x", "y"}}, "x=z"));
}

}  // namespace
}  // namespace berth::agent::network
