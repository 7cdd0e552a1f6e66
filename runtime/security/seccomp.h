// seccomp: OCI `linux.seccomp` JSON profiles (seccomp-profiles/*.json),
// compiled to classic BPF with libseccomp and cached on disk by content hash.
//
// Everything that allocates (reading, parsing, compiling, the cache) happens
// before the sandbox's child is cloned; the child only calls Install() with a
// Program it already holds. The profile format and airlock's extensions
// ("optional", raw syscall numbers, "argNotIn") are described in
// seccomp-profiles/README.md.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::seccomp {

// What the kernel does with a matching system call.
enum class ActionKind { kAllow, kErrno, kKillThread, kKillProcess, kTrap, kLog };

struct Action {
  ActionKind kind = ActionKind::kErrno;
  uint16_t errno_ret = 0;  // kErrno only: 1..4095
  bool operator==(const Action&) const = default;
};

// One OCI `args` entry. For kMaskedEq, `value` is the mask and `value_two`
// the datum: (arg & value) == value_two.
enum class ArgOp { kNe, kLt, kLe, kEq, kGe, kGt, kMaskedEq };

struct ArgCondition {
  unsigned index = 0;  // 0..5
  uint64_t value = 0;
  uint64_t value_two = 0;
  ArgOp op = ArgOp::kEq;
};

// The "argNotIn" extension: the rule applies only when
// (arg[index] & mask) is none of `values`; those fall to the default action.
struct ArgNotIn {
  unsigned index = 0;
  uint64_t mask = 0;
  std::vector<uint64_t> values;
};

// One system call a rule names, resolved when the profile is parsed.
struct SyscallRef {
  std::string name;  // as written in the profile
  // libseccomp's number for the native arch; a negative pseudo number for a
  // call that exists only on other arches. For a raw entry, the number itself.
  int native_nr = 0;
  bool raw = false;  // a raw number ("457", "x86_64:457"): native arch only
};

struct Rule {
  std::string where;  // "syscalls[3]", for error messages from Compile
  std::vector<SyscallRef> syscalls;
  Action action;
  std::vector<ArgCondition> args;  // all must hold (distinct indexes)
  std::optional<ArgNotIn> arg_not_in;
};

struct Profile {
  Action default_action;
  std::vector<uint32_t> architectures;  // libseccomp tokens; native excluded
  std::vector<Rule> rules;
  // CacheKey() of the text this profile was parsed from.
  std::string digest;
};

// A compiled filter, ready to install without allocating.
struct Program {
  std::vector<sock_filter> insns;
  std::string digest;  // CacheKey() of the profile text that produced it
  // A view of insns for seccomp(2); valid while this Program lives unchanged.
  sock_fprog fprog() const;
};

// The content hash that names a compiled profile: SHA-256 (hex) over the
// profile's bytes, the libseccomp version in use, the native architecture
// and airlock's compiler revision. Any of them changing invalidates a cache.
std::string CacheKey(std::string_view profile_json);

// Parses and validates an OCI linux.seccomp document. Every error names the
// field, e.g. `syscalls[3].names[1]: unknown syscall "foo"`.
Result<Profile> ParseProfile(std::string_view json);

// Compiles a parsed profile to BPF with libseccomp (no_new_privs is left to
// the caller: the runtime sets it itself before Install()).
Result<Program> Compile(const Profile& profile);

// libseccomp's pseudo-filter-code rendering of the compiled profile, for
// debugging and `airlock` diagnostics.
Result<std::string> DescribePfc(const Profile& profile);

// Loads `name_or_path` (a name without '/' means <profiles_dir>/<name>.json,
// anything else is a path) and returns its compiled filter, from
// <cache_dir>/<CacheKey>.bpf when present and intact, else compiling it and
// writing that file atomically (tmp + rename). cache_dir is created 0700 if
// missing; its parent must exist. The process keeps what it loaded, by the
// identity (inode, size, mtime, ctime) of the profile and of the cache file:
// loading it again costs two stats while neither changes.
Result<Program> LoadCached(const std::string& name_or_path, const std::string& profiles_dir,
                           const std::string& cache_dir);
// Forgets what LoadCached kept, as a new process would start.
void ForgetLoaded();

// Installs the filter on the calling thread with seccomp(SECCOMP_SET_MODE_FILTER).
// Async-signal-safe and allocation-free: it runs in a freshly cloned child.
// The caller must have set no_new_privs (or hold CAP_SYS_ADMIN). Returns 0 or
// an errno value.
int Install(const sock_fprog& prog) noexcept;

}  // namespace airlock::seccomp
