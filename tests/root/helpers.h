// Shared helpers for the root and security lanes: run `airlock` (or any
// program) with fork + exec and pipes, capture its stdout, stderr and exit
// status; temporary directories; a private non-root cgroup parent that
// tells which sandboxes were started from it; the leak checks.
//
// Both lanes need root and user namespaces; without them the binary says
// "SKIP: <reason>" and exits 77, which ctest counts as skipped.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef AIRLOCK_BUILD_DIR
#error "AIRLOCK_BUILD_DIR must name the build directory"
#endif

namespace airlock_test {

namespace fs = std::filesystem;

// ---- skipping -----------------------------------------------------------

// Exits 77 (ctest: skipped) with a loud reason when the lane can't run
// here. A static initializer, so it runs before Catch2's main.
inline const bool kSkipUnlessRoot = [] {
  const char* reason = nullptr;
  if (geteuid() != 0) reason = "root and security tests need root";
  else if (access("/proc/self/ns/user", F_OK) != 0) reason = "no user namespaces (/proc/self/ns/user missing)";
  if (reason == nullptr) return true;
  fprintf(stderr, "SKIP: %s\n", reason);
  fflush(stderr);
  _exit(77);
}();

// ---- paths --------------------------------------------------------------

// The build directory without symlinks: airlock refuses a mount source
// that has one.
inline std::string BuildDir() {
  static const std::string dir = [] {
    char buf[PATH_MAX];
    if (realpath(AIRLOCK_BUILD_DIR, buf) == nullptr) return std::string(AIRLOCK_BUILD_DIR);
    return std::string(buf);
  }();
  return dir;
}
inline std::string AirlockBin() { return BuildDir() + "/airlock"; }
inline std::string TestcaseDir() { return BuildDir() + "/testcases"; }
// The testcases bound read-only at /t.
inline std::string TestcaseMount() { return TestcaseDir() + ":/t:ro"; }
inline const std::string kStateRoot = "/var/lib/airlock";

// ---- small file and text helpers ---------------------------------------

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

inline bool HasLine(const std::string& text, const std::string& line) {
  for (const auto& l : Lines(text))
    if (l == line) return true;
  return false;
}

// Every value of "KEY value" lines.
inline std::vector<std::string> Values(const std::string& text, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& l : Lines(text))
    if (l.size() > key.size() && l.compare(0, key.size(), key) == 0 && l[key.size()] == ' ')
      out.push_back(l.substr(key.size() + 1));
  return out;
}

// The value of the first "KEY value" line, or "<missing KEY>".
inline std::string Value(const std::string& text, const std::string& key) {
  auto v = Values(text, key);
  return v.empty() ? "<missing " + key + ">" : v.front();
}

inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Polls `pred` until it holds or `seconds` pass; returns its last value.
inline bool Eventually(const std::function<bool()>& pred, double seconds) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (pred()) return true;
    if (SecondsSince(start) > seconds) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// ---- processes ----------------------------------------------------------

struct RunResult {
  int status = -1;  // exit code, or 128 + signal
  bool signaled = false;
  bool watchdog_fired = false;  // the helper had to kill it
  std::string out, err;
  double seconds = 0;
  std::string Describe() const {
    return "status " + std::to_string(status) + (watchdog_fired ? " (killed by the test's watchdog)" : "") +
           "\n--- stdout ---\n" + out + "--- stderr ---\n" + err;
  }
};

// A child process with pipes on its stdin, stdout and stderr.
class Process {
 public:
  struct Options {
    // Files the child writes "0" to before exec: cgroup v1 `cgroup.procs`
    // files that move it (and so everything it starts) into a group.
    std::vector<std::string> join_cgroups;
  };

