// The kernel airlock needs: Linux 6.1 or newer with user namespaces, the new
// mount API with idmapped mounts, openat2, overlayfs and pidfds.
#pragma once

#include "runtime/core/error.h"

namespace airlock {

struct KernelFeatures {
  bool time_namespace = false;  // optional: used where present
};

// Checks the running kernel; the error names the missing feature.
Result<KernelFeatures> CheckKernel();

// Parses "6.18.44-foo" into {6, 18}; false if unparsable.
bool ParseKernelRelease(const char* release, int* major, int* minor);

}  // namespace airlock
