// Host id ranges for sandboxes (DESIGN decision 1): each sandbox's user
// namespace maps its ids 0–65535 onto 65536 host ids of its own, handed out by
// one allocator shared by every airlock process (daemonless runs and airlockd).
//
// The allocator's state is a small text file, one "owner base count" line per
// range, rewritten atomically (tmp + fsync + rename) under an exclusive flock
// on "<state>.lock" — the lock lives on a separate file because rename()
// replaces the state file's inode, and a lock on the old inode would no longer
// exclude anyone.
//
// The window: bases start at kIdWindowStart (0x10000000) and step by 65536;
// a range always ends at or below kIdWindowEnd (0xFFFE0000). That keeps clear
// of the ids distributions hand out (all below 65536*16, /etc/subuid ranges
// usually starting at 100000) and of the top of the 32-bit id space, where
// (uid_t)-1 means "no id" to the kernel and to chown(2). Ranges listed in
// /etc/subuid and /etc/subgid are avoided wherever they lie.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::storage {

inline constexpr uint32_t kIdRangeSize = 65536;
inline constexpr uint64_t kIdWindowStart = 0x10000000;  // first base handed out
inline constexpr uint64_t kIdWindowEnd = 0xFFFE0000;    // base + count <= this

struct IdRange {
  uint32_t base = 0;
  uint32_t count = kIdRangeSize;
};

struct IdRangeEntry {
  std::string owner;
  IdRange range;
};

class IdAllocator {
 public:
  // state_path is the allocator's state file (its parent directory is created
  // with mode 0700 on first use); subuid and subgid are the files whose ranges
  // must never be handed out (missing files are fine, malformed lines skipped).
  explicit IdAllocator(std::string state_path,
                       std::string subuid = "/etc/subuid",
                       std::string subgid = "/etc/subgid");

  // The range of `owner` (a sandbox id, [A-Za-z0-9._-]{1,64}): the one it
  // already holds, or the lowest free base in the window that overlaps no
  // other owner's range and no /etc/subuid or /etc/subgid entry. A range kept
  // by an owner is returned unchanged even if a subuid entry added later
  // overlaps it: moving a range in use would mis-own its files.
  Result<IdRange> Allocate(const std::string& owner);

  // Gives `owner` exactly `range` (a restore must come back into the range
  // its CRIU images carry). Fails with EBUSY naming the holder if another
  // owner's range overlaps it; the same owner holding it already is fine.
  Result<void> Reserve(const std::string& owner, IdRange range);

  // Without durability, changes survive the death of any process (rename is
  // atomic) but not a host crash: no fsync, which costs milliseconds on a
  // busy disk. For sandboxes that can't outlive the host's uptime (one-shot
  // runs); a range lost that way only leaks ids, never hands them out twice.
  void set_durable(bool durable) { durable_ = durable; }

  // Frees the range of `owner`; an owner without a range is not an error.
  Result<void> Release(const std::string& owner);

  // Every range handed out, sorted by base. A missing state file is an empty
  // list. Reads without the lock: the file is only ever replaced by rename,
  // so a reader sees one whole version.
  Result<std::vector<IdRangeEntry>> List() const;

  // The default state file.
  static constexpr const char* kDefaultStatePath = "/var/lib/airlock/idranges";

 private:
  std::string state_path_;
  std::string subuid_path_;
  std::string subgid_path_;
  bool durable_ = true;
};

}  // namespace airlock::storage
