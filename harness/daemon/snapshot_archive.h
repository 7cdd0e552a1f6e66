// A snapshot as one archive, to carry it to another host: a tar of these
// members, in this order —
//   layer.tar              the snapshot's writable layer as a canonical
//                          layer tar (images/oci/export.h: whiteouts as
//                          ".wh." entries, canonical owners)
//   criu/<name>...         a full snapshot's process images and their seal
//                          (checkpoint_seal.h), if it is one
//   airlock-snapshot.json  {"format": "airlock-snapshot/1",
//                           "layer": {"digest": "sha256:..", "size": N},
//                           "process_images": {name: {"digest", "size"}},
//                           "snapshot": {...}, "request": HEX}
// Every digest is checked against what was read before anything is kept: a
// corrupt, truncated or padded archive is refused with an error saying so,
// and nothing is left in the pool. Whether imported process images may be
// restored is the seal's business, not the archive's.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "images/oci/byte_source.h"
#include "images/oci/tar_writer.h"
#include "runtime/core/error.h"
#include "runtime/storage/pool.h"

namespace airlock::daemon {

inline constexpr char kSnapshotFormat[] = "airlock-snapshot/1";

// Writes the archive of the pool snapshot at `snapshot_path` (its root; the
// layer is its "upper") to `sink`; `meta` becomes the manifest's
// "snapshot" and `request` (bytes) its "request". `tmp_dir` holds the layer
// tar while its size is unknown (an O_TMPFILE, gone with the call).
// `images_dir`: a full snapshot's process images (empty: none).
Result<void> ExportSnapshotArchive(const std::string& snapshot_path, const std::string& tmp_dir,
                                   const nlohmann::json& meta, const std::string& request,
                                   const std::string& images_dir, const images::TarSink& sink);

struct ImportedSnapshot {
  nlohmann::json meta;  // the manifest's "snapshot"
  std::string request;  // the manifest's "request", decoded
  bool process_images = false;  // some were written to images_dir_fd
};

// Reads an archive from `src` into a new subvolume sandboxes/<staging> of
// `pool` (its "upper" the layer, an empty "work"), and its process images,
// if any, into the empty directory `images_dir_fd` (-1: an archive with
// process images is refused). On any failure the subvolume is deleted
// again (the caller empties the directory). Errors name what was wrong.
Result<ImportedSnapshot> ImportSnapshotArchive(images::ByteSource& src, storage::Pool& pool,
                                               const std::string& staging, int images_dir_fd);

}  // namespace airlock::daemon
