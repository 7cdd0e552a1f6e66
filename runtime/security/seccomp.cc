#include "runtime/security/seccomp.h"

// The runtime is built without exceptions: nlohmann must never throw. Parsing
// goes through parse(..., allow_exceptions=false) and every accessor below is
// guarded by a type check.
#define JSON_NOEXCEPTION 1
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "runtime/core/sha256.h"
#include "runtime/core/unique_fd.h"

namespace airlock::seccomp {
namespace {

using nlohmann::json;

// Bumped whenever the way a profile becomes BPF changes, so caches written by
// an older airlock are not reused.
constexpr std::string_view kCompilerRevision = "airlock-seccomp/1";
constexpr size_t kMaxProfileBytes = 4 << 20;
constexpr size_t kMaxRules = 4096;
constexpr size_t kMaxNotInValues = 16;
constexpr unsigned kMaxErrno = 4095;
constexpr int kMaxRawNr = 0x3fffffff;

// libseccomp's architecture names; OCI's are "SCMP_ARCH_" + upper case.
constexpr const char* kArchNames[] = {
    "x86",    "x86_64",    "x32",         "arm",    "aarch64", "mips",
    "mips64", "mips64n32", "mipsel",      "mipsel64", "mipsel64n32",
    "ppc",    "ppc64",     "ppc64le",     "s390",   "s390x",   "parisc",
    "parisc64", "riscv64"};

std::string ArchName(uint32_t token) {
  for (const char* name : kArchNames) {
    if (seccomp_arch_resolve_name(name) == token) return name;
  }
  return "arch " + std::to_string(token);
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// ---------------------------------------------------------------- parsing

std::unexpected<Error> Bad(const std::string& path, std::string msg) {
  return Fail(path, std::move(msg));
}

const char* TypeName(const json& j) { return j.type_name(); }

Result<std::string> GetString(const json& j, const std::string& path) {
  if (!j.is_string()) return Bad(path, std::string("expected a string, got ") + TypeName(j));
  return j.get_ref<const std::string&>();
}

Result<uint64_t> GetUint(const json& j, const std::string& path, uint64_t max) {
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v > max) return Bad(path, std::to_string(v) + " is out of range (max " + std::to_string(max) + ")");
    return v;
  }
  if (j.is_number_integer()) return Bad(path, "must not be negative");
  return Bad(path, std::string("expected a non-negative integer, got ") + TypeName(j));
}

// Fails on any key of `obj` outside `allowed`: a misspelt field must not be
// silently ignored in a security policy.
Result<void> CheckKeys(const json& obj, const std::string& path,
                       std::initializer_list<std::string_view> allowed) {
  for (const auto& item : obj.items()) {
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || item.key() == a;
    if (!ok) {
      std::string p = path.empty() ? item.key() : path + "." + item.key();
      return Bad(p, "unknown field");
    }
  }
  return {};
}

Result<uint16_t> ParseErrno(const json& j, const std::string& path) {
  uint64_t v = TRY(GetUint(j, path, kMaxErrno));
  // errno 0 would make a refused call look successful.
  if (v == 0) return Bad(path, "must be an errno value between 1 and 4095");
  return static_cast<uint16_t>(v);
}

// Parses an action and its errno; `errno_field` is "errnoRet" or
// "defaultErrnoRet" in the object `obj` at `path`.
Result<Action> ParseAction(const json& obj, const std::string& path,
                           const char* action_field, const char* errno_field) {
  std::string apath = path.empty() ? action_field : path + "." + action_field;
  std::string epath = path.empty() ? errno_field : path + "." + errno_field;
  auto it = obj.find(action_field);
  if (it == obj.end()) return Bad(apath, "missing");
  std::string name = TRY(GetString(*it, apath));
  Action a;
  if (name == "SCMP_ACT_ALLOW") a.kind = ActionKind::kAllow;
  else if (name == "SCMP_ACT_ERRNO") a.kind = ActionKind::kErrno;
  else if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") a.kind = ActionKind::kKillThread;
  else if (name == "SCMP_ACT_KILL_PROCESS") a.kind = ActionKind::kKillProcess;
  else if (name == "SCMP_ACT_TRAP") a.kind = ActionKind::kTrap;
  else if (name == "SCMP_ACT_LOG") a.kind = ActionKind::kLog;
  else if (name == "SCMP_ACT_TRACE") return Bad(apath, "SCMP_ACT_TRACE is not supported: airlock attaches no tracer");
  else if (name == "SCMP_ACT_NOTIFY") return Bad(apath, "SCMP_ACT_NOTIFY is not supported: airlock runs no seccomp listener");
  else return Bad(apath, "unknown action " + Quote(name));

  auto e = obj.find(errno_field);
  if (a.kind == ActionKind::kErrno) {
    a.errno_ret = EPERM;  // OCI: ERRNO without a value means EPERM
    if (e != obj.end()) a.errno_ret = TRY(ParseErrno(*e, epath));
  } else if (e != obj.end()) {
    return Bad(epath, "only valid with SCMP_ACT_ERRNO");
  }
  return a;
}

Result<uint32_t> ParseArch(const json& j, const std::string& path) {
  std::string name = TRY(GetString(j, path));
  constexpr std::string_view kPrefix = "SCMP_ARCH_";
  if (!name.starts_with(kPrefix)) return Bad(path, "unknown architecture " + Quote(name));
  std::string lower = name.substr(kPrefix.size());
  for (char& c : lower) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  uint32_t token = seccomp_arch_resolve_name(lower.c_str());
  if (token == 0) return Bad(path, "unknown architecture " + Quote(name));
  return token;
}

// A names entry: a syscall name, or a raw number "457" / "<arch>:457" meaning
// that number on the native arch. Returns nullopt for an entry that does not
// apply here (a raw number for an arch that is not in this filter, or an
// unknown name in an optional rule).
Result<std::optional<SyscallRef>> ParseName(const json& j, const std::string& path,
                                            bool optional,
                                            const std::vector<uint32_t>& compat) {
  std::string name = TRY(GetString(j, path));
  if (name.empty()) return Bad(path, "empty syscall name");
  std::string_view num = name;
  uint32_t arch = seccomp_arch_native();
  bool arch_given = false;
  if (size_t colon = name.find(':'); colon != std::string::npos) {
    std::string prefix = name.substr(0, colon);
    arch = seccomp_arch_resolve_name(prefix.c_str());
    if (arch == 0) return Bad(path, "unknown architecture " + Quote(prefix) + " in " + Quote(name));
    num = std::string_view(name).substr(colon + 1);
    arch_given = true;
  }
  bool digits = !num.empty() && num.find_first_not_of("0123456789") == std::string_view::npos;
  if (arch_given && !digits) return Bad(path, "expected <arch>:<number>, got " + Quote(name));
  if (digits) {
    uint64_t nr = 0;
    for (char c : num) nr = std::min<uint64_t>(nr * 10 + static_cast<uint64_t>(c - '0'), uint64_t{1} << 32);
    if (nr > kMaxRawNr) return Bad(path, "syscall number " + Quote(name) + " is out of range");
    if (arch != seccomp_arch_native()) {
      // Raw numbers are translated by no one: they can only be native.
      for (uint32_t c : compat) {
        if (c == arch) return Bad(path, "raw syscall numbers are only supported for the native architecture (" + ArchName(seccomp_arch_native()) + "), not " + Quote(name));
      }
      return std::optional<SyscallRef>();
    }
    return std::optional<SyscallRef>(SyscallRef{name, static_cast<int>(nr), true});
  }
  int nr = seccomp_syscall_resolve_name(name.c_str());
  if (nr == __NR_SCMP_ERROR) {
    if (optional) return std::optional<SyscallRef>();
    return Bad(path, "unknown syscall " + Quote(name) + " (libseccomp " +
                         std::to_string(seccomp_version()->major) + "." + std::to_string(seccomp_version()->minor) + "." +
                         std::to_string(seccomp_version()->micro) + "; use a raw number or \"optional\": true)");
  }
  return std::optional<SyscallRef>(SyscallRef{name, nr, false});
}

Result<ArgCondition> ParseArg(const json& j, const std::string& path) {
  if (!j.is_object()) return Bad(path, std::string("expected an object, got ") + TypeName(j));
  TRY(CheckKeys(j, path, {"index", "value", "valueTwo", "op", "comment"}));
  ArgCondition a;
  auto get = [&](const char* key, bool required) -> Result<std::optional<uint64_t>> {
    auto it = j.find(key);
    if (it == j.end()) {
      if (required) return Bad(path + "." + key, "missing");
      return std::optional<uint64_t>();
    }
    uint64_t max = std::string_view(key) == "index" ? 5 : UINT64_MAX;
    return std::optional<uint64_t>(TRY(GetUint(*it, path + "." + key, max)));
  };
  a.index = static_cast<unsigned>(*TRY(get("index", true)));
  a.value = *TRY(get("value", true));
  a.value_two = TRY(get("valueTwo", false)).value_or(0);
  auto op = j.find("op");
  if (op == j.end()) return Bad(path + ".op", "missing");
  std::string name = TRY(GetString(*op, path + ".op"));
  static constexpr std::pair<std::string_view, ArgOp> kOps[] = {
      {"SCMP_CMP_NE", ArgOp::kNe}, {"SCMP_CMP_LT", ArgOp::kLt},
      {"SCMP_CMP_LE", ArgOp::kLe}, {"SCMP_CMP_EQ", ArgOp::kEq},
      {"SCMP_CMP_GE", ArgOp::kGe}, {"SCMP_CMP_GT", ArgOp::kGt},
      {"SCMP_CMP_MASKED_EQ", ArgOp::kMaskedEq}};
  bool found = false;
  for (const auto& [n, o] : kOps) {
    if (n == name) a.op = o, found = true;
  }
  if (!found) return Bad(path + ".op", "unknown operator " + Quote(name));
  if (a.op == ArgOp::kMaskedEq && (a.value_two & ~a.value) != 0) {
    return Bad(path + ".valueTwo", "has bits outside the mask in \"value\"; the rule could never match");
  }
  if (a.op != ArgOp::kMaskedEq && j.contains("valueTwo") && a.value_two != 0) {
    return Bad(path + ".valueTwo", "only used with SCMP_CMP_MASKED_EQ");
  }
  return a;
}

Result<ArgNotIn> ParseArgNotIn(const json& j, const std::string& path) {
  if (!j.is_object()) return Bad(path, std::string("expected an object, got ") + TypeName(j));
  TRY(CheckKeys(j, path, {"index", "mask", "values", "comment"}));
  ArgNotIn n;
  auto idx = j.find("index");
  if (idx == j.end()) return Bad(path + ".index", "missing");
  n.index = static_cast<unsigned>(TRY(GetUint(*idx, path + ".index", 5)));
  n.mask = UINT64_MAX;
  if (auto m = j.find("mask"); m != j.end()) n.mask = TRY(GetUint(*m, path + ".mask", UINT64_MAX));
  if (n.mask == 0) return Bad(path + ".mask", "must not be 0");
  auto vals = j.find("values");
  if (vals == j.end()) return Bad(path + ".values", "missing");
  if (!vals->is_array() || vals->empty() || vals->size() > kMaxNotInValues) {
    return Bad(path + ".values", "expected an array of 1 to " + std::to_string(kMaxNotInValues) + " integers");
  }
  for (size_t i = 0; i < vals->size(); ++i) {
    std::string vpath = path + ".values[" + std::to_string(i) + "]";
    uint64_t v = TRY(GetUint((*vals)[i], vpath, UINT64_MAX));
    if ((v & ~n.mask) != 0) return Bad(vpath, "has bits outside \"mask\"; it could never match");
    n.values.push_back(v);
  }
  return n;
}

Result<Rule> ParseRule(const json& j, const std::string& path,
                       const std::vector<uint32_t>& compat) {
  if (!j.is_object()) return Bad(path, std::string("expected an object, got ") + TypeName(j));
  TRY(CheckKeys(j, path, {"names", "action", "errnoRet", "args", "argNotIn", "optional", "comment"}));
  Rule r;
  r.where = path;
  bool optional = false;
  if (auto o = j.find("optional"); o != j.end()) {
    if (!o->is_boolean()) return Bad(path + ".optional", std::string("expected a boolean, got ") + TypeName(*o));
    optional = o->get<bool>();
  }
  r.action = TRY(ParseAction(j, path, "action", "errnoRet"));

  auto names = j.find("names");
  if (names == j.end()) return Bad(path + ".names", "missing");
  if (!names->is_array()) return Bad(path + ".names", std::string("expected an array, got ") + TypeName(*names));
  if (names->empty()) return Bad(path + ".names", "empty");
  std::set<std::string> seen;
  for (size_t i = 0; i < names->size(); ++i) {
    std::string npath = path + ".names[" + std::to_string(i) + "]";
    auto ref = TRY(ParseName((*names)[i], npath, optional, compat));
    if (!ref) continue;
    if (!seen.insert(ref->name).second) return Bad(npath, Quote(ref->name) + " is listed twice");
    r.syscalls.push_back(std::move(*ref));
  }

  if (auto args = j.find("args"); args != j.end() && !args->is_null()) {
    if (!args->is_array()) return Bad(path + ".args", std::string("expected an array, got ") + TypeName(*args));
    for (size_t i = 0; i < args->size(); ++i) {
      std::string apath = path + ".args[" + std::to_string(i) + "]";
      ArgCondition a = TRY(ParseArg((*args)[i], apath));
      for (size_t k = 0; k < r.args.size(); ++k) {
        // libseccomp cannot AND two tests of one argument in a rule.
        if (r.args[k].index == a.index) {
          return Bad(apath, "tests argument " + std::to_string(a.index) + " again (also in args[" + std::to_string(k) + "]); use two rules or \"argNotIn\"");
        }
      }
      r.args.push_back(a);
    }
  }
  if (auto n = j.find("argNotIn"); n != j.end()) {
    r.arg_not_in = TRY(ParseArgNotIn(*n, path + ".argNotIn"));
    for (const ArgCondition& a : r.args) {
      if (a.index == r.arg_not_in->index) {
        return Bad(path + ".argNotIn", "tests argument " + std::to_string(a.index) + ", which \"args\" tests too");
      }
    }
  }
  return r;
}

// libseccomp gives an unconditional rule precedence over every conditional
// rule for the same call, silently; a refusal written as a conditional rule
// next to an unconditional allow would be dropped. Refuse such profiles.
Result<void> CheckOverlaps(const std::vector<Rule>& rules) {
  struct Seen { size_t rule; bool unconditional; };
  std::map<int, Seen> by_nr;
  for (size_t i = 0; i < rules.size(); ++i) {
    const Rule& r = rules[i];
    bool unconditional = r.args.empty() && !r.arg_not_in;
    for (size_t k = 0; k < r.syscalls.size(); ++k) {
      const SyscallRef& s = r.syscalls[k];
      auto [it, inserted] = by_nr.emplace(s.native_nr, Seen{i, unconditional});
      if (inserted) continue;
      const Rule& other = rules[it->second.rule];
      if (!unconditional && !it->second.unconditional) continue;
      std::string msg = Quote(s.name) + " is already in " + other.where;
      if (!(unconditional && it->second.unconditional)) {
        msg += "; libseccomp ignores conditional rules for a call that also has an unconditional one (see \"argNotIn\")";
      }
      return Bad(r.where + ".names", msg);
    }
  }
  return {};
}

// Finds where a document stops being JSON; parse() without exceptions only
// says that it failed.
struct SyntaxErrorFinder : nlohmann::json_sax<json> {
  size_t position = 0;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception&) override {
    position = pos;
    return false;
  }
};

