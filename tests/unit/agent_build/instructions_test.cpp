#include "agent/build/instructions.h"

#include <gtest/gtest.h>

#include "agent/build/error.h"
#include "agent/build/text.h"

namespace berth::agent::build {
namespace {

using namespace std::chrono_literals;
using Strings = std::vector<std::string>;

template <class Fn>
std::string error_of(Fn fn, int* line = nullptr) {
  try {
    fn();
  } catch (const BuildError& e) {
    if (line) *line = e.line();
    return e.what();
  }
  return "";
}

std::string load_error(const std::string& text, int* line = nullptr) {
  return error_of([&] { load_dockerfile(text); }, line);
}

// The single instruction of "FROM x\n<text>".
Instruction one(const std::string& text) {
  Dockerfile df = load_dockerfile("FROM x\n" + text + "\n");
  EXPECT_EQ(df.stages.size(), 1u);
  EXPECT_EQ(df.stages.at(0).instructions.size(), 1u);
  return df.stages.at(0).instructions.at(0);
}

TEST(InstructionsTest, SplitsStagesAndMetaArgs) {
  Dockerfile df = load_dockerfile(
      "ARG BASE=alpine\nARG TAG\nFROM --platform=$BUILDPLATFORM ${BASE}:${TAG} AS Build\nRUN make\n"
      "FROM scratch\nCOPY --from=build /out /\n");
  ASSERT_EQ(df.meta_args.size(), 2u);
  EXPECT_EQ(df.meta_args[0].as<ArgInstruction>()->args.at(0).value, "alpine");
  EXPECT_FALSE(df.meta_args[1].as<ArgInstruction>()->args.at(0).value.has_value());
  ASSERT_EQ(df.stages.size(), 2u);
  const Stage& build = df.stages[0];
  EXPECT_EQ(build.name, "build");  // lower-cased
  EXPECT_EQ(build.base, "${BASE}:${TAG}");
  EXPECT_EQ(build.platform, "$BUILDPLATFORM");
  EXPECT_EQ(build.source, "FROM --platform=$BUILDPLATFORM ${BASE}:${TAG} AS Build");
  EXPECT_EQ(build.line, 3);
  ASSERT_EQ(build.instructions.size(), 1u);
  EXPECT_EQ(build.instructions[0].keyword, "RUN");
  EXPECT_EQ(build.instructions[0].line, 4);
  EXPECT_EQ(df.stages[1].name, "");
  EXPECT_EQ(df.stages[1].instructions[0].as<CopyInstruction>()->from, "build");
}

TEST(InstructionsTest, PrintsStepsLikeTheClassicBuilder) {
  Dockerfile df = load_dockerfile("ARG V=1\nfrom busybox\nrun echo $V \\\n  done\nCMD [\"sh\"]\n");
  auto stages = stages_for_target(df, "");
  const int total = step_count(df, stages);
  EXPECT_EQ(total, 4);
  EXPECT_EQ(step_line(1, total, df.meta_args[0].source), "Step 1/4 : ARG V=1");
  EXPECT_EQ(step_line(2, total, stages[0].source), "Step 2/4 : from busybox");
  EXPECT_EQ(step_line(3, total, stages[0].instructions[0].source), "Step 3/4 : run echo $V   done");
  EXPECT_EQ(step_line(4, total, stages[0].instructions[1].source), "Step 4/4 : CMD [\"sh\"]");
}

TEST(InstructionsTest, SelectsStagesUpToTheTarget) {
  Dockerfile df = load_dockerfile("FROM a AS deps\nRUN x\nFROM b AS Test\nRUN y\nFROM c\nRUN z\n");
  EXPECT_EQ(stages_for_target(df, "").size(), 3u);
  auto stages = stages_for_target(df, "TEST");
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(step_count(df, stages), 4);
  EXPECT_EQ(find_stage(stages, "Deps"), &df.stages[0]);
  EXPECT_EQ(find_stage(stages, "nope"), nullptr);
  EXPECT_EQ(error_of([&] { stages_for_target(df, "nope"); }),
            "failed to reach build target nope in Dockerfile");
}

TEST(InstructionsTest, StageNamesMustBeUnique) {
  Dockerfile df = load_dockerfile("FROM a AS one\nFROM b AS ONE\nFROM c AS two\n");
  int line = 0;
  EXPECT_EQ(error_of([&] { stages_for_target(df, ""); }, &line), "one stage name already used");
  EXPECT_EQ(line, 2);
  // Stages after the target are not looked at, as in dockerd.
  Dockerfile later = load_dockerfile("FROM a AS one\nFROM b AS two\nFROM c AS two\n");
  EXPECT_EQ(stages_for_target(later, "one").size(), 1u);
}

TEST(InstructionsTest, ReportsUnknownInstructionsWithASuggestion) {
  int line = 0;
  EXPECT_EQ(load_error("FROM x\n\nRUNN make\n", &line),
            "dockerfile parse error on line 3: unknown instruction: RUNN (did you mean RUN?)");
  EXPECT_EQ(line, 3);
  EXPECT_EQ(load_error("FROM x\ncopyy a b\n"),
            "dockerfile parse error on line 2: unknown instruction: copyy (did you mean copy?)");
  EXPECT_EQ(load_error("FROM x\nFNORD a\n"),
            "dockerfile parse error on line 2: unknown instruction: FNORD");
}

TEST(InstructionsTest, RequiresAFromBeforeOtherInstructions) {
  int line = 0;
  EXPECT_EQ(load_error("ARG A\nENV B=1\nFROM x\n", &line), "no build stage in current context");
  EXPECT_EQ(line, 2);
}

TEST(InstructionsTest, ValidatesFrom) {
  EXPECT_EQ(load_error("FROM a b\n"),
            "dockerfile parse error on line 1: FROM requires either one or three arguments");
  EXPECT_EQ(load_error("FROM a AS 1st\n"),
            "dockerfile parse error on line 1: invalid name for build stage: \"1st\", name can't "
            "start with a number or contain symbols");
  EXPECT_EQ(load_error("FROM a AS x$y\n"),
            "dockerfile parse error on line 1: invalid name for build stage: \"x$y\", name can't "
            "start with a number or contain symbols");
  EXPECT_EQ(load_error("FROM --plaform=x a\n"),
            "dockerfile parse error on line 1: unknown flag: --plaform (did you mean platform?)");
  EXPECT_EQ(load_dockerfile("FROM a as my-stage_1.0\n").stages[0].name, "my-stage_1.0");
}

TEST(InstructionsTest, RunKeepsShellOrExecFormAndItsFlags) {
  Instruction shell = one(
      "RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t --network=none echo $HOME");
  const auto* run = shell.as<RunInstruction>();
  ASSERT_NE(run, nullptr);
  EXPECT_TRUE(run->command.shell_form);
  EXPECT_EQ(run->command.args, Strings({"echo $HOME"}));
  EXPECT_EQ(run->mounts, Strings({"type=cache,target=/c", "type=tmpfs,target=/t"}));
  EXPECT_EQ(run->network, "none");
  EXPECT_EQ(run->flags_used, Strings({"mount", "network"}));

  const Instruction exec_form = one("RUN [\"/bin/echo\", \"a b\"]");
  const auto* exec = exec_form.as<RunInstruction>();
  EXPECT_FALSE(exec->command.shell_form);
  EXPECT_EQ(exec->command.args, Strings({"/bin/echo", "a b"}));
  EXPECT_TRUE(exec->flags_used.empty());

  EXPECT_EQ(load_error("FROM x\nRUN --mout=type=cache echo\n"),
            "dockerfile parse error on line 2: unknown flag: --mout (did you mean mount?)");
}

TEST(InstructionsTest, CmdEntrypointAndShell) {
  EXPECT_EQ(one("CMD echo hi").as<CmdInstruction>()->command.args, Strings({"echo hi"}));
  EXPECT_TRUE(one("CMD []").as<CmdInstruction>()->command.args.empty());
  auto entry = one("ENTRYPOINT [\"/app\", \"--serve\"]").as<EntrypointInstruction>()->command;
  EXPECT_FALSE(entry.shell_form);
  EXPECT_EQ(entry.args, Strings({"/app", "--serve"}));
  EXPECT_EQ(
      one("SHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]").as<ShellInstruction>()->shell,
      Strings({"/bin/bash", "-eo", "pipefail", "-c"}));
  EXPECT_EQ(load_error("FROM x\nSHELL /bin/bash -c\n"),
            "dockerfile parse error on line 2: SHELL requires the arguments to be in JSON form");
  EXPECT_EQ(load_error("FROM x\nSHELL []\n"),
            "dockerfile parse error on line 2: SHELL requires at least one argument");
  // Flags are only for the instructions that define them.
  EXPECT_EQ(load_error("FROM x\nCMD --verbose run\n"),
            "dockerfile parse error on line 2: unknown flag: --verbose");
}

TEST(InstructionsTest, EnvAndLabelKeepPairsInOrder) {
  auto env = one("ENV A=1 B=\"two words\"").as<EnvInstruction>()->vars;
  ASSERT_EQ(env.size(), 2u);
  EXPECT_EQ(env[0].key, "A");
  EXPECT_EQ(env[1].value, "\"two words\"");  // quotes go at expansion
  auto legacy = one("ENV PATH /usr/local/bin:$PATH").as<EnvInstruction>()->vars;
  EXPECT_EQ(legacy.at(0).value, "/usr/local/bin:$PATH");
  auto labels =
      one("LABEL version=1.0 \"com.example.vendor\"=\"ACME\"").as<LabelInstruction>()->labels;
  EXPECT_EQ(labels.at(1).key, "\"com.example.vendor\"");
  EXPECT_EQ(load_error("FROM x\nENV =x\n"),
            "dockerfile parse error on line 2: ENV names can not be blank");
  EXPECT_EQ(load_error("FROM x\nLABEL\n"),
            "dockerfile parse error on line 2: LABEL requires at least one argument");
}

TEST(InstructionsTest, ArgDeclaresSeveralNames) {
  auto args = one("ARG A B=2 C=").as<ArgInstruction>()->args;
  ASSERT_EQ(args.size(), 3u);
  EXPECT_EQ(args[0].name, "A");
  EXPECT_FALSE(args[0].value);
  EXPECT_EQ(args[1].value, "2");
  EXPECT_EQ(args[2].value, "");
  EXPECT_EQ(load_error("FROM x\nARG =1\n"),
            "dockerfile parse error on line 2: ARG names can not be blank");
  EXPECT_EQ(load_error("FROM x\nARG\n"),
            "dockerfile parse error on line 2: ARG requires at least one argument");
}

TEST(InstructionsTest, SingleArgumentInstructions) {
  EXPECT_EQ(one("WORKDIR /app/$NAME").as<WorkdirInstruction>()->path, "/app/$NAME");
  EXPECT_EQ(one("USER app:app").as<UserInstruction>()->user, "app:app");
  EXPECT_EQ(one("STOPSIGNAL SIGQUIT").as<StopsignalInstruction>()->signal, "SIGQUIT");
  EXPECT_EQ(one("MAINTAINER Jane Doe <jane@example.com>").as<MaintainerInstruction>()->maintainer,
            "Jane Doe <jane@example.com>");
  for (const char* kw : {"WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"}) {
    EXPECT_EQ(
        load_error(std::string("FROM x\n") + kw + "\n"),
        std::string("dockerfile parse error on line 2: ") + kw + " requires exactly one argument");
  }
}

TEST(InstructionsTest, ExposeAndVolume) {
  EXPECT_EQ(one("EXPOSE 8080 53/udp 443").as<ExposeInstruction>()->ports,
            Strings({"443", "53/udp", "8080"}));
  EXPECT_EQ(load_error("FROM x\nEXPOSE\n"),
            "dockerfile parse error on line 2: EXPOSE requires at least one argument");
  EXPECT_EQ(one("VOLUME /data /logs").as<VolumeInstruction>()->paths, Strings({"/data", "/logs"}));
  EXPECT_EQ(one("VOLUME [\"/my data\", \" /x \"]").as<VolumeInstruction>()->paths,
            Strings({"/my data", "/x"}));
  EXPECT_EQ(load_error("FROM x\nVOLUME [\"\"]\n"),
            "dockerfile parse error on line 2: VOLUME specified can not be an empty string");
  EXPECT_EQ(load_error("FROM x\nVOLUME []\n"),
            "dockerfile parse error on line 2: VOLUME requires at least one argument");
}

TEST(InstructionsTest, CopyAndAddSourcesDestAndFlags) {
  auto copy = *one("COPY --from=builder --chown=app:app --chmod=0755 --link a b* /dest/")
                   .as<CopyInstruction>();
  EXPECT_EQ(copy.sources, Strings({"a", "b*"}));
  EXPECT_EQ(copy.dest, "/dest/");
  EXPECT_EQ(copy.from, "builder");
  EXPECT_EQ(copy.chown, "app:app");
  EXPECT_EQ(copy.chmod, "0755");
  EXPECT_TRUE(copy.link);
  auto json = *one("COPY [\"my file\", \"/my dir/\"]").as<CopyInstruction>();
  EXPECT_EQ(json.sources, Strings({"my file"}));
  EXPECT_EQ(json.dest, "/my dir/");

  auto add = *one("ADD --keep-git-dir=true --checksum=sha256:abc --link=false https://x/y.tgz /")
                  .as<AddInstruction>();
  EXPECT_TRUE(add.keep_git_dir);
  EXPECT_FALSE(add.link);
  EXPECT_EQ(add.checksum, "sha256:abc");
  EXPECT_EQ(add.sources, Strings({"https://x/y.tgz"}));

  EXPECT_EQ(
      load_error("FROM x\nCOPY onlyone\n"),
      "dockerfile parse error on line 2: COPY requires at least two arguments, but only one was "
      "provided. Destination could not be determined");
  EXPECT_EQ(load_error("FROM x\nADD --from=x a b\n"),
            "dockerfile parse error on line 2: unknown flag: --from");
}

TEST(InstructionsTest, FlagValuesAreChecked) {
  EXPECT_EQ(load_error("FROM x\nCOPY --from=a --from=b x y\n"),
            "dockerfile parse error on line 2: duplicate flag specified: --from");
  EXPECT_EQ(load_error("FROM x\nCOPY --from x y\n"),
            "dockerfile parse error on line 2: missing a value on flag: --from");
  EXPECT_EQ(load_error("FROM x\nCOPY --link= x y\n"),
            "dockerfile parse error on line 2: missing a value on flag: --link");
  EXPECT_EQ(
      load_error("FROM x\nCOPY --link=maybe x y\n"),
      "dockerfile parse error on line 2: expecting boolean value for flag --link, not: maybe");
  EXPECT_TRUE(one("COPY --link=TRUE x y").as<CopyInstruction>()->link);
}

TEST(InstructionsTest, CopyHeredocsBecomeInlineFiles) {
  Dockerfile df = load_dockerfile(
      "FROM x\nCOPY <<-'SCRIPT' <<CONF /etc/app/\n\t#!/bin/sh\n\techo "
      "$HOME\n\tSCRIPT\nkey=$VALUE\nCONF\n");
  const auto& copy = *df.stages[0].instructions.at(0).as<CopyInstruction>();
  EXPECT_TRUE(copy.sources.empty());
  ASSERT_EQ(copy.inline_sources.size(), 2u);
  EXPECT_EQ(copy.inline_sources[0].name, "SCRIPT");
  EXPECT_EQ(copy.inline_sources[0].content, "#!/bin/sh\necho $HOME\n");
  EXPECT_FALSE(copy.inline_sources[0].expand);
  EXPECT_EQ(copy.inline_sources[1].content, "key=$VALUE\n");
  EXPECT_TRUE(copy.inline_sources[1].expand);
  EXPECT_EQ(load_error("FROM x\nCOPY a <<EOF\nEOF\n"),
            "dockerfile parse error on line 2: COPY cannot accept a heredoc as a destination");
}

TEST(InstructionsTest, RunHeredocsMakeAShellScript) {
  auto lone = one("RUN <<-EOF\n\tset -e\n\techo hi\n\tEOF").as<RunInstruction>()->command;
  EXPECT_EQ(shell_script(lone), "set -e\necho hi\n");
  auto piped = one("RUN python3 <<EOF\nprint(1)\nEOF").as<RunInstruction>()->command;
  EXPECT_EQ(shell_script(piped), "python3 <<EOF\nprint(1)\nEOF");
  EXPECT_EQ(shell_script(one("RUN make all").as<RunInstruction>()->command), "make all");
}

TEST(InstructionsTest, Healthcheck) {
  auto none = *one("HEALTHCHECK NONE").as<HealthcheckInstruction>();
  EXPECT_EQ(none.test, Strings({"NONE"}));
  auto shell =
      *one("HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0 --start-interval=2s "
           "--retries=3 CMD curl -f http://localhost/ || exit 1")
           .as<HealthcheckInstruction>();
  EXPECT_EQ(shell.test, Strings({"CMD-SHELL", "curl -f http://localhost/ || exit 1"}));
  EXPECT_EQ(shell.interval, 90s);
  EXPECT_EQ(shell.timeout, 500ms);
  EXPECT_EQ(shell.start_period, 0s);
  EXPECT_EQ(shell.start_interval, 2s);
  EXPECT_EQ(shell.retries, 3);
  auto exec = *one("HEALTHCHECK cmd [\"/bin/check\", \"-q\"]").as<HealthcheckInstruction>();
  EXPECT_EQ(exec.test, Strings({"CMD", "/bin/check", "-q"}));
  EXPECT_EQ(exec.interval, 0s);
}

TEST(InstructionsTest, HealthcheckErrors) {
  const std::string at = "dockerfile parse error on line 2: ";
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK NONE now\n"),
            at + "HEALTHCHECK NONE takes no arguments");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK\n"), at + "HEALTHCHECK requires at least one argument");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK CMD\n"), at + "Missing command after HEALTHCHECK CMD");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK PING x\n"),
            at + "Unknown type \"PING\" in HEALTHCHECK (try CMD)");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK --interval=5 CMD x\n"),
            at + "time: missing unit in duration \"5\"");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK --timeout=soon CMD x\n"),
            at + "time: invalid duration \"soon\"");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK --timeout=3d CMD x\n"),
            at + "time: unknown unit \"d\" in duration \"3d\"");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK --start-period=10us CMD x\n"),
            at + "Interval \"start-period\" cannot be less than 1ms");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK --retries=-1 CMD x\n"),
            at + "--retries cannot be negative (-1)");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK --retries=many CMD x\n"),
            at + "strconv.ParseInt: parsing \"many\": invalid syntax");
  EXPECT_EQ(load_error("FROM x\nHEALTHCHECK --every=1s CMD x\n"), at + "unknown flag: --every");
}

