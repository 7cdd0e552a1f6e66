#include "harness/daemon/manifest.h"

#include <cstring>
#include <optional>

#include "harness/daemon/files.h"
#include "harness/daemon/manager.h"

namespace airlock::daemon {
namespace {

bool ValidName(const std::string& s, size_t max, const char* extra) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr(extra, c)))
      return false;
  return true;
}

bool Inside(const std::string& path, const std::string& root) {
  return path.size() > root.size() && path.starts_with(root) && path[root.size()] == '/';
}

}  // namespace

ApiResult<CreatePlan> PlanCreate(const v1::CreateRequest& r, const std::vector<std::string>& allowed_roots,
                                 uid_t caller_uid, gid_t caller_gid) {
  CreatePlan plan;
  std::optional<HostAccess> access;
  auto caller = [&]() -> const HostAccess& {
    if (!access) access = AccessFor(caller_uid, caller_gid);
    return *access;
  };
  if (!r.image().empty()) plan.image = r.image();
  if (!r.hostname().empty()) plan.hostname = r.hostname();
  if (!r.seccomp_profile().empty()) {
    // A name only: a path would let a caller make the daemon read any file.
    if (!ValidName(r.seccomp_profile(), 64, "-_"))
      return BadField("create.seccomp_profile", "must be a profile name such as default or strict (got \"" +
                                                    r.seccomp_profile() + "\")");
    plan.seccomp_profile = r.seccomp_profile();
  }
  switch (r.network()) {
    case v1::NETWORK_MODE_UNSPECIFIED:
    case v1::NETWORK_MODE_NONE:
      break;
    case v1::NETWORK_MODE_PROXY:
      plan.proxy = true;
      break;
    default:
      return BadField("create.network", "unknown mode " + std::to_string(r.network()));
  }
  if (!plan.proxy && r.has_egress()) return BadField("create.egress", "needs network NETWORK_MODE_PROXY");
  if (!plan.proxy && r.expose_ports_size() > 0)
    return BadField("create.expose_ports", "needs network NETWORK_MODE_PROXY (the relay forwards them)");
  const auto& l = r.limits();
  if (l.memory_bytes()) plan.limits.memory_bytes = l.memory_bytes();
  if (l.pids()) plan.limits.pids = l.pids();
  if (l.cpus() < 0) return BadField("create.limits.cpus", "negative");
  if (l.cpus() > 0) plan.limits.cpus = l.cpus();
  if (l.disk_bytes()) plan.limits.disk_bytes = l.disk_bytes();
  if (l.nofile()) plan.limits.nofile = l.nofile();
  if (r.labels_size() > 64) return BadField("create.labels", "more than 64 labels");
  for (const auto& [k, v] : r.labels()) {
    if (!ValidName(k, 63, "-_./")) return BadField("create.labels", "bad key \"" + k.substr(0, 64) + "\" ([A-Za-z0-9._/-]{1,63})");
    if (v.size() > 256 || v.find('\0') != std::string::npos) return BadField("create.labels[" + k + "]", "value over 256 bytes or with NUL");
  }

  const auto& m = r.manifest();
  if (!m.root().empty()) {
    if (!IsNormalizedAbsolutePath(m.root()) || m.root() == "/")
      return BadField("create.manifest.root", "must be an absolute, normalized directory other than / (got \"" + m.root() + "\")");
    plan.workspace = m.root();
  }
  for (int i = 0; i < m.entries_size(); ++i) {
    const auto& e = m.entries(i);
    const std::string field = "create.manifest.entries[" + std::to_string(i) + "]";
    std::string path = e.path().starts_with("/") ? e.path() : plan.workspace + "/" + e.path();
    if (e.path().empty() || !IsNormalizedAbsolutePath(path) || !Inside(path, plan.workspace))
      return BadField(field + ".path", "must name a path inside the workspace " + plan.workspace + " (got \"" + e.path() + "\")");
    if (e.mode() > 07777) return BadField(field + ".mode", "more than permission bits");
    switch (e.source_case()) {
      case v1::ManifestEntry::kHostBind:
        plan.mount_fds.push_back(TRY(CheckHostPath(field + ".host_bind", e.host_bind(), allowed_roots, caller(), false)));
        plan.mounts.push_back({e.host_bind(), path, /*read_only=*/true, false, plan.mount_fds.back().get()});
        break;
      case v1::ManifestEntry::kOutputDir:
        plan.mount_fds.push_back(TRY(CheckHostPath(field + ".output_dir", e.output_dir(), allowed_roots, caller(), true)));
        plan.mounts.push_back({e.output_dir(), path, /*read_only=*/false, /*allow_root_owner=*/caller_uid == 0,
                               plan.mount_fds.back().get()});
        break;
      case v1::ManifestEntry::kHostCopy:
        // The copy reads with the caller's ids (the kernel checks each file).
        (void)TRY(CheckHostPath(field + ".host_copy", e.host_copy(), allowed_roots, caller(), false));
        // Copied by the runtime into the writable layer before the overlay
        // is mounted, reading with the caller's ids: the kernel checks each
        // file it copies against the caller, not against the daemon.
        plan.seeds.push_back({e.host_copy(), path, caller_uid, caller_gid, caller().groups});
        break;
      case v1::ManifestEntry::kContent:
        if (e.content().size() > 16 * 1024 * 1024) return BadField(field + ".content", "over 16 MiB; upload large files");
        break;
      case v1::ManifestEntry::kEmptyDir:
        break;
      default:
        return BadField(field, "no source (host_copy, host_bind, content, empty_dir or output_dir)");
    }
  }
  for (const auto& [k, v] : m.environment()) {
    if (!ValidName(k, 255, "_")) return BadField("create.manifest.environment", "bad name \"" + k.substr(0, 64) + "\"");
    if (v.find('\0') != std::string::npos) return BadField("create.manifest.environment[" + k + "]", "contains NUL");
    plan.environment.push_back(k + "=" + v);
  }
  for (int i = 0; i < m.users_size(); ++i) {
    const auto& u = m.users(i);
    const std::string field = "create.manifest.users[" + std::to_string(i) + "]";
    if (!ValidName(u.name(), 32, "-_") || u.name() == "root") return BadField(field + ".name", "must be [A-Za-z0-9_-]{1,32}, not root");
    if (u.uid() == 0 || u.uid() > 65535) return BadField(field + ".uid", "must be 1-65535");
    if (u.gid() > 65535) return BadField(field + ".gid", "must be 0-65535");
    if (!u.home().empty() && !IsNormalizedAbsolutePath(u.home())) return BadField(field + ".home", "must be absolute");
  }
  return plan;
}

