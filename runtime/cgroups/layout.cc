// Detection: which hierarchy carries each controller for the calling process,
// from /proc/self/mountinfo (what is mounted where, v1 controller sets from
// the mount options) and /proc/self/cgroup (the caller's path in each).
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <mutex>

#include "runtime/cgroups/cgroup.h"
#include "runtime/cgroups/internal.h"

namespace airlock::cgroups {
namespace {

using internal::Basename;
using internal::Parent;

struct Mount {
  std::string root;        // the mount's root within the hierarchy
  std::string mountpoint;  // unescaped, without the prefix
  std::string fstype;
  std::vector<std::string> options;  // super options, split at ','
};

struct ProcCgroupLine {
  std::vector<std::string> controllers;  // empty for the v2 line "0::"
  std::string path;
};

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    if (!line.empty()) out.push_back(line);
    if (eol == std::string_view::npos) break;
    text.remove_prefix(eol + 1);
  }
  return out;
}

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (;;) {
    size_t at = s.find(sep);
    out.emplace_back(s.substr(0, at));
    if (at == std::string_view::npos) break;
    s.remove_prefix(at + 1);
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' &&
        s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' &&
        s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
                               (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

Result<std::vector<Mount>> ParseMountinfo(std::string_view text) {
  std::vector<Mount> mounts;
  for (std::string_view line : SplitLines(text)) {
    std::vector<std::string> f = Split(line, ' ');
    // id parent maj:min root mountpoint options [optional...] - fstype source
    // super
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 6 || dash == f.end() || f.end() - dash < 4 ||
        dash - f.begin() < 6)
      return Fail("parse /proc/self/mountinfo",
                  "malformed line: \"" + std::string(line) + "\"");
    const std::string& fstype = dash[1];
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    mounts.push_back(
        Mount{Unescape(f[3]), Unescape(f[4]), fstype, Split(dash[3], ',')});
  }
  return mounts;
}

Result<std::vector<ProcCgroupLine>> ParseProcCgroup(std::string_view text) {
  std::vector<ProcCgroupLine> lines;
  for (std::string_view line : SplitLines(text)) {
    // "hierarchy-id:controller-list:path"; the path may itself hold ':'.
    size_t c1 = line.find(':');
    size_t c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos || line.size() == c2 + 1 ||
        line[c2 + 1] != '/')
      return Fail("parse /proc/self/cgroup",
                  "malformed line: \"" + std::string(line) + "\"");
    ProcCgroupLine l;
    std::string_view ctrls = line.substr(c1 + 1, c2 - c1 - 1);
    if (!ctrls.empty()) l.controllers = Split(ctrls, ',');
    l.path = std::string(line.substr(c2 + 1));
    lines.push_back(std::move(l));
  }
  return lines;
}

bool Contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The caller's directory in a hierarchy mounted at `mountpoint` (prefixed)
// whose mount root is `root`, given its path from /proc/self/cgroup.
// /proc/self/cgroup paths are relative to the cgroup namespace root, mount
// roots to the hierarchy root. Inside a container they can disagree: a
// process moved out of its cgroup namespace root shows "/../x", a bind mount
// of a subtree may not contain the path at all. Then the only directory we
// can trust is the mount root itself, and we fall back to it.
std::string SelfDir(const std::string& mountpoint, const std::string& root,
                    const std::string& path, bool* fell_back) {
  std::string rel;
  bool ok = true;
  if (root == "/") {
    rel = path;
  } else if (path == root || path.starts_with(root + "/")) {
    rel = path.substr(root.size());
  } else {
    ok = false;
  }
  if (ok && (rel == "/.." || rel.find("/../") != std::string::npos ||
             rel.ends_with("/..")))
    ok = false;
  if (ok) {
    std::string dir = mountpoint;
    if (rel != "/" && !rel.empty()) dir += rel;
    if (IsDir(dir)) {
      *fell_back = false;
      return dir;
    }
  }
  *fell_back = true;
  return mountpoint;
}

