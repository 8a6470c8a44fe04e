#include "cli/output/ls_format.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace berth::cli {
namespace {

std::vector<LsRow> rows() {
  LsRow dev;
  dev.name = "dev";
  dev.active = true;
  dev.driver = "generic";
  dev.state = "Running";
  dev.url = "tcp://192.0.2.7:2376";
  dev.docker = "v28.2.2";
  dev.forwards = "8080,443";
  dev.labels = {"env=dev", "gpu"};
  LsRow prod;
  prod.name = "prod-1";
  prod.driver = "amazonec2";
  prod.state = "Stopped";
  prod.labels = {"env=prod"};
  LsRow broken;
  broken.name = "broken";
  broken.driver = "virtualbox";
  broken.state = "Error";
  broken.error = "VBoxManage not found";
  return {dev, prod, broken};
}

std::vector<std::string> names_matching(const std::vector<std::string>& filters) {
  LsFilter f = LsFilter::parse(filters);
  std::vector<std::string> out;
  for (const auto& r : rows())
    if (f.matches(r)) out.push_back(r.name);
  return out;
}

using Names = std::vector<std::string>;

TEST(LsFilter, NoFilterMatchesAll) { EXPECT_EQ(names_matching({}), (Names{"dev", "prod-1", "broken"})); }

TEST(LsFilter, EachKey) {
  EXPECT_EQ(names_matching({"driver=generic"}), Names{"dev"});
  EXPECT_EQ(names_matching({"driver=GENERIC"}), Names{"dev"});
  EXPECT_EQ(names_matching({"state=stopped"}), Names{"prod-1"});
  EXPECT_EQ(names_matching({"state=Running"}), Names{"dev"});
  EXPECT_EQ(names_matching({"name=^prod"}), Names{"prod-1"});
  EXPECT_EQ(names_matching({"name=o"}), (Names{"prod-1", "broken"}));  // searched, not anchored
  EXPECT_EQ(names_matching({"name=^(dev|broken)$"}), (Names{"dev", "broken"}));
  EXPECT_EQ(names_matching({"label=env=prod"}), Names{"prod-1"});
  EXPECT_EQ(names_matching({"label=env"}), (Names{"dev", "prod-1"}));
  EXPECT_EQ(names_matching({"label=gpu"}), Names{"dev"});
  EXPECT_EQ(names_matching({"label=en"}), Names{});
}

TEST(LsFilter, SameKeyIsOrDifferentKeysAreAnd) {
  EXPECT_EQ(names_matching({"driver=generic", "driver=virtualbox"}), (Names{"dev", "broken"}));
  EXPECT_EQ(names_matching({"driver=generic", "driver=virtualbox", "state=error"}), Names{"broken"});
  EXPECT_EQ(names_matching({"label=env=dev", "label=env=prod", "name=^p"}), Names{"prod-1"});
  EXPECT_EQ(names_matching({"driver=generic", "state=stopped"}), Names{});
}

TEST(LsFilter, BadFiltersAreUsageErrors) {
  for (const std::string bad : {"colour=red", "driver", "driver=", "name=(", "=x", "swarm=master"}) {
    try {
      LsFilter::parse({bad});
      ADD_FAILURE() << "accepted " << bad;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

TEST(FormatLs, DefaultTable) {
  const std::string want =
      "NAME     ACTIVE   DRIVER       STATE     URL                    DOCKER    FORWARDS   ERRORS\n"
      "dev      *        generic      Running   tcp://192.0.2.7:2376   v28.2.2   8080,443\n"
      "prod-1   -        amazonec2    Stopped\n"
      "broken   -        virtualbox   Error                                                 VBoxManage not found\n";
  EXPECT_EQ(format_ls(rows(), "", false), want);
  EXPECT_EQ(format_ls(rows(), "table", false), want);
  EXPECT_EQ(format_ls({}, "", false), "NAME   ACTIVE   DRIVER   STATE   URL   DOCKER   FORWARDS   ERRORS\n");
}

TEST(FormatLs, QuietPrintsNamesWhateverTheFormat) {
  EXPECT_EQ(format_ls(rows(), "", true), "dev\nprod-1\nbroken\n");
  EXPECT_EQ(format_ls(rows(), "json", true), "dev\nprod-1\nbroken\n");
}

TEST(FormatLs, JsonOneObjectALine) {
  const std::string out = format_ls(rows(), "json", false);
  std::vector<nlohmann::json> objs;
  size_t start = 0;
  for (size_t pos; (pos = out.find('\n', start)) != std::string::npos; start = pos + 1)
    objs.push_back(nlohmann::json::parse(out.substr(start, pos - start)));
  EXPECT_EQ(start, out.size());
  ASSERT_EQ(objs.size(), 3u);
  EXPECT_EQ(objs[0]["Name"], "dev");
  EXPECT_EQ(objs[0]["Active"], true);
  EXPECT_EQ(objs[0]["DriverName"], "generic");
  EXPECT_EQ(objs[0]["State"], "Running");
  EXPECT_EQ(objs[0]["URL"], "tcp://192.0.2.7:2376");
  EXPECT_EQ(objs[0]["DockerVersion"], "v28.2.2");
  EXPECT_EQ(objs[0]["Labels"], (nlohmann::json{"env=dev", "gpu"}));
  EXPECT_EQ(objs[0]["Forwards"], "8080,443");
  EXPECT_EQ(objs[1]["Active"], false);
  EXPECT_EQ(objs[2]["Error"], "VBoxManage not found");
}

TEST(FormatLs, TemplatePerRow) {
  EXPECT_EQ(format_ls(rows(), "{{.Name}}: {{.State}} {{.Active}}", false),
            "dev: Running true\nprod-1: Stopped false\nbroken: Error false\n");
  EXPECT_EQ(format_ls(rows(), "{{.Name}} {{.DriverName}} {{.URL}} {{.DockerVersion}} {{.Error}}", false),
            "dev generic tcp://192.0.2.7:2376 v28.2.2 \n"
            "prod-1 amazonec2   \n"
            "broken virtualbox   VBoxManage not found\n");
  EXPECT_EQ(format_ls(rows(), "{{.Name}} {{join .Labels \",\"}}", false), "dev env=dev,gpu\nprod-1 env=prod\nbroken \n");
}

TEST(FormatLs, TemplateWithMissingFieldFailsNamingTheFields) {
  for (const auto& rs : {rows(), std::vector<LsRow>{}}) {
    try {
      format_ls(rs, "{{.Name}} {{.NoSuchField}}", false);
      FAIL() << "no exception";
    } catch (const UsageError& e) {
      FAIL() << "a usage error: " << e.what();
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_code(), 1);
      const std::string what = e.what();
      EXPECT_NE(what.find("no field NoSuchField"), std::string::npos) << what;
      EXPECT_NE(what.find("DriverName"), std::string::npos) << what;
    }
  }
  EXPECT_THROW(format_ls(rows(), "table {{.Name}}\\t{{.Nope}}", false), Error);
}

TEST(FormatLs, TemplateActions) {
  EXPECT_EQ(format_ls(rows(),
                      "{{.Name}}{{if .Active}} *{{end}}{{range .Labels}} [{{.}}]{{else}} none{{end}}"
                      "{{with .Error}} ({{.}}){{end}}",
                      false),
            "dev * [env=dev] [gpu]\nprod-1 [env=prod]\nbroken none (VBoxManage not found)\n");
}

TEST(FormatLs, TableTemplateDerivesHeaders) {
  EXPECT_EQ(format_ls(rows(), "table {{.Name}}\\t{{.State}}", false),
            "NAME     STATE\n"
            "dev      Running\n"
            "prod-1   Stopped\n"
            "broken   Error\n");
  EXPECT_EQ(format_ls(rows(), "table {{.Name}}\t{{.DriverName}}\t{{.URL}}\t{{.DockerVersion}}\t{{.Error}}\t{{.ActiveHost}}", false),
            "NAME     DRIVER       URL                    DOCKER    ERRORS                 ACTIVE\n"
            "dev      generic      tcp://192.0.2.7:2376   v28.2.2                          *\n"
            "prod-1   amazonec2                                                            -\n"
            "broken   virtualbox                                    VBoxManage not found   -\n");
  EXPECT_EQ(format_ls(rows(), "table {{.Active}}", false), "ACTIVE\ntrue\nfalse\nfalse\n");
  EXPECT_EQ(format_ls(rows(), "table   ", false), format_ls(rows(), "", false));
  EXPECT_EQ(format_ls(rows(), "table {{.Name}}\\t{{join .Labels \",\"}}", false),
            "NAME     LABELS\ndev      env=dev,gpu\nprod-1   env=prod\nbroken\n");
}

TEST(FormatLs, MalformedTemplateIsAUsageError) {
  EXPECT_THROW(format_ls(rows(), "{{.Name", false), UsageError);
  EXPECT_THROW(format_ls(rows(), "table {{.Name", false), UsageError);
}

}  // namespace
}  // namespace berth::cli
