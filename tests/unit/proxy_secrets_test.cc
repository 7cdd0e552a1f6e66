// Secret injection: parse rules without ever echoing a value, substitute or
// add only for bound destinations and headers inside TLS, refuse stolen
// placeholders, and redact reflected values from streams cut anywhere.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "harness/proxy/secrets.h"

using namespace airlock::proxy;
using nlohmann::json;

namespace {

constexpr const char* kValue = "ghp_S3cretV4lue_0123456789";

SecretRule Rule(const std::string& name, const json& j) {
  auto r = ParseSecretRule(name, j);
  if (!r) FAIL(r.error().Message());
  return *r;
}

std::string RuleError(const std::string& name, const json& j) {
  auto r = ParseSecretRule(name, j);
  if (r) return "<valid>";
  return r.error().Message();
}

RequestHead Inner(const std::string& head) {
  auto r = ParseRequestHead(head, {.allow_origin_form = true, .tls = true});
  if (!r) FAIL(r.error().Message());
  return *r;
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& content) {
    char tmpl[] = "/tmp/airlock-secret-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    close(fd);
    path = tmpl;
  }
  ~TempFile() { unlink(path.c_str()); }
};

std::vector<SecretRule> GithubRules() {
  return {Rule("github", {{"value", kValue}, {"hosts", {"api.github.test", "*.github.test:443"}},
                          {"header", "Authorization"}}),
          Rule("openai", {{"value", "sk-openai-value-9876"}, {"hosts", {"api.openai.test"}},
                          {"header", "Authorization"}, {"add", "Bearer {value}"}})};
}

}  // namespace

TEST_CASE("ParseSecretRule: substitute and add", "[proxy][secrets]") {
  SecretRule s = Rule("github", {{"value", kValue}, {"hosts", {"api.github.test", "*.x.y:443"}},
                                 {"header", "Authorization"}});
  CHECK(s.name == "github");
  CHECK(s.value == kValue);
  CHECK(s.mode == SecretRule::kSubstitute);
  CHECK(s.header == "Authorization");
  REQUIRE(s.hosts.size() == 2);
  CHECK(s.hosts[1].kind == AllowEntry::Kind::kSuffix);
  CHECK(s.hosts[1].port == 443);

  SecretRule a = Rule("open-ai_2", {{"value", kValue}, {"hosts", {"127.0.0.1:8443"}},
                                    {"header", "X-Api-Key"}, {"add", "Bearer {value}"}});
  CHECK(a.mode == SecretRule::kAdd);
  CHECK(a.format == "Bearer {value}");
  CHECK(Placeholder("github") == "airlock:github");
  // The rule may carry its own name, as the daemon passes rules on.
  CHECK(Rule("gh", {{"name", "gh"}, {"value", kValue}, {"hosts", {"a.test"}}, {"header", "X"}}).name == "gh");
  CHECK(RuleError("gh", {{"name", "other"}, {"value", kValue}, {"hosts", {"a.test"}}, {"header", "X"}}) ==
        "secrets.gh.name: does not match the secret's name");
}

TEST_CASE("ParseSecretRule: value_file", "[proxy][secrets]") {
  TempFile f(std::string(kValue) + "\n");
  SecretRule s = Rule("gh", {{"value_file", f.path}, {"hosts", {"a.test"}}, {"header", "Authorization"}});
  CHECK(s.value == kValue);
  TempFile crlf(std::string(kValue) + "\r\n");
  CHECK(Rule("gh", {{"value_file", crlf.path}, {"hosts", {"a.test"}}, {"header", "X"}}).value == kValue);
  TempFile bare(kValue);
  CHECK(Rule("gh", {{"value_file", bare.path}, {"hosts", {"a.test"}}, {"header", "X"}}).value == kValue);
  // Only one newline goes; a second one is an invalid header value.
  TempFile two(std::string(kValue) + "\n\n");
  std::string e = RuleError("gh", {{"value_file", two.path}, {"hosts", {"a.test"}}, {"header", "X"}});
  CHECK_THAT(e, Catch::StartsWith("secrets.gh.value_file: not a valid header value"));
  CHECK(e.find(kValue) == std::string::npos);
  CHECK_THAT(RuleError("gh", {{"value_file", "/nonexistent/secret"}, {"hosts", {"a.test"}}, {"header", "X"}}),
             Catch::StartsWith("secrets.gh.value_file: ENOENT (open /nonexistent/secret)"));
  CHECK_THAT(RuleError("gh", {{"value_file", "/tmp"}, {"hosts", {"a.test"}}, {"header", "X"}}),
             Catch::Contains("not a regular file"));
  TempFile big(std::string(kMaxSecretValueBytes + 10, 'a'));
  CHECK_THAT(RuleError("gh", {{"value_file", big.path}, {"hosts", {"a.test"}}, {"header", "X"}}),
             Catch::Contains("longer than"));
}

