// The CLI's daemon commands end to end: a real airlockd from the build
// directory on a private socket and state directory, driven by the built
// `airlock-remote` (and once through `airlock`, which execs it). Asserts
// on what the commands print and what programs inside the sandbox see.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <map>
#include <nlohmann/json.hpp>

#include "tests/root/helpers.h"

using namespace airlock_test;

namespace {

std::string RemoteBin() { return BuildDir() + "/airlock-remote"; }

// airlockd with its own socket and state under /var/tmp (not /tmp: a tmpfs
// there can't be idmapped before Linux 6.3, as in the guest lane), stopped (and every
// sandbox it made destroyed) at the end of the test case.
class Daemon {
 public:
  Daemon() {
    RequireBuilt(BuildDir() + "/airlockd");
    RequireBuilt(BuildDir() + "/airlock-init");
    RequireBuilt(RemoteBin());
    char tmpl[] = "/var/tmp/airlock-cli-remote-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    socket_ = dir_ + "/airlockd.sock";
    log_ = dir_ + "/airlockd.log";
    std::vector<std::string> argv = {BuildDir() + "/airlockd", "--socket", socket_, "--state-dir", dir_ + "/state"};
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      dup2(fd, 1);
      dup2(fd, 2);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    // Ready once a call goes through.
    bool up = Eventually([&] { return Exists(socket_) && Cli({"ps"}).status == 0; }, 30);
    if (!up) FAIL("airlockd did not come up on " << socket_ << "\n--- its log ---\n" << ReadFile(log_));
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  ~Daemon() {
    for (const auto& id : created_) Cli({"rm", "-f", id});
    kill(pid_, SIGTERM);
    bool gone = Eventually([&] { return waitpid(pid_, nullptr, WNOHANG) == pid_; }, 20);
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    // airlockd leaves its pool mounted (the next daemon's); this one has none.
    umount2((dir_ + "/state/pool").c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // A sandbox the daemon made for a call other than Create (restore, fork):
  // destroyed with the daemon, or its keeper would hold it past the test.
  void Track(const std::string& id) { created_.push_back(id); }

  const std::string& socket() const { return socket_; }
  std::string Log() const { return ReadFile(log_); }

  // `airlock-remote CMD --socket S ARGS...`.
  std::vector<std::string> Argv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {RemoteBin(), args.at(0), "--socket", socket_};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    return argv;
  }
  RunResult Cli(const std::vector<std::string>& args, const std::string& input = "", double seconds = 60) const {
    return Exec(Argv(args), input, seconds);
  }
  // `airlock create ARGS...`; the new sandbox's id (the test fails if none).
  std::string Create(const std::vector<std::string>& args = {}) {
    std::vector<std::string> full = {"create", "--label", "suite=cli-remote"};
    full.insert(full.end(), args.begin(), args.end());
    auto r = Cli(full, "", 120);
    INFO(r.Describe() << "--- airlockd log ---\n" << Log());
    REQUIRE(r.status == 0);
    std::string id = r.out.substr(0, r.out.find('\n'));
    REQUIRE(id.starts_with("sb-"));
    REQUIRE(r.out == id + "\n");
    created_.push_back(id);
    return id;
  }
  // `airlock exec ID -- sh -c SCRIPT`.
  RunResult Sh(const std::string& id, const std::string& script, const std::vector<std::string>& options = {}) const {
    std::vector<std::string> args = {"exec"};
    args.insert(args.end(), options.begin(), options.end());
    args.insert(args.end(), {id, "--", "sh", "-c", script});
    return Cli(args);
  }

 private:
  std::string dir_, socket_, log_;
  pid_t pid_ = -1;
  std::vector<std::string> created_;
};

void WriteHostFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  if (!out) throw std::runtime_error("write " + path + " failed");
}

nlohmann::json ParseJson(const RunResult& r) {
  auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  INFO(r.Describe());
  REQUIRE(!j.is_discarded());
  return j;
}

// Every path beneath `root` with its type, permission bits and content (or
// link target): equal listings mean equal trees.
std::map<std::string, std::string> Tree(const std::string& root) {
  std::map<std::string, std::string> out;
  for (auto& e : fs::recursive_directory_iterator(root)) {
    const std::string p = e.path().string();
    struct stat st;
    REQUIRE(lstat(p.c_str(), &st) == 0);
    char mode[16];
    snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    std::string what;
    if (S_ISLNK(st.st_mode)) what = "link " + fs::read_symlink(p).string();
    else if (S_ISDIR(st.st_mode)) what = std::string("dir ") + mode;
    else what = std::string("file ") + mode + " " + ReadFile(p);
    out[p.substr(root.size())] = what;
  }
  return out;
}

}  // namespace

TEST_CASE("airlock-remote: create, exec streams and status, stdin, ps, rm", "[root][cli-remote]") {
  Daemon d;
  const std::string id = d.Create();

  auto r = d.Sh(id, "echo out; echo err >&2; exit 7");
  INFO(r.Describe());
  CHECK(r.status == 7);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");

  // stdin round-trips, in more pieces than one message holds.
  std::string input;
  for (int i = 0; i < 40000; ++i) input += "line " + std::to_string(i) + "\n";
  auto cat = d.Cli({"exec", "-i", id, "--", "cat"}, input);
  INFO(cat.err);
  CHECK(cat.status == 0);
  CHECK(cat.out.size() == input.size());
  CHECK(cat.out == input);
  // Without -i the command reads EOF at once.
  auto no_stdin = d.Cli({"exec", id, "--", "cat"}, "ignored");
  CHECK(no_stdin.status == 0);
  CHECK(no_stdin.out.empty());

  CHECK(d.Sh(id, "kill -TERM $$").status == 128 + SIGTERM);
  CHECK(d.Sh(id, "sleep 20", {"--timeout", "1s"}).status == 124);
  auto env = d.Sh(id, "echo \"$A-$B\"; pwd", {"--env", "A=1", "-e", "B=two", "--cwd", "/tmp"});
  CHECK(env.out == "1-two\n/tmp\n");
  auto missing = d.Cli({"exec", id, "--", "/no/such/program"});
  INFO(missing.Describe());
  CHECK(missing.status == 127);
  CHECK(missing.err.starts_with("airlock: "));
  auto tty = d.Sh(id, "tty; echo $((6*7))", {"-t"});
  INFO(tty.Describe());
  CHECK(tty.status == 0);
  CHECK(tty.out.find("/dev/pts/") != std::string::npos);
  CHECK(tty.out.find("42\r\n") != std::string::npos);  // a terminal's line ends

  auto ps = d.Cli({"ps"});
  INFO(ps.Describe());
  REQUIRE(ps.status == 0);
  CHECK(ps.out.starts_with("ID"));
  bool listed = false;
  for (const auto& line : Lines(ps.out))
    if (line.starts_with(id + " ")) listed = line.find("running") != std::string::npos && line.find("suite=cli-remote") != std::string::npos;
  CHECK(listed);
  auto json = ParseJson(d.Cli({"ps", "--json"}));
  bool in_json = false;
  for (const auto& s : json.at("sandboxes"))
    if (s.at("id") == id) {
      in_json = true;
      CHECK(s.at("state") == "SANDBOX_STATE_RUNNING");
      CHECK(s.at("labels").at("suite") == "cli-remote");
    }
  CHECK(in_json);
  auto filtered = d.Cli({"ps", "-q", "--label", "suite=other"});
  CHECK(filtered.status == 0);
  CHECK(filtered.out.find(id) == std::string::npos);
  auto inspect = ParseJson(d.Cli({"inspect", id, "--json"}));
  CHECK(inspect.at("id") == id);
  // The way users call it: `airlock ps` execs airlock-remote.
  RequireBuilt(AirlockBin());
  auto via_airlock = Exec({AirlockBin(), "ps", "-q", "--socket", d.socket()});
  INFO(via_airlock.Describe());
  CHECK(via_airlock.status == 0);
  CHECK(HasLine(via_airlock.out, id));
  // Global options before the command.
  auto global = Exec({RemoteBin(), "--socket", d.socket(), "ps", "-q"});
  CHECK(HasLine(global.out, id));

  auto rm = d.Cli({"rm", id});
  INFO(rm.Describe());
  CHECK(rm.status == 0);
  CHECK(rm.out == id + "\n");
  CHECK(d.Cli({"ps", "-q"}).out.find(id) == std::string::npos);
  auto again = d.Cli({"rm", id});
  CHECK(again.status == 125);
  CHECK(again.err.starts_with("airlock: "));
  CHECK(Lines(again.err).size() == 1);
  CHECK(d.Cli({"rm", "-f", id}).status == 0);
  CHECK(d.Sh(id, "true").status == 125);
}

TEST_CASE("airlock-remote: signals reach the command; pause, resume, stats", "[root][cli-remote]") {
  Daemon d;
  const std::string id = d.Create({"--memory", "256M", "--pids", "200"});
  Process p(d.Argv({"exec", id, "--", "sh", "-c",
                    "trap 'echo got-int; exit 5' INT; echo ready; while :; do sleep 0.1; done"}));
  REQUIRE(p.WaitForPrefix("ready"));
  p.Signal(SIGINT);
  auto r = p.Wait(30);
  INFO(r.Describe());
  CHECK(r.status == 5);
  CHECK(r.out == "ready\ngot-int\n");

  REQUIRE(d.Cli({"pause", id}).status == 0);
  CHECK(ParseJson(d.Cli({"inspect", id, "--json"})).at("state") == "SANDBOX_STATE_PAUSED");
  auto paused = d.Sh(id, "true");
  CHECK(paused.status == 125);
  CHECK(paused.err.find("paused") != std::string::npos);
  REQUIRE(d.Cli({"resume", id}).status == 0);
  CHECK(d.Sh(id, "exit 3").status == 3);

  auto stats = d.Cli({"stats", id});
  INFO(stats.Describe());
  CHECK(stats.status == 0);
  CHECK(stats.out.find("memory:") != std::string::npos);
  CHECK(stats.out.find("/ 256.0 MiB") != std::string::npos);
  auto stats_json = ParseJson(d.Cli({"stats", id, "--json"}));
  CHECK(stats_json.at("memory_limit_bytes") == std::to_string(256ull << 20));  // uint64 is a string in JSON
}

TEST_CASE("airlock-remote: events follow until interrupted", "[root][cli-remote]") {
  Daemon d;
  Process events(d.Argv({"events"}));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // subscribed before the create
  const std::string id = d.Create();
  auto line = events.WaitForLine([&](const std::string& l) { return l.find(id) != std::string::npos; }, 30);
  REQUIRE(line);
  CHECK(line->find("created") != std::string::npos);
  events.Signal(SIGINT);
  auto r = events.Wait(20);
  INFO(r.Describe());
  CHECK(r.status == 0);
}

TEST_CASE("airlock-remote: cp a directory and a file in and back out", "[root][cli-remote]") {
  Daemon d;
  const std::string id = d.Create();
  TempDir host("airlock-cli-cp");
  const std::string src = host / "proj";
  fs::create_directories(src + "/sub/deep");
  WriteHostFile(src + "/a.txt", "alpha\n");
  WriteHostFile(src + "/sub/run.sh", "#!/bin/sh\necho run\n");
  WriteHostFile(src + "/sub/deep/secret", "s3cret");
  std::string big;
  for (int i = 0; i < 300000; ++i) big += static_cast<char>((i * 7919) & 0xff);  // several chunks, binary
  WriteHostFile(src + "/big.bin", big);
  REQUIRE(symlink("../a.txt", (src + "/sub/link").c_str()) == 0);
  chmod((src + "/a.txt").c_str(), 0640);
  chmod((src + "/sub/run.sh").c_str(), 0755);
  chmod((src + "/sub/deep/secret").c_str(), 0600);
  chmod((src + "/sub").c_str(), 0750);
  chmod(src.c_str(), 0755);

  // A directory in: /workspace exists, so it lands at /workspace/proj.
  auto in = d.Cli({"cp", src, id + ":/workspace"});
  INFO(in.Describe() << "--- airlockd log ---\n" << d.Log());
  REQUIRE(in.status == 0);
  auto seen = d.Sh(id, "cd /workspace/proj && cat a.txt && stat -c '%n %a' a.txt sub sub/run.sh sub/deep/secret && "
                       "readlink sub/link && sub/run.sh && cksum < big.bin");
  INFO(seen.Describe());
  CHECK(seen.status == 0);
  CHECK(seen.out.starts_with("alpha\na.txt 640\nsub 750\nsub/run.sh 755\nsub/deep/secret 600\n../a.txt\nrun\n"));

  // A single file in, by WriteFile, keeping its mode.
  WriteHostFile(host / "single.txt", "one file\n");
  chmod((host / "single.txt").c_str(), 0604);
  auto file_in = d.Cli({"cp", host / "single.txt", id + ":/workspace/renamed.txt"});
  INFO(file_in.Describe());
  REQUIRE(file_in.status == 0);
  CHECK(d.Sh(id, "cat /workspace/renamed.txt; stat -c %a /workspace/renamed.txt").out == "one file\n604\n");

  // And back out: the same tree, the same modes.
  const std::string back = host / "back";
  fs::create_directories(back);
  auto out = d.Cli({"cp", id + ":/workspace/proj", back});
  INFO(out.Describe() << "--- airlockd log ---\n" << d.Log());
  REQUIRE(out.status == 0);
  CHECK(Tree(back + "/proj") == Tree(src));
  CHECK(ReadFile(back + "/proj/big.bin") == big);

  auto file_out = d.Cli({"cp", id + ":renamed.txt", host / "out.txt"});  // relative: the workspace
  INFO(file_out.Describe());
  REQUIRE(file_out.status == 0);
  CHECK(ReadFile(host / "out.txt") == "one file\n");
  struct stat st;
  REQUIRE(stat((host / "out.txt").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0604);

  // A DST that doesn't exist yet is the copy itself, both ways.
  auto renamed_in = d.Cli({"cp", src, id + ":/workspace/renamed-dir"});
  INFO(renamed_in.Describe());
  REQUIRE(renamed_in.status == 0);
  CHECK(d.Sh(id, "cat /workspace/renamed-dir/a.txt; stat -c %a /workspace/renamed-dir/sub").out == "alpha\n750\n");
  auto renamed_out = d.Cli({"cp", id + ":/workspace/renamed-dir", host / "renamed-back"});
  INFO(renamed_out.Describe());
  REQUIRE(renamed_out.status == 0);
  CHECK(Tree(host / "renamed-back") == Tree(src));

  auto json = ParseJson(d.Cli({"cp", "--json", id + ":/workspace/proj/sub", host / "sub-copy"}));
  CHECK(json.at("type") == "directory");
  CHECK(json.at("files") == 2);
  CHECK(ReadFile(host / "sub-copy/deep/secret") == "s3cret");

  auto neither = d.Cli({"cp", src, host / "x"});
  CHECK(neither.status == 125);
  CHECK(neither.err.find("exactly one of SRC and DST") != std::string::npos);
}

TEST_CASE("airlock-remote: a manifest's inline files and environment are visible inside", "[root][cli-remote]") {
  Daemon d;
  TempDir host("airlock-cli-manifest");
  WriteHostFile(host / "sandbox.yaml",
                   "entries:\n"
                   "  - path: hello.txt\n"
                   "    content: |\n"
                   "      hi from the manifest\n"
                   "    mode: \"0640\"\n"
                   "  - path: cache/nested\n"
                   "    empty_dir: true\n"
                   "environment:\n"
                   "  GREETING: hello-env\n");
  const std::string id = d.Create({"--manifest", host / "sandbox.yaml", "--env", "EXTRA=x"});
  auto r = d.Sh(id, "cat hello.txt; stat -c %a hello.txt; echo \"$GREETING $EXTRA\"; test -d cache/nested && echo dir");
  INFO(r.Describe());
  CHECK(r.status == 0);
  CHECK(r.out == "hi from the manifest\n640\nhello-env x\ndir\n");
}

TEST_CASE("airlock-remote: bad input exits 125 with one line naming the key", "[root][cli-remote]") {
  Daemon d;
  TempDir host("airlock-cli-bad");
  WriteHostFile(host / "bad.yaml", "entries:\n  - path: a\n    content: x\n  - path: b\n    contnet: y\n");
  auto bad = d.Cli({"create", "--manifest", host / "bad.yaml"});
  INFO(bad.Describe());
  CHECK(bad.status == 125);
  CHECK(bad.err == "airlock: " + host / "bad.yaml" +
                       ": entries[1].contnet: unknown key (path, host_bind, host_copy, output_dir, content, empty_dir, mode)\n");
  CHECK(bad.out.empty());
  // The daemon's own validation, printed verbatim.
  auto server = d.Cli({"create", "--seccomp", "../../etc/passwd"});
  INFO(server.Describe());
  CHECK(server.status == 125);
  CHECK(server.err.starts_with("airlock: create.seccomp_profile: "));
  CHECK(Lines(server.err).size() == 1);
  auto option = d.Cli({"create", "--memory", "lots"});
  CHECK(option.status == 125);
  CHECK(option.err == "airlock: --memory: not a size: \"lots\" (use e.g. 512M, 2G)\n");
  auto nobody = Exec({RemoteBin(), "ps", "--socket", "/tmp/airlock-no-daemon.sock"});
  CHECK(nobody.status == 125);
  CHECK(nobody.err.starts_with("airlock: cannot reach airlockd at /tmp/airlock-no-daemon.sock"));
}

TEST_CASE("airlock-remote: snapshot, export, import, restore, fork, rmsnap", "[root][cli-remote]") {
  Daemon d;
  TempDir host("airlock-cli-snap");
  const std::string id = d.Create({"--snapshots"});
  REQUIRE(d.Sh(id, "echo kept > /workspace/state").status == 0);
  auto snap = d.Cli({"snapshot", id});
  INFO(snap.Describe());
  REQUIRE(snap.status == 0);
  const std::string snap_id = snap.out.substr(0, snap.out.size() - 1);
  CHECK(snap_id.starts_with("snap-"));
  CHECK(d.Cli({"snapshot", id}).out == snap_id + " (unchanged)\n");
  auto exported = d.Cli({"snapshot-export", snap_id, host / "s.tar"});
  INFO(exported.Describe());
  REQUIRE(exported.status == 0);
  auto imported = d.Cli({"snapshot-import", host / "s.tar"});
  INFO(imported.Describe());
  REQUIRE(imported.status == 0);
  const std::string imp_id = imported.out.substr(0, imported.out.size() - 1);
  auto restored = d.Cli({"restore", imp_id});
  REQUIRE(restored.status == 0);
  const std::string r = restored.out.substr(0, restored.out.size() - 1);
  d.Track(r);
  CHECK(d.Sh(r, "cat /workspace/state").out == "kept\n");
  auto forked = d.Cli({"fork", snap_id, "2"});
  REQUIRE(forked.status == 0);
  for (const auto& f : Lines(forked.out)) d.Track(f);
  CHECK(Lines(forked.out).size() == 2);
  CHECK(d.Cli({"rmsnap", snap_id, imp_id}).status == 0);
  auto gone = d.Cli({"restore", snap_id});
  CHECK(gone.status == 125);
  CHECK(gone.err.find("no snapshot") != std::string::npos);
  // A sandbox whose layer is in memory can't be snapshotted: said plainly.
  const std::string plain = d.Create({});
  auto refused = d.Cli({"snapshot", plain});
  CHECK(refused.status == 125);
  CHECK(refused.err.find("create it with snapshots") != std::string::npos);
}