  Process(const std::vector<std::string>& argv, const Options& options = {}) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
      throw std::runtime_error("pipe2 failed");
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    start_ = std::chrono::steady_clock::now();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
      // The test binary may block signals; the program must not inherit that.
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      for (const auto& f : options.join_cgroups) {
        int fd = open(f.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1) {
          dprintf(2, "test helper: can't join cgroup %s: %s\n", f.c_str(), strerror(errno));
          _exit(126);
        }
        close(fd);
      }
      execv(args[0], args.data());
      dprintf(2, "test helper: exec %s: %s\n", args[0], strerror(errno));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    stderr_ = err[0];
    fcntl(stdout_, F_SETFL, O_NONBLOCK);
    fcntl(stderr_, F_SETFL, O_NONBLOCK);
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() {
    CloseStdin();
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) close(stdout_);
    if (stderr_ >= 0) close(stderr_);
  }

  pid_t pid() const { return pid_; }
  const std::string& out() const { return result_.out; }
  const std::string& err() const { return result_.err; }

  void Write(const std::string& data) {
    size_t off = 0;
    while (off < data.size() && stdin_ >= 0) {
      ssize_t n = write(stdin_, data.data() + off, data.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  }
  void CloseStdin() {
    if (stdin_ >= 0) close(stdin_);
    stdin_ = -1;
  }
  void Signal(int sig) {
    if (pid_ > 0 && !reaped_) kill(pid_, sig);
  }

  // Reads output until stdout holds a complete line for which `pred` is
  // true; returns that line, or nullopt after `seconds` or at EOF.
  std::optional<std::string> WaitForLine(const std::function<bool(const std::string&)>& pred,
                                         double seconds = 20) {
    auto start = std::chrono::steady_clock::now();
    size_t scanned = 0;
    for (;;) {
      size_t nl;
      while ((nl = result_.out.find('\n', scanned)) != std::string::npos) {
        std::string line = result_.out.substr(scanned, nl - scanned);
        scanned = nl + 1;
        if (pred(line)) return line;
      }
      double left = seconds - SecondsSince(start);
      if (left <= 0 || (stdout_ < 0 && stderr_ < 0)) return std::nullopt;
      Pump(static_cast<int>(left * 1000) + 1);
    }
  }
  std::optional<std::string> WaitForPrefix(const std::string& prefix, double seconds = 20) {
    return WaitForLine([&](const std::string& l) { return l.compare(0, prefix.size(), prefix) == 0; }, seconds);
  }

  // Waits for the process to end (killing it after `seconds`) and for its
  // output to close.
  RunResult Wait(double seconds = 60) {
    CloseStdin();
    auto start = std::chrono::steady_clock::now();
    while (!reaped_) {
      int status;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        result_.signaled = WIFSIGNALED(status);
        result_.status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        result_.seconds = SecondsSince(start_);
        break;
      }
      if (SecondsSince(start) > seconds) {
        result_.watchdog_fired = true;
        kill(pid_, SIGKILL);
      }
      Pump(20);
    }
    // Whatever the process left in the pipes; a grandchild holding them
    // open may not keep the test waiting for long.
    auto drain = std::chrono::steady_clock::now();
    while ((stdout_ >= 0 || stderr_ >= 0) && SecondsSince(drain) < 5) Pump(50);
    return result_;
  }

 private:
  void Pump(int timeout_ms) {
    pollfd fds[2] = {{stdout_, POLLIN, 0}, {stderr_, POLLIN, 0}};
    if (stdout_ < 0 && stderr_ < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(timeout_ms, 20)));
      return;
    }
    int n = poll(fds, 2, std::min(timeout_ms, 50));
    if (n <= 0) return;
    ReadSome(&stdout_, &result_.out, fds[0].revents);
    ReadSome(&stderr_, &result_.err, fds[1].revents);
  }
  static void ReadSome(int* fd, std::string* into, short revents) {
    if (*fd < 0 || revents == 0) return;
    char buf[65536];
    for (;;) {
      ssize_t n = read(*fd, buf, sizeof(buf));
      if (n > 0) {
        into->append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      close(*fd);
      *fd = -1;
      return;
    }
  }

  pid_t pid_ = -1;
  bool reaped_ = false;
  int stdin_ = -1, stdout_ = -1, stderr_ = -1;
  std::chrono::steady_clock::time_point start_;
  RunResult result_;
};