TEST_CASE("ParseSecretRule: errors name the field and never the value", "[proxy][secrets]") {
  const json hosts = {"api.github.test"};
  const std::pair<json, const char*> cases[] = {
      {json::array(), "secrets.github: expected an object"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "Authorization"}, {"extra", 1}},
       "secrets.github.extra: unknown field"},
      {{{"hosts", hosts}, {"header", "Authorization"}}, "secrets.github: exactly one of"},
      {{{"value", kValue}, {"value_file", "/x"}, {"hosts", hosts}, {"header", "A"}},
       "secrets.github: exactly one of"},
      {{{"value", 12345678901234}, {"hosts", hosts}, {"header", "A"}},
       "secrets.github.value: expected a string, got number"},
      {{{"value", "short"}, {"hosts", hosts}, {"header", "A"}}, "secrets.github.value: shorter than 8"},
      {{{"value", std::string(kValue) + "\r\nX-Injected: 1"}, {"hosts", hosts}, {"header", "A"}},
       "secrets.github.value: not a valid header value"},
      {{{"value", std::string(kValue) + "\n"}, {"hosts", hosts}, {"header", "A"}},
       "secrets.github.value: not a valid header value"},
      {{{"value", " " + std::string(kValue)}, {"hosts", hosts}, {"header", "A"}},
       "secrets.github.value: not a valid header value"},
      {{{"value", std::string(kValue) + "airlock:x"}, {"hosts", hosts}, {"header", "A"}},
       "secrets.github.value: contains \"airlock:\""},
      {{{"value", std::string(kMaxSecretValueBytes + 1, 'v')}, {"hosts", hosts}, {"header", "A"}},
       "secrets.github.value: longer than"},
      {{{"value", kValue}, {"header", "A"}}, "secrets.github.hosts: missing"},
      {{{"value", kValue}, {"hosts", json::array()}, {"header", "A"}}, "secrets.github.hosts: expected a non-empty"},
      {{{"value", kValue}, {"hosts", "a.test"}, {"header", "A"}}, "secrets.github.hosts: expected a non-empty"},
      {{{"value", kValue}, {"hosts", {"a.test", 5}}, {"header", "A"}}, "secrets.github.hosts[1]: expected a string"},
      {{{"value", kValue}, {"hosts", {"*.x*"}}, {"header", "A"}}, "secrets.github.hosts[0] (\"*.x*\"): '*'"},
      {{{"value", kValue}, {"hosts", {"ok.test", "bad..test"}}, {"header", "A"}},
       "secrets.github.hosts[1] (\"bad..test\"): empty label"},
      {{{"value", kValue}, {"hosts", hosts}}, "secrets.github.header: missing"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "Bad Header"}}, "secrets.github.header: expected a header name"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", 7}}, "secrets.github.header: expected a header name"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "host"}}, "secrets.github.header: a secret can't travel in Host"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "Content-Length"}}, "secrets.github.header: a secret can't travel in Content-Length"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "Proxy-Authorization"}},
       "secrets.github.header: a secret can't travel in Proxy-Authorization"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "A"}, {"add", "Bearer"}},
       "secrets.github.add: must contain \"{value}\" exactly once"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "A"}, {"add", "{value}{value}"}},
       "secrets.github.add: must contain \"{value}\" exactly once"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "A"}, {"add", "B {value}\r\nX: y"}},
       "secrets.github.add: \"B {value}\\x0d\\x0aX: y\" is not a valid header value"},
      {{{"value", kValue}, {"hosts", hosts}, {"header", "A"}, {"add", 3}}, "secrets.github.add: expected a string"},
  };
  for (const auto& [j, why] : cases) {
    INFO(j.dump());
    std::string msg = RuleError("github", j);
    CHECK_THAT(msg, Catch::StartsWith(why));
    CHECK(msg.find(kValue) == std::string::npos);
    CHECK(msg.find("12345678901234") == std::string::npos);
  }
  CHECK_THAT(RuleError("GitHub", {{"value", kValue}, {"hosts", hosts}, {"header", "A"}}),
             Catch::Contains("invalid secret name \"GitHub\""));
  CHECK_THAT(RuleError("", {}), Catch::Contains("invalid secret name"));
  CHECK_THAT(RuleError(std::string(65, 'a'), {}), Catch::Contains("invalid secret name"));
  CHECK(IsValidSecretName(std::string(64, 'a')));
  CHECK(IsValidSecretName("a-b_c9"));
  CHECK_FALSE(IsValidSecretName("a.b"));
  CHECK_FALSE(IsValidSecretName("a:b"));
}

