// Exporting a stored image as an OCI image archive (issue 8): an OCI image
// layout in a tar — oci-layout, index.json, blobs/sha256/<hex> for the
// manifest, the config and each layer (an uncompressed tar) — plus a
// docker-compatible manifest.json, so `podman load`, `docker load` and
// `airlock image import` all take it. The image name is the index's
// "org.opencontainers.image.ref.name" annotation and the manifest.json
// RepoTag "NAME:latest".
//
// Layer tars are written from the stored layer directories in one canonical
// form, so the same directory always gives the same bytes:
// - depth first, each directory's entries sorted bytewise by their name in
//   the tar; ustar headers, a pax header only for what ustar can't hold
//   (long names, large sizes/ids/times); no user or group names;
// - owners (canonical ids, 0-65535), permission bits (incl. setgid, sticky)
//   and mtimes (whole seconds) as stored (a directory the imported archive
//   didn't list has the time of its import); symlinks as they are; a file with
//   more than one link is written once, its other names as hardlinks to the
//   first name written; FIFOs as FIFOs;
// - an overlay whiteout (0:0 character device) becomes an empty ".wh.NAME"
//   file and an opaque directory ("user.overlay.opaque" or
//   "trusted.overlay.opaque" = "y") a ".wh..wh..opq" right after the
//   directory; these markers are 0600, 0:0, mtime 0;
// - the layer root is written ("./") only when its mode or owner differs
//   from what the importer gives an implicit root (0755, 0:0);
// - other xattrs are not written: the importer never applies any (pax
//   xattrs such as file capabilities are dropped at import), so a stored
//   layer holds none worth carrying. Devices other than whiteouts, sockets,
//   ids over 65535 and stored names beginning ".wh." can't come from an
//   import and are refused with an error naming the path.
// The store keeps a layer's files, not its original tar, so the re-created
// tar has the diff_id recorded at import only when the original was in this
// same form (as an airlock export is). Otherwise the exported config's
// rootfs.diff_ids (and the layer blob's name) are the digests of what is
// written, and the result says which layers changed. Either way an
// export → import → export round trip gives identical bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "images/oci/tar_writer.h"
#include "runtime/core/error.h"

namespace airlock::images {

struct LayerTarInfo {
  std::string digest;  // "sha256:<hex>" of the tar
  uint64_t size = 0;   // bytes
};

// Writes the layer directory `layer_dir` as a canonical layer tar (above)
// to `sink` and returns its digest and size. Errors name the path.
Result<LayerTarInfo> WriteLayerTar(const std::string& layer_dir, const TarSink& sink);

struct ExportedLayer {
  std::string stored_diff_id;  // as recorded at import
  std::string diff_id;         // digest of the tar written (== blob digest)
  uint64_t size = 0;
  bool reproduced() const { return stored_diff_id == diff_id; }
};

struct ExportResult {
  std::string name;
  std::string manifest_digest;
  std::string config_digest;
  std::vector<ExportedLayer> layers;  // bottom first
  uint64_t bytes = 0;                 // of the archive
};

// Writes the stored image `name` of the store at `store_root` as an OCI
// archive to `sink`. Its layers are pinned (PinImageLayer) while they are
// read, so a concurrent `airlock rmi` can't collect them half-way.
Result<ExportResult> ExportImage(const std::string& store_root, const std::string& name,
                                 const TarSink& sink);

// ExportImage into the file `path`, or to stdout for "-" (refused when
// stdout is a terminal). A file is written as a temporary beside it, synced
// and renamed over `path`, so a failed export leaves no partial file.
Result<ExportResult> ExportImageToFile(const std::string& store_root, const std::string& name,
                                       const std::string& path);

}  // namespace airlock::images
