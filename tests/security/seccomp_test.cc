// Escape attempts through system calls, made from inside a sandbox by the
// `syscalls` testcase: each must fail closed, as root inside too.
#include "tests/root/helpers.h"

using namespace airlock_test;

namespace {

// What `syscalls` must see for each call under the default profile. EPERM
// is the profile's default errno; clone3 answers ENOSYS so libc falls back
// to clone, whose flags the filter can see.
const std::vector<std::pair<std::string, std::string>> kRefused = {
    {"keyctl", "errno EPERM"},
    {"add_key", "errno EPERM"},
    {"bpf", "errno EPERM"},
    {"perf_event_open", "errno EPERM"},
    {"mount", "errno EPERM"},
    {"umount2", "errno EPERM"},
    {"fsopen", "errno EPERM"},
    {"open_tree", "errno EPERM"},
    {"unshare_user", "errno EPERM"},
    {"unshare_ns", "errno EPERM"},
    {"clone_newuser", "errno EPERM"},
    {"clone_newnet", "errno EPERM"},
    {"clone3", "errno ENOSYS"},
    {"statmount", "errno EPERM"},
    {"io_uring_setup", "errno EPERM"},
    {"tiocsti", "errno EPERM"},
    {"ptrace_attach_init", "errno EPERM"},
    {"ptrace_traceme", "errno EPERM"},
    {"kexec_load", "errno EPERM"},
    {"init_module", "errno EPERM"},
};

void CheckRefusals(const RunResult& r) {
  for (const auto& [name, want] : kRefused) {
    INFO(name);
    CHECK(Value(r.out, name) == want);
  }
  // The 32-bit and x32 entry points: refused or killed, never done.
  for (const char* name : {"abi32_keyctl", "x32_keyctl"}) {
    std::string v = Value(r.out, name);
    INFO(name << ": " << v);
    CHECK((v == "errno EPERM" || v == "errno ENOSYS" || v.rfind("killed ", 0) == 0));
  }
}

}  // namespace

TEST_CASE("seccomp: dangerous system calls are refused inside", "[security][seccomp]") {
  for (const char* user : {"sandbox", "root"}) {
    auto r = RunTestcase({"--user", user}, "syscalls");
    INFO("--user " << user << "\n" << r.Describe());
    REQUIRE(r.status == 0);
    CheckRefusals(r);
  }
}

TEST_CASE("seccomp: a syscall newer than libseccomp 2.5.4 is refused", "[security][seccomp]") {
  // statmount (457, Linux 6.8) exists on this kernel: called directly on the
  // host it fails on its NULL arguments, not as unknown.
  RequireBuilt(TestcaseDir() + "/syscalls");
  auto host = Exec({TestcaseDir() + "/syscalls", "statmount", "clone3", "io_uring_setup", "abi32_keyctl"});
  INFO("host:\n" << host.Describe());
  REQUIRE(host.status == 0);
  std::string on_host = Value(host.out, "statmount");
  if (on_host == "errno ENOSYS") {
    WARN("SKIP: the host kernel has no statmount (457); the newer-than-libseccomp check can't run");
    return;
  }
  CHECK((on_host == "errno EFAULT" || on_host == "errno EINVAL"));
  // clone3 and io_uring_setup likewise reach the host kernel's argument checks.
  CHECK(Value(host.out, "clone3") != "errno ENOSYS");
  CHECK(Value(host.out, "io_uring_setup") != "errno EPERM");
  auto inside = RunTestcase({}, "syscalls", {"statmount", "clone3", "io_uring_setup", "abi32_keyctl"});
  INFO("inside:\n" << inside.Describe());
  REQUIRE(inside.status == 0);
  CHECK(Value(inside.out, "statmount") == "errno EPERM");
  CHECK(Value(inside.out, "clone3") == "errno ENOSYS");
  CHECK(Value(inside.out, "io_uring_setup") == "errno EPERM");
  if (Value(host.out, "abi32_keyctl") == "ok") {
    // The i386 entry point works on this host, so the refusal inside is the
    // filter's doing.
    std::string v = Value(inside.out, "abi32_keyctl");
    CHECK((v == "errno EPERM" || v.rfind("killed ", 0) == 0));
  }
}

TEST_CASE("seccomp: the /proc masks can't be unmounted", "[security][seccomp]") {
  for (const char* user : {"sandbox", "root"}) {
    auto r = Run({"--user", user, "--mount", TestcaseMount(), "--", "sh", "-c",
                  "/t/syscalls umount2; /t/fsops umount:/proc/keys umount:/proc/sys umount:/proc/acpi "
                  "read:/proc/keys read:/proc/timer_list read:/proc/kcore write:/proc/sys/kernel/hostname list:/proc/acpi"});
    INFO("--user " << user << "\n" << r.Describe());
    REQUIRE(r.status == 0);
    CHECK(Value(r.out, "umount2") == "errno EPERM");
    CHECK(HasLine(r.out, "umount /proc/keys errno EPERM"));
    CHECK(HasLine(r.out, "umount /proc/sys errno EPERM"));
    CHECK(HasLine(r.out, "umount /proc/acpi errno EPERM"));
    // The masks are still in place after the attempts.
    CHECK(HasLine(r.out, "read /proc/keys bytes 0"));
    CHECK(HasLine(r.out, "read /proc/timer_list bytes 0"));
    // /proc/kcore is masked where the kernel has it.
    if (Exists("/proc/kcore")) CHECK(HasLine(r.out, "read /proc/kcore bytes 0"));
    else CHECK((HasLine(r.out, "read /proc/kcore bytes 0") || HasLine(r.out, "read /proc/kcore errno ENOENT")));
    CHECK(HasLine(r.out, "list /proc/acpi ok"));
    CHECK(Values(r.out, "entry /proc/acpi").empty());
    std::string w = Value(r.out, "write /proc/sys/kernel/hostname");
    if (std::string(user) == "root") CHECK(w == "errno EROFS");
    else CHECK((w == "errno EROFS" || w == "errno EACCES"));
  }
}

TEST_CASE("seccomp: --seccomp strict runs shells and Python", "[security][seccomp]") {
  auto sh = Run({"--seccomp", "strict", "--", "sh", "-c", "echo ok"});
  INFO(sh.Describe());
  CHECK(sh.status == 0);
  CHECK(sh.out == "ok\n");
  auto py = Run({"--seccomp", "strict", "--", "python3", "-c", "print(1)"});
  INFO(py.Describe());
  CHECK(py.status == 0);
  CHECK(py.out == "1\n");
  auto refused = RunTestcase({"--seccomp", "strict"}, "syscalls");
  INFO(refused.Describe());
  REQUIRE(refused.status == 0);
  CheckRefusals(refused);
}

TEST_CASE("seccomp: an unknown profile is airlock's own error", "[security][seccomp]") {
  auto r = Run({"--seccomp", "no-such-profile-xyz", "--", "true"});
  INFO(r.Describe());
  CHECK(r.status == 125);
  CHECK(r.err.find("no-such-profile-xyz") != std::string::npos);
}

TEST_CASE("nested user namespaces: the limit is 0 inside", "[security][userns]") {
  for (const char* user : {"sandbox", "root"}) {
    auto r = RunTestcase({"--user", user}, "jail");
    INFO("--user " << user << "\n" << r.Describe());
    REQUIRE(r.status == 0);
    CHECK(Value(r.out, "max_user_namespaces") == "0");
  }
}
