#include "images/build/convert.h"

#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "images/oci/byte_source.h"
#include "images/oci/export.h"
#include "images/oci/layer_extract.h"
#include "images/oci/tar_reader.h"

namespace airlock::images::build {

namespace {

class SocketSource : public ByteSource {
 public:
  SocketSource(int fd, std::function<void(uint64_t)> on_bytes) : fd_(fd), on_bytes_(std::move(on_bytes)) {}
  Result<size_t> Read(void* buf, size_t n) override {
    for (;;) {
      ssize_t got = read(fd_, buf, n);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return Errno("read", "layer stream");
      count_ += static_cast<uint64_t>(got);
      if (on_bytes_ && (count_ - reported_ >= (8u << 20) || got == 0)) {
        reported_ = count_;
        on_bytes_(count_);
      }
      return static_cast<size_t>(got);
    }
  }
  uint64_t count() const { return count_; }

 private:
  int fd_;
  std::function<void(uint64_t)> on_bytes_;
  uint64_t count_ = 0, reported_ = 0;
};

}  // namespace

Result<uint64_t> ConvertTree(const std::string& tree, LayerDraft& draft,
                             const std::function<void(uint64_t)>& on_bytes) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Errno("socketpair", tree);
  UniqueFd reader(sv[0]), writer(sv[1]);
  // The writer runs beside the extractor: the tar never touches the disk.
  Result<LayerTarInfo> written = Fail("convert", "not run");
  std::thread producer([&] {
    written = WriteLayerTar(tree, [&](std::string_view chunk) {
      while (!chunk.empty()) {
        ssize_t n = send(writer.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;  // the extractor stopped
        chunk.remove_prefix(static_cast<size_t>(n));
      }
      return true;
    });
    shutdown(writer.get(), SHUT_WR);
  });
  SocketSource src(reader.get(), on_bytes);
  TarReader tar(src);
  ExtractOptions xo;
  xo.strip_setid = true;
  xo.chown = geteuid() == 0;
  auto extracted = ExtractLayer(tar, draft.fd(), xo);
  Result<void> drained = extracted ? Drain(src) : Result<void>();
  // Unblocks a writer still sending after a failed extraction.
  shutdown(reader.get(), SHUT_RDWR);
  producer.join();
  if (!written) return Fail("convert layer", tree + ": " + written.error().Message());
  if (!extracted) return Fail("convert layer", tree + ": " + extracted.error().Message());
  if (!drained) return Fail("convert layer", tree + ": " + drained.error().Message());
  return src.count();
}

}  // namespace airlock::images::build
