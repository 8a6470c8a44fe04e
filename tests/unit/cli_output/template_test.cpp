#include "cli/output/template.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace berth::cli {
namespace {

using nlohmann::json;

const json kData = json::parse(R"({
  "Name": "dev", "Port": 2376, "Ratio": 1.5, "Whole": 3.0, "On": true, "Off": false, "Nothing": null,
  "Driver": {"Name": "generic", "IP": "192.0.2.7"},
  "Labels": ["a=1", "b"], "Empty": [],
  "Map": {"key": "value", "other key": 7},
  "Mixed": "MiXeD case"
})");

std::string render(const std::string& t, const json& data = kData) { return Template::parse(t).render(data); }

TEST(Template, FieldsAndLiteralText) {
  EXPECT_EQ(render("name={{.Name}} port={{.Port}}"), "name=dev port=2376");
  EXPECT_EQ(render("{{ .Name }}"), "dev");
  EXPECT_EQ(render("{{.Driver.IP}}"), "192.0.2.7");
  EXPECT_EQ(render("plain text"), "plain text");
  EXPECT_EQ(render(""), "");
}

TEST(Template, ValuesPrintLikeGo) {
  EXPECT_EQ(render("{{.On}} {{.Off}}"), "true false");
  EXPECT_EQ(render("{{.Ratio}} {{.Whole}}"), "1.5 3");
  EXPECT_EQ(render("{{.Nothing}}"), "<no value>");
  EXPECT_EQ(render("{{.Labels}}"), "[a=1 b]");
  EXPECT_EQ(render("{{.Empty}}"), "[]");
  EXPECT_EQ(render("{{.Map}}"), "map[key:value other key:7]");
}

TEST(Template, MissingFieldsHaveNoValue) {
  EXPECT_EQ(render("{{.Missing}}"), "<no value>");
  EXPECT_EQ(render("{{.Missing.Deeper}}"), "<no value>");
  EXPECT_EQ(render("{{.Driver.Missing}}"), "<no value>");
}

TEST(Template, FieldOfAScalarIsAnError) {
  try {
    render("{{.Name.X}}");
    FAIL() << "no exception";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("{{.Name.X}}"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("field X"), std::string::npos) << e.what();
  }
}

TEST(Template, StrictMissingFieldNamesTheFieldsThereAre) {
  try {
    Template::parse("{{.Driver.Nope}}").render(kData, Template::Missing::Fail);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 1);
    EXPECT_NE(std::string(e.what()).find("no field Nope; the fields are: IP, Name"), std::string::npos) << e.what();
  }
  EXPECT_EQ(Template::parse("{{.Nothing}}").render(kData, Template::Missing::Fail), "<no value>");
}

TEST(Template, IfElseWithRange) {
  EXPECT_EQ(render("{{if .On}}yes{{end}}"), "yes");
  EXPECT_EQ(render("{{if .Off}}yes{{else}}no{{end}}"), "no");
  EXPECT_EQ(render("{{if .Off}}a{{else if .Empty}}b{{else if .Name}}c{{else}}d{{end}}"), "c");
  EXPECT_EQ(render("{{if .Nothing}}a{{else if .Missing}}b{{end}}."), ".");
  EXPECT_EQ(render("{{if 0}}a{{else}}{{if \"\"}}b{{else}}c{{end}}{{end}}"), "c");
  EXPECT_EQ(render("{{with .Driver}}{{.Name}}@{{.IP}}{{end}}"), "generic@192.0.2.7");
  EXPECT_EQ(render("{{with .Empty}}x{{else}}empty {{.Name}}{{end}}"), "empty dev");
  EXPECT_EQ(render("{{with .Off}}x{{else with .Name}}{{.}}{{end}}"), "dev");
  EXPECT_EQ(render("{{range .Labels}}<{{.}}>{{end}}"), "<a=1><b>");
  EXPECT_EQ(render("{{range .Empty}}x{{else}}none{{end}}"), "none");
  EXPECT_EQ(render("{{range .Map}}{{.}};{{end}}"), "value;7;");
  EXPECT_EQ(render("{{range .Labels}}{{$.Name}}:{{.}} {{end}}"), "dev:a=1 dev:b ");
  EXPECT_EQ(render("{{range .Labels -}} {{.}} {{- end}}"), "a=1b");
  EXPECT_THROW(render("{{range .Name}}x{{end}}"), UsageError);
}

