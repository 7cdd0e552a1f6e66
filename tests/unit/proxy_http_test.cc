// The proxy's HTTP/1.1 head parser: one unambiguous form accepted, every
// smuggling and target trick refused.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "harness/proxy/http.h"

using namespace airlock::proxy;
using namespace std::string_literals;

namespace {

std::string ReqError(const std::string& head, RequestParseOptions opt = {}) {
  auto r = ParseRequestHead(head, opt);
  if (r) return "<valid>";
  CHECK(r.error().err == 0);
  return r.error().Message();
}

RequestHead Req(const std::string& head, RequestParseOptions opt = {}) {
  auto r = ParseRequestHead(head, opt);
  if (!r) FAIL(r.error().Message());
  return *r;
}

std::string RespError(const std::string& head) {
  auto r = ParseResponseHead(head);
  return r ? std::string("<valid>") : r.error().Message();
}

}  // namespace

TEST_CASE("FindHeadEnd: complete heads only", "[proxy][http]") {
  CHECK(FindHeadEnd("") == std::string_view::npos);
  CHECK(FindHeadEnd("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n") == std::string_view::npos);
  CHECK(FindHeadEnd("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r") == std::string_view::npos);
  std::string head = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
  CHECK(FindHeadEnd(head) == head.size());
  CHECK(FindHeadEnd(head + "body bytes\r\n\r\n") == head.size());
  // Malformed endings are measured too, so the parser refuses them at once.
  CHECK(FindHeadEnd("GET / HTTP/1.1\n\n") == 16);
  CHECK(FindHeadEnd("GET / HTTP/1.1\r\n\n") == 17);
  CHECK(FindHeadEnd("\r\n") == 2);
  // Byte by byte: npos until the last byte.
  for (size_t i = 0; i < head.size(); ++i) {
    CHECK(FindHeadEnd(std::string_view(head).substr(0, i)) == std::string_view::npos);
  }
}

