#include "runtime/checkpoint/criu.h"

#include <dlfcn.h>
#include <fcntl.h>

#include <cstring>

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
  int (*check)(criu_opts*);
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

// libcriu returns -errno-like codes, or -52 (EBADE) for "criu said no".
std::unexpected<Error> CriuFailed(int r, const std::string& what, const std::string& log) {
  return ErrnoValue(r < 0 ? -r : EIO, "criu " + what, "see " + log + " in the images directory");
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
                  Bind(h, "criu_local_add_cg_root", &a.add_cg_root) && Bind(h, "criu_local_check", &a.check) &&
                  Bind(h, "criu_local_dump", &a.dump) && Bind(h, "criu_local_restore_child", &a.restore_child);
  if (!ok) return Fail("criu", std::string("libcriu.so.2 lacks a function airlock needs: ") + dlerror());
  return c;
}

Criu::~Criu() {
  if (handle_ != nullptr) dlclose(handle_);
}

Result<void> Criu::Check() {
  Opts o(*api_);
  criu_opts* opts = TRY(o.Init());
  if (int r = api_->check(opts); r < 0)
    return ErrnoValue(-r, "criu check", "CRIU can't run on this kernel (run `criu check` for the reason)");
  return {};
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
  if (int r = api_->dump(opts); r < 0) return CriuFailed(r, "dump", options.log_file);
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
  if (pid < 0) return CriuFailed(pid, "restore", options.log_file);
  return static_cast<pid_t>(pid);
}

}  // namespace airlock::checkpoint