TEST_CASE("ApplySecrets: substitution in the bound header, to bound hosts", "[proxy][secrets]") {
  auto rules = GithubRules();
  RequestHead req = Inner("GET /user HTTP/1.1\r\nHost: api.github.test\r\n"
                          "authorization: token airlock:github\r\nAccept: */*\r\n\r\n");
  REQUIRE(ApplySecrets(req, "api.github.test", 443, rules));
  CHECK(*GetHeader(req.headers, "Authorization") == std::string("token ") + kValue);
  CHECK(req.headers[1].name == "authorization");  // the name as sent

  // Suffix entry with port: any host below github.test on 443 only.
  RequestHead sub = Inner("GET / HTTP/1.1\r\nHost: x.github.test\r\nAuthorization: airlock:github\r\n\r\n");
  REQUIRE(ApplySecrets(sub, "X.GitHub.test.", 443, rules));
  CHECK(*GetHeader(sub.headers, "Authorization") == kValue);

  // Every occurrence in the bound header, but not a longer name's placeholder.
  auto more = rules;
  more.push_back(Rule("github2", {{"value", "second-value-abcdef"}, {"hosts", {"api.github.test"}},
                                  {"header", "Authorization"}}));
  RequestHead both = Inner("GET / HTTP/1.1\r\nHost: api.github.test\r\n"
                           "Authorization: airlock:github,airlock:github2 airlock:github\r\n\r\n");
  REQUIRE(ApplySecrets(both, "api.github.test", 443, more));
  CHECK(*GetHeader(both.headers, "Authorization") ==
        std::string(kValue) + ",second-value-abcdef " + kValue);

  // No placeholder anywhere: untouched, fine.
  RequestHead plain = Inner("GET / HTTP/1.1\r\nHost: api.github.test\r\nAuthorization: mine\r\n\r\n");
  REQUIRE(ApplySecrets(plain, "api.github.test", 443, rules));
  CHECK(*GetHeader(plain.headers, "Authorization") == "mine");
  REQUIRE(ApplySecrets(plain, "anything.test", 443, {}));
}

