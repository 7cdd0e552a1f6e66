// airlock-init's two ways to run: as a sandbox's PID 1 (InitMain, exec'd by
// the launch child or called by a zygote's child), or as a zygote
// (ZygoteMain, `airlock-init --zygote`, started once by a runtime that
// launches many sandboxes: runtime/launch/zygote.h).
#pragma once

namespace airlock::init {

int InitMain(int argc, char** argv);

// Serves kClone requests on fd kZygoteFd until EOF. Each clone's child runs
// the launch steps and becomes init without an exec.
int ZygoteMain(int argc, char** argv);

}  // namespace airlock::init
