// Extracts one OCI layer tar into an (empty) layer directory, safely:
// nothing is ever resolved through a symlink (every directory is walked
// component by component with O_NOFOLLOW, relative to descriptors), and a
// hostile member is refused with an error naming it.
//
// Policy (issue 8):
// - refused: absolute member names, ".." components, paths through a
//   symlink, char/block devices, unknown entry types, uid/gid > 65535
//   (storage is canonical: ids as the sandbox sees them), setuid on
//   anything and setgid on non-directories (unless strip_setid, which clears
//   them instead), hardlinks whose target is absolute, escapes, or is not
//   already extracted in this layer, and relative symlinks whose target
//   climbs above the layer root from the link's directory.
// - allowed: absolute symlink targets. They are standard in Debian images
//   (/etc/alternatives) and are only ever resolved inside the sandbox's own
//   root; airlock never follows a layer's symlink on the host. FIFOs.
//   setgid directories (group inheritance, no privilege).
// - whiteouts: ".wh.NAME" becomes an overlayfs whiteout (a 0:0 character
//   device, which unprivileged users may create since Linux 5.8) unless NAME
//   is itself in this layer (OCI: a whiteout only hides lower layers);
//   ".wh..wh..opq" sets "user.overlay.opaque"="y" on its directory, the
//   form overlayfs reads with `userxattr` (the runtime mounts overlay inside
//   the sandbox's user namespace). Other ".wh..wh." (aufs metadata) entries
//   are skipped. Pax xattrs (e.g. file capabilities) are not applied.
#pragma once

#include <string>
#include <vector>

#include "images/oci/tar_reader.h"

namespace airlock::images {

struct ExtractOptions {
  bool strip_setid = false;  // clear setuid/setgid bits instead of refusing
  bool chown = true;         // apply the archive's owners (needs root)
};

// Extracts all of `tar` into the directory `rootfd` (O_RDONLY).
// Errors read "import layer: member "NAME": <reason>".
Result<void> ExtractLayer(TarReader& tar, int rootfd, const ExtractOptions& opts);

// Splits a member name into components; refuses absolute names and "..".
// "./a//b/" gives {"a", "b"}; "./" gives {}.
Result<std::vector<std::string>> SplitMemberPath(const std::string& name);

// True if a relative symlink `target` stored in directory `dir` (components
// from the layer root) stays within the root when resolved lexically.
bool SymlinkStaysBeneath(const std::vector<std::string>& dir, const std::string& target);

}  // namespace airlock::images