std::string SyntaxErrorAt(std::string_view text) {
  SyntaxErrorFinder finder;
  json::sax_parse(text.begin(), text.end(), &finder);
  size_t end = std::min(finder.position > 0 ? finder.position - 1 : 0, text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') ++line, column = 1;
    else ++column;
  }
  return "not valid JSON (line " + std::to_string(line) + ", column " + std::to_string(column) + ")";
}

}  // namespace

std::string CacheKey(std::string_view profile_json) {
  const scmp_version* v = seccomp_version();
  Sha256 h;
  h.Update(kCompilerRevision);
  h.Update("\nlibseccomp " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->micro) + "\narch " + ArchName(seccomp_arch_native()) + "\n\n");
  h.Update(profile_json);
  return h.HexFinal();
}

Result<Profile> ParseProfile(std::string_view text) {
  // nlohmann keeps the last of duplicate keys; in a policy that hides intent
  // ("action" given twice), so duplicates are an error.
  std::vector<std::optional<std::set<std::string>>> stack;
  std::string duplicate;
  auto cb = [&](int, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start: stack.emplace_back(std::set<std::string>()); break;
      case json::parse_event_t::array_start: stack.emplace_back(); break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case json::parse_event_t::key:
        if (!stack.empty() && stack.back() && parsed.is_string() &&
            !stack.back()->insert(parsed.get_ref<const std::string&>()).second && duplicate.empty()) {
          duplicate = parsed.get_ref<const std::string&>();
        }
        break;
      default: break;
    }
    return true;
  };
  json doc = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Fail("seccomp profile", SyntaxErrorAt(text));
  if (!duplicate.empty()) return Fail("seccomp profile", "duplicate key " + Quote(duplicate));
  if (!doc.is_object()) return Fail("seccomp profile", std::string("expected a JSON object, got ") + TypeName(doc));
  TRY(CheckKeys(doc, "", {"defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls", "comment"}));

  Profile p;
  p.digest = CacheKey(text);
  p.default_action = TRY(ParseAction(doc, "", "defaultAction", "defaultErrnoRet"));

  if (auto archs = doc.find("architectures"); archs != doc.end() && !archs->is_null()) {
    if (!archs->is_array()) return Bad("architectures", std::string("expected an array, got ") + TypeName(*archs));
    for (size_t i = 0; i < archs->size(); ++i) {
      uint32_t token = TRY(ParseArch((*archs)[i], "architectures[" + std::to_string(i) + "]"));
      if (token == seccomp_arch_native()) continue;  // always filtered
      bool dup = false;
      for (uint32_t t : p.architectures) dup = dup || t == token;
      if (!dup) p.architectures.push_back(token);
    }
  }
  // Filter flags (TSYNC, LOG, SPEC_ALLOW) are the runtime's business; only the
  // shape is checked.
  if (auto flags = doc.find("flags"); flags != doc.end() && !flags->is_null()) {
    if (!flags->is_array()) return Bad("flags", std::string("expected an array, got ") + TypeName(*flags));
    for (size_t i = 0; i < flags->size(); ++i) TRY(GetString((*flags)[i], "flags[" + std::to_string(i) + "]"));
  }

  if (auto sys = doc.find("syscalls"); sys != doc.end() && !sys->is_null()) {
    if (!sys->is_array()) return Bad("syscalls", std::string("expected an array, got ") + TypeName(*sys));
    if (sys->size() > kMaxRules) return Bad("syscalls", "more than " + std::to_string(kMaxRules) + " entries");
    for (size_t i = 0; i < sys->size(); ++i) {
      Rule r = TRY(ParseRule((*sys)[i], "syscalls[" + std::to_string(i) + "]", p.architectures));
      if (!r.syscalls.empty()) p.rules.push_back(std::move(r));
    }
  }
  TRY(CheckOverlaps(p.rules));
  return p;
}

