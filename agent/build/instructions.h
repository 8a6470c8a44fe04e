#pragma once
// Parsed nodes -> typed, validated instructions grouped in build stages, as
// buildkit's frontend/dockerfile/instructions does for dockerd's classic
// builder. Everything here is checked once, when the Dockerfile is loaded;
// the dispatcher then only expands variables (expand_instruction) and runs.
//
// Values stay as written (variables unexpanded, ENV/LABEL quotes kept): the
// dispatcher calls expand_instruction() on a copy with the ENV and ARGs in
// effect at that step, and expand_word() on Stage::base with the meta ARGs.
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agent/build/expand.h"
#include "agent/build/parser.h"

namespace berth::agent::build {

struct KeyValue {
  std::string key;
  std::string value;
};

// RUN, CMD and ENTRYPOINT. Exec form (a JSON array) runs `args` as is; shell
// form holds the text as the one element of `args` (none when empty), to run
// with the stage's SHELL (["/bin/sh", "-c"] by default).
struct CommandLine {
  std::vector<std::string> args;
  bool shell_form = true;
  std::vector<Heredoc> heredocs;  // RUN <<EOF: bodies for the shell (never expanded)
};

// The shell-form text to run for a RUN with heredocs, as buildkit does: a lone
// `RUN <<EOF` runs the body itself (tabs stripped for <<-); anything else
// (`RUN python3 <<EOF`) passes the line and the bodies with their delimiters
// to the shell, which reads them as real heredocs. Without heredocs, args[0].
// (buildkit also runs a body starting with "#!" as a script file; that choice
// is the dispatcher's.)
std::string shell_script(const CommandLine& command);

struct RunInstruction {
  CommandLine command;
  std::vector<std::string> mounts;      // --mount values as written (repeatable)
  std::string network;                  // --network, "" when absent
  std::string security;                 // --security, "" when absent
  std::vector<std::string> flags_used;  // "mount", "network"... in order: dockerd's
                                        // classic builder refuses RUN flags
};
struct CmdInstruction {
  CommandLine command;
};
struct EntrypointInstruction {
  CommandLine command;
};
struct ShellInstruction {
  std::vector<std::string> shell;  // always given in JSON form
};
struct EnvInstruction {
  std::vector<KeyValue> vars;  // in order; both `ENV k v` and `ENV k=v k2=v2`
};
struct LabelInstruction {
  std::vector<KeyValue> labels;
};
struct ArgInstruction {
  struct Arg {
    std::string name;
    std::optional<std::string> value;  // the default, when given
  };
  std::vector<Arg> args;  // `ARG a b=1` declares two
};
struct WorkdirInstruction {
  std::string path;
};
struct UserInstruction {
  std::string user;
};
struct ExposeInstruction {
  std::vector<std::string> ports;  // sorted, like buildkit; "80", "53/udp", "$PORT"
};
struct VolumeInstruction {
  std::vector<std::string> paths;
};
// A COPY/ADD source written inline as a heredoc: `COPY <<EOF /etc/motd`.
struct InlineFile {
  std::string name;     // the delimiter, used as the file name
  std::string content;  // tabs already stripped for <<-
  bool expand = true;   // false when the delimiter was quoted
};
struct SourcesAndDest {
  std::vector<std::string> sources;  // paths, globs, (ADD) URLs
  std::vector<InlineFile> inline_sources;
  std::string dest;
  std::string chown;  // --chown, "" when absent
  std::string chmod;  // --chmod, "" when absent
  bool link = false;  // --link
};
struct CopyInstruction : SourcesAndDest {
  std::string from;  // --from: a stage name or index, or an image
};
struct AddInstruction : SourcesAndDest {
  bool keep_git_dir = false;  // --keep-git-dir
  std::string checksum;       // --checksum
};
struct HealthcheckInstruction {
  // As in the image config: ["NONE"], ["CMD", argv...] or ["CMD-SHELL", text].
  std::vector<std::string> test;
  std::chrono::nanoseconds interval{0};  // 0 when not given
  std::chrono::nanoseconds timeout{0};
  std::chrono::nanoseconds start_period{0};
  std::chrono::nanoseconds start_interval{0};
  int retries = 0;  // 0 when not given
};
struct StopsignalInstruction {
  std::string signal;
};
struct MaintainerInstruction {
  std::string maintainer;
};
struct Instruction;
struct OnbuildInstruction {
  // What goes into the image config's OnBuild list: the trigger's text
  // ("RUN make"), heredoc bodies appended.
  std::string expression;
  std::shared_ptr<const Instruction> trigger;  // the same, parsed and validated
};

using InstructionBody =
    std::variant<RunInstruction, CmdInstruction, EntrypointInstruction, ShellInstruction,
                 EnvInstruction, LabelInstruction, ArgInstruction, WorkdirInstruction,
                 UserInstruction, ExposeInstruction, VolumeInstruction, CopyInstruction,
                 AddInstruction, HealthcheckInstruction, StopsignalInstruction,
                 MaintainerInstruction, OnbuildInstruction>;

struct Instruction {
  std::string keyword;  // upper case: "RUN"
  std::string source;   // the instruction as written, continuations joined: what
                        // "Step 2/5 : RUN make" shows
  int line = 0;         // 1-based first line
  int end_line = 0;
  InstructionBody body;

