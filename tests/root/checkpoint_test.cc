// What a checkpoint refuses before CRIU is even asked (runtime/checkpoint/
// preflight.cc): the sandbox holds something CRIU 3.17 can't checkpoint.
// Runs on the host: no CRIU needed. The dumps themselves: tests/vm/.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "helpers.h"
#include "images/host/host_image.h"
#include "runtime/launch/sandbox.h"

using namespace airlock;

namespace {

std::string CheckpointError(const std::string& script, bool host_stdio) {
  RuntimePaths paths;
  paths.init_binary = std::string(AIRLOCK_BUILD_DIR) + "/airlock-init";
  paths.profiles_dir = std::string(AIRLOCK_BUILD_DIR) + "/seccomp-profiles";
  REQUIRE(PrepareRuntimeDirs(paths));
  auto image = images::EnsureHostImage(paths.state_root + "/images");
  REQUIRE(image);
  SandboxSpec spec;
  spec.id = "ckpt-" + std::to_string(getpid()) + "-" + std::to_string(rand() % 100000);
  spec.layers = image->lower_dirs;
  for (const auto& b : image->binds) spec.image_binds.push_back({b.host_path, b.target});
  spec.process.argv = {"/bin/sh", "-c", (host_stdio ? "" : "exec </dev/null >/dev/null 2>&1; ") + script};
  spec.process.env = {"PATH=/usr/bin:/bin"};
  LaunchOptions options;
  options.checkpointable = true;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int stdio[3] = {devnull, devnull, devnull};
  options.first_process = &spec.process;
  options.first_stdio = stdio;
  auto sb = Sandbox::Start(spec, paths, options);
  close(devnull);
  REQUIRE(sb);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  char dir[] = "/var/tmp/airlock-ckpt-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  auto r = (*sb)->Checkpoint(fd, /*leave_running=*/true);
  close(fd);
  rmdir(dir);
  REQUIRE((*sb)->Destroy());
  REQUIRE_FALSE(r);
  return r.error().Message();
}

}  // namespace

TEST_CASE("checkpoint: a pidfd is refused, naming the process", "[root][checkpoint]") {
  std::string e = CheckpointError("exec python3 -c 'import os, time; fd = os.pidfd_open(os.getpid()); time.sleep(60)'", false);
  INFO(e);
  CHECK(e.find("a pidfd") != std::string::npos);
  CHECK(e.find("python3") != std::string::npos);
}

TEST_CASE("checkpoint: an inotify watch is refused", "[root][checkpoint]") {
  std::string e = CheckpointError("echo x > /tmp/f; exec tail -f /tmp/f", false);
  INFO(e);
  CHECK(e.find("inotify") != std::string::npos);
}

TEST_CASE("checkpoint: a descriptor of a host file is refused", "[root][checkpoint]") {
  // The command's stdio is the host's /dev/null: a mount of the host's.
  std::string e = CheckpointError("exec sleep 60", true);
  INFO(e);
  CHECK(e.find("outside the sandbox") != std::string::npos);
  CHECK(e.find("/dev/null") != std::string::npos);
}

TEST_CASE("checkpoint: a sandbox not started checkpointable is refused", "[root][checkpoint]") {
  RuntimePaths paths;
  paths.init_binary = std::string(AIRLOCK_BUILD_DIR) + "/airlock-init";
  paths.profiles_dir = std::string(AIRLOCK_BUILD_DIR) + "/seccomp-profiles";
  auto image = images::EnsureHostImage(paths.state_root + "/images");
  REQUIRE(image);
  SandboxSpec spec;
  spec.id = "ckpt-no-" + std::to_string(getpid());
  spec.layers = image->lower_dirs;
  for (const auto& b : image->binds) spec.image_binds.push_back({b.host_path, b.target});
  spec.process.argv = {"/bin/sleep", "30"};
  LaunchOptions options;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int stdio[3] = {devnull, devnull, devnull};
  options.first_process = &spec.process;
  options.first_stdio = stdio;
  auto sb = Sandbox::Start(spec, paths, options);
  close(devnull);
  REQUIRE(sb);
  auto r = (*sb)->Checkpoint(0, false);
  REQUIRE_FALSE(r);
  CHECK(r.error().Message().find("checkpointable") != std::string::npos);
  REQUIRE((*sb)->Destroy());
}