// ---------------------------------------------------------------- compiling

namespace {

struct CtxFree {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxFree>;

uint32_t ScmpAction(const Action& a) {
  switch (a.kind) {
    case ActionKind::kAllow: return SCMP_ACT_ALLOW;
    case ActionKind::kErrno: return SCMP_ACT_ERRNO(a.errno_ret);
    case ActionKind::kKillThread: return SCMP_ACT_KILL_THREAD;
    case ActionKind::kKillProcess: return SCMP_ACT_KILL_PROCESS;
    case ActionKind::kTrap: return SCMP_ACT_TRAP;
    case ActionKind::kLog: return SCMP_ACT_LOG;
  }
  return SCMP_ACT_KILL_PROCESS;
}

scmp_compare ScmpOp(ArgOp op) {
  switch (op) {
    case ArgOp::kNe: return SCMP_CMP_NE;
    case ArgOp::kLt: return SCMP_CMP_LT;
    case ArgOp::kLe: return SCMP_CMP_LE;
    case ArgOp::kEq: return SCMP_CMP_EQ;
    case ArgOp::kGe: return SCMP_CMP_GE;
    case ArgOp::kGt: return SCMP_CMP_GT;
    case ArgOp::kMaskedEq: return SCMP_CMP_MASKED_EQ;
  }
  return SCMP_CMP_EQ;
}

// Covers {x : (x & mask) not in values} with masked-equality tests, by
// splitting on the mask's bits from the top: a branch holding no excluded
// value becomes one test; a branch that narrows to an excluded value is
// dropped. At most popcount(mask) * values.size() tests.
void CoverNotIn(uint64_t bits_left, uint64_t fixed_mask, uint64_t fixed_value,
                const std::vector<uint64_t>& excluded,
                std::vector<std::pair<uint64_t, uint64_t>>& out) {
  if (excluded.empty()) {
    out.emplace_back(fixed_mask, fixed_value);
    return;
  }
  if (bits_left == 0) return;
  uint64_t bit = uint64_t{1} << (63 - __builtin_clzll(bits_left));
  std::vector<uint64_t> zero, one;
  for (uint64_t v : excluded) (v & bit ? one : zero).push_back(v);
  CoverNotIn(bits_left & ~bit, fixed_mask | bit, fixed_value, zero, out);
  CoverNotIn(bits_left & ~bit, fixed_mask | bit, fixed_value | bit, one, out);
}

// The argument tests a rule expands to: one set, or with argNotIn one set per
// covering test (libseccomp ORs rules, ANDs the tests within one).
std::vector<std::vector<scmp_arg_cmp>> ExpandArgs(const Rule& r) {
  std::vector<scmp_arg_cmp> base;
  for (const ArgCondition& a : r.args) {
    base.push_back(scmp_arg_cmp{a.index, ScmpOp(a.op), a.value, a.value_two});
  }
  if (!r.arg_not_in) return {base};
  std::vector<std::pair<uint64_t, uint64_t>> cover;
  CoverNotIn(r.arg_not_in->mask, 0, 0, r.arg_not_in->values, cover);
  std::vector<std::vector<scmp_arg_cmp>> out;
  for (const auto& [mask, value] : cover) {
    out.push_back(base);
    out.back().push_back(scmp_arg_cmp{r.arg_not_in->index, SCMP_CMP_MASKED_EQ, mask, value});
  }
  return out;
}

Result<Ctx> NewCtx(const Profile& p) {
  Ctx ctx(seccomp_init(ScmpAction(p.default_action)));
  if (!ctx) return ErrnoValue(EINVAL, "seccomp_init", "default action");
  // The runtime sets no_new_privs itself, at its own step.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc < 0) {
    return ErrnoValue(-rc, "seccomp_attr_set", "SCMP_FLTATR_CTL_NNP");
  }
  // A call from an ABI the filter does not list ends the whole process, not
  // just the thread that made it.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc < 0) {
    return ErrnoValue(-rc, "seccomp_attr_set", "SCMP_FLTATR_ACT_BADARCH");
  }
  // A binary tree of syscall numbers instead of a linear chain: an allowlist
  // of ~350 calls would otherwise cost hundreds of comparisons per call.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2); rc < 0) {
    return ErrnoValue(-rc, "seccomp_attr_set", "SCMP_FLTATR_CTL_OPTIMIZE");
  }
  return ctx;
}

