// seccomp profiles: parsing and its errors, compilation, the on-disk cache,
// and the compiled filters' real effect on a forked child.
#include "runtime/security/seccomp.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "runtime/core/sha256.h"

namespace sc = airlock::seccomp;
namespace fs = std::filesystem;

namespace {

const std::string kProfiles = std::string(AIRLOCK_SOURCE_DIR) + "/seccomp-profiles";

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

sc::Program CompileFile(const std::string& name) {
  auto profile = sc::ParseProfile(ReadText(kProfiles + "/" + name + ".json"));
  INFO((profile ? "" : profile.error().Message()));
  REQUIRE(profile);
  auto prog = sc::Compile(*profile);
  INFO((prog ? "" : prog.error().Message()));
  REQUIRE(prog);
  return std::move(*prog);
}

// The error message ParseProfile gives for `json`; fails if it parses.
std::string ParseError(const std::string& json) {
  auto p = sc::ParseProfile(json);
  INFO(json);
  REQUIRE_FALSE(p);
  return p.error().Message();
}

std::string WithRule(const std::string& rule) {
  return R"({"defaultAction":"SCMP_ACT_ERRNO","syscalls":[)" + rule + "]}";
}

// ---- a classic-BPF interpreter for seccomp filters, enough for what
// libseccomp emits; lets the tests ask what a filter decides for ABIs this
// kernel cannot run (x32).
constexpr uint32_t kBadInsn = 0xdeadbeef;

uint32_t RunBpf(const sc::Program& prog, uint32_t arch, uint32_t nr,
                std::array<uint64_t, 6> args = {}) {
  seccomp_data data{};
  data.nr = static_cast<int>(nr);
  data.arch = arch;
  for (int i = 0; i < 6; ++i) data.args[i] = args[i];
  uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
  auto load = [&](uint32_t off) {
    uint32_t w = kBadInsn;
    if (off % 4 == 0 && off + 4 <= sizeof(data))
      std::memcpy(&w, reinterpret_cast<const char*>(&data) + off, 4);
    return w;
  };
  for (size_t pc = 0; pc < prog.insns.size(); ++pc) {
    const sock_filter& f = prog.insns[pc];
    uint32_t src = (BPF_SRC(f.code) == BPF_X) ? x : f.k;
    switch (BPF_CLASS(f.code)) {
      case BPF_LD:
        if (BPF_MODE(f.code) == BPF_ABS)
          a = load(f.k);
        else if (BPF_MODE(f.code) == BPF_IMM)
          a = f.k;
        else if (BPF_MODE(f.code) == BPF_MEM)
          a = mem[f.k % BPF_MEMWORDS];
        else
          return kBadInsn;
        break;
      case BPF_LDX:
        if (BPF_MODE(f.code) == BPF_IMM)
          x = f.k;
        else if (BPF_MODE(f.code) == BPF_MEM)
          x = mem[f.k % BPF_MEMWORDS];
        else
          return kBadInsn;
        break;
      case BPF_ST:
        mem[f.k % BPF_MEMWORDS] = a;
        break;
      case BPF_STX:
        mem[f.k % BPF_MEMWORDS] = x;
        break;
      case BPF_ALU:
        switch (BPF_OP(f.code)) {
          case BPF_ADD:
            a += src;
            break;
          case BPF_SUB:
            a -= src;
            break;
          case BPF_AND:
            a &= src;
            break;
          case BPF_OR:
            a |= src;
            break;
          case BPF_LSH:
            a <<= src;
            break;
          case BPF_RSH:
            a >>= src;
            break;
          case BPF_NEG:
            a = -a;
            break;
          default:
            return kBadInsn;
        }
        break;
      case BPF_JMP: {
        bool take;
        switch (BPF_OP(f.code)) {
          case BPF_JA:
            pc += f.k;
            continue;
          case BPF_JEQ:
            take = a == src;
            break;
          case BPF_JGT:
            take = a > src;
            break;
          case BPF_JGE:
            take = a >= src;
            break;
          case BPF_JSET:
            take = (a & src) != 0;
            break;
          default:
            return kBadInsn;
        }
        pc += take ? f.jt : f.jf;
        break;
      }
      case BPF_RET:
        return BPF_RVAL(f.code) == BPF_A ? a : f.k;
      case BPF_MISC:
        if (BPF_MISCOP(f.code) == BPF_TAX)
          x = a;
        else
          a = x;
        break;
      default:
        return kBadInsn;
    }
  }
  return kBadInsn;  // fell off the end
}

constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t kKillProcess = SECCOMP_RET_KILL_PROCESS;
constexpr uint32_t Errno(uint32_t e) { return SECCOMP_RET_ERRNO | e; }
constexpr uint32_t kX32 = 0x40000000;

// Forks; the child sets no_new_privs, installs `prog` and exits with what
// `body` returns. Returns the wait status.
int RunFiltered(const sc::Program& prog, const std::function<int()>& body) {
  sock_fprog fprog = prog.fprog();
  fflush(nullptr);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(120);
    if (int err = sc::Install(fprog); err != 0) {
      fprintf(stderr, "Install: %s\n", strerror(err));
      _exit(121);
    }
    _exit(body());
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  return status;
}

// A 32-bit (i386) system call from this 64-bit process; returns -errno.
long Int80(long nr, long a = 0, long b = 0, long c = 0) {
  long ret;
  asm volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return ret;
}

// Whether this kernel runs i386 system calls (IA32 emulation may be off).
bool HaveIa32() {
  static const bool have = [] {
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) _exit(Int80(20 /* getpid */) == getpid() ? 0 : 1);
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
  }();
  return have;
}

}  // namespace