TEST(InstructionsTest, ParsesDurationsLikeGo) {
  std::int64_t ns = 0;
  std::string error;
  ASSERT_TRUE(text::parse_go_duration("1h2m3.5s", ns, error));
  EXPECT_EQ(ns, 3723500000000);
  ASSERT_TRUE(text::parse_go_duration("-1.5ms", ns, error));
  EXPECT_EQ(ns, -1500000);
  ASSERT_TRUE(text::parse_go_duration("10\xC2\xB5s", ns, error));
  EXPECT_EQ(ns, 10000);
  ASSERT_TRUE(text::parse_go_duration(".5s", ns, error));
  EXPECT_EQ(ns, 500000000);
  EXPECT_FALSE(text::parse_go_duration("", ns, error));
  EXPECT_EQ(error, "time: invalid duration \"\"");
  EXPECT_FALSE(text::parse_go_duration("9999999999999h", ns, error));
  EXPECT_EQ(error, "time: invalid duration \"9999999999999h\"");
  EXPECT_FALSE(text::parse_go_duration(".s", ns, error));
}

TEST(InstructionsTest, OnbuildHoldsAValidatedTrigger) {
  const OnbuildInstruction on =
      *one("ONBUILD RUN --mount=type=cache,target=/x make install").as<OnbuildInstruction>();
  EXPECT_EQ(on.expression, "RUN --mount=type=cache,target=/x make install");
  ASSERT_NE(on.trigger, nullptr);
  EXPECT_EQ(on.trigger->keyword, "RUN");
  EXPECT_EQ(on.trigger->as<RunInstruction>()->mounts, Strings({"type=cache,target=/x"}));
  const OnbuildInstruction doc =
      *one("onbuild COPY <<EOF /motd\nhello\nEOF").as<OnbuildInstruction>();
  EXPECT_EQ(doc.expression, "COPY <<EOF /motd\nhello\nEOF");
  EXPECT_EQ(doc.trigger->as<CopyInstruction>()->inline_sources.at(0).content, "hello\n");

  const std::string at = "dockerfile parse error on line 2: ";
  EXPECT_EQ(load_error("FROM x\nONBUILD ONBUILD RUN x\n"),
            at + "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  EXPECT_EQ(load_error("FROM x\nONBUILD from y\n"),
            at + "FROM isn't allowed as an ONBUILD trigger");
  EXPECT_EQ(load_error("FROM x\nONBUILD MAINTAINER me\n"),
            at + "MAINTAINER isn't allowed as an ONBUILD trigger");
  EXPECT_EQ(load_error("FROM x\nONBUILD\n"), at + "ONBUILD requires at least one argument");
  EXPECT_EQ(load_error("FROM x\nONBUILD RUNN x\n"),
            at + "unknown instruction: RUNN (did you mean RUN?)");
}