// One context per architecture, merged at the end: a raw number means the
// native arch only, and libseccomp would try (and fail) to translate it for
// every arch of a shared context. Rules are added "exact" so libseccomp does
// not rewrite them, e.g. into x86 socketcall() forms whose arguments a filter
// cannot see.
Result<Ctx> Build(const Profile& p) {
  const uint32_t native = seccomp_arch_native();
  std::vector<uint32_t> arches = {native};
  arches.insert(arches.end(), p.architectures.begin(), p.architectures.end());
  Ctx merged;
  for (uint32_t arch : arches) {
    Ctx ctx = TRY(NewCtx(p));
    if (arch != native) {
      if (int rc = seccomp_arch_add(ctx.get(), arch); rc < 0) {
        return ErrnoValue(-rc, "seccomp_arch_add", ArchName(arch));
      }
      if (int rc = seccomp_arch_remove(ctx.get(), SCMP_ARCH_NATIVE); rc < 0) {
        return ErrnoValue(-rc, "seccomp_arch_remove", ArchName(native));
      }
    }
    for (const Rule& r : p.rules) {
      // libseccomp refuses a rule that repeats the default action; it is a
      // no-op anyway.
      if (r.action == p.default_action) continue;
      auto arg_sets = ExpandArgs(r);
      for (const SyscallRef& s : r.syscalls) {
        if (s.raw ? arch != native : seccomp_syscall_resolve_name_arch(arch, s.name.c_str()) < 0) {
          continue;  // not a call of this ABI
        }
        for (const auto& args : arg_sets) {
          int rc = seccomp_rule_add_exact_array(ctx.get(), ScmpAction(r.action), s.native_nr,
                                                static_cast<unsigned>(args.size()), args.data());
          if (rc < 0) {
            return ErrnoValue(-rc, "seccomp_rule_add", r.where + " " + Quote(s.name) + " on " + ArchName(arch));
          }
        }
      }
    }
    if (!merged) {
      merged = std::move(ctx);
    } else if (int rc = seccomp_merge(merged.get(), ctx.get()); rc < 0) {
      return ErrnoValue(-rc, "seccomp_merge", ArchName(arch));
    } else {
      ctx.release();  // seccomp_merge freed it
    }
  }
  return merged;
}

