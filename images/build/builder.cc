#include "images/build/builder.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "images/build/convert.h"
#include "images/build/debian.h"
#include "images/build/recipe.h"
#include "images/host/host_image.h"
#include "images/store/flatten.h"
#include "images/store/store_build.h"
#include "runtime/core/sha256.h"
#include "runtime/launch/sandbox.h"

namespace airlock::images::build {

namespace {

using nlohmann::json;

// Bumped when what a unit makes from the same inputs changes.
constexpr int kBuilderVersion = 1;
constexpr const char* kDebsInSandbox = "/tmp/airlock-debs";
constexpr int kMaxFromDepth = 8;

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string Short(const std::string& diff_id) { return diff_id.substr(0, 7 + 12); }

// What a chain of recipes has produced so far.
struct Chain {
  std::vector<std::string> diff_ids;  // bottom first
  ImageConfig config;
  std::string suite;
  std::vector<std::string> components;
};

class Builder {
 public:
  Builder(const BuildOptions& opts, const Mirror& mirror, Progress& progress)
      : opts_(opts), mirror_(mirror), progress_(progress) {}

  Result<Chain> Build(const std::string& name, int depth, std::set<std::string>& seen) {
    if (depth > kMaxFromDepth) return Fail("image build", "recipe " + name + ": \"from\" chain deeper than 8");
    if (!seen.insert(name).second) return Fail("image build", "recipe " + name + ": \"from\" cycle");
    Recipe r = TRY(LoadRecipe(opts_.recipes_dir, name));
    Chain c;
    if (!r.from.empty()) {
      c = TRY(Build(r.from, depth + 1, seen));
    } else {
      c.suite = r.base->suite;
      c.components = r.base->components;
      c.config.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
      c.config.workdir = "/";
      c.config.user = "0";
      c.diff_ids.push_back(TRY(Base(name, *r.base)));
    }
    for (size_t i = 0; i < r.steps.size(); ++i) c.diff_ids.push_back(TRY(StepLayer(name, i, r.steps[i], c)));
    c.config = ApplyConfig(c.config, r.config);
    if (!r.description.empty()) c.config.labels["org.opencontainers.image.description"] = r.description;
    c.config.labels["org.airlock.recipe"] = name;
    return c;
  }

  std::vector<LayerReport>& reports() { return reports_; }

 private:
  static std::string Key(const json& inputs) { return Sha256Hex(inputs.dump(-1, ' ', true)); }

  // Looks the unit up in the cache; else makes it with `make` and records it.
  Result<std::string> Cached(const std::string& what, const json& inputs,
                             const std::function<Result<std::string>()>& make) {
    const std::string key = Key(inputs);
    double t0 = Now();
    if (opts_.use_cache) {
      if (auto hit = CacheLookup(opts_.store_root, key)) {
        progress_.Line(what + ": cached " + Short(*hit));
        reports_.push_back({what, *hit, true, Now() - t0});
        return *hit;
      }
    }
    std::string diff_id = TRY(make());
    TRY(CacheRecord(opts_.store_root, key, diff_id, inputs.dump()));
    reports_.push_back({what, diff_id, false, Now() - t0});
    progress_.Line(what + ": built " + Short(diff_id));
    return diff_id;
  }

  // Moves a finished tree into the store as a layer.
  Result<std::string> Commit(const std::string& tree, const std::string& what) {
    LayerDraft draft = TRY(LayerDraft::Create(opts_.store_root));
    progress_.Phase(what + ": storing the layer");
    uint64_t bytes = TRY(ConvertTree(tree, draft, [&](uint64_t n) { progress_.Update(n, 0); }));
    std::string diff_id = TRY(draft.Commit());
    progress_.Done(std::to_string(bytes >> 20) + " MB as " + Short(diff_id));
    return diff_id;
  }

  Result<std::string> Base(const std::string& name, const BaseSpec& b) {
    json inputs{{"builder", kBuilderVersion}, {"kind", "base"},         {"suite", b.suite},
                {"variant", b.variant},       {"components", b.components}, {"include", b.include},
                {"mirror", mirror_.uri},      {"arch", DebianArch()}};
    const std::string what = name + " base";
    return Cached(what, inputs, [&]() -> Result<std::string> {
      ScratchDir scratch = TRY(ScratchDir::Create(opts_.store_root, "base"));
      const std::string root = scratch.path() + "/root";
      TRY(RunMmdebstrap(b, mirror_, root, progress_, what));
      TRY(RemoveSpecialFiles(root, /*keep_whiteouts=*/false));
      return Commit(root, what);
    });
  }

