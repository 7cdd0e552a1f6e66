#include "images/oci/tar_reader.h"

#include <climits>
#include <cstring>
#include <vector>

namespace airlock::images {

namespace {

constexpr size_t kBlock = 512;

// Parses a numeric header field: octal text, or GNU base-256 when the high
// bit of the first byte is set.
bool ParseNumber(const char* f, size_t len, uint64_t* out) {
  const auto* u = reinterpret_cast<const unsigned char*>(f);
  if (len > 0 && (u[0] & 0x80)) {
    if (u[0] & 0x40) return false;  // negative
    uint64_t v = u[0] & 0x3f;
    for (size_t i = 1; i < len; ++i) {
      if (v >> 56) return false;
      v = (v << 8) | u[i];
    }
    *out = v;
    return true;
  }
  size_t i = 0;
  while (i < len && (f[i] == ' ' || f[i] == '\0')) ++i;
  uint64_t v = 0;
  bool any = false;
  for (; i < len && f[i] >= '0' && f[i] <= '7'; ++i) {
    if (v >> 60) return false;
    v = v * 8 + static_cast<uint64_t>(f[i] - '0');
    any = true;
  }
  for (; i < len; ++i)
    if (f[i] != ' ' && f[i] != '\0') return false;
  *out = any ? v : 0;
  return true;
}

std::string Field(const char* f, size_t len) { return std::string(f, strnlen(f, len)); }

bool ParseDecimal(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

struct Pax {
  std::optional<std::string> path, linkpath;
  std::optional<uint64_t> size, uid, gid;
  std::optional<int64_t> mtime;
};

// Records are "<len> <key>=<value>\n", len counting the whole record.
Result<void> ParsePax(const std::string& data, Pax* pax, const std::string& where) {
  size_t pos = 0;
  while (pos < data.size()) {
    if (data[pos] == '\0') break;  // some writers pad with NULs
    size_t sp = data.find(' ', pos);
    uint64_t len = 0;
    if (sp == std::string::npos || !ParseDecimal(data.substr(pos, sp - pos), &len) ||
        len < 5 || pos + len > data.size() || data[pos + len - 1] != '\n')
      return Fail("read tar", "malformed pax record in header of " + where);
    std::string rec = data.substr(sp + 1, pos + len - 1 - (sp + 1));
    pos += len;
    size_t eq = rec.find('=');
    if (eq == std::string::npos) return Fail("read tar", "malformed pax record in header of " + where);
    std::string key = rec.substr(0, eq), val = rec.substr(eq + 1);
    auto num = [&](std::optional<uint64_t>* dst) -> Result<void> {
      uint64_t v;
      if (!ParseDecimal(val, &v)) return Fail("read tar", "bad pax " + key + "=\"" + val + "\" for " + where);
      *dst = v;
      return {};
    };
    if (key == "path") {
      pax->path = val;
    } else if (key == "linkpath") {
      pax->linkpath = val;
    } else if (key == "size") {
      TRY(num(&pax->size));
    } else if (key == "uid") {
      TRY(num(&pax->uid));
    } else if (key == "gid") {
      TRY(num(&pax->gid));
    } else if (key == "mtime") {
      // Seconds, possibly with a fraction; the fraction is dropped.
      std::string secs = val.substr(0, val.find('.'));
      bool neg = !secs.empty() && secs[0] == '-';
      uint64_t v;
      if (!ParseDecimal(neg ? secs.substr(1) : secs, &v))
        return Fail("read tar", "bad pax mtime=\"" + val + "\" for " + where);
      pax->mtime = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
    }
    // Other keys (xattrs, atime, ctime, charset …) are not applied.
  }
  return {};
}

bool AllZero(const char* b) {
  for (size_t i = 0; i < kBlock; ++i)
    if (b[i] != 0) return false;
  return true;
}

}  // namespace

Result<void> TarReader::ReadExact(void* buf, size_t n, const char* what) {
  auto* p = static_cast<char*>(buf);
  size_t done = 0;
  while (done < n) {
    size_t got = TRY(src_.Read(p + done, n - done));
    if (got == 0) {
      return Fail("read tar", std::string("truncated archive: stream ends inside ") + what +
                                  (last_name_.empty() ? "" : " (after member \"" + last_name_ + "\")"));
    }
    done += got;
  }
  pos_ += n;
  return {};
}

Result<void> TarReader::Skip(uint64_t n) {
  char buf[1 << 14];
  while (n > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, sizeof buf));
    TRY(ReadExact(buf, chunk, "member data"));
    n -= chunk;
  }
  return {};
}

Result<std::string> TarReader::ReadMeta(uint64_t size, const std::string& what) {
  if (size > kMaxMetaRecord)
    return Fail("read tar", what + " of " + std::to_string(size) + " bytes exceeds the limit of " +
                                std::to_string(kMaxMetaRecord) + " (after member \"" + last_name_ + "\")");
  std::string data(size, '\0');
  TRY(ReadExact(data.data(), size, what.c_str()));
  TRY(Skip((kBlock - size % kBlock) % kBlock));
  return data;
}

Result<size_t> TarReader::ReadData(void* buf, size_t n) {
  if (data_left_ == 0) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, data_left_));
  size_t got = TRY(src_.Read(buf, n));
  if (got == 0)
    return Fail("read tar", "truncated archive: stream ends inside the data of member \"" + last_name_ + "\"");
  data_left_ -= got;
  pos_ += got;
  return got;
}

