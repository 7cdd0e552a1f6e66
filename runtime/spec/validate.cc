#include <algorithm>
#include <cmath>
#include <string_view>

#include "runtime/spec/spec.h"

namespace airlock {
namespace {

constexpr uint64_t kMaxIdInside = 65535;

std::unexpected<Error> FieldError(const std::string& field, const std::string& what) {
  return Fail("invalid spec", field + ": " + what);
}

bool IsHostname(const std::string& h) {
  if (h.empty() || h.size() > 64) return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
  });
}

// a == b, or b lies under a.
bool Covers(const std::string& a, const std::string& b) {
  return a == b || (b.size() > a.size() && b.starts_with(a) && b[a.size()] == '/');
}

// Seeds are copied into the writable layer: a destination under a mount
// (the sandbox's /tmp, an image bind, a host mount) would be hidden by it,
// and one seed inside another would make the result depend on their order.
template <typename CheckDest>
Result<void> ValidateSeeds(const SandboxSpec& spec, const CheckDest& check_dest) {
  if (spec.seeds.size() > kMaxSeeds)
    return FieldError("seeds", "too many: " + std::to_string(spec.seeds.size()) + "; at most " +
                                   std::to_string(kMaxSeeds));
  for (size_t i = 0; i < spec.seeds.size(); ++i) {
    const auto& s = spec.seeds[i];
    std::string f = "seeds[" + std::to_string(i) + "]";
    if (!IsNormalizedAbsolutePath(s.source))
      return FieldError(f + ".source", "must be absolute and normalized (got \"" + s.source + "\")");
    if (s.source == "/") return FieldError(f + ".source", "can't be the host's root");
    TRY(check_dest(f + ".destination", s.destination));
    if (Covers("/tmp", s.destination))
      return FieldError(f + ".destination", "can't be under /tmp, a fresh tmpfs (got \"" + s.destination + "\")");
    for (size_t j = 0; j < spec.image_binds.size(); ++j)
      if (Covers(spec.image_binds[j].destination, s.destination))
        return FieldError(f + ".destination", "\"" + s.destination + "\" would be hidden by image_binds[" +
                                                  std::to_string(j) + "] at " + spec.image_binds[j].destination);
    for (size_t j = 0; j < spec.mounts.size(); ++j)
      if (Covers(spec.mounts[j].destination, s.destination))
        return FieldError(f + ".destination", "\"" + s.destination + "\" would be hidden by mounts[" +
                                                  std::to_string(j) + "] at " + spec.mounts[j].destination);
    for (size_t j = 0; j < i; ++j)
      if (Covers(spec.seeds[j].destination, s.destination) || Covers(s.destination, spec.seeds[j].destination))
        return FieldError(f + ".destination", "\"" + s.destination + "\" overlaps seeds[" + std::to_string(j) +
                                                  "] at " + spec.seeds[j].destination);
    if (s.read_uid == static_cast<uid_t>(-1)) return FieldError(f + ".read_uid", "not set");
    if (s.read_gid == static_cast<gid_t>(-1)) return FieldError(f + ".read_gid", "not set");
    if (s.read_groups.size() > 65536) return FieldError(f + ".read_groups", "more than 65536 groups");
    for (size_t k = 0; k < s.read_groups.size(); ++k)
      if (s.read_groups[k] == static_cast<gid_t>(-1))
        return FieldError(f + ".read_groups[" + std::to_string(k) + "]", "is -1");
  }
  return {};
}

}  // namespace

bool IsNormalizedAbsolutePath(const std::string& path) {
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos) return false;
  if (path == "/") return true;
  if (path.back() == '/') return false;
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    std::string_view part(path.data() + pos, next - pos);
    if (part.empty() || part == "." || part == "..") return false;
    pos = next + 1;
  }
  return true;
}

