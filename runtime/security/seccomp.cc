#include "runtime/security/seccomp.h"

// The runtime is built without exceptions: nlohmann must never throw (this
// must precede every include). Parsing goes through parse(...,
// allow_exceptions=false) and every accessor below is guarded by a type check.
#define JSON_NOEXCEPTION 1

#include <fcntl.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/core/io.h"
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
constexpr const char* kArchNames[] = {"x86",         "x86_64", "x32",       "arm",     "aarch64",
                                      "mips",        "mips64", "mips64n32", "mipsel",  "mipsel64",
                                      "mipsel64n32", "ppc",    "ppc64",     "ppc64le", "s390",
                                      "s390x",       "parisc", "parisc64",  "riscv64"};

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

std::string Sub(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}
std::string At(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

std::unexpected<Error> WrongType(const std::string& path, const char* want, const json& j) {
  return Fail(path, std::string("expected ") + want + ", got " + j.type_name());
}

std::string LibseccompVersion() {
  const scmp_version* v = seccomp_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->micro);
}

Result<std::string> GetString(const json& j, const std::string& path) {
  if (!j.is_string()) return WrongType(path, "a string", j);
  return j.get_ref<const std::string&>();
}

Result<uint64_t> GetUint(const json& j, const std::string& path, uint64_t max) {
  if (j.is_number_integer() && !j.is_number_unsigned()) return Fail(path, "must not be negative");
  if (!j.is_number_unsigned()) return WrongType(path, "a non-negative integer", j);
  uint64_t v = j.get<uint64_t>();
  if (v > max) {
    return Fail(path, std::to_string(v) + " is out of range (max " + std::to_string(max) + ")");
  }
  return v;
}

// Fails on any key of `obj` outside `allowed`: a misspelt field must not be
// silently ignored in a security policy.
Result<void> CheckKeys(const json& obj, const std::string& path,
                       std::initializer_list<std::string_view> allowed) {
  for (const auto& item : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end()) {
      return Fail(Sub(path, item.key()), "unknown field");
    }
  }
  return {};
}

constexpr std::pair<std::string_view, ActionKind> kActions[] = {
    {"SCMP_ACT_ALLOW", ActionKind::kAllow},
    {"SCMP_ACT_ERRNO", ActionKind::kErrno},
    {"SCMP_ACT_KILL", ActionKind::kKillThread},
    {"SCMP_ACT_KILL_THREAD", ActionKind::kKillThread},
    {"SCMP_ACT_KILL_PROCESS", ActionKind::kKillProcess},
    {"SCMP_ACT_TRAP", ActionKind::kTrap},
    {"SCMP_ACT_LOG", ActionKind::kLog}};

struct OpName {
  std::string_view name;
  ArgOp op;
  scmp_compare scmp;
};
constexpr OpName kOps[] = {{"SCMP_CMP_NE", ArgOp::kNe, SCMP_CMP_NE},
                           {"SCMP_CMP_LT", ArgOp::kLt, SCMP_CMP_LT},
                           {"SCMP_CMP_LE", ArgOp::kLe, SCMP_CMP_LE},
                           {"SCMP_CMP_EQ", ArgOp::kEq, SCMP_CMP_EQ},
                           {"SCMP_CMP_GE", ArgOp::kGe, SCMP_CMP_GE},
                           {"SCMP_CMP_GT", ArgOp::kGt, SCMP_CMP_GT},
                           {"SCMP_CMP_MASKED_EQ", ArgOp::kMaskedEq, SCMP_CMP_MASKED_EQ}};

