#include "images/build/debian.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <deque>
#include <fstream>

#include "images/store/fs_util.h"
#include "runtime/core/paths.h"

namespace airlock::images::build {

namespace {

// The environment a helper program gets: a clean PATH and locale, and the
// proxy settings a site may route its mirror through.
std::vector<std::string> HelperEnv() {
  std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8",
                                  "HOME=/root"};
  for (const char* k : {"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"})
    if (const char* v = getenv(k)) env.push_back(std::string(k) + "=" + v);
  return env;
}

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

std::string Tail(const std::deque<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += "\n  " + l;
  return s;
}

Result<void> WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) return Errno("create", path);
  f << text;
  f.close();
  if (!f) return Errno("write", path);
  return {};
}

std::string SourcesLine(const Mirror& m, const std::string& suite, const std::vector<std::string>& comps) {
  std::string opts = m.signed_by.empty() ? "" : "[signed-by=" + m.signed_by + "] ";
  return "deb " + opts + m.uri + " " + suite + " " + Join(comps, " ");
}

}  // namespace

std::string DebianArch() {
  struct utsname u;
  uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  if (m == "i686" || m == "i386") return "i386";
  if (m == "armv7l") return "armhf";
  return m;
}

Result<int> RunProgram(const std::vector<std::string>& argv, const std::vector<std::string>& env, int out_fd,
                       const std::function<void(const std::string&)>& on_line) {
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return Errno("pipe", argv[0]);
  UniqueFd rd(err_pipe[0]), wr(err_pipe[1]);
  std::vector<char*> av, ev;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (const auto& e : env) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return Errno("fork", argv[0]);
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(wr.get(), 2) < 0) _exit(126);
    execve(av[0], av.data(), ev.data());
    _exit(127);
  }
  wr.Reset();
  std::string buf;
  char chunk[4096];
  for (;;) {
    ssize_t n = read(rd.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find_first_of("\r\n")) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && on_line) on_line(line);
    }
  }
  if (!buf.empty() && on_line) on_line(buf);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return Errno("waitpid", argv[0]);
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 127) return Fail("exec", argv[0] + " could not be run (is it installed?)");
    return WEXITSTATUS(status);
  }
  return 128 + WTERMSIG(status);
}

Result<void> RunMmdebstrap(const BaseSpec& base, const Mirror& mirror, const std::string& target, Progress& progress,
                           const std::string& label) {
  const char* kMmdebstrap = "/usr/bin/mmdebstrap";
  if (access(kMmdebstrap, X_OK) != 0)
    return ErrnoValue(ENOENT, "image build", "mmdebstrap is not installed (Debian package mmdebstrap)");
  std::vector<std::string> argv = {kMmdebstrap, "--mode=root", "--format=directory", "--variant=" + base.variant,
                                   "--components=" + Join(base.components, ","),
                                   "--aptopt=Acquire::Languages \"none\"",
                                   // Host details mmdebstrap copies in (debootstrap compatibility).
                                   "--customize-hook=rm -f \"$1/etc/hostname\" \"$1/etc/resolv.conf\""};
  if (!base.include.empty()) argv.push_back("--include=" + Join(base.include, ","));
  argv.push_back(base.suite);
  argv.push_back(target);
  // A URI alone lets mmdebstrap find the keyring; an entry from the host's
  // configuration keeps its Signed-By.
  argv.push_back(mirror.signed_by.empty() ? mirror.uri : SourcesLine(mirror, base.suite, base.components));
  // mmdebstrap's own phases, in order: a bar on a terminal.
  static const char* kPhases[] = {"chroot architecture", "finding correct signed-by", "running apt-get update",
                                  "downloading packages",  "extracting archives",       "installing essential",
                                  "installing remaining",  "cleaning package lists",    "success"};
  std::deque<std::string> tail;
  progress.Phase(label + ": mmdebstrap " + base.suite + " (" + base.variant + ") from " + mirror.uri);
  auto status = TRY(RunProgram(argv, HelperEnv(), 2, [&](const std::string& line) {
    tail.push_back(line);
    if (tail.size() > 30) tail.pop_front();
    if (!line.starts_with("I: ")) return;
    for (size_t i = 0; i < std::size(kPhases); ++i)
      if (line.find(kPhases[i]) != std::string::npos) {
        if (progress.tty())
          progress.Percent(100.0 * static_cast<double>(i + 1) / std::size(kPhases));
        else
          progress.Line(label + ": " + line.substr(3));
      }
  }));
  if (status != 0)
    return Fail("image build", label + ": mmdebstrap failed (exit " + std::to_string(status) + "); its last lines:" +
                                   Tail(tail));
  progress.Done("base tree made");
  return {};
}

