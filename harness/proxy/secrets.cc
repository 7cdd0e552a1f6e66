#include "harness/proxy/secrets.h"

// Built without exceptions: nlohmann must never throw (this must precede the
// include). Every accessor below is guarded by a type check.
#define JSON_NOEXCEPTION 1

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "runtime/core/unique_fd.h"

namespace airlock::proxy {
namespace {

using nlohmann::json;

constexpr std::string_view kPlaceholderPrefix = "airlock:";
constexpr std::string_view kValueToken = "{value}";

bool IsSecretNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// Headers a secret must never be bound to: they frame the message, name its
// destination or are consumed by the proxy hop itself.
constexpr std::string_view kForbiddenHeaders[] = {
    "Host",       "Content-Length",   "Transfer-Encoding", "Connection", "Proxy-Connection",
    "Keep-Alive", "TE",               "Trailer",           "Upgrade",    "Proxy-Authorization",
    "Expect",     "Proxy-Authenticate"};

// Checks a secret value without ever putting it in the message.
Result<void> CheckValue(std::string_view value, const std::string& field) {
  if (value.size() < kMinSecretValueBytes) {
    return Fail(field, "shorter than " + std::to_string(kMinSecretValueBytes) +
                           " bytes: too short to keep out of responses reliably");
  }
  if (value.size() > kMaxSecretValueBytes) {
    return Fail(field, "longer than " + std::to_string(kMaxSecretValueBytes) + " bytes");
  }
  if (!IsValidFieldValue(value)) {
    return Fail(field,
                "not a valid header value (control characters, or whitespace at either end)");
  }
  if (value.find(kPlaceholderPrefix) != std::string_view::npos) {
    return Fail(field, "contains \"airlock:\", the placeholder prefix");
  }
  return {};
}

// Reads a secret file. The file is the operator's (the daemon's config
// names it), read once at parse time; its content is never echoed.
Result<std::string> ReadValueFile(const std::string& path, const std::string& field) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Errno(field, "open " + path);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return Errno(field, "fstat " + path);
  if (!S_ISREG(st.st_mode)) return Fail(field, path + " is not a regular file");
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(field, "read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxSecretValueBytes + 2) {
      std::fill(out.begin(), out.end(), '\0');
      return Fail(field, path + " is longer than " + std::to_string(kMaxSecretValueBytes) + " bytes");
    }
  }
  std::fill(std::begin(buf), std::end(buf), '\0');
  if (!out.empty() && out.back() == '\n') {
    out.pop_back();
    if (!out.empty() && out.back() == '\r') out.pop_back();
  }
  return out;
}

// Replaces each occurrence of `placeholder` in `value` that is not followed
// by another name character.
void Substitute(std::string& value, std::string_view placeholder, std::string_view secret) {
  size_t pos = 0;
  while ((pos = value.find(placeholder, pos)) != std::string::npos) {
    size_t end = pos + placeholder.size();
    if (end < value.size() && IsSecretNameChar(value[end])) {
      pos = end;
      continue;
    }
    value.replace(pos, placeholder.size(), secret);
    pos += secret.size();
  }
}

std::string FormatValue(std::string_view format, std::string_view value) {
  std::string out(format);
  size_t pos = out.find(kValueToken);
  if (pos != std::string::npos) out.replace(pos, kValueToken.size(), value);
  return out;
}

}  // namespace

bool IsValidSecretName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxSecretNameBytes &&
         std::all_of(name.begin(), name.end(), IsSecretNameChar);
}

std::string Placeholder(std::string_view name) {
  return std::string(kPlaceholderPrefix) + std::string(name);
}

