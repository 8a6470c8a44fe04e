#include "cli/output/shell_env.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace berth::cli {
namespace {

const std::pair<const char*, Shell> kShellNames[] = {
    {"bash", Shell::Bash},       {"zsh", Shell::Zsh},   {"fish", Shell::Fish},
    {"powershell", Shell::PowerShell}, {"pwsh", Shell::PowerShell}, {"cmd", Shell::Cmd},
    {"tcsh", Shell::Tcsh},       {"csh", Shell::Tcsh},  {"emacs", Shell::Emacs},
};

bool valid_var_name(const std::string& name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name)
    if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

// POSIX double quotes; '!' goes in single quotes so an interactive shell's
// history expansion cannot touch it.
std::string quote_posix(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    switch (c) {
      case '"': case '$': case '`': case '\\': out += '\\'; out += c; break;
      case '!': out += "\"'!'\""; break;
      default: out += c;
    }
  }
  return out + "\"";
}

// fish: only \ " $ are special in double quotes. A newline is written as \n
// outside the quotes, so each command stays on one line for `eval (CMD)`.
std::string quote_fish(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    switch (c) {
      case '"': case '$': case '\\': out += '\\'; out += c; break;
      case '\n': out += "\"\\n\""; break;
      case '\r': out += "\"\\r\""; break;
      default: out += c;
    }
  }
  return out + "\"";
}

// PowerShell double quotes: the backtick escapes; typographic double quotes also end a string.
std::string quote_powershell(const std::string& v) {
  std::string out = "\"";
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    switch (c) {
      case '"': case '$': case '`': out += '`'; out += c; break;
      case '\n': out += "`n"; break;
      case '\r': out += "`r"; break;
      case '\t': out += "`t"; break;
      case '\0': out += "`0"; break;
      default:
        // U+201C, U+201D, U+201E are E2 80 9C/9D/9E in UTF-8.
        if (static_cast<unsigned char>(c) == 0xE2 && i + 2 < v.size() &&
            static_cast<unsigned char>(v[i + 1]) == 0x80 && static_cast<unsigned char>(v[i + 2]) >= 0x9C &&
            static_cast<unsigned char>(v[i + 2]) <= 0x9E) {
          out += '`';
        }
        out += c;
    }
  }
  return out + "\"";
}

// tcsh cannot escape inside double quotes: special characters are written
// outside them, backslash-escaped ("a"\$"b"). A newline cannot survive `eval `CMD``.
std::string quote_tcsh(const EnvVar& var) {
  std::string out = "\"";
  for (char c : var.value) {
    switch (c) {
      case '"': case '$': case '`': case '\\': case '!': out += "\"\\"; out += c; out += '"'; break;
      case '\n': case '\r':
        throw UserError("the value of " + var.name + " contains a newline, which tcsh cannot set; use --shell bash");
      default: out += c;
    }
  }
  return out + "\"";
}

std::string quote_elisp(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// cmd has no quoting that survives FOR /f; only a newline is impossible.
std::string check_cmd_value(const EnvVar& var) {
  if (var.value.find_first_of("\r\n") != std::string::npos)
    throw UserError("the value of " + var.name + " contains a newline, which cmd cannot set; use --shell powershell");
  return var.value;
}

std::string set_line(Shell shell, const EnvVar& v) {
  switch (shell) {
    case Shell::Bash:
    case Shell::Zsh: return "export " + v.name + "=" + quote_posix(v.value) + "\n";
    case Shell::Fish: return "set -gx " + v.name + " " + quote_fish(v.value) + ";\n";
    case Shell::PowerShell: return "$Env:" + v.name + " = " + quote_powershell(v.value) + "\n";
    case Shell::Cmd: return "SET " + v.name + "=" + check_cmd_value(v) + "\n";
    case Shell::Tcsh: return "setenv " + v.name + " " + quote_tcsh(v) + ";\n";
    case Shell::Emacs: return "(setenv \"" + v.name + "\" " + quote_elisp(v.value) + ")\n";
  }
  return {};
}

std::string unset_line(Shell shell, const std::string& name) {
  switch (shell) {
    case Shell::Bash:
    case Shell::Zsh: return "unset " + name + "\n";
    case Shell::Fish: return "set -e " + name + ";\n";
    case Shell::PowerShell: return "Remove-Item Env:\\\\" + name + "\n";
    case Shell::Cmd: return "SET " + name + "=\n";
    case Shell::Tcsh: return "unsetenv " + name + ";\n";
    case Shell::Emacs: return "(setenv \"" + name + "\" nil)\n";
  }
  return {};
}

std::string usage_hint(Shell shell, const std::string& cmd) {
  std::string comment = "#";
  std::string how;
  switch (shell) {
    case Shell::Bash:
    case Shell::Zsh: how = "eval \"$(" + cmd + ")\""; break;
    case Shell::Fish: how = "eval (" + cmd + ")"; break;
    case Shell::PowerShell: how = "& " + cmd + " | Invoke-Expression"; break;
    case Shell::Cmd:
      comment = "REM";
      how = "\t@FOR /f \"tokens=*\" %i IN ('" + cmd + "') DO @%i";
      break;
    case Shell::Tcsh:
      comment = ":";
      how = "eval \"`" + cmd + "`\"";  // quoted: no word splitting or globbing of the output
      break;
    case Shell::Emacs:
      comment = ";;";
      how = "(with-temp-buffer (shell-command \"" + cmd + "\" (current-buffer)) (eval-buffer))";
      break;
  }
  return comment + " Run this command to configure your shell:\n" + comment + " " + how + "\n";
}

void check_name(const std::string& name) {
  if (!valid_var_name(name)) throw UserError("invalid environment variable name '" + name + "'");
}

}  // namespace

Shell parse_shell(const std::string& name) {
  for (const auto& [n, s] : kShellNames)
    if (name == n) return s;
  throw UsageError("unknown shell '" + name + "': use bash, zsh, fish, powershell, cmd, tcsh or emacs");
}

std::string shell_name(Shell shell) {
  for (const auto& [n, s] : kShellNames)
    if (s == shell) return n;
  return "bash";
}

Shell detect_shell() {
  const char* sh = std::getenv("SHELL");
  if (!sh || !*sh) return Shell::Bash;
  const std::string base = std::filesystem::path(sh).filename().string();
  if (base == "powershell" || base == "pwsh") return Shell::PowerShell;
  for (const char* known : {"bash", "zsh", "fish", "tcsh", "csh"})
    if (base == known) return parse_shell(base);
  return Shell::Bash;
}

std::string render_env(Shell shell, const std::vector<EnvVar>& set, const std::vector<std::string>& unset,
                       const std::string& usage_command) {
  std::string out;
  for (const auto& v : set) {
    check_name(v.name);
    out += set_line(shell, v);
  }
  for (const auto& name : unset) {
    check_name(name);
    out += unset_line(shell, name);
  }
  return out + usage_hint(shell, usage_command);
}

std::string add_no_proxy(const std::string& existing, const std::string& host) {
  if (host.empty()) return existing;
  std::istringstream in(existing);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    if (b != std::string::npos && item.substr(b, e - b + 1) == host) return existing;
  }
  if (existing.find_first_not_of(" \t,") == std::string::npos) return host;
  return existing.back() == ',' ? existing + host : existing + "," + host;
}

}  // namespace berth::cli