const std::vector<std::string>& KnownV1Controllers() {
  static const std::vector<std::string> k = {
      "cpu",     "cpuacct", "cpuset",   "memory", "devices",
      "freezer", "net_cls", "net_prio", "blkio",  "perf_event",
      "hugetlb", "pids",    "rdma",     "misc",   "debug"};
  return k;
}

}  // namespace

const char* ControllerName(Controller c) {
  switch (c) {
    case Controller::kMemory:
      return "memory";
    case Controller::kPids:
      return "pids";
    case Controller::kCpu:
      return "cpu";
    case Controller::kFreezer:
      return "freezer";
  }
  return "?";
}

const Hierarchy* Layout::Find(Controller c) const {
  int i = index[static_cast<int>(c)];
  return i < 0 ? nullptr : &hierarchies[static_cast<size_t>(i)];
}

bool Layout::PureV2() const {
  return !hierarchies.empty() &&
         std::all_of(
             hierarchies.begin(), hierarchies.end(),
             [](const Hierarchy& h) { return h.version == Version::kV2; });
}

std::string Layout::Describe() const {
  std::string out;
  for (Controller c : kControllers) {
    out += ControllerName(c);
    out += ": ";
    const Hierarchy* h = Find(c);
    if (!h) {
      out += "unavailable\n";
      continue;
    }
    out += h->version == Version::kV1 ? "v1 " : "v2 ";
    out += h->mountpoint + ", sandboxes under " + h->base_dir;
    if (h->fell_back_to_mount_root)
      out += " (own cgroup not visible; mount root)";
    out += "\n";
  }
  return out;
}

