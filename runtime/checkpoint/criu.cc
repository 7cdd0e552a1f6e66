#include "runtime/checkpoint/criu.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "runtime/core/unique_fd.h"

namespace airlock::checkpoint {

// The part of libcriu's API airlock uses, declared here so that building
// airlock needs no CRIU headers (criu/criu.h pulls in protobuf-c).
struct criu_opts;
enum CriuCgroupMode { kCriuCgIgnore = 0, kCriuCgSoft = 3 };

struct Criu::Api {
  int (*init_opts)(criu_opts**);
  void (*free_opts)(criu_opts*);
  void (*set_pid)(criu_opts*, int);
  void (*set_images_dir_fd)(criu_opts*, int);
  void (*set_leave_running)(criu_opts*, bool);
  void (*set_ext_unix_sk)(criu_opts*, bool);
  void (*set_log_level)(criu_opts*, int);
  int (*set_log_file)(criu_opts*, const char*);
  int (*set_root)(criu_opts*, const char*);
  void (*set_manage_cgroups_mode)(criu_opts*, int);
  int (*add_inherit_fd)(criu_opts*, int, const char*);
  int (*add_external)(criu_opts*, const char*);
  int (*add_cg_root)(criu_opts*, const char*, const char*);
  void (*set_notify_cb)(criu_opts*, int (*)(char*, void*));
  int (*dump)(criu_opts*);
  int (*restore_child)(criu_opts*);
};

namespace {

template <typename F>
bool Bind(void* handle, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(handle, name));
  return *out != nullptr;
}

// Owns one criu_opts.
class Opts {
 public:
  explicit Opts(const Criu::Api& api) : api_(api) {}
  ~Opts() {
    if (opts_ != nullptr) api_.free_opts(opts_);
  }
  Result<criu_opts*> Init() {
    if (int r = api_.init_opts(&opts_); r < 0) return ErrnoValue(-r, "criu", "init options");
    return opts_;
  }

