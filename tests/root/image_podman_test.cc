// Round trips with Debian's podman (issue 8, export):
//  (1) a docker-save archive built here (the static whoami testcase at
//      /whoami, an /etc/passwd) → `airlock image import` → `airlock image
//      export` → `podman load` → `podman run ... /whoami`;
//  (2) that loaded image → `podman save` (oci-archive and docker-archive)
//      → `airlock image import` → `airlock run --image NAME -- /whoami`.
// podman runs against a private store under /var/tmp (--root, --runroot,
// vfs, its own containers.conf and storage.conf) and inside a private mount
// namespace with fresh tmpfs over /run and /var/lib: as root, podman keeps
// state there whatever its flags say (/run/containers/networks for
// netavark, /var/lib/containers/cache for the blob-info cache), and the
// host's podman must not see any of it. On this machine podman also needs
// `--runtime runc` (crun fails on hybrid cgroups) and explicit nofile and
// nproc ulimits (its defaults are refused when runc sets them); see
// reference/kernel-facts.md (tests/root/podman.h). Without podman the test
// says SKIP and passes, as the lanes' other skips do (Catch2 v2 has no skip).
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "runtime/core/sha256.h"
#include "tests/root/helpers.h"
#include "tests/root/podman.h"
#include "tests/root/tar.h"

using namespace airlock_test;

namespace {

std::vector<std::string> InspectLayers(const std::string& name) {
  auto r = Exec({AirlockBin(), "image", "inspect", name});
  INFO(r.Describe());
  REQUIRE(r.status == 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE(j.is_object());
  return j["layers"].get<std::vector<std::string>>();
}

}  // namespace

TEST_CASE("podman loads and runs an exported image; airlock imports and runs what podman saves",
          "[images][podman]") {
  const std::string podman = FindInPath("podman");
  if (podman.empty()) {
    WARN("SKIP: podman is not installed (Debian package podman); the export round trip is not checked");
    return;
  }
  if (FindInPath("runc").empty()) {
    WARN("SKIP: runc is not installed; podman can't run containers here (crun fails on hybrid cgroups)");
    return;
  }
  RequireBuilt(TestcaseDir() + "/whoami");
  TempDir tmp("airlock-podman");
  PrivatePodman pm(podman, tmp / "podman");
  if (auto info = pm.Run({"info"}); info.status != 0) {
    WARN("SKIP: podman can't run here (podman info failed):\n" << info.Describe());
    return;
  }

  const std::string name = "airlock-test-podman-" + std::to_string(getpid());
  StoredImages cleanup;

  // ---- a docker-save archive, as an air-gapped site would bring it ----
  const std::string passwd = "root:x:0:0:" + name + ":/:/whoami\n";  // the name makes the layer this run's own
  const std::string layer = Tar({{"etc/", '5', "", 0755},
                                 {"etc/passwd", '0', passwd, 0644},
                                 {"etc/group", '0', "root:x:0:\n", 0644},
                                 {"whoami", '0', ReadFile(TestcaseDir() + "/whoami"), 0755},
                                 {"proc/", '5', "", 0755},
                                 {"dev/", '5', "", 0755},
                                 {"sys/", '5', "", 0755},
                                 {"tmp/", '5', "", 01777}});
  const std::string diff_id = "sha256:" + airlock::Sha256Hex(layer);
  nlohmann::json cfg = {{"architecture", "amd64"}, {"os", "linux"},
                        {"config", {{"Env", {"PATH=/"}}, {"Cmd", {"/whoami"}}}},
                        {"rootfs", {{"type", "layers"}, {"diff_ids", {diff_id}}}}};
  const std::string cfg_text = cfg.dump();
  const std::string cfg_name = airlock::Sha256Hex(cfg_text) + ".json";
  const std::string manifest = nlohmann::json::array(
      {{{"Config", cfg_name}, {"RepoTags", {"whoami:test"}}, {"Layers", {"l1/layer.tar"}}}}).dump();
  std::ofstream(tmp / "in.tar", std::ios::binary)
      << Tar({{"l1/", '5', "", 0755}, {"l1/layer.tar", '0', layer, 0644}, {cfg_name, '0', cfg_text, 0644},
              {"manifest.json", '0', manifest, 0644}});

  auto imported = Exec(AirlockArgv({"image", "import", tmp / "in.tar", "--name", name}));
  INFO(imported.Describe());
  REQUIRE(imported.status == 0);
  cleanup.names.push_back(name);

  // ---- (1) airlock export → podman load → podman run ----
  auto exported = Exec(AirlockArgv({"image", "export", name, tmp / "out.tar"}));
  INFO(exported.Describe());
  REQUIRE(exported.status == 0);
  CHECK(exported.out.find("exported " + name) != std::string::npos);
  // The input tar was written by a different writer: its layer is re-created.
  CHECK(exported.err.find("note: layer 0") != std::string::npos);

  auto loaded = pm.Run({"load", "-i", tmp / "out.tar"});
  INFO(loaded.Describe());
  REQUIRE(loaded.status == 0);
  const std::string ref = "localhost/" + name + ":latest";
  CHECK((loaded.out + loaded.err).find(ref) != std::string::npos);

  auto run_args = PodmanRunArgs();
  run_args.insert(run_args.end(), {ref, "/whoami"});
  auto ran = pm.Run(run_args);
  INFO(ran.Describe());
  REQUIRE(ran.status == 0);
  CHECK(HasLine(ran.out, "pid 1"));
  CHECK(HasLine(ran.out, "uid 0"));
  CHECK(HasLine(ran.out, "init_cmdline /whoami"));

  // ---- (2) podman save → airlock import → airlock run ----
  // The layer's digest as exported, from the CLI's note.
  const size_t at = exported.err.find("written as sha256:");
  REQUIRE(at != std::string::npos);
  const std::string exported_diff_id = exported.err.substr(at + 11, 71);
  for (const char* format : {"oci-archive", "docker-archive"}) {
    INFO("podman save --format " << format);
    const std::string saved = tmp / (std::string(format) + ".tar");
    auto s = pm.Run({"save", "--format", format, "-o", saved, ref});
    INFO(s.Describe());
    REQUIRE(s.status == 0);
    const std::string back = name + "-" + std::string(format).substr(0, std::string(format).find('-'));
    auto im = Exec(AirlockArgv({"image", "import", saved, "--name", back}));
    INFO(im.Describe());
    REQUIRE(im.status == 0);
    cleanup.names.push_back(back);
    // podman keeps a layer's tar byte for byte (tar-split): the diff_id it
    // saves, verified again by this import, is the one airlock exported.
    CHECK(InspectLayers(back) == std::vector<std::string>{exported_diff_id});
    auto r = Run({"--image", back, "--", "/whoami"});
    INFO(r.Describe());
    REQUIRE(r.status == 0);
    CHECK(HasLine(r.out, "uid 0"));
    CHECK(Value(r.out, "pid") != "<missing pid>");
  }

  auto rmi = pm.Run({"rmi", "-a", "-f"});
  CHECK(rmi.status == 0);
}