Result<Layout> ParseLayout(std::string_view mountinfo,
                           std::string_view proc_self_cgroup,
                           const std::string& sysfs_prefix) {
  std::vector<Mount> mounts = TRY(ParseMountinfo(mountinfo));
  std::vector<ProcCgroupLine> lines = TRY(ParseProcCgroup(proc_self_cgroup));

  const Mount* v2_mount = nullptr;
  const ProcCgroupLine* v2_line = nullptr;
  for (const Mount& m : mounts)
    if (m.fstype == "cgroup2" && !v2_mount) v2_mount = &m;
  for (const ProcCgroupLine& l : lines)
    if (l.controllers.empty() && !v2_line) v2_line = &l;

  Layout layout;
  // The v2 hierarchy, built on first need: on a hybrid host whose controllers
  // are all on v1 its files are never read.
  std::optional<Hierarchy> v2;
  auto get_v2 = [&]() -> Result<Hierarchy*> {
    if (v2) return &*v2;
    Hierarchy h;
    h.version = Version::kV2;
    h.mountpoint = sysfs_prefix + v2_mount->mountpoint;
    h.self_path = v2_line->path;
    h.self_dir = SelfDir(h.mountpoint, v2_mount->root, v2_line->path,
                         &h.fell_back_to_mount_root);
    // A caller already in an airlock.self leaf (a previous run moved it, or
    // it was forked by one that was) creates sandboxes beside the leaf, not
    // under it: nesting a leaf per run would leave processes in an inner
    // node again.
    h.base_dir = h.self_dir;
    if (h.self_dir != h.mountpoint && Basename(h.self_dir) == kSelfLeafName)
      h.base_dir = Parent(h.self_dir);
    // What the base may hand to its children is what its parent enabled for
    // it: the base's cgroup.controllers, not the root's.
    std::string path = h.base_dir + "/cgroup.controllers";
    std::string text = TRY(internal::ReadFile(path));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
      text.pop_back();
    if (!text.empty()) h.controllers = Split(text, ' ');
    v2 = std::move(h);
    return &*v2;
  };

  // Per controller: nullopt (unavailable), kOnV2, or an index into v1.
  constexpr size_t kOnV2 = static_cast<size_t>(-1);
  std::array<std::optional<size_t>, 4> choice;
  std::vector<Hierarchy> v1;  // v1 hierarchies used, one per mountpoint
  for (Controller c : kControllers) {
    const std::string name = ControllerName(c);
    const Mount* mount = nullptr;
    for (const Mount& m : mounts)
      if (m.fstype == "cgroup" && Contains(m.options, name)) {
        mount = &m;
        break;
      }
    if (mount) {
      const ProcCgroupLine* line = nullptr;
      for (const ProcCgroupLine& l : lines)
        if (Contains(l.controllers, name)) line = &l;
      if (!line)
        return Fail("detect cgroup layout",
                    "v1 " + name + " hierarchy at " + mount->mountpoint +
                        " has no line in /proc/self/cgroup");
      std::string mp = sysfs_prefix + mount->mountpoint;
      auto it = std::find_if(v1.begin(), v1.end(), [&](const Hierarchy& h) {
        return h.mountpoint == mp;
      });
      if (it == v1.end()) {
        Hierarchy h;
        h.version = Version::kV1;
        h.mountpoint = mp;
        for (const std::string& o : mount->options)
          if (Contains(KnownV1Controllers(), o)) h.controllers.push_back(o);
        h.self_path = line->path;
        h.self_dir =
            SelfDir(mp, mount->root, line->path, &h.fell_back_to_mount_root);
        h.base_dir = h.self_dir;
        v1.push_back(std::move(h));
        it = v1.end() - 1;
      }
      choice[static_cast<size_t>(c)] = static_cast<size_t>(it - v1.begin());
      continue;
    }
    if (!v2_mount || !v2_line) continue;
    Hierarchy* h = TRY(get_v2());
    // The cgroup2 freezer is core (cgroup.freeze in every non-root cgroup),
    // never listed in cgroup.controllers.
    if (c == Controller::kFreezer || Contains(h->controllers, name))
      choice[static_cast<size_t>(c)] = kOnV2;
  }

  for (Controller c : {Controller::kMemory, Controller::kPids})
    if (!choice[static_cast<size_t>(c)])
      return Fail("detect cgroup layout",
                  std::string("no ") + ControllerName(c) +
                      " controller: no v1 hierarchy mounts it and no cgroup2 "
                      "mount lists it in the caller's cgroup.controllers");

  // Hierarchies in controller order, each once.
  for (Controller c : kControllers) {
    const std::optional<size_t>& ch = choice[static_cast<size_t>(c)];
    if (!ch) continue;
    const Hierarchy& h = *ch == kOnV2 ? *v2 : v1[*ch];
    auto it = std::find_if(
        layout.hierarchies.begin(), layout.hierarchies.end(),
        [&](const Hierarchy& x) { return x.mountpoint == h.mountpoint; });
    if (it == layout.hierarchies.end()) {
      layout.hierarchies.push_back(h);
      it = layout.hierarchies.end() - 1;
    }
    layout.index[static_cast<size_t>(c)] =
        static_cast<int>(it - layout.hierarchies.begin());
  }
  return layout;
}

Result<Layout> DetectLayout() {
  std::string mountinfo = TRY(internal::ReadFile("/proc/self/mountinfo"));
  std::string self = TRY(internal::ReadFile("/proc/self/cgroup"));
  // Both read every time (they are what decides), parsed only when they
  // changed: a daemon launching sandboxes sees the same two files each time.
  static std::mutex mu;
  static std::string last_mountinfo, last_self;
  static std::optional<Layout> last;
  {
    std::lock_guard lock(mu);
    if (last && mountinfo == last_mountinfo && self == last_self) return *last;
  }
  Layout layout = TRY(ParseLayout(mountinfo, self));
  std::lock_guard lock(mu);
  last_mountinfo = std::move(mountinfo);
  last_self = std::move(self);
  last = layout;
  return layout;
}

}  // namespace airlock::cgroups