// Runs argv to completion with `input` on its stdin.
inline RunResult Exec(const std::vector<std::string>& argv, const std::string& input = "", double seconds = 60,
                      const Process::Options& options = {}) {
  Process p(argv, options);
  p.Write(input);
  return p.Wait(seconds);
}

// Fails the test with a clear message when a binary the lanes run is not
// built: the root_tests and security_tests targets don't build airlock,
// airlock-init or the testcases themselves (`cmake --build <dir>` does).
inline void RequireBuilt(const std::string& path) {
  if (access(path.c_str(), X_OK) != 0)
    FAIL(path << " is not built: build the whole tree (cmake --build " << BuildDir() << ")");
}

// `airlock ARGS...` (e.g. {"run", "--", "true"}).
inline std::vector<std::string> AirlockArgv(const std::vector<std::string>& args) {
  RequireBuilt(AirlockBin());
  RequireBuilt(BuildDir() + "/airlock-init");
  std::vector<std::string> argv = {AirlockBin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// `airlock run ARGS...` to completion.
inline RunResult Run(const std::vector<std::string>& args, const std::string& input = "", double seconds = 60) {
  std::vector<std::string> full = {"run"};
  full.insert(full.end(), args.begin(), args.end());
  return Exec(AirlockArgv(full), input, seconds);
}

// `airlock run --mount <testcases>:/t:ro [OPTIONS] -- /t/NAME ARGS...`.
inline RunResult RunTestcase(const std::vector<std::string>& options, const std::string& name,
                             const std::vector<std::string>& args = {}, const std::string& input = "") {
  RequireBuilt(TestcaseDir() + "/" + name);
  std::vector<std::string> full = {"--mount", TestcaseMount()};
  full.insert(full.end(), options.begin(), options.end());
  full.push_back("--");
  full.push_back("/t/" + name);
  full.insert(full.end(), args.begin(), args.end());
  return Run(full, input);
}

// ---- temporary directories ---------------------------------------------

// A fresh directory under /var/tmp, removed with everything in it. Not /tmp:
// in the guest lane that is a tmpfs, which 6.1 can't idmap (6.3 can), and
// the tests bind these directories read-write.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "airlock-test") {
    std::string tmpl = "/var/tmp/" + tag + "-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    char real[PATH_MAX];
    path_ = realpath(buf.data(), real) != nullptr ? real : buf.data();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// ---- sandbox identity ---------------------------------------------------

// The owner of the id range that starts at `base` in the shared allocator's
// state file ("owner base count" lines), or "" if none.
inline std::string IdRangeOwner(unsigned long long base) {
  for (const auto& l : Lines(ReadFile(kStateRoot + "/idranges"))) {
    if (l.empty() || l[0] == '#') continue;
    std::stringstream ss(l);
    std::string owner;
    unsigned long long b = 0, n = 0;
    if (ss >> owner >> b >> n && b == base) return owner;
  }
  return "";
}

inline bool IdRangeHeldBy(const std::string& owner) {
  for (const auto& l : Lines(ReadFile(kStateRoot + "/idranges"))) {
    if (l.empty() || l[0] == '#') continue;
    std::stringstream ss(l);
    std::string o;
    if (ss >> o && o == owner) return true;
  }
  return false;
}

// ---- a private non-root cgroup parent -----------------------------------

inline void WriteFileOrThrow(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, value.data(), value.size()) < 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    if (err == ESRCH) return;  // gone meanwhile
    throw std::runtime_error("write " + path + ": " + strerror(err));
  }
  close(fd);
}

