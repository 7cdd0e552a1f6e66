#include "runtime/storage/idrange.h"

#include "runtime/core/paths.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>
#include <utility>

#include "runtime/core/unique_fd.h"

namespace airlock::storage {
namespace {

constexpr const char* kStateHeader =
    "# airlock id ranges v1: owner base count\n";

// Half-open interval [lo, hi) of host ids; 64-bit so that start + count from
// a hand-edited subuid file can't wrap.
struct Interval {
  uint64_t lo = 0;
  uint64_t hi = 0;
};

bool ValidOwner(std::string_view s) {
  if (s.empty() || s.size() > 64 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

Result<void> CheckOwner(std::string_view op, const std::string& owner) {
  if (ValidOwner(owner)) return {};
  return Fail(std::string(op), "owner: invalid sandbox id '" + owner +
                                   "' (want [A-Za-z0-9._-]{1,64})");
}

std::optional<uint64_t> ParseU64(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Splits on runs of spaces/tabs.
std::vector<std::string_view> Fields(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// The whole file, or nullopt when it does not exist.
Result<std::optional<std::string>> ReadWholeFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    if (errno == ENOENT) return std::optional<std::string>();
    return Errno("open", path);
  }
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", path);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    // The state holds at most ~61k short lines; anything far beyond that is
    // not ours.
    if (text.size() > (64u << 20)) return ErrnoValue(EFBIG, "read", path);
  }
  return std::optional<std::string>(std::move(text));
}

// "name:start:count" lines of /etc/subuid or /etc/subgid. Whatever doesn't
// parse is skipped: these files belong to the administrator, and a typo
// there must not stop sandboxes (their valid lines are still honoured).
Result<void> ReadSubIds(const std::string& path, std::vector<Interval>& out) {
  auto text = TRY(ReadWholeFile(path));
  if (!text) return {};
  std::string_view rest(*text);
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = Trim(rest.substr(0, nl));
    rest =
        nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    size_t c1 = line.find(':');
    if (c1 == std::string_view::npos) continue;
    size_t c2 = line.find(':', c1 + 1);
    if (c2 == std::string_view::npos ||
        line.find(':', c2 + 1) != std::string_view::npos)
      continue;
    auto start = ParseU64(Trim(line.substr(c1 + 1, c2 - c1 - 1)));
    auto count = ParseU64(Trim(line.substr(c2 + 1)));
    if (!start || !count || *count == 0) continue;
    if (*start > UINT32_MAX || *count > (uint64_t{1} << 32)) continue;
    out.push_back({*start, *start + *count});
  }
  return {};
}

struct ParsedEntry {
  IdRangeEntry entry;
  size_t line = 0;
};

Result<std::vector<IdRangeEntry>> ParseState(const std::string& path,
                                             std::string_view text) {
  constexpr const char* kOp = "parse id range state";
  auto at = [&](size_t line, const std::string& why) {
    return Fail(kOp, path + ":" + std::to_string(line) + ": " + why);
  };
  std::vector<ParsedEntry> parsed;
  size_t lineno = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    ++lineno;
    size_t nl = rest.find('\n');
    // Every write ends with a newline; a last line without one means the file
    // was cut short by something other than us.
    if (nl == std::string_view::npos)
      return at(lineno, "truncated line (no newline)");
    std::string_view line = rest.substr(0, nl);
    rest = rest.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    auto f = Fields(line);
    if (f.size() != 3)
      return at(lineno,
                "want 'owner base count', got '" + std::string(line) + "'");
    std::string owner(f[0]);
    if (!ValidOwner(owner)) return at(lineno, "invalid owner '" + owner + "'");
    auto base = ParseU64(f[1]);
    auto count = ParseU64(f[2]);
    if (!base) return at(lineno, "bad base '" + std::string(f[1]) + "'");
    if (!count || *count == 0)
      return at(lineno, "bad count '" + std::string(f[2]) + "'");
    if (*base < kIdWindowStart || *count > kIdWindowEnd ||
        *base > kIdWindowEnd - *count)
      return at(lineno, "range " + std::to_string(*base) + "+" +
                            std::to_string(*count) + " outside the id window");
    for (const auto& p : parsed)
      if (p.entry.owner == owner)
        return at(lineno, "owner '" + owner + "' also on line " +
                              std::to_string(p.line));
    parsed.push_back(
        {{owner, {static_cast<uint32_t>(*base), static_cast<uint32_t>(*count)}},
         lineno});
  }
  std::sort(parsed.begin(), parsed.end(), [](const auto& a, const auto& b) {
    return a.entry.range.base < b.entry.range.base;
  });
  for (size_t i = 1; i < parsed.size(); ++i) {
    const auto& prev = parsed[i - 1];
    const auto& cur = parsed[i];
    if (uint64_t{prev.entry.range.base} + prev.entry.range.count >
        cur.entry.range.base)
      return at(std::max(prev.line, cur.line),
                "range of '" + cur.entry.owner + "' overlaps that of '" +
                    prev.entry.owner + "' (line " +
                    std::to_string(std::min(prev.line, cur.line)) + ")");
  }
  std::vector<IdRangeEntry> out;
  out.reserve(parsed.size());
  for (auto& p : parsed) out.push_back(std::move(p.entry));
  return out;
}

Result<std::vector<IdRangeEntry>> LoadState(const std::string& path) {
  auto text = TRY(ReadWholeFile(path));
  if (!text) return std::vector<IdRangeEntry>();
  return ParseState(path, *text);
}


// Takes the allocator's lock for one operation; released when the fd closes.
Result<UniqueFd> LockState(const std::string& state_path) {
  TRY(MakeDirs(ParentDir(state_path)));
  std::string lock_path = state_path + ".lock";
  UniqueFd fd(::open(lock_path.c_str(),
                     O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Errno("open", lock_path);
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return Errno("flock", lock_path);
  }
  return fd;
}

Result<void> WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// Replaces the state atomically: readers and a crash see either the old or
// the new file, never a mix. fsync before rename so the new name never points
// at unwritten data; fsync of the directory so the rename itself survives.
Result<void> StoreState(const std::string& path,
                        const std::vector<IdRangeEntry>& entries, bool durable) {
  std::string text = kStateHeader;
  for (const auto& e : entries)
    text += e.owner + " " + std::to_string(e.range.base) + " " +
            std::to_string(e.range.count) + "\n";
  if (!durable) {
    // Rewritten in place under the lock: replacing a file by rename makes
    // ext4 flush it (auto_da_alloc), ~0.4 ms each time. A file this small
    // is one page, which a killed process can't leave half-written; a
    // shorter text is padded with a comment so no stale tail remains.
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (fd) {
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) return Errno("stat", path);
      size_t old_size = static_cast<size_t>(st.st_size);
      if (text.size() <= 4096 && old_size <= 4096) {
        if (text.size() < old_size) {
          // One byte short: an empty line. More: "#", spaces, newline.
          size_t pad = old_size - text.size();
          text += pad == 1 ? std::string("\n") : "#" + std::string(pad - 2, ' ') + "\n";
        }
        ssize_t n = ::pwrite(fd.get(), text.data(), text.size(), 0);
        if (n != static_cast<ssize_t>(text.size())) return Errno("write", path);
        return {};
      }
    }
  }
  std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(),
                       O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                       0600));
    if (!fd) return Errno("open", tmp);
    TRY(WriteAll(fd.get(), text, tmp));
    if (durable && ::fsync(fd.get()) != 0) return Errno("fsync", tmp);
    if (::close(fd.Release()) != 0) return Errno("close", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Errno("rename", tmp + " -> " + path);
  if (!durable) return {};
  std::string dir = ParentDir(path);
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return Errno("open", dir);
  if (::fsync(dfd.get()) != 0) return Errno("fsync", dir);
  return {};
}