Result<SecretRule> ParseSecretRule(std::string_view name, const nlohmann::json& j) {
  if (!IsValidSecretName(name)) {
    return Fail("secrets", "invalid secret name \"" + Printable(name, 80) + "\" (want [a-z0-9_-]{1,64})");
  }
  std::string base = "secrets." + std::string(name);
  if (!j.is_object()) return Fail(base, std::string("expected an object, got ") + j.type_name());
  static constexpr std::string_view kKeys[] = {"value", "value_file", "hosts", "header", "add", "name"};
  for (const auto& item : j.items()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), item.key()) == std::end(kKeys)) {
      return Fail(base + "." + item.key(), "unknown field");
    }
  }
  // A rule may carry its own name (as the daemon hands rules to the proxy);
  // it must then be the name it is parsed under.
  if (auto name_it = j.find("name"); name_it != j.end()) {
    if (!name_it->is_string() || name_it->get_ref<const std::string&>() != name) {
      return Fail(base + ".name", "does not match the secret's name");
    }
  }
  SecretRule rule;
  rule.name = std::string(name);

  auto value_it = j.find("value");
  auto file_it = j.find("value_file");
  if ((value_it == j.end()) == (file_it == j.end())) {
    return Fail(base, "exactly one of \"value\" and \"value_file\" is required");
  }
  if (value_it != j.end()) {
    // The type name only: a number or object here may still be the secret.
    if (!value_it->is_string()) {
      return Fail(base + ".value", std::string("expected a string, got ") + value_it->type_name());
    }
    rule.value = value_it->get_ref<const std::string&>();
    TRY(CheckValue(rule.value, base + ".value"));
  } else {
    if (!file_it->is_string() || file_it->get_ref<const std::string&>().empty()) {
      return Fail(base + ".value_file", "expected a file path");
    }
    rule.value = TRY(ReadValueFile(file_it->get_ref<const std::string&>(), base + ".value_file"));
    TRY(CheckValue(rule.value, base + ".value_file"));
  }

  auto hosts_it = j.find("hosts");
  if (hosts_it == j.end()) return Fail(base + ".hosts", "missing (a secret must be bound to destinations)");
  if (!hosts_it->is_array() || hosts_it->empty()) {
    return Fail(base + ".hosts", "expected a non-empty array of destinations");
  }
  if (hosts_it->size() > kMaxAllowEntries) {
    return Fail(base + ".hosts", "more than " + std::to_string(kMaxAllowEntries) + " entries");
  }
  size_t i = 0;
  for (const json& h : *hosts_it) {
    std::string at = base + ".hosts[" + std::to_string(i++) + "]";
    if (!h.is_string()) return Fail(at, std::string("expected a string, got ") + h.type_name());
    rule.hosts.push_back(TRY(ParseAllowEntry(h.get_ref<const std::string&>(), at)));
  }

  auto header_it = j.find("header");
  if (header_it == j.end()) return Fail(base + ".header", "missing");
  if (!header_it->is_string() || !IsToken(header_it->get_ref<const std::string&>())) {
    return Fail(base + ".header", "expected a header name");
  }
  rule.header = header_it->get_ref<const std::string&>();
  for (std::string_view forbidden : kForbiddenHeaders) {
    if (HeaderNameEquals(rule.header, forbidden)) {
      return Fail(base + ".header", "a secret can't travel in " + std::string(forbidden));
    }
  }

  if (auto add_it = j.find("add"); add_it != j.end()) {
    if (!add_it->is_string()) {
      return Fail(base + ".add", std::string("expected a string, got ") + add_it->type_name());
    }
    const std::string& format = add_it->get_ref<const std::string&>();
    size_t first = format.find(kValueToken);
    if (first == std::string::npos || format.find(kValueToken, first + 1) != std::string::npos) {
      return Fail(base + ".add", "must contain \"{value}\" exactly once");
    }
    // The format is configuration, not a secret: it may be quoted.
    if (!IsValidFieldValue(format) || format.find(kPlaceholderPrefix) != std::string::npos) {
      return Fail(base + ".add", "\"" + Printable(format, 100) + "\" is not a valid header value");
    }
    rule.mode = SecretRule::kAdd;
    rule.format = format;
  }
  return rule;
}

