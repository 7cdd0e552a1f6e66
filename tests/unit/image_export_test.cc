// Image export (images/oci/export.h): a store built by importing a
// synthetic docker-save archive into a temporary store root is exported;
// the archive is taken apart with images::TarReader and nlohmann json; the
// export is imported into a second store, which must hold the same files
// under the exported diff_ids, and exporting that gives the same bytes.
// Ownership is applied only as root (the import's rule); the checks on
// owners adapt.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "images/oci/byte_source.h"
#include "images/oci/export.h"
#include "images/oci/tar_reader.h"
#include "images/oci/tar_writer.h"
#include "images/store/image_store.h"
#include "runtime/core/sha256.h"

namespace {

namespace fs = std::filesystem;
namespace img = airlock::images;
using airlock::Sha256Hex;
using nlohmann::json;

constexpr int64_t kTime = 1700000000;

struct TempDir {
  fs::path path;
  TempDir() {
    char t[] = "/tmp/airlock-export-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory(ec) && !it->is_symlink(ec)) chmod(it->path().c_str(), 0755);
    fs::remove_all(path, ec);
  }
};

std::string ReadFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const fs::path& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary);
  f << data;
}

std::string Digest(const std::string& s) { return "sha256:" + Sha256Hex(s); }

// Builds a tar in memory with the project's writer.
struct Tar {
  std::string out;
  img::TarWriter w{[this](std::string_view c) {
    out.append(c);
    return true;
  }};
  Tar& Add(const std::string& name, char type, const std::string& data = "", uint32_t mode = 0644,
           uint32_t uid = 0, const std::string& link = "") {
    img::TarWriter::Header h{.name = name, .linkname = link, .typeflag = type, .mode = mode,
                             .size = data.size(), .mtime = kTime, .uid = uid, .gid = uid};
    REQUIRE(w.Begin(h));
    if (!data.empty()) REQUIRE(w.Data(data));
    return *this;
  }
  std::string Finish() {
    REQUIRE(w.Finish());
    return out;
  }
};

