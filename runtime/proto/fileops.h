// What file operations (channel.h, FileOp) send over their data stream.
//
// kStat writes one StatRecord; kList writes one per directory entry (not
// "." or ".."), in readdir order, then closes the stream. Each record is
// {u32 length of the rest} {u32 type} {u32 mode} {u32 uid} {u32 gid}
// {u64 size} {i64 mtime_ns} {string name} {string link_target}
// (strings: u32 length + bytes), little-endian. The stream comes from inside
// a sandbox: DecodeStatRecords bounds every length and refuses anything odd.
// A record's length is at least its fixed part (40 bytes) and at most that
// plus kMaxRecordName + kMaxLinkTarget.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::proto {

enum class FileType : uint32_t { kOther = 0, kRegular = 1, kDirectory = 2, kSymlink = 3 };

struct StatRecord {
  FileType type = FileType::kOther;
  uint32_t mode = 0;  // permission bits (07777)
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  // kList: the entry's name; kStat: the path's last component ("" for "/"
  // and for a path ending in "." or ".."). Never contains '/', never "." or "..".
  std::string name;
  std::string link_target;  // kSymlink only; at most kMaxLinkTarget bytes
};

inline constexpr size_t kMaxRecordName = 255;     // NAME_MAX
inline constexpr size_t kMaxLinkTarget = 4095;    // PATH_MAX - 1
inline constexpr size_t kMaxListEntries = 1000000;

// One record, framed.
std::string EncodeStatRecord(const StatRecord& record);

// Decodes the whole stream `data` (what the data fd delivered until EOF):
// zero or more framed records. At most `max_records`; a truncated or
// malformed record, a name with '/' or NUL or that is "." or "..", a
// link_target on a non-symlink, or an out-of-range type or mode is an error
// naming the record's index.
Result<std::vector<StatRecord>> DecodeStatRecords(std::string_view data, size_t max_records);

}  // namespace airlock::proto
