#include "harness/proxy/sni.h"

#include <cstdint>
#include <set>

#include "harness/proxy/policy.h"

namespace airlock::proxy {
namespace {

using Status = ClientHelloSni::Status;

constexpr uint8_t kContentHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordPayload = 1 << 14;  // TLSPlaintext.length limit
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtEncryptedClientHello = 0xfe0d;
constexpr uint8_t kNameTypeHostName = 0;

ClientHelloSni Outcome(Status s, std::string error = {}) {
  ClientHelloSni r;
  r.status = s;
  r.error = std::move(error);
  return r;
}

// Reads big-endian integers and byte strings, never past its end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  size_t left() const { return data_.size(); }
  bool U8(uint8_t& v) {
    if (data_.size() < 1) return false;
    v = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }
  bool U16(uint16_t& v) {
    if (data_.size() < 2) return false;
    v = static_cast<uint16_t>((static_cast<uint8_t>(data_[0]) << 8) | static_cast<uint8_t>(data_[1]));
    data_.remove_prefix(2);
    return true;
  }
  bool Bytes(size_t n, std::string_view& out) {
    if (data_.size() < n) return false;
    out = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }

 private:
  std::string_view data_;
};

bool IsSniChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

// ServerNameList of RFC 6066 section 3.
ClientHelloSni ParseServerName(std::string_view ext, ClientHelloSni& out) {
  Reader r(ext);
  uint16_t list_len = 0;
  if (!r.U16(list_len) || list_len != r.left() || list_len == 0) {
    return Outcome(Status::kMalformed, "server_name: list length does not match the extension");
  }
  while (r.left() > 0) {
    uint8_t type = 0;
    uint16_t len = 0;
    std::string_view name;
    if (!r.U8(type) || !r.U16(len) || !r.Bytes(len, name)) {
      return Outcome(Status::kMalformed, "server_name: entry runs past the list");
    }
    if (type != kNameTypeHostName) continue;
    if (out.server_name) return Outcome(Status::kMalformed, "server_name: more than one host_name");
    if (name.empty() || name.size() > 255) {
      return Outcome(Status::kMalformed, "server_name: host_name of length " + std::to_string(name.size()));
    }
    for (char c : name) {
      if (!IsSniChar(c)) {
        return Outcome(Status::kMalformed, "server_name: invalid character in host_name \"" +
                                              Printable(name, 100) + "\"");
      }
    }
    out.server_name = std::string(name);
  }
  return out;
}

// The body of a ClientHello (RFC 8446 section 4.1.2; also TLS 1.0-1.2).
ClientHelloSni ParseClientHelloBody(std::string_view body) {
  Reader r(body);
  uint16_t legacy_version = 0;
  std::string_view skip;
  uint8_t session_len = 0, compression_len = 0;
  uint16_t suites_len = 0;
  if (!r.U16(legacy_version) || (legacy_version >> 8) != 3) {
    return Outcome(Status::kMalformed, "ClientHello: bad legacy_version");
  }
  if (!r.Bytes(32, skip)) return Outcome(Status::kMalformed, "ClientHello: truncated random");
  if (!r.U8(session_len) || session_len > 32 || !r.Bytes(session_len, skip)) {
    return Outcome(Status::kMalformed, "ClientHello: bad legacy_session_id");
  }
  if (!r.U16(suites_len) || suites_len < 2 || suites_len % 2 != 0 || !r.Bytes(suites_len, skip)) {
    return Outcome(Status::kMalformed, "ClientHello: bad cipher_suites");
  }
  if (!r.U8(compression_len) || compression_len < 1 || !r.Bytes(compression_len, skip)) {
    return Outcome(Status::kMalformed, "ClientHello: bad legacy_compression_methods");
  }
  ClientHelloSni out;
  out.status = Status::kComplete;
  if (r.left() == 0) return out;  // no extensions at all (pre-TLS 1.2 clients)
  uint16_t ext_total = 0;
  if (!r.U16(ext_total) || ext_total != r.left()) {
    return Outcome(Status::kMalformed, "ClientHello: extensions length does not match the message");
  }
  std::set<uint16_t> seen;
  while (r.left() > 0) {
    uint16_t type = 0, len = 0;
    std::string_view data;
    if (!r.U16(type) || !r.U16(len) || !r.Bytes(len, data)) {
      return Outcome(Status::kMalformed, "ClientHello: extension runs past the list");
    }
    if (!seen.insert(type).second) {
      return Outcome(Status::kMalformed, "ClientHello: extension " + std::to_string(type) + " twice");
    }
    if (type == kExtServerName) {
      ClientHelloSni parsed = ParseServerName(data, out);
      if (parsed.status != Status::kComplete) return parsed;
    } else if (type == kExtEncryptedClientHello) {
      out.encrypted_client_hello = true;
    }
  }
  return out;
}

}  // namespace

ClientHelloSni ParseClientHelloSni(std::string_view bytes) {
  std::string handshake;  // the handshake layer, reassembled across records
  size_t pos = 0;
  while (true) {
    std::string_view rec = bytes.substr(pos);
    // The first record decides whether this is TLS at all; a later record
    // that is not a handshake record interrupts the ClientHello.
    Status wrong = pos == 0 ? Status::kNotTls : Status::kMalformed;
    if (rec.size() >= 1 && static_cast<uint8_t>(rec[0]) != kContentHandshake) {
      return Outcome(wrong, pos == 0 ? "first byte is not a TLS handshake record"
                                    : "non-handshake record inside the ClientHello");
    }
    if (rec.size() >= 2 && rec[1] != 3) {
      return Outcome(wrong, "record version is not 3.x");
    }
    if (rec.size() < kRecordHeader) return Outcome(Status::kNeedMore);
    size_t len = (static_cast<uint8_t>(rec[3]) << 8) | static_cast<uint8_t>(rec[4]);
    if (len == 0) return Outcome(Status::kMalformed, "empty handshake record");
    if (len > kMaxRecordPayload) return Outcome(Status::kMalformed, "record longer than 2^14 bytes");
    std::string_view payload = rec.substr(kRecordHeader, len);  // maybe still partial
    handshake.append(payload);
    if (handshake.size() >= 4) {
      if (static_cast<uint8_t>(handshake[0]) != kHandshakeClientHello) {
        return Outcome(Status::kMalformed, "first handshake message is not a ClientHello");
      }
      size_t msg_len = (static_cast<size_t>(static_cast<uint8_t>(handshake[1])) << 16) |
                       (static_cast<size_t>(static_cast<uint8_t>(handshake[2])) << 8) |
                       static_cast<uint8_t>(handshake[3]);
      if (msg_len > kMaxClientHelloBytes) return Outcome(Status::kMalformed, "ClientHello too large");
      if (handshake.size() >= 4 + msg_len) {
        return ParseClientHelloBody(std::string_view(handshake).substr(4, msg_len));
      }
    }
    if (payload.size() < len) return Outcome(Status::kNeedMore);
    pos += kRecordHeader + len;
  }
}

bool SniMatchesHost(const std::optional<std::string>& server_name, std::string_view host) {
  std::optional<IpAddress> host_ip = ParseIpLiteral(host);
  if (!server_name) return host_ip.has_value();
  if (host_ip || IsIpLiteralLike(host)) {
    std::optional<IpAddress> sni_ip = ParseIpLiteral(*server_name);
    return host_ip && sni_ip && *host_ip == *sni_ip;
  }
  if (IsIpLiteralLike(*server_name)) return false;
  auto a = NormalizeHostName(*server_name);
  auto b = NormalizeHostName(host);
  return a && b && *a == *b;
}

}  // namespace airlock::proxy