// A child of the test's own cgroup — per controller (memory, pids, cpu,
// freezer) on cgroup v1, one directory on a pure cgroup v2 host (the guest
// lane): airlock started from it (Process::Options::join_cgroups) creates
// its sandboxes there, and an inotify watch names every sandbox it made.
class CgroupParent {
 public:
  static bool V1() {
    for (const char* controller : {"memory", "pids", "cpu", "freezer"})
      if (!Exists(std::string("/sys/fs/cgroup/") + controller + "/cgroup.procs")) return false;
    return true;
  }
  static bool PureV2() {
    std::string c = ReadFile("/sys/fs/cgroup/cgroup.controllers");
    return c.find("memory") != std::string::npos && c.find("pids") != std::string::npos;
  }
  // Whether this host has a cgroup layout the parent can be made in.
  static bool Supported() { return V1() || PureV2(); }

  CgroupParent() {
    static int counter = 0;
    name_ = "airlock-test-parent-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    if (!V1() && PureV2()) {
      std::string own;
      for (const auto& l : Lines(ReadFile("/proc/self/cgroup")))
        if (l.rfind("0::", 0) == 0) own = l.substr(3);
      // Already moved to our leaf by an earlier parent: its group is ours.
      if (own.ends_with("/airlock-test.self")) own = own.substr(0, own.size() - strlen("/airlock-test.self"));
      const std::string base = "/sys/fs/cgroup" + (own.empty() || own == "/" ? "" : own);
      // v2's rule: a group that hands controllers to children holds no
      // process. Everything in ours (this test, the script that started
      // it) moves to a leaf, as a service manager would arrange.
      if (own != "/") {
        std::string leaf = base + "/airlock-test.self";
        mkdir(leaf.c_str(), 0755);
        for (const auto& pid : Lines(ReadFile(base + "/cgroup.procs")))
          if (!pid.empty()) WriteFileOrThrow(leaf + "/cgroup.procs", pid);
      }
      for (const char* c : {"+memory", "+pids", "+cpu"}) {
        int fd = open((base + "/cgroup.subtree_control").c_str(), O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
          (void)!write(fd, c, strlen(c));
          close(fd);
        }
      }
      std::string dir = base + "/" + name_;
      if (mkdir(dir.c_str(), 0755) < 0) throw std::runtime_error("mkdir " + dir + ": " + strerror(errno));
      dirs_.push_back(dir);
      // airlock runs from the leaf the runtime itself would use, so that
      // the parent can hand controllers to the sandboxes beside it.
      v2_leaf_ = dir + "/airlock.self";
      if (mkdir(v2_leaf_.c_str(), 0755) < 0) throw std::runtime_error("mkdir " + v2_leaf_ + ": " + strerror(errno));
    }
    for (const std::string controller : {"memory", "pids", "cpu", "freezer"}) {
      if (!V1()) break;
      std::string own = OwnCgroup(controller);
      char real[PATH_MAX];
      std::string mount = "/sys/fs/cgroup/" + controller;
      if (realpath(mount.c_str(), real) == nullptr) throw std::runtime_error("no cgroup v1 " + controller);
      std::string dir = std::string(real) + (own == "/" ? "" : own) + "/" + name_;
      if (mkdir(dir.c_str(), 0755) < 0) throw std::runtime_error("mkdir " + dir + ": " + strerror(errno));
      dirs_.push_back(dir);
    }
    inotify_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_ < 0 || inotify_add_watch(inotify_, dirs_.front().c_str(), IN_CREATE) < 0)
      throw std::runtime_error("inotify on " + dirs_.front());
  }
  CgroupParent(const CgroupParent&) = delete;
  CgroupParent& operator=(const CgroupParent&) = delete;
  ~CgroupParent() {
    if (inotify_ >= 0) close(inotify_);
    // Whatever a failing run left: kill it and remove the groups bottom-up.
    for (const auto& d : dirs_) RemoveTree(d);
  }

  const std::vector<std::string>& dirs() const { return dirs_; }
  Process::Options JoinOptions() const {
    Process::Options o;
    if (!v2_leaf_.empty()) {
      o.join_cgroups.push_back(v2_leaf_ + "/cgroup.procs");
      return o;
    }
    for (const auto& d : dirs_) o.join_cgroups.push_back(d + "/cgroup.procs");
    return o;
  }

  // Sandbox ids whose groups appeared in the parent since the last call.
  std::vector<std::string> NewSandboxIds() {
    std::vector<std::string> ids;
    alignas(inotify_event) char buf[8192];
    for (;;) {
      ssize_t n = read(inotify_, buf, sizeof(buf));
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* e = reinterpret_cast<inotify_event*>(p);
        std::string name = e->len ? e->name : "";
        if (name.rfind("airlock-", 0) == 0) ids.push_back(name.substr(8));
        p += sizeof(inotify_event) + e->len;
      }
    }
    return ids;
  }

  // Runs `airlock run ARGS...` from inside the parent.
  RunResult Run(const std::vector<std::string>& args, const std::string& input = "", double seconds = 60) {
    std::vector<std::string> full = {"run"};
    full.insert(full.end(), args.begin(), args.end());
    return Exec(AirlockArgv(full), input, seconds, JoinOptions());
  }

  // The test process's own cgroup for `controller` ("/" at the root).
  static std::string OwnCgroup(const std::string& controller) {
    for (const auto& l : Lines(ReadFile("/proc/self/cgroup"))) {
      size_t a = l.find(':'), b = l.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      std::string list = l.substr(a + 1, b - a - 1);
      std::stringstream ss(list);
      std::string c;
      while (std::getline(ss, c, ','))
        if (c == controller) return l.substr(b + 1);
    }
    return "/";
  }

 private:
  static void RemoveTree(const std::string& dir) {
    if (!Exists(dir)) return;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_directory()) RemoveTree(e.path());
    for (const auto& l : Lines(ReadFile(dir + "/cgroup.procs"))) kill(atoi(l.c_str()), SIGKILL);
    Eventually([&] { return rmdir(dir.c_str()) == 0 || errno == ENOENT; }, 5);
  }

  std::string name_;
  std::vector<std::string> dirs_;
  std::string v2_leaf_;  // pure v2: where airlock is started
  int inotify_ = -1;
};