// Parses the action named by `action_field` of `obj` and its errno field.
Result<Action> ParseAction(const json& obj, const std::string& path, const char* action_field,
                           const char* errno_field) {
  const std::string apath = Sub(path, action_field), epath = Sub(path, errno_field);
  auto it = obj.find(action_field);
  if (it == obj.end()) return Fail(apath, "missing");
  std::string name = TRY(GetString(*it, apath));
  if (name == "SCMP_ACT_TRACE") {
    return Fail(apath, name + " is not supported: airlock attaches no tracer");
  }
  if (name == "SCMP_ACT_NOTIFY") {
    return Fail(apath, name + " is not supported: airlock runs no listener");
  }
  auto known = std::find_if(std::begin(kActions), std::end(kActions),
                            [&](const auto& a) { return a.first == name; });
  if (known == std::end(kActions)) return Fail(apath, "unknown action " + Quote(name));
  Action a{known->second, 0};
  auto e = obj.find(errno_field);
  if (a.kind != ActionKind::kErrno) {
    if (e != obj.end()) return Fail(epath, "only valid with SCMP_ACT_ERRNO");
    return a;
  }
  a.errno_ret = EPERM;  // OCI: ERRNO without a value means EPERM
  if (e != obj.end()) {
    // errno 0 would make a refused call look successful.
    uint64_t v = TRY(GetUint(*e, epath, kMaxErrno));
    if (v == 0) return Fail(epath, "must be an errno value between 1 and 4095");
    a.errno_ret = static_cast<uint16_t>(v);
  }
  return a;
}

Result<uint32_t> ParseArch(const json& j, const std::string& path) {
  std::string name = TRY(GetString(j, path));
  constexpr std::string_view kPrefix = "SCMP_ARCH_";
  std::string lower = name.starts_with(kPrefix) ? name.substr(kPrefix.size()) : "";
  for (char& c : lower) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  uint32_t token = lower.empty() ? 0 : seccomp_arch_resolve_name(lower.c_str());
  if (token == 0) return Fail(path, "unknown architecture " + Quote(name));
  return token;
}

// A names entry: a syscall name, or a raw number "457" / "<arch>:457" meaning
// that number on the native arch. Returns nullopt for an entry that does not
// apply here (a raw number for an arch that is not in this filter, or an
// unknown name in an optional rule).
Result<std::optional<SyscallRef>> ParseName(const json& j, const std::string& path, bool optional,
                                            const std::vector<uint32_t>& compat) {
  std::string name = TRY(GetString(j, path));
  if (name.empty()) return Fail(path, "empty syscall name");
  const uint32_t native = seccomp_arch_native();
  std::string_view num = name;
  uint32_t arch = native;
  size_t colon = name.find(':');
  if (colon != std::string::npos) {
    std::string prefix = name.substr(0, colon);
    arch = seccomp_arch_resolve_name(prefix.c_str());
    if (arch == 0) {
      return Fail(path, "unknown architecture " + Quote(prefix) + " in " + Quote(name));
    }
    num.remove_prefix(colon + 1);
  }
  bool digits = !num.empty() && num.find_first_not_of("0123456789") == std::string_view::npos;
  if (colon != std::string::npos && !digits) {
    return Fail(path, "expected <arch>:<number>, got " + Quote(name));
  }
  if (digits) {
    uint64_t nr = 0;
    for (char c : num) nr = std::min<uint64_t>(nr * 10 + (c - '0'), uint64_t{1} << 32);
    if (nr > kMaxRawNr) return Fail(path, "syscall number " + Quote(name) + " is out of range");
    if (arch == native) {
      return std::optional<SyscallRef>(SyscallRef{name, static_cast<int>(nr), true});
    }
    // Nothing translates raw numbers between ABIs: they can only be native.
    if (std::find(compat.begin(), compat.end(), arch) != compat.end()) {
      return Fail(path, "raw syscall numbers are only supported for the native architecture (" +
                            ArchName(native) + "), not " + Quote(name));
    }
    return std::optional<SyscallRef>();
  }
  int nr = seccomp_syscall_resolve_name(name.c_str());
  if (nr != __NR_SCMP_ERROR) return std::optional<SyscallRef>(SyscallRef{name, nr, false});
  if (optional) return std::optional<SyscallRef>();
  return Fail(path, "unknown syscall " + Quote(name) + " (libseccomp " + LibseccompVersion() +
                        "; use a raw number or \"optional\": true)");
}

