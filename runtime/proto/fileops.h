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

// kSearch: the runtime writes one framed SearchSpec to the socket, then reads
// framed SearchRecords until EOF: matches (or file names), then exactly one
// kDone, or one kError (a pattern or glob that doesn't compile) instead.
// Paths are relative to the searched directory.
inline constexpr uint32_t kSearchIgnoreCase = 1u << 0;
inline constexpr uint32_t kSearchFixedStrings = 1u << 1;
inline constexpr uint32_t kSearchFilesWithMatches = 1u << 2;
inline constexpr uint32_t kSearchHidden = 1u << 3;
inline constexpr uint32_t kSearchNoIgnore = 1u << 4;
inline constexpr uint32_t kSearchFlagsMask = (1u << 5) - 1;
inline constexpr size_t kMaxSearchPattern = 64 * 1024;
inline constexpr size_t kMaxSearchGlobs = 256;
inline constexpr size_t kMaxSearchGlob = 4096;
inline constexpr uint32_t kMaxSearchResults = 100000;
inline constexpr uint32_t kMaxSearchLine = 64 * 1024;
// A search writes at most this much text (paths and lines) before it stops
// as truncated: the reply must fit a gRPC message.
inline constexpr size_t kMaxSearchOutput = 8u << 20;

struct SearchSpec {
  uint32_t flags = 0;           // kSearch*
  uint32_t max_results = 1000;  // 1..kMaxSearchResults
  uint32_t max_line_bytes = 500;  // 1..kMaxSearchLine
  uint32_t timeout_ms = 30000;  // 1..600000
  std::string pattern;          // empty: list the files the globs select
  std::vector<std::string> globs;
};

struct SearchRecord {
  enum class Kind : uint32_t { kMatch = 1, kError = 2, kDone = 3 };
  Kind kind = Kind::kMatch;
  std::string path;  // kMatch: relative, no "." / ".." component, never absolute
  uint64_t line = 0;  // kMatch: 1-based; 0 for a file name
  std::string text;  // kMatch: the line (at most max_line_bytes); kError: the message
  uint64_t files_searched = 0;  // kDone
  bool truncated = false, timed_out = false;  // kDone
};

std::string EncodeSearchSpec(const SearchSpec& spec);
// One framed spec at the start of `data`; *used is set to its size. An
// incomplete frame is ENODATA (read more), anything out of range an error
// naming the field.
Result<SearchSpec> DecodeSearchSpec(std::string_view data, size_t* used);
std::string EncodeSearchRecord(const SearchRecord& record);
// Decodes whole records from the front of `data` into *out (at most
// `max_records` in all), leaving a trailing partial record in `data`.
Result<void> DecodeSearchRecords(std::string_view* data, size_t max_records, std::vector<SearchRecord>* out);

}  // namespace airlock::proto
