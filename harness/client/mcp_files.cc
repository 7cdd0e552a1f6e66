// The Toolbox's file tools (apply_patch, read_file, write_file, list_dir,
// search, view_image), get_instructions and the skills. Every path is
// confined to the sandbox's workspace before airlockd sees it.
#include <openssl/evp.h>

#include <algorithm>

#include "harness/client/args.h"
#include "harness/client/mcp_tools.h"

namespace airlock::client::mcp {
namespace {

constexpr size_t kWriteChunk = 64 * 1024;
constexpr uint64_t kDefaultMaxLines = 2000;
constexpr uint32_t kDefaultMaxResults = 200;
constexpr size_t kListDirMax = 2000;

int64_t IntArg(const Json& a, const char* key, int64_t fallback) {
  auto it = a.find(key);
  if (it == a.end()) return fallback;
  return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
}

std::string Base64(const std::string& data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

// Skill names and their files' paths name things on the daemon's host, so
// they are checked here too, before the daemon checks them again.
Result<void> CheckSkillName(const std::string& field, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find_first_of("/\\") != std::string::npos ||
      name.find('\0') != std::string::npos)
    return Fail(field, "not a skill name: \"" + name + "\" (list_skills shows them)");
  return {};
}

Result<void> CheckSkillPath(const std::string& field, const std::string& path) {
  if (path.empty() || path.starts_with('/') || path.find('\0') != std::string::npos)
    return Fail(field, "must be a path relative to the skill's folder (got \"" + path + "\")");
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = std::min(path.find('/', start), path.size());
    if (path.compare(start, end - start, "..") == 0)
      return Fail(field, "\"" + path + "\" leaves the skill's folder");
    start = end + 1;
  }
  return {};
}

}  // namespace