Result<std::optional<TarEntry>> TarReader::Next() {
  TRY(Skip(data_left_ + pad_));
  data_left_ = pad_ = 0;
  Pax pax;
  std::optional<std::string> gnu_name, gnu_link;
  for (;;) {
    char h[kBlock];
    TRY(ReadExact(h, kBlock, "a header"));
    if (AllZero(h)) {
      // End of archive: two zero blocks (a lone one at the very end is
      // tolerated, as GNU tar does).
      char h2[kBlock];
      size_t got = TRY(src_.Read(h2, kBlock));
      if (got != 0) {
        if (got < kBlock) TRY(ReadExact(h2 + got, kBlock - got, "the end-of-archive marker"));
        else pos_ += kBlock;
        if (!AllZero(h2)) return Fail("read tar", "garbage after a zero block (after member \"" + last_name_ + "\")");
      }
      return std::nullopt;
    }
    uint64_t stored_sum;
    if (!ParseNumber(h + 148, 8, &stored_sum)) return Fail("read tar", "bad header checksum field after member \"" + last_name_ + "\"");
    uint64_t sum = 0;
    for (size_t i = 0; i < kBlock; ++i)
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    if (sum != stored_sum)
      return Fail("read tar", "header checksum mismatch (corrupt or not a tar) after member \"" +
                                  last_name_ + "\"");
    TarEntry e;
    e.typeflag = h[156];
    std::string name = Field(h, 100);
    if (memcmp(h + 257, "ustar", 5) == 0) {
      std::string prefix = Field(h + 345, 155);
      if (!prefix.empty() && memcmp(h + 257, "ustar\0", 6) == 0) name = prefix + "/" + name;
    }
    uint64_t mode, size, uid, gid, mtime;
    if (!ParseNumber(h + 100, 8, &mode) || !ParseNumber(h + 108, 8, &uid) ||
        !ParseNumber(h + 116, 8, &gid) || !ParseNumber(h + 124, 12, &size) ||
        !ParseNumber(h + 136, 12, &mtime))
      return Fail("read tar", "bad numeric field in header of \"" + name + "\"");
    const std::string where = "\"" + (pax.path ? *pax.path : gnu_name ? *gnu_name : name) + "\"";
    switch (e.typeflag) {
      case 'x':
        TRY(ParsePax(TRY(ReadMeta(size, "pax header")), &pax, where));
        continue;
      case 'g':
        (void)TRY(ReadMeta(size, "pax global header"));
        continue;
      case 'L': {
        std::string v = TRY(ReadMeta(size, "GNU long name"));
        gnu_name = v.substr(0, strnlen(v.data(), v.size()));
        continue;
      }
      case 'K': {
        std::string v = TRY(ReadMeta(size, "GNU long link name"));
        gnu_link = v.substr(0, strnlen(v.data(), v.size()));
        continue;
      }
      default:
        break;
    }
    e.name = pax.path ? *pax.path : gnu_name ? *gnu_name : name;
    e.linkname = pax.linkpath ? *pax.linkpath : gnu_link ? *gnu_link : Field(h + 157, 100);
    if (e.name.size() >= PATH_MAX || e.linkname.size() >= PATH_MAX)
      return Fail("read tar", "name longer than PATH_MAX in member \"" + e.name.substr(0, 200) + "...\"");
    if (e.name.find('\0') != std::string::npos || e.linkname.find('\0') != std::string::npos)
      return Fail("read tar", "NUL byte in the name of member \"" + e.name + "\"");
    e.mode = static_cast<uint32_t>(mode & 07777);
    e.uid = pax.uid.value_or(uid);
    e.gid = pax.gid.value_or(gid);
    e.size = pax.size.value_or(size);
    e.mtime = pax.mtime.value_or(static_cast<int64_t>(mtime));
    switch (e.typeflag) {
      case '0': case '\0': case '7': e.type = TarEntry::Type::kFile; break;
      case '1': e.type = TarEntry::Type::kHardlink; break;
      case '2': e.type = TarEntry::Type::kSymlink; break;
      case '3': e.type = TarEntry::Type::kChar; break;
      case '4': e.type = TarEntry::Type::kBlock; break;
      case '5': e.type = TarEntry::Type::kDir; break;
      case '6': e.type = TarEntry::Type::kFifo; break;
      default: e.type = TarEntry::Type::kOther; break;
    }
    // Only regular files carry data; a size on a link or directory header
    // is meaningless and is skipped like data (as GNU tar does for most).
    if (e.type == TarEntry::Type::kHardlink || e.type == TarEntry::Type::kSymlink ||
        e.type == TarEntry::Type::kDir || e.type == TarEntry::Type::kChar ||
        e.type == TarEntry::Type::kBlock || e.type == TarEntry::Type::kFifo) {
      if (e.type != TarEntry::Type::kDir) e.size = 0;
    }
    if (e.type == TarEntry::Type::kDir) e.size = 0;
    e.offset = pos_;
    data_left_ = e.size;
    pad_ = (kBlock - e.size % kBlock) % kBlock;
    last_name_ = e.name;
    return e;
  }
}

}  // namespace airlock::images
