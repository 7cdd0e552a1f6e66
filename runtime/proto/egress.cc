#include "runtime/proto/egress.h"

#include <arpa/inet.h>

#include "runtime/proto/wire.h"

namespace airlock::proto {

std::string Encode(const EgressOpen& m) {
  wire::Writer w;
  w.U32(m.id);
  w.U32(static_cast<uint32_t>(m.kind));
  w.Str(m.address);
  w.U32(m.port);
  w.Str(m.name);
  return w.Take();
}

std::string Encode(const EgressAnswer& m) {
  wire::Writer w;
  w.U32(m.id);
  return w.Take();
}

std::string Encode(const PortOpen& m) {
  wire::Writer w;
  w.U32(m.id);
  w.U32(m.port);
  return w.Take();
}

std::string Encode(const PortFailed& m) {
  wire::Writer w;
  w.U32(m.id);
  w.I32(m.err);
  return w.Take();
}

Result<EgressOpen> DecodeEgressOpen(std::string_view payload) {
  wire::Reader r(payload, "egress open");
  EgressOpen m;
  m.id = TRY(r.U32("id"));
  uint32_t kind = TRY(r.U32("kind"));
  if (kind != static_cast<uint32_t>(EgressKind::kExplicit) && kind != static_cast<uint32_t>(EgressKind::kTransparent))
    return r.Bad("kind", "unknown (" + std::to_string(kind) + ")");
  m.kind = static_cast<EgressKind>(kind);
  m.address = TRY(r.Str("address", INET6_ADDRSTRLEN));
  m.port = TRY(r.U32("port"));
  m.name = TRY(r.Str("name", kMaxHostName));
  TRY(r.End());
  if (m.port > 65535) return r.Bad("port", "out of range (" + std::to_string(m.port) + ")");
  if (!m.address.empty()) {
    unsigned char buf[sizeof(in6_addr)];
    if (inet_pton(AF_INET, m.address.c_str(), buf) != 1 && inet_pton(AF_INET6, m.address.c_str(), buf) != 1)
      return r.Bad("address", "not an IP address literal");
  }
  if (m.kind == EgressKind::kExplicit && (!m.address.empty() || !m.name.empty() || m.port != 0))
    return r.Bad("kind", "an explicit connection names no destination");
  if (m.kind == EgressKind::kTransparent && (m.address.empty() || m.port == 0))
    return r.Bad("address", "a transparent connection needs its destination");
  return m;
}

Result<EgressAnswer> DecodeEgressAnswer(std::string_view payload) {
  wire::Reader r(payload, "egress answer");
  EgressAnswer m;
  m.id = TRY(r.U32("id"));
  TRY(r.End());
  return m;
}

Result<PortOpen> DecodePortOpen(std::string_view payload) {
  wire::Reader r(payload, "port open");
  PortOpen m;
  m.id = TRY(r.U32("id"));
  m.port = TRY(r.U32("port"));
  TRY(r.End());
  if (m.port == 0 || m.port > 65535) return r.Bad("port", "out of range (" + std::to_string(m.port) + ")");
  return m;
}

Result<PortFailed> DecodePortFailed(std::string_view payload) {
  wire::Reader r(payload, "port failed");
  PortFailed m;
  m.id = TRY(r.U32("id"));
  m.err = TRY(r.I32("err"));
  TRY(r.End());
  return m;
}

}  // namespace airlock::proto
