// libFuzzer: the bytes as a Dockerfile through the builder's front end (parse,
// typed instructions, stages, variable expansion of every instruction), as an
// ONBUILD trigger, as a word to expand, and as a .dockerignore matched against
// a few paths. Bad input may only end in BuildError; anything else (a crash, a
// sanitizer report, a hang) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/build/dockerignore.h"
#include "agent/build/error.h"
#include "agent/build/expand.h"
#include "agent/build/instructions.h"

using namespace berth::agent::build;

namespace {

template <class Fn>
void guarded(Fn fn) {
  try {
    fn();
  } catch (const BuildError&) {
  }
}

const VarMap& vars() {
  static const VarMap v({{"A", "x y"}, {"B", ""}, {"HOME", "/root"}, {"P", "a*b?c"}});
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  guarded([&] {
    Dockerfile df = load_dockerfile(text);
    const char escape = df.directives.escape;
    for (Instruction arg : df.meta_args) guarded([&] { expand_instruction(arg, vars(), escape); });
    auto stages = stages_for_target(df, "");
    (void)step_count(df, stages);
    for (const Stage& stage : stages) {
      (void)step_line(1, 1, stage.source);
      (void)find_stage(stages, stage.name);
      guarded([&] { (void)expand_word(stage.base, vars(), {escape}); });
      for (const Instruction& inst : stage.instructions) {
        Instruction copy = inst;
        (void)expands_variables(copy);
        guarded([&] { expand_instruction(copy, vars(), escape); });
        if (const auto* run = inst.as<RunInstruction>()) (void)shell_script(run->command);
        if (const auto* on = inst.as<OnbuildInstruction>())
          guarded([&] { (void)parse_trigger(on->expression); });
      }
    }
    if (!df.stages.empty()) guarded([&] { (void)stages_for_target(df, df.stages.back().name); });
  });

  guarded([&] { (void)parse_trigger(text); });
  guarded([&] { (void)expand_words(text, vars()); });
  guarded([&] {
    ExpandOptions raw;
    raw.process_quotes = false;
    raw.keep_unset = true;
    (void)expand_word(text, vars(), raw);
  });

  guarded([&] {
    const auto patterns = read_dockerignore(text);
    IgnoreMatcher matcher(patterns);
    for (std::string_view path :
         {"a", "a/b", "a/b/c.txt", ".dockerignore", "Dockerfile", "x/.git/y"}) {
      (void)matcher.excluded(path);
      (void)matcher.may_include_below(path);
    }
    if (!patterns.empty()) (void)matcher.excluded(patterns.front());
    (void)keep_build_files(patterns, "Dockerfile");
    (void)excluded_build_files(matcher, "sub/Dockerfile");
  });
  return 0;
}
