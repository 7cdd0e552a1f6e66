// airlock-remote: the airlock CLI's daemon commands (create, exec, ps, cp,
// ...), a separate executable so that `airlock run` never loads gRPC
// (DESIGN decision 8). `airlock CMD ...` execs it with argv[0] "airlock";
// it also runs directly as `airlock-remote CMD ...`.
#include "harness/client/commands.h"

int main(int argc, char** argv) { return airlock::client::Main(argc, argv); }