Result<std::string> ReadAllFd(int fd, const std::string& what) {
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", what);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxProfileBytes * 4) return ErrnoValue(EFBIG, "read", what);
  }
}

// libseccomp 2.5 exports only to a file descriptor.
template <typename ExportFn>
Result<std::string> ExportToMemory(ExportFn fn, const char* what) {
  UniqueFd fd(memfd_create("airlock-seccomp", MFD_CLOEXEC));
  if (!fd) return Errno("memfd_create", what);
  if (int rc = fn(fd.get()); rc < 0) return ErrnoValue(-rc, what);
  if (lseek(fd.get(), 0, SEEK_SET) < 0) return Errno("lseek", what);
  return ReadAllFd(fd.get(), what);
}

}  // namespace

Result<Program> Compile(const Profile& profile) {
  Ctx ctx = TRY(Build(profile));
  std::string bytes = TRY(ExportToMemory([&](int fd) { return seccomp_export_bpf(ctx.get(), fd); },
                                         "seccomp_export_bpf"));
  if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0) {
    return ErrnoValue(EPROTO, "seccomp_export_bpf", std::to_string(bytes.size()) + " bytes");
  }
  size_t n = bytes.size() / sizeof(sock_filter);
  if (n > BPF_MAXINSNS) {
    return ErrnoValue(E2BIG, "seccomp_export_bpf", std::to_string(n) + " instructions (max " + std::to_string(BPF_MAXINSNS) + ")");
  }
  Program prog;
  prog.insns.resize(n);
  std::memcpy(prog.insns.data(), bytes.data(), bytes.size());
  prog.digest = profile.digest;
  return prog;
}

