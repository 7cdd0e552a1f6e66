// CRIU images are trusted input to a root process (a restore maps their
// memory and registers into new processes and opens the files they name):
// airlockd restores only image sets it made itself. Each set carries a seal,
// airlock-checkpoint.json, with what the restore needs (the id range, init's
// channel key) and the SHA-256 of every image file, authenticated by an
// HMAC-SHA256 under a key only airlockd holds (<state>/checkpoint.key, root
// 0600, made on first use). Any change to an image, an added or a missing
// one, or to the seal, fails verification; what CRIU only writes there (its
// logs, stats-restore) is not sealed.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "runtime/core/error.h"

namespace airlock::daemon {

inline constexpr char kCheckpointSeal[] = "airlock-checkpoint.json";

struct CheckpointSeal {
  std::string sandbox_id;   // the sandbox it was taken of
  uint32_t id_base = 0;     // the id range the images carry
  std::string channel_key;  // Sandbox::ChannelKey() at the dump
  std::map<std::string, std::string> files;  // image file name -> sha256 hex
};

// The daemon's sealing key (32 random bytes): read, or made the first time
// (O_EXCL, so two daemons racing agree). Refused if it isn't a root-owned
// regular file of mode 0600.
Result<std::string> LoadOrCreateSealKey(const std::string& path);

// Hashes every file in the images directory (fd) but CRIU's logs, and
// writes the seal there (0640, like the images).
Result<void> WriteCheckpointSeal(int images_dir_fd, const std::string& key, CheckpointSeal seal);

// Reads the seal and checks it: its HMAC under `key`, then that the
// directory holds exactly the files it names with those digests. The error
// says which check failed (for an API reply: nothing secret in it).
Result<CheckpointSeal> VerifyCheckpointSeal(int images_dir_fd, const std::string& key);

// Whether `name` is what CRIU writes into an images directory beside the
// images and never reads back: its logs, and the restore's statistics (a
// restore writes stats-restore, so a second restore would otherwise find a
// file the seal doesn't name). Not sealed.
bool IsCriuOutput(const std::string& name);

}  // namespace airlock::daemon