Result<ArgCondition> ParseArg(const json& j, const std::string& path) {
  if (!j.is_object()) return WrongType(path, "an object", j);
  TRY(CheckKeys(j, path, {"index", "value", "valueTwo", "op", "comment"}));
  for (const char* key : {"index", "value", "op"}) {
    if (!j.contains(key)) return Fail(Sub(path, key), "missing");
  }
  ArgCondition a;
  a.index = static_cast<unsigned>(TRY(GetUint(j["index"], Sub(path, "index"), 5)));
  a.value = TRY(GetUint(j["value"], Sub(path, "value"), UINT64_MAX));
  if (j.contains("valueTwo")) {
    a.value_two = TRY(GetUint(j["valueTwo"], Sub(path, "valueTwo"), UINT64_MAX));
  }
  std::string op = TRY(GetString(j["op"], Sub(path, "op")));
  auto known =
      std::find_if(std::begin(kOps), std::end(kOps), [&](const OpName& o) { return o.name == op; });
  if (known == std::end(kOps)) return Fail(Sub(path, "op"), "unknown operator " + Quote(op));
  a.op = known->op;
  if (a.op == ArgOp::kMaskedEq && (a.value_two & ~a.value) != 0) {
    return Fail(Sub(path, "valueTwo"),
                "has bits outside the mask in \"value\"; the rule could never match");
  }
  if (a.op != ArgOp::kMaskedEq && a.value_two != 0) {
    return Fail(Sub(path, "valueTwo"), "only used with SCMP_CMP_MASKED_EQ");
  }
  return a;
}

Result<ArgNotIn> ParseArgNotIn(const json& j, const std::string& path) {
  if (!j.is_object()) return WrongType(path, "an object", j);
  TRY(CheckKeys(j, path, {"index", "mask", "values", "comment"}));
  for (const char* key : {"index", "values"}) {
    if (!j.contains(key)) return Fail(Sub(path, key), "missing");
  }
  ArgNotIn n;
  n.index = static_cast<unsigned>(TRY(GetUint(j["index"], Sub(path, "index"), 5)));
  n.mask = UINT64_MAX;
  if (j.contains("mask")) n.mask = TRY(GetUint(j["mask"], Sub(path, "mask"), UINT64_MAX));
  if (n.mask == 0) return Fail(Sub(path, "mask"), "must not be 0");
  const json& vals = j["values"];
  if (!vals.is_array() || vals.empty() || vals.size() > kMaxNotInValues) {
    return Fail(Sub(path, "values"),
                "expected an array of 1 to " + std::to_string(kMaxNotInValues) + " integers");
  }
  for (size_t i = 0; i < vals.size(); ++i) {
    const std::string vpath = At(Sub(path, "values"), i);
    uint64_t v = TRY(GetUint(vals[i], vpath, UINT64_MAX));
    if ((v & ~n.mask) != 0) return Fail(vpath, "has bits outside \"mask\"; it could never match");
    n.values.push_back(v);
  }
  return n;
}

