#include "images/oci/tar_writer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace airlock::images {
namespace {

constexpr size_t kBlock = 512;

size_t Pad(uint64_t size) { return static_cast<size_t>((kBlock - size % kBlock) % kBlock); }

// An octal field of `width` bytes holds width - 1 digits and a NUL.
bool FitsOctal(uint64_t v, size_t width) { return (width - 1) * 3 >= 64 || v < (uint64_t{1} << ((width - 1) * 3)); }

void PutOctal(char* field, size_t width, uint64_t v) {
  if (!FitsOctal(v, width)) v = 0;  // a pax record carries it
  snprintf(field, width, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(v));
}

bool FitsMtime(int64_t t) { return t >= 0 && FitsOctal(static_cast<uint64_t>(t), 12); }

// "<len> key=value\n", len counting the whole record including its own
// digits (which is why it is found by iteration).
std::string PaxRecord(const std::string& key, const std::string& value) {
  size_t rest = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t len = rest + 1;
  while (std::to_string(len).size() + rest != len) len = rest + std::to_string(len).size();
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

// One ustar header block. Names and numbers that don't fit are cut or
// zeroed here; the pax header in front carries them whole.
std::string HeaderBlock(const TarWriter::Header& h) {
  std::string b(kBlock, '\0');
  char* p = b.data();
  memcpy(p, h.name.data(), std::min<size_t>(h.name.size(), 100));
  PutOctal(p + 100, 8, h.mode & 07777);
  PutOctal(p + 108, 8, h.uid);
  PutOctal(p + 116, 8, h.gid);
  PutOctal(p + 124, 12, h.size);
  PutOctal(p + 136, 12, FitsMtime(h.mtime) ? static_cast<uint64_t>(h.mtime) : 0);
  p[156] = h.typeflag;
  memcpy(p + 157, h.linkname.data(), std::min<size_t>(h.linkname.size(), 100));
  memcpy(p + 257, "ustar\0" "00", 8);
  PutOctal(p + 329, 8, h.devmajor);
  PutOctal(p + 337, 8, h.devminor);
  // The checksum is computed with its own field as spaces, then stored as
  // six digits, a NUL and the space already there.
  memset(p + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(p[i]);
  snprintf(p + 148, 8, "%06o", sum);
  return b;
}

// The pax records `h` needs, empty when ustar holds it all.
std::string PaxRecords(const TarWriter::Header& h) {
  std::string pax;
  if (h.name.size() > 100) pax += PaxRecord("path", h.name);
  if (h.linkname.size() > 100) pax += PaxRecord("linkpath", h.linkname);
  if (!FitsOctal(h.size, 12)) pax += PaxRecord("size", std::to_string(h.size));
  if (!FitsOctal(h.uid, 8)) pax += PaxRecord("uid", std::to_string(h.uid));
  if (!FitsOctal(h.gid, 8)) pax += PaxRecord("gid", std::to_string(h.gid));
  if (!FitsMtime(h.mtime)) pax += PaxRecord("mtime", std::to_string(h.mtime));
  return pax;
}

}  // namespace

Result<void> TarWriter::Put(std::string_view bytes) {
  auto emit = [this](std::string_view chunk) -> Result<void> {
    if (!sink_(chunk)) {
      stopped_ = true;
      return Fail("write tar", "the receiver stopped");
    }
    return {};
  };
  if (stopped_) return Fail("write tar", "the receiver stopped");
  while (!bytes.empty()) {
    // Whole chunks of a large write go out without a copy.
    if (buf_.empty() && bytes.size() >= kChunk) {
      TRY(emit(bytes.substr(0, kChunk)));
      bytes.remove_prefix(kChunk);
      continue;
    }
    size_t take = std::min(bytes.size(), kChunk - buf_.size());
    buf_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    if (buf_.size() == kChunk) {
      TRY(emit(buf_));
      buf_.clear();
    }
  }
  return {};
}

Result<void> TarWriter::Flush() {
  if (stopped_) return Fail("write tar", "the receiver stopped");
  if (!buf_.empty() && !sink_(buf_)) {
    stopped_ = true;
    return Fail("write tar", "the receiver stopped");
  }
  buf_.clear();
  return {};
}

Result<void> TarWriter::Complete(const char* what) const {
  if (data_left_ == 0) return {};
  return Fail("write tar", "member \"" + member_ + "\" ended " + std::to_string(data_left_) +
                               " bytes short of its declared size " + std::to_string(data_size_) + " (" + what + ")");
}

Result<void> TarWriter::Begin(const Header& h) {
  TRY(Complete("before the next member"));
  if (h.name.find('\0') != std::string::npos) return Fail("write tar", "NUL byte in member name");
  if (h.linkname.find('\0') != std::string::npos)
    return Fail("write tar", "NUL byte in the link target of member \"" + h.name + "\"");
  // pax has no standard record for device numbers.
  if (!FitsOctal(h.devmajor, 8) || !FitsOctal(h.devminor, 8))
    return Fail("write tar", "device number " + std::to_string(h.devmajor) + ":" + std::to_string(h.devminor) +
                                 " of member \"" + h.name + "\" doesn't fit a tar header");
  const std::string pax = PaxRecords(h);
  if (!pax.empty()) {
    std::string base = h.name;
    while (base.size() > 1 && base.ends_with('/')) base.pop_back();
    base.erase(0, base.rfind('/') + 1);  // npos + 1 == 0
    Header x;
    x.name = ("PaxHeaders/" + base).substr(0, 100);
    x.typeflag = 'x';
    x.size = pax.size();
    x.mtime = FitsMtime(h.mtime) ? h.mtime : 0;
    TRY(Put(HeaderBlock(x)));
    TRY(Put(pax));
    TRY(Put(std::string(Pad(pax.size()), '\0')));
  }
  TRY(Put(HeaderBlock(h)));
  member_ = h.name;
  data_left_ = data_size_ = h.size;
  return {};
}

Result<void> TarWriter::Data(std::string_view data) {
  if (data.size() > data_left_)
    return Fail("write tar", std::to_string(data.size()) + " bytes of data for member \"" + member_ +
                                 "\" with " + std::to_string(data_left_) + " of its declared " +
                                 std::to_string(data_size_) + " bytes left");
  if (data.empty()) return {};
  TRY(Put(data));
  data_left_ -= data.size();
  if (data_left_ == 0) TRY(Put(std::string(Pad(data_size_), '\0')));
  return {};
}

Result<uint64_t> TarWriter::PadMember() {
  const uint64_t padded = data_left_;
  const std::string zeros(static_cast<size_t>(std::min<uint64_t>(padded, kChunk)), '\0');
  while (data_left_ > 0) TRY(Data(std::string_view(zeros).substr(0, std::min<uint64_t>(data_left_, zeros.size()))));
  return padded;
}

Result<void> TarWriter::Directory(const std::string& name, const TarMeta& meta) {
  return Begin(Header{.name = name.ends_with('/') ? name : name + "/",
                      .typeflag = '5',
                      .mode = meta.mode,
                      .mtime = meta.mtime,
                      .uid = meta.uid,
                      .gid = meta.gid});
}

Result<void> TarWriter::Symlink(const std::string& name, const std::string& target, const TarMeta& meta) {
  return Begin(Header{.name = name,
                      .linkname = target,
                      .typeflag = '2',
                      .mode = meta.mode,
                      .mtime = meta.mtime,
                      .uid = meta.uid,
                      .gid = meta.gid});
}

Result<void> TarWriter::BeginFile(const std::string& name, uint64_t size, const TarMeta& meta) {
  return Begin(Header{.name = name,
                      .typeflag = '0',
                      .mode = meta.mode,
                      .size = size,
                      .mtime = meta.mtime,
                      .uid = meta.uid,
                      .gid = meta.gid});
}

Result<void> TarWriter::Finish() {
  TRY(Complete("at the end of the archive"));
  TRY(Put(std::string(2 * kBlock, '\0')));
  return Flush();
}

}  // namespace airlock::images