TEST(Template, BlockErrorsAreParseErrors) {
  for (const char* bad : {"{{if .On}}x", "{{end}}", "{{else}}", "{{if .On}}{{else}}{{else}}{{end}}", "{{if}}{{end}}",
                          "{{range $i, $e := .Labels}}{{end}}"}) {
    try {
      Template::parse(bad);
      ADD_FAILURE() << bad << ": no exception";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("invalid template"), std::string::npos) << e.what();
    }
  }
}

TEST(Template, JsonFunction) {
  EXPECT_EQ(json::parse(render("{{json .}}")), kData);
  EXPECT_EQ(render("{{json .Driver}}"), R"({"IP":"192.0.2.7","Name":"generic"})");
  EXPECT_EQ(render("{{json .Name}}"), R"("dev")");
  EXPECT_EQ(render("{{json .Labels}}"), R"(["a=1","b"])");
  EXPECT_EQ(render("{{json .Missing}}"), "null");
  EXPECT_EQ(render("{{json .X}}", json{{"X", "<&>"}}), R"("<&>")");  // no HTML escaping, like docker
}

TEST(Template, StringFunctions) {
  EXPECT_EQ(render("{{upper .Mixed}}"), "MIXED CASE");
  EXPECT_EQ(render("{{lower .Mixed}}"), "mixed case");
  EXPECT_EQ(render("{{title .Name}}"), "Dev");
  EXPECT_EQ(render("{{truncate .Mixed 3}}"), "MiX");
  EXPECT_EQ(render("{{.Name | upper}}"), "DEV");
  EXPECT_EQ(render("{{split .Driver.IP \".\"}}"), "[192 0 2 7]");
  EXPECT_EQ(render("{{println .Name}}"), "dev\n");
}

TEST(Template, JoinAndIndex) {
  EXPECT_EQ(render("{{join .Labels \",\"}}"), "a=1,b");
  EXPECT_EQ(render("{{join .Empty \",\"}}"), "");
  EXPECT_EQ(render("{{index .Map \"key\"}}"), "value");
  EXPECT_EQ(render("{{index .Map \"other key\"}}"), "7");
  EXPECT_EQ(render("{{index .Map \"nope\"}}"), "<no value>");
  EXPECT_EQ(render("{{index .Labels 1}}"), "b");
  EXPECT_EQ(render("{{index . \"Driver\" \"Name\"}}"), "generic");
  EXPECT_THROW(render("{{index .Labels 5}}"), UsageError);
  EXPECT_THROW(render("{{join .Name \",\"}}"), UsageError);
}

TEST(Template, BackslashEscapesInTheTemplateText) {
  EXPECT_EQ(render("{{.Name}}\\t{{.Port}}\\n"), "dev\t2376\n");
  EXPECT_EQ(render("{{join .Labels \"\\t\"}}"), "a=1\tb");
}

TEST(Template, TrimMarkersAndComments) {
  EXPECT_EQ(render("a   {{- .Name -}}   b"), "adevb");
  EXPECT_EQ(render("a {{/* nothing */}}b"), "a b");
}

TEST(Template, MalformedTemplatesNameTheTemplate) {
  for (const std::string bad : {"{{.Name", "{{}}", "{{nosuch .Name}}", "{{join .Labels}}", "{{upper}}",
                                "{{.Name \"x\"}}", "{{.Name | .Port}}", "{{json .A.}}", "{{index .Map \"k}}",
                                "{{upper .A .B}}", "{{.Name |}}", "{{/* open }}"}) {
    try {
      Template::parse(bad);
      ADD_FAILURE() << "parsed: " << bad;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
      EXPECT_EQ(e.exit_code(), kExitUsage);
    }
  }
}

}  // namespace
}  // namespace berth::cli