std::vector<std::string> BaseEnvironment(const std::vector<std::string>& image_env,
                                         const std::vector<std::string>& manifest_env) {
  std::vector<std::string> env = image_env;
  auto set = [&env](const std::string& kv, bool override) {
    std::string key = kv.substr(0, kv.find('=') + 1);
    for (auto& e : env)
      if (e.starts_with(key)) {
        if (override) e = kv;
        return;
      }
    env.push_back(kv);
  };
  set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", false);
  set("HOME=/root", false);
  set("LANG=C.UTF-8", false);
  for (const auto& kv : manifest_env) set(kv, true);
  return env;
}

bool HasCommonShape(const v1::CreateRequest& r) {
  const auto& l = r.limits();
  if (!r.image().empty() && r.image() != "host") return false;
  if (l.memory_bytes() || l.pids() || l.cpus() != 0 || l.disk_bytes() || l.nofile()) return false;
  if (!r.seccomp_profile().empty() && r.seccomp_profile() != "default") return false;
  if (r.network() != v1::NETWORK_MODE_UNSPECIFIED && r.network() != v1::NETWORK_MODE_NONE) return false;
  if (r.snapshots() || r.checkpointable() || r.has_recovery()) return false;
  if (!r.hostname().empty() && r.hostname() != "sandbox") return false;
  if (!r.manifest().root().empty() && r.manifest().root() != "/workspace") return false;
  for (const auto& e : r.manifest().entries())
    if (e.has_host_bind() || e.has_output_dir() || e.has_host_copy()) return false;
  return true;
}