class StringSource : public img::ByteSource {
 public:
  explicit StringSource(const std::string& d) : data_(d) {}
  airlock::Result<size_t> Read(void* buf, size_t n) override {
    n = std::min(n, data_.size() - pos_);
    memcpy(buf, data_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  const std::string& data_;
  size_t pos_ = 0;
};

struct Member {
  img::TarEntry e;
  std::string data;
};

// Every member of a tar, in order.
std::vector<Member> Members(const std::string& tar) {
  StringSource src(tar);
  img::TarReader r(src);
  std::vector<Member> out;
  for (;;) {
    auto e = r.Next();
    INFO((e ? "" : e.error().Message()));
    REQUIRE(e);
    if (!*e) break;
    Member m{**e, ""};
    char buf[65536];
    for (;;) {
      auto n = r.ReadData(buf, sizeof buf);
      REQUIRE(n);
      if (*n == 0) break;
      m.data.append(buf, *n);
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::map<std::string, std::string> Files(const std::string& tar) {
  std::map<std::string, std::string> out;
  for (auto& m : Members(tar))
    if (m.e.type == img::TarEntry::Type::kFile) out[m.e.name] = m.data;
  return out;
}

const std::string kLongName = "deep/" + std::string(120, 'n') + "/file";

// Layer 1: written out of order, with implicit parents (srv/, deep/), a
// hardlink, symlinks, a FIFO, special modes, owner 1000, a file bigger than
// the writers' 64 KiB chunks and a name longer than ustar holds.
std::string Layer1() {
  std::string big;
  for (int i = 0; big.size() < 200000; ++i) big += std::to_string(i * 7919) + ",";
  Tar t;
  t.Add("etc/", '5', "", 0755)
      .Add("etc/passwd", '0', "root:x:0:0::/:/bin/sh\n")
      .Add("bin/", '5', "", 0755)
      .Add("bin/tool", '0', "#!tool v1\n", 0755, 1000)
      .Add("bin/tool-link", '1', "", 0755, 1000, "bin/tool")
      .Add("bin/sh", '2', "", 0777, 0, "/bin/tool")
      .Add("bin/rel", '2', "", 0777, 0, "tool")
      .Add("srv/data/big", '0', big, 0640, 1000)
      .Add("srv/empty", '0', "", 0600)
      .Add("tmp/", '5', "", 01777)
      .Add("private/", '5', "", 0700, 1000)
      .Add("shared/", '5', "", 02775)
      .Add("pipe", '6', "", 0620)
      .Add(kLongName, '0', "long\n")
      .Add("gone-dir/", '5', "", 0755)
      .Add("gone-dir/a", '0', "a\n")
      .Add("keep/", '5', "", 0755)
      .Add("keep/old", '0', "old\n")
      .Add("victim", '0', "v\n");
  return t.Finish();
}

// Layer 2: whiteouts, an opaque directory, a replaced file.
std::string Layer2() {
  Tar t;
  t.Add(".wh.victim", '0')
      .Add("keep/.wh..wh..opq", '0')
      .Add("keep/new", '0', "new\n")
      .Add(".wh.gone-dir", '0')
      .Add("bin/tool", '0', "#!tool v2\n", 0755);
  return t.Finish();
}

json ConfigJson(const std::vector<std::string>& diff_ids) {
  return json{{"architecture", "amd64"}, {"os", "linux"},
              {"config", {{"Env", {"PATH=/bin", "A=b"}}, {"WorkingDir", "/work"}, {"User", "1000"},
                          {"Entrypoint", {"/bin/sh"}}, {"Cmd", {"-c", "true"}},
                          {"Labels", {{"org.example", "yes"}}}}},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
}

std::string DockerSave(const std::vector<std::string>& layers, const std::string& tag) {
  std::vector<std::string> diff_ids;
  for (const auto& l : layers) diff_ids.push_back(Digest(l));
  const std::string cfg = ConfigJson(diff_ids).dump();
  Tar t;
  json names = json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string id = Sha256Hex("layer" + std::to_string(i));
    t.Add(id + "/layer.tar", '0', layers[i]);
    names.push_back(id + "/layer.tar");
  }
  t.Add(Sha256Hex(cfg) + ".json", '0', cfg);
  t.Add("manifest.json", '0',
        json::array({{{"Config", Sha256Hex(cfg) + ".json"}, {"RepoTags", {tag}}, {"Layers", names}}}).dump());
  return t.Finish();
}

// What a layer directory holds, one line per path: type, mode, owner,
// mtime, content digest or link target, opaque marker, hardlink group.
std::map<std::string, std::string> Describe(const fs::path& root) {
  std::map<std::string, std::string> out;
  std::map<std::pair<dev_t, ino_t>, std::string> first;
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
    paths.push_back(it->path());
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    struct stat st;
    REQUIRE(lstat(p.c_str(), &st) == 0);
    std::string d = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
    // A whiteout device's times are its extraction's.
    if (!S_ISCHR(st.st_mode)) d += " t" + std::to_string(st.st_mtim.tv_sec);
    if (S_ISREG(st.st_mode)) d += " " + Sha256Hex(ReadFile(p));
    if (S_ISLNK(st.st_mode)) d += " -> " + fs::read_symlink(p).string();
    if (S_ISCHR(st.st_mode)) d += " dev " + std::to_string(st.st_rdev);
    char v[8];
    if (S_ISDIR(st.st_mode) && lgetxattr(p.c_str(), "user.overlay.opaque", v, sizeof v) == 1) d += " opaque";
    const std::string rel = fs::relative(p, root).string();
    if (st.st_nlink > 1 && !S_ISDIR(st.st_mode)) {
      auto [it, fresh] = first.try_emplace({st.st_dev, st.st_ino}, rel);
      d += " link-group " + it->second;
    }
    out[rel] = d;
  }
  return out;
}

std::vector<std::string> Names(const std::vector<Member>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.push_back(m.e.name);
  return out;
}

}  // namespace

TEST_CASE("export writes an OCI archive that re-imports to the same files and bytes", "[images][export]") {
  TempDir tmp;
  const bool root = geteuid() == 0;
  const fs::path store1 = tmp.path / "store1", store2 = tmp.path / "store2";
  const std::string l1 = Layer1(), l2 = Layer2();
  WriteFile(tmp.path / "in.tar", DockerSave({l1, l2}, "example.org/tool:1"));
  auto imported = img::ImportArchive(store1, tmp.path / "in.tar", "tool");
  INFO((imported ? "" : imported.error().Message()));
  REQUIRE(imported);

  const fs::path out1 = tmp.path / "out1.tar";
  auto ex = img::ExportImageToFile(store1, "tool", out1);
  INFO((ex ? "" : ex.error().Message()));
  REQUIRE(ex);
  const std::string archive = ReadFile(out1);
  CHECK(ex->bytes == archive.size());
  REQUIRE(ex->layers.size() == 2);
  CHECK(ex->layers[0].stored_diff_id == Digest(l1));
  CHECK(ex->layers[1].stored_diff_id == Digest(l2));
  // The input tars were written out of order, with implicit directories:
  // the store can't give those bytes back.
  CHECK_FALSE(ex->layers[0].reproduced());
  CHECK_FALSE(ex->layers[1].reproduced());
  // No temporary is left beside the file.
  for (const auto& e : fs::directory_iterator(tmp.path))
    CHECK(e.path().filename().string().find("airlock-export") == std::string::npos);

  // ---- the archive's structure ----
  auto members = Members(archive);
  auto names = Names(members);
  CHECK(names[0] == "blobs/");
  CHECK(names[1] == "blobs/sha256/");
  auto files = Files(archive);
  CHECK(json::parse(files.at("oci-layout")) == json{{"imageLayoutVersion", "1.0.0"}});
  json index = json::parse(files.at("index.json"));
  CHECK(index["schemaVersion"] == 2);
  REQUIRE(index["manifests"].size() == 1);
  const json& mdesc = index["manifests"][0];
  CHECK(mdesc["mediaType"] == "application/vnd.oci.image.manifest.v1+json");
  CHECK(mdesc["annotations"]["org.opencontainers.image.ref.name"] == "tool");
  CHECK(mdesc["digest"] == ex->manifest_digest);
  // Every blob is named by the digest of its content.
  for (const auto& [n, data] : files)
    if (n.starts_with("blobs/sha256/")) CHECK(n.substr(13) == Sha256Hex(data));
  const std::string manifest_text = files.at("blobs/sha256/" + ex->manifest_digest.substr(7));
  CHECK(mdesc["size"] == manifest_text.size());
  json manifest = json::parse(manifest_text);
  CHECK(manifest["config"]["digest"] == ex->config_digest);
  json config = json::parse(files.at("blobs/sha256/" + ex->config_digest.substr(7)));
  CHECK(config["os"] == "linux");
  CHECK(config["config"]["Env"] == json{"PATH=/bin", "A=b"});
  CHECK(config["config"]["WorkingDir"] == "/work");
  CHECK(config["config"]["User"] == "1000");
  CHECK(config["config"]["Entrypoint"] == json{"/bin/sh"});
  CHECK(config["config"]["Cmd"] == json{"-c", "true"});
  CHECK(config["config"]["Labels"]["org.example"] == "yes");
  const json diff_ids = config["rootfs"]["diff_ids"];
  REQUIRE(diff_ids.size() == 2);
  REQUIRE(manifest["layers"].size() == 2);
  std::vector<std::string> layer_tars;
  for (size_t i = 0; i < 2; ++i) {
    const json& l = manifest["layers"][i];
    CHECK(l["mediaType"] == "application/vnd.oci.image.layer.v1.tar");
    // Uncompressed: the blob digest is the diff_id.
    CHECK(l["digest"] == diff_ids[i]);
    CHECK(l["digest"] == ex->layers[i].diff_id);
    layer_tars.push_back(files.at("blobs/sha256/" + l["digest"].get<std::string>().substr(7)));
    CHECK(l["size"] == layer_tars.back().size());
  }
  json docker = json::parse(files.at("manifest.json"));
  REQUIRE(docker.size() == 1);
  CHECK(docker[0]["Config"] == "blobs/sha256/" + ex->config_digest.substr(7));
  CHECK(docker[0]["RepoTags"] == json{"tool:latest"});
  CHECK(docker[0]["Layers"] == json{"blobs/sha256/" + diff_ids[0].get<std::string>().substr(7),
                                    "blobs/sha256/" + diff_ids[1].get<std::string>().substr(7)});

  // ---- the layer tars: sorted depth first, metadata as stored ----
  auto m1 = Members(layer_tars[0]);
  // Unprivileged, the import can't chown: the layer root belongs to the
  // caller, not 0:0, and is written as "./".
  const std::vector<std::string> root_entry = root ? std::vector<std::string>{} : std::vector<std::string>{"./"};
  auto with_root = [&](std::vector<std::string> v) {
    v.insert(v.begin(), root_entry.begin(), root_entry.end());
    return v;
  };
  CHECK(Names(m1) == with_root({
                         "bin/", "bin/rel", "bin/sh", "bin/tool", "bin/tool-link", "deep/",
                         "deep/" + std::string(120, 'n') + "/", kLongName, "etc/", "etc/passwd", "gone-dir/",
                         "gone-dir/a", "keep/", "keep/old", "pipe", "private/", "shared/", "srv/", "srv/data/",
                         "srv/data/big", "srv/empty", "tmp/", "victim"}));
  std::map<std::string, img::TarEntry> e1;
  for (const auto& m : m1) e1[m.e.name] = m.e;
  CHECK(e1["bin/tool"].type == img::TarEntry::Type::kFile);
  CHECK(e1["bin/tool"].mode == 0755);
  CHECK(e1["bin/tool"].mtime == kTime);
  CHECK(e1["bin/tool-link"].type == img::TarEntry::Type::kHardlink);
  CHECK(e1["bin/tool-link"].linkname == "bin/tool");
  CHECK(e1["bin/sh"].type == img::TarEntry::Type::kSymlink);
  CHECK(e1["bin/sh"].linkname == "/bin/tool");
  CHECK(e1["bin/rel"].linkname == "tool");
  CHECK(e1["pipe"].type == img::TarEntry::Type::kFifo);
  CHECK(e1["pipe"].mode == 0620);
  CHECK(e1["tmp/"].mode == 01777);
  CHECK(e1["shared/"].mode == 02775);
  CHECK(e1["private/"].mode == 0700);
  for (const auto& m : m1)
    if (m.e.name == "srv/data/big") CHECK(m.data.size() >= 200000);
  if (root) {
    CHECK(e1["bin/tool"].uid == 1000);
    CHECK(e1["private/"].uid == 1000);
    CHECK(e1["etc/passwd"].uid == 0);
  }
  auto m2 = Members(layer_tars[1]);
  // Whiteouts become .wh. files again; the opaque marker follows its
  // directory; the implicit bin/ and keep/ are written as directories.
  CHECK(Names(m2) == with_root({".wh.gone-dir", ".wh.victim", "bin/", "bin/tool", "keep/", "keep/.wh..wh..opq",
                                "keep/new"}));
  for (const auto& m : m2)
    if (m.e.name.find(".wh.") != std::string::npos) {
      CHECK(m.e.type == img::TarEntry::Type::kFile);
      CHECK(m.e.size == 0);
      CHECK(m.e.mode == 0600);
      CHECK(m.e.mtime == 0);
    }

  // ---- re-import into a second store: same diff_ids, same files ----
  // No name given: the archive's ref.name annotation names it.
  auto again = img::ImportArchive(store2, out1);
  INFO((again ? "" : again.error().Message()));
  REQUIRE(again);
  CHECK(again->name == "tool");
  CHECK(again->diff_ids == std::vector<std::string>{ex->layers[0].diff_id, ex->layers[1].diff_id});
  CHECK(again->digest == ex->manifest_digest);
  CHECK(again->config.env == imported->config.env);
  CHECK(again->config.entrypoint == imported->config.entrypoint);
  CHECK(again->config.cmd == imported->config.cmd);
  CHECK(again->config.labels == imported->config.labels);
  for (size_t i = 0; i < 2; ++i) {
    auto a = Describe(imported->layer_dirs[1 - i]);
    auto b = Describe(again->layer_dirs[1 - i]);
    CHECK(a.size() > 2);
    CHECK(a == b);
  }
  auto d2 = Describe(again->layer_dirs[0]);  // the upper layer
  CHECK(d2.at("keep").find("opaque") != std::string::npos);
  CHECK(d2.at("victim").find(" dev 0") != std::string::npos);
  CHECK(d2.at("gone-dir").find(" dev 0") != std::string::npos);

  // ---- a fixed point: exporting the re-import gives the same bytes ----
  const fs::path out2 = tmp.path / "out2.tar";
  auto ex2 = img::ExportImageToFile(store2, "tool", out2);
  INFO((ex2 ? "" : ex2.error().Message()));
  REQUIRE(ex2);
  CHECK(ex2->layers[0].reproduced());
  CHECK(ex2->layers[1].reproduced());
  CHECK(ReadFile(out2) == archive);
  // And the first store exports the same bytes again (determinism).
  auto ex3 = img::ExportImageToFile(store1, "tool", tmp.path / "out3.tar");
  REQUIRE(ex3);
  CHECK(ReadFile(tmp.path / "out3.tar") == archive);

  SECTION("\"-\" writes the same archive to stdout") {
    const fs::path out4 = tmp.path / "stdout.tar";
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(out4.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(saved >= 0);
    REQUIRE(fd >= 0);
    dup2(fd, STDOUT_FILENO);
    auto r = img::ExportImageToFile(store1, "tool", "-");
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(fd);
    INFO((r ? "" : r.error().Message()));
    REQUIRE(r);
    CHECK(ReadFile(out4) == archive);
  }

  SECTION("a failed export leaves the previous FILE untouched and no temporary") {
    const fs::path keep = tmp.path / "existing.tar";
    WriteFile(keep, "previous content");
    // A name the store can't hold from an import: the export refuses it
    // half-way through, after the first layer was scanned.
    const fs::path bad = fs::path(imported->layer_dirs[0]) / ".wh.stray";
    WriteFile(bad, "x");
    auto r = img::ExportImageToFile(store1, "tool", keep);
    fs::remove(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().Message().find("tool") != std::string::npos);
    CHECK(r.error().Message().find(".wh.stray") != std::string::npos);
    CHECK(ReadFile(keep) == "previous content");
    for (const auto& e : fs::directory_iterator(tmp.path))
      CHECK(e.path().filename().string().find("airlock-export") == std::string::npos);
  }

  SECTION("errors name the image and the file") {
    auto missing = img::ExportImageToFile(store1, "nosuch", tmp.path / "x.tar");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().Message().find("nosuch") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp.path / "x.tar"));
    const std::string nodir = (tmp.path / "no-such-dir" / "x.tar").string();
    auto bad_dir = img::ExportImageToFile(store1, "tool", nodir);
    REQUIRE_FALSE(bad_dir);
    CHECK(bad_dir.error().Message().find(nodir) != std::string::npos);
    auto host = img::ExportImageToFile(store1, "host", tmp.path / "h.tar");
    REQUIRE_FALSE(host);
    CHECK(host.error().Message().find("built in") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp.path / "h.tar"));
  }
}

TEST_CASE("a layer tar is written from its directory alone, deterministically", "[images][export]") {
  TempDir tmp;
  const fs::path d = tmp.path / "layer";
  fs::create_directories(d / "b/c");
  chmod(d.c_str(), 0755);
  WriteFile(d / "b/c/f", "data");
  WriteFile(d / "a", "first");
  fs::create_symlink("b/c/f", d / "ln");
  chmod((d / "b").c_str(), 0750);
  struct timespec ts[2] = {{kTime, 0}, {kTime, 0}};
  for (const char* p : {"a", "b/c/f", "b/c", "b", "ln"}) utimensat(AT_FDCWD, (d / p).c_str(), ts, AT_SYMLINK_NOFOLLOW);
  std::string t1, t2;
  auto r1 = img::WriteLayerTar(d, [&](std::string_view c) { t1.append(c); return true; });
  auto r2 = img::WriteLayerTar(d, [&](std::string_view c) { t2.append(c); return true; });
  REQUIRE(r1);
  REQUIRE(r2);
  CHECK(t1 == t2);
  CHECK(r1->digest == Digest(t1));
  CHECK(r1->size == t1.size());
  auto ms = Members(t1);
  std::vector<std::string> want = {"a", "b/", "b/c/", "b/c/f", "ln"};
  // The test's own directory belongs to whoever runs it: a root that isn't
  // 0:0 is written as "./".
  if (geteuid() != 0) want.insert(want.begin(), "./");
  CHECK(Names(ms) == want);
  for (const auto& m : ms)
    if (m.e.name == "b/") CHECK(m.e.mode == 0750);

  // A reader that goes away stops the writer.
  CHECK_FALSE(img::WriteLayerTar(d, [](std::string_view) { return false; }));

  // A socket can't be in an imported layer: refused, naming it.
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(s >= 0);
  struct sockaddr_un sa {};
  sa.sun_family = AF_UNIX;
  const std::string sp = (d / "b/sock").string();
  REQUIRE(sp.size() < sizeof sa.sun_path);
  memcpy(sa.sun_path, sp.c_str(), sp.size() + 1);
  REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  close(s);
  auto refused = img::WriteLayerTar(d, [](std::string_view) { return true; });
  REQUIRE_FALSE(refused);
  CHECK(refused.error().Message().find("b/sock") != std::string::npos);
}