TEST(InstructionsTest, ParsesTriggersFromABaseImage) {
  Instruction trigger = parse_trigger("COPY . /app/src");
  EXPECT_EQ(trigger.keyword, "COPY");
  EXPECT_EQ(trigger.source, "COPY . /app/src");
  EXPECT_EQ(error_of([] { parse_trigger("RUN a\nRUN b"); }),
            "onbuild trigger should be a single expression");
  EXPECT_EQ(error_of([] { parse_trigger("WORKDIR"); }), "WORKDIR requires exactly one argument");
}

TEST(InstructionsTest, ExpandsTheFieldsDockerdExpands) {
  VarMap vars(
      {{"NAME", "web"}, {"UID", "1000"}, {"PORTS", "80 443"}, {"STAGE", "build"}, {"EMPTY", ""}});
  auto expanded = [&](const std::string& text) {
    Instruction inst = one(text);
    expand_instruction(inst, vars);
    return inst;
  };
  auto env =
      expanded("ENV APP_$NAME=\"${NAME} app\" OTHER=${EMPTY:-none}").as<EnvInstruction>()->vars;
  EXPECT_EQ(env[0].key, "APP_web");
  EXPECT_EQ(env[0].value, "web app");
  EXPECT_EQ(env[1].value, "none");
  auto copy = *expanded("COPY --from=$STAGE --chown=$UID:$UID src/${NAME}/ /srv/$NAME")
                   .as<CopyInstruction>();
  EXPECT_EQ(copy.from, "build");
  EXPECT_EQ(copy.chown, "1000:1000");
  EXPECT_EQ(copy.sources, Strings({"src/web/"}));
  EXPECT_EQ(copy.dest, "/srv/web");
  EXPECT_EQ(expanded("EXPOSE $PORTS 8080").as<ExposeInstruction>()->ports,
            Strings({"80", "443", "8080"}));
  EXPECT_EQ(expanded("VOLUME [\"/data/$NAME\"]").as<VolumeInstruction>()->paths,
            Strings({"/data/web"}));
  EXPECT_EQ(expanded("WORKDIR /srv/$NAME").as<WorkdirInstruction>()->path, "/srv/web");
  EXPECT_EQ(expanded("USER ${UID}").as<UserInstruction>()->user, "1000");
  EXPECT_EQ(expanded("ARG X=$NAME").as<ArgInstruction>()->args[0].value, "web");
  // The shell does its own expansion.
  EXPECT_EQ(expanded("RUN echo $NAME").as<RunInstruction>()->command.args, Strings({"echo $NAME"}));
  EXPECT_EQ(expanded("CMD echo $NAME").as<CmdInstruction>()->command.args, Strings({"echo $NAME"}));
  EXPECT_FALSE(expands_variables(one("RUN echo $NAME")));
  EXPECT_FALSE(expands_variables(one("ONBUILD ENV A=$B")));
  EXPECT_TRUE(expands_variables(one("STOPSIGNAL $SIG")));
}

