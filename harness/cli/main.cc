// airlock: the command line. `airlock run` is daemonless: it calls the
// runtime library directly, like podman. It links no gRPC and no protobuf.
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "harness/cli/images_cmd.h"
#include "harness/cli/install_paths.h"
#include "harness/cli/options.h"
#include "harness/cli/users.h"
#include "images/host/host_image.h"
#include "runtime/checkpoint/criu.h"
#include "runtime/core/kernel_check.h"
#include "runtime/launch/sandbox.h"
#include "runtime/launch/state.h"

namespace airlock::cli {
namespace {

constexpr const char* kUsage =
    "usage: airlock run [OPTIONS] [--] CMD [ARGS...]\n"
    "\n"
    "Runs CMD in a new sandbox and exits with its status (125: airlock's own\n"
    "failure, 124: timeout, 126/127: CMD couldn't be run).\n"
    "\n"
    "  --image NAME              image (default: host, a read-only view of the host's /usr;\n"
    "                            others: airlock image import, airlock images)\n"
    "  --mount SRC:DST[:ro|rw]   bind a host path (default ro); rw,allow-root for a root-owned SRC\n"
    "  --workspace DIR           DIR read-write at /workspace (the working directory)\n"
    "  --env K=V                 set an environment variable (the caller's are not passed)\n"
    "  --memory SIZE             memory limit, e.g. 512M\n"
    "  --pids N                  process limit\n"
    "  --cpus N                  CPU quota, e.g. 1.5\n"
    "  --disk SIZE               limit on what the sandbox writes (btrfs pool qgroup)\n"
    "  --timeout DURATION        kill the sandbox after e.g. 30s\n"
    "  --seccomp NAME|PATH       seccomp profile (default, strict, or an OCI JSON file)\n"
    "  --net none                network: loopback only (the default)\n"
    "  --hostname NAME           hostname inside (default: sandbox)\n"
    "  --user NAME|UID           user inside (default: the image's, sandbox for host)\n"
    "  --checkpointable          namespaces CRIU can dump (its network namespace then\n"
    "                            belongs to the sandbox; ~0.3 ms slower to start)\n"
    "\n"
    "Other commands: airlock images [--json], airlock rmi NAME, airlock image import\n"
    "FILE [--name NAME] [--strip-setid] (OCI layout or docker/podman save archive),\n"
    "airlock image export NAME FILE|- (an OCI archive podman and docker load),\n"
    "airlock image inspect NAME, airlock image build NAME [--mirror URL] [--recipes DIR]\n"
    "(a recipe in images/NAME, docs/images.md), airlock check (kernel features, CRIU), airlock cleanup\n"
    "(remove what killed runs left), airlock version.\n"
    "\n"
    "Persistent sandboxes, served by airlockd (`airlock daemon` runs it): airlock create,\n"
    "exec, ps, inspect, cp, pause, resume, rm, stats, events, snapshot, snapshots, restore,\n"
    "fork, rmsnap, snapshot-export, snapshot-import, mcp (`airlock CMD --help`).\n";

[[noreturn]] void Die(const std::string& msg) {
  fprintf(stderr, "airlock: %s\n", msg.c_str());
  exit(125);
}

std::string NewSandboxId() {
  unsigned char bytes[6];
  if (getrandom(bytes, sizeof(bytes), 0) != sizeof(bytes)) Die("getrandom failed");
  std::string id = "run-";
  static const char* kHex = "0123456789abcdef";
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

int Run(const std::vector<std::string>& args) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    fputs(kUsage, stdout);
    return 0;
  }
  auto opts = ParseRunOptions(args);
  if (!opts) Die(opts.error().Message());
  RuntimePaths paths = DefaultPaths(AIRLOCK_SOURCE_DIR);
  if (paths.init_binary.empty()) Die("airlock-init not found next to " + ExeDir());
  if (paths.profiles_dir.empty()) Die("seccomp-profiles directory not found");
  if (geteuid() != 0) Die("airlock run needs root (it creates namespaces, cgroups and idmapped mounts)");

  timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  auto image = ResolveRunImage(paths, opts->image);
  if (!image) Die(image.error().Message());
  clock_gettime(CLOCK_MONOTONIC, &t1);
  const long image_us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;

  SandboxSpec spec;
  spec.id = NewSandboxId();
  spec.layers = image->layers;
  for (const auto& b : image->binds) spec.image_binds.push_back({b.source, b.target});
  spec.mounts = opts->mounts;
  spec.hostname = opts->hostname;
  spec.limits = opts->limits;
  spec.timeout = opts->timeout;
  spec.seccomp_profile = opts->seccomp;

  auto user = ResolveUser(image->layers, opts->user.value_or(image->default_user));
  if (!user) Die(user.error().Message());
  spec.process.argv = opts->argv;
  spec.process.uid = user->uid;
  spec.process.gid = user->gid;
  spec.process.cwd = opts->workspace ? "/workspace" : image->workdir.empty() ? "/" : image->workdir;
  // The image's environment, then clean defaults for what it leaves out.
  std::vector<std::string> env = image->env;
  auto add_default = [&env](const std::string& kv) {
    std::string key = kv.substr(0, kv.find('=') + 1);
    for (const auto& e : env)
      if (e.starts_with(key)) return;
    env.push_back(kv);
  };
  add_default("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  add_default("HOME=" + user->home);
  add_default("LANG=C.UTF-8");
  if (const char* term = getenv("TERM")) add_default(std::string("TERM=") + term);
  // --env values override the defaults.
  for (const auto& kv : opts->env) {
    std::string key = kv.substr(0, kv.find('=') + 1);
    std::erase_if(env, [&](const std::string& e) { return e.starts_with(key); });
    env.push_back(kv);
  }
  spec.process.env = env;

  LaunchOptions lo;
  const char* timings_env = getenv("AIRLOCK_TIMINGS");
  lo.timings = timings_env != nullptr && strcmp(timings_env, "1") == 0;
  lo.checkpointable = opts->checkpointable;

  // Signals meant for the command are forwarded to it through init.
  sigset_t forward;
  sigemptyset(&forward);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) sigaddset(&forward, s);
  sigprocmask(SIG_BLOCK, &forward, nullptr);
  int sigfd = signalfd(-1, &forward, SFD_CLOEXEC);