Result<std::string> DescribePfc(const Profile& profile) {
  Ctx ctx = TRY(Build(profile));
  return ExportToMemory([&](int fd) { return seccomp_export_pfc(ctx.get(), fd); }, "seccomp_export_pfc");
}

sock_fprog Program::fprog() const {
  return sock_fprog{static_cast<unsigned short>(insns.size()),
                    const_cast<sock_filter*>(insns.data())};
}

int Install(const sock_fprog& prog) noexcept {
  // The raw syscall: glibc has no wrapper in 2.36, and libseccomp's
  // seccomp_load() allocates.
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0) return 0;
  return errno;
}

// ---------------------------------------------------------------- cache

namespace {

// <magic 12><key hex 64><count u32><insns count*8><sha256 hex 64 of all before>
constexpr std::string_view kMagic = "AIRLOCKBPF1\n";
constexpr size_t kKeyLen = 64;

Result<std::string> ReadFileLimited(const std::string& path, size_t limit, int flags) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | flags));
  if (!fd) return Errno("open", path);
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return Errno("fstat", path);
  if (!S_ISREG(st.st_mode)) return ErrnoValue(EINVAL, "open", path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > limit) {
    return ErrnoValue(EFBIG, "read", path + ": larger than " + std::to_string(limit) + " bytes");
  }
  std::string out = TRY(ReadAllFd(fd.get(), path));
  if (out.size() > limit) return ErrnoValue(EFBIG, "read", path);
  return out;
}

