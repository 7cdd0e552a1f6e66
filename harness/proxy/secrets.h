// Secret injection: the sandbox holds only placeholders (`airlock:<name>`);
// the proxy swaps the real value in on the way out, and only in the header
// and toward the destinations the secret is bound to, and only inside TLS it
// terminated. Anywhere else a placeholder is refused (a stolen placeholder
// must not travel). Responses that reflect a value back are redacted.
//
// Secret values never appear in an error message or a log: the errors here
// name the secret and the field, never the value.
#pragma once

#include <array>
#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "harness/proxy/http.h"
#include "harness/proxy/policy.h"
#include "runtime/core/error.h"

namespace airlock::proxy {

// Values shorter than this are refused: the redactor replaces every
// occurrence of a value in responses, and a short one would match ordinary
// text (and be guessable anyway).
inline constexpr size_t kMinSecretValueBytes = 8;
inline constexpr size_t kMaxSecretValueBytes = 8 * 1024;
inline constexpr size_t kMaxSecretNameBytes = 64;

struct SecretRule {
  std::string name;   // [a-z0-9_-]{1,64}
  std::string value;  // the real secret
  // Destinations it may travel to: name entries match names, address
  // entries match IP-literal destinations.
  std::vector<AllowEntry> hosts;
  std::string header;  // the only header it may travel in
  enum Mode {
    kSubstitute,  // the placeholder in `header` is replaced by the value
    kAdd,         // `header` is set to `format` with {value} replaced
  } mode = kSubstitute;
  std::string format;  // kAdd: e.g. "Bearer {value}"
};

// True for [a-z0-9_-]{1,64}.
bool IsValidSecretName(std::string_view name);

// The placeholder the sandbox sees for a secret: "airlock:<name>".
std::string Placeholder(std::string_view name);

// Parses {"value": "...", "hosts": ["api.example.com", "*.x.y:443"],
// "header": "Authorization", "add": "Bearer {value}"}. Either "value" or
// "value_file" (read now; one trailing newline stripped). An optional
// "name" must equal `name`. "add" makes the
// rule kAdd with that format (exactly one "{value}"), else kSubstitute.
// Values must be valid header values without "airlock:" in them, 8-8192
// bytes. Errors name the field ("secrets.github.hosts[0] ...") and never the
// value.
Result<SecretRule> ParseSecretRule(std::string_view name, const nlohmann::json& j);

// Applies the rules to a request going to (host, port): for each rule whose
// hosts match, when the request came inside TLS the proxy terminated
// (req.tls), kSubstitute replaces the rule's placeholder in the values of the
// bound header only (a placeholder followed by another name character, as
// "airlock:github2" for "github", is not this rule's), and kAdd sets the
// header (replacing any the client sent). Then, if the placeholder of ANY
// rule is still anywhere in the request line or headers, fails with
// "secret placeholder: placeholder of 'github' in header X-Leak to evil.test
// refused": the caller refuses the request and audits it. On error `req`
// is left as it was. Call it after RemoveHopByHopHeaders and before
// serializing; `host` and `port` are where the proxy is connected (the
// CONNECT target for intercepted TLS), not what the request claims.
Result<void> ApplySecrets(RequestHead& req, std::string_view host, uint16_t port,
                          std::span<const SecretRule> rules);

// The text that stands in for a redacted value: exactly as long as the value,
// so a Content-Length stays right: "[REDACTED:<name>]" padded with '*' to the
// value's length, or all '*' when the value is shorter than that tag.
std::string RedactionFor(std::string_view name, size_t value_size);

// Streaming redaction: replaces every occurrence of a rule's value in a byte
// stream that arrives in arbitrary chunks by RedactionFor(name, size). The
// output has exactly as many bytes as the input. A value split across
// chunks is still caught: Feed holds back the longest tail that could
// begin a value (at most the longest value's size - 1 bytes) until the next
// Feed or Finish. Where values overlap, the leftmost, then longest, wins.
class Redactor {
 public:
  explicit Redactor(std::span<const SecretRule> rules);

  // The redacted bytes that can be released now.
  std::string Feed(std::string_view chunk);
  // The rest, at the end of the stream.
  std::string Finish();
  // How many bytes Feed is holding back.
  size_t pending() const { return pending_.size(); }

 private:
  struct Pattern {
    std::string value;
    std::string replacement;
  };
  std::string Process(bool final);

  std::vector<Pattern> patterns_;
  std::array<bool, 256> first_byte_{};
  std::string pending_;
};

// Redacts a whole string at once (a header value, a buffered body).
std::string Redact(std::span<const SecretRule> rules, std::string_view text);

}  // namespace airlock::proxy