  int stdio[3] = {0, 1, 2};
  lo.first_process = &spec.process;
  lo.first_stdio = stdio;
  auto sandbox = Sandbox::Start(spec, paths, lo);
  if (!sandbox) Die(sandbox.error().Message());
  // Teardown off the caller's path (timings want it measured in line).
  std::vector<int> pins;
  for (const auto& p : image->pins) pins.push_back(p.get());
  if (!lo.timings)
    if (auto handed = (*sandbox)->HandOffTeardown(pins); !handed) Die(handed.error().Message());
  auto outcome = (*sandbox)->WaitOneShot(sigfd);
  if (!outcome) Die(outcome.error().Message());
  auto destroyed = (*sandbox)->Destroy();
  if (lo.timings) fprintf(stderr, "airlock-timing image %ld\n", image_us);
  if (lo.timings)
    for (const auto& t : (*sandbox)->timings())
      fprintf(stderr, "airlock-timing %s %llu\n", t.step.c_str(), static_cast<unsigned long long>(t.ns / 1000));
  std::string what = outcome->Describe(spec);
  if (!what.empty()) fprintf(stderr, "airlock: %s\n", what.c_str());
  if (!destroyed) fprintf(stderr, "airlock: cleanup: %s (the next run retries)\n", destroyed.error().Message().c_str());
  return outcome->ExitStatus();
}

// Commands a daemon serves: airlock-remote, which links gRPC, runs them, so
// that `airlock run` never loads it (decision 8).
bool IsRemoteCommand(const std::string& cmd) {
  for (const char* c : {"create", "exec", "ps", "inspect", "cp", "pause", "resume", "rm", "stats", "events", "snapshot",
                        "snapshots", "restore", "fork", "rmsnap", "snapshot-export", "snapshot-import", "mcp"})
    if (cmd == c) return true;
  return false;
}

// Replaces this process with a sibling program (airlock-remote, airlockd).
[[noreturn]] void ExecSibling(const std::string& name, const std::string& libexec_name, char** argv) {
  std::string dir = ExeDir();
  for (std::string candidate : {dir + "/" + name, dir + "/../libexec/airlock/" + libexec_name})
    if (access(candidate.c_str(), X_OK) == 0) {
      execv(candidate.c_str(), argv);
      Die("exec " + candidate + ": " + strerror(errno));
    }
  Die(name + " not found next to " + dir);
}

}  // namespace
}  // namespace airlock::cli

int main(int argc, char** argv) {
  using namespace airlock;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    fputs(cli::kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 125 : 0;
  }
  // The daemon commands' global options may come first: airlock --socket S ps.
  size_t first = 0;
  while (first < args.size() && (args[first] == "--json" || args[first].starts_with("--socket")))
    first += args[first] == "--socket" ? 2 : 1;
  if (first < args.size() && cli::IsRemoteCommand(args[first]))
    cli::ExecSibling("airlock-remote", "airlock-remote", argv);
  std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "daemon") {
    argv[1] = argv[0];  // airlockd's own options follow
    cli::ExecSibling("airlockd", "airlockd", argv + 1);
  }
  if (cmd == "run") return cli::Run(args);
  if (cmd == "images") return cli::ImagesCommand(cli::DefaultPaths(AIRLOCK_SOURCE_DIR), args);
  if (cmd == "rmi") return cli::RmiCommand(cli::DefaultPaths(AIRLOCK_SOURCE_DIR), args);
  if (cmd == "image" && !args.empty() && args[0] == "build")
    return cli::ImageBuildCommand(cli::DefaultPaths(AIRLOCK_SOURCE_DIR), args, AIRLOCK_SOURCE_DIR "/images");
  if (cmd == "image") return cli::ImageCommand(cli::DefaultPaths(AIRLOCK_SOURCE_DIR), args);
  if (cmd == "version") {
    puts("airlock 0.1.0");
    return 0;
  }
  if (cmd == "check") {
    auto k = CheckKernel();
    if (!k) cli::Die(k.error().Message());
    printf("kernel ok (time namespace: %s)\n", k->time_namespace ? "yes" : "no");
    // CRIU is optional: full snapshots need it, nothing else does.
    auto criu = checkpoint::Criu::Load();
    auto usable = criu ? (*criu)->Check() : Result<void>(std::unexpected(criu.error()));
    printf("criu: %s\n", usable ? "ok" : ("unavailable: " + usable.error().Message()).c_str());
    return 0;
  }
  if (cmd == "cleanup") {
    RuntimePaths paths = cli::DefaultPaths(AIRLOCK_SOURCE_DIR);
    auto n = CleanupStaleSandboxes(paths);
    if (!n) cli::Die(n.error().Message());
    printf("removed %d stale sandbox(es)\n", *n);
    return 0;
  }
  cli::Die("unknown command \"" + cmd + "\" (run, images, rmi, image, check, cleanup, version)");
}