std::optional<Program> DecodeCache(std::string_view bytes, const std::string& key) {
  constexpr size_t kFixed = kMagic.size() + kKeyLen + sizeof(uint32_t) + kKeyLen;
  if (bytes.size() < kFixed) return std::nullopt;
  if (bytes.substr(0, kMagic.size()) != kMagic) return std::nullopt;
  if (bytes.substr(kMagic.size(), kKeyLen) != key) return std::nullopt;
  uint32_t n = 0;
  std::memcpy(&n, bytes.data() + kMagic.size() + kKeyLen, sizeof(n));
  if (n == 0 || n > BPF_MAXINSNS || bytes.size() != kFixed + size_t{n} * sizeof(sock_filter)) {
    return std::nullopt;
  }
  std::string_view body = bytes.substr(0, bytes.size() - kKeyLen);
  if (Sha256Hex(body) != bytes.substr(body.size())) return std::nullopt;
  Program prog;
  prog.insns.resize(n);
  std::memcpy(prog.insns.data(), body.data() + kMagic.size() + kKeyLen + sizeof(uint32_t),
              size_t{n} * sizeof(sock_filter));
  prog.digest = key;
  return prog;
}

std::string EncodeCache(const Program& prog) {
  std::string out(kMagic);
  out += prog.digest;
  uint32_t n = static_cast<uint32_t>(prog.insns.size());
  out.append(reinterpret_cast<const char*>(&n), sizeof(n));
  out.append(reinterpret_cast<const char*>(prog.insns.data()), prog.insns.size() * sizeof(sock_filter));
  out += Sha256Hex(out);
  return out;
}