TEST_CASE("sha256 known answers", "[seccomp][sha256]") {
  CHECK(airlock::Sha256Hex("") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(airlock::Sha256Hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(airlock::Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Fed in uneven pieces across block boundaries.
  airlock::Sha256 h;
  std::string million(1000000, 'a');
  for (size_t off = 0; off < million.size(); off += 997)
    h.Update(std::string_view(million).substr(off, 997));
  CHECK(h.HexFinal() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("profile errors name the field", "[seccomp][parse]") {
  using Catch::Matchers::Contains;
  using Catch::Matchers::StartsWith;
  CHECK_THAT(ParseError("{"), Contains("not valid JSON (line 1"));
  CHECK_THAT(ParseError("{\n\"defaultAction\": \"SCMP_ACT_ALLOW\",\n  ]"), Contains("line 3"));
  CHECK_THAT(ParseError("[]"), Contains("expected a JSON object, got array"));
  CHECK_THAT(ParseError("{}"), StartsWith("defaultAction: missing"));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_NOPE"})"),
             StartsWith("defaultAction: unknown action \"SCMP_ACT_NOPE\""));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":1})"),
             StartsWith("defaultErrnoRet: only valid with SCMP_ACT_ERRNO"));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":0})"),
             StartsWith("defaultErrnoRet: must be an errno"));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_ERRNO","defualtErrnoRet":1})"),
             StartsWith("defualtErrnoRet: unknown field"));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_ERRNO","listenerPath":"/x"})"),
             StartsWith("listenerPath: unknown field"));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_ERRNO","defaultAction":"SCMP_ACT_ALLOW"})"),
             Contains("duplicate key \"defaultAction\""));
  CHECK_THAT(
      ParseError(
          R"({"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86","SCMP_ARCH_Z80"]})"),
      StartsWith("architectures[1]: unknown architecture \"SCMP_ARCH_Z80\""));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_ERRNO","architectures":"SCMP_ARCH_X86"})"),
             StartsWith("architectures: expected an array"));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_ERRNO","flags":[1]})"),
             StartsWith("flags[0]: expected a string"));
  CHECK_THAT(ParseError(R"({"defaultAction":"SCMP_ACT_ERRNO","syscalls":{}})"),
             StartsWith("syscalls: expected an array, got object"));

  const std::string ok =
      R"({"names":["read"],"action":"SCMP_ACT_ALLOW"},{"names":["write"],"action":"SCMP_ACT_ALLOW"},{"names":["close"],"action":"SCMP_ACT_ALLOW"},)";
  CHECK(ParseError(WithRule(ok + R"({"names":["getpid","foo"],"action":"SCMP_ACT_ALLOW"})")) ==
        "syscalls[3].names[1]: unknown syscall \"foo\" (libseccomp 2.5.4; use a raw number or "
        "\"optional\": true)");
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_FOO"})")),
             StartsWith("syscalls[0].action: unknown action \"SCMP_ACT_FOO\""));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_TRACE"})")),
             StartsWith("syscalls[0].action: SCMP_ACT_TRACE is not supported"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_NOTIFY"})")),
             StartsWith("syscalls[0].action: SCMP_ACT_NOTIFY is not supported"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"]})")),
             StartsWith("syscalls[0].action: missing"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"],"action":7})")),
             StartsWith("syscalls[0].action: expected a string, got number"));
  CHECK_THAT(
      ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":4096})")),
      StartsWith("syscalls[0].errnoRet: 4096 is out of range (max 4095)"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":-1})")),
             StartsWith("syscalls[0].errnoRet: must not be negative"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":"1"})")),
             StartsWith("syscalls[0].errnoRet: expected a non-negative integer, got string"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":1.5})")),
             StartsWith("syscalls[0].errnoRet: expected a non-negative integer"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_ALLOW","errnoRet":1})")),
             StartsWith("syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO"));
  CHECK_THAT(ParseError(WithRule(R"({"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names: missing"));
  CHECK_THAT(ParseError(WithRule(R"({"names":[],"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names: empty"));
  CHECK_THAT(ParseError(WithRule(R"({"names":"read","action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names: expected an array, got string"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read",3],"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names[1]: expected a string, got number"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read",""],"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names[1]: empty syscall name"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["read","read"],"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names[1]: \"read\" is listed twice"));
  CHECK_THAT(ParseError(WithRule(R"({"nmes":["read"],"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].nmes: unknown field"));
  CHECK_THAT(
      ParseError(WithRule(R"({"names":["read"],"action":"SCMP_ACT_ALLOW","optional":"yes"})")),
      StartsWith("syscalls[0].optional: expected a boolean"));
  CHECK_THAT(ParseError(WithRule(R"("read")")),
             StartsWith("syscalls[0]: expected an object, got string"));

  auto arg = [](const std::string& a) {
    return WithRule(R"({"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[)" + a + "]}");
  };
  CHECK_THAT(ParseError(arg(R"({"index":6,"value":0,"op":"SCMP_CMP_EQ"})")),
             StartsWith("syscalls[0].args[0].index: 6 is out of range (max 5)"));
  CHECK_THAT(
      ParseError(arg(
          R"({"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":1,"value":0,"op":"SCMP_CMP_BETWEEN"})")),
      StartsWith("syscalls[0].args[1].op: unknown operator \"SCMP_CMP_BETWEEN\""));
  CHECK_THAT(ParseError(arg(R"({"index":0,"op":"SCMP_CMP_EQ"})")),
             StartsWith("syscalls[0].args[0].value: missing"));
  CHECK_THAT(ParseError(arg(R"({"index":0,"value":0})")),
             StartsWith("syscalls[0].args[0].op: missing"));
  CHECK_THAT(ParseError(arg(R"({"index":0,"value":-5,"op":"SCMP_CMP_EQ"})")),
             StartsWith("syscalls[0].args[0].value: must not be negative"));
  CHECK_THAT(ParseError(arg(R"({"index":0,"value":1,"valueTwo":3,"op":"SCMP_CMP_MASKED_EQ"})")),
             StartsWith("syscalls[0].args[0].valueTwo: has bits outside the mask"));
  CHECK_THAT(ParseError(arg(R"({"index":0,"value":1,"valueTwo":3,"op":"SCMP_CMP_EQ"})")),
             StartsWith("syscalls[0].args[0].valueTwo: only used with SCMP_CMP_MASKED_EQ"));
  CHECK_THAT(
      ParseError(arg(
          R"({"index":0,"value":1,"op":"SCMP_CMP_NE"},{"index":0,"value":2,"op":"SCMP_CMP_NE"})")),
      StartsWith("syscalls[0].args[1]: tests argument 0 again"));
  CHECK_THAT(ParseError(arg(R"({"index":0,"value":1,"op":"SCMP_CMP_EQ","vaule":2})")),
             StartsWith("syscalls[0].args[0].vaule: unknown field"));
  CHECK_THAT(ParseError(arg(R"(7)")),
             StartsWith("syscalls[0].args[0]: expected an object, got number"));

  auto notin = [](const std::string& n) {
    return WithRule(R"({"names":["ioctl"],"action":"SCMP_ACT_ALLOW","argNotIn":)" + n + "}");
  };
  CHECK_THAT(ParseError(notin(R"({"index":1,"values":[]})")),
             StartsWith("syscalls[0].argNotIn.values: expected an array of 1 to 16 integers"));
  CHECK_THAT(ParseError(notin(R"({"index":1,"mask":255,"values":[256]})")),
             StartsWith("syscalls[0].argNotIn.values[0]: has bits outside \"mask\""));
  CHECK_THAT(ParseError(notin(R"({"values":[1]})")),
             StartsWith("syscalls[0].argNotIn.index: missing"));
  CHECK_THAT(
      ParseError(WithRule(
          R"({"names":["ioctl"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":1,"op":"SCMP_CMP_EQ"}],"argNotIn":{"index":1,"values":[2]}})")),
      StartsWith("syscalls[0].argNotIn: tests argument 1, which \"args\" tests too"));

  // libseccomp would silently drop the conditional refusal here.
  CHECK_THAT(
      ParseError(WithRule(
          R"({"names":["ioctl"],"action":"SCMP_ACT_ALLOW"},{"names":["ioctl"],"action":"SCMP_ACT_KILL","args":[{"index":1,"value":21522,"op":"SCMP_CMP_EQ"}]})")),
      StartsWith("syscalls[1].names: \"ioctl\" is already in syscalls[0]; libseccomp ignores "
                 "conditional rules"));
  CHECK_THAT(
      ParseError(WithRule(
          R"({"names":["read","write"],"action":"SCMP_ACT_ALLOW"},{"names":["write"],"action":"SCMP_ACT_ERRNO"})")),
      StartsWith("syscalls[1].names: \"write\" is already in syscalls[0]"));
  // A raw number is the same call as its name.
  CHECK_THAT(
      ParseError(WithRule(
          R"({"names":["getpid"],"action":"SCMP_ACT_ALLOW"},{"names":["39"],"action":"SCMP_ACT_LOG"})")),
      StartsWith("syscalls[1].names: \"39\" is already in syscalls[0]"));
}

TEST_CASE("optional rules skip names libseccomp does not know", "[seccomp][parse]") {
  auto p = sc::ParseProfile(
      WithRule(R"({"names":["getpid","not_a_syscall"],"action":"SCMP_ACT_ALLOW","optional":true},)"
               R"({"names":["also_not_one"],"action":"SCMP_ACT_ALLOW","optional":true})"));
  INFO((p ? "" : p.error().Message()));
  REQUIRE(p);
  REQUIRE(p->rules.size() == 1);  // the rule naming nothing known is dropped
  REQUIRE(p->rules[0].syscalls.size() == 1);
  CHECK(p->rules[0].syscalls[0].name == "getpid");
  CHECK(p->rules[0].syscalls[0].native_nr == SYS_getpid);
}

TEST_CASE("raw syscall numbers mean the native arch", "[seccomp][parse]") {
  using Catch::Matchers::StartsWith;
  auto p = sc::ParseProfile(
      R"({"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":13,"architectures":["SCMP_ARCH_X86"],"syscalls":[
      {"names":["457","x86_64:458","aarch64:999"],"action":"SCMP_ACT_ALLOW"},
      {"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]})");
  INFO((p ? "" : p.error().Message()));
  REQUIRE(p);
  REQUIRE(p->rules[0].syscalls.size() == 2);  // aarch64 is not in this filter: skipped
  CHECK(p->rules[0].syscalls[0].raw);
  CHECK(p->rules[0].syscalls[0].native_nr == 457);
  CHECK(p->rules[0].syscalls[1].native_nr == 458);

  auto prog = sc::Compile(*p);
  REQUIRE(prog);
  CHECK(RunBpf(*prog, AUDIT_ARCH_X86_64, 457) == kAllow);
  CHECK(RunBpf(*prog, AUDIT_ARCH_X86_64, 458) == kAllow);
  CHECK(RunBpf(*prog, AUDIT_ARCH_X86_64, 459) == Errno(13));
  CHECK(RunBpf(*prog, AUDIT_ARCH_X86_64, SYS_getpid) == kAllow);
  // Native only: i386's 457 is another call and stays refused.
  CHECK(RunBpf(*prog, AUDIT_ARCH_I386, 457) == Errno(13));
  CHECK(RunBpf(*prog, AUDIT_ARCH_I386, 20 /* getpid */) == kAllow);

  CHECK_THAT(
      ParseError(
          R"({"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],"syscalls":[{"names":["x86:10"],"action":"SCMP_ACT_ALLOW"}]})"),
      StartsWith("syscalls[0].names[0]: raw syscall numbers are only supported for the native "
                 "architecture"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["x86_64:abc"],"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names[0]: expected <arch>:<number>"));
  CHECK_THAT(ParseError(WithRule(R"({"names":["vax:1"],"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names[0]: unknown architecture \"vax\""));
  CHECK_THAT(ParseError(WithRule(R"({"names":["99999999999"],"action":"SCMP_ACT_ALLOW"})")),
             StartsWith("syscalls[0].names[0]: syscall number"));
}

TEST_CASE("argNotIn covers every value but the excluded ones", "[seccomp][compile]") {
  auto p = sc::ParseProfile(WithRule(
      R"({"names":["ioctl"],"action":"SCMP_ACT_ALLOW","argNotIn":{"index":1,"mask":4294967295,"values":[21522,21532]}})"));
  REQUIRE(p);
  auto prog = sc::Compile(*p);
  REQUIRE(prog);
  auto ioctl = [&](uint64_t req) { return RunBpf(*prog, AUDIT_ARCH_X86_64, SYS_ioctl, {0, req}); };
  for (uint64_t req : {0x5410ull, 0x5411ull, 0x5413ull, 0x541bull, 0x541dull, 0x5401ull, 0ull,
                       0xffffffffull, 0xffffffff80045430ull, 0x100005413ull}) {
    INFO(req);
    CHECK(ioctl(req) == kAllow);
  }
  // The kernel truncates the request to 32 bits: high bits must not help.
  for (uint64_t req : {0x5412ull, 0x541cull, 0x100005412ull, 0xffffffff0000541cull}) {
    INFO(req);
    CHECK(ioctl(req) == Errno(EPERM));
  }
}

TEST_CASE("shipped profiles parse and compile", "[seccomp][profiles]") {
  for (const char* name : {"default", "strict", "compat32"}) {
    INFO(name);
    sc::Program prog = CompileFile(name);
    CHECK(prog.insns.size() > 100);
    CHECK(prog.insns.size() <= BPF_MAXINSNS);
    CHECK(prog.digest == sc::CacheKey(ReadText(kProfiles + "/" + name + ".json")));
    CHECK(prog.digest.size() == 64);
  }
}

TEST_CASE("default.json decisions per ABI", "[seccomp][profiles]") {
  sc::Program p = CompileFile("default");
  const uint32_t x64 = AUDIT_ARCH_X86_64, i386 = AUDIT_ARCH_I386;
  CHECK(RunBpf(p, x64, SYS_getpid) == kAllow);
  CHECK(RunBpf(p, x64, SYS_keyctl) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_clone3) == Errno(ENOSYS));
  CHECK(RunBpf(p, x64, SYS_clone,
               {CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD}) == kAllow);
  CHECK(RunBpf(p, x64, SYS_clone, {SIGCHLD}) == kAllow);
  for (uint64_t ns : {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWUTS,
                      CLONE_NEWIPC, CLONE_NEWCGROUP, 0x80}) {
    INFO(ns);
    CHECK(RunBpf(p, x64, SYS_clone, {ns | SIGCHLD}) == Errno(EPERM));
  }
  CHECK(RunBpf(p, x64, SYS_socket, {AF_INET}) == kAllow);
  CHECK(RunBpf(p, x64, SYS_socket, {40 /* AF_VSOCK */}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_socket, {0x100000028ull}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_personality, {0xffffffff}) == kAllow);
  CHECK(RunBpf(p, x64, SYS_personality, {0x0040000 /* ADDR_NO_RANDOMIZE */}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_ioctl, {0, TCGETS}) == kAllow);
  CHECK(RunBpf(p, x64, SYS_ioctl, {0, TIOCSTI}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, 462 /* mseal */) == kAllow);
  CHECK(RunBpf(p, x64, 457 /* statmount */) == Errno(EPERM));
  for (long nr :
       {SYS_unshare, SYS_setns, SYS_mount, SYS_ptrace, SYS_bpf, SYS_perf_event_open,
        SYS_io_uring_setup, SYS_init_module, SYS_kexec_load, SYS_userfaultfd, SYS_open_by_handle_at,
        SYS_reboot, SYS_syslog, SYS_settimeofday, SYS_clock_settime, SYS_adjtimex, SYS_fsopen,
        SYS_pivot_root, SYS_process_vm_readv}) {
    INFO(nr);
    CHECK(RunBpf(p, x64, static_cast<uint32_t>(nr)) == Errno(EPERM));
  }
  // 64-bit only: the 32-bit ABIs are refused outright.
  CHECK(RunBpf(p, i386, 20 /* getpid */) == kKillProcess);
  CHECK(RunBpf(p, x64, kX32 | 39 /* getpid */) == kKillProcess);
  CHECK(RunBpf(p, AUDIT_ARCH_AARCH64, 172) == kKillProcess);
}

TEST_CASE("compat32.json filters the 32-bit ABIs by the same names", "[seccomp][profiles]") {
  sc::Program p = CompileFile("compat32");
  const uint32_t x64 = AUDIT_ARCH_X86_64, i386 = AUDIT_ARCH_I386;
  CHECK(RunBpf(p, x64, SYS_getpid) == kAllow);
  CHECK(RunBpf(p, x64, SYS_keyctl) == Errno(EPERM));
  CHECK(RunBpf(p, i386, 20 /* getpid */) == kAllow);
  CHECK(RunBpf(p, i386, 192 /* mmap2 */) == kAllow);
  CHECK(RunBpf(p, i386, 288 /* keyctl */) == Errno(EPERM));
  CHECK(RunBpf(p, i386, 310 /* unshare */) == Errno(EPERM));
  CHECK(RunBpf(p, i386, 435 /* clone3 */) == Errno(ENOSYS));
  CHECK(RunBpf(p, i386, 120 /* clone */, {CLONE_NEWUSER}) == Errno(EPERM));
  CHECK(RunBpf(p, i386, 102 /* socketcall: arguments out of reach */) == Errno(EPERM));
  CHECK(RunBpf(p, i386, 54 /* ioctl */, {0, TIOCSTI}) == Errno(EPERM));
  // x32 shares x86_64's audit arch; its numbers carry bit 30.
  CHECK(RunBpf(p, x64, kX32 | 39 /* getpid */) == kAllow);
  CHECK(RunBpf(p, x64, kX32 | 250 /* keyctl */) == Errno(EPERM));
  CHECK(RunBpf(p, x64, kX32 | 272 /* unshare */) == Errno(EPERM));
  CHECK(RunBpf(p, AUDIT_ARCH_AARCH64, 172) == kKillProcess);
}

TEST_CASE("strict.json decisions", "[seccomp][profiles]") {
  sc::Program p = CompileFile("strict");
  const uint32_t x64 = AUDIT_ARCH_X86_64;
  CHECK(RunBpf(p, x64, SYS_read) == kAllow);
  CHECK(RunBpf(p, x64, SYS_ioctl, {1, TCGETS}) == kAllow);
  CHECK(RunBpf(p, x64, SYS_ioctl, {1, 0xffffffff80045430ull /* TIOCGPTN, sign-extended */}) ==
        kAllow);
  CHECK(RunBpf(p, x64, SYS_ioctl, {1, TIOCSTI}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_ioctl, {1, 0x8933 /* SIOCGIFINDEX */}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_socket, {AF_UNIX}) == kAllow);
  CHECK(RunBpf(p, x64, SYS_socket, {AF_PACKET}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_socket, {40}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_personality, {0}) == Errno(EPERM));
  CHECK(RunBpf(p, x64, SYS_clone3) == Errno(ENOSYS));
  CHECK(RunBpf(p, x64, SYS_clone, {CLONE_NEWUSER | SIGCHLD}) == Errno(EPERM));
  // Native ABI only.
  CHECK(RunBpf(p, AUDIT_ARCH_I386, 20) == kKillProcess);
  CHECK(RunBpf(p, x64, kX32 | 39) == kKillProcess);
}

TEST_CASE("LoadCached compiles once and reuses the file", "[seccomp][cache]") {
  char tmpl[] = "/tmp/airlock-seccomp-test-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string root = tmpl;
  const std::string cache = root + "/cache";
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{root};

  auto first = sc::LoadCached("default", kProfiles, cache);
  INFO((first ? "" : first.error().Message()));
  REQUIRE(first);
  struct stat st;
  REQUIRE(stat(cache.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  const std::string file = cache + "/" + first->digest + ".bpf";
  REQUIRE(stat(file.c_str(), &st) == 0);
  const ino_t inode = st.st_ino;
  CHECK(first->digest == sc::CacheKey(ReadText(kProfiles + "/default.json")));
  CHECK(first->insns.size() == CompileFile("default").insns.size());

  auto second = sc::LoadCached("default", kProfiles, cache);
  REQUIRE(second);
  CHECK(second->digest == first->digest);
  REQUIRE(second->insns.size() == first->insns.size());
  CHECK(std::memcmp(second->insns.data(), first->insns.data(),
                    first->insns.size() * sizeof(sock_filter)) == 0);
  REQUIRE(stat(file.c_str(), &st) == 0);
  CHECK(st.st_ino == inode);  // a hit does not rewrite

  // By path, too: same bytes, same key, same file.
  auto by_path = sc::LoadCached(kProfiles + "/default.json", "/nonexistent", cache);
  REQUIRE(by_path);
  CHECK(by_path->digest == first->digest);

  SECTION("a corrupt cache file is replaced") {
    std::string bytes = ReadText(file);
    for (std::string broken : {std::string("garbage"), bytes.substr(0, bytes.size() / 2),
                               bytes.substr(0, 200) + char(bytes[200] ^ 1) + bytes.substr(201)}) {
      { std::ofstream(file, std::ios::binary | std::ios::trunc) << broken; }
      // The next process to load it (this one keeps its program unless the
      // file's size or times changed, which a rewrite within one clock tick
      // may not do).
      sc::ForgetLoaded();
      auto again = sc::LoadCached("default", kProfiles, cache);
      REQUIRE(again);
      REQUIRE(again->insns.size() == first->insns.size());
      CHECK(std::memcmp(again->insns.data(), first->insns.data(),
                        first->insns.size() * sizeof(sock_filter)) == 0);
      CHECK(ReadText(file) == bytes);
    }
    // No temporary files are left behind.
    size_t entries = 0;
    for (const auto& e : fs::directory_iterator(cache)) entries += e.is_regular_file();
    CHECK(entries == 1);
  }

  SECTION("a profile changed on disk is loaded again, in the same process") {
    const std::string own = root + "/own.json";
    fs::copy_file(kProfiles + "/default.json", own);
    auto before = sc::LoadCached(own, kProfiles, cache);
    REQUIRE(before);
    CHECK(before->digest == first->digest);
    // Same rules, other bytes: another cache key, so visibly reloaded.
    { std::ofstream(own, std::ios::app) << "\n"; }
    auto after = sc::LoadCached(own, kProfiles, cache);
    REQUIRE(after);
    CHECK(after->digest != before->digest);
    CHECK(after->digest == sc::CacheKey(ReadText(own)));
    // And its cache file, removed, is written again.
    fs::remove(cache + "/" + after->digest + ".bpf");
    auto rewritten = sc::LoadCached(own, kProfiles, cache);
    REQUIRE(rewritten);
    CHECK(fs::exists(cache + "/" + after->digest + ".bpf"));
  }

  SECTION("errors name the profile") {
    using Catch::Matchers::Contains;
    auto missing = sc::LoadCached("nope", kProfiles, cache);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().err == ENOENT);
    CHECK_THAT(missing.error().Message(), Contains(kProfiles + "/nope.json"));
    auto bad_name = sc::LoadCached("..", kProfiles, cache);
    REQUIRE_FALSE(bad_name);
    CHECK_THAT(bad_name.error().Message(), Contains("invalid profile name"));

    const std::string broken = root + "/broken.json";
    { std::ofstream(broken) << WithRule(R"({"names":["frobnicate"],"action":"SCMP_ACT_ALLOW"})"); }
    auto bad = sc::LoadCached(broken, kProfiles, cache);
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error().Message(),
               Contains(broken + ": syscalls[0].names[0]: unknown syscall \"frobnicate\""));

    auto no_parent = sc::LoadCached("default", kProfiles, root + "/missing/cache");
    REQUIRE_FALSE(no_parent);
    CHECK(no_parent.error().err == ENOENT);
  }
}

TEST_CASE("default.json and compat32.json confine a real process", "[seccomp][behaviour]") {
  const std::string name = GENERATE(as<std::string>{}, "default", "compat32");
  INFO(name);
  sc::Program prog = CompileFile(name);

  // Without the filter these calls fail with other errors, so EPERM/ENOSYS
  // below can only come from the filter.
  {
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    char c = 'x';
    CHECK(ioctl(fd, TIOCSTI, &c) == -1);
    CHECK(errno == ENOTTY);
    close(fd);
    CHECK(syscall(457, 0, 0, 0, 0) == -1);
    CHECK(errno != EPERM);
    CHECK(syscall(SYS_clone3, nullptr, 0) == -1);
    CHECK(errno != ENOSYS);
  }

  // default.json kills 32-bit calls (its own test below); compat32 filters them.
  const bool ia32 = HaveIa32() && name == "compat32";
  if (!HaveIa32()) WARN("skipped the i386 checks: this kernel has no IA32 emulation");
  int status = RunFiltered(prog, [ia32] {
    errno = 0;
    if (syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0) != -1 || errno != EPERM)
      return 10;
    if (syscall(SYS_clone3, nullptr, 0) != -1 || errno != ENOSYS) return 11;
    if (unshare(CLONE_NEWUSER) != -1 || errno != EPERM) return 12;
    if (syscall(457, 0, 0, 0, 0) != -1 || errno != EPERM)
      return 13;  // statmount, newer than libseccomp
    if (ioctl(0, TIOCSTI, "x") != -1 || errno != EPERM) return 14;
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0) return 15;
    if (ioctl(fd, TIOCSTI, "x") != -1 || errno != EPERM) return 16;
    if (syscall(SYS_ioctl, fd, 0x100005412ull, "x") != -1 || errno != EPERM) return 17;
    if (ioctl(fd, TCGETS, nullptr) != -1 || errno != ENOTTY)
      return 18;  // other ioctls reach the driver
    if (write(fd, "x", 1) != 1) return 19;
    if (syscall(SYS_getpid) != getpid()) return 20;
    if (syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0) != -1 || errno != EPERM) return 21;
    if (syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, nullptr) != -1 || errno != EPERM) return 22;
    if (syscall(SYS_io_uring_setup, 1, nullptr) != -1 || errno != EPERM) return 23;
    pid_t child = fork();  // glibc's fork is clone(SIGCHLD | ...): allowed
    if (child < 0) return 24;
    if (child == 0) _exit(7);
    int st = 0;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 7) return 25;
    if (!ia32) return 0;
    // The i386 ABI is filtered by the same names.
    if (Int80(20 /* getpid */) != getpid()) return 26;
    if (Int80(288 /* keyctl */, 0, -3) != -EPERM) return 27;
    if (Int80(310 /* unshare */, CLONE_NEWUSER) != -EPERM) return 28;
    return 0;
  });
  INFO("child status " << status << " (exit code = number of the failed check)");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("strict.json and default.json kill 32-bit system calls", "[seccomp][behaviour]") {
  if (!HaveIa32()) {
    WARN("skipped: this kernel has no IA32 emulation");
    return;
  }
  const std::string name = GENERATE(as<std::string>{}, "strict", "default");
  INFO(name);
  sc::Program prog = CompileFile(name);
  int status = RunFiltered(prog, [] { return Int80(20) > 0 ? 0 : 1; });
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGSYS);
}

