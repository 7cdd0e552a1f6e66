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

// The loop rewrites the file (truncate, then write): an empty read is that
// moment, not an answer.
long Counter(pid_t init) {
  for (int i = 0; i < 50; ++i) {
    std::string v = ReadFile("/proc/" + std::to_string(init) + "/root/tmp/count");
    if (!v.empty() && v.find_first_of("0123456789") != std::string::npos) return std::stol(v);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
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

namespace {

// The root a restore rebuilds the tree's mount namespace on: the host
// layer under an overlay in this mount namespace (the writable layer of a
// one-shot sandbox is a tmpfs, gone with it; /tmp and /dev are in the images).
struct RestoreRoot {
  Dir parts{"criu-root"};
  std::string root;
  explicit RestoreRoot(const std::string& layer) {
    for (const char* d : {"/root", "/upper", "/work"}) REQUIRE(mkdir((parts.path + d).c_str(), 0755) == 0);
    root = parts.path + "/root";
    std::string o = "lowerdir=" + layer + ",upperdir=" + parts.path + "/upper,workdir=" + parts.path + "/work";
    REQUIRE(mount("none", root.c_str(), "overlay", 0, o.c_str()) == 0);
  }
  ~RestoreRoot() { umount2(root.c_str(), MNT_DETACH); }
};

struct Fixture {
  RuntimePaths paths = Paths();
  images::ImageLayers image;
  Fixture() {
    REQUIRE(PrepareRuntimeDirs(paths));
    REQUIRE((mkdir((paths.state_root + "/images").c_str(), 0700) >= 0 || errno == EEXIST));
    auto i = images::EnsureHostImage(paths.state_root + "/images");
    REQUIRE(i);
    image = *i;
  }
  SandboxSpec Spec(const std::string& id, const std::string& script) const {
    SandboxSpec spec;
    spec.id = id;
    spec.layers = image.lower_dirs;
    for (const auto& b : image.binds) spec.image_binds.push_back({b.host_path, b.target});
    spec.limits.memory_bytes = 256u << 20;
    spec.limits.pids = 64;
    // The command's own stdio is the sandbox's /dev/null: a descriptor of a
    // host file can't be checkpointed (its mount is outside the sandbox).
    spec.process.argv = {"/bin/sh", "-c", "exec </dev/null >/dev/null 2>&1; " + script};
    spec.process.env = {"PATH=/usr/bin:/bin"};
    spec.process.cwd = "/";
    return spec;
  }
};

std::unique_ptr<Sandbox> StartCheckpointable(const Fixture& f, const SandboxSpec& spec) {
  LaunchOptions options;
  options.checkpointable = true;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int stdio[3] = {devnull, devnull, devnull};
  options.first_process = &spec.process;
  options.first_stdio = stdio;
  auto sandbox = Sandbox::Start(spec, f.paths, options);
  close(devnull);
  INFO((sandbox ? std::string("started") : sandbox.error().Message()));
  REQUIRE(sandbox);
  return std::move(*sandbox);
}

// Dumps `sb` (ending it), restores it as a sandbox of its own.
std::unique_ptr<Sandbox> Cycle(const Fixture& f, std::unique_ptr<Sandbox> sb, const SandboxSpec& spec,
                               uint32_t id_base, Dir& images) {
  int images_fd = open(images.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(images_fd >= 0);
  std::string key = sb->ChannelKey().value_or("");
  auto dumped = sb->Checkpoint(images_fd, /*leave_running=*/false);
  if (!dumped)
    if (const char* out = getenv("AIRLOCK_OUT")) std::ofstream(std::string(out) + "/dump.log") << ReadFile(images.path + "/dump.log");
  INFO("dump: " << (dumped ? std::string("ok") : dumped.error().Message()));
  REQUIRE(dumped);
  auto outcome = sb->WaitOneShot(-1);
  REQUIRE(outcome);
  CHECK(outcome->kind == Outcome::Kind::kInitDied);  // CRIU ended the tree
  REQUIRE(sb->Destroy());
  sb.reset();

  RestoreRoot root(f.image.lower_dirs[0]);
  RestoreRequest req{images_fd, root.root, id_base, key};
  auto restored = Sandbox::Restore(spec, req, f.paths, LaunchOptions{});
  if (!restored) {
    std::string log = ReadFile(images.path + "/restore.log");
    if (const char* out = getenv("AIRLOCK_OUT")) std::ofstream(std::string(out) + "/restore.log") << log;
    std::istringstream lines(log);
    std::string line, errors;
    while (std::getline(lines, line))
      if (line.find("Error") != std::string::npos) errors += line + "\n";
    WARN("restore.log errors:\n" << errors);
  }
  INFO("restore: " << (restored ? std::string("ok") : restored.error().Message()));
  REQUIRE(restored);
  close(images_fd);
  for (const auto& w : (*restored)->restore_warnings()) WARN("restore warning: " << w);
  return std::move(*restored);
}

uint32_t IdBase(pid_t init) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(init) + "/uid_map"));
  uint32_t inside = 0, outside = 0;
  in >> inside >> outside;
  return outside;
}

std::string NestedUsernsLimit(pid_t init) {
  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  pid_t c = fork();
  if (c == 0) {
    int ns = open(("/proc/" + std::to_string(init) + "/ns/user").c_str(), O_RDONLY);
    if (ns < 0 || setns(ns, CLONE_NEWUSER) < 0) _exit(1);
    std::string v = ReadFile("/proc/sys/user/max_user_namespaces");
    (void)!write(pipefd[1], v.data(), v.size());
    _exit(0);
  }
  close(pipefd[1]);
  char buf[64] = {};
  ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
  close(pipefd[0]);
  waitpid(c, nullptr, 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace

TEST_CASE("criu: a shell loop is dumped, restored by the runtime, and carries on", "[vm][criu]") {
  std::string why;
  if (!CriuUsable(&why)) {
    WARN("SKIP: CRIU can't run here: " << why);
    return;
  }
  Fixture f;
  SandboxSpec spec = f.Spec("criu-sh-" + std::to_string(getpid()),
                            "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done");
  auto sb = StartCheckpointable(f, spec);
  const pid_t first = sb->init_pid();
  const uint32_t base = IdBase(first);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const long before = Counter(first);
  INFO("counter before the dump " << before);
  REQUIRE(before > 0);
  CHECK(StatusField(first, "NoNewPrivs").find('1') != std::string::npos);

  Dir images("criu-images");
  CHECK(NestedUsernsLimit(first) == "0\n");
  auto again = Cycle(f, std::move(sb), spec, base, images);
  const pid_t init = again->init_pid();
  CHECK(fs::exists(images.path + "/pstree.img"));

  // Into the same id range, into the runtime's cgroup, nested user
  // namespaces shut again, the filter still there.
  CHECK(IdBase(init) == base);
  std::string cg = ReadFile("/proc/" + std::to_string(init) + "/cgroup");
  INFO("restored init's cgroup: " << cg);
  CHECK(cg.find("airlock-" + spec.id) != std::string::npos);
  CHECK(NestedUsernsLimit(init) == "0\n");
  CHECK(StatusField(init, "Seccomp").find('2') != std::string::npos);

  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long after1 = Counter(init);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  const long after2 = Counter(init);
  INFO("counter: before the dump " << before << ", after the restore " << after1 << " then " << after2);
  CHECK(after1 >= before);
  CHECK(after2 > after1);
  WARN("NoNewPrivs of the restored init:" << StatusField(init, "NoNewPrivs"));
  REQUIRE(again->Destroy());
}

TEST_CASE("criu: a Python process keeps its state over repeated checkpoints", "[vm][criu]") {
  std::string why;
  if (!CriuUsable(&why)) {
    WARN("SKIP: CRIU can't run here: " << why);
    return;
  }
  Fixture f;
  SandboxSpec spec = f.Spec(
      "criu-py-" + std::to_string(getpid()),
      "exec python3 -c 'import time\nstate = {\"n\": 0, \"log\": []}\nwhile True:\n    state[\"n\"] += 1\n"
      "    state[\"log\"].append(state[\"n\"])\n    open(\"/tmp/count\", \"w\").write(str(sum(state[\"log\"])))\n"
      "    time.sleep(0.1)\n'");
  auto sb = StartCheckpointable(f, spec);
  const pid_t first = sb->init_pid();
  const uint32_t base = IdBase(first);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  // A checkpoint after every step, the sandbox running on: three of them.
  std::vector<std::unique_ptr<Dir>> checkpoints;
  long at_last_checkpoint = 0;
  for (int i = 0; i < 3; ++i) {
    checkpoints.push_back(std::make_unique<Dir>("criu-images"));
    int fd = open(checkpoints.back()->path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    at_last_checkpoint = Counter(first);
    auto dumped = sb->Checkpoint(fd, /*leave_running=*/true);
    close(fd);
    INFO("checkpoint " << i << ": " << (dumped ? std::string("ok") : dumped.error().Message()));
    REQUIRE(dumped);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(Counter(first) > at_last_checkpoint);  // it goes on
  }
  // The last checkpoint, brought back once the sandbox has died.
  const std::string key = sb->ChannelKey().value_or("");
  REQUIRE(sb->Destroy());
  sb.reset();
  int images_fd = open(checkpoints.back()->path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  RestoreRoot root(f.image.lower_dirs[0]);
  auto restored = Sandbox::Restore(spec, RestoreRequest{images_fd, root.root, base, key}, f.paths, LaunchOptions{});
  close(images_fd);
  INFO("restore: " << (restored ? std::string("ok") : restored.error().Message()));
  REQUIRE(restored);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  const long now = Counter((*restored)->init_pid());
  INFO("sum at the last checkpoint " << at_last_checkpoint << ", after the restore " << now);
  // The sum of 1..n only grows from where it was if the list (the process's
  // memory) came back.
  CHECK(now > at_last_checkpoint);
  REQUIRE((*restored)->Destroy());
}

TEST_CASE("criu: a pool upper and a read-write host mount with a file open on it", "[vm][criu]") {
  // The host mount comes back idmapped: the runtime makes it again and hands
  // it to CRIU by name (CRIU 3.17 alone brings it back as a plain bind, and
  // the restored process can't reopen its file: EACCES).
  std::string why;
  if (!CriuUsable(&why)) {
    WARN("SKIP: CRIU can't run here: " << why);
    return;
  }
  Fixture f;
  Dir data("criu-data");
  REQUIRE(chown(data.path.c_str(), 4242, 4242) == 0);
  SandboxSpec spec = f.Spec("criu-rw-" + std::to_string(getpid()),
                            "exec 3>>/data/log; i=0; while :; do i=$((i+1)); echo $i >&3; echo $i > /tmp/count; "
                            "sleep 0.1; done");
  spec.limits.disk_bytes = 64u << 20;  // the upper is a btrfs subvolume of the pool, idmapped
  spec.mounts.push_back({data.path, "/data", false, false});
  auto sb = StartCheckpointable(f, spec);
  const uint32_t base = IdBase(sb->init_pid());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const long before = Counter(sb->init_pid());
  REQUIRE(before > 0);
  struct stat st;
  REQUIRE(stat((data.path + "/log").c_str(), &st) == 0);
  CHECK(st.st_uid == 4242u);  // idmapped: the directory's owner

  Dir images("criu-images");
  auto again = Cycle(f, std::move(sb), spec, base, images);
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const long after = Counter(again->init_pid());
  INFO("counter " << before << " -> " << after);
  CHECK(after > before);
  // The restored process still appends to its open file on the host mount,
  // and what it writes still belongs to the directory's owner.
  std::string log = ReadFile(data.path + "/log");
  CHECK(log.find("\n" + std::to_string(after - 1) + "\n") != std::string::npos);
  REQUIRE(stat((data.path + "/log").c_str(), &st) == 0);
  CHECK(st.st_uid == 4242u);
  REQUIRE(again->Destroy());
  // The staging mounts the restore made are gone with it.
  CHECK_FALSE(fs::exists(f.paths.run_root + "/restore-" + spec.id));
}
