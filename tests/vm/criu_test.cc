// CRIU on real airlock sandboxes, run in the guest lane (Debian's criu 3.17.1
// works on its 6.1 kernel; on the build host's 6.18 it can't start). What
// these tests found is written up in docs/criu.md.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "images/host/host_image.h"
#include "runtime/checkpoint/criu.h"
#include "runtime/launch/sandbox.h"
#include "runtime/proto/channel.h"

using namespace airlock;
namespace fs = std::filesystem;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

long Counter(pid_t init) {
  std::string v = ReadFile("/proc/" + std::to_string(init) + "/root/tmp/count");
  return v.empty() ? -1 : std::stol(v);
}

std::string StatusField(pid_t pid, const std::string& field) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return line.substr(field.size() + 1);
  return "";
}

bool CriuUsable(std::string* why) {
  auto criu = checkpoint::Criu::Load();
  if (!criu) {
    *why = criu.error().Message();
    return false;
  }
  // The guest script has run `criu check` (libcriu's RPC check is stricter:
  // it fails on the guest's missing tun device, which the dump never needs).
  return true;
}

RuntimePaths Paths() {
  RuntimePaths p;
  p.init_binary = std::string(AIRLOCK_BUILD_DIR) + "/airlock-init";
  p.profiles_dir = std::string(AIRLOCK_BUILD_DIR) + "/seccomp-profiles";
  return p;
}

struct Dir {
  std::string path;
  explicit Dir(const std::string& tag) {
    std::string tmpl = "/var/tmp/airlock-" + tag + "-XXXXXX";
    path = mkdtemp(tmpl.data());
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

TEST_CASE("criu: a checkpointable sandbox is dumped, restored and carries on", "[vm][criu]") {
  std::string why;
  if (!CriuUsable(&why)) {
    WARN("SKIP: CRIU can't run here: " << why);
    return;
  }
  RuntimePaths paths = Paths();
  REQUIRE(PrepareRuntimeDirs(paths));
  REQUIRE((mkdir((paths.state_root + "/images").c_str(), 0700) >= 0 || errno == EEXIST));
  auto image = images::EnsureHostImage(paths.state_root + "/images");
  REQUIRE(image);

  SandboxSpec spec;
  spec.id = "criu-" + std::to_string(getpid());
  spec.layers = image->lower_dirs;
  for (const auto& b : image->binds) spec.image_binds.push_back({b.host_path, b.target});
  // The command's own stdio is the sandbox's /dev/null: a descriptor of a
  // host file can't be checkpointed (its mount is outside the sandbox).
  spec.process.argv = {"/bin/sh", "-c",
                       "exec </dev/null >/dev/null 2>&1; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; "
                       "sleep 0.1; done"};
  spec.process.env = {"PATH=/usr/bin:/bin"};
  spec.process.cwd = "/";
  LaunchOptions options;
  options.checkpointable = true;
  options.oneshot = true;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int stdio[3] = {devnull, devnull, devnull};
  options.first_process = &spec.process;
  options.first_stdio = stdio;

  auto sandbox = Sandbox::Start(spec, paths, options);
  REQUIRE(sandbox);
  close(devnull);
  const pid_t init = (*sandbox)->init_pid();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const long before = Counter(init);
  INFO("counter before the dump " << before);
  REQUIRE(before > 0);
  INFO("NoNewPrivs before: " << StatusField(init, "NoNewPrivs") << ", Seccomp: " << StatusField(init, "Seccomp"));

  Dir images("criu-images");
  int images_fd = open(images.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(images_fd >= 0);
  std::string key = (*sandbox)->ChannelKey().value_or("");
  auto dumped = (*sandbox)->Checkpoint(images_fd, /*leave_running=*/false);
  INFO("dump: " << (dumped ? std::string("ok") : dumped.error().Message()));
  if (!dumped)
    if (const char* out = getenv("AIRLOCK_OUT")) std::ofstream(std::string(out) + "/dump.log") << ReadFile(images.path + "/dump.log");
  REQUIRE(dumped);
  // Dumped without leave-running: CRIU ended the tree, so the sandbox ended.
  auto outcome = (*sandbox)->WaitOneShot(-1);
  REQUIRE(outcome);
  CHECK(outcome->kind == Outcome::Kind::kInitDied);
  REQUIRE((*sandbox)->Destroy());
  CHECK(fs::exists(images.path + "/pstree.img"));
  CHECK(fs::exists(images.path + "/seccomp.img"));

  // Restore into a fresh root: the host layer under an overlay made here (the
  // writable layer was a tmpfs, gone with the sandbox; /tmp is in the images).
  Dir root_parts("criu-root");
  for (const char* d : {"/root", "/upper", "/work"}) REQUIRE(mkdir((root_parts.path + d).c_str(), 0755) == 0);
  std::string ovl = "lowerdir=" + image->lower_dirs[0] + ",upperdir=" + root_parts.path + "/upper,workdir=" +
                    root_parts.path + "/work";
  REQUIRE(mount("none", (root_parts.path + "/root").c_str(), "overlay", 0, ovl.c_str()) == 0);
  struct Unmount {
    std::string p;
    ~Unmount() { umount2(p.c_str(), MNT_DETACH); }
  } unmount{root_parts.path + "/root"};

  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  auto criu = checkpoint::Criu::Load();
  REQUIRE(criu);
  checkpoint::RestoreOptions r;
  r.images_dir_fd = images_fd;
  r.root = root_parts.path + "/root";
  r.inherit_fds = {{sv[1], key}};
  r.externals = {"mnt[]"};
  auto restored = (*criu)->Restore(r);
  close(sv[1]);
  INFO("restore: " << (restored ? std::string("ok") : restored.error().Message()));
  if (!restored) {
    std::string log = ReadFile(images.path + "/restore.log");
    if (const char* out = getenv("AIRLOCK_OUT")) std::ofstream(std::string(out) + "/restore.log") << log;
    std::istringstream lines(log);
    std::string line, errors;
    while (std::getline(lines, line))
      if (line.find("Error") != std::string::npos || line.find("Warn") != std::string::npos) errors += line + "\n";
    WARN("restore.log errors:\n" << errors);
  }
  REQUIRE(restored);
  const pid_t again = *restored;
  struct Kill {
    pid_t p;
    ~Kill() {
      kill(p, SIGKILL);
      waitpid(p, nullptr, 0);
    }
  } kill_restored{again};

  // The restored init answers on the channel it was handed.
  REQUIRE(proto::SendMessage(sv[0], proto::Type::kHello, proto::EncodeHello()) == 0);
  auto hello = proto::ReceiveMessage(sv[0]);
  REQUIRE(hello);
  CHECK(hello->type == proto::Type::kHello);
  CHECK(proto::DecodeHello(hello->payload));

  // The loop carries on from where it was.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long after1 = Counter(again);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  const long after2 = Counter(again);
  INFO("counter: before the dump " << before << ", after the restore " << after1 << " then " << after2);
  CHECK(after1 >= before);
  CHECK(after2 > after1);
  // The filter survives; no_new_privs does not with CRIU 3.17 (fixed in
  // 3.19): the runtime must check and say so (docs/criu.md).
  CHECK(StatusField(again, "Seccomp").find('2') != std::string::npos);
  WARN("NoNewPrivs after restore:" << StatusField(again, "NoNewPrivs"));
  close(sv[0]);
  close(images_fd);
}