Result<Rule> ParseRule(const json& j, const std::string& path,
                       const std::vector<uint32_t>& compat) {
  if (!j.is_object()) return WrongType(path, "an object", j);
  TRY(CheckKeys(j, path,
                {"names", "action", "errnoRet", "args", "argNotIn", "optional", "comment"}));
  Rule r;
  r.where = path;
  bool optional = false;
  if (j.contains("optional")) {
    if (!j["optional"].is_boolean()) {
      return WrongType(Sub(path, "optional"), "a boolean", j["optional"]);
    }
    optional = j["optional"].get<bool>();
  }
  r.action = TRY(ParseAction(j, path, "action", "errnoRet"));

  const std::string npath = Sub(path, "names");
  if (!j.contains("names")) return Fail(npath, "missing");
  const json& names = j["names"];
  if (!names.is_array()) return WrongType(npath, "an array", names);
  if (names.empty()) return Fail(npath, "empty");
  std::set<std::string> seen;
  for (size_t i = 0; i < names.size(); ++i) {
    auto ref = TRY(ParseName(names[i], At(npath, i), optional, compat));
    if (!ref) continue;
    if (!seen.insert(ref->name).second) {
      return Fail(At(npath, i), Quote(ref->name) + " is listed twice");
    }
    r.syscalls.push_back(std::move(*ref));
  }

  if (j.contains("args") && !j["args"].is_null()) {
    const json& args = j["args"];
    if (!args.is_array()) return WrongType(Sub(path, "args"), "an array", args);
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string apath = At(Sub(path, "args"), i);
      ArgCondition a = TRY(ParseArg(args[i], apath));
      for (size_t k = 0; k < r.args.size(); ++k) {
        // libseccomp cannot AND two tests of one argument in a rule.
        if (r.args[k].index == a.index) {
          return Fail(apath, "tests argument " + std::to_string(a.index) + " again (also in args[" +
                                 std::to_string(k) + "]); use two rules or \"argNotIn\"");
        }
      }
      r.args.push_back(a);
    }
  }
  if (j.contains("argNotIn")) {
    r.arg_not_in = TRY(ParseArgNotIn(j["argNotIn"], Sub(path, "argNotIn")));
    for (const ArgCondition& a : r.args) {
      if (a.index == r.arg_not_in->index) {
        return Fail(Sub(path, "argNotIn"),
                    "tests argument " + std::to_string(a.index) + ", which \"args\" tests too");
      }
    }
  }
  return r;
}

// libseccomp gives an unconditional rule precedence over every conditional
// rule for the same call, silently: a refusal written as a conditional rule
// next to an unconditional allow would be dropped. Such profiles are refused.
Result<void> CheckOverlaps(const std::vector<Rule>& rules) {
  std::map<int, size_t> first_rule;  // native number -> index in rules
  for (size_t i = 0; i < rules.size(); ++i) {
    const Rule& r = rules[i];
    for (const SyscallRef& s : r.syscalls) {
      auto [it, inserted] = first_rule.emplace(s.native_nr, i);
      if (inserted) continue;
      const Rule& other = rules[it->second];
      const bool uncond = r.args.empty() && !r.arg_not_in;
      const bool other_uncond = other.args.empty() && !other.arg_not_in;
      if (!uncond && !other_uncond) continue;
      std::string msg = Quote(s.name) + " is already in " + other.where;
      if (uncond != other_uncond) {
        msg +=
            "; libseccomp ignores conditional rules for a call that also has an unconditional "
            "one (see \"argNotIn\")";
      }
      return Fail(Sub(r.where, "names"), msg);
    }
  }
  return {};
}

// A first pass over the text that finds where it stops being JSON (parse()
// without exceptions only says that it failed) and duplicate keys: nlohmann
// keeps the last one, which in a policy hides intent ("action" given twice).
struct JsonChecker : nlohmann::json_sax<json> {
  size_t error_at = 0;
  std::string duplicate;
  std::vector<std::optional<std::set<std::string>>> open;  // keys per open object

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    return open.emplace_back(std::set<std::string>()), true;
  }
  bool start_array(std::size_t) override { return open.emplace_back(), true; }
  bool end_object() override { return open.pop_back(), true; }
  bool end_array() override { return open.pop_back(), true; }
  bool key(string_t& k) override {
    if (!open.back()->insert(k).second && duplicate.empty()) duplicate = k;
    return true;
  }
  bool parse_error(std::size_t pos, const std::string&,
                   const nlohmann::detail::exception&) override {
    error_at = pos;
    return false;
  }
};

