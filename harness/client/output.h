// How airlock-remote prints: aligned tables and "key: value" blocks for
// people, JSON (protobuf's JSON mapping with the proto's field names) for
// programs. Every function returns text; the commands print it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "airlock/v1/airlock.pb.h"

namespace airlock::client {

// `message` as JSON, every field present (defaults too), names as in the
// proto (snake_case). `pretty`: indented, else one line.
std::string ToJson(const google::protobuf::Message& message, bool pretty);

// Rows padded into columns two spaces apart; the first row is the header.
// The last column is not padded. Ends with a newline.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// "running", "paused", "stopped", "destroyed".
std::string StateName(v1::SandboxState state);
// "created", "exited", "oom", "limit_hit", ...
std::string EventName(v1::EventType type);
// "k=v,k2=v2" (sorted by key), or "" for none.
std::string LabelsText(const google::protobuf::Map<std::string, std::string>& labels);
// Local time "2026-11-28 07:16:25"; "-" for 0.
std::string FormatTime(int64_t unix_ms);
// "5s ago", "3m ago", "2h ago", "4d ago" relative to now_ms.
std::string Ago(int64_t unix_ms, int64_t now_ms);

// `airlock inspect`: one "key: value" line per field.
std::string DescribeSandbox(const v1::Sandbox& s);
// `airlock stats`: one "key: value" line per figure.
std::string DescribeStats(const v1::SandboxStats& s);
// `airlock events`: "TIME SEQ SANDBOX TYPE MESSAGE" on one line (no newline).
std::string EventLine(const v1::Event& e);

// Milliseconds since the Unix epoch, now.
int64_t NowUnixMs();

}  // namespace airlock::client