  Result<std::string> StepLayer(const std::string& name, size_t index, const Step& step, const Chain& c) {
    json inputs{{"builder", kBuilderVersion}, {"kind", "step"},  {"parent", c.diff_ids.back()},
                {"step", json::parse(step.canonical, nullptr, false)}, {"mirror", mirror_.uri},
                {"suite", c.suite},           {"arch", DebianArch()}};
    const std::string what = name + " step " + std::to_string(index + 1) +
                             (step.kind == Step::Kind::kPackages ? " (packages)" : " (run)");
    return Cached(what, inputs, [&]() -> Result<std::string> {
      ScratchDir scratch = TRY(ScratchDir::Create(opts_.store_root, "step"));
      StoredImage parent;  // the chain so far, for the sandbox
      parent.name = name;
      parent.diff_ids = c.diff_ids;
      for (auto it = c.diff_ids.rbegin(); it != c.diff_ids.rend(); ++it)
        parent.layer_dirs.push_back(opts_.store_root + "/layers/sha256/" + it->substr(7));
      std::string script = step.run;
      std::string debs;
      if (step.kind == Step::Kind::kPackages) {
        debs = scratch.path() + "/debs";
        std::string status = TRY(DpkgStatus(parent, scratch.path()));
        size_t n = TRY(DownloadDebs(mirror_, c.suite, c.components, status, step.packages, scratch.path(), debs,
                                    progress_, what));
        if (n == 0) debs.clear();  // all installed already: an empty layer
        // invoke-rc.d asks policy-rc.d: no service starts in a build. dpkg
        // needn't fsync each file: the layer is synced once when committed.
        script = std::string("set -e\n") +
                 "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d\n"
                 "chmod 755 /usr/sbin/policy-rc.d\n" +
                 (n == 0 ? "" : std::string("apt-get install -y -q --no-install-recommends ") +
                                    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
                                    "-o Dpkg::Options::=--force-unsafe-io " +
                                    kDebsInSandbox + "/*.deb\n") +
                 "rm -f /usr/sbin/policy-rc.d /var/cache/apt/pkgcache.bin /var/cache/apt/srcpkgcache.bin\n"
                 "rm -f /var/cache/ldconfig/aux-cache\n";
      }
      return RunStep(what, parent, step, c, script, debs, scratch.path());
    });
  }

