#include "runtime/security/setid_filter.h"

#include <string>

namespace airlock::seccomp {

Result<Program> CompileSetidFilter() {
  // Written as a profile so that it goes through the one compiler; names
  // resolve per architecture (the 32-bit ABIs number them differently).
  struct ModeArg {
    const char* name;
    int arg;
  };
  constexpr ModeArg kModeArgs[] = {{"chmod", 1}, {"fchmod", 1}, {"fchmodat", 2}, {"open", 2},
                                   {"openat", 3}, {"creat", 1},  {"mknod", 1},    {"mknodat", 2}};
  std::string rules;
  for (const auto& m : kModeArgs) {
    // One rule per bit: mode & 04000 == 04000, mode & 02000 == 02000.
    for (int bit : {04000, 02000}) {
      rules += std::string(R"({"names":[")") + m.name +
               R"("],"action":"SCMP_ACT_ERRNO","errnoRet":1,"args":[{"index":)" + std::to_string(m.arg) +
               R"(,"value":)" + std::to_string(bit) + R"(,"valueTwo":)" + std::to_string(bit) +
               R"(,"op":"SCMP_CMP_MASKED_EQ"}]},)";
    }
  }
  // openat2 carries its mode in a struct a filter can't read; fchmodat2 (452)
  // is newer than libseccomp 2.5.4's table. ENOSYS: libc falls back.
  rules += R"({"names":["openat2","io_uring_setup"],"action":"SCMP_ACT_ERRNO","errnoRet":38},)";
  rules += R"({"names":["452"],"action":"SCMP_ACT_ERRNO","errnoRet":38})";
  std::string json = R"({"defaultAction":"SCMP_ACT_ALLOW",)"
                     R"("architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],)"
                     R"("syscalls":[)" + rules + "]}";
  Profile profile = TRY(ParseProfile(json));
  return Compile(profile);
}

}  // namespace airlock::seccomp