TEST_CASE("strict.json runs shells, python, git and a C toolchain", "[seccomp][behaviour]") {
  sc::Program prog = CompileFile("strict");
  sock_fprog fprog = prog.fprog();
  char tmpl[] = "/tmp/airlock-seccomp-strict-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  {
    std::ofstream(dir + "/hello.c")
        << "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n";
  }
  { std::ofstream(dir + "/Makefile") << "hello: hello.c\n\tcc -O2 -o hello hello.c\n"; }

  struct Case {
    std::vector<std::string> argv;
    std::string expect_prefix;
    std::vector<std::string> needs = {};  // skipped when one is missing (default: argv[0])
  };
  const std::vector<Case> cases = {
      {{"/bin/sh", "-c", "echo ok"}, "ok\n"},
      {{"/bin/bash", "-c", "x=$(echo o); echo ${x}k"}, "ok\n"},
      {{"/usr/bin/python3", "-c", "print(1)"}, "1\n"},
      {{"/usr/bin/python3", "-c",
        "import subprocess,threading,json,hashlib,tempfile; "
        "print(subprocess.run(['echo','sub'],capture_output=True).stdout.decode(), end='')"},
       "sub\n"},
      {{"/usr/bin/git", "--version"}, "git version "},
      {{"/bin/sh", "-c",
        "cd " + dir +
            " && git init -q r && cd r && echo x > f && git add f && "
            "git -c user.name=a -c user.email=a@b commit -qm m && git log --format=%s"},
       "m\n"},
      {{"/usr/bin/make", "-s", "-C", dir}, "", {"/usr/bin/make", "/usr/bin/cc"}},
      {{dir + "/hello"}, "hi\n", {"/usr/bin/make", "/usr/bin/cc"}},
  };
  for (const Case& c : cases) {
    INFO(c.argv[0] << " " << (c.argv.size() > 1 ? c.argv.back() : ""));
    bool missing = false;
    for (const std::string& need :
         c.needs.empty() ? std::vector<std::string>{c.argv[0]} : c.needs) {
      if (access(need.c_str(), X_OK) != 0) {
        WARN("skipped: " << need << " is not installed");
        missing = true;
      }
    }
    if (missing) continue;
    int out[2];
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    std::vector<char*> argv;
    for (const std::string& a : c.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    fflush(nullptr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      dup2(out[1], 1);
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || sc::Install(fprog) != 0) _exit(120);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    std::string output;
    char buf[4096];
    for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      output.append(buf, static_cast<size_t>(n));
    }
    close(out[0]);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    INFO("output: " << output);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(output.rfind(c.expect_prefix, 0) == 0);
  }
}