// Tests that start airlock from a private cgroup v1 parent skip loudly
// without one (Catch2 v2 has no skip: the reason is printed as a warning).
#define SKIP_UNLESS_CGROUP_V1()                                                      \
  do {                                                                               \
    if (!::airlock_test::CgroupParent::Supported()) {                                \
      WARN("SKIP: this test needs cgroup v1 memory, pids, cpu, freezer hierarchies or a pure cgroup v2 host"); \
      return;                                                                        \
    }                                                                                \
  } while (0)

// ---- leaks --------------------------------------------------------------

// Directories named airlock-<id> anywhere in the cgroup v1 hierarchies.
inline std::vector<std::string> CgroupDirsOf(const std::string& id) {
  std::vector<std::string> found;
  const std::string want = "airlock-" + id;
  std::error_code ec;
  for (const auto& hierarchy : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    if (!hierarchy.is_directory() || hierarchy.is_symlink()) continue;
    fs::recursive_directory_iterator it(hierarchy.path(), fs::directory_options::skip_permission_denied, ec), end;
    for (; it != end; it.increment(ec)) {
      if (ec) break;
      if (it.depth() > 8) {
        it.disable_recursion_pending();
        continue;
      }
      if (it->is_directory(ec) && it->path().filename() == want) {
        found.push_back(it->path());
        it.disable_recursion_pending();
      }
    }
  }
  return found;
}

// Host pids whose cgroup names the sandbox, or whose command line contains
// `marker` (when given).
inline std::vector<std::string> ProcessesOf(const std::string& id, const std::string& marker = "") {
  std::vector<std::string> found;
  DIR* d = opendir("/proc");
  if (d == nullptr) return found;
  while (dirent* e = readdir(d)) {
    char* end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == getpid()) continue;
    std::string base = std::string("/proc/") + e->d_name;
    std::string cg = ReadFile(base + "/cgroup");
    std::string cmd = ReadFile(base + "/cmdline");
    for (auto& c : cmd)
      if (c == '\0') c = ' ';
    if (cg.find("/airlock-" + id + "/") != std::string::npos || cg.find("/airlock-" + id + "\n") != std::string::npos ||
        (!marker.empty() && cmd.find(marker) != std::string::npos))
      found.push_back(std::string(e->d_name) + " (" + cmd + ")");
  }
  closedir(d);
  return found;
}

