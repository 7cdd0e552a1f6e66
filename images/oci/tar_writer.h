// A streaming tar writer, the counterpart of tar_reader.h: ustar headers,
// with a pax extended header in front of any member whose name, link
// target, size, ids or mtime don't fit ustar. Output goes to a sink in
// chunks of at most kChunk bytes, so the sink can be a file, a socket or a
// gRPC stream with bounded messages. `airlockd` writes Download with it,
// `airlock cp` an upload (harness/client/tree_tar.h), tests hostile archives.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "runtime/core/error.h"

namespace airlock::images {

// Receives the archive's bytes; returning false stops the writer (the
// reader went away) and every later call fails.
using TarSink = std::function<bool(std::string_view)>;

// What the convenience helpers (Directory, Symlink, BeginFile) store
// besides the name and type.
struct TarMeta {
  uint32_t mode = 0644;  // permission bits, incl. setuid/setgid/sticky
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;  // seconds
};

class TarWriter {
 public:
  static constexpr size_t kChunk = 64 * 1024;

  struct Header {
    std::string name;      // as stored: relative, "dir/" for directories
    std::string linkname;  // symlink or hardlink target
    char typeflag = '0';   // '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo
    uint32_t mode = 0644;
    uint64_t size = 0;  // data bytes that follow (Data)
    int64_t mtime = 0;
    uint32_t uid = 0, gid = 0;
    uint32_t devmajor = 0, devminor = 0;
  };

  explicit TarWriter(TarSink sink) : sink_(std::move(sink)) {}

  // Starts a member; exactly `h.size` bytes of data must follow (Data)
  // before the next Begin or Finish, which refuse to go on after a member
  // that ended short. Nothing else is checked beyond what the format can
  // carry (no NUL in names, device numbers that fit): tests build hostile
  // archives with it.
  Result<void> Begin(const Header& h);
  // The current member's data, in any number of pieces. More than the
  // member's declared size is refused.
  Result<void> Data(std::string_view data);
  // Completes the current member with zero bytes and returns how many it
  // added: for a file that shrank after its header promised a size, so the
  // archive stays well-formed. 0 when the member is already complete.
  Result<uint64_t> PadMember();
  // Data bytes the current member still expects.
  uint64_t remaining() const { return data_left_; }

  // A directory (a '/' is appended to the name if missing), a symlink, and
  // the header of a regular file of `size` bytes (its data follows).
  Result<void> Directory(const std::string& name, const TarMeta& meta);
  Result<void> Symlink(const std::string& name, const std::string& target, const TarMeta& meta);
  Result<void> BeginFile(const std::string& name, uint64_t size, const TarMeta& meta);

  // Ends the archive (two zero blocks) and flushes.
  Result<void> Finish();
  // Hands whatever is buffered to the sink, for tests that cut an archive
  // short.
  Result<void> Flush();

 private:
  Result<void> Put(std::string_view bytes);
  // An error naming the current member if it still expects data.
  Result<void> Complete(const char* what) const;

  TarSink sink_;
  std::string buf_;
  bool stopped_ = false;    // the sink said no: nothing more goes out
  std::string member_;      // the current member's name, for errors
  uint64_t data_left_ = 0;  // of the current member
  uint64_t data_size_ = 0;
};

}  // namespace airlock::images
