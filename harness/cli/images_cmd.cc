#include "harness/cli/images_cmd.h"

#include <sys/stat.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "harness/cli/install_paths.h"
#include "images/build/builder.h"
#include "images/build/progress.h"
#include "images/host/host_image.h"
#include "images/store/flatten.h"
#include "images/oci/export.h"
#include "images/store/image_store.h"

namespace airlock::cli {
namespace {

int Error(const std::string& msg) {
  fprintf(stderr, "airlock: %s\n", msg.c_str());
  return 125;
}

nlohmann::json ToJson(const images::StoredImage& img) {
  nlohmann::json j;
  j["name"] = img.name;
  j["digest"] = img.digest;
  j["layers"] = img.diff_ids;
  j["config"] = {{"env", img.config.env},
                 {"workdir", img.config.workdir},
                 {"user", img.config.user},
                 {"entrypoint", img.config.entrypoint},
                 {"cmd", img.config.cmd},
                 {"labels", img.config.labels}};
  return j;
}

}  // namespace

std::string ImageStore(const RuntimePaths& paths) { return paths.state_root + "/images"; }

Result<RunImage> ResolveRunImage(const RuntimePaths& paths, const std::string& name) {
  TRY(PrepareRuntimeDirs(paths));
  const std::string store = ImageStore(paths);
  if (mkdir(store.c_str(), 0700) < 0 && errno != EEXIST) return Errno("mkdir", store);
  RunImage out;
  if (name == "host") {
    images::ImageLayers host = TRY(images::EnsureHostImage(store));
    out.layers = host.lower_dirs;
    for (const auto& b : host.binds) out.binds.push_back({b.host_path, b.target});
    out.workdir = "/workspace";
    out.default_user = "sandbox";
  } else {
    auto img = images::LoadImage(store, name);
    if (!img) return Fail("invalid option", "--image: " + img.error().Message() + " (see airlock images)");
    // More layers than one sandbox can stack: the bottom ones merged
    // (images/store/flatten.h), cached in the store.
    out.layers = TRY(images::MountableLayers(store, *img));
    out.env = img->config.env;
    out.workdir = img->config.workdir;
    out.default_user = img->config.user.empty() ? "0" : img->config.user;
  }
  for (const auto& layer : out.layers) out.pins.push_back(TRY(images::PinImageLayer(layer)));
  return out;
}

int ImagesCommand(const RuntimePaths& paths, const std::vector<std::string>& args) {
  bool json = !args.empty() && args[0] == "--json";
  if (args.size() > (json ? 1u : 0u)) return Error("usage: airlock images [--json]");
  auto list = images::ListImages(ImageStore(paths));
  if (!list) return Error(list.error().Message());
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    j.push_back({{"name", "host"}, {"builtin", true}});
    for (const auto& img : *list) j.push_back(ToJson(img));
    puts(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  printf("%-32s %-8s %s\n", "NAME", "LAYERS", "DIGEST");
  printf("%-32s %-8s %s\n", "host", "-", "(built in: the host's /usr)");
  for (const auto& img : *list)
    printf("%-32s %-8zu %s\n", img.name.c_str(), img.diff_ids.size(), img.digest.substr(0, 19).c_str());
  return 0;
}

int RmiCommand(const RuntimePaths& paths, const std::vector<std::string>& args) {
  if (args.empty()) return Error("usage: airlock rmi NAME...");
  for (const auto& name : args) {
    if (name == "host") return Error("rmi: host is built in");
    if (auto r = images::RemoveImage(ImageStore(paths), name); !r) return Error(r.error().Message());
    printf("removed %s\n", name.c_str());
  }
  return 0;
}

int ImageCommand(const RuntimePaths& paths, const std::vector<std::string>& args) {
  const std::string usage =
      "usage: airlock image import FILE [--name NAME] [--strip-setid] | airlock image inspect NAME [--json] | "
      "airlock image export NAME FILE|- (an OCI archive that podman load and docker load take; - is stdout) | "
      "airlock image build NAME [--mirror URL] [--recipes DIR] [--name IMAGE] [--no-cache]";
  if (args.empty()) return Error(usage);
  if (args[0] == "import") {
    images::ImportOptions opts;
    std::string file;  // the one operand, before or after the options
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--strip-setid") {
        opts.strip_setid = true;
      } else if (args[i] == "--name" && i + 1 < args.size()) {
        opts.name = args[++i];
      } else if (args[i].starts_with("--name=")) {
        opts.name = args[i].substr(7);
      } else if (args[i].starts_with("-") && args[i] != "-") {
        return Error("image import: unknown option \"" + args[i] + "\"");
      } else if (!file.empty()) {
        return Error("image import: one FILE only (got \"" + file + "\" and \"" + args[i] + "\")");
      } else {
        file = args[i];
      }
    }
    if (file.empty()) return Error(usage);
    if (auto prep = PrepareRuntimeDirs(paths); !prep) return Error(prep.error().Message());
    const std::string store = ImageStore(paths);
    if (mkdir(store.c_str(), 0700) < 0 && errno != EEXIST) return Error("mkdir " + store);
    auto progress = images::build::Progress::ForStderr();
    size_t shown = SIZE_MAX;
    opts.progress = [&](size_t layer, size_t layers, uint64_t done, uint64_t total) {
      if (layer != shown) {
        shown = layer;
        progress.Phase("import layer " + std::to_string(layer + 1) + "/" + std::to_string(layers));
      }
      progress.Update(done, total);
    };
    auto img = images::ImportArchive(store, file, opts);
    if (shown != SIZE_MAX) progress.Done("read");
    if (!img) return Error(img.error().Message());
    printf("imported %s (%zu layers, %s)\n", img->name.c_str(), img->diff_ids.size(), img->digest.c_str());
    return 0;
  }
  if (args[0] == "inspect") {
    if (args.size() < 2) return Error(usage);
    bool json = args.size() > 2 && args[2] == "--json";
    auto img = images::LoadImage(ImageStore(paths), args[1]);
    if (!img) return Error(img.error().Message());
    nlohmann::json j = ToJson(*img);
    (void)json;  // inspect prints JSON either way
    puts(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  if (args[0] == "export") {
    if (args.size() != 3) return Error(usage);
    const std::string& name = args[1];
    const std::string& file = args[2];
    if (name == "host") return Error("image export: host is built in (a view of the host's /usr), not stored layers");
    auto r = images::ExportImageToFile(ImageStore(paths), name, file);
    if (!r) return Error(r.error().Message());
    // With the archive on stdout, everything else goes to stderr.
    FILE* say = file == "-" ? stderr : stdout;
    fprintf(say, "exported %s to %s (%zu layers, manifest %s)\n", name.c_str(), file == "-" ? "stdout" : file.c_str(),
            r->layers.size(), r->manifest_digest.c_str());
    for (size_t i = 0; i < r->layers.size(); ++i) {
      const auto& l = r->layers[i];
      if (!l.reproduced())
        fprintf(stderr,
                "note: layer %zu written as %s (imported as %s): the store keeps a layer's files, not its tar\n", i,
                l.diff_id.c_str(), l.stored_diff_id.c_str());
    }
    return 0;
  }
  return Error(usage);
}

int ImageBuildCommand(const RuntimePaths& paths, const std::vector<std::string>& args,
                      const std::string& source_recipes) {
  const std::string usage = "usage: airlock image build NAME [--mirror URL] [--recipes DIR] [--name IMAGE] [--no-cache]";
  images::build::BuildOptions opts;
  std::string name, recipes;
  // args[0] is "build".
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* flag, std::string* out) {
      const std::string f = flag;
      if (a == f && i + 1 < args.size()) {
        *out = args[++i];
        return true;
      }
      if (a.starts_with(f + "=")) {
        *out = a.substr(f.size() + 1);
        return true;
      }
      return false;
    };
    std::string v;
    if (value("--mirror", &v)) {
      auto m = images::build::MirrorFromOption(v);
      if (!m) return Error(m.error().Message());
      opts.mirror = *m;
    } else if (value("--recipes", &v)) {
      recipes = v;
    } else if (value("--name", &v)) {
      opts.image_name = v;
    } else if (a == "--no-cache") {
      opts.use_cache = false;
    } else if (a.starts_with("-")) {
      return Error("image build: unknown option \"" + a + "\" (" + usage + ")");
    } else if (name.empty()) {
      name = a;
    } else {
      return Error(usage);
    }
  }
  if (name.empty()) return Error(usage);
  if (geteuid() != 0) return Error("image build needs root (mmdebstrap, and sandboxes for the steps)");
  if (recipes.empty()) {
    struct stat st;
    const std::string installed = ExeDir() + "/../share/airlock/images";
    recipes = stat(installed.c_str(), &st) == 0 && S_ISDIR(st.st_mode) ? installed : source_recipes;
  }
  if (paths.init_binary.empty()) return Error("airlock-init not found next to " + ExeDir());
  if (paths.profiles_dir.empty()) return Error("seccomp-profiles directory not found");
  if (auto prep = PrepareRuntimeDirs(paths); !prep) return Error(prep.error().Message());
  opts.recipes_dir = recipes;
  opts.store_root = ImageStore(paths);
  opts.paths = paths;
  auto progress = images::build::Progress::ForStderr();
  auto report = images::build::BuildImage(name, opts, progress);
  if (!report) return Error(report.error().Message());
  for (const auto& l : report->layers)
    printf("layer %-40s %s %s %.1f s\n", l.what.c_str(), l.diff_id.c_str(), l.cached ? "cached" : "built", l.seconds);
  printf("built %s: %zu layers, %zu cached, %zu built (mirror %s)\n", report->image.name.c_str(),
         report->layers.size(), report->cached(), report->built(), report->mirror.c_str());
  return 0;
}

}  // namespace airlock::cli