Result<void> CheckJson(std::string_view text) {
  JsonChecker checker;
  if (!json::sax_parse(text.begin(), text.end(), &checker)) {
    size_t end = std::min(checker.error_at > 0 ? checker.error_at - 1 : 0, text.size());
    size_t line = 1 + std::count(text.begin(), text.begin() + end, '\n');
    size_t newline = text.substr(0, end).rfind('\n');
    size_t column = end - (newline == std::string_view::npos ? 0 : newline + 1) + 1;
    return Fail("seccomp profile", "not valid JSON (line " + std::to_string(line) + ", column " +
                                       std::to_string(column) + ")");
  }
  if (!checker.duplicate.empty()) {
    return Fail("seccomp profile", "duplicate key " + Quote(checker.duplicate));
  }
  return {};
}

}  // namespace

std::string CacheKey(std::string_view profile_json) {
  Sha256 h;
  h.Update(kCompilerRevision);
  h.Update("\nlibseccomp " + LibseccompVersion() + "\narch " + ArchName(seccomp_arch_native()) +
           "\n\n");
  h.Update(profile_json);
  return h.HexFinal();
}

Result<Profile> ParseProfile(std::string_view text) {
  TRY(CheckJson(text));
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Fail("seccomp profile", "not valid JSON");
  if (!doc.is_object()) return WrongType("seccomp profile", "a JSON object", doc);
  TRY(CheckKeys(
      doc, "",
      {"defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls", "comment"}));

  Profile p;
  p.digest = CacheKey(text);
  p.default_action = TRY(ParseAction(doc, "", "defaultAction", "defaultErrnoRet"));
  auto array = [&](const char* key) -> Result<const json*> {
    if (!doc.contains(key) || doc[key].is_null()) return nullptr;
    if (!doc[key].is_array()) return WrongType(key, "an array", doc[key]);
    return &doc[key];
  };

  if (const json* archs = TRY(array("architectures"))) {
    for (size_t i = 0; i < archs->size(); ++i) {
      uint32_t token = TRY(ParseArch((*archs)[i], At("architectures", i)));
      if (token == seccomp_arch_native()) continue;  // always filtered
      if (std::find(p.architectures.begin(), p.architectures.end(), token) ==
          p.architectures.end()) {
        p.architectures.push_back(token);
      }
    }
  }
  // Filter flags (TSYNC, LOG, SPEC_ALLOW) are the runtime's business; only the
  // shape is checked.
  if (const json* flags = TRY(array("flags"))) {
    for (size_t i = 0; i < flags->size(); ++i) TRY(GetString((*flags)[i], At("flags", i)));
  }
  if (const json* sys = TRY(array("syscalls"))) {
    if (sys->size() > kMaxRules) {
      return Fail("syscalls", "more than " + std::to_string(kMaxRules) + " entries");
    }
    for (size_t i = 0; i < sys->size(); ++i) {
      Rule r = TRY(ParseRule((*sys)[i], At("syscalls", i), p.architectures));
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
    case ActionKind::kAllow:
      return SCMP_ACT_ALLOW;
    case ActionKind::kErrno:
      return SCMP_ACT_ERRNO(a.errno_ret);
    case ActionKind::kKillThread:
      return SCMP_ACT_KILL_THREAD;
    case ActionKind::kKillProcess:
      return SCMP_ACT_KILL_PROCESS;
    case ActionKind::kTrap:
      return SCMP_ACT_TRAP;
    case ActionKind::kLog:
      return SCMP_ACT_LOG;
  }
  return SCMP_ACT_KILL_PROCESS;
}

scmp_compare ScmpOp(ArgOp op) {
  for (const OpName& o : kOps) {
    if (o.op == op) return o.scmp;
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
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
      rc < 0) {
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
            return ErrnoValue(-rc, "seccomp_rule_add",
                              r.where + " " + Quote(s.name) + " on " + ArchName(arch));
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
    return ErrnoValue(
        E2BIG, "seccomp_export_bpf",
        std::to_string(n) + " instructions (max " + std::to_string(BPF_MAXINSNS) + ")");
  }
  Program prog;
  prog.insns.resize(n);
  std::memcpy(prog.insns.data(), bytes.data(), bytes.size());
  prog.digest = profile.digest;
  return prog;
}

Result<std::string> DescribePfc(const Profile& profile) {
  Ctx ctx = TRY(Build(profile));
  return ExportToMemory([&](int fd) { return seccomp_export_pfc(ctx.get(), fd); },
                        "seccomp_export_pfc");
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
  out.append(reinterpret_cast<const char*>(prog.insns.data()),
             prog.insns.size() * sizeof(sock_filter));
  out += Sha256Hex(out);
  return out;
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
  if (written && rename(tmp.c_str(), path.c_str()) < 0) {
    written = Errno("rename", tmp + " -> " + path);
  }
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
      name_or_path.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos) {
    return Fail("seccomp profile", "invalid profile name " + Quote(name_or_path));
  }
  return profiles_dir + "/" + name_or_path + ".json";
}

}  // namespace