TEST_CASE("ParseRequestHead: absolute-form", "[proxy][http]") {
  RequestHead r = Req("GET http://API.Example.com:8080/a/b?c=d HTTP/1.1\r\n"
                      "Host: api.example.com:8080\r\nUser-Agent: t\r\nX-Empty:\r\n\r\n");
  CHECK(r.method == "GET");
  CHECK(r.target == "http://API.Example.com:8080/a/b?c=d");
  CHECK(r.version == "HTTP/1.1");
  CHECK(r.form == RequestHead::Form::kAbsolute);
  CHECK(r.host == "api.example.com");
  CHECK(r.port == 8080);
  CHECK(r.path == "/a/b?c=d");
  CHECK_FALSE(r.tls);
  REQUIRE(r.headers.size() == 3);
  CHECK(r.headers[1].name == "User-Agent");
  CHECK(r.headers[1].value == "t");
  CHECK(r.headers[2].value.empty());
  CHECK_FALSE(r.content_length);
  CHECK_FALSE(r.chunked);

  CHECK(Req("GET http://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n").path == "/");
  CHECK(Req("GET http://a.test?x=1 HTTP/1.1\r\nHost: a.test\r\n\r\n").path == "/?x=1");
  CHECK(Req("GET HTTP://a.test/ HTTP/1.0\r\n\r\n").port == 80);  // Host optional here
  CHECK(Req("GET http://a.test./ HTTP/1.1\r\nHost: A.TEST\r\n\r\n").host == "a.test");
  CHECK(Req("GET http://a.test/ HTTP/1.1\r\nHost: a.test:80\r\n\r\n").port == 80);
  RequestHead v6 = Req("GET http://[::1]:8080/x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 8080);
  CHECK(Req("GET http://[2001:DB8::1]/ HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n").host == "2001:db8::1");
  CHECK(Req("GET http://127.0.0.1/ HTTP/1.1\r\n\r\n").host == "127.0.0.1");
  RequestHead post = Req("POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 12\r\n\r\n");
  CHECK(post.content_length == 12u);
  RequestHead chunked =
      Req("POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: Chunked\r\n\r\n");
  CHECK(chunked.chunked);
  CHECK(Req("GET http://a.test/ HTTP/1.1\r\nX:\t v \t\r\nHost: a.test\r\n\r\n").headers[0].value == "v");
  CHECK(Req("GET http://a.test/ HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n").headers[0].value == "caf\xc3\xa9");
}

TEST_CASE("ParseRequestHead: CONNECT and origin-form", "[proxy][http]") {
  RequestHead c = Req("CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n");
  CHECK(c.form == RequestHead::Form::kAuthority);
  CHECK(c.host == "api.example.com");
  CHECK(c.port == 443);
  CHECK(c.path.empty());
  CHECK(Req("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n").port == 443);
  CHECK(Req("CONNECT a.test:443 HTTP/1.0\r\n\r\n").host == "a.test");
  CHECK(Req("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n").host == "::1");

  std::string origin = "GET /x?y HTTP/1.1\r\nHost: Inner.Test\r\n\r\n";
  CHECK_THAT(ReqError(origin), Catch::Contains("origin-form target \"/x?y\" refused"));
  RequestHead o = Req(origin, {.allow_origin_form = true, .tls = true});
  CHECK(o.form == RequestHead::Form::kOrigin);
  CHECK(o.host == "inner.test");
  CHECK(o.port == 443);
  CHECK(o.path == "/x?y");
  CHECK(o.tls);
  CHECK(Req(origin, {.allow_origin_form = true}).port == 80);
  CHECK(Req("GET / HTTP/1.1\r\nHost: inner.test:8443\r\n\r\n", {.allow_origin_form = true}).port == 8443);
  CHECK_THAT(ReqError("GET //evil.test/x HTTP/1.1\r\nHost: inner.test\r\n\r\n", {.allow_origin_form = true}),
             Catch::Contains("starts with \"//\""));
  CHECK_THAT(ReqError("GET / HTTP/1.1\r\n\r\n", {.allow_origin_form = true}),
             Catch::Contains("without a Host"));
  CHECK_THAT(ReqError("GET / HTTP/1.1\r\nHost: u@inner.test\r\n\r\n", {.allow_origin_form = true}),
             Catch::Contains("userinfo"));
}

TEST_CASE("ParseRequestHead: every refusal", "[proxy][http]") {
  const std::string ok = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n";
  const std::pair<std::string, const char*> cases[] = {
      // Line endings: CRLF and nothing else.
      {"GET http://a.test/ HTTP/1.1\nHost: a.test\r\n\r\n", "bare LF"},
      {"GET http://a.test/ HTTP/1.1\r\nHost: a.test\n\r\n", "bare LF"},
      {"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\n", "bare LF"},
      {"GET http://a.test/ HTTP/1.1\n\n", "bare LF"},
      {ok + "X-A: 1\rX-B: 2\r\n\r\n", "CR not followed by LF"},
      {"GET http://a.test/ HTTP/1.1\r\r\nHost: a.test\r\n\r\n", "CR not followed by LF"},
      {ok + "\r\n\r\n", "bytes after the empty line"},
      {ok + "\r\nGET http://b.test/ HTTP/1.1\r\n\r\n", "bytes after the empty line"},
      {ok, "does not end with an empty line"},
      {"\r\n" + ok + "\r\n", "empty first line"},
      {"\r\n\r\n", "empty first line"},
      // Control characters.
      {"GET http://a.test/\0 HTTP/1.1\r\n\r\n"s, "control character in the request line"},
      {"GET http://a.test/\x7f HTTP/1.1\r\n\r\n", "control character in the request line"},
      {"GET\thttp://a.test/ HTTP/1.1\r\n\r\n", "control character in the request line"},
      {"GET http://a.test/\t HTTP/1.1\r\n\r\n", "control character in the request line"},
      {ok + "X-A: a\0b\r\n\r\n"s, "control character in the value of header \"X-A\""},
      {ok + "X-A: a\x01" "b\r\n\r\n", "control character in the value"},
      {ok + "X-A: a\x7f\r\n\r\n", "control character in the value"},
      // Header syntax.
      {ok + "X-A : 1\r\n\r\n", "whitespace before ':' in header \"X-A\""},
      {ok + "X-A\t: 1\r\n\r\n", "whitespace before ':'"},
      {ok + "Transfer-Encoding : chunked\r\n\r\n", "whitespace before ':'"},
      {ok + "X-A: 1\r\n continued\r\n\r\n", "obs-fold"},
      {ok + "X-A: 1\r\n\tcontinued\r\n\r\n", "obs-fold"},
      {"GET http://a.test/ HTTP/1.1\r\n Host: a.test\r\n\r\n", "obs-fold"},
      {ok + "X(A): 1\r\n\r\n", "invalid header name"},
      {ok + "X A: 1\r\n\r\n", "invalid header name"},
      {ok + "X-\xc3\xa9: 1\r\n\r\n", "invalid header name"},
      {ok + ": 1\r\n\r\n", "empty header name"},
      {ok + "NoColon\r\n\r\n", "header line without ':'"},
      // Host.
      {ok + "Host: a.test\r\n\r\n", "more than one Host"},
      {ok + "host: a.test\r\n\r\n", "more than one Host"},
      {"GET http://a.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", "does not match"},
      {"GET http://a.test/ HTTP/1.1\r\nHost: a.test:8080\r\n\r\n", "does not match"},
      {"GET http://a.test:8080/ HTTP/1.1\r\nHost: a.test\r\n\r\n", "does not match"},
      {"GET http://a.test/ HTTP/1.1\r\nHost: a.test.evil\r\n\r\n", "does not match"},
      {"GET http://a.test/ HTTP/1.1\r\nHost: \r\n\r\n", "Host header \"\": empty"},
      {"GET http://a.test/ HTTP/1.1\r\nHost: a.test, evil.test\r\n\r\n", "Host header"},
      {"GET http://a.test/ HTTP/1.1\r\nHost: a.test:\r\n\r\n", "port"},
      {"CONNECT a.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n", "does not match"},
      {"CONNECT a.test:8443 HTTP/1.1\r\nHost: a.test\r\n\r\n", "does not match"},
      {"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:444\r\n\r\n", "does not match"},
      // Framing.
      {ok + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"},
      {ok + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", "more than one Content-Length"},
      {ok + "Content-Length: 0\r\ncontent-length: 5\r\n\r\n", "more than one Content-Length"},
      {ok + "Content-Length: 5, 5\r\n\r\n", "invalid Content-Length"},
      {ok + "Content-Length: +5\r\n\r\n", "invalid Content-Length"},
      {ok + "Content-Length: -1\r\n\r\n", "invalid Content-Length"},
      {ok + "Content-Length: 0x10\r\n\r\n", "invalid Content-Length"},
      {ok + "Content-Length:\r\n\r\n", "invalid Content-Length"},
      {ok + "Content-Length: 1 2\r\n\r\n", "invalid Content-Length"},
      {ok + "Content-Length: 99999999999999999999999\r\n\r\n", "invalid Content-Length"},
      {ok + "Transfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding other than \"chunked\""},
      {ok + "Transfer-Encoding: chunked, chunked\r\n\r\n", "other than \"chunked\""},
      {ok + "Transfer-Encoding: chunked;x=1\r\n\r\n", "other than \"chunked\""},
      {ok + "Transfer-Encoding: identity\r\n\r\n", "other than \"chunked\""},
      {ok + "Transfer-Encoding: xchunked\r\n\r\n", "other than \"chunked\""},
      {ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "more than one Transfer-Encoding"},
      {"GET http://a.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in an HTTP/1.0"},
      // Request line.
      {"GET http://a.test/ HTTP/2.0\r\n\r\n", "unsupported version \"HTTP/2.0\""},
      {"GET http://a.test/ http/1.1\r\n\r\n", "unsupported version"},
      {"GET http://a.test/ HTTP/1.1 \r\n\r\n", "unsupported version"},
      {"GET http://a.test/ HTTP/0.9\r\n\r\n", "unsupported version"},
      {"GET http://a.test/\r\n\r\n", "malformed request line"},
      {"GET\r\n\r\n", "malformed request line"},
      {"G(T http://a.test/ HTTP/1.1\r\n\r\n", "method is not a token"},
      {"GÉT http://a.test/ HTTP/1.1\r\n\r\n", "method is not a token"},
      {" GET http://a.test/ HTTP/1.1\r\n\r\n", "method is not a token"},
      {"GET  http://a.test/ HTTP/1.1\r\n\r\n", "space in the request target"},
      {"GET http://a.test/a b HTTP/1.1\r\n\r\n", "space in the request target"},
      {"GET http://a.test/a#frag HTTP/1.1\r\n\r\n", "fragment"},
      {"GET http://a.test#@evil.test/ HTTP/1.1\r\n\r\n", "fragment"},
      {"GET http://a.test/\xc3\xa9 HTTP/1.1\r\n\r\n", "non-ASCII"},
      // Target forms.
      {"GET https://a.test/ HTTP/1.1\r\n\r\n", "https:// target refused: use CONNECT"},
      {"GET HTTPS://a.test/ HTTP/1.1\r\n\r\n", "https:// target refused"},
      {"GET ftp://a.test/ HTTP/1.1\r\n\r\n", "unsupported request target"},
      {"GET a.test/ HTTP/1.1\r\n\r\n", "unsupported request target"},
      {"GET //a.test/ HTTP/1.1\r\n\r\n", "origin-form target"},
      {"OPTIONS * HTTP/1.1\r\n\r\n", "asterisk-form"},
      {"GET http:/a.test/ HTTP/1.1\r\n\r\n", "unsupported request target"},
      {"GET http:///x HTTP/1.1\r\n\r\n", "target authority \"\": empty"},
      {"CONNECT a.test HTTP/1.1\r\n\r\n", "without a port"},
      {"CONNECT a.test: HTTP/1.1\r\n\r\n", "port is not a number"},
      {"CONNECT a.test:0 HTTP/1.1\r\n\r\n", "port is not a number"},
      {"CONNECT a.test:99999 HTTP/1.1\r\n\r\n", "port is not a number"},
      {"CONNECT a.test:44a HTTP/1.1\r\n\r\n", "port is not a number"},
      {"CONNECT /x HTTP/1.1\r\n\r\n", "CONNECT target"},
      {"CONNECT http://a.test:443/ HTTP/1.1\r\n\r\n", "CONNECT target"},
      {"CONNECT user:pw@a.test:443 HTTP/1.1\r\n\r\n", "userinfo"},
      {"CONNECT ::1:443 HTTP/1.1\r\n\r\n", "IPv6 literals need brackets"},
      // Absolute-URI tricks.
      {"GET http://allowed.test@evil.test/ HTTP/1.1\r\n\r\n", "userinfo"},
      {"GET http://allowed.test:80@evil.test/ HTTP/1.1\r\n\r\n", "userinfo"},
      {"GET http://evil.test\\@allowed.test/ HTTP/1.1\r\n\r\n", "userinfo"},
      {"GET http://evil.test\\allowed.test/ HTTP/1.1\r\n\r\n", "invalid host"},
      {"GET http://evil%2etest/ HTTP/1.1\r\n\r\n", "invalid host"},
      {"GET http://allowed.test%00.evil.test/ HTTP/1.1\r\n\r\n", "invalid host"},
      {"GET http://%61llowed.test/ HTTP/1.1\r\n\r\n", "invalid host"},
      {"GET http://allowed..test/ HTTP/1.1\r\n\r\n", "empty label"},
      {"GET http://[::1/ HTTP/1.1\r\n\r\n", "'[' without ']'"},
      {"GET http://[::1]x/ HTTP/1.1\r\n\r\n", "unexpected bytes after ']'"},
      {"GET http://[127.0.0.1]/ HTTP/1.1\r\n\r\n", "invalid IPv6 literal"},
      {"GET http://[fe80::1%25eth0]/ HTTP/1.1\r\n\r\n", "invalid IPv6 literal"},
      {"GET http://::1/ HTTP/1.1\r\n\r\n", "more than one ':'"},
      {"GET http://0x7f.1/ HTTP/1.1\r\n\r\n", "not a canonical IP address"},
      {"GET http://2130706433/ HTTP/1.1\r\n\r\n", "not a canonical IP address"},
      {"GET http://127.1/ HTTP/1.1\r\n\r\n", "not a canonical IP address"},
      {"GET http://0177.0.0.1/ HTTP/1.1\r\n\r\n", "not a canonical IP address"},
      {"GET http://a.test:8o/ HTTP/1.1\r\n\r\n", "port is not a number"},
      {"GET http://a.test:/ HTTP/1.1\r\n\r\n", "port is not a number"},
      {"GET http://*.a.test/ HTTP/1.1\r\n\r\n", "invalid host"},
  };
  for (const auto& [head, why] : cases) {
    INFO(head);
    std::string msg = ReqError(head);
    CHECK_THAT(msg, Catch::StartsWith("http request: "));
    CHECK_THAT(msg, Catch::Contains(why));
  }
}

TEST_CASE("ParseRequestHead: size limits", "[proxy][http]") {
  std::string head = "GET http://a.test/ HTTP/1.1\r\n";
  for (size_t i = 0; i < kMaxHeaders; ++i) head += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(ReqError(head + "\r\n") == "<valid>");
  CHECK_THAT(ReqError(head + "X-Last: v\r\n\r\n"), Catch::Contains("more than 100 headers"));
  std::string big = "GET http://a.test/ HTTP/1.1\r\nX-Big: " + std::string(kMaxHeadBytes, 'a') + "\r\n\r\n";
  CHECK_THAT(ReqError(big), Catch::Contains("head longer than 65536 bytes"));
}

TEST_CASE("CRLF smuggling attempts", "[proxy][http]") {
  // A second request hidden behind a header that only a lenient parser ends.
  CHECK_THAT(ReqError("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX: 1\n\nGET http://evil.test/ "
                      "HTTP/1.1\r\n\r\n"),
             Catch::Contains("bare LF"));
  // A Host smuggled through a folded line.
  CHECK_THAT(ReqError("GET http://a.test/ HTTP/1.1\r\nX: 1\r\n Host: evil.test\r\n\r\n"),
             Catch::Contains("obs-fold"));
  // CL.TE / TE.CL desync.
  CHECK_THAT(ReqError("POST http://a.test/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: "
                      "chunked\r\n\r\n"),
             Catch::Contains("both"));
  CHECK_THAT(ReqError("POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                      "identity\r\n\r\n"),
             Catch::Contains("more than one Transfer-Encoding"));
  CHECK_THAT(ReqError("POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: \x0b" "chunked\r\n\r\n"),
             Catch::Contains("control character"));
  // A CR alone as line ending in the request line.
  CHECK_THAT(ReqError("GET http://a.test/ HTTP/1.1\rHost: evil.test\r\n\r\n"),
             Catch::Contains("CR not followed by LF"));
  // Request-line injection through the target.
  CHECK_THAT(ReqError("GET http://a.test/ HTTP/1.1\r\nGET http://evil.test/ HTTP/1.1\r\n\r\n"),
             Catch::Contains("invalid header name"));
}

TEST_CASE("SerializeRequestHead: origin-form upstream, round trip", "[proxy][http]") {
  RequestHead r = Req("POST http://a.test:8080/p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\n"
                      "Content-Length: 3\r\nX-Case: v\r\n\r\n");
  CHECK(SerializeRequestHead(r, true) ==
        "POST /p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\nContent-Length: 3\r\nX-Case: v\r\n\r\n");
  CHECK(SerializeRequestHead(r, false) ==
        "POST http://a.test:8080/p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\nContent-Length: 3\r\nX-Case: "
        "v\r\n\r\n");
  std::string s = SerializeRequestHead(r, true);
  RequestHead again = Req(s, {.allow_origin_form = true});
  CHECK(again.host == "a.test");
  CHECK(again.port == 8080);
  CHECK(again.path == "/p?q=1");
  CHECK(again.content_length == 3u);
  RequestHead c = Req("CONNECT a.test:443 HTTP/1.1\r\n\r\n");
  CHECK(SerializeRequestHead(c, true) == "CONNECT a.test:443 HTTP/1.1\r\n\r\n");
}

TEST_CASE("header helpers", "[proxy][http]") {
  Headers h = {{"Host", "a"}, {"x-token", "1"}, {"Accept", "*/*"}, {"X-Token", "2"}};
  CHECK(GetHeader(h, "X-TOKEN") == "1");
  CHECK_FALSE(GetHeader(h, "X-Missing"));
  CHECK(CountHeader(h, "x-token") == 2);
  SetHeader(h, "X-Token", "3");
  REQUIRE(h.size() == 3);
  CHECK(h[1].name == "X-Token");
  CHECK(h[1].value == "3");
  SetHeader(h, "New", "n");
  CHECK(h.back().name == "New");
  CHECK(RemoveHeader(h, "HOST") == 1);
  CHECK(RemoveHeader(h, "host") == 0);
  CHECK(h.size() == 3);

  Headers hop = {{"Connection", "keep-alive, X-Secret-Hop, Content-Length, Host"},
                 {"Keep-Alive", "timeout=5"},
                 {"X-Secret-Hop", "1"},
                 {"Proxy-Authorization", "Basic eA=="},
                 {"Proxy-Connection", "keep-alive"},
                 {"Upgrade", "h2c"},
                 {"TE", "trailers"},
                 {"Content-Length", "3"},
                 {"Host", "a.test"},
                 {"Accept", "*/*"}};
  CHECK(RemoveHopByHopHeaders(hop) == 7);
  REQUIRE(hop.size() == 3);
  CHECK(hop[0].name == "Content-Length");  // never dropped: framing must not change
  CHECK(hop[1].name == "Host");
  CHECK(hop[2].name == "Accept");

  CHECK(IsToken("X-Custom_1!"));
  CHECK_FALSE(IsToken(""));
  CHECK_FALSE(IsToken("a b"));
  CHECK_FALSE(IsToken("a:b"));
  CHECK(IsValidFieldValue("Bearer abc"));
  CHECK(IsValidFieldValue(""));
  CHECK_FALSE(IsValidFieldValue("a\r\nX: b"));
  CHECK_FALSE(IsValidFieldValue(" a"));
  CHECK_FALSE(IsValidFieldValue(std::string("a\0", 2)));
}

TEST_CASE("ParseResponseHead", "[proxy][http]") {
  auto r = ParseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n");
  REQUIRE(r);
  CHECK(r->version == "HTTP/1.1");
  CHECK(r->status == 200);
  CHECK(r->reason == "OK");
  CHECK(r->content_length == 5u);
  CHECK(r->headers.size() == 2);
  CHECK(SerializeResponseHead(*r) == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n");
  auto c = ParseResponseHead("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n");
  REQUIRE(c);
  CHECK(c->chunked);
  CHECK(c->reason == "Not Found");
  CHECK(RespError("HTTP/1.1 204\r\n\r\n") == "<valid>");
  CHECK(RespError("HTTP/1.1 200 \r\n\r\n") == "<valid>");
  CHECK(RespError("HTTP/1.0 200 OK\r\n\r\n") == "<valid>");

  const std::pair<std::string, const char*> bad[] = {
      {"HTTP/1.1 200 OK\nX: 1\r\n\r\n", "bare LF"},
      {"HTTP/1.1 200 OK\r\nX: 1\r\r\n\r\n", "CR not followed by LF"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "more than one"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "other than \"chunked\""},
      {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"},
      {"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n", "obs-fold"},
      {"HTTP/1.1 200 OK\r\nX : 1\r\n\r\n", "whitespace before ':'"},
      {"HTTP/1.1 200 O\x01K\r\n\r\n", "control character in the reason"},
      {"HTTP/2 200 OK\r\n\r\n", "malformed status line"},
      {"HTTP/2.0 200 OK\r\n\r\n", "unsupported version"},
      {"HTTP/1.1 20 OK\r\n\r\n", "invalid status code"},
      {"HTTP/1.1 099 OK\r\n\r\n", "invalid status code"},
      {"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"},
      {"HTTP/1.1  200 OK\r\n\r\n", "invalid status code"},
      {"http/1.1 200 OK\r\n\r\n", "unsupported version"},
  };
  for (const auto& [head, why] : bad) {
    INFO(head);
    std::string msg = RespError(head);
    CHECK_THAT(msg, Catch::StartsWith("http response: "));
    CHECK_THAT(msg, Catch::Contains(why));
  }
}