Result<size_t> DownloadDebs(const Mirror& mirror, const std::string& suite, const std::vector<std::string>& components,
                            const std::string& status_file, const std::vector<std::string>& packages,
                            const std::string& work_dir, const std::string& debs_dir, Progress& progress,
                            const std::string& label) {
  const std::string root = work_dir + "/apt";
  for (const char* d : {"etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                        "var/lib/apt/lists/partial", "var/cache/apt"})
    TRY(MakeDirs(root + "/" + d));
  TRY(MakeDirs(debs_dir + "/partial"));
  TRY(WriteText(root + "/etc/apt/sources.list", SourcesLine(mirror, suite, components) + "\n"));
  // apt reads APT_CONFIG first and then only the Dir it names: nothing of
  // the host's /etc/apt but its keyrings.
  const std::string conf = work_dir + "/apt.conf";
  TRY(WriteText(conf, "Dir \"" + root + "/\";\n"
                      "Dir::State::status \"" + status_file + "\";\n"
                      "Dir::Cache::archives \"" + debs_dir + "/\";\n"
                      "Dir::Etc::Trusted \"/etc/apt/trusted.gpg\";\n"
                      "Dir::Etc::TrustedParts \"/etc/apt/trusted.gpg.d/\";\n"
                      "APT::Architecture \"" + DebianArch() + "\";\n"
                      "APT::Architectures { \"" + DebianArch() + "\"; };\n"
                      "APT::Install-Recommends \"false\";\n"
                      "APT::Sandbox::User \"root\";\n"
                      "Acquire::Languages \"none\";\n"
                      "Debug::NoLocking \"true\";\n"));
  std::vector<std::string> env = HelperEnv();
  env.push_back("APT_CONFIG=" + conf);
  env.push_back("DEBIAN_FRONTEND=noninteractive");
  const std::string log_path = work_dir + "/apt.log";
  UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return Errno("create", log_path);
  std::deque<std::string> tail;
  auto on_line = [&](const std::string& line) {
    // apt's machine-readable status (APT::Status-Fd=2): a bar.
    if (line.starts_with("dlstatus:") || line.starts_with("pmstatus:")) {
      size_t a = line.find(':', 9), b = a == std::string::npos ? a : line.find(':', a + 1);
      if (b != std::string::npos) progress.Percent(atof(line.substr(a + 1, b - a - 1).c_str()));
      return;
    }
    tail.push_back(line);
    if (tail.size() > 30) tail.pop_front();
  };
  auto apt = [&](std::vector<std::string> args, const char* what) -> Result<void> {
    std::vector<std::string> argv = {"/usr/bin/apt-get", "-q", "-o", "APT::Status-Fd=2"};
    argv.insert(argv.end(), args.begin(), args.end());
    tail.clear();
    int status = TRY(RunProgram(argv, env, log.get(), on_line));
    if (status != 0)
      return Fail("image build", label + ": apt-get " + what + " failed (exit " + std::to_string(status) +
                                     ", mirror " + mirror.uri + "); its last lines:" + Tail(tail));
    return {};
  };
  progress.Phase(label + ": apt-get update (" + mirror.uri + " " + suite + ")");
  TRY(apt({"update"}, "update"));
  progress.Phase(label + ": downloading " + Join(packages, " "));
  std::vector<std::string> install = {"install", "-y", "--download-only", "--no-install-recommends"};
  install.insert(install.end(), packages.begin(), packages.end());
  TRY(apt(install, "install --download-only"));
  size_t n = 0;
  uint64_t bytes = 0;
  UniqueFd debs(open(debs_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!debs) return Errno("open", debs_dir);
  for (const auto& name : TRY(fsutil::ListDir(debs.get(), debs_dir))) {
    struct stat st;
    if (name.ends_with(".deb") && stat((debs_dir + "/" + name).c_str(), &st) == 0) {
      ++n;
      bytes += static_cast<uint64_t>(st.st_size);
      chmod((debs_dir + "/" + name).c_str(), 0644);
    }
  }
  chmod(debs_dir.c_str(), 0755);
  progress.Done(std::to_string(n) + " packages, " + std::to_string(bytes >> 20) + " MB");
  return n;
}

Result<size_t> RemoveSpecialFiles(const std::string& dir, bool keep_whiteouts) {
  UniqueFd root(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return Errno("open", dir);
  size_t removed = 0;
  std::function<Result<void>(int, const std::string&)> walk = [&](int fd, const std::string& rel) -> Result<void> {
    for (const auto& name : TRY(fsutil::ListDir(fd, dir + rel))) {
      struct stat st;
      if (fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno("stat", dir + rel + "/" + name);
      if (S_ISDIR(st.st_mode)) {
        UniqueFd sub(openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) return Errno("open", dir + rel + "/" + name);
        TRY(walk(sub.get(), rel + "/" + name));
        continue;
      }
      const bool whiteout = S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
      if (S_ISSOCK(st.st_mode) || S_ISBLK(st.st_mode) || (S_ISCHR(st.st_mode) && !(whiteout && keep_whiteouts))) {
        if (unlinkat(fd, name.c_str(), 0) != 0) return Errno("unlink", dir + rel + "/" + name);
        ++removed;
      }
    }
    return {};
  };
  TRY(walk(root.get(), ""));
  return removed;
}

}  // namespace airlock::images::build