Result<ToolResult> Toolbox::ApplyPatch(const Json& a) {
  TRY(Workspace("apply_patch", a));
  v1::ApplyPatchRequest req;
  req.set_sandbox_id(a["sandbox_id"].get<std::string>());
  req.set_patch(a["patch"].get<std::string>());
  v1::ApplyPatchResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().ApplyPatch(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  Json files = Json::array();
  for (const auto& f : resp.files())
    files.push_back({{"path", f.path()}, {"change", f.change()}, {"moved_from", f.moved_from()}});
  ToolResult r = ToolResult::Text(resp.summary());
  r.structured = {{"files", files}};
  return r;
}

Result<ToolResult> Toolbox::ReadFile(const Json& a) {
  std::string path = TRY(Path("read_file", a, "path", false));
  v1::ReadLinesRequest req;
  req.mutable_file()->set_sandbox_id(a["sandbox_id"].get<std::string>());
  req.mutable_file()->set_path(path);
  req.set_start_line(static_cast<uint64_t>(IntArg(a, "start_line", 1)));
  req.set_max_lines(static_cast<uint64_t>(IntArg(a, "max_lines", kDefaultMaxLines)));
  v1::ReadLinesResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().ReadLines(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::string text = resp.content();
  if (resp.total_lines() == 0) text = "(empty file)";
  else if (resp.first_line() == 0) text = "(the file has " + std::to_string(resp.total_lines()) + " lines)";
  if (resp.more())
    text += (text.ends_with('\n') ? "" : "\n") + std::string("[... lines ") + std::to_string(resp.last_line() + 1) +
            "-" + std::to_string(resp.total_lines()) + " not shown: read_file with start_line=" +
            std::to_string(resp.last_line() + 1) + "]";
  ToolResult r = ToolResult::Text(text);
  r.structured = {{"path", path},
                  {"content", resp.content()},
                  {"first_line", resp.first_line()},
                  {"last_line", resp.last_line()},
                  {"total_lines", resp.total_lines()},
                  {"more", resp.more()}};
  return r;
}

Result<ToolResult> Toolbox::WriteFile(const Json& a) {
  std::string path = TRY(Path("write_file", a, "path", false));
  const std::string& content = a["content"].get_ref<const std::string&>();
  v1::FileInfo info;
  grpc::ClientContext ctx;
  auto writer = conn_->stub().WriteFile(&ctx, &info);
  v1::WriteFileRequest head;
  auto* h = head.mutable_header();
  h->mutable_file()->set_sandbox_id(a["sandbox_id"].get<std::string>());
  h->mutable_file()->set_path(path);
  h->set_write_mode(v1::WRITE_MODE_ATOMIC);
  h->set_make_parents(true);
  bool ok = writer->Write(head);
  for (size_t off = 0; ok && off < content.size(); off += kWriteChunk) {
    v1::WriteFileRequest part;
    part.set_data(content.substr(off, kWriteChunk));
    ok = writer->Write(part);
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (!st.ok()) return DaemonError(st, *conn_);
  ToolResult r = ToolResult::Text("Wrote " + std::to_string(content.size()) + " bytes to " + path + ".");
  r.structured = {{"path", path}, {"bytes", content.size()}};
  return r;
}

Result<ToolResult> Toolbox::ListDir(const Json& a) {
  std::string path = TRY(Path("list_dir", a, "path", true));
  v1::FileRequest req;
  req.set_sandbox_id(a["sandbox_id"].get<std::string>());
  req.set_path(path);
  v1::ListDirResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().ListDir(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::vector<const v1::FileInfo*> entries;
  for (const auto& e : resp.entries()) entries.push_back(&e);
  std::sort(entries.begin(), entries.end(), [](auto* x, auto* y) { return x->name() < y->name(); });
  std::string text;
  Json items = Json::array();
  for (size_t i = 0; i < entries.size() && i < kListDirMax; ++i) {
    const auto& e = *entries[i];
    std::string type = e.type() == v1::FILE_TYPE_DIRECTORY ? "directory"
                       : e.type() == v1::FILE_TYPE_SYMLINK ? "symlink"
                       : e.type() == v1::FILE_TYPE_FILE    ? "file"
                                                           : "other";
    if (type == "directory") text += e.name() + "/\n";
    else if (type == "symlink") text += e.name() + " -> " + e.link_target() + "\n";
    else text += e.name() + "  (" + std::to_string(e.size()) + " bytes)\n";
    items.push_back({{"name", e.name()}, {"type", type}, {"size", e.size()}});
  }
  if (entries.size() > kListDirMax)
    text += "[... " + std::to_string(entries.size() - kListDirMax) + " more entries not shown]\n";
  ToolResult r = ToolResult::Text(text.empty() ? path + " is empty." : text);
  r.structured = {{"path", path}, {"entries", items}};
  return r;
}

Result<ToolResult> Toolbox::Search(const Json& a) {
  std::string path = TRY(Path("search", a, "path", true));
  v1::SearchRequest req;
  req.set_sandbox_id(a["sandbox_id"].get<std::string>());
  req.set_path(path);
  req.set_pattern(a.value("pattern", ""));
  for (const auto& g : a.value("globs", Json::array())) req.add_globs(g.get<std::string>());
  req.set_ignore_case(a.value("ignore_case", false));
  req.set_fixed_strings(a.value("fixed_strings", false));
  req.set_files_with_matches(a.value("files_with_matches", false));
  req.set_hidden(a.value("hidden", false));
  req.set_no_ignore(a.value("no_ignore", false));
  req.set_max_results(static_cast<uint32_t>(IntArg(a, "max_results", kDefaultMaxResults)));
  v1::SearchResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().Search(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  const bool paths_only = req.files_with_matches() || req.pattern().empty();
  std::string text;
  Json items = Json::array();
  for (const auto& m : resp.matches()) {
    text += paths_only ? m.path() + "\n" : m.path() + ":" + std::to_string(m.line()) + ":" + m.text() + "\n";
    Json item = {{"path", m.path()}};
    if (!paths_only) {
      item["line"] = m.line();
      item["text"] = m.text();
    }
    items.push_back(std::move(item));
  }
  if (text.empty()) text = "No matches (" + std::to_string(resp.files_searched()) + " files searched).\n";
  if (resp.truncated()) text += "[... more results not shown: max_results reached]\n";
  ToolResult r = ToolResult::Text(text);
  r.structured = {{"path", path}, {"matches", items}, {"truncated", resp.truncated()},
                  {"files_searched", resp.files_searched()}};
  return r;
}

Result<ToolResult> Toolbox::ViewImage(const Json& a) {
  std::string path = TRY(Path("view_image", a, "path", false));
  v1::FileRequest req;
  req.set_sandbox_id(a["sandbox_id"].get<std::string>());
  req.set_path(path);
  v1::ImageResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().ViewImage(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  ToolResult r;
  r.content.push_back({{"type", "image"}, {"data", Base64(resp.data())}, {"mimeType", resp.mime_type()}});
  return r;
}

Result<ToolResult> Toolbox::GetInstructions(const Json& a) {
  std::string dir = TRY(Path("get_instructions", a, "workdir", true));
  v1::InstructionsRequest req;
  req.set_sandbox_id(a["sandbox_id"].get<std::string>());
  req.set_cwd(dir);
  v1::InstructionsResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().GetInstructions(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::string text;
  Json files = Json::array();
  for (const auto& f : resp.files()) {
    text += "# " + f.path() + "\n\n" + f.content() + (f.content().ends_with('\n') ? "\n" : "\n\n");
    files.push_back({{"path", f.path()}, {"content", f.content()}});
  }
  ToolResult r = ToolResult::Text(text.empty() ? "No AGENTS.md files between the workspace root and " + dir + "."
                                               : text);
  r.structured = {{"files", files}};
  return r;
}

Result<ToolResult> Toolbox::ListSkills(const Json&) {
  v1::Empty req;
  v1::ListSkillsResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().ListSkills(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::string text;
  Json items = Json::array();
  for (const auto& s : resp.skills()) {
    text += s.name() + ": " + s.description() + "\n";
    items.push_back({{"name", s.name()}, {"description", s.description()}});
  }
  ToolResult r = ToolResult::Text(text.empty() ? "No skills." : text);
  r.structured = {{"skills", items}};
  return r;
}

Result<ToolResult> Toolbox::GetSkill(const Json& a) {
  v1::SkillRef req;
  req.set_name(a["name"].get<std::string>());
  TRY(CheckSkillName("get_skill.name", req.name()));
  v1::Skill skill;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().GetSkill(&ctx, req, &skill);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::string text = "# " + skill.name() + "\n" + skill.description() + "\n\n" + skill.body();
  Json files = Json::array();
  if (skill.files_size() > 0) {
    text += (text.ends_with('\n') ? "\n" : "\n\n") + std::string("Files (read_skill_file):\n");
    for (const auto& f : skill.files()) {
      text += "  " + f + "\n";
      files.push_back(f);
    }
  }
  ToolResult r = ToolResult::Text(text);
  r.structured = {{"name", skill.name()}, {"description", skill.description()}, {"body", skill.body()},
                  {"files", files}};
  return r;
}

Result<ToolResult> Toolbox::ReadSkillFile(const Json& a) {
  v1::SkillFileRef req;
  req.set_name(a["name"].get<std::string>());
  req.set_path(a["path"].get<std::string>());
  TRY(CheckSkillName("read_skill_file.name", req.name()));
  TRY(CheckSkillPath("read_skill_file.path", req.path()));
  v1::FileChunk chunk;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().ReadSkillFile(&ctx, req, &chunk);
  if (!st.ok()) return DaemonError(st, *conn_);
  return ToolResult::Text(chunk.data());
}

Result<ToolResult> Toolbox::StageSkills(const Json& a) {
  TRY(Workspace("stage_skills", a));
  v1::StageSkillsRequest req;
  req.set_sandbox_id(a["sandbox_id"].get<std::string>());
  const Json& names = a["names"];
  for (size_t i = 0; i < names.size(); ++i) {
    TRY(CheckSkillName("stage_skills.names[" + std::to_string(i) + "]", names[i].get<std::string>()));
    req.add_names(names[i].get<std::string>());
  }
  v1::StageSkillsResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().StageSkills(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::string text = "Staged:\n";
  Json paths = Json::array();
  for (const auto& p : resp.paths()) {
    text += "  " + p + "\n";
    paths.push_back(p);
  }
  ToolResult r = ToolResult::Text(text);
  r.structured = {{"paths", paths}};
  return r;
}

}  // namespace airlock::client::mcp