Result<void> ValidateSpec(const SandboxSpec& spec) {
  if (spec.id.empty() || spec.id.size() > 32 ||
      !std::all_of(spec.id.begin(), spec.id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
      }))
    return FieldError("id", "must be 1-32 characters of [a-z0-9-] (got \"" + spec.id + "\")");
  if (spec.layers.empty()) return FieldError("layers", "an image needs at least one layer");
  for (size_t i = 0; i < spec.layers.size(); ++i)
    if (!IsNormalizedAbsolutePath(spec.layers[i]) || spec.layers[i].find(':') != std::string::npos ||
        spec.layers[i].find(',') != std::string::npos)
      return FieldError("layers[" + std::to_string(i) + "]",
                        "must be an absolute normalized path without ':' or ',' (got \"" +
                            spec.layers[i] + "\")");
  auto check_dest = [](const std::string& field, const std::string& dest) -> Result<void> {
    if (!IsNormalizedAbsolutePath(dest))
      return FieldError(field, "must be absolute and normalized (got \"" + dest + "\")");
    if (dest == "/") return FieldError(field, "can't be the root");
    for (std::string_view reserved : {"/proc", "/dev", "/sys"})
      if (dest == reserved || dest.starts_with(std::string(reserved) + "/"))
        return FieldError(field, "can't be under " + std::string(reserved) + " (got \"" + dest + "\")");
    return {};
  };
  for (size_t i = 0; i < spec.image_binds.size(); ++i) {
    const auto& b = spec.image_binds[i];
    std::string f = "image_binds[" + std::to_string(i) + "]";
    if (!IsNormalizedAbsolutePath(b.source))
      return FieldError(f + ".source", "must be absolute and normalized (got \"" + b.source + "\")");
    TRY(check_dest(f + ".destination", b.destination));
  }
  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    const auto& m = spec.mounts[i];
    std::string f = "mounts[" + std::to_string(i) + "]";
    if (!IsNormalizedAbsolutePath(m.source))
      return FieldError(f + ".source", "must be absolute and normalized (got \"" + m.source + "\")");
    TRY(check_dest(f + ".destination", m.destination));
    if (m.allow_root_owner && m.read_only)
      return FieldError(f + ".allow_root_owner", "only applies to read-write mounts");
    for (size_t j = 0; j < i; ++j)
      if (spec.mounts[j].destination == m.destination)
        return FieldError(f + ".destination", "\"" + m.destination + "\" is already mounted by mounts[" +
                                                  std::to_string(j) + "]");
  }
  TRY(ValidateSeeds(spec, check_dest));
  // Every layer, the upper, every image bind and host mount travels to the
  // sandbox child as one descriptor in one message.
  const size_t fds = spec.layers.size() + 1 + spec.image_binds.size() + spec.mounts.size();
  if (fds > kMaxMountSources)
    return FieldError("mounts", "too many: " + std::to_string(spec.layers.size()) + " layers, " +
                                    std::to_string(spec.image_binds.size()) + " image binds and " +
                                    std::to_string(spec.mounts.size()) + " mounts need " + std::to_string(fds) +
                                    " descriptors; at most " + std::to_string(kMaxMountSources));
  const auto& p = spec.process;
  if (p.argv.empty()) return FieldError("process.argv", "no command given");
  if (p.argv[0].empty()) return FieldError("process.argv[0]", "empty command");
  for (size_t i = 0; i < p.argv.size(); ++i)
    if (p.argv[i].find('\0') != std::string::npos)
      return FieldError("process.argv[" + std::to_string(i) + "]", "contains NUL");
  for (size_t i = 0; i < p.env.size(); ++i) {
    const auto& e = p.env[i];
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0 || e.find('\0') != std::string::npos)
      return FieldError("process.env[" + std::to_string(i) + "]", "must be K=V (got \"" + e + "\")");
  }
  if (!IsNormalizedAbsolutePath(p.cwd))
    return FieldError("process.cwd", "must be absolute and normalized (got \"" + p.cwd + "\")");
  if (p.uid > kMaxIdInside) return FieldError("process.uid", "must be 0-65535 (got " + std::to_string(p.uid) + ")");
  if (p.gid > kMaxIdInside) return FieldError("process.gid", "must be 0-65535 (got " + std::to_string(p.gid) + ")");
  for (size_t i = 0; i < p.groups.size(); ++i)
    if (p.groups[i] > kMaxIdInside)
      return FieldError("process.groups[" + std::to_string(i) + "]", "must be 0-65535");
  if (!spec.from_snapshot.empty()) {
    if (spec.from_snapshot.size() > 64 ||
        spec.from_snapshot.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            std::string::npos ||
        spec.from_snapshot[0] == '.')
      return FieldError("from_snapshot", "must be a pool snapshot name (got \"" + spec.from_snapshot + "\")");
    if (!spec.seeds.empty()) return FieldError("seeds", "not with from_snapshot (the snapshot is the layer)");
  }
  if (spec.net == NetMode::kProxy) {
    if (spec.egress.proxy_port == 0) return FieldError("egress.proxy_port", "must be 1-65535");
    if (spec.egress.transparent && spec.egress.proxy_port == 53)
      return FieldError("egress.proxy_port", "53 is the relay's DNS port in transparent mode");
  } else if (spec.egress.transparent) {
    return FieldError("egress.transparent", "needs network mode proxy");
  }
  if (!IsHostname(spec.hostname))
    return FieldError("hostname", "must be 1-64 characters of [A-Za-z0-9.-] (got \"" + spec.hostname + "\")");
  const auto& l = spec.limits;
  if (l.memory_bytes && *l.memory_bytes < (4u << 20))
    return FieldError("limits.memory", "must be at least 4M (got " + std::to_string(*l.memory_bytes) + " bytes)");
  if (l.pids && (*l.pids < 2 || *l.pids > 4194304))
    return FieldError("limits.pids", "must be 2-4194304 (got " + std::to_string(*l.pids) + ")");
  if (l.cpus && !(std::isfinite(*l.cpus) && *l.cpus >= 0.01 && *l.cpus <= 1024))
    return FieldError("limits.cpus", "must be 0.01-1024 (got " + std::to_string(*l.cpus) + ")");
  if (l.disk_bytes && *l.disk_bytes < (16u << 20))
    return FieldError("limits.disk", "must be at least 16M (got " + std::to_string(*l.disk_bytes) + " bytes)");
  if (l.nofile < 16 || l.nofile > (1u << 20))
    return FieldError("limits.nofile", "must be 16-1048576 (got " + std::to_string(l.nofile) + ")");
  if (spec.timeout.count() < 0) return FieldError("timeout", "must not be negative");
  if (spec.seccomp_profile.empty()) return FieldError("seccomp", "empty profile name");
  return {};
}

}  // namespace airlock