ApiResult<void> ApplyManifest(Live& live, const v1::Manifest& m, bool workspace_exists) {
  auto op = [](proto::FileOp kind, const std::string& path, uint32_t flags, uint32_t mode) {
    proto::FileOpRequest r;
    r.op = kind;
    r.path = path;
    r.flags = flags;
    r.mode = mode;
    return r;
  };
  if (!workspace_exists)
    TRY(RunFileOp(live, op(proto::FileOp::kMkdir, live.workspace, proto::kParents, 0), {}, "create.manifest.root"));
  for (int i = 0; i < m.entries_size(); ++i) {
    const auto& e = m.entries(i);
    const std::string field = "create.manifest.entries[" + std::to_string(i) + "]";
    std::string path = e.path().starts_with("/") ? e.path() : live.workspace + "/" + e.path();
    if (e.has_content()) {
      TRY(FileOpFromString(live,
                           op(proto::FileOp::kWrite, path,
                              proto::kWriteCreate | proto::kWriteTruncate | proto::kParents | proto::kModeSet,
                              e.mode() ? e.mode() : 0644),
                           e.content(), field + ".content"));
    } else if (e.has_empty_dir()) {
      TRY(RunFileOp(live, op(proto::FileOp::kMkdir, path, proto::kParents | proto::kModeSet, e.mode() ? e.mode() : 0755), {}, field));
    }
  }
  // Users: appended to the sandbox's own /etc/passwd and /etc/group. A name
  // or uid the image has already would make two users of one.
  if (m.users_size() > 0) {
    proto::FileOpRequest read = op(proto::FileOp::kRead, "/etc/passwd", 0, 0);
    std::string existing = TRY(FileOpToString(live, read, 4 << 20, "create.manifest.users: read /etc/passwd"));
    for (int i = 0; i < m.users_size(); ++i) {
      const auto& u = m.users(i);
      const std::string field = "create.manifest.users[" + std::to_string(i) + "]";
      for (size_t pos = 0; pos < existing.size();) {
        size_t nl = existing.find('\n', pos);
        std::string line = existing.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? existing.size() : nl + 1;
        size_t c1 = line.find(':'), c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
        size_t c3 = c2 == std::string::npos ? c2 : line.find(':', c2 + 1);
        if (c3 == std::string::npos) continue;
        std::string name = line.substr(0, c1), uid = line.substr(c2 + 1, c3 - c2 - 1);
        if (name == u.name()) return BadField(field + ".name", "the image has a user " + name + " already");
        if (uid == std::to_string(u.uid()))
          return BadField(field + ".uid", std::to_string(u.uid()) + " belongs to the image's user " + name);
      }
    }
  }
  std::string passwd, group;
  for (const auto& u : m.users()) {
    std::string home = u.home().empty() ? "/home/" + u.name() : u.home();
    passwd += u.name() + ":x:" + std::to_string(u.uid()) + ":" + std::to_string(u.gid()) + "::" + home + ":/bin/sh\n";
    group += u.name() + ":x:" + std::to_string(u.gid()) + ":\n";
    TRY(RunFileOp(live, op(proto::FileOp::kMkdir, home, proto::kParents, 0), {}, "create.manifest.users home " + home));
    proto::FileOpRequest own = op(proto::FileOp::kChown, home, 0, 0);
    own.owner_uid = u.uid();
    own.owner_gid = u.gid();
    TRY(RunFileOp(live, own, {}, "create.manifest.users home " + home));
  }
  if (!passwd.empty()) {
    uint32_t append = proto::kWriteCreate | proto::kWriteAppend;
    TRY(FileOpFromString(live, op(proto::FileOp::kWrite, "/etc/passwd", append, 0), passwd, "create.manifest.users"));
    TRY(FileOpFromString(live, op(proto::FileOp::kWrite, "/etc/group", append, 0), group, "create.manifest.users"));
  }
  return {};
}

}  // namespace airlock::daemon
