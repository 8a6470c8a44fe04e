// The /networks API with a real NetworkManager inside a private network
// namespace, and fake runtime hooks.
#include <gtest/gtest.h>

#include "agent/api/api.h"
#include "agent/network/netlink.h"
#include "agent/network/network_manager.h"
#include "agent/network/network_routes.h"
#include "netns_harness.h"
#include "test_util.h"
#include "tests/spec/engine_spec.h"

namespace berth::agent::network {
namespace {

using agent::testing::call;
using agent::testing::json_of;
using agent::testing::Outcome;
using agent::testing::TempDir;
namespace fs = std::filesystem;

TEST(NetworkApi, CreateListInspectConnectRemovePrune) {
  TempDir dir;
  std::string message;
  Outcome outcome = agent::testing::run_in_private_netns(
      [&] {
        fs::create_directories(dir.path / "run");
        NET_CHECK(::mount("tmpfs", (dir.path / "run").c_str(), "tmpfs", 0, "size=1m") == 0);
        NetworkSettings settings;
        settings.netns_dir = dir.path / "run" / "netns";
        settings.host_resolv_conf = dir.path / "resolv.conf";
        NetworkManager nm(dir.path / "state", settings);
        nm.init();
        api::Router router;
        api::add_network_routes(router, nm);
        api::Api api(std::move(router));

        // Connect needs the runtime: fake one running and one stopped container.
        const std::string run_id(64, 'a'), stop_id(64, 'b');
        fs::path sandbox = nm.create_sandbox(run_id);
        std::vector<std::string> attached, detached;
        std::optional<Endpoint> last_endpoint;
        ContainerHooks hooks;
        hooks.resolve = [&](const std::string& q) -> std::optional<ContainerInfo> {
          if (q == "web" || q == run_id) return ContainerInfo{run_id, "web", sandbox, true, "bridge"};
          if (q == "old") return ContainerInfo{stop_id, "old", "", false, "bridge"};
          if (q == "hostc") return ContainerInfo{std::string(64, 'c'), "hostc", "", true, "host"};
          return std::nullopt;
        };
        hooks.attached = [&](const std::string& id, const std::string& net, const EndpointRequest&,
                             const std::optional<Endpoint>& ep) {
          attached.push_back(id + "@" + net);
          last_endpoint = ep;
        };
        hooks.detached = [&](const std::string& id, const std::string& net) {
          detached.push_back(id + "@" + net);
        };
        nm.set_container_hooks(hooks);

        auto r = call(api, "POST", "/v1.47/networks/create",
                      R"({"Name":"app","Driver":"bridge","Labels":{"team":"x"},)"
                      R"("IPAM":{"Driver":"default","Config":[{"Subnet":"10.77.0.0/24","Gateway":"10.77.0.254"}]}})");
        NET_CHECK(r.status == 201u);
        const std::string id = json_of(r)["Id"];
        NET_CHECK(id.size() == 64u);
        NET_CHECK(json_of(r)["Warning"] == "");
        r = call(api, "POST", "/networks/create", R"({"Name":"app"})");
        NET_CHECK(r.status == 409u);
        NET_CHECK(json_of(r)["message"] == "network with name app already exists");
        // Not a cluster member: overlay networks say what they need.
        r = call(api, "POST", "/networks/create", R"({"Name":"o","Driver":"overlay"})");
        NET_CHECK(r.status == 400u);
        NET_CHECK(json_of(r)["message"] ==
                  "overlay networks need a berth cluster: make the machine with berth create --cluster NAME");
        NET_CHECK(call(api, "POST", "/networks/create", R"({"Name":"o","Driver":"macvlan"})").status == 404u);
        NET_CHECK(call(api, "POST", "/networks/create", R"({"Name":"h","Driver":"host"})").status == 403u);
        NET_CHECK(call(api, "POST", "/networks/create", R"({"Name":)").status == 400u);
        NET_CHECK(call(api, "POST", "/networks/create", R"({"Name":"spare","Internal":true})").status == 201u);

        auto names = [&](const std::string& filters) {
          auto res = call(api, "GET", "/networks?filters=" + filters);
          NET_CHECK(res.status == 200u);
          std::vector<std::string> out;
          auto j = json_of(res);
          for (auto& n : j) out.push_back(n["Name"]);
          std::sort(out.begin(), out.end());
          return out;
        };
        using V = std::vector<std::string>;
        NET_CHECK((names("") == V{"app", "bridge", "host", "none", "spare"}));
        NET_CHECK((names(R"({"type":{"custom":true}})") == V{"app", "spare"}));
        NET_CHECK((names(R"({"type":["builtin"]})") == V{"bridge", "host", "none"}));
        NET_CHECK((names(R"({"label":["team=x"]})") == V{"app"}));
        NET_CHECK((names(R"({"driver":["null"]})") == V{"none"}));
        NET_CHECK((names(R"({"id":[")" + id.substr(0, 10) + R"("]})") == V{"app"}));
        NET_CHECK(call(api, "GET", R"(/networks?filters={"bogus":["1"]})").status == 400u);

        auto inspect = json_of(call(api, "GET", "/networks/app"));
        NET_CHECK(inspect["Id"] == id);
        NET_CHECK(inspect["Driver"] == "bridge");
        NET_CHECK(inspect["Scope"] == "local");
        NET_CHECK(inspect["IPAM"]["Config"][0]["Gateway"] == "10.77.0.254");
        NET_CHECK(inspect["Labels"]["team"] == "x");
        NET_CHECK(inspect["Containers"].empty());
        NET_CHECK(berth::testing::unknown_spec_fields(inspect, "Network").empty());
        NET_CHECK(berth::testing::unknown_spec_fields(inspect["IPAM"], "IPAM").empty());
        auto missing = call(api, "GET", "/networks/nope");
        NET_CHECK(missing.status == 404u);
        NET_CHECK(json_of(missing)["message"] == "network nope not found");

        // Connect a running container: a live endpoint, recorded by the runtime.
        r = call(api, "POST", "/networks/app/connect",
                 R"({"Container":"web","EndpointConfig":{"Aliases":["w"],"IPAMConfig":{"IPv4Address":"10.77.0.9"}}})");
        NET_CHECK(r.status == 200u);
        NET_CHECK(attached == V{run_id + "@app"});
        NET_CHECK(last_endpoint && last_endpoint->ip == "10.77.0.9");
        NET_CHECK(last_endpoint->gateway == "10.77.0.254");
        inspect = json_of(call(api, "GET", "/networks/" + id.substr(0, 12)));
        NET_CHECK(inspect["Containers"][run_id]["IPv4Address"] == "10.77.0.9/24");
        NET_CHECK(inspect["Containers"][run_id]["MacAddress"] == "02:42:0a:4d:00:09");
        r = call(api, "POST", "/networks/app/connect", R"({"Container":"web"})");
        NET_CHECK(r.status == 403u);
        NET_CHECK(json_of(r)["message"] == "endpoint with name web already exists in network app");
        // A stopped container: only its config changes.
        NET_CHECK(call(api, "POST", "/networks/app/connect", R"({"Container":"old"})").status == 200u);
        NET_CHECK(!last_endpoint);
        NET_CHECK(call(api, "POST", "/networks/app/connect", R"({"Container":"ghost"})").status == 404u);
        NET_CHECK(call(api, "POST", "/networks/app/connect", R"({"Container":"hostc"})").status == 400u);
        NET_CHECK(call(api, "POST", "/networks/host/connect", R"({"Container":"web"})").status == 400u);

        r = call(api, "DELETE", "/networks/app");
        NET_CHECK(r.status == 403u);
        NET_CHECK(json_of(r)["message"] == "error while removing network: network app id " + id +
                                               " has active endpoints");
        r = call(api, "DELETE", "/networks/bridge");
        NET_CHECK(r.status == 403u);
        NET_CHECK(json_of(r)["message"] == "bridge is a pre-defined network and cannot be removed");

        NET_CHECK(call(api, "POST", "/networks/app/disconnect", R"({"Container":"web"})").status == 200u);
        NET_CHECK(detached == V{run_id + "@app"});
        NET_CHECK(json_of(call(api, "GET", "/networks/app"))["Containers"].empty());
        NET_CHECK(call(api, "POST", "/networks/app/disconnect", R"({"Container":"web"})").status == 403u);

        // Prune: every unused user network; the predefined stay.
        r = call(api, "POST", "/networks/prune");
        NET_CHECK(r.status == 200u);
        auto pruned = json_of(r)["NetworksDeleted"];
        std::vector<std::string> gone(pruned.begin(), pruned.end());
        std::sort(gone.begin(), gone.end());
        NET_CHECK((gone == V{"app", "spare"}));
        NET_CHECK((names("") == V{"bridge", "host", "none"}));
        netlink::Socket s;
        NET_CHECK(netlink::link_index(s, "br-" + id.substr(0, 12)) == 0);
        NET_CHECK(call(api, "DELETE", "/networks/app").status == 404u);
      },
      message);
  if (outcome == Outcome::Unsupported) GTEST_SKIP() << message;
  EXPECT_EQ(outcome, Outcome::Passed) << message;
}

}  // namespace
}  // namespace berth::agent::network