// Everything a sandbox could leave on the host, as readable lines (empty:
// nothing left).
inline std::vector<std::string> LeftoversOf(const std::string& id, const std::string& marker = "") {
  std::vector<std::string> left;
  for (const auto& c : CgroupDirsOf(id)) left.push_back("cgroup " + c);
  if (Exists(kStateRoot + "/sandboxes/" + id)) left.push_back("record " + kStateRoot + "/sandboxes/" + id);
  if (IdRangeHeldBy(id)) left.push_back("id range held by " + id + " in " + kStateRoot + "/idranges");
  if (Exists(kStateRoot + "/pool/sandboxes/" + id)) left.push_back("subvolume " + kStateRoot + "/pool/sandboxes/" + id);
  for (const auto& l : Lines(ReadFile("/proc/self/mountinfo")))
    if (l.find(id) != std::string::npos) left.push_back("mount " + l);
  for (const auto& p : ProcessesOf(id, marker)) left.push_back("process " + p);
  return left;
}

inline std::string Join(const std::vector<std::string>& v, const std::string& sep = "\n") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// Asserts that nothing of sandbox `id` is left on the host. Processes get a
// moment to die (a killed pid namespace's members go asynchronously).
inline void RequireNoLeftovers(const std::string& id, const std::string& marker = "") {
  INFO("sandbox " << id);
  std::vector<std::string> left;
  Eventually([&] { return (left = LeftoversOf(id, marker)).empty(); }, 10);
  INFO("left behind:\n" << Join(left));
  CHECK(left.empty());
}

// Sandbox ids that hold a record or an id range in the runtime's state.
inline std::set<std::string> StateIds() {
  std::set<std::string> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kStateRoot + "/sandboxes", ec)) ids.insert(e.path().filename());
  for (const auto& l : Lines(ReadFile(kStateRoot + "/idranges"))) {
    if (l.empty() || l[0] == '#') continue;
    std::stringstream ss(l);
    std::string owner;
    if (ss >> owner) ids.insert(owner);
  }
  return ids;
}

// Whether a live run holds sandbox `id`'s record lock.
inline bool HeldByLiveRun(const std::string& id) {
  int fd = open((kStateRoot + "/sandboxes/" + id + "/lock").c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
  close(fd);  // releases the lock if it was taken
  return held;
}

// For runs that may fail before any cgroup names them: records and id
// ranges that appeared since `before` and that no live run holds (other
// users' runs may be going on at the same time).
inline void RequireNoNewUnheldState(const std::set<std::string>& before) {
  std::vector<std::string> left;
  Eventually(
      [&] {
        left.clear();
        for (const auto& id : StateIds())
          if (!before.count(id) && !HeldByLiveRun(id)) left.push_back(id);
        return left.empty();
      },
      10);
  INFO("records or id ranges left behind by: " << Join(left, ", "));
  CHECK(left.empty());
}

// ---- images --------------------------------------------------------------

// Waits (up to 10 s) until no `airlock run` sandbox record is left: a run's
// cleaner holds its image layers' pins until its sandbox is gone.
inline void AwaitRunsCleanedUp() {
  Eventually([] {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(kStateRoot + "/sandboxes", ec)) {
      (void)e;
      return false;
    }
    return true;
  }, 10);
}

// Removes the airlock images (`airlock rmi`) a test made, whatever way it ends.
struct StoredImages {
  std::vector<std::string> names;
  ~StoredImages() {
    AwaitRunsCleanedUp();
    for (const auto& n : names) (void)Exec({AirlockBin(), "rmi", n});
  }
};

// ---- capabilities -------------------------------------------------------

inline unsigned long long Hex(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 16); }

}  // namespace airlock_test