uint64_t AlignUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

}  // namespace

IdAllocator::IdAllocator(std::string state_path, std::string subuid,
                         std::string subgid)
    : state_path_(std::move(state_path)),
      subuid_path_(std::move(subuid)),
      subgid_path_(std::move(subgid)) {}

Result<IdRange> IdAllocator::Allocate(const std::string& owner) {
  TRY(CheckOwner("allocate id range", owner));
  UniqueFd lock = TRY(LockState(state_path_));
  auto entries = TRY(LoadState(state_path_));
  for (const auto& e : entries)
    if (e.owner == owner) return e.range;

  std::vector<Interval> taken;
  for (const auto& e : entries)
    taken.push_back({e.range.base, uint64_t{e.range.base} + e.range.count});
  TRY(ReadSubIds(subuid_path_, taken));
  TRY(ReadSubIds(subgid_path_, taken));
  std::sort(taken.begin(), taken.end(),
            [](const Interval& a, const Interval& b) { return a.lo < b.lo; });

  // First fit: sorted by start, so once an interval starts past the
  // candidate's end, every later one does too.
  uint64_t base = kIdWindowStart;
  for (const auto& iv : taken) {
    if (iv.hi <= base) continue;
    if (iv.lo >= base + kIdRangeSize) break;
    base = AlignUp(iv.hi, kIdRangeSize);
  }
  if (base + kIdRangeSize > kIdWindowEnd)
    return ErrnoValue(ENOSPC, "allocate id range",
                      "no free block of 65536 host ids left in [0x10000000, "
                      "0xFFFE0000) for '" +
                          owner + "'");

  IdRange range{static_cast<uint32_t>(base), kIdRangeSize};
  entries.push_back({owner, range});
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.range.base < b.range.base;
  });
  TRY(StoreState(state_path_, entries, durable_));
  return range;
}

Result<void> IdAllocator::Reserve(const std::string& owner, IdRange range) {
  TRY(CheckOwner("reserve id range", owner));
  if (range.base < kIdWindowStart || uint64_t{range.base} + range.count > kIdWindowEnd || range.base % kIdRangeSize)
    return Fail("reserve id range", "base " + std::to_string(range.base) + " is outside airlock's window");
  UniqueFd lock = TRY(LockState(state_path_));
  auto entries = TRY(LoadState(state_path_));
  const uint64_t lo = range.base, hi = lo + range.count;
  for (const auto& e : entries) {
    const uint64_t elo = e.range.base, ehi = elo + e.range.count;
    if (elo < hi && lo < ehi) {
      if (e.owner == owner && elo == lo && ehi == hi) return {};
      return ErrnoValue(EBUSY, "reserve id range",
                        std::to_string(range.base) + " overlaps the range of '" + e.owner + "'");
    }
  }
  entries.push_back({owner, range});
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.range.base < b.range.base; });
  return StoreState(state_path_, entries, durable_);
}

Result<void> IdAllocator::Release(const std::string& owner) {
  TRY(CheckOwner("release id range", owner));
  UniqueFd lock = TRY(LockState(state_path_));
  auto entries = TRY(LoadState(state_path_));
  auto it =
      std::remove_if(entries.begin(), entries.end(),
                     [&](const IdRangeEntry& e) { return e.owner == owner; });
  if (it == entries.end()) return {};
  entries.erase(it, entries.end());
  return StoreState(state_path_, entries, durable_);
}

Result<std::vector<IdRangeEntry>> IdAllocator::List() const {
  return LoadState(state_path_);
}

}  // namespace airlock::storage
