#include "harness/cli/images_cmd.h"

#include <sys/stat.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "images/host/host_image.h"
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
    out.layers = img->layer_dirs;
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
      "airlock image export NAME FILE|- (an OCI archive that podman load and docker load take; - is stdout)";
  if (args.empty()) return Error(usage);
  if (args[0] == "import") {
    if (args.size() < 2) return Error(usage);
    images::ImportOptions opts;
    for (size_t i = 2; i < args.size(); ++i) {
      if (args[i] == "--strip-setid") {
        opts.strip_setid = true;
      } else if (args[i] == "--name" && i + 1 < args.size()) {
        opts.name = args[++i];
      } else if (args[i].starts_with("--name=")) {
        opts.name = args[i].substr(7);
      } else {
        return Error("image import: unknown option \"" + args[i] + "\"");
      }
    }
    if (auto prep = PrepareRuntimeDirs(paths); !prep) return Error(prep.error().Message());
    const std::string store = ImageStore(paths);
    if (mkdir(store.c_str(), 0700) < 0 && errno != EEXIST) return Error("mkdir " + store);
    auto img = images::ImportArchive(store, args[1], opts);
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

}  // namespace airlock::cli
