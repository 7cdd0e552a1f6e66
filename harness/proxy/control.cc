#include "harness/proxy/control.h"

#include "runtime/proto/channel.h"

namespace airlock::proxy {

Result<void> SendControl(int sock, const nlohmann::json& j, std::span<const int> fds) {
  std::string text = j.dump();
  if (text.size() > proto::kMaxMessage - 64) return Fail("proxy control", "message too large");
  int r = proto::SendMessage(sock, proto::Type::kProxyControl, text, fds);
  if (r < 0) return ErrnoValue(-r, "proxy control", "send");
  return {};
}

Result<ControlMessage> ReceiveControl(int sock) {
  proto::Message m = TRY(proto::ReceiveMessage(sock));
  if (m.type != proto::Type::kProxyControl) return Fail("proxy control", "unexpected message type");
  ControlMessage out;
  out.body = nlohmann::json::parse(m.payload, nullptr, false);
  if (out.body.is_discarded() || !out.body.is_object() || !out.body.contains("op") || !out.body["op"].is_string())
    return Fail("proxy control", "not a JSON object with an \"op\"");
  out.fds = std::move(m.fds);
  return out;
}

}  // namespace airlock::proxy
