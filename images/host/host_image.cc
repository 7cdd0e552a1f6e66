#include "images/host/host_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>
#include <tuple>

#include "images/store/fs_util.h"
#include "runtime/core/sha256.h"

namespace airlock::images {
namespace {

// Bump when the layer's layout or content rules change: old layers then
// stop being current and are collected.
constexpr std::string_view kBuilderVersion = "airlock-host-image/1";

constexpr uid_t kRootId = 0;
constexpr uid_t kSandboxId = 1000;
constexpr int kMaxTreeDepth = 8;
constexpr size_t kMaxCopySize = 64 << 20;  // ld.so.cache and CA bundles are far smaller
// A .build-* or .trash-* directory older than this belongs to a builder that
// died; younger ones may be a concurrent caller's work in progress.
constexpr time_t kStaleTempSeconds = 3600;

enum class EtcKind {
  // One regular file, copied. A symlink is kept as a symlink only if its
  // target lies in /usr (which the sandbox already sees); otherwise skipped.
  kFile,
  // A directory walked without following symlinks: regular files copied,
  // symlinks kept as symlinks (they resolve inside the sandbox's root, where
  // no host secret exists).
  kTree,
};

struct EtcItem {
  const char* path;  // relative to /etc; a glob only in the first component
  EtcKind kind;
  const char* reason;
};

// The only host /etc items that reach the image. Left out on purpose:
// shadow, gshadow, passwd/group (synthesized instead), ssh/, sudoers*,
// ssl/private, security/, machine-id (a host identifier), environment and
// profile.d/ (both can export credentials, e.g. proxy URLs with passwords),
// gitconfig, pip.conf, npmrc, wgetrc (tokens, credential helpers, proxy
// passwords), perl/ (libnet host lists; nothing needs it), xdg/ (desktop
// session config), and everything under /root and /home.
constexpr EtcItem kEtcAllowlist[] = {
    {"ld.so.cache", EtcKind::kFile, "loader cache for the bound /usr libraries"},
    {"ld.so.conf", EtcKind::kFile, "loader search path (read by ldconfig)"},
    {"ld.so.conf.d", EtcKind::kTree, "loader search path fragments"},
    {"alternatives", EtcKind::kTree, "update-alternatives links /usr/bin goes through"},
    {"localtime", EtcKind::kFile, "time zone, usually a link into /usr/share/zoneinfo"},
    {"timezone", EtcKind::kFile, "time zone name"},
    {"os-release", EtcKind::kFile, "distribution identity, usually a link into /usr/lib"},
    {"debian_version", EtcKind::kFile, "distribution version"},
    {"profile", EtcKind::kFile, "distribution's login shell defaults"},
    {"bash.bashrc", EtcKind::kFile, "distribution's interactive bash defaults"},
    {"inputrc", EtcKind::kFile, "readline key bindings"},
    {"mime.types", EtcKind::kFile, "MIME type table"},
    {"protocols", EtcKind::kFile, "protocol name table (getprotobyname)"},
    {"services", EtcKind::kFile, "service port table (getservbyname)"},
    {"ethertypes", EtcKind::kFile, "ethernet type names"},
    {"ssl/certs", EtcKind::kTree, "public CA certificates, the bundle and hashed links"},
    {"ssl/openssl.cnf", EtcKind::kFile, "OpenSSL defaults"},
    {"ca-certificates.conf", EtcKind::kFile, "names of the enabled CAs"},
    {"python3", EtcKind::kTree, "Debian's python defaults (debian_config)"},
    {"python3.*/sitecustomize.py", EtcKind::kFile,
     "/usr/lib/python3.N/sitecustomize.py links here"},
};

// Canonical ownership needs CAP_CHOWN; unprivileged builds (tests) keep
// the caller's ids, and the version records which kind of build it was.
bool BuildsOwnership() { return geteuid() == 0; }

// Names refused anywhere in a copied path, even inside an allowlisted tree:
// a second line of defence if a host keeps something private where public
// files are expected.
bool IsDeniedName(std::string_view name) {
  static constexpr std::string_view kExact[] = {
      "ssh", "private", "opasswd", "machine-id", "environment", "gitconfig",
      "pip.conf", "npmrc", ".npmrc", "netrc", ".netrc", "credentials"};
  static constexpr std::string_view kPrefix[] = {"shadow", "gshadow", "sudoers",
                                                 "id_rsa", "id_ecdsa", "id_ed25519",
                                                 "id_dsa"};
  static constexpr std::string_view kInfix[] = {"secret", "token", "credential",
                                                "password", "passwd"};
  for (auto e : kExact)
    if (name == e) return true;
  for (auto p : kPrefix)
    if (name.starts_with(p)) return true;
  for (auto i : kInfix)
    if (name.find(i) != std::string_view::npos) return true;
  return name.ends_with(".key") || name.ends_with("_key");
}

bool IsDeniedPath(std::string_view rel) {
  for (size_t start = 0, end; start <= rel.size(); start = end + 1) {
    end = std::min(rel.find('/', start), rel.size());
    if (end > start && IsDeniedName(rel.substr(start, end - start))) return true;
  }
  return false;
}

// Where the CA bundle may really live when /etc/ssl/certs/ca-certificates.crt
// is a symlink (it must end up a regular file in the image).
constexpr std::string_view kCertBundleRoots[] = {
    "/etc/ssl/", "/etc/pki/", "/etc/ca-certificates/", "/usr/share/ca-certificates/",
    "/usr/local/share/ca-certificates/"};
constexpr std::string_view kCertBundleRel = "ssl/certs/ca-certificates.crt";

constexpr const char* kRootLinks[] = {"bin", "sbin", "lib", "lib64", "lib32", "libx32"};

int OpenAt2(int dirfd, const std::string& path, uint64_t flags, uint64_t resolve) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC;
  how.resolve = resolve;
  return static_cast<int>(syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
}

constexpr uint64_t kStrictResolve =
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

// Errors that mean "this host input is not there (or not a plain path)":
// the item is skipped, not followed.
bool IsAbsentErrno(int err) {
  return err == ENOENT || err == ENOTDIR || err == ELOOP || err == EXDEV ||
         err == EACCES;
}

std::string JoinPath(std::string_view a, std::string_view b) {
  std::string out(a);
  if (out.empty() || out.back() != '/') out += '/';
  out += b;
  return out;
}

std::pair<std::string, std::string> SplitParent(const std::string& rel) {
  size_t slash = rel.rfind('/');
  if (slash == std::string::npos) return {"", rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

// Lexically normalizes an absolute path ("." and ".." removed, ".." at the
// root stays at the root), as the sandbox's own lookup would resolve it.
std::string NormalizeAbsolute(std::string_view path) {
  std::vector<std::string_view> parts;
  for (size_t start = 0, end; start <= path.size(); start = end + 1) {
    end = std::min(path.find('/', start), path.size());
    std::string_view part = path.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
  }
  std::string out;
  for (auto p : parts) (out += '/') += p;
  return out.empty() ? "/" : out;
}

// True if a symlink at directory `link_dir` (absolute, in the sandbox's
// view) with `target` names something under /usr.
bool PointsIntoUsr(const std::string& link_dir, const std::string& target) {
  std::string abs = target.starts_with('/') ? target : JoinPath(link_dir, target);
  return NormalizeAbsolute(abs).starts_with("/usr/");
}

Result<std::string> ReadLinkAt(int dirfd, const std::string& name, const std::string& what) {
  char buf[4096];
  ssize_t n = readlinkat(dirfd, name.c_str(), buf, sizeof buf);
  if (n < 0) return Errno("readlink", what);
  if (static_cast<size_t>(n) == sizeof buf) return Fail("readlink", "target too long: " + what);
  return std::string(buf, static_cast<size_t>(n));
}

// Entry names of a directory, sorted (the fingerprint must not depend on
// readdir order).
Result<std::vector<std::string>> ListDir(int dirfd, const std::string& what,
                                         bool dirs_only = false) {
  UniqueFd fd(openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Errno("open", what);
  DIR* dir = fdopendir(fd.get());
  if (dir == nullptr) return Errno("fdopendir", what);
  fd.Release();  // the DIR owns it now
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = readdir(dir)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    // d_type spares a stat per entry; DT_UNKNOWN (some filesystems) is kept.
    if (dirs_only && e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) continue;
    names.emplace_back(n);
  }
  int err = errno;
  closedir(dir);
  if (err != 0) return ErrnoValue(err, "readdir", what);
  std::sort(names.begin(), names.end());
  return names;
}

// ---- what is read from the host -------------------------------------------

struct Host {
  UniqueFd root;        // O_PATH
  UniqueFd etc;         // O_RDONLY directory; invalid if the host has no /etc
  UniqueFd usr;         // O_PATH
  std::string root_real;
  std::string usr_path;  // the bind source
  std::vector<std::pair<std::string, std::string>> root_links;  // name, target
  std::string shell;
};

Result<Host> OpenHost(const std::string& host_root) {
  Host host;
  host.root.Reset(open(host_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!host.root) return Errno("open host root", host_root);
  char* real = realpath(host_root.c_str(), nullptr);
  if (real == nullptr) return Errno("realpath", host_root);
  host.root_real = real;
  free(real);

  host.usr.Reset(OpenAt2(host.root.get(), "usr", O_PATH | O_DIRECTORY, kStrictResolve));
  if (!host.usr) return Errno("open host /usr (a directory)", JoinPath(host_root, "usr"));
  host.usr_path = JoinPath(host.root_real, "usr");

  host.etc.Reset(OpenAt2(host.root.get(), "etc", O_RDONLY | O_DIRECTORY, kStrictResolve));
  if (!host.etc && !IsAbsentErrno(errno))
    return Errno("open host /etc", JoinPath(host_root, "etc"));

  // Mirror the host's merged-/usr links. A real directory there means the
  // host keeps files outside /usr, which the image can't show: refuse.
  for (const char* name : kRootLinks) {
    struct stat st;
    if (fstatat(host.root.get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return Errno("stat", JoinPath(host_root, name));
    }
    std::string path = JoinPath(host_root, name);
    if (!S_ISLNK(st.st_mode))
      return Fail("host image",
                  path + " is not a symlink into /usr (host is not merged-/usr)");
    std::string target = TRY(ReadLinkAt(host.root.get(), name, path));
    std::string norm = NormalizeAbsolute(target.starts_with('/') ? target : "/" + target);
    if (!norm.starts_with("/usr/")) continue;  // points elsewhere: would dangle
    host.root_links.emplace_back(name, norm.substr(1));
  }

  bool has_bin = std::any_of(host.root_links.begin(), host.root_links.end(),
                             [](const auto& l) { return l.first == "bin"; });
  struct stat st;
  bool has_bash = fstatat(host.usr.get(), "bin/bash", &st, 0) == 0 && S_ISREG(st.st_mode);
  host.shell = std::string(has_bin ? "/bin/" : "/usr/bin/") + (has_bash ? "bash" : "sh");
  return host;
}

// ---- writing the layer ------------------------------------------------------

// Writes into a directory tree that only this builder knows (a fresh
// mkdtemp), still never following symlinks: the tree holds copied ones.
class LayerWriter {
 public:
  explicit LayerWriter(int rootfd) : rootfd_(rootfd), owned_(BuildsOwnership()) {}

  Result<void> Own(int dirfd, const std::string& name, mode_t mode, uid_t id, bool link,
                   const std::string& what) {
    if (owned_ && fchownat(dirfd, name.c_str(), id, id, AT_SYMLINK_NOFOLLOW) != 0)
      return Errno("chown", what);
    // chown clears set-id bits, so the mode goes on after it.
    if (!link && fchmodat(dirfd, name.c_str(), mode, 0) != 0) return Errno("chmod", what);
    return {};
  }

  // Opens the parent of `rel` (relative to the layer root) with no symlink
  // in the way, creating missing directories.
  Result<UniqueFd> OpenParent(const std::string& rel, std::string* name) {
    auto [parent, last] = SplitParent(rel);
    *name = last;
    std::string path = parent.empty() ? "." : parent;
    UniqueFd fd(OpenAt2(rootfd_, path, O_PATH | O_DIRECTORY, kStrictResolve));
    if (!fd && errno == ENOENT) {
      TRY(MakeDirs(parent));
      fd.Reset(OpenAt2(rootfd_, path, O_PATH | O_DIRECTORY, kStrictResolve));
    }
    if (!fd) return Errno("open", Where(parent));
    return fd;
  }

  Result<void> MakeDir(const std::string& rel, mode_t mode, uid_t id, bool exist_ok) {
    std::string name;
    UniqueFd parent = TRY(OpenParent(rel, &name));
    if (mkdirat(parent.get(), name.c_str(), 0700) != 0) {
      if (errno == EEXIST && exist_ok) return {};
      return Errno("mkdir", Where(rel));
    }
    return Own(parent.get(), name, mode, id, false, Where(rel));
  }

  // mkdir -p with default ownership and mode for every missing component.
  Result<void> MakeDirs(const std::string& rel) {
    size_t pos = 0;
    while (pos != std::string::npos) {
      pos = rel.find('/', pos + 1);
      TRY(MakeDir(rel.substr(0, pos), 0755, kRootId, true));
    }
    return {};
  }

  Result<UniqueFd> CreateFile(const std::string& rel, mode_t mode, uid_t id) {
    std::string name;
    UniqueFd parent = TRY(OpenParent(rel, &name));
    UniqueFd fd(openat(parent.get(), name.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return Errno("create", Where(rel));
    TRY(Own(parent.get(), name, mode, id, false, Where(rel)));
    return fd;
  }

  Result<void> WriteFile(const std::string& rel, std::string_view content) {
    UniqueFd fd = TRY(CreateFile(rel, 0644, kRootId));
    return WriteAll(fd.get(), content.data(), content.size(), rel);
  }

  // Copies a host file unless it holds a PEM private key: a second line of
  // defence against key material kept where public files are expected.
  Result<void> CopyFile(const std::string& rel, int src, const std::string& src_what) {
    std::string data;
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("read", src_what);
      data.append(buf, static_cast<size_t>(n));
      if (data.size() > kMaxCopySize) return ErrnoValue(EFBIG, "copy", src_what);
    }
    if (data.find("PRIVATE KEY-----") != std::string::npos) return {};
    return WriteFile(rel, data);
  }

  Result<void> MakeSymlink(const std::string& rel, const std::string& target) {
    std::string name;
    UniqueFd parent = TRY(OpenParent(rel, &name));
    if (symlinkat(target.c_str(), parent.get(), name.c_str()) != 0)
      return Errno("symlink", Where(rel) + " -> " + target);
    return Own(parent.get(), name, 0777, kRootId, true, Where(rel));
  }

 private:
  Result<void> WriteAll(int fd, const char* data, size_t size, const std::string& rel) {
    while (size > 0) {
      ssize_t n = write(fd, data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("write", Where(rel));
      data += n;
      size -= static_cast<size_t>(n);
    }
    return {};
  }
  std::string Where(const std::string& rel) const { return "host image layer /" + rel; }

  int rootfd_;
  bool owned_;
};

// ---- reading the allowlisted items -----------------------------------------

bool WorldReadable(const struct stat& st) { return (st.st_mode & S_IROTH) != 0; }
bool WorldSearchable(const struct stat& st) {
  return (st.st_mode & (S_IROTH | S_IXOTH)) == (S_IROTH | S_IXOTH);
}

// One allowlisted path found under the host's /etc, not yet opened.
struct ItemRef {
  UniqueFd parent_owned;
  int parentfd = -1;
  std::string parent;  // relative to /etc; empty for /etc itself
  std::string name;
  struct stat st;
};

// Finds `rel` beneath the host's /etc with no symlink on the way; false if
// absent (or reachable only through a symlink, which is never followed).
Result<bool> LocateItem(const Host& host, const std::string& rel, ItemRef* ref) {
  if (!host.etc || IsDeniedPath(rel)) return false;
  std::tie(ref->parent, ref->name) = SplitParent(rel);
  ref->parentfd = host.etc.get();
  if (!ref->parent.empty()) {
    ref->parent_owned.Reset(OpenAt2(host.etc.get(), ref->parent, O_PATH | O_DIRECTORY,
                                    kStrictResolve));
    if (!ref->parent_owned) {
      if (IsAbsentErrno(errno)) return false;
      return Errno("open", "/etc/" + ref->parent);
    }
    ref->parentfd = ref->parent_owned.get();
  }
  if (fstatat(ref->parentfd, ref->name.c_str(), &ref->st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (IsAbsentErrno(errno)) return false;
    return Errno("stat", "/etc/" + rel);
  }
  return true;
}

// Expands a glob in the first component of an item path against the host's
// /etc (only directories match; sorted).
Result<std::vector<std::string>> ExpandItem(const Host& host, const EtcItem& item) {
  std::string path = item.path;
  size_t slash = path.find('/');
  std::string first = path.substr(0, slash);
  if (first.find_first_of("*?[") == std::string::npos) return std::vector<std::string>{path};
  std::vector<std::string> out;
  if (!host.etc) return out;
  for (const auto& name : TRY(ListDir(host.etc.get(), "/etc"))) {
    struct stat st;
    if (fnmatch(first.c_str(), name.c_str(), FNM_PERIOD) != 0 ||
        fstatat(host.etc.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISDIR(st.st_mode))
      continue;
    out.push_back(slash == std::string::npos ? name : name + path.substr(slash));
  }
  return out;
}

// Opens a regular file found by fstatat, refusing it if it was swapped for
// something else in between (O_NOFOLLOW; O_NONBLOCK against a FIFO).
Result<UniqueFd> OpenRegular(int parentfd, const std::string& name, const std::string& what) {
  UniqueFd fd(openat(parentfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
                                                 O_CLOEXEC));
  if (!fd) return Errno("open", what);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno("fstat", what);
  if (!S_ISREG(st.st_mode)) return Fail("open", what + " changed type during the build");
  return fd;
}

// The CA bundle may be a symlink (into /usr/share or /etc/pki on some
// distributions); the image needs its content as a regular file. Resolved
// inside the host root only, and accepted only from a known CA location;
// returns an invalid descriptor otherwise.
Result<UniqueFd> OpenCertBundle(const Host& host) {
  // RESOLVE_IN_ROOT: absolute targets and ".." stay inside the host root.
  UniqueFd fd(OpenAt2(host.root.get(), "etc/" + std::string(kCertBundleRel),
                      O_RDONLY | O_NONBLOCK | O_NOCTTY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS));
  if (!fd) return UniqueFd();  // dangling
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno("fstat", "/etc/" + std::string(kCertBundleRel));
  if (!S_ISREG(st.st_mode) || !WorldReadable(st)) return UniqueFd();
  char real[4096];
  std::string proc = "/proc/self/fd/" + std::to_string(fd.get());
  ssize_t n = readlink(proc.c_str(), real, sizeof real - 1);
  if (n < 0) return Errno("readlink", proc);
  std::string path(real, static_cast<size_t>(n));
  if (host.root_real != "/") {
    if (!path.starts_with(host.root_real + "/")) return UniqueFd();
    path = path.substr(host.root_real.size());
  }
  bool allowed = std::any_of(std::begin(kCertBundleRoots), std::end(kCertBundleRoots),
                             [&](std::string_view r) { return path.starts_with(r); });
  if (!allowed || IsDeniedPath(path)) return UniqueFd();
  return fd;
}

// ---- copying them into the layer -------------------------------------------

Result<void> CopyTree(const Host& host, LayerWriter& w, int dirfd, const std::string& rel,
                      int depth) {
  TRY(w.MakeDirs("etc/" + rel));
  for (const auto& name : TRY(ListDir(dirfd, "/etc/" + rel))) {
    if (IsDeniedName(name)) continue;
    std::string child = rel + "/" + name;
    struct stat st;
    if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return Errno("stat", "/etc/" + child);
    }
    if (S_ISREG(st.st_mode)) {
      if (!WorldReadable(st)) continue;  // private by the host's own word
      UniqueFd src = TRY(OpenRegular(dirfd, name, "/etc/" + child));
      TRY(w.CopyFile("etc/" + child, src.get(), "/etc/" + child));
    } else if (S_ISDIR(st.st_mode)) {
      if (!WorldSearchable(st) || depth >= kMaxTreeDepth) continue;
      UniqueFd sub(openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) return Errno("open", "/etc/" + child);
      TRY(CopyTree(host, w, sub.get(), child, depth + 1));
    } else if (S_ISLNK(st.st_mode) && child == kCertBundleRel) {
      UniqueFd src = TRY(OpenCertBundle(host));
      if (src) TRY(w.CopyFile("etc/" + child, src.get(), "/etc/" + child));
    } else if (S_ISLNK(st.st_mode)) {
      TRY(w.MakeSymlink("etc/" + child, TRY(ReadLinkAt(dirfd, name, "/etc/" + child))));
    }
    // FIFOs, sockets and device nodes never belong in an image.
  }
  return {};
}

Result<void> CopyItem(const Host& host, LayerWriter& w, const EtcItem& item,
                      const std::string& rel) {
  ItemRef ref;
  if (!TRY(LocateItem(host, rel, &ref))) return {};
  const struct stat& st = ref.st;
  if (item.kind == EtcKind::kFile && S_ISREG(st.st_mode) && WorldReadable(st)) {
    UniqueFd src = TRY(OpenRegular(ref.parentfd, ref.name, "/etc/" + rel));
    return w.CopyFile("etc/" + rel, src.get(), "/etc/" + rel);
  }
  if (item.kind == EtcKind::kFile && S_ISLNK(st.st_mode)) {
    std::string target = TRY(ReadLinkAt(ref.parentfd, ref.name, "/etc/" + rel));
    if (PointsIntoUsr(JoinPath("/etc", ref.parent), target))
      return w.MakeSymlink("etc/" + rel, target);
  }
  if (item.kind == EtcKind::kTree && S_ISDIR(st.st_mode) && WorldSearchable(st)) {
    UniqueFd fd(openat(ref.parentfd, ref.name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Errno("open", "/etc/" + rel);
    return CopyTree(host, w, fd.get(), rel, 0);
  }
  return {};
}

// ---- fingerprint of the inputs ---------------------------------------------

// (path, size, mtime) as the version asks, plus ctime and inode: dpkg sets
// mtimes from the package, while ctime and inode change on every replace.
void Stamp(std::string* fp, char kind, const std::string& rel, const struct stat& st) {
  char buf[128];
  snprintf(buf, sizeof buf, " %jd %jd.%09ld %jd.%09ld %ju %ju\n",
           static_cast<intmax_t>(st.st_size), static_cast<intmax_t>(st.st_mtim.tv_sec),
           st.st_mtim.tv_nsec, static_cast<intmax_t>(st.st_ctim.tv_sec), st.st_ctim.tv_nsec,
           static_cast<uintmax_t>(st.st_ino), static_cast<uintmax_t>(st.st_mode));
  (((*fp += kind) += ' ') += rel) += buf;
}

// A tree is stamped by its directories, not its files: this runs on every
// `airlock run`, and stat'ing ~800 entries of alternatives/ and ssl/certs/
// cost ~1 ms. Package tools (dpkg, update-alternatives,
// update-ca-certificates, ldconfig) replace files by rename, which changes
// the directory's mtime; an in-place edit inside a tree is not noticed.
Result<void> StampTree(int dirfd, const std::string& rel, const struct stat& st, int depth,
                       std::string* fp) {
  Stamp(fp, 'D', rel, st);
  // A directory's link count is 2 + its subdirectories where the
  // filesystem keeps it (ext4, xfs, tmpfs; btrfs says 1): skip the listing.
  if (st.st_nlink == 2 || depth >= kMaxTreeDepth) return {};
  for (const auto& name : TRY(ListDir(dirfd, "/etc/" + rel, /*dirs_only=*/true))) {
    if (IsDeniedName(name)) continue;
    struct stat sub_st;
    if (fstatat(dirfd, name.c_str(), &sub_st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISDIR(sub_st.st_mode) || !WorldSearchable(sub_st))
      continue;
    UniqueFd sub(openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) return Errno("open", "/etc/" + rel + "/" + name);
    TRY(StampTree(sub.get(), rel + "/" + name, sub_st, depth + 1, fp));
  }
  return {};
}

Result<void> StampItem(const Host& host, const EtcItem& item, const std::string& rel,
                       std::string* fp) {
  ItemRef ref;
  if (!TRY(LocateItem(host, rel, &ref))) return {};
  if (S_ISLNK(ref.st.st_mode)) {
    *fp += "L " + rel + " -> " + TRY(ReadLinkAt(ref.parentfd, ref.name, "/etc/" + rel)) + "\n";
    return {};
  }
  if (item.kind == EtcKind::kFile || !S_ISDIR(ref.st.st_mode)) {
    Stamp(fp, 'F', rel, ref.st);
    return {};
  }
  UniqueFd fd(openat(ref.parentfd, ref.name.c_str(),
                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Errno("open", "/etc/" + rel);
  TRY(StampTree(fd.get(), rel, ref.st, 0, fp));
  // A linked CA bundle changes without touching ssl/certs.
  if (rel + "/ca-certificates.crt" == kCertBundleRel) {
    struct stat st;
    if (fstatat(fd.get(), "ca-certificates.crt", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode)) {
      UniqueFd bundle = TRY(OpenCertBundle(host));
      if (bundle && fstat(bundle.get(), &st) == 0) Stamp(fp, 'B', rel, st);
    }
  }
  return {};
}

// The version names a local cache entry; SHA-256 keeps it collision-free
// in practice across many host states.
std::string HashHex(std::string_view data) { return Sha256Hex(data); }

bool IsVersionName(std::string_view name) {
  return name.size() == 64 &&
         name.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

Result<std::string> ComputeVersion(const Host& host) {
  std::string fp;
  fp.reserve(4096);
  ((fp += "builder ") += kBuilderVersion) += BuildsOwnership() ? "\nowned 1" : "\nowned 0";
  fp += "\nshell " + host.shell + "\n";
  for (const auto& [name, target] : host.root_links)
    fp += "root-link " + name + " " + target + "\n";
  for (const auto& item : kEtcAllowlist)
    for (const auto& rel : TRY(ExpandItem(host, item))) TRY(StampItem(host, item, rel, &fp));
  return HashHex(fp);
}

struct SkeletonDir {
  const char* path;
  mode_t mode;
  uid_t owner;
};
constexpr SkeletonDir kSkeleton[] = {
    {"usr", 0755, kRootId},  {"proc", 0755, kRootId},    {"dev", 0755, kRootId},
    {"sys", 0755, kRootId},  {"tmp", 01777, kRootId},    {"run", 0755, kRootId},
    {"var", 0755, kRootId},  {"var/tmp", 01777, kRootId}, {"var/lib", 0755, kRootId},
    {"home", 0755, kRootId}, {"home/sandbox", 0755, kSandboxId}, {"root", 0700, kRootId},
    {"workspace", 0755, kSandboxId}, {"mnt", 0755, kRootId}, {"opt", 0755, kRootId},
    {"srv", 0755, kRootId},  {"etc", 0755, kRootId}};

constexpr std::string_view kHosts =
    "127.0.0.1\tlocalhost\n"
    "127.0.1.1\tsandbox\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n";
constexpr std::string_view kResolvConf =
    "# airlock: this sandbox has no network of its own; names resolve from\n"
    "# /etc/hosts. Nothing listens here unless the sandbox's policy adds it.\n"
    "nameserver 127.0.0.1\n";
constexpr std::string_view kNsswitch =
    "passwd:    files\ngroup:     files\nshadow:    files\nhosts:     files\n"
    "networks:  files\nprotocols: files\nservices:  files\nethers:    files\n"
    "rpc:       files\nnetgroup:  files\n";
constexpr std::string_view kGroup =
    "root:x:0:\ntty:x:5:\nusers:x:100:sandbox\nsandbox:x:1000:\nnogroup:x:65534:\n";

Result<void> BuildLayer(int layerfd, const Host& host) {
  LayerWriter w(layerfd);
  for (const auto& d : kSkeleton) TRY(w.MakeDir(d.path, d.mode, d.owner, false));
  for (const auto& [name, target] : host.root_links) TRY(w.MakeSymlink(name, target));

  std::string passwd = "root:x:0:0:root:/root:" + host.shell + "\n" +
                       "sandbox:x:1000:1000:sandbox:/home/sandbox:" + host.shell + "\n" +
                       "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
  TRY(w.WriteFile("etc/passwd", passwd));
  TRY(w.WriteFile("etc/group", kGroup));
  TRY(w.WriteFile("etc/hosts", kHosts));
  TRY(w.WriteFile("etc/hostname", "sandbox\n"));
  TRY(w.WriteFile("etc/resolv.conf", kResolvConf));
  TRY(w.WriteFile("etc/nsswitch.conf", kNsswitch));
  // mount(8), df(1) and friends read /etc/mtab.
  TRY(w.MakeSymlink("etc/mtab", "../proc/self/mounts"));

  // Synthesized names are never in the allowlist; O_EXCL would refuse a clash.
  for (const auto& item : kEtcAllowlist)
    for (const auto& rel : TRY(ExpandItem(host, item))) TRY(CopyItem(host, w, item, rel));
  return {};
}

// Removes a temporary build directory unless the build was committed.
struct TempDirGuard {
  int parentfd;
  std::string name;  // cleared once committed
  ~TempDirGuard() {
    if (!name.empty()) (void)fsutil::RemoveTree(parentfd, name);
  }
};

Result<void> MakeDirIfMissing(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return Errno("mkdir", path);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return Errno("stat", path);
  if (!S_ISDIR(st.st_mode)) return ErrnoValue(ENOTDIR, "image store", path);
  return {};
}

// Best effort: drops versions that are no longer current and not pinned,
// and temporary directories left by builders that died.
void CollectOldVersions(int hostdirfd, const std::string& current) {
  auto names = ListDir(hostdirfd, "host image store");
  if (!names) return;
  time_t now = time(nullptr);
  for (const auto& name : *names) {
    if (name == current) continue;
    struct stat st;
    if (fstatat(hostdirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (name.starts_with(".build-") || name.starts_with(".trash-")) {
      if (now - st.st_mtime > kStaleTempSeconds) (void)fsutil::RemoveTree(hostdirfd, name);
      continue;
    }
    if (!IsVersionName(name) || !S_ISDIR(st.st_mode)) continue;
    UniqueFd fd(openat(hostdirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd || flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // pinned: in use
    // Renamed first so a pinner arriving now finds nothing rather than a
    // half-removed tree.
    std::string trash = ".trash-" + name + "-" + std::to_string(getpid());
    if (renameat(hostdirfd, name.c_str(), hostdirfd, trash.c_str()) != 0) continue;
    (void)fsutil::RemoveTree(hostdirfd, trash);
  }
}

}  // namespace

Result<ImageLayers> EnsureHostImage(const std::string& store_dir, const std::string& host_root) {
  Host host = TRY(OpenHost(host_root));
  std::string version = TRY(ComputeVersion(host));

  TRY(MakeDirIfMissing(store_dir, 0711));
  std::string host_dir = JoinPath(store_dir, "host");
  TRY(MakeDirIfMissing(host_dir, 0755));
  UniqueFd hostdirfd(open(host_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!hostdirfd) return Errno("open", host_dir);

  std::string layer = JoinPath(host_dir, version);
  ImageLayers out;
  out.lower_dirs.push_back(layer);
  out.binds.push_back({host.usr_path, "/usr"});

  struct stat st;
  if (fstatat(hostdirfd.get(), version.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISDIR(st.st_mode)) return ErrnoValue(ENOTDIR, "host image", layer);
    CollectOldVersions(hostdirfd.get(), version);
    return out;
  }
  if (errno != ENOENT) return Errno("stat", layer);

  // mkdtemp makes it 0700: nobody sees the tree until it is complete.
  std::string tmp_path = JoinPath(host_dir, ".build-XXXXXX");
  if (mkdtemp(tmp_path.data()) == nullptr) return Errno("mkdtemp", tmp_path);
  std::string tmp_name = SplitParent(tmp_path).second;
  TempDirGuard guard{hostdirfd.get(), tmp_name};
  UniqueFd tmpfd(open(tmp_path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!tmpfd) return Errno("open", tmp_path);

  TRY(BuildLayer(tmpfd.get(), host));
  if (BuildsOwnership() && fchown(tmpfd.get(), kRootId, kRootId) != 0)
    return Errno("chown", tmp_path);
  if (fchmod(tmpfd.get(), 0755) != 0) return Errno("chmod", tmp_path);
  // Without this, a crash right after the rename could leave a complete-
  // looking layer with empty files.
  if (syncfs(tmpfd.get()) != 0) return Errno("syncfs", tmp_path);

  int rc = renameat2(hostdirfd.get(), tmp_name.c_str(), hostdirfd.get(), version.c_str(),
                     RENAME_NOREPLACE);
  if (rc != 0 && errno == EINVAL)  // a filesystem without RENAME_NOREPLACE
    rc = renameat(hostdirfd.get(), tmp_name.c_str(), hostdirfd.get(), version.c_str());
  if (rc == 0) {
    guard.name.clear();
  } else if (errno != EEXIST && errno != ENOTEMPTY) {
    return Errno("rename", layer);
  }
  // EEXIST/ENOTEMPTY: a concurrent caller built the same version first; the
  // guard removes ours.
  CollectOldVersions(hostdirfd.get(), version);
  return out;
}

Result<UniqueFd> PinImageLayer(const std::string& layer_dir) {
  UniqueFd fd(open(layer_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Errno("open", layer_dir);
  if (flock(fd.get(), LOCK_SH) != 0) return Errno("flock", layer_dir);
  // The collector may have renamed the layer away while we waited for the
  // lock; a pin on a removed tree would protect nothing.
  struct stat held, now;
  if (fstat(fd.get(), &held) != 0) return Errno("fstat", layer_dir);
  if (lstat(layer_dir.c_str(), &now) != 0) return Errno("stat", layer_dir);
  if (held.st_dev != now.st_dev || held.st_ino != now.st_ino)
    return ErrnoValue(ENOENT, "pin image layer", layer_dir);
  return fd;
}

}  // namespace airlock::images