TEST_CASE("ApplySecrets: add sets the header, replacing the client's", "[proxy][secrets]") {
  auto rules = GithubRules();
  RequestHead req = Inner("POST /v1/x HTTP/1.1\r\nHost: api.openai.test\r\nAuthorization: Bearer fake\r\n"
                          "X-A: 1\r\nauthorization: again\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(ApplySecrets(req, "api.openai.test", 443, rules));
  CHECK(CountHeader(req.headers, "Authorization") == 1);
  CHECK(*GetHeader(req.headers, "Authorization") == "Bearer sk-openai-value-9876");
  RequestHead none = Inner("GET / HTTP/1.1\r\nHost: api.openai.test\r\n\r\n");
  REQUIRE(ApplySecrets(none, "api.openai.test", 443, rules));
  CHECK(*GetHeader(none.headers, "Authorization") == "Bearer sk-openai-value-9876");
  // Not for other hosts.
  RequestHead other = Inner("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
  REQUIRE(ApplySecrets(other, "evil.test", 443, rules));
  CHECK_FALSE(GetHeader(other.headers, "Authorization"));
}

TEST_CASE("ApplySecrets: stolen placeholders are refused", "[proxy][secrets]") {
  auto rules = GithubRules();
  auto refuse = [&](const std::string& head, const std::string& host, uint16_t port, bool tls = true) {
    auto parsed = ParseRequestHead(head, {.allow_origin_form = true, .tls = tls});
    REQUIRE(parsed);
    RequestHead req = *parsed;
    RequestHead before = req;
    auto r = ApplySecrets(req, host, port, rules);
    REQUIRE(!r);
    std::string msg = r.error().Message();
    CHECK(msg.find(kValue) == std::string::npos);
    // A refused request is left as it was: no value in it for a log to catch.
    CHECK(SerializeRequestHead(req, true) == SerializeRequestHead(before, true));
    return msg;
  };
  // To a host the secret is not bound to.
  CHECK(refuse("GET / HTTP/1.1\r\nHost: evil.test\r\nAuthorization: airlock:github\r\n\r\n", "evil.test",
               443) == "secret placeholder: placeholder of 'github' in header Authorization to evil.test refused");
  // In another header of a bound request (the bound header was substituted first).
  CHECK(refuse("GET / HTTP/1.1\r\nHost: api.github.test\r\nAuthorization: airlock:github\r\n"
               "X-Leak: airlock:github\r\n\r\n",
               "api.github.test", 443) ==
        "secret placeholder: placeholder of 'github' in header X-Leak to api.github.test refused");
  // In the request line.
  CHECK_THAT(refuse("GET /?t=airlock:github HTTP/1.1\r\nHost: api.github.test\r\n\r\n", "api.github.test", 443),
             Catch::Contains("placeholder of 'github' in the request line"));
  // A suffix bound to 443 only.
  CHECK_THAT(refuse("GET / HTTP/1.1\r\nHost: x.github.test:8443\r\nAuthorization: airlock:github\r\n\r\n",
                    "x.github.test", 8443),
             Catch::Contains("placeholder of 'github'"));
  // Look-alike hosts.
  CHECK_THAT(refuse("GET / HTTP/1.1\r\nHost: api.github.test.evil\r\nAuthorization: airlock:github\r\n\r\n",
                    "api.github.test.evil", 443),
             Catch::Contains("to api.github.test.evil"));
  CHECK_THAT(refuse("GET / HTTP/1.1\r\nHost: github.test\r\nAuthorization: airlock:github\r\n\r\n", "github.test",
                    443),
             Catch::Contains("'github'"));
  // A placeholder of a kAdd secret travels nowhere either.
  CHECK_THAT(refuse("GET / HTTP/1.1\r\nHost: api.openai.test\r\nX-Key: airlock:openai\r\n\r\n", "api.openai.test",
                    443),
             Catch::Contains("placeholder of 'openai' in header X-Key"));
  // Embedded in a longer value, and as a prefix of an unknown name.
  CHECK_THAT(refuse("GET / HTTP/1.1\r\nHost: evil.test\r\nCookie: a=1; s=airlock:githubX\r\n\r\n", "evil.test",
                    443),
             Catch::Contains("in header Cookie"));
  // Downgrade: plain HTTP to the bound host never carries the secret.
  CHECK(refuse("GET http://api.github.test/ HTTP/1.1\r\nHost: api.github.test\r\n"
               "Authorization: airlock:github\r\n\r\n",
               "api.github.test", 80, false) ==
        "secret placeholder: placeholder of 'github' in header Authorization to api.github.test refused "
        "(plain HTTP: secrets travel only inside TLS)");
  // The host in the message is escaped.
  RequestHead req = Inner("GET / HTTP/1.1\r\nHost: a.test\r\nX: airlock:github\r\n\r\n");
  auto r = ApplySecrets(req, "evil\r\n.test", 443, rules);
  REQUIRE(!r);
  CHECK_THAT(r.error().Message(), Catch::Contains("to evil\\x0d\\x0a.test refused"));

  // Over plain HTTP a kAdd rule adds nothing (and nothing leaks).
  auto pr = ParseRequestHead("GET http://api.openai.test/ HTTP/1.1\r\n\r\n");
  REQUIRE(pr);
  REQUIRE(ApplySecrets(*pr, "api.openai.test", 80, rules));
  CHECK_FALSE(GetHeader(pr->headers, "Authorization"));
}

TEST_CASE("ApplySecrets: IP-literal destinations match address entries", "[proxy][secrets]") {
  std::vector<SecretRule> rules = {Rule(
      "local", {{"value", kValue}, {"hosts", {"127.0.0.1:8443"}}, {"header", "X-Token"}})};
  RequestHead req = Inner("GET / HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nX-Token: airlock:local\r\n\r\n");
  REQUIRE(ApplySecrets(req, "127.0.0.1", 8443, rules));
  CHECK(*GetHeader(req.headers, "X-Token") == kValue);
  RequestHead other = Inner("GET / HTTP/1.1\r\nHost: 127.0.0.1:8444\r\nX-Token: airlock:local\r\n\r\n");
  CHECK_FALSE(ApplySecrets(other, "127.0.0.1", 8444, rules));
  CHECK_FALSE(ApplySecrets(other, "2130706433", 8443, rules));
}

TEST_CASE("RedactionFor: same length as the value", "[proxy][secrets]") {
  CHECK(RedactionFor("github", 30) == "[REDACTED:github]" + std::string(13, '*'));
  CHECK(RedactionFor("github", 17) == "[REDACTED:github]");
  CHECK(RedactionFor("github", 9) == std::string(9, '*'));
}

TEST_CASE("Redactor: whole, chunked, byte by byte", "[proxy][secrets]") {
  auto rules = GithubRules();
  const std::string text = std::string("{\"token\":\"") + kValue + "\",\"k\":\"sk-openai-value-9876\"," +
                           "\"again\":\"" + kValue + kValue + "\", \"near\":\"ghp_S3cretV4lue_01234\"}";
  const std::string expected = std::string("{\"token\":\"") + RedactionFor("github", strlen(kValue)) +
                               "\",\"k\":\"" + RedactionFor("openai", 20) + "\"," + "\"again\":\"" +
                               RedactionFor("github", strlen(kValue)) + RedactionFor("github", strlen(kValue)) +
                               "\", \"near\":\"ghp_S3cretV4lue_01234\"}";
  CHECK(Redact(rules, text) == expected);
  CHECK(Redact(rules, text).size() == text.size());

  // Byte by byte: the held-back tail never exceeds the longest value - 1.
  Redactor r(rules);
  std::string out;
  for (char c : text) {
    out += r.Feed(std::string_view(&c, 1));
    CHECK(r.pending() < strlen(kValue));
  }
  out += r.Finish();
  CHECK(out == expected);

  // Every split point of two chunks.
  for (size_t i = 0; i <= text.size(); ++i) {
    Redactor r2(rules);
    std::string o = r2.Feed(std::string_view(text).substr(0, i));
    o += r2.Feed(std::string_view(text).substr(i));
    o += r2.Finish();
    REQUIRE(o == expected);
  }

  // A partial value at the end of the stream is released as it is.
  Redactor tail(rules);
  std::string t = tail.Feed("abc ghp_S3cret");
  CHECK(t == "abc ");
  CHECK(tail.Finish() == "ghp_S3cret");
  // A partial that turns out not to match is released with the next chunk.
  Redactor miss(rules);
  CHECK(miss.Feed("x ghp_S3") == "x ");
  CHECK(miss.Feed("Z rest") == "ghp_S3Z rest");
  CHECK(miss.Finish().empty());
  // Nothing to redact: no hold-back at all.
  Redactor empty(std::span<const SecretRule>{});
  CHECK(empty.Feed("ghp_S3") == "ghp_S3");
}

TEST_CASE("Redactor: overlapping values, leftmost-longest", "[proxy][secrets]") {
  std::vector<SecretRule> rules = {
      Rule("short", {{"value", "abcdefgh"}, {"hosts", {"a.test"}}, {"header", "X"}}),
      Rule("long", {{"value", "abcdefghijkl"}, {"hosts", {"a.test"}}, {"header", "X"}}),
      Rule("mid", {{"value", "ghijklmnop"}, {"hosts", {"a.test"}}, {"header", "X"}})};
  const std::string r_short = RedactionFor("short", 8), r_long = RedactionFor("long", 12);
  CHECK(Redact(rules, "..abcdefghijkl..") == ".." + r_long + "..");
  CHECK(Redact(rules, "..abcdefghij..") == ".." + r_short + "ij..");
  CHECK(Redact(rules, "abcdefgh") == r_short);
  // Byte by byte gives the same.
  for (const std::string text : {"..abcdefghijkl..", "..abcdefghij..", "abcdefgh", "xxabcdefghijklmnop"}) {
    Redactor r(rules);
    std::string out;
    for (char c : text) out += r.Feed(std::string_view(&c, 1));
    out += r.Finish();
    CHECK(out == Redact(rules, text));
  }
}

TEST_CASE("Redactor: random streams never leak a value", "[proxy][secrets]") {
  auto rules = GithubRules();
  std::mt19937 rng(12345);
  const std::string alphabet = "ghp_S3cretV4lue_0123456789sk-openai-xyz \n";
  for (int round = 0; round < 200; ++round) {
    std::string text;
    int pieces = static_cast<int>(rng() % 20);
    for (int p = 0; p < pieces; ++p) {
      switch (rng() % 4) {
        case 0: text += kValue; break;
        case 1: text += "sk-openai-value-9876"; break;
        case 2: text += std::string(kValue).substr(0, rng() % strlen(kValue)); break;
        default:
          for (int k = rng() % 10; k > 0; --k) text += alphabet[rng() % alphabet.size()];
      }
    }
    Redactor r(rules);
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
      size_t n = 1 + rng() % 16;
      out += r.Feed(std::string_view(text).substr(i, n));
      i += n;
    }
    out += r.Finish();
    REQUIRE(out.size() == text.size());
    REQUIRE(out == Redact(rules, text));
    CHECK(out.find(kValue) == std::string::npos);
    CHECK(out.find("sk-openai-value-9876") == std::string::npos);
  }
}
