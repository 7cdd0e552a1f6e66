#include "harness/client/output.h"

#include <google/protobuf/util/json_util.h>
#include <time.h>

#include <algorithm>
#include <chrono>

#include "harness/client/args.h"

namespace airlock::client {

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = pretty;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, opts);
  if (!status.ok()) return "{\"error\": \"cannot print as JSON\"}";
  // add_whitespace leaves the closing brace without a newline.
  if (pretty && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string StateName(v1::SandboxState state) {
  switch (state) {
    case v1::SANDBOX_STATE_RUNNING: return "running";
    case v1::SANDBOX_STATE_PAUSED: return "paused";
    case v1::SANDBOX_STATE_STOPPED: return "stopped";
    case v1::SANDBOX_STATE_DESTROYED: return "destroyed";
    default: return "unknown";
  }
}

std::string EventName(v1::EventType type) {
  std::string name = v1::EventType_Name(type);
  if (name.starts_with("EVENT_TYPE_")) name = name.substr(11);
  if (name.empty()) name = "type_" + std::to_string(static_cast<int>(type));
  for (auto& c : name) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string LabelsText(const google::protobuf::Map<std::string, std::string>& labels) {
  std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  std::string out;
  for (const auto& [k, v] : sorted) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  time_t t = static_cast<time_t>(unix_ms / 1000);
  tm local;
  localtime_r(&t, &local);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &local);
  return buf;
}

std::string Ago(int64_t unix_ms, int64_t now_ms) {
  if (unix_ms == 0) return "-";
  int64_t s = std::max<int64_t>(0, (now_ms - unix_ms) / 1000);
  if (s < 60) return std::to_string(s) + "s ago";
  if (s < 3600) return std::to_string(s / 60) + "m ago";
  if (s < 86400) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

namespace {

std::string Limit(uint64_t v, bool bytes) {
  if (v == 0) return "none";
  return bytes ? HumanBytes(v) : std::to_string(v);
}

std::string KeyValues(const std::vector<std::pair<std::string, std::string>>& kv) {
  size_t w = 0;
  for (const auto& [k, v] : kv) w = std::max(w, k.size());
  std::string out;
  for (const auto& [k, v] : kv) out += k + ":" + std::string(w - k.size() + 2, ' ') + v + "\n";
  return out;
}

}  // namespace

std::string DescribeSandbox(const v1::Sandbox& s) {
  const auto& l = s.limits();
  char cpus[32];
  snprintf(cpus, sizeof cpus, "%g", l.cpus());
  std::string limits = "memory " + Limit(l.memory_bytes(), true) + ", pids " + Limit(l.pids(), false) +
                       ", cpus " + (l.cpus() > 0 ? std::string(cpus) : "none") + ", disk " +
                       Limit(l.disk_bytes(), true) + ", nofile " + (l.nofile() ? std::to_string(l.nofile()) : "1024");
  std::string network = s.network() == v1::NETWORK_MODE_PROXY ? "proxy" : "none";
  return KeyValues({
      {"id", s.id()},
      {"state", StateName(s.state()) + (s.stop_reason().empty() ? "" : " (" + s.stop_reason() + ")")},
      {"owner uid", std::to_string(s.owner_uid())},
      {"image", s.image()},
      {"created", FormatTime(s.created_unix_ms())},
      {"expires", s.expires_unix_ms() ? FormatTime(s.expires_unix_ms()) : "never"},
      {"idle timeout", s.idle_timeout_ms() ? HumanDuration(s.idle_timeout_ms()) : "none"},
      {"limits", limits},
      {"network", network},
      {"seccomp", s.seccomp_profile()},
      {"hostname", s.hostname()},
      {"workspace", s.workspace()},
      {"labels", s.labels().empty() ? "none" : LabelsText(s.labels())},
  });
}

std::string DescribeStats(const v1::SandboxStats& s) {
  auto of = [](uint64_t used, uint64_t limit, bool bytes) {
    std::string u = bytes ? HumanBytes(used) : std::to_string(used);
    return limit ? u + " / " + (bytes ? HumanBytes(limit) : std::to_string(limit)) : u;
  };
  char cpu[32];
  snprintf(cpu, sizeof cpu, "%.3fs", static_cast<double>(s.cpu_usage_ns()) / 1e9);
  return KeyValues({
      {"id", s.id()},
      {"cpu", cpu},
      {"memory", of(s.memory_bytes(), s.memory_limit_bytes(), true)},
      {"pids", of(s.pids(), s.pids_limit(), false)},
      {"disk", of(s.disk_bytes(), s.disk_limit_bytes(), true)},
      {"oom kills", std::to_string(s.oom_kills())},
      {"pids limit hits", std::to_string(s.pids_limit_hits())},
  });
}

std::string EventLine(const v1::Event& e) {
  std::string line = FormatTime(e.unix_ms()) + "  " + std::to_string(e.seq()) + "  " + e.sandbox_id() + "  " + EventName(e.type());
  if (!e.message().empty()) line += "  " + e.message();
  // One event, one line: a message can't break the format.
  for (auto& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  return line;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace airlock::client
