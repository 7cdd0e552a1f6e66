#include "images/oci/archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "images/oci/layer_extract.h"
#include "images/oci/tar_reader.h"
#include "images/store/fs_util.h"

namespace airlock::images {

namespace {

using nlohmann::json;
constexpr size_t kMaxJson = 4 << 20;

std::string Normalize(const std::string& name) {
  auto comps = SplitMemberPath(name);
  if (!comps) return {};
  std::string s;
  for (const auto& c : *comps) (s.empty() ? s : s += '/') += c;
  return s;
}

Result<json> ParseJson(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Fail("import", what + ": not valid JSON");
  return j;
}

// Field accessors that never throw (the build has no exceptions): a present
// field of the wrong type is an error naming it.
Result<std::string> Str(const json& o, const char* key, const std::string& what, bool required = true) {
  auto it = o.is_object() ? o.find(key) : o.end();
  if (it == o.end() || it->is_null()) {
    if (required) return Fail("import", what + ": missing field \"" + key + "\"");
    return std::string();
  }
  if (!it->is_string()) return Fail("import", what + ": field \"" + key + "\" is not a string");
  return it->get<std::string>();
}

Result<std::vector<std::string>> StrList(const json& o, const char* key, const std::string& what) {
  std::vector<std::string> out;
  auto it = o.is_object() ? o.find(key) : o.end();
  if (it == o.end() || it->is_null()) return out;
  if (!it->is_array()) return Fail("import", what + ": field \"" + key + "\" is not an array");
  for (const auto& v : *it) {
    if (!v.is_string()) return Fail("import", what + ": field \"" + key + "\" holds a non-string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::string HostArch() {
  struct utsname u;
  uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

std::string BlobPath(const std::string& digest) { return "blobs/sha256/" + digest.substr(7); }

// Reads a small blob named by its descriptor and checks size and digest.
Result<std::string> ReadVerifiedBlob(const ArchiveFiles& f, const json& desc, const std::string& what) {
  std::string digest = TRY(Str(desc, "digest", what));
  if (!IsSha256Digest(digest)) return Fail("import", what + ": unsupported digest \"" + digest + "\" (sha256 only)");
  std::string path = BlobPath(digest);
  if (!f.Exists(path)) return Fail("import", what + ": blob " + digest + " is missing from the archive");
  std::string data = TRY(f.ReadSmall(path, kMaxJson));
  auto size = desc.find("size");
  if (size != desc.end() && size->is_number_unsigned() && size->get<uint64_t>() != data.size())
    return Fail("import", what + ": blob " + digest + " has " + std::to_string(data.size()) +
                              " bytes, its descriptor says " + std::to_string(size->get<uint64_t>()));
  std::string actual = "sha256:" + Sha256Hex(data);
  if (actual != digest)
    return Fail("import", what + ": digest mismatch for " + path + ": content is " + actual);
  return data;
}

Result<void> ParseConfig(const std::string& text, ImagePlan* plan, std::vector<std::string>* diff_ids) {
  json c = TRY(ParseJson(text, "image config"));
  if (!c.is_object()) return Fail("import", "image config: not an object");
  auto rootfs = c.find("rootfs");
  if (rootfs == c.end() || !rootfs->is_object()) return Fail("import", "image config: missing rootfs");
  *diff_ids = TRY(StrList(*rootfs, "diff_ids", "image config rootfs"));
  for (const auto& d : *diff_ids)
    if (!IsSha256Digest(d)) return Fail("import", "image config: bad diff_id \"" + d + "\"");
  auto cfg = c.find("config");
  if (cfg == c.end() || cfg->is_null()) return {};
  if (!cfg->is_object()) return Fail("import", "image config: field \"config\" is not an object");
  ImageConfig& ic = plan->config;
  ic.env = TRY(StrList(*cfg, "Env", "image config"));
  ic.workdir = TRY(Str(*cfg, "WorkingDir", "image config", false));
  ic.user = TRY(Str(*cfg, "User", "image config", false));
  ic.entrypoint = TRY(StrList(*cfg, "Entrypoint", "image config"));
  ic.cmd = TRY(StrList(*cfg, "Cmd", "image config"));
  auto labels = cfg->find("Labels");
  if (labels != cfg->end() && labels->is_object())
    for (const auto& [k, v] : labels->items())
      if (v.is_string()) ic.labels[k] = v.get<std::string>();
  return {};
}

// Picks one image manifest from an OCI index: the only one, or the one for
// this host's platform in a multi-platform index.
Result<json> PickManifest(const ArchiveFiles& f, const json& index, std::string* ref, int depth) {
  if (depth > 4) return Fail("import", "image index nesting too deep");
  auto it = index.find("manifests");
  if (it == index.end() || !it->is_array() || it->empty()) return Fail("import", "index.json: no manifests");
  const json* chosen = nullptr;
  std::vector<const json*> images;
  for (const auto& d : *it) {
    if (!d.is_object()) return Fail("import", "index.json: a manifest descriptor is not an object");
    auto plat = d.find("platform");
    if (plat != d.end() && plat->is_object()) {
      std::string arch = TRY(Str(*plat, "architecture", "platform", false));
      std::string os = TRY(Str(*plat, "os", "platform", false));
      if (arch != HostArch() || (!os.empty() && os != "linux")) continue;
    }
    images.push_back(&d);
  }
  if (images.size() != 1)
    return Fail("import", "the archive holds " + std::to_string(images.size()) +
                              " images for this platform; import takes exactly one");
  chosen = images[0];
  auto ann = chosen->find("annotations");
  if (ann != chosen->end() && ann->is_object()) {
    for (const char* key : {"io.containerd.image.name", "org.opencontainers.image.ref.name"}) {
      auto a = ann->find(key);
      if (a != ann->end() && a->is_string() && ref->empty()) *ref = a->get<std::string>();
    }
  }
  std::string mt = TRY(Str(*chosen, "mediaType", "manifest descriptor", false));
  std::string digest = TRY(Str(*chosen, "digest", "manifest descriptor"));
  std::string blob = TRY(ReadVerifiedBlob(f, *chosen, "manifest"));
  json m = TRY(ParseJson(blob, "manifest " + digest));
  if (mt.find("index") != std::string::npos || mt.find("manifest.list") != std::string::npos ||
      (m.is_object() && m.contains("manifests")))
    return PickManifest(f, m, ref, depth + 1);
  m["__digest"] = digest;
  return m;
}

Result<ImagePlan> ReadOci(const ArchiveFiles& f) {
  ImagePlan plan;
  json index = TRY(ParseJson(TRY(f.ReadSmall("index.json", kMaxJson)), "index.json"));
  if (!index.is_object()) return Fail("import", "index.json: not an object");
  json m = TRY(PickManifest(f, index, &plan.ref_name, 0));
  plan.digest = m["__digest"].get<std::string>();
  auto cfgd = m.find("config");
  if (cfgd == m.end() || !cfgd->is_object()) return Fail("import", "manifest: missing config");
  std::vector<std::string> diff_ids;
  TRY(ParseConfig(TRY(ReadVerifiedBlob(f, *cfgd, "config")), &plan, &diff_ids));
  auto layers = m.find("layers");
  if (layers == m.end() || !layers->is_array()) return Fail("import", "manifest: missing layers");
  if (layers->size() != diff_ids.size())
    return Fail("import", "manifest lists " + std::to_string(layers->size()) + " layers, config has " +
                              std::to_string(diff_ids.size()) + " diff_ids");
  size_t i = 0;
  for (const auto& d : *layers) {
    std::string what = "layer " + std::to_string(i);
    std::string mt = TRY(Str(d, "mediaType", what, false));
    if (mt.find("zstd") != std::string::npos)
      return Fail("import", what + ": zstd-compressed layers are not supported (" + mt + ")");
    if (mt.find("nondistributable") != std::string::npos || mt.find("foreign") != std::string::npos)
      return Fail("import", what + ": foreign layer (" + mt + ") cannot be imported offline");
    LayerRef l;
    l.blob_digest = TRY(Str(d, "digest", what));
    if (!IsSha256Digest(l.blob_digest)) return Fail("import", what + ": unsupported digest \"" + l.blob_digest + "\"");
    l.member = BlobPath(l.blob_digest);
    if (!f.Exists(l.member)) return Fail("import", what + ": blob " + l.blob_digest + " is missing from the archive");
    auto sz = d.find("size");
    if (sz != d.end() && sz->is_number_unsigned()) l.size = sz->get<uint64_t>();
    l.diff_id = diff_ids[i++];
    plan.layers.push_back(std::move(l));
  }
  return plan;
}

Result<ImagePlan> ReadDocker(const ArchiveFiles& f) {
  ImagePlan plan;
  json all = TRY(ParseJson(TRY(f.ReadSmall("manifest.json", kMaxJson)), "manifest.json"));
  if (!all.is_array() || all.size() != 1)
    return Fail("import", "manifest.json: expected exactly one image, found " +
                              std::to_string(all.is_array() ? all.size() : 0));
  const json& m = all[0];
  std::string cfg_path = Normalize(TRY(Str(m, "Config", "manifest.json")));
  // The config is named by its own digest: "<hex>.json" or "blobs/sha256/<hex>".
  std::string hex = cfg_path.substr(cfg_path.rfind('/') == std::string::npos ? 0 : cfg_path.rfind('/') + 1);
  if (hex.ends_with(".json")) hex.resize(hex.size() - 5);
  if (!IsSha256Digest("sha256:" + hex)) return Fail("import", "manifest.json: config name \"" + cfg_path + "\" is not a digest");
  if (!f.Exists(cfg_path)) return Fail("import", "manifest.json: config " + cfg_path + " is missing from the archive");
  std::string cfg = TRY(f.ReadSmall(cfg_path, kMaxJson));
  if (Sha256Hex(cfg) != hex) return Fail("import", "digest mismatch for config " + cfg_path + ": content is sha256:" + Sha256Hex(cfg));
  plan.digest = "sha256:" + hex;
  std::vector<std::string> diff_ids;
  TRY(ParseConfig(cfg, &plan, &diff_ids));
  auto tags = TRY(StrList(m, "RepoTags", "manifest.json"));
  if (!tags.empty()) plan.ref_name = tags[0];
  auto layers = TRY(StrList(m, "Layers", "manifest.json"));
  if (layers.size() != diff_ids.size())
    return Fail("import", "manifest.json lists " + std::to_string(layers.size()) + " layers, config has " +
                              std::to_string(diff_ids.size()) + " diff_ids");
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerRef l;
    l.member = Normalize(layers[i]);
    if (l.member.empty()) return Fail("import", "manifest.json: bad layer path \"" + layers[i] + "\"");
    if (!f.Exists(l.member)) return Fail("import", "layer " + std::to_string(i) + ": " + l.member + " is missing from the archive");
    if (l.member.starts_with("blobs/sha256/") && IsSha256Digest("sha256:" + l.member.substr(13)))
      l.blob_digest = "sha256:" + l.member.substr(13);
    l.diff_id = diff_ids[i];
    plan.layers.push_back(std::move(l));
  }
  return plan;
}

}  // namespace

bool IsSha256Digest(const std::string& d) {
  if (d.size() != 71 || !d.starts_with("sha256:")) return false;
  for (size_t i = 7; i < d.size(); ++i)
    if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f'))) return false;
  return true;
}

Result<std::unique_ptr<ArchiveFiles>> ArchiveFiles::Open(const std::string& path) {
  std::unique_ptr<ArchiveFiles> a(new ArchiveFiles);
  a->path_ = path;
  a->fd_.Reset(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!a->fd_) return Errno("open", path);
  struct stat st;
  if (fstat(a->fd_.get(), &st) != 0) return Errno("stat", path);
  if (S_ISDIR(st.st_mode)) {
    a->is_dir_ = true;
    return a;
  }
  if (!S_ISREG(st.st_mode)) return Fail("import", path + ": not a file or directory");
  uint8_t head[2] = {0, 0};
  if (pread(a->fd_.get(), head, 2, 0) == 2 && LooksGzip(head, 2))
    return Fail("import", path + ": a compressed archive; decompress it first (gunzip)");
  FdSource src(a->fd_.get(), 0, static_cast<uint64_t>(st.st_size), path);
  TarReader tar(src);
  while (auto e = TRY(tar.Next())) {
    auto comps = SplitMemberPath(e->name);
    if (!comps) return Fail("import", path + ": member \"" + e->name + "\": " + comps.error().Message());
    std::string n = Normalize(e->name);
    if (e->type == TarEntry::Type::kFile) {
      a->members_[n] = Member{e->offset, e->size};
      a->links_.erase(n);
    } else if (e->type == TarEntry::Type::kSymlink || e->type == TarEntry::Type::kHardlink) {
      // docker save links duplicate layers to one copy; resolved lexically
      // inside the archive (a hardlink names a member, a symlink is relative
      // to its directory).
      std::string dir = e->type == TarEntry::Type::kSymlink && n.find('/') != std::string::npos
                            ? n.substr(0, n.rfind('/') + 1) : "";
      if (e->linkname.starts_with('/')) continue;  // never pointing outside
      comps->pop_back();
      if (e->type == TarEntry::Type::kSymlink && !SymlinkStaysBeneath(*comps, e->linkname)) continue;
      std::vector<std::string> parts;
      std::string full = dir + e->linkname;
      for (size_t s = 0; s <= full.size();) {
        size_t end = std::min(full.find('/', s), full.size());
        std::string p = full.substr(s, end - s);
        if (p == "..") {
          if (!parts.empty()) parts.pop_back();
        } else if (!p.empty() && p != ".") {
          parts.push_back(p);
        }
        s = end + 1;
      }
      std::string t;
      for (const auto& p : parts) (t.empty() ? t : t += '/') += p;
      a->links_[n] = t;
    }
  }
  return a;
}

Result<ArchiveFiles::Member> ArchiveFiles::Find(const std::string& name) const {
  std::string n = name;
  for (int hops = 0; hops < 8; ++hops) {
    auto m = members_.find(n);
    if (m != members_.end()) return m->second;
    auto l = links_.find(n);
    if (l == links_.end()) break;
    n = l->second;
  }
  return ErrnoValue(ENOENT, "import", path_ + ": no member " + name);
}

bool ArchiveFiles::Exists(const std::string& name) const {
  if (is_dir_) {
    struct stat st;
    UniqueFd fd(fsutil::OpenBeneath(fd_.get(), name, O_PATH));
    return fd && fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode);
  }
  return Find(name).has_value();
}

Result<std::string> ArchiveFiles::ReadSmall(const std::string& name, size_t max) const {
  if (is_dir_) return fsutil::ReadFileAt(fd_.get(), name, max, path_ + "/" + name);
  Member m = TRY(Find(name));
  if (m.size > max) return Fail("import", path_ + ": member " + name + " is over the size limit");
  std::string out(m.size, '\0');
  FdSource src(fd_.get(), static_cast<off_t>(m.offset), m.size, path_ + ":" + name);
  for (size_t done = 0; done < out.size();) done += TRY(src.Read(out.data() + done, out.size() - done));
  return out;
}

namespace {
// A member of a directory archive: owns its descriptor.
class OwnedFdSource : public ByteSource {
 public:
  OwnedFdSource(UniqueFd fd, uint64_t size, std::string what)
      : fd_(std::move(fd)), src_(fd_.get(), 0, size, std::move(what)) {}
  Result<size_t> Read(void* buf, size_t n) override { return src_.Read(buf, n); }