 private:
  const Criu::Api& api_;
  criu_opts* opts_ = nullptr;
};

// libcriu returns -errno-like codes, or -52 (EBADE) for "criu said no":
// the log's first error line says what (later ones are mostly fallout).
std::unexpected<Error> CriuFailed(int r, const std::string& what, int images_dir_fd, const std::string& log) {
  std::string first_error;
  UniqueFd fd(openat(images_dir_fd, log.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd) {
    std::string text;
    char buf[65536];
    for (ssize_t n; (n = read(fd.get(), buf, sizeof(buf))) > 0 && text.size() < (16u << 20);)
      text.append(buf, static_cast<size_t>(n));
    size_t at = text.find("Error (");
    if (at != std::string::npos) {
      size_t end = text.find('\n', at);
      first_error = text.substr(at, std::min<size_t>(end == std::string::npos ? text.size() - at : end - at, 300));
    }
  }
  return ErrnoValue(r < 0 ? -r : EIO, "criu " + what,
                    (first_error.empty() ? "" : first_error + "; ") + "see " + log + " in the images directory");
}

// libcriu's notification callback has no user argument; a dump runs on the
// calling thread (libcriu reads criu swrk's messages there), so the hook of
// the dump in progress is this thread's.
struct NotifyHook {
  const std::function<Result<void>()>* hook = nullptr;
  std::optional<Error> failed;
};
thread_local NotifyHook* t_notify = nullptr;

int OnNotify(char* action, void*) {
  if (t_notify == nullptr || strcmp(action, "post-dump") != 0) return 0;
  auto done = (*t_notify->hook)();
  if (done) return 0;
  t_notify->failed = done.error();
  return 1;  // CRIU fails the dump and lets the tree run on
}

}  // namespace

Result<std::unique_ptr<Criu>> Criu::Load() {
  std::unique_ptr<Criu> c(new Criu());
  c->handle_ = dlopen("libcriu.so.2", RTLD_NOW | RTLD_LOCAL);
  if (c->handle_ == nullptr)
    return Fail("criu", std::string("libcriu.so.2 can't be loaded (install Debian's criu package): ") + dlerror());
  c->api_ = std::make_unique<Api>();
  Api& a = *c->api_;
  void* h = c->handle_;
  const bool ok = Bind(h, "criu_local_init_opts", &a.init_opts) && Bind(h, "criu_local_free_opts", &a.free_opts) &&
                  Bind(h, "criu_local_set_pid", &a.set_pid) &&
                  Bind(h, "criu_local_set_images_dir_fd", &a.set_images_dir_fd) &&
                  Bind(h, "criu_local_set_leave_running", &a.set_leave_running) &&
                  Bind(h, "criu_local_set_ext_unix_sk", &a.set_ext_unix_sk) &&
                  Bind(h, "criu_local_set_log_level", &a.set_log_level) &&
                  Bind(h, "criu_local_set_log_file", &a.set_log_file) && Bind(h, "criu_local_set_root", &a.set_root) &&
                  Bind(h, "criu_local_set_manage_cgroups_mode", &a.set_manage_cgroups_mode) &&
                  Bind(h, "criu_local_add_inherit_fd", &a.add_inherit_fd) &&
                  Bind(h, "criu_local_add_external", &a.add_external) &&
                  Bind(h, "criu_local_add_cg_root", &a.add_cg_root) &&
                  Bind(h, "criu_local_set_notify_cb", &a.set_notify_cb) &&
                  Bind(h, "criu_local_dump", &a.dump) && Bind(h, "criu_local_restore_child", &a.restore_child);
  if (!ok) return Fail("criu", std::string("libcriu.so.2 lacks a function airlock needs: ") + dlerror());
  return c;
}

Criu::~Criu() {
  if (handle_ != nullptr) dlclose(handle_);
}

Result<void> Criu::Check() {
  // `criu check`, the command: libcriu's RPC check is stricter and fails on
  // optional features a dump never needs (the guest lane's missing tun
  // device). libcriu runs the same binary (`criu swrk`) from PATH.
  int out[2];
  if (pipe2(out, O_CLOEXEC) < 0) return Errno("pipe2", "criu check");
  UniqueFd rd(out[0]), wr(out[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  char arg0[] = "criu", arg1[] = "check";
  char* argv[] = {arg0, arg1, nullptr};
  pid_t pid = -1;
  int err = posix_spawnp(&pid, "criu", &fa, nullptr, argv, environ);
  if (err == ENOENT) err = posix_spawn(&pid, "/usr/sbin/criu", &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  wr.Reset();
  if (err != 0) return ErrnoValue(err, "criu check", "can't run criu (install Debian's criu package)");
  std::string output;
  char buf[4096];
  for (ssize_t n; (n = read(rd.get(), buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (output.size() < 65536) output.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  // Its last error line says why.
  std::string why = "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  size_t end = output.find_last_not_of("\n ");
  if (end != std::string::npos) {
    size_t start = output.rfind('\n', end);
    why = output.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1));
  }
  return Fail("criu check", "CRIU can't run on this kernel: " + why);
}

Result<void> Criu::Dump(const DumpOptions& options) {
  Opts o(*api_);
  criu_opts* opts = TRY(o.Init());
  api_->set_pid(opts, options.pid);
  api_->set_images_dir_fd(opts, options.images_dir_fd);
  api_->set_leave_running(opts, options.leave_running);
  api_->set_ext_unix_sk(opts, options.external_unix_sockets);
  api_->set_log_level(opts, 4);
  if (api_->set_log_file(opts, options.log_file.c_str()) < 0) return ErrnoValue(ENOMEM, "criu", "log file option");
  // cgroups are the runtime's: it makes them, with their limits, before a
  // restore (CRIU restores v2 membership but not limits).
  api_->set_manage_cgroups_mode(opts, kCriuCgIgnore);
  for (const auto& e : options.externals)
    if (api_->add_external(opts, e.c_str()) < 0) return ErrnoValue(ENOMEM, "criu", "external " + e);
  NotifyHook notify{&options.while_stopped, std::nullopt};
  if (options.while_stopped) {
    api_->set_notify_cb(opts, OnNotify);
    t_notify = &notify;
  }
  const int r = api_->dump(opts);
  t_notify = nullptr;
  if (notify.failed) return std::unexpected(*notify.failed);
  if (r < 0) return CriuFailed(r, "dump", options.images_dir_fd, options.log_file);
  return {};
}

Result<pid_t> Criu::Restore(const RestoreOptions& options) {
  Opts o(*api_);
  criu_opts* opts = TRY(o.Init());
  api_->set_images_dir_fd(opts, options.images_dir_fd);
  api_->set_ext_unix_sk(opts, true);
  api_->set_log_level(opts, 4);
  if (api_->set_log_file(opts, options.log_file.c_str()) < 0) return ErrnoValue(ENOMEM, "criu", "log file option");
  if (!options.root.empty() && api_->set_root(opts, options.root.c_str()) < 0)
    return ErrnoValue(ENOMEM, "criu", "root " + options.root);
  if (options.cgroup_root.empty()) {
    api_->set_manage_cgroups_mode(opts, kCriuCgIgnore);
  } else {
    // soft: CRIU moves the tasks, and sets no property of a group that
    // exists (the runtime made them, with the sandbox's limits).
    api_->set_manage_cgroups_mode(opts, kCriuCgSoft);
    if (api_->add_cg_root(opts, nullptr, options.cgroup_root.c_str()) < 0)
      return ErrnoValue(ENOMEM, "criu", "cgroup root " + options.cgroup_root);
  }
  for (const auto& [fd, key] : options.inherit_fds)
    if (api_->add_inherit_fd(opts, fd, key.c_str()) < 0) return ErrnoValue(ENOMEM, "criu", "inherit fd " + key);
  for (const auto& e : options.externals)
    if (api_->add_external(opts, e.c_str()) < 0) return ErrnoValue(ENOMEM, "criu", "external " + e);
  // libcriu runs `criu swrk` as a child: the fds it hands on must survive
  // that exec, for the restore only.
  for (const auto& [fd, key] : options.inherit_fds)
    if (fcntl(fd, F_SETFD, 0) < 0) return Errno("fcntl", "inherit fd " + key);
  int pid = api_->restore_child(opts);
  for (const auto& [fd, key] : options.inherit_fds) fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (pid < 0) return CriuFailed(pid, "restore", options.images_dir_fd, options.log_file);
  return static_cast<pid_t>(pid);
}

}  // namespace airlock::checkpoint
