// What tools/list shows: each tool's name, description and input schema.
#include <utility>

#include "harness/client/mcp_tools.h"

namespace airlock::client::mcp {
namespace {

Json Str(const char* description, size_t max_length = 4096) {
  return {{"type", "string"}, {"description", description}, {"maxLength", max_length}};
}
Json Int(const char* description, int64_t minimum, int64_t maximum) {
  return {{"type", "integer"}, {"description", description}, {"minimum", minimum}, {"maximum", maximum}};
}
Json Bool(const char* description) { return {{"type", "boolean"}, {"description", description}}; }
Json StrArray(const char* description, size_t max_items) {
  return {{"type", "array"},
          {"description", description},
          {"items", {{"type", "string"}, {"maxLength", 4096}}},
          {"maxItems", max_items}};
}

Json Object(std::vector<std::pair<const char*, Json>> properties, std::vector<const char*> required) {
  Json props = Json::object();
  for (auto& [k, v] : properties) props[k] = std::move(v);
  Json req = Json::array();
  for (const char* r : required) req.push_back(r);
  Json schema = {{"type", "object"}, {"properties", std::move(props)}, {"additionalProperties", false}};
  if (!req.empty()) schema["required"] = std::move(req);
  return schema;
}

Json Hints(bool read_only, bool destructive, bool idempotent) {
  return {{"readOnlyHint", read_only}, {"destructiveHint", destructive}, {"idempotentHint", idempotent},
          {"openWorldHint", false}};
}

const char* kSandboxId = "The sandbox's id (from create_sandbox or list_sandboxes).";

}  // namespace

std::vector<ToolSpec> ToolSpecs() {
  const Json sandbox_id = Str(kSandboxId, 128);
  const Json snapshot_id = Str("A snapshot's id (from snapshot_sandbox or list_snapshots).", 128);
  const Json session_id = Int("The session_id exec_command returned for a command still running.", 1, INT32_MAX);
  const Json max_output = Int("Cap on the output returned, in bytes: the head and the tail are kept, with a marker "
                              "saying how much was left out between them (default 32768).",
                              256, 4 << 20);
  std::vector<ToolSpec> t;
  t.push_back({"create_sandbox", "Create a sandbox",
               "Creates a new sandbox (an isolated Linux environment with its own filesystem, processes and "
               "network policy) and returns its sandbox_id and workspace directory. Its image, workspace, limits and "
               "network access are fixed by the operator; there is nothing to choose.",
               Object({}, {}), Hints(false, false, false)});
  t.push_back({"list_sandboxes", "List sandboxes",
               "Lists the sandboxes created through this server (and those the operator handed over): id, state, "
               "workspace, creation time.",
               Object({}, {}), Hints(true, false, true)});
  t.push_back({"destroy_sandbox", "Destroy a sandbox",
               "Destroys a sandbox: kills its processes and deletes its files. Its snapshots are kept.",
               Object({{"sandbox_id", sandbox_id}}, {"sandbox_id"}), Hints(false, true, true)});
  t.push_back(
      {"exec_command", "Run a shell command",
       "Runs `cmd` with `sh -lc` in the sandbox (working directory: the workspace, or `workdir` under it). If it "
       "finishes within yield_time_ms, returns its exit code and output (stdout and stderr together, capped at "
       "max_output_bytes keeping the head and the tail). If it is still running, returns the output so far and a "
       "session_id: continue with write_stdin (to wait for more output, or to type into it when started with "
       "tty: true) and stop it with kill_session.",
       Object({{"sandbox_id", sandbox_id},
               {"cmd", Str("The shell command line, e.g. \"ls -la && make test\".", 1 << 20)},
               {"workdir", Str("Working directory: relative to the workspace, or absolute under it.")},
               {"timeout_ms", Int("Kill the command after this many milliseconds (default: no limit).", 1, 86400000)},
               {"yield_time_ms", Int("How long to wait for it to finish before returning a session_id "
                                     "(default 10000, at most 300000).",
                                     0, 300000)},
               {"max_output_bytes", max_output},
               {"tty", Bool("Run it on a pseudo-terminal with stdin open (for interactive programs: REPLs, "
                            "prompts); default false, stdin empty.")}},
              {"sandbox_id", "cmd"}),
       Hints(false, true, false)});
  t.push_back(
      {"write_stdin", "Write to a running command",
       "Writes `chars` to the stdin of a command exec_command left running (tty: true only; use \"\\n\" for Enter, "
       "\"\\u0003\" for Ctrl-C, \"\\u0004\" for Ctrl-D), then waits up to yield_time_ms and returns the new output, "
       "and its exit code if it ended. With empty chars it only waits for more output (any session).",
       Object({{"session_id", session_id},
               {"chars", Str("Text to type; may be empty.", 1 << 20)},
               {"yield_time_ms", Int("How long to wait for output (default 1000, at most 300000).", 0, 300000)},
               {"max_output_bytes", max_output}},
              {"session_id"}),
       Hints(false, true, false)});
  t.push_back({"kill_session", "Stop a running command",
               "Kills a command exec_command left running (SIGKILL) and returns its last output.",
               Object({{"session_id", session_id}}, {"session_id"}), Hints(false, true, true)});
  t.push_back({"apply_patch", "Apply a patch",
               "Applies a patch in the apply_patch (V4A) format to files in the workspace: '*** Begin Patch', then "
               "'*** Add File: PATH' (lines prefixed '+'), '*** Delete File: PATH', or '*** Update File: PATH' "
               "(optionally '*** Move to: NEW') with hunks of context (' '), removed ('-') and added ('+') lines, "
               "'@@ ANCHOR' lines to locate them, then '*** End Patch'. Paths are relative to the workspace. "
               "All files change or none do; a hunk that does not match names the file and the line.",
               Object({{"sandbox_id", sandbox_id}, {"patch", Str("The whole patch text.", 16u << 20)}},
                      {"sandbox_id", "patch"}),
               Hints(false, true, false)});
  t.push_back({"read_file", "Read a text file",
               "Reads lines of a text file in the workspace: start_line (1-based, default 1) and at most max_lines "
               "(default 2000). Says how many lines the file has and whether more follow.",
               Object({{"sandbox_id", sandbox_id},
                       {"path", Str("The file: relative to the workspace, or absolute under it.")},
                       {"start_line", Int("First line to return, 1-based (default 1).", 1, INT64_MAX)},
                       {"max_lines", Int("How many lines at most (default 2000).", 1, 1000000)}},
                      {"sandbox_id", "path"}),
               Hints(true, false, true)});
  t.push_back({"write_file", "Write a file",
               "Writes `content` to a file in the workspace, replacing it whole (atomically) or creating it and "
               "any missing parent directories.",
               Object({{"sandbox_id", sandbox_id},
                       {"path", Str("The file: relative to the workspace, or absolute under it.")},
                       {"content", Str("The file's new content (text).", 16u << 20)}},
                      {"sandbox_id", "path", "content"}),
               Hints(false, true, true)});
  t.push_back({"list_dir", "List a directory",
               "Lists a directory of the workspace (default: its root): one entry per line, directories with a "
               "trailing '/', files with their size, symlinks with their target.",
               Object({{"sandbox_id", sandbox_id},
                       {"path", Str("The directory: relative to the workspace, or absolute under it.")}},
                      {"sandbox_id"}),
               Hints(true, false, true)});
  t.push_back(
      {"search", "Search files",
       "Searches files under a directory of the workspace as ripgrep does (.gitignore honoured, hidden and binary "
       "files skipped unless asked): the lines matching `pattern` (a regular expression, PCRE2 syntax) as "
       "path:line:text, or with files_with_matches only the paths; with no pattern, the files the globs select.",
       Object({{"sandbox_id", sandbox_id},
               {"pattern", Str("Regular expression (or a literal string with fixed_strings).", 65536)},
               {"path", Str("Directory or file to search: relative to the workspace (default: all of it).")},
               {"globs", StrArray("File globs to include, e.g. \"*.py\", \"src/**/*.ts\"; \"!x\" excludes.", 64)},
               {"ignore_case", Bool("Case-insensitive match.")},
               {"fixed_strings", Bool("Treat pattern as a literal string.")},
               {"files_with_matches", Bool("Return only the paths of matching files.")},
               {"hidden", Bool("Also search dot files and dot directories.")},
               {"no_ignore", Bool("Don't honour .gitignore and .ignore files.")},
               {"max_results", Int("At most this many matching lines or files (default 200).", 1, 100000)}},
              {"sandbox_id"}),
       Hints(true, false, true)});
  t.push_back({"view_image", "View an image",
               "Returns an image file of the workspace (PNG, JPEG, GIF, WebP, BMP, SVG) as image content.",
               Object({{"sandbox_id", sandbox_id},
                       {"path", Str("The image: relative to the workspace, or absolute under it.")}},
                      {"sandbox_id", "path"}),
               Hints(true, false, true)});
  t.push_back({"get_instructions", "Get AGENTS.md instructions",
               "Returns the AGENTS.md files from the workspace root down to `workdir` (default: the root), the "
               "root's first and the nearest last (nearer ones take precedence).",
               Object({{"sandbox_id", sandbox_id},
                       {"workdir", Str("A directory: relative to the workspace, or absolute under it.")}},
                      {"sandbox_id"}),
               Hints(true, false, true)});
  t.push_back({"list_skills", "List skills",
               "Lists the skills the operator provides: each one's name and description. get_skill loads one.",
               Object({}, {}), Hints(true, false, true)});
  t.push_back({"get_skill", "Load a skill",
               "Returns a skill's instructions (its SKILL.md) and the names of its other files (read_skill_file "
               "reads one; stage_skills copies skills into a sandbox).",
               Object({{"name", Str("The skill's name (from list_skills).", 256)}}, {"name"}),
               Hints(true, false, true)});
  t.push_back({"read_skill_file", "Read a skill's file",
               "Returns one of a skill's files (a path get_skill listed).",
               Object({{"name", Str("The skill's name.", 256)},
                       {"path", Str("The file, relative to the skill's folder (as get_skill lists it).")}},
                      {"name", "path"}),
               Hints(true, false, true)});
  t.push_back({"stage_skills", "Copy skills into a sandbox",
               "Copies skills into the sandbox's workspace (under .skills/NAME) so its commands can use their "
               "scripts; returns where each went.",
               Object({{"sandbox_id", sandbox_id}, {"names", StrArray("The skills' names.", 64)}},
                      {"sandbox_id", "names"}),
               Hints(false, false, true)});
  t.push_back({"snapshot_sandbox", "Snapshot a sandbox",
               "Takes a snapshot of a sandbox's files (its writable layer, the workspace included) and returns its "
               "snapshot_id, for restore_snapshot and fork_sandbox. Works only where the operator enabled "
               "snapshots for the sandboxes of this server.",
               Object({{"sandbox_id", sandbox_id}}, {"sandbox_id"}), Hints(false, false, false)});
  t.push_back({"list_snapshots", "List snapshots",
               "Lists the snapshots taken through this server (of one sandbox, or all).",
               Object({{"sandbox_id", sandbox_id}}, {}), Hints(true, false, true)});
  t.push_back({"restore_snapshot", "Restore a snapshot",
               "Creates a new sandbox on a copy of a snapshot's files; returns its sandbox_id.",
               Object({{"snapshot_id", snapshot_id}}, {"snapshot_id"}), Hints(false, false, false)});
  t.push_back({"fork_sandbox", "Fork a snapshot",
               "Creates `count` new sandboxes (default 1), each on its own copy of a snapshot's files; returns their "
               "ids. Take the snapshot first with snapshot_sandbox.",
               Object({{"snapshot_id", snapshot_id}, {"count", Int("How many sandboxes (default 1).", 1, 8)}},
                      {"snapshot_id"}),
               Hints(false, false, false)});
  return t;
}

}  // namespace airlock::client::mcp