TEST(InstructionsTest, ExpandsHeredocSourcesUnlessQuoted) {
  VarMap vars({{"WHO", "world"}});
  Dockerfile df =
      load_dockerfile("FROM x\nCOPY <<A <<'B' /d/\necho \"hi $WHO\" '$WHO'\nA\n$WHO\nB\n");
  Instruction copy = df.stages[0].instructions[0];
  expand_instruction(copy, vars);
  const auto& files = copy.as<CopyInstruction>()->inline_sources;
  EXPECT_EQ(files[0].content, "echo \"hi world\" 'world'\n");  // quotes stay, $ expands
  EXPECT_EQ(files[1].content, "$WHO\n");
}

TEST(InstructionsTest, ExpansionErrorsCarryTheLine) {
  Dockerfile df = load_dockerfile("FROM x\n\nWORKDIR ${DIR:?set DIR}\n");
  Instruction workdir = df.stages[0].instructions[0];
  int line = 0;
  EXPECT_EQ(error_of([&] { expand_instruction(workdir, VarMap()); }, &line),
            "failed to process \"${DIR:?set DIR}\": DIR: set DIR");
  EXPECT_EQ(line, 3);
}

TEST(InstructionsTest, ExpansionUsesTheDockerfilesEscape) {
  Dockerfile df = load_dockerfile("# escape=`\nFROM x\nENV A=`$HOME B=c:\\dir\n");
  Instruction env = df.stages[0].instructions[0];
  expand_instruction(env, VarMap({{"HOME", "/root"}}), df.directives.escape);
  const auto& vars = env.as<EnvInstruction>()->vars;
  EXPECT_EQ(vars[0].value, "$HOME");
  EXPECT_EQ(vars[1].value, "c:\\dir");
}

TEST(InstructionsTest, SomeInstructionsIgnoreFlagsLikeDockerd) {
  EXPECT_EQ(one("STOPSIGNAL --whatever SIGINT").as<StopsignalInstruction>()->signal, "SIGINT");
  EXPECT_EQ(one("ARG --whatever A=1").as<ArgInstruction>()->args.at(0).name, "A");
  EXPECT_EQ(one("HEALTHCHECK --interval=nonsense NONE").as<HealthcheckInstruction>()->test,
            Strings({"NONE"}));
  // A lone "--" ends the flags.
  EXPECT_EQ(one("COPY --link -- --odd-name /dst").as<CopyInstruction>()->sources,
            Strings({"--odd-name"}));
}

TEST(InstructionsTest, KeepsTheEscapeDirectiveAndWarnings) {
  Dockerfile df = load_dockerfile("# escape=`\nFROM x\nRUN a `\n\n b\n");
  EXPECT_EQ(df.directives.escape, '`');
  ASSERT_EQ(df.warnings.size(), 1u);
  EXPECT_EQ(df.stages[0].instructions[0].end_line, 5);
}

}  // namespace
}  // namespace berth::agent::build
