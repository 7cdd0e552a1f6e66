// Reading an image archive: an OCI image layout (a directory or a tar of
// one) or a `docker save` / `podman save` tar (manifest.json, legacy or
// Docker 25+ layout). A tar is indexed in place, never unpacked: each member
// is read later through a window of the archive file. The result is an
// ImagePlan whose manifest and config digests are already verified; layer
// blobs are verified by the store while it extracts them.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "images/oci/byte_source.h"
#include "runtime/core/unique_fd.h"

namespace airlock::images {

// The parts of an OCI image config a sandbox uses.
struct ImageConfig {
  std::vector<std::string> env;         // "KEY=value"
  std::string workdir;
  std::string user;                     // "name", "uid", "uid:gid" …
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::map<std::string, std::string> labels;
};

// Files of an archive, by the names it uses ("index.json",
// "blobs/sha256/…", "<id>/layer.tar").
class ArchiveFiles {
 public:
  // `path` is a directory (OCI layout, or an unpacked docker save) or an
  // uncompressed tar of either.
  static Result<std::unique_ptr<ArchiveFiles>> Open(const std::string& path);

  bool Exists(const std::string& name) const;
  // A whole member of at most `max` bytes.
  Result<std::string> ReadSmall(const std::string& name, size_t max) const;
  // A stream of a member's bytes (valid while this object lives).
  Result<std::unique_ptr<ByteSource>> Stream(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  struct Member {
    uint64_t offset = 0, size = 0;
  };
  Result<Member> Find(const std::string& name) const;

  std::string path_;
  UniqueFd fd_;                   // the tar, or the directory (O_PATH)
  bool is_dir_ = false;
  std::map<std::string, Member> members_;         // tar: regular files
  std::map<std::string, std::string> links_;      // tar: symlink/hardlink -> target (normalized)
};

struct LayerRef {
  std::string member;       // where the blob is in the archive
  std::string blob_digest;  // "sha256:…" of the blob as stored; empty if the archive names none (legacy docker)
  std::optional<uint64_t> size;  // declared blob size, when known
  std::string diff_id;      // "sha256:…" of the uncompressed tar (from the config)
};

struct ImagePlan {
  std::string ref_name;     // "repo:tag" from the archive, if any
  std::string digest;       // manifest digest; for legacy docker save, the config (image id)
  ImageConfig config;
  std::vector<LayerRef> layers;  // bottom first
};

// Reads the archive's index/manifest and config, verifying their digests.
Result<ImagePlan> ReadImagePlan(const ArchiveFiles& files);

// "sha256:<64 hex>" → true.
bool IsSha256Digest(const std::string& d);

}  // namespace airlock::images