  // The image's dpkg status file: the uppermost layer's copy (dpkg
  // rewrites the whole file on every change, so each layer that changed it
  // has all of it). None: an empty status.
  Result<std::string> DpkgStatus(const StoredImage& img, const std::string& scratch) {
    for (const auto& dir : img.layer_dirs) {
      struct stat st;
      const std::string p = dir + "/var/lib/dpkg/status";
      if (lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return p;
    }
    const std::string empty = scratch + "/status";
    std::ofstream(empty).close();
    return empty;
  }

  Result<std::string> RunStep(const std::string& what, const StoredImage& parent, const Step& step, const Chain& c,
                              const std::string& script, const std::string& debs, const std::string& scratch) {
    TRY(PrepareRuntimeDirs(opts_.paths));
    SandboxSpec spec;
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) return Errno("getrandom");
    spec.id = "build-";
    for (unsigned char b : rnd) {
      static const char* kHex = "0123456789abcdef";
      spec.id += kHex[b >> 4];
      spec.id += kHex[b & 15];
    }
    spec.layers = TRY(MountableLayers(opts_.store_root, parent));
    std::vector<UniqueFd> pins;
    for (const auto& l : spec.layers) pins.push_back(TRY(PinImageLayer(l)));
    spec.on_pool = true;  // the writable layer must outlive the command
    spec.hostname = "build";
    if (!debs.empty()) spec.mounts.push_back({debs, kDebsInSandbox, true});
    if (step.timeout_seconds) spec.timeout = std::chrono::seconds(step.timeout_seconds);
    spec.process.argv = {"/bin/sh", "-c", script};
    spec.process.uid = 0;
    spec.process.gid = 0;
    spec.process.cwd = "/";
    std::vector<std::string> env = c.config.env;
    for (const char* kv : {"HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}) env.push_back(kv);
    for (const auto& kv : step.env) {
      std::string key = kv.substr(0, kv.find('=') + 1);
      std::erase_if(env, [&](const std::string& e) { return e.starts_with(key); });
      env.push_back(kv);
    }
    spec.process.env = env;

    const std::string log_path = scratch + "/step.log";
    UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!log) return Errno("create", log_path);
    UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull) return Errno("open", "/dev/null");
    int stdio[3] = {devnull.get(), log.get(), log.get()};
    LaunchOptions lo;
    lo.first_process = &spec.process;
    lo.first_stdio = stdio;
    progress_.Phase(what + ": running in a sandbox");
    double t0 = Now();
    auto sandbox = TRY(Sandbox::Start(spec, opts_.paths, lo));
    auto outcome = sandbox->WaitOneShot(-1);
    if (!outcome) {
      (void)sandbox->Destroy();
      return std::unexpected(outcome.error());
    }
    if (outcome->ExitStatus() != 0) {
      std::string why = outcome->Describe(spec);
      (void)sandbox->Destroy();
      return Fail("image build", what + " failed with status " + std::to_string(outcome->ExitStatus()) +
                                     (why.empty() ? "" : " (" + why + ")") + "; its last output:" + LogTail(log_path));
    }
    char took[32];
    snprintf(took, sizeof took, "%.1f s", Now() - t0);
    progress_.Done(std::string("exited 0 after ") + took);
    // The writable layer, on the pool with canonical owners (the runtime
    // mounts it idmapped), is read before the sandbox's teardown deletes it.
    const std::string upper = opts_.paths.PoolMountpoint() + "/sandboxes/" + spec.id + "/upper";
    auto cleaned = RemoveSpecialFiles(upper, /*keep_whiteouts=*/true);
    auto diff_id = cleaned ? Commit(upper, what) : Result<std::string>(std::unexpected(cleaned.error()));
    auto destroyed = sandbox->Destroy();
    if (!diff_id) return diff_id;
    if (!destroyed) return std::unexpected(destroyed.error());
    return diff_id;
  }

  static std::string LogTail(const std::string& path) {
    std::ifstream f(path);
    std::deque<std::string> lines;
    std::string line;
    while (std::getline(f, line)) {
      lines.push_back(line);
      if (lines.size() > 25) lines.pop_front();
    }
    std::string s;
    for (const auto& l : lines) s += "\n  " + l;
    return s.empty() ? " (none)" : s;
  }

  const BuildOptions& opts_;
  Mirror mirror_;
  Progress& progress_;
  std::vector<LayerReport> reports_;
};

}  // namespace

size_t BuildReport::cached() const {
  size_t n = 0;
  for (const auto& l : layers) n += l.cached;
  return n;
}

size_t BuildReport::built() const { return layers.size() - cached(); }

Result<BuildReport> BuildImage(const std::string& name, const BuildOptions& opts, Progress& progress) {
  const std::string image = opts.image_name.empty() ? name : opts.image_name;
  if (!IsValidImageName(image)) return Fail("image build", "invalid image name \"" + image + "\"");
  // Recipes are checked before the mirror is looked for or anything runs.
  {
    std::set<std::string> seen;
    std::string n = name;
    for (int depth = 0; !n.empty(); ++depth) {
      if (depth > kMaxFromDepth || !seen.insert(n).second)
        return Fail("image build", "recipe " + n + ": \"from\" chain is a cycle or deeper than 8");
      n = TRY(LoadRecipe(opts.recipes_dir, n)).from;
    }
  }
  Mirror mirror = opts.mirror ? *opts.mirror : TRY(HostMirror(opts.apt_root));
  StoreLease lease = TRY(StoreLease::Take(opts.store_root));
  Builder b(opts, mirror, progress);
  std::set<std::string> seen;
  Chain c = TRY(b.Build(name, 0, seen));
  json id{{"layers", c.diff_ids}, {"env", c.config.env}, {"workdir", c.config.workdir}, {"user", c.config.user},
          {"entrypoint", c.config.entrypoint}, {"cmd", c.config.cmd}, {"labels", c.config.labels}};
  BuildReport report;
  report.image = TRY(SaveImage(opts.store_root, image, c.diff_ids, c.config, "sha256:" + Sha256Hex(id.dump())));
  report.layers = std::move(b.reports());
  report.mirror = mirror.uri;
  return report;
}

}  // namespace airlock::images::build