Result<void> ApplySecrets(RequestHead& out, std::string_view host, uint16_t port,
                          std::span<const SecretRule> rules) {
  // Work on a copy: a refused request must not come back holding a value
  // the caller might log.
  RequestHead req = out;
  std::string_view refused_plain;  // a rule that matched but could not apply over plain HTTP
  for (const SecretRule& rule : rules) {
    if (!MatchesDestination(rule.hosts, host, port)) continue;
    if (!req.tls) {
      if (refused_plain.empty()) refused_plain = rule.name;
      continue;  // never a secret in cleartext: the leak check below refuses it
    }
    if (rule.mode == SecretRule::kAdd) {
      SetHeader(req.headers, rule.header, FormatValue(rule.format, rule.value));
      continue;
    }
    std::string placeholder = Placeholder(rule.name);
    for (Header& h : req.headers) {
      if (HeaderNameEquals(h.name, rule.header)) Substitute(h.value, placeholder, rule.value);
    }
  }

  for (const SecretRule& rule : rules) {
    std::string placeholder = Placeholder(rule.name);
    std::string where;
    if (req.method.find(placeholder) != std::string::npos ||
        req.target.find(placeholder) != std::string::npos ||
        req.version.find(placeholder) != std::string::npos) {
      where = "the request line";
    } else {
      for (const Header& h : req.headers) {
        if (h.name.find(placeholder) != std::string::npos ||
            h.value.find(placeholder) != std::string::npos) {
          where = "header " + Printable(h.name, 80);
          break;
        }
      }
    }
    if (where.empty()) continue;
    std::string msg = "placeholder of '" + rule.name + "' in " + where + " to " +
                      Printable(host, 100) + " refused";
    if (!refused_plain.empty() && MatchesDestination(rule.hosts, host, port)) {
      msg += " (plain HTTP: secrets travel only inside TLS)";
    }
    return Fail("secret placeholder", msg);
  }
  out = std::move(req);
  return {};
}

std::string RedactionFor(std::string_view name, size_t value_size) {
  std::string tag = "[REDACTED:" + std::string(name) + "]";
  if (tag.size() > value_size) return std::string(value_size, '*');
  tag.append(value_size - tag.size(), '*');
  return tag;
}

Redactor::Redactor(std::span<const SecretRule> rules) {
  for (const SecretRule& rule : rules) {
    if (rule.value.empty()) continue;
    bool duplicate = std::any_of(patterns_.begin(), patterns_.end(),
                                 [&](const Pattern& p) { return p.value == rule.value; });
    if (duplicate) continue;
    patterns_.push_back({rule.value, RedactionFor(rule.name, rule.value.size())});
    first_byte_[static_cast<unsigned char>(rule.value[0])] = true;
  }
}

std::string Redactor::Feed(std::string_view chunk) {
  pending_.append(chunk);
  return Process(false);
}

std::string Redactor::Finish() { return Process(true); }

std::string Redactor::Process(bool final) {
  const std::string& buf = pending_;
  const size_t n = buf.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    if (!first_byte_[static_cast<unsigned char>(buf[i])]) {
      size_t j = i + 1;
      while (j < n && !first_byte_[static_cast<unsigned char>(buf[j])]) ++j;
      out.append(buf, i, j - i);
      i = j;
      continue;
    }
    const Pattern* best = nullptr;
    bool partial = false;
    for (const Pattern& p : patterns_) {
      size_t avail = n - i;
      if (avail >= p.value.size()) {
        if (std::memcmp(buf.data() + i, p.value.data(), p.value.size()) == 0 &&
            (!best || p.value.size() > best->value.size())) {
          best = &p;
        }
      } else if (!final && std::memcmp(buf.data() + i, p.value.data(), avail) == 0) {
        partial = true;  // a longer match may still complete here
      }
    }
    if (partial) break;
    if (best) {
      out += best->replacement;
      i += best->value.size();
    } else {
      out += buf[i];
      ++i;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string Redact(std::span<const SecretRule> rules, std::string_view text) {
  Redactor r(rules);
  std::string out = r.Feed(text);
  out += r.Finish();
  return out;
}

}  // namespace airlock::proxy