namespace {

// Programs this process loaded, by the identity of the profile file and of
// the cache file it was checked against: a daemon loads the same profile
// for every sandbox, and reading, hashing and checking both files costs
// ~70 us each time, two stats ~3 us. Any change to either file (a rewrite,
// a rename over it, a touch) changes its inode or ctime: a miss.
struct FileId {
  std::string path;
  dev_t dev;
  ino_t ino;
  off_t size;
  int64_t mtime_ns, ctime_ns;
  auto operator<=>(const FileId&) const = default;
};
constexpr size_t kMaxLoaded = 64;

std::optional<FileId> IdOf(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) < 0) return std::nullopt;
  return FileId{path, st.st_dev, st.st_ino, st.st_size,
                int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec,
                int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec};
}

struct LoadedProgram {
  Program prog;
  FileId cache_file;
};
std::mutex loaded_mu;
std::map<std::pair<FileId, std::string>, LoadedProgram>& Loaded() {  // by (profile, cache dir)
  static std::map<std::pair<FileId, std::string>, LoadedProgram> loaded;
  return loaded;
}

std::string CacheFile(const std::string& cache_dir, const std::string& key) { return cache_dir + "/" + key + ".bpf"; }

Result<Program> LoadCachedFile(const std::string& path, const std::string& cache_dir);

}  // namespace

void ForgetLoaded() {
  std::lock_guard lock(loaded_mu);
  Loaded().clear();
}

Result<Program> LoadCached(const std::string& name_or_path, const std::string& profiles_dir,
                           const std::string& cache_dir) {
  std::string path = TRY(ProfilePath(name_or_path, profiles_dir));
  auto before = IdOf(path);
  if (before) {
    std::lock_guard lock(loaded_mu);
    if (auto it = Loaded().find({*before, cache_dir}); it != Loaded().end()) {
      if (IdOf(it->second.cache_file.path) == it->second.cache_file) return it->second.prog;
      Loaded().erase(it);
    }
  }
  Program prog = TRY(LoadCachedFile(path, cache_dir));
  // Kept only if the profile didn't change while it was read.
  auto cache_file = IdOf(CacheFile(cache_dir, prog.digest));
  if (before && cache_file && IdOf(path) == before) {
    std::lock_guard lock(loaded_mu);
    if (Loaded().size() >= kMaxLoaded) Loaded().clear();
    Loaded().insert_or_assign({*before, cache_dir}, LoadedProgram{prog, *cache_file});
  }
  return prog;
}

namespace {

Result<Program> LoadCachedFile(const std::string& path, const std::string& cache_dir) {
  std::string text = TRY(ReadFileLimited(path, kMaxProfileBytes, 0));
  std::string key = CacheKey(text);
  TRY(EnsureCacheDir(cache_dir));
  std::string cache_path = CacheFile(cache_dir, key);

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

}  // namespace

}  // namespace airlock::seccomp
