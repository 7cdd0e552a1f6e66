#include "harness/daemon/checkpoint_seal.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/core/hex.h"
#include "runtime/core/io.h"
#include "runtime/core/unique_fd.h"

namespace airlock::daemon {

namespace {

constexpr char kFormat[] = "airlock-checkpoint/1";
constexpr size_t kKeyBytes = 32;

std::string Hex(const unsigned char* p, size_t n) {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(p), n));
}

Result<std::string> FileSha256(int dir_fd, const std::string& name) {
  UniqueFd fd(openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Errno("open", "CRIU image " + name);
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return Errno("stat", "CRIU image " + name);
  if (!S_ISREG(st.st_mode)) return Fail("checkpoint seal", "CRIU image " + name + " is not a regular file");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return Fail("sha256", "init");
  std::vector<unsigned char> buf(1 << 20);
  for (;;) {
    ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", "CRIU image " + name);
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return Hex(md, len);
}

// Every file of the directory but CRIU's own output and the seal, hashed.
Result<std::map<std::string, std::string>> HashImages(int images_dir_fd) {
  UniqueFd dir(openat(images_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* listing = dir ? fdopendir(dir.Release()) : nullptr;
  if (listing == nullptr) return Errno("opendir", "CRIU images directory");
  std::vector<std::string> names;
  while (dirent* e = readdir(listing)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name == kCheckpointSeal || IsCriuOutput(name)) continue;
    names.push_back(name);
  }
  closedir(listing);
  std::map<std::string, std::string> out;
  for (const auto& n : names) out[n] = TRY(FileSha256(images_dir_fd, n));
  return out;
}

// What the HMAC covers: every field, in a form with one reading.
std::string Canonical(const CheckpointSeal& s) {
  std::string m = std::string(kFormat) + "\n";
  m += "sandbox_id " + s.sandbox_id + "\n";
  m += "id_base " + std::to_string(s.id_base) + "\n";
  m += "channel_key " + s.channel_key + "\n";
  for (const auto& [name, digest] : s.files) m += "file " + name + " " + digest + "\n";
  return m;
}

std::string Mac(const std::string& key, const std::string& message) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), md, &len);
  return Hex(md, len);
}

bool Printable(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return !s.empty();
}

}  // namespace

bool IsCriuOutput(const std::string& name) {
  return (name.size() > 4 && name.ends_with(".log")) || name == "stats-restore";
}

Result<std::string> LoadOrCreateSealKey(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd && errno == ENOENT) {
    unsigned char key[kKeyBytes];
    if (RAND_bytes(key, sizeof(key)) != 1) return Fail("checkpoint key", "no random bytes from OpenSSL");
    const std::string tmp = path + ".new";
    unlink(tmp.c_str());
    UniqueFd out(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return Errno("create", tmp);
    if (auto wrote = WriteAll(out.get(), std::string_view(reinterpret_cast<const char*>(key), sizeof(key)), tmp);
        !wrote || fsync(out.get()) < 0) {
      unlink(tmp.c_str());
      return wrote ? Errno("fsync", tmp) : std::unexpected(wrote.error());
    }
    // link() fails if another daemon made it meanwhile: then its key counts.
    if (link(tmp.c_str(), path.c_str()) < 0 && errno != EEXIST) {
      int err = errno;
      unlink(tmp.c_str());
      return ErrnoValue(err, "link", path);
    }
    unlink(tmp.c_str());
    fd.Reset(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!fd) return Errno("open", path);
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return Errno("stat", path);
  if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 077) != 0)
    return Fail("checkpoint key", path + " must be a regular file owned by root, mode 0600");
  std::string key(kKeyBytes + 1, '\0');
  ssize_t n = read(fd.get(), key.data(), key.size());
  if (n != static_cast<ssize_t>(kKeyBytes)) return Fail("checkpoint key", path + " is not " + std::to_string(kKeyBytes) + " bytes");
  key.resize(kKeyBytes);
  return key;
}

Result<void> WriteCheckpointSeal(int images_dir_fd, const std::string& key, CheckpointSeal seal) {
  seal.files = TRY(HashImages(images_dir_fd));
  nlohmann::json j = {{"format", kFormat},
                      {"sandbox_id", seal.sandbox_id},
                      {"id_base", seal.id_base},
                      {"channel_key", seal.channel_key},
                      {"files", seal.files},
                      {"hmac_sha256", Mac(key, Canonical(seal))}};
  const std::string text = j.dump(1) + "\n";
  const std::string tmp = std::string(kCheckpointSeal) + ".new";
  unlinkat(images_dir_fd, tmp.c_str(), 0);
  UniqueFd out(openat(images_dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640));
  if (!out) return Errno("create", "checkpoint seal");
  TRY(WriteAll(out.get(), text, "checkpoint seal"));
  if (fsync(out.get()) < 0) return Errno("fsync", "checkpoint seal");
  if (renameat(images_dir_fd, tmp.c_str(), images_dir_fd, kCheckpointSeal) < 0) return Errno("rename", "checkpoint seal");
  return {};
}

Result<CheckpointSeal> VerifyCheckpointSeal(int images_dir_fd, const std::string& key) {
  UniqueFd fd(openat(images_dir_fd, kCheckpointSeal, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Fail("checkpoint seal", "the process images carry no seal (" + std::string(kCheckpointSeal) + ")");
  std::string text;
  char buf[8192];
  for (ssize_t n; (n = read(fd.get(), buf, sizeof(buf))) > 0;) {
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1u << 20)) return Fail("checkpoint seal", "the seal is over 1 MiB");
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  CheckpointSeal seal;
  const bool shaped = j.is_object() && j.value("format", "") == kFormat && j.contains("sandbox_id") &&
                      j["sandbox_id"].is_string() && j.contains("id_base") && j["id_base"].is_number_unsigned() &&
                      j.contains("channel_key") && j["channel_key"].is_string() && j.contains("files") &&
                      j["files"].is_object() && j.contains("hmac_sha256") && j["hmac_sha256"].is_string();
  if (!shaped) return Fail("checkpoint seal", "the seal is not an " + std::string(kFormat) + " document");
  seal.sandbox_id = j["sandbox_id"].get<std::string>();
  const uint64_t base = j["id_base"].get<uint64_t>();
  if (base > UINT32_MAX) return Fail("checkpoint seal", "id_base out of range");
  seal.id_base = static_cast<uint32_t>(base);
  seal.channel_key = j["channel_key"].get<std::string>();
  for (const auto& [name, digest] : j["files"].items()) {
    if (!digest.is_string() || !Printable(name) || name.find('/') != std::string::npos)
      return Fail("checkpoint seal", "the seal names a bad file entry");
    seal.files[name] = digest.get<std::string>();
  }
  const std::string want = Mac(key, Canonical(seal));
  const std::string got = j["hmac_sha256"].get<std::string>();
  if (got.size() != want.size() || CRYPTO_memcmp(got.data(), want.data(), want.size()) != 0)
    return Fail("checkpoint seal", "the seal's HMAC does not verify under this daemon's key (not made here, or altered)");
  auto present = TRY(HashImages(images_dir_fd));
  for (const auto& [name, digest] : seal.files) {
    auto it = present.find(name);
    if (it == present.end()) return Fail("checkpoint seal", "image " + name + " is missing");
    if (it->second != digest) return Fail("checkpoint seal", "image " + name + " was altered (its SHA-256 differs)");
  }
  for (const auto& [name, digest] : present)
    if (!seal.files.count(name)) return Fail("checkpoint seal", "image " + name + " is not in the seal");
  return seal;
}

}  // namespace airlock::daemon
