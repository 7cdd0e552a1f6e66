// The connection to airlockd and what every command shares: the global
// options (--socket, --json), turning a gRPC status into the one-line
// message the CLI prints, and the 125 exit for the CLI's own failures.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "airlock/v1/airlock.grpc.pb.h"
#include "harness/client/args.h"

namespace airlock::client {

inline constexpr int kExitFailure = 125;  // airlock's own failure (as `airlock run`)
inline constexpr const char* kDefaultSocket = "/run/airlock/airlockd.sock";

struct Globals {
  std::string socket;  // --socket, else $AIRLOCK_SOCKET, else kDefaultSocket
  bool json = false;   // --json
};

// The options every command accepts, to append to its own specs.
std::vector<OptionSpec> GlobalOptionSpecs();
// Fills `g` from parsed options (and the environment for the socket).
void ApplyGlobals(const ParsedArgs& args, Globals* g);

// A channel to airlockd's unix socket. Nothing connects until the first call.
class Connection {
 public:
  explicit Connection(const std::string& socket);
  v1::Airlock::Stub& stub() { return *stub_; }
  const std::string& socket() const { return socket_; }

 private:
  std::string socket_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Airlock::Stub> stub_;
};

// The message for a failed call: the server's text verbatim (it names the
// field or the step), or, when the daemon can't be reached, a line saying
// so and naming the socket.
std::string StatusMessage(const grpc::Status& status, const std::string& socket);

// Prints "airlock: <message>" on stderr; returns kExitFailure.
int Failed(const std::string& message);

}  // namespace airlock::client
