#pragma once
// `berth env NAME`: shell code that sets (or unsets) environment variables, in the
// syntax of the user's shell, ending with a comment that says how to evaluate it
// (like docker-machine env). Values are quoted so that any value round-trips,
// except where a shell cannot carry it (a newline for cmd and tcsh): then
// render_env throws UserError.
#include <string>
#include <vector>

namespace berth::cli {

enum class Shell { Bash, Zsh, Fish, PowerShell, Cmd, Tcsh, Emacs };

// "bash", "zsh", "fish", "powershell" (or "pwsh"), "cmd", "tcsh" (or "csh"), "emacs".
// Throws UsageError listing the valid names.
Shell parse_shell(const std::string& name);
std::string shell_name(Shell shell);

// From the basename of $SHELL; Bash when unset or unknown.
Shell detect_shell();

struct EnvVar {
  std::string name;
  std::string value;
};

// `usage_command` is what the user runs, e.g. "berth env dev" or "berth env --unset".
// Shapes (docker-machine's, with the usage comment last):
//   bash/zsh    export NAME="value"        unset NAME          # eval "$(CMD)"
//   fish        set -gx NAME "value";      set -e NAME;        # eval (CMD)
//   powershell  $Env:NAME = "value"        Remove-Item Env:\\NAME   # & CMD | Invoke-Expression
//   cmd         SET NAME=value             SET NAME=           REM  @FOR /f "tokens=*" %i IN ('CMD') DO @%i
//   tcsh        setenv NAME "value";       unsetenv NAME;      : eval "`CMD`"
//   emacs       (setenv "NAME" "value")    (setenv "NAME" nil) ;; (with-temp-buffer ...)
// tcsh's comment lines start with ":" because "#" is no comment in an interactive tcsh.
// Variable names must be [A-Za-z_][A-Za-z0-9_]*; anything else throws UserError.
std::string render_env(Shell shell, const std::vector<EnvVar>& set,
                       const std::vector<std::string>& unset, const std::string& usage_command);

// Appends `host` to the comma-separated NO_PROXY list `existing`, unless it is already there.
std::string add_no_proxy(const std::string& existing, const std::string& host);

}  // namespace berth::cli