Result<void> WriteAll(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write", what);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// Readers never see a partial file: the bytes go to a private temporary name
// and rename() swaps them in at once (over a corrupt file, if any).
Result<void> WriteAtomically(const std::string& path, std::string_view data) {
  static std::atomic<unsigned> counter{0};
  std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++);
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Errno("open", tmp);
  auto written = WriteAll(fd.get(), data, tmp);
  if (written && fsync(fd.get()) < 0) written = Errno("fsync", tmp);
  if (written && rename(tmp.c_str(), path.c_str()) < 0) written = Errno("rename", tmp + " -> " + path);
  if (!written) unlink(tmp.c_str());
  return written;
}

Result<void> EnsureCacheDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) == 0) return {};
  if (errno != EEXIST) return Errno("mkdir", dir);
  struct stat st;
  if (stat(dir.c_str(), &st) < 0) return Errno("stat", dir);
  if (!S_ISDIR(st.st_mode)) return ErrnoValue(ENOTDIR, "mkdir", dir);
  return {};
}

Result<std::string> ProfilePath(const std::string& name_or_path, const std::string& profiles_dir) {
  if (name_or_path.find('/') != std::string::npos) return name_or_path;
  if (name_or_path.empty() || name_or_path[0] == '.' ||
      name_or_path.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos) {
    return Fail("seccomp profile", "invalid profile name " + Quote(name_or_path));
  }
  return profiles_dir + "/" + name_or_path + ".json";
}

}  // namespace

Result<Program> LoadCached(const std::string& name_or_path, const std::string& profiles_dir,
                           const std::string& cache_dir) {
  std::string path = TRY(ProfilePath(name_or_path, profiles_dir));
  std::string text = TRY(ReadFileLimited(path, kMaxProfileBytes, 0));
  std::string key = CacheKey(text);
  TRY(EnsureCacheDir(cache_dir));
  std::string cache_path = cache_dir + "/" + key + ".bpf";

  // Anything short of an intact file for this key (missing, truncated,
  // another key, bad checksum) is a miss, and the file gets rewritten.
  if (auto cached = ReadFileLimited(cache_path, 1 << 20, O_NOFOLLOW)) {
    if (auto prog = DecodeCache(*cached, key)) return std::move(*prog);
  }

  auto profile = ParseProfile(text);
  if (!profile) {
    Error e = std::move(profile.error());
    e.op = path + ": " + e.op;
    return std::unexpected(std::move(e));
  }
  Program prog = TRY(Compile(*profile));
  TRY(WriteAtomically(cache_path, EncodeCache(prog)));
  return prog;
}

}  // namespace airlock::seccomp
