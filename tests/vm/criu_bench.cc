// The CRIU benchmark of the guest lane (tools/bench/criu-in-guest.sh): the
// same sandbox checkpointed and restored by `criu` by hand and by airlock's
// own Sandbox::Checkpoint / Sandbox::Restore, alternating, in one run.
// airlock's overhead = its median / the hand-run median.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "images/host/host_image.h"
#include "runtime/launch/sandbox.h"

using namespace airlock;

namespace {

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1000.0 + static_cast<double>(ts.tv_nsec) / 1e6;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "criu_bench: %s\n", what.c_str());
  exit(1);
}

int Run(std::vector<std::string> argv, const std::vector<int>& keep_fds = {}) {
  pid_t pid = fork();
  if (pid == 0) {
    for (int fd : keep_fds) fcntl(fd, F_SETFD, 0);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::string MakeDir(const std::string& tag) {
  std::string tmpl = "/var/tmp/airlock-bench-" + tag + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp");
  return tmpl;
}

std::string MakeRoot(const std::string& layer) {
  std::string d = MakeDir("root");
  for (const char* s : {"/root", "/upper", "/work"}) mkdir((d + s).c_str(), 0755);
  std::string o = "lowerdir=" + layer + ",upperdir=" + d + "/upper,workdir=" + d + "/work";
  if (mount("none", (d + "/root").c_str(), "overlay", 0, o.c_str()) != 0) Die("overlay");
  return d + "/root";
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? atoi(argv[1]) : 5;
  RuntimePaths paths;
  paths.init_binary = std::string(AIRLOCK_BUILD_DIR) + "/airlock-init";
  paths.profiles_dir = std::string(AIRLOCK_BUILD_DIR) + "/seccomp-profiles";
  if (!PrepareRuntimeDirs(paths)) Die("runtime dirs");
  mkdir((paths.state_root + "/images").c_str(), 0700);
  auto image = images::EnsureHostImage(paths.state_root + "/images");
  if (!image) Die(image.error().Message());

  SandboxSpec spec;
  spec.id = "criu-bench-" + std::to_string(getpid());
  spec.layers = image->lower_dirs;
  for (const auto& b : image->binds) spec.image_binds.push_back({b.host_path, b.target});
  spec.process.argv = {"/bin/sh", "-c",
                       "exec </dev/null >/dev/null 2>&1; exec python3 -c 'import time\nx = list(range(200000))\n"
                       "while True: time.sleep(0.1)\n'"};
  spec.process.env = {"PATH=/usr/bin:/bin"};
  LaunchOptions options;
  options.checkpointable = true;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int stdio[3] = {devnull, devnull, devnull};
  options.first_process = &spec.process;
  options.first_stdio = stdio;
  auto sb = Sandbox::Start(spec, paths, options);
  if (!sb) Die(sb.error().Message());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const pid_t init = (*sb)->init_pid();
  const std::string key = (*sb)->ChannelKey().value_or("");
  const std::string ino = key.substr(8, key.size() - 9);
  std::ifstream um("/proc/" + std::to_string(init) + "/uid_map");
  uint32_t inside = 0, base = 0;
  um >> inside >> base;

  // Checkpoints of the running sandbox, alternating.
  std::vector<double> by_hand, by_airlock;
  std::string last_images;
  for (int i = 0; i < runs; ++i) {
    std::string d1 = MakeDir("hand");
    double t = NowMs();
    int rc = Run({"criu", "dump", "-t", std::to_string(init), "-D", d1, "--leave-running", "--external",
                  "unix[" + ino + "]", "--external", "mnt[]", "--manage-cgroups=ignore", "-o", "dump.log"});
    by_hand.push_back(NowMs() - t);
    if (rc != 0) Die("criu dump by hand failed (" + d1 + "/dump.log)");
    std::string d2 = MakeDir("airlock");
    int fd = open(d2.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    t = NowMs();
    auto r = (*sb)->Checkpoint(fd, true);
    by_airlock.push_back(NowMs() - t);
    close(fd);
    if (!r) Die(r.error().Message());
    last_images = d2;
  }
  printf("checkpoint (leave running), %d runs each, medians:\n", runs);
  printf("  criu dump by hand        %8.1f ms\n", Median(by_hand));
  printf("  Sandbox::Checkpoint      %8.1f ms   (x %.2f)\n", Median(by_airlock), Median(by_airlock) / Median(by_hand));

  // Restores of the last checkpoint, the sandbox gone, alternating.
  if (!(*sb)->Destroy()) Die("destroy");
  std::vector<double> r_hand, r_airlock;
  for (int i = 0; i < runs; ++i) {
    std::string root = MakeRoot(image->lower_dirs[0]);
    int sv[2];
    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
    std::string pidfile = MakeDir("pid") + "/pid";
    double t = NowMs();
    int rc = Run({"criu", "restore", "-D", last_images, "-d", "--pidfile", pidfile, "--root", root, "--external",
                  "mnt[]", "--manage-cgroups=ignore", "--inherit-fd",
                  "fd[" + std::to_string(sv[1]) + "]:" + key, "-o", "restore-hand.log"},
                 {sv[1]});
    r_hand.push_back(NowMs() - t);
    if (rc != 0) Die("criu restore by hand failed (" + last_images + "/restore-hand.log)");
    std::ifstream pf(pidfile);
    pid_t restored = 0;
    pf >> restored;
    kill(restored, SIGKILL);
    close(sv[0]);
    close(sv[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    umount2(root.c_str(), MNT_DETACH);

    root = MakeRoot(image->lower_dirs[0]);
    int fd = open(last_images.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    t = NowMs();
    auto again = Sandbox::Restore(spec, RestoreRequest{fd, root, base, key}, paths, LaunchOptions{});
    r_airlock.push_back(NowMs() - t);
    close(fd);
    if (!again) Die(again.error().Message());
    (*again)->Destroy();
    umount2(root.c_str(), MNT_DETACH);
  }
  printf("restore into a new root, %d runs each, medians:\n", runs);
  printf("  criu restore by hand     %8.1f ms\n", Median(r_hand));
  printf("  Sandbox::Restore         %8.1f ms   (x %.2f)\n", Median(r_airlock), Median(r_airlock) / Median(r_hand));
  return 0;
}
