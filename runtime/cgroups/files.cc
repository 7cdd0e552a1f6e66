// Control-file helpers shared by the v1 and v2 backends.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <thread>

#include "runtime/cgroups/internal.h"
#include "runtime/core/unique_fd.h"

namespace airlock::cgroups {
namespace internal {

Result<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Errno("open", path);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<void> WriteFile(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!fd) return Errno("open", path);
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  std::string what = path + " = " + std::string(value);
  if (n < 0) return Errno("write", what);
  // cgroupfs takes a control-file write whole or not at all; a short count
  // would mean something else answered.
  if (static_cast<size_t>(n) != value.size())
    return ErrnoValue(EIO, "write (short)", what);
  return {};
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Result<std::optional<uint64_t>> ParseKeyed(std::string_view text,
                                           std::string_view key,
                                           const std::string& path) {
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{}
                                         : text.substr(eol + 1);
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || line.substr(0, sp) != key) continue;
    std::string_view value = line.substr(sp + 1);
    uint64_t v = 0;
    auto [end, ec] =
        std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size())
      return Fail("parse " + path, "field \"" + std::string(key) +
                                       "\" is not a number: \"" +
                                       std::string(value) + "\"");
    return v;
  }
  return std::optional<uint64_t>{};
}

Result<uint64_t> ReadCounter(const std::string& path, std::string_view key) {
  std::string text = TRY(ReadFile(path));
  std::optional<uint64_t> v = TRY(ParseKeyed(text, key, path));
  return v.value_or(0);
}

Result<uint64_t> ReadNumber(const std::string& path) {
  std::string text = TRY(ReadFile(path));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    return Fail("parse", path + ": not a number (\"" + text.substr(0, 32) + "\")");
  return v;
}

Result<std::vector<pid_t>> ReadProcs(const std::string& dir) {
  std::string path = dir + "/cgroup.procs";
  std::string text = TRY(ReadFile(path));
  std::vector<pid_t> pids;
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view{}
                                         : rest.substr(eol + 1);
    if (line.empty()) continue;
    pid_t pid = 0;
    auto [end, ec] =
        std::from_chars(line.data(), line.data() + line.size(), pid);
    if (ec != std::errc() || end != line.data() + line.size() || pid <= 0)
      return Fail("parse " + path, "not a pid: \"" + std::string(line) + "\"");
    pids.push_back(pid);
  }
  return pids;
}

size_t KillPids(const std::vector<pid_t>& pids) {
  const pid_t self = ::getpid();
  size_t sent = 0;
  for (pid_t pid : pids) {
    // A group listing this process means the caller put itself in a sandbox;
    // killing it would take the cleanup down with it.
    if (pid <= 1 || pid == self) continue;
    if (::kill(pid, SIGKILL) == 0) ++sent;
  }
  return sent;
}

Result<void> MakeDir(const std::string& path, bool eexist_ok) {
  if (::mkdir(path.c_str(), 0755) == 0) return {};
  if (errno == EEXIST && eexist_ok) return {};
  return Errno("mkdir", path);
}

std::string Parent(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string Basename(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Backoff::Backoff(std::chrono::milliseconds budget)
    : deadline_(std::chrono::steady_clock::now() + budget) {}

bool Backoff::Expired() const {
  return std::chrono::steady_clock::now() >= deadline_;
}

void Backoff::Sleep() {
  std::this_thread::sleep_for(step_);
  step_ = std::min(step_ * 2, std::chrono::microseconds(10000));
}

Result<void> RemoveDirWait(const std::string& dir, Backoff& backoff) {
  for (;;) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return {};
    // cgroupfs answers EBUSY while the group (or a child) still holds a
    // process; anything else (EACCES, ENOTEMPTY on a non-cgroup tree) won't
    // change by waiting.
    if (errno != EBUSY || backoff.Expired()) return Errno("rmdir", dir);
    if (auto pids = ReadProcs(dir); pids) KillPids(*pids);
    backoff.Sleep();
  }
}

}  // namespace internal

HierarchyGroup::HierarchyGroup(const Hierarchy& h, std::array<bool, 4> hosts,
                               const std::string& sandbox_id)
    : h_(h),
      hosts_(hosts),
      group_(h.base_dir + "/airlock-" + sandbox_id),
      init_(group_ + "/init"),
      work_(group_ + "/work") {}

Result<void> HierarchyGroup::MakeDirs(const Layout& layout,
                                      std::vector<std::string>* created) {
  for (const std::string* dir : {&group_, &init_, &work_}) {
    // The group must be new: an existing one is another sandbox's or a
    // crashed run's (RemoveStale's business), never ours to adopt.
    TRY(internal::MakeDir(*dir, /*eexist_ok=*/false));
    created->push_back(*dir);
    if (layout.after_mkdir) layout.after_mkdir(h_, *dir);
  }
  return {};
}

uint64_t CpuQuotaUs(double cpus) {
  return std::max<uint64_t>(1000, static_cast<uint64_t>(std::llround(cpus * kCpuPeriodUs)));
}

}  // namespace airlock::cgroups