 private:
  UniqueFd fd_;
  FdSource src_;
};
}  // namespace

Result<std::unique_ptr<ByteSource>> ArchiveFiles::Stream(const std::string& name) const {
  if (is_dir_) {
    UniqueFd fd(fsutil::OpenBeneath(fd_.get(), name, O_RDONLY | O_NOCTTY));
    if (!fd) return Errno("open", path_ + "/" + name);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return Errno("stat", path_ + "/" + name);
    if (!S_ISREG(st.st_mode)) return Fail("import", path_ + "/" + name + " is not a regular file");
    return std::unique_ptr<ByteSource>(new OwnedFdSource(std::move(fd), static_cast<uint64_t>(st.st_size), path_ + "/" + name));
  }
  Member m = TRY(Find(name));
  return std::unique_ptr<ByteSource>(new FdSource(fd_.get(), static_cast<off_t>(m.offset), m.size, path_ + ":" + name));
}

Result<ImagePlan> ReadImagePlan(const ArchiveFiles& files) {
  // Docker 25+ writes both layouts; the OCI one carries the manifest digest.
  if (files.Exists("index.json")) {
    if (!files.Exists("oci-layout")) return Fail("import", files.path() + ": index.json without oci-layout");
    return ReadOci(files);
  }
  if (files.Exists("manifest.json")) return ReadDocker(files);
  return Fail("import", files.path() + ": neither an OCI image layout (index.json) nor a docker save archive (manifest.json)");
}

}  // namespace airlock::images
