#include "harness/client/rpc.h"

#include <cstdio>
#include <cstdlib>

namespace airlock::client {

std::vector<OptionSpec> GlobalOptionSpecs() { return {{"--socket", 0, true}, {"--json", 0, false}, {"--help", 'h', false}}; }

void ApplyGlobals(const ParsedArgs& args, Globals* g) {
  if (auto s = args.Last("--socket")) g->socket = *s;
  if (g->socket.empty()) {
    const char* env = getenv("AIRLOCK_SOCKET");
    g->socket = env != nullptr && *env ? env : kDefaultSocket;
  }
  if (args.Has("--json")) g->json = true;
}

Connection::Connection(const std::string& socket) : socket_(socket) {
  grpc::ChannelArguments args;
  // File chunks are 64 KiB; a listing or a Run response can be larger.
  args.SetMaxReceiveMessageSize(128 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  channel_ = grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args);
  stub_ = v1::Airlock::NewStub(channel_);
}

std::string StatusMessage(const grpc::Status& status, const std::string& socket) {
  const std::string& msg = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (msg.find("failed to connect") != std::string::npos || msg.find("Connection refused") != std::string::npos ||
       msg.find("No such file") != std::string::npos || msg.find("Permission denied") != std::string::npos))
    return "cannot reach airlockd at " + socket + " (is it running? --socket or AIRLOCK_SOCKET name another): " + msg;
  if (msg.empty()) return "airlockd answered with status " + std::to_string(static_cast<int>(status.error_code()));
  return msg;
}

int Failed(const std::string& message) {
  fprintf(stderr, "airlock: %s\n", message.c_str());
  fflush(stderr);
  return kExitFailure;
}

}  // namespace airlock::client
