// airlock-remote's pure parts: option parsing, value parsers, cp operands,
// paths and output formatting.
#include <catch2/catch.hpp>

#include "harness/client/args.h"
#include "harness/client/output.h"

using namespace airlock::client;

namespace {

const std::vector<OptionSpec> kExecSpecs = {{"--interactive", 'i', false}, {"--tty", 't', false},
                                            {"--env", 'e', true},          {"--user", 'u', true},
                                            {"--timeout", 0, true},        {"--json", 0, false}};

}  // namespace

TEST_CASE("ParseArgs: exec style stops at the first operand", "[client]") {
  auto a = ParseArgs({"-it", "--env", "A=1", "-e", "B=2", "--timeout=10s", "sb-1", "--", "sh", "-c", "exit 3"},
                     kExecSpecs, true);
  REQUIRE(a);
  CHECK(a->Has("--interactive"));
  CHECK(a->Has("--tty"));
  CHECK(a->All("--env") == std::vector<std::string>{"A=1", "B=2"});
  CHECK(a->Last("--timeout") == "10s");
  CHECK(a->positional == std::vector<std::string>{"sb-1"});
  CHECK(a->command == std::vector<std::string>{"sh", "-c", "exit 3"});

  // Without "--", options of the command stay the command's.
  auto b = ParseArgs({"-u", "1000", "sb-1", "ls", "-la", "--json"}, kExecSpecs, true);
  REQUIRE(b);
  CHECK(b->Last("--user") == "1000");
  CHECK(!b->Has("--json"));
  CHECK(b->command == std::vector<std::string>{"ls", "-la", "--json"});

  auto c = ParseArgs({"-uroot", "sb-1", "true"}, kExecSpecs, true);
  REQUIRE(c);
  CHECK(c->Last("--user") == "root");
}

TEST_CASE("ParseArgs: errors name the option", "[client]") {
  auto unknown = ParseArgs({"--bogus", "x"}, kExecSpecs, true);
  REQUIRE(!unknown);
  CHECK(unknown.error().detail == "--bogus: unknown option");
  auto missing = ParseArgs({"--env"}, kExecSpecs, true);
  REQUIRE(!missing);
  CHECK(missing.error().detail == "--env: needs a value");
  auto flag_value = ParseArgs({"--tty=yes", "x"}, kExecSpecs, true);
  REQUIRE(!flag_value);
  CHECK(flag_value.error().detail == "--tty: takes no value");
  auto short_unknown = ParseArgs({"-iz", "x"}, kExecSpecs, true);
  REQUIRE(!short_unknown);
  CHECK(short_unknown.error().detail == "-z: unknown option");
}

TEST_CASE("ParseArgs: options and operands mix; -- ends options", "[client]") {
  std::vector<OptionSpec> specs = {{"--force", 'f', false}, {"--json", 0, false}};
  auto a = ParseArgs({"sb-1", "-f", "sb-2", "--json", "--", "-weird"}, specs);
  REQUIRE(a);
  CHECK(a->Has("--force"));
  CHECK(a->Has("--json"));
  CHECK(a->positional == std::vector<std::string>{"sb-1", "sb-2", "-weird"});
  CHECK(a->command.empty());
}

TEST_CASE("ParseSize and ParseDurationMs", "[client]") {
  CHECK(ParseSize("--memory", "512M").value() == 512ull << 20);
  CHECK(ParseSize("--memory", "512MiB").value() == 512ull << 20);
  CHECK(ParseSize("--memory", "512MB").value() == 512ull << 20);
  CHECK(ParseSize("--memory", "1.5G").value() == 3ull << 29);
  CHECK(ParseSize("--memory", "4096").value() == 4096);
  CHECK(ParseSize("--disk", "1T").value() == 1ull << 40);
  for (const char* bad : {"", "M", "-1M", "5X", "0x10", "1e9", "nan", "inf"}) {
    auto r = ParseSize("--memory", bad);
    INFO(bad);
    REQUIRE(!r);
    CHECK(r.error().detail.starts_with("--memory: "));
  }
  CHECK(ParseDurationMs("--lifetime", "30m").value() == 30 * 60000);
  CHECK(ParseDurationMs("--timeout", "10").value() == 10000);
  CHECK(ParseDurationMs("--timeout", "250ms").value() == 250);
  CHECK(ParseDurationMs("--timeout", "1.5s").value() == 1500);
  CHECK(ParseDurationMs("--lifetime", "2h").value() == 7200000);
  CHECK(ParseDurationMs("--lifetime", "1d").value() == 86400000);
  for (const char* bad : {"", "s", "10x", "-1s", "1e3s"}) {
    INFO(bad);
    CHECK(!ParseDurationMs("--timeout", bad));
  }
  auto kv = ParseKeyValue("--label", "team=infra=x");
  REQUIRE(kv);
  CHECK(kv->first == "team");
  CHECK(kv->second == "infra=x");
  CHECK(ParseKeyValue("--label", "k=").value().second.empty());
  CHECK(!ParseKeyValue("--label", "=v"));
  CHECK(!ParseKeyValue("--label", "novalue"));
}

