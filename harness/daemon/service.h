// The airlock.v1 gRPC service: maps each call to the Manager, commands and
// file operations, with the caller taken from the connection's peer
// credentials (listener.h).
#pragma once

#include <functional>
#include <memory>

#include "airlock/v1/airlock.grpc.pb.h"
#include "harness/daemon/manager.h"

namespace airlock::daemon {

// Who is on the other end of a call (auth.h).
using CallerLookup = std::function<std::optional<Caller>(grpc::ServerContext* ctx)>;

std::unique_ptr<v1::Airlock::Service> NewService(Manager* manager, CallerLookup lookup);

}  // namespace airlock::daemon