  template <class T>
  const T* as() const {
    return std::get_if<T>(&body);
  }
};

struct Stage {
  std::string name;      // the `AS` name, lower-cased; "" when unnamed
  std::string base;      // the image or earlier stage, as written ($ARGs unexpanded)
  std::string platform;  // --platform as written, "" when absent
  std::string source;    // "FROM golang:1.22 AS build"
  int line = 0;
  std::vector<Instruction> instructions;
};

struct Dockerfile {
  Directives directives;
  std::vector<Instruction> meta_args;  // the ARGs before the first FROM
  std::vector<Stage> stages;           // may be empty (only ARGs): dockerd then
                                       // fails with "No image was generated. Is
                                       // your Dockerfile empty?"
  std::vector<std::string> warnings;   // see ParsedDockerfile::warnings
};

// parse_dockerfile + to_dockerfile. Throws BuildError in dockerd's words, e.g.
// "dockerfile parse error on line 4: unknown instruction: RUNN (did you mean
// RUN?)", "dockerfile parse error on line 2: COPY requires at least two
// arguments, but only one was provided. Destination could not be determined",
// "no build stage in current context" (line set).
Dockerfile load_dockerfile(std::string_view text, std::string_view name = "Dockerfile");
Dockerfile to_dockerfile(ParsedDockerfile parsed);

// One ONBUILD trigger from a base image's config, parsed and validated as
// dockerd does before running it (the escape char is always \). Throws
// BuildError, e.g. "onbuild trigger should be a single expression".
Instruction parse_trigger(std::string_view expression);

// The stages to build for `target` ("" builds all): those up to and including
// the one named `target` (case-insensitive). Throws dockerd's "failed to reach
// build target <t> in Dockerfile" and "<name> stage name already used".
std::span<const Stage> stages_for_target(const Dockerfile& dockerfile, std::string_view target);

// The stage named `name` (case-insensitive) among `stages`, or nullptr. Numeric
// names (COPY --from=0) are the dispatcher's business.
const Stage* find_stage(std::span<const Stage> stages, std::string_view name);

// The classic builder's progress: meta ARGs, then each FROM and instruction,
// numbered from 1 over step_count(); step_line gives "Step 1/4 : FROM busybox".
int step_count(const Dockerfile& dockerfile, std::span<const Stage> stages);
std::string step_line(int step, int total, std::string_view source);

// Whether dockerd substitutes variables in this instruction: ADD, ARG, COPY,
// ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR (JSON forms too). RUN,
// CMD, ENTRYPOINT, SHELL and HEALTHCHECK are left to the shell; MAINTAINER and
// ONBUILD stay as written. FROM is expanded with the meta ARGs only (by the
// dispatcher, on Stage::base and Stage::platform).
bool expands_variables(const Instruction& instruction);

// Substitutes variables in place in the fields dockerd expands: ENV and LABEL
// keys and values, ARG names and defaults, paths and --chown/--chmod/--from/
// --checksum of COPY and ADD (heredoc sources too when their delimiter was not
// quoted, with quotes kept), WORKDIR, USER, STOPSIGNAL, each VOLUME, and EXPOSE
// (where a value may split into several ports). `escape` is the Dockerfile's.
// Throws BuildError with the instruction's line.
void expand_instruction(Instruction& instruction, const VarLookup& vars, char escape = '\\');

}  // namespace berth::agent::build
