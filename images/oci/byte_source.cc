#include "images/oci/byte_source.h"

#include <dlfcn.h>
#include <unistd.h>
#include <zlib.h>

#include <vector>

namespace airlock::images {

Result<size_t> FdSource::Read(void* buf, size_t n) {
  if (left_ == 0 || n == 0) return size_t{0};
  if (n > left_) n = static_cast<size_t>(left_);
  for (;;) {
    ssize_t got = pread(fd_, buf, n, pos_);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Errno("read", what_);
    if (got == 0) return Fail("read", what_ + ": truncated (file ends before its declared size)");
    pos_ += got;
    left_ -= static_cast<uint64_t>(got);
    return static_cast<size_t>(got);
  }
}

Result<size_t> HashingSource::Read(void* buf, size_t n) {
  size_t got = TRY(inner_.Read(buf, n));
  sha_.Update(buf, got);
  count_ += got;
  return got;
}

Result<void> Drain(ByteSource& src) {
  std::vector<char> buf(1 << 16);
  while (TRY(src.Read(buf.data(), buf.size())) != 0) {
  }
  return {};
}

bool LooksGzip(const uint8_t* head, size_t n) {
  return n >= 2 && head[0] == 0x1f && head[1] == 0x8b;
}

namespace {

// zlib's entry points, resolved once from libz.so.1.
struct Zlib {
  int (*init2)(z_streamp, int, const char*, int) = nullptr;
  int (*inflate)(z_streamp, int) = nullptr;
  int (*end)(z_streamp) = nullptr;
  int (*reset)(z_streamp) = nullptr;
  const char* (*version)() = nullptr;
};

Result<const Zlib*> LoadZlib() {
  static Zlib z;
  static bool loaded = false;
  if (loaded) return &z;
  void* h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* e = dlerror();
    return Fail("load zlib", std::string("libz.so.1 (needed for gzip layers): ") + (e ? e : "?"));
  }
  z.init2 = reinterpret_cast<decltype(z.init2)>(dlsym(h, "inflateInit2_"));
  z.inflate = reinterpret_cast<decltype(z.inflate)>(dlsym(h, "inflate"));
  z.end = reinterpret_cast<decltype(z.end)>(dlsym(h, "inflateEnd"));
  z.reset = reinterpret_cast<decltype(z.reset)>(dlsym(h, "inflateReset"));
  z.version = reinterpret_cast<decltype(z.version)>(dlsym(h, "zlibVersion"));
  if (!z.init2 || !z.inflate || !z.end || !z.reset || !z.version)
    return Fail("load zlib", "libz.so.1 lacks inflate symbols");
  loaded = true;
  return &z;
}

}  // namespace

struct GzipSource::State {
  const Zlib* z = nullptr;
  z_stream s{};
  bool inited = false;
  bool member_done = false;  // between members (or at the very end)
  bool eof = false;
  std::vector<uint8_t> in = std::vector<uint8_t>(1 << 16);
};

GzipSource::GzipSource(ByteSource& inner, std::string what)
    : inner_(inner), what_(std::move(what)) {}

Result<std::unique_ptr<GzipSource>> GzipSource::Make(ByteSource& inner, std::string what) {
  std::unique_ptr<GzipSource> g(new GzipSource(inner, std::move(what)));
  g->st_ = std::make_unique<State>();
  g->st_->z = TRY(LoadZlib());
  // 16 + MAX_WBITS: gzip framing only (no raw deflate, no zlib header).
  if (g->st_->z->init2(&g->st_->s, 16 + MAX_WBITS, g->st_->z->version(),
                       static_cast<int>(sizeof(z_stream))) != Z_OK)
    return Fail("gzip", g->what_ + ": inflateInit failed");
  g->st_->inited = true;
  return g;
}

GzipSource::~GzipSource() {
  if (st_ && st_->inited) st_->z->end(&st_->s);
}

Result<size_t> GzipSource::Read(void* buf, size_t n) {
  State& st = *st_;
  if (st.eof || n == 0) return size_t{0};
  st.s.next_out = static_cast<Bytef*>(buf);
  st.s.avail_out = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
  for (;;) {
    if (st.s.avail_in == 0) {
      size_t got = TRY(inner_.Read(st.in.data(), st.in.size()));
      if (got == 0) {
        if (st.member_done) {
          st.eof = true;
          return size_t{0};
        }
        return Fail("gzip", what_ + ": truncated compressed stream");
      }
      st.s.next_in = st.in.data();
      st.s.avail_in = static_cast<uInt>(got);
    }
    if (st.member_done) {
      // More bytes after a complete member: another gzip member follows
      // (RFC 1952 allows concatenation).
      st.z->reset(&st.s);
      st.member_done = false;
    }
    int rc = st.z->inflate(&st.s, Z_NO_FLUSH);
    size_t produced = n - st.s.avail_out;
    if (rc == Z_STREAM_END) {
      st.member_done = true;
    } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && st.s.avail_in == 0)) {
      return Fail("gzip", what_ + ": corrupt compressed data" +
                              (st.s.msg ? std::string(" (") + st.s.msg + ")" : ""));
    }
    if (produced > 0) return produced;
  }
}

}  // namespace airlock::images