TEST_CASE("cp operands: ID:PATH or a host path", "[client]") {
  auto r = ParseCopyOperand("sb-0a1b2c:/workspace/out");
  CHECK(r.remote());
  CHECK(r.sandbox_id == "sb-0a1b2c");
  CHECK(r.path == "/workspace/out");
  auto rel = ParseCopyOperand("sb-1:notes.txt");
  CHECK(rel.sandbox_id == "sb-1");
  CHECK(rel.path == "notes.txt");
  for (const char* host : {"/tmp/a:b", "./a:b", "dir", "", ":x", "a/b:c"}) {
    INFO(host);
    auto h = ParseCopyOperand(host);
    CHECK(!h.remote());
    CHECK(h.path == host);
  }
}

TEST_CASE("path helpers", "[client]") {
  CHECK(BaseName("a/b/") == "b");
  CHECK(BaseName("/x") == "x");
  CHECK(BaseName("x") == "x");
  CHECK(BaseName("/") == "");
  CHECK(BaseName("") == "");
  CHECK(JoinPath("/w", "f") == "/w/f");
  CHECK(JoinPath("/w/", "f") == "/w/f");
  CHECK(JoinPath(".", "f") == "f");
  CHECK(JoinPath("", "f") == "f");
  CHECK(AbsoluteLexical("/home/u", "proj/./src/../out") == "/home/u/proj/out");
  CHECK(AbsoluteLexical("/home/u", "/etc//hosts") == "/etc/hosts");
  CHECK(AbsoluteLexical("/", "../../x") == "/x");
  CHECK(AbsoluteLexical("/a", ".") == "/a");
}

TEST_CASE("output: sizes, durations, tables, names", "[client]") {
  CHECK(HumanBytes(17) == "17 B");
  CHECK(HumanBytes(1536) == "1.5 KiB");
  CHECK(HumanBytes(512ull << 20) == "512.0 MiB");
  CHECK(HumanDuration(250) == "250ms");
  CHECK(HumanDuration(45000) == "45s");
  CHECK(HumanDuration(5 * 60000) == "5m");
  CHECK(HumanDuration(90 * 60000) == "1h30m");
  CHECK(FormatTable({{"ID", "STATE", "LABELS"}, {"sb-123456", "running", ""}, {"sb-1", "paused", "a=b"}}) ==
        "ID         STATE    LABELS\n"
        "sb-123456  running\n"
        "sb-1       paused   a=b\n");
  CHECK(StateName(airlock::v1::SANDBOX_STATE_PAUSED) == "paused");
  CHECK(EventName(airlock::v1::EVENT_TYPE_LIMIT_HIT) == "limit_hit");
  CHECK(Ago(1000, 1000 + 5000) == "5s ago");
  CHECK(Ago(0, 5) == "-");
  CHECK(Ago(0 + 1, 1 + 3 * 3600 * 1000) == "3h ago");
}

TEST_CASE("output: JSON uses the proto's names and prints defaults", "[client]") {
  airlock::v1::Sandbox s;
  s.set_id("sb-1");
  s.set_state(airlock::v1::SANDBOX_STATE_RUNNING);
  (*s.mutable_labels())["team"] = "infra";
  std::string j = ToJson(s, false);
  CHECK(j.find("\"id\":\"sb-1\"") != std::string::npos);
  CHECK(j.find("\"state\":\"SANDBOX_STATE_RUNNING\"") != std::string::npos);
  CHECK(j.find("\"owner_uid\":0") != std::string::npos);
  CHECK(j.find("\"labels\":{\"team\":\"infra\"}") != std::string::npos);
  CHECK(j.find('\n') == std::string::npos);
  airlock::v1::ListResponse empty;
  CHECK(ToJson(empty, false) == "{\"sandboxes\":[]}");
  airlock::v1::Event e;
  e.set_seq(4);
  e.set_sandbox_id("sb-1");
  e.set_type(airlock::v1::EVENT_TYPE_OOM);
  e.set_message("killed\npython");
  std::string line = EventLine(e);
  CHECK(line.find("  4  sb-1  oom  killed python") != std::string::npos);
  CHECK(line.find('\n') == std::string::npos);
}
