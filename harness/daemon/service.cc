#include "harness/daemon/service.h"

#include <grpcpp/grpcpp.h>
#include <sys/random.h>

#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include "harness/daemon/exec.h"
#include "harness/daemon/files.h"
#include "harness/daemon/instructions.h"
#include "harness/daemon/patch.h"
#include "harness/daemon/search.h"
#include "harness/tools/output_cap.h"
#include "harness/tools/skills.h"
#include "harness/tools/text.h"
#include "harness/daemon/transfer.h"
#include "images/oci/byte_source.h"
#include "runtime/proto/channel.h"
#include "runtime/proto/fileops.h"

namespace airlock::daemon {
namespace {

using grpc::ServerContext;
using grpc::Status;

constexpr uint64_t kDefaultRunOutput = 1 << 20;
constexpr uint64_t kMaxRunOutput = 64 << 20;
constexpr size_t kMaxListing = 100000;
constexpr size_t kProcessesKept = 256;  // finished background processes kept per sandbox
constexpr char kGenerationMetadata[] = "airlock-generation";  // see Locate
constexpr size_t kMaxLinesFile = 16u << 20;  // ReadLines reads the file whole
constexpr size_t kMaxImage = 32u << 20;

// Random per daemon start.
const std::string& ProcessIdSuffix() {
  static const std::string suffix = [] {
    unsigned char b[4] = {};
    if (getrandom(b, sizeof(b), 0) != sizeof(b)) abort();
    char hex[9];
    snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
    return std::string(hex);
  }();
  return suffix;
}

Status ToStatus(const ApiError& e) { return Status(static_cast<grpc::StatusCode>(e.code), e.message); }

#define API_TRY(expr)                                              \
  ({                                                               \
    auto _api = (expr);                                            \
    if (!_api) return ToStatus(_api.error());                      \
    std::move(_api).value();                                       \
  })

class Service final : public v1::Airlock::Service {
 public:
  Service(Manager* m, CallerLookup lookup) : m_(m), lookup_(std::move(lookup)) {}

  // --- sandboxes ---
  Status Create(ServerContext* ctx, const v1::CreateRequest* req, v1::Sandbox* out) override {
    Caller c = API_TRY(Who(ctx));
    *out = API_TRY(m_->Create(c, *req));
    return Status::OK;
  }
  Status Get(ServerContext* ctx, const v1::SandboxRef* req, v1::Sandbox* out) override {
    Caller c = API_TRY(Who(ctx));
    *out = API_TRY(m_->Get(c, req->id()));
    return Status::OK;
  }
  Status List(ServerContext* ctx, const v1::ListRequest* req, v1::ListResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    for (auto& s : m_->List(c, *req)) *out->add_sandboxes() = std::move(s);
    return Status::OK;
  }
  Status Destroy(ServerContext* ctx, const v1::SandboxRef* req, v1::Sandbox* out) override {
    Caller c = API_TRY(Who(ctx));
    *out = API_TRY(m_->Destroy(c, req->id()));
    return Status::OK;
  }
  Status Pause(ServerContext* ctx, const v1::SandboxRef* req, v1::Sandbox* out) override {
    Caller c = API_TRY(Who(ctx));
    *out = API_TRY(m_->Pause(c, req->id()));
    return Status::OK;
  }
  Status Resume(ServerContext* ctx, const v1::SandboxRef* req, v1::Sandbox* out) override {
    Caller c = API_TRY(Who(ctx));
    *out = API_TRY(m_->Resume(c, req->id()));
    return Status::OK;
  }
  Status Stats(ServerContext* ctx, const v1::SandboxRef* req, v1::SandboxStats* out) override {
    Caller c = API_TRY(Who(ctx));
    (void)API_TRY(Locate(ctx, c, req->id()));
    *out = API_TRY(m_->Stats(c, req->id()));
    return Status::OK;
  }
  Status Snapshot(ServerContext* ctx, const v1::SnapshotRequest* req, v1::SnapshotInfo* out) override {
    Caller c = API_TRY(Who(ctx));
    (void)API_TRY(Locate(ctx, c, req->sandbox_id()));
    *out = API_TRY(m_->Snapshot(c, *req));
    return Status::OK;
  }
  Status ListSnapshots(ServerContext* ctx, const v1::ListSnapshotsRequest* req,
                       v1::ListSnapshotsResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    for (auto& s : m_->ListSnapshots(c, req->sandbox_id())) *out->add_snapshots() = std::move(s);
    return Status::OK;
  }
  Status DeleteSnapshot(ServerContext* ctx, const v1::SnapshotRef* req, v1::SnapshotInfo* out) override {
    Caller c = API_TRY(Who(ctx));
    *out = API_TRY(m_->DeleteSnapshot(c, req->id()));
    return Status::OK;
  }
  Status Restore(ServerContext* ctx, const v1::RestoreRequest* req, v1::Sandbox* out) override {
    Caller c = API_TRY(Who(ctx));
    *out = API_TRY(m_->Restore(c, *req));
    return Status::OK;
  }
  Status Fork(ServerContext* ctx, const v1::ForkRequest* req, v1::ForkResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    for (auto& s : API_TRY(m_->Fork(c, *req))) *out->add_sandboxes() = std::move(s);
    return Status::OK;
  }
  Status ExportSnapshot(ServerContext* ctx, const v1::SnapshotRef* req, grpc::ServerWriter<v1::FileChunk>* w) override {
    Caller c = API_TRY(Who(ctx));
    auto sink = [&](std::string_view d) {
      v1::FileChunk chunk;
      chunk.set_data(std::string(d));
      return w->Write(chunk);
    };
    API_TRY(m_->ExportSnapshot(c, req->id(), sink));
    return Status::OK;
  }
  Status ImportSnapshot(ServerContext* ctx, grpc::ServerReader<v1::ImportSnapshotRequest>* r,
                        v1::SnapshotInfo* out) override {
    Caller c = API_TRY(Who(ctx));
    // The archive as a byte source over the stream's messages.
    struct StreamSource : images::ByteSource {
      grpc::ServerReader<v1::ImportSnapshotRequest>* reader;
      v1::ImportSnapshotRequest msg;
      size_t off = 0;
      bool first = true, done = false;
      std::map<std::string, std::string> labels;
      Result<size_t> Read(void* buf, size_t n) override {
        while (off >= msg.data().size()) {
          if (done || !reader->Read(&msg)) {
            done = true;
            return size_t{0};
          }
          if (first) labels.insert(msg.labels().begin(), msg.labels().end());
          first = false;
          off = 0;
        }
        size_t k = std::min(n, msg.data().size() - off);
        memcpy(buf, msg.data().data() + off, k);
        off += k;
        return k;
      }
    } src;
    src.reader = r;
    // The labels come with the first message: read it before the import.
    char probe;
    size_t got = API_TRY([&]() -> ApiResult<size_t> {
      auto n = src.Read(&probe, 0);
      if (!n) return FromError(n.error(), "import snapshot");
      return *n;
    }());
    (void)got;
    *out = API_TRY(m_->ImportSnapshot(c, src, src.labels));
    return Status::OK;
  }
  Status Events(ServerContext* ctx, const v1::EventsRequest* req, grpc::ServerWriter<v1::Event>* w) override {
    Caller c = API_TRY(Who(ctx));
    uint64_t since = req->from_start() ? 0 : req->since_seq() ? req->since_seq() : m_->LastEventSeq();
    while (!ctx->IsCancelled()) {
      for (auto& e : m_->WaitEvents(c, req->sandbox_id(), since, 500)) {
        since = std::max(since, e.seq());
        if (e.type() == v1::EVENT_TYPE_UNSPECIFIED) continue;
        if (!w->Write(e)) return Status::CANCELLED;
      }
    }
    return Status::CANCELLED;
  }

  // --- agent tools ---
  Status ApplyPatch(ServerContext* ctx, const v1::ApplyPatchRequest* req, v1::ApplyPatchResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    auto live = API_TRY(Locate(ctx, c, req->sandbox_id()));
    live->Touch();
    std::lock_guard lock(live->patch_mu);
    *out = API_TRY(ApplyPatchInSandbox(*live, *req));
    return Status::OK;
  }

  Status GetInstructions(ServerContext* ctx, const v1::InstructionsRequest* req, v1::InstructionsResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    auto live = API_TRY(Locate(ctx, c, req->sandbox_id()));
    live->Touch();
    *out = API_TRY(GatherInstructions(*live, *req));
    return Status::OK;
  }

  Status ReadLines(ServerContext* ctx, const v1::ReadLinesRequest* req, v1::ReadLinesResponse* out) override {
    auto [live, op] = API_TRY(FileSetup(ctx, req->file(), proto::FileOp::kRead, "read_lines.file"));
    std::string data = API_TRY(FileOpToString(*live, op, kMaxLinesFile, "read " + op.path));
    tools::LineRange r = tools::SliceLines(data, req->start_line(), req->max_lines());
    out->set_content(tools::ValidUtf8(r.text));  // a proto string: UTF-8 only
    out->set_first_line(r.first);
    out->set_last_line(r.last);
    out->set_total_lines(r.total);
    out->set_more(r.more);
    return Status::OK;
  }
  Status Search(ServerContext* ctx, const v1::SearchRequest* req, v1::SearchResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    auto live = API_TRY(Locate(ctx, c, req->sandbox_id()));
    live->Touch();
    *out = API_TRY(SearchInSandbox(*live, *req));
    return Status::OK;
  }
  Status ViewImage(ServerContext* ctx, const v1::FileRequest* req, v1::ImageResponse* out) override {
    auto [live, op] = API_TRY(FileSetup(ctx, *req, proto::FileOp::kRead, "view_image"));
    std::string data = API_TRY(FileOpToString(*live, op, kMaxImage, "read " + op.path));
    std::string type = tools::ImageType(data);
    if (type.empty())
      return Status(grpc::FAILED_PRECONDITION, "view_image: " + op.path +
                                                   " is not an image (PNG, JPEG, GIF, WebP, BMP or SVG)");
    out->set_mime_type(type);
    out->set_data(std::move(data));
    return Status::OK;
  }

  // --- skills (the operator's directory; the same for every caller) ---
  ApiResult<std::string> SkillsDir() {
    if (m_->config().skills_dir.empty())
      return ApiFail(Code::kFailedPrecondition, "skills: this daemon serves none (skills_dir is not set)");
    return m_->config().skills_dir;
  }
  static std::unexpected<ApiError> SkillError(const Error& e) {
    // A symlink below the skills directory is never followed (ELOOP, EXDEV).
    const Code code = e.err == ENOENT                    ? Code::kNotFound
                      : e.err == 0                       ? Code::kInvalidArgument
                      : e.err == ELOOP || e.err == EXDEV ? Code::kFailedPrecondition
                                                         : Code::kInternal;
    return ApiFail(code, "skills: " + e.Message());
  }
  Status ListSkills(ServerContext* ctx, const v1::Empty*, v1::ListSkillsResponse* out) override {
    API_TRY(Who(ctx));
    std::vector<std::string> problems;
    auto skills = tools::ListSkills(API_TRY(SkillsDir()), &problems);
    if (!skills) return ToStatus(SkillError(skills.error()).error());
    for (const auto& p : problems) fprintf(stderr, "airlockd: skills: %s (left out)\n", p.c_str());
    for (const auto& k : *skills) {
      auto* s = out->add_skills();
      s->set_name(k.name);
      s->set_description(k.description);
    }
    return Status::OK;
  }
  Status GetSkill(ServerContext* ctx, const v1::SkillRef* req, v1::Skill* out) override {
    API_TRY(Who(ctx));
    auto skill = tools::LoadSkill(API_TRY(SkillsDir()), req->name());
    if (!skill) return ToStatus(SkillError(skill.error()).error());
    out->set_name(skill->summary.name);
    out->set_description(skill->summary.description);
    out->set_body(skill->body);
    for (const auto& f : skill->files) out->add_files(f);
    return Status::OK;
  }
  Status ReadSkillFile(ServerContext* ctx, const v1::SkillFileRef* req, v1::FileChunk* out) override {
    API_TRY(Who(ctx));
    auto data = tools::ReadSkillFile(API_TRY(SkillsDir()), req->name(), req->path());
    if (!data) return ToStatus(SkillError(data.error()).error());
    out->set_data(std::move(*data));
    return Status::OK;
  }
  Status StageSkills(ServerContext* ctx, const v1::StageSkillsRequest* req, v1::StageSkillsResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    auto live = API_TRY(Locate(ctx, c, req->sandbox_id()));
    const std::string dir = API_TRY(SkillsDir());
    const std::string dest = req->directory().empty() ? live->workspace + "/.skills"
                                                      : API_TRY(SandboxPath(*live, "stage_skills.directory", req->directory()));
    Identity who = API_TRY(ResolveIdentity(*live, "stage_skills.user", req->user()));
    for (int i = 0; i < req->names_size(); ++i) {
      const std::string& name = req->names(i);
      auto skill = tools::LoadSkill(dir, name);
      if (!skill) return ToStatus(SkillError(skill.error()).error());
      std::vector<std::string> files = skill->files;
      files.push_back("SKILL.md");
      for (const auto& f : files) {
        auto data = tools::ReadSkillFile(dir, name, f);
        if (!data) return ToStatus(SkillError(data.error()).error());
        proto::FileOpRequest op;
        op.op = proto::FileOp::kWrite;
        op.path = dest + "/" + name + "/" + f;
        op.uid = who.uid;
        op.gid = who.gid;
        op.cwd = live->workspace;
        op.flags = proto::kWriteAtomic | proto::kParents | proto::kNoSymlinks;
        API_TRY(FileOpFromString(*live, op, *data, "stage skill " + name + ": " + f));
      }
      out->add_paths(dest + "/" + name);
    }
    return Status::OK;
  }

  // --- commands ---
  Status Exec(ServerContext* ctx, grpc::ServerReaderWriter<v1::ExecOutput, v1::ExecInput>* stream) override {
    Caller c = API_TRY(Who(ctx));
    v1::ExecInput first;
    if (!stream->Read(&first)) return Status(grpc::INVALID_ARGUMENT, "exec: no start message");
    if (!first.has_start()) return Status(grpc::INVALID_ARGUMENT, "exec: the first message must be start");
    const v1::Command& command = first.start().command();
    auto live = API_TRY(Locate(ctx, c, command.sandbox_id()));
    auto cmd = API_TRY(CommandHandle::Start(live, command, first.start().stdin() || command.tty(), "exec.start.command"));
    // Only this thread writes to the stream (the reader below only reads).
    if (cmd->pid() != 0) {  // 0: it never ran; the exit says why
      v1::ExecOutput started;
      started.set_started_pid(cmd->pid());
      if (!stream->Write(started)) return Status::CANCELLED;
    }
    // The caller's messages, on their own thread: stdin may block on a full
    // pipe without holding up the output.
    std::promise<void> reader_finished;
    std::future<void> reader_done = reader_finished.get_future();
    std::thread reader([&] {
      v1::ExecInput in;
      while (stream->Read(&in)) {
        switch (in.input_case()) {
          case v1::ExecInput::kStdin:
            (void)cmd->WriteStdin(in.stdin());  // false: it stopped reading; the data is dropped
            break;
          case v1::ExecInput::kCloseStdin:
            cmd->CloseStdin();
            break;
          case v1::ExecInput::kSignal:
            (void)cmd->Signal(in.signal().signo());
            break;
          case v1::ExecInput::kResize:
            (void)cmd->Resize(in.resize().rows(), in.resize().cols());
            break;
          default:
            break;
        }
      }
      reader_finished.set_value();
    });
    auto send = [&](bool is_out, std::string_view data) {
      v1::ExecOutput o;
      if (is_out) o.set_stdout(std::string(data));
      else o.set_stderr(std::string(data));
      return stream->Write(o);
    };
    OutputSink sink{[&](std::string_view d) { return send(true, d); }, [&](std::string_view d) { return send(false, d); }};
    v1::ExitStatus exit = Pump(*cmd, sink, {}, false, [ctx] { return ctx->IsCancelled(); });
    v1::ExecOutput last;
    *last.mutable_exit() = exit;
    stream->Write(last);
    // The caller half-closes once it has the exit; one that doesn't is cut off.
    if (reader_done.wait_for(std::chrono::seconds(1)) != std::future_status::ready) ctx->TryCancel();
    reader.join();
    m_->AfterRun(live);
    return Status::OK;
  }

  Status Run(ServerContext* ctx, const v1::RunRequest* req, v1::RunResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    auto live = API_TRY(Locate(ctx, c, req->command().sandbox_id()));
    uint64_t cap = req->max_output_bytes() ? req->max_output_bytes() : kDefaultRunOutput;
    if (cap > kMaxRunOutput) return Status(grpc::INVALID_ARGUMENT, "run.max_output_bytes: at most 64 MiB");
    auto cmd = API_TRY(CommandHandle::Start(live, req->command(), !req->stdin().empty(), "run.command"));
    tools::OutputCap o(cap, req->keep_tail()), e(cap, req->keep_tail());
    auto keep = [&](tools::OutputCap* buf, std::string_view d) {
      if (ctx->IsCancelled()) return false;
      buf->Append(d);
      return true;
    };
    OutputSink sink{[&](std::string_view d) { return keep(&o, d); }, [&](std::string_view d) { return keep(&e, d); }};
    *out->mutable_exit() = Pump(*cmd, sink, req->stdin(), true, [ctx] { return ctx->IsCancelled(); });
    out->set_stdout_truncated(o.truncated());
    out->set_stderr_truncated(e.truncated());
    out->set_stdout_omitted_bytes(o.omitted());
    out->set_stderr_omitted_bytes(e.omitted());
    out->set_stdout(o.Take());
    out->set_stderr(e.Take());
    out->set_pid(cmd->pid());
    {
      std::lock_guard lock(live->mu);
      out->set_generation(live->info.generation());
    }
    m_->AfterRun(live);
    return Status::OK;
  }

  Status StartProcess(ServerContext* ctx, const v1::StartProcessRequest* req, v1::Process* out) override {
    auto p = API_TRY(StartBackground(ctx, *req));
    *out = p->Describe();
    return Status::OK;
  }
  Status StartProcessAndRead(ServerContext* ctx, const v1::StartProcessAndReadRequest* req,
                             v1::ReadProcessOutputResponse* out) override {
    auto p = API_TRY(StartBackground(ctx, req->start()));
    *out = p->Read(req->max_bytes(), req->wait_ms());
    return Status::OK;
  }
  ApiResult<std::shared_ptr<Process>> StartBackground(ServerContext* ctx, const v1::StartProcessRequest& req) {
    Caller c = TRY(Who(ctx));
    auto live = TRY(Locate(ctx, c, req.command().sandbox_id()));
    std::string pid;
    {
      std::lock_guard lock(live->mu);
      // Unique across daemon restarts: a handle from before one never names
      // a command started after it.
      pid = "p" + std::to_string(live->next_process++) + "-" + ProcessIdSuffix();
      // Keep the table bounded: forget the oldest finished processes.
      for (auto it = live->processes.begin(); live->processes.size() >= kProcessesKept && it != live->processes.end();)
        it = it->second->Finished() ? live->processes.erase(it) : std::next(it);
    }
    auto p = TRY(Process::Start(live, pid, req));
    {
      std::lock_guard lock(live->mu);
      live->processes[pid] = p;
    }
    return p;
  }
  Status GetProcess(ServerContext* ctx, const v1::ProcessRef* req, v1::Process* out) override {
    auto p = API_TRY(FindProcess(ctx, *req));
    *out = p->Describe();
    return Status::OK;
  }
  Status ListProcesses(ServerContext* ctx, const v1::SandboxRef* req, v1::ListProcessesResponse* out) override {
    Caller c = API_TRY(Who(ctx));
    auto live = API_TRY(Locate(ctx, c, req->id()));
    std::vector<std::shared_ptr<Process>> all;
    {
      std::lock_guard lock(live->mu);
      for (auto& [id, p] : live->processes) all.push_back(p);
    }
    for (auto& p : all) *out->add_processes() = p->Describe();
    return Status::OK;
  }
  Status ReadProcessOutput(ServerContext* ctx, const v1::ReadProcessOutputRequest* req,
                           v1::ReadProcessOutputResponse* out) override {
    auto p = API_TRY(FindProcess(ctx, req->process()));
    *out = p->Read(req->max_bytes(), req->wait_ms());
    return Status::OK;
  }
  Status WriteProcessStdin(ServerContext* ctx, const v1::WriteProcessStdinRequest* req, v1::Process* out) override {
    auto p = API_TRY(FindProcess(ctx, req->process()));
    API_TRY(p->WriteStdin(req->data(), req->close()));
    *out = p->Describe();
    return Status::OK;
  }
  Status SignalProcess(ServerContext* ctx, const v1::SignalProcessRequest* req, v1::Process* out) override {
    auto p = API_TRY(FindProcess(ctx, req->process()));
    API_TRY(p->Signal(req->signo()));
    *out = p->Describe();
    return Status::OK;
  }

  // --- files ---
  Status ReadFile(ServerContext* ctx, const v1::ReadFileRequest* req, grpc::ServerWriter<v1::FileChunk>* w) override {
    auto [live, op] = API_TRY(FileSetup(ctx, req->file(), proto::FileOp::kRead, "read_file.file"));
    op.offset = req->offset();
    op.length = req->length();
    FileOpIo io;
    io.sink = [&](std::string_view d) {
      v1::FileChunk chunk;
      chunk.set_data(std::string(d));
      return w->Write(chunk);
    };
    API_TRY(RunFileOp(*live, op, io, "read " + op.path));
    return Status::OK;
  }
  Status WriteFile(ServerContext* ctx, grpc::ServerReader<v1::WriteFileRequest>* r, v1::FileInfo* out) override {
    v1::WriteFileRequest first;
    if (!r->Read(&first) || !first.has_header()) return Status(grpc::INVALID_ARGUMENT, "write_file: the first message must be the header");
    const auto& h = first.header();
    auto [live, op] = API_TRY(FileSetup(ctx, h.file(), proto::FileOp::kWrite, "write_file.header.file"));
    if (h.mode() > 07777) return Status(grpc::INVALID_ARGUMENT, "write_file.header.mode: more than permission bits");
    switch (h.write_mode()) {
      case v1::WRITE_MODE_UNSPECIFIED:
      case v1::WRITE_MODE_ATOMIC: op.flags = proto::kWriteAtomic; break;
      case v1::WRITE_MODE_TRUNCATE: op.flags = proto::kWriteCreate | proto::kWriteTruncate; break;
      case v1::WRITE_MODE_APPEND: op.flags = proto::kWriteCreate | proto::kWriteAppend; break;
      case v1::WRITE_MODE_CREATE: op.flags = proto::kWriteCreate | proto::kWriteExclusive; break;
      default: return Status(grpc::INVALID_ARGUMENT, "write_file.header.write_mode: unknown");
    }
    if (h.make_parents()) op.flags |= proto::kParents;
    if (h.mode()) {
      op.flags |= proto::kModeSet;
      op.mode = h.mode();
    }
    FileOpIo io;
    io.source = [&](std::string* chunk) {
      v1::WriteFileRequest part;
      while (r->Read(&part)) {
        if (part.has_data()) {
          *chunk = std::move(*part.mutable_data());
          return true;
        }
      }
      return false;
    };
    API_TRY(RunFileOp(*live, op, io, "write " + op.path));
    return StatInto(*live, op, false, out);
  }
  Status ListDir(ServerContext* ctx, const v1::FileRequest* req, v1::ListDirResponse* out) override {
    auto [live, op] = API_TRY(FileSetup(ctx, *req, proto::FileOp::kList, "list_dir"));
    std::string data = API_TRY(FileOpToString(*live, op, 256 << 20, "list " + op.path));
    auto records = proto::DecodeStatRecords(data, kMaxListing);
    if (!records) return Status(grpc::INTERNAL, "list " + op.path + ": airlock-init: " + records.error().Message());
    for (const auto& rec : *records) *out->add_entries() = ToFileInfo(rec);
    return Status::OK;
  }
  Status Stat(ServerContext* ctx, const v1::StatRequest* req, v1::FileInfo* out) override {
    auto [live, op] = API_TRY(FileSetup(ctx, req->file(), proto::FileOp::kStat, "stat.file"));
    return StatInto(*live, op, req->follow_symlinks(), out);
  }
  Status Mkdir(ServerContext* ctx, const v1::MkdirRequest* req, v1::FileInfo* out) override {
    auto [live, op] = API_TRY(FileSetup(ctx, req->file(), proto::FileOp::kMkdir, "mkdir.file"));
    if (req->mode() > 07777) return Status(grpc::INVALID_ARGUMENT, "mkdir.mode: more than permission bits");
    op.mode = req->mode() ? req->mode() : 0755;
    op.flags = (req->parents() ? proto::kParents : 0) | proto::kModeSet;
    API_TRY(RunFileOp(*live, op, {}, "mkdir " + op.path));
    return StatInto(*live, op, false, out);
  }
  Status Remove(ServerContext* ctx, const v1::RemoveRequest* req, v1::Empty*) override {
    auto [live, op] = API_TRY(FileSetup(ctx, req->file(), proto::FileOp::kRemove, "remove.file"));
    if (op.path == "/") return Status(grpc::INVALID_ARGUMENT, "remove.file.path: refusing to remove /");
    op.flags = req->recursive() ? proto::kRecursive : 0;
    API_TRY(RunFileOp(*live, op, {}, "remove " + op.path));
    return Status::OK;
  }
  Status Rename(ServerContext* ctx, const v1::RenameRequest* req, v1::Empty*) override {
    auto [live, op] = API_TRY(FileSetup(ctx, req->file(), proto::FileOp::kRename, "rename.file"));
    op.path2 = API_TRY(SandboxPath(*live, "rename.to", req->to()));
    op.flags = req->no_replace() ? proto::kNoReplace : 0;
    API_TRY(RunFileOp(*live, op, {}, "rename " + op.path));
    return Status::OK;
  }
  Status Upload(ServerContext* ctx, grpc::ServerReader<v1::UploadRequest>* r, v1::Empty*) override {
    v1::UploadRequest first;
    if (!r->Read(&first) || !first.has_directory())
      return Status(grpc::INVALID_ARGUMENT, "upload: the first message must name the directory");
    auto [live, op] = API_TRY(FileSetup(ctx, first.directory(), proto::FileOp::kMkdir, "upload.directory"));
    // The caller's tar chunks as a byte stream for the tar reader.
    class StreamSource : public images::ByteSource {
     public:
      explicit StreamSource(grpc::ServerReader<v1::UploadRequest>* r) : r_(r) {}
      Result<size_t> Read(void* buf, size_t n) override {
        while (pos_ == chunk_.size()) {
          v1::UploadRequest part;
          if (!r_->Read(&part)) return 0;
          if (!part.has_tar()) continue;
          chunk_ = std::move(*part.mutable_tar());
          pos_ = 0;
        }
        size_t k = std::min(n, chunk_.size() - pos_);
        memcpy(buf, chunk_.data() + pos_, k);
        pos_ += k;
        return k;
      }

     private:
      grpc::ServerReader<v1::UploadRequest>* r_;
      std::string chunk_;
      size_t pos_ = 0;
    } source(r);
    API_TRY(UploadTree(*live, op, source));
    return Status::OK;
  }
  Status Download(ServerContext* ctx, const v1::FileRequest* req, grpc::ServerWriter<v1::FileChunk>* w) override {
    auto [live, op] = API_TRY(FileSetup(ctx, *req, proto::FileOp::kStat, "download"));
    // The tar writer hands over 64 KiB pieces: one message each.
    auto sink = [&](std::string_view d) {
      v1::FileChunk chunk;
      chunk.set_data(std::string(d));
      return w->Write(chunk);
    };
    API_TRY(DownloadTree(*live, op, sink));
    return Status::OK;
  }

  Status Version(ServerContext*, const v1::Empty*, v1::VersionResponse* out) override {
    out->set_version("0.1.0");
    out->set_init_protocol(proto::kVersion);
    return Status::OK;
  }

 private:
  ApiResult<Caller> Who(ServerContext* ctx) {
    auto c = lookup_(ctx);
    if (!c) return ApiFail(Code::kUnauthenticated, "unauthenticated caller (" + ctx->peer() + ")");
    return *c;
  }

  // The caller's live sandbox `id`; its generation goes out with the reply
  // (initial metadata "airlock-generation", on every call that names a
  // sandbox: streams and empty replies too), so a caller can tell when it
  // is talking to a sandbox recovery rebuilt.
  ApiResult<std::shared_ptr<Live>> Locate(ServerContext* ctx, const Caller& c, const std::string& id) {
    auto live = TRY(m_->Find(c, id));
    uint64_t generation;
    {
      std::lock_guard lock(live->mu);
      generation = live->info.generation() ? live->info.generation() : 1;
    }
    ctx->AddInitialMetadata(kGenerationMetadata, std::to_string(generation));
    return live;
  }

  ApiResult<std::pair<std::shared_ptr<Live>, proto::FileOpRequest>> FileSetup(ServerContext* ctx,
                                                                               const v1::FileRequest& f,
                                                                               proto::FileOp kind,
                                                                               const std::string& field) {
    Caller c = TRY(Who(ctx));
    auto live = TRY(Locate(ctx, c, f.sandbox_id()));
    proto::FileOpRequest op;
    op.op = kind;
    op.path = TRY(SandboxPath(*live, field + ".path", f.path()));
    Identity who = TRY(ResolveIdentity(*live, field + ".user", f.user()));
    op.uid = who.uid;
    op.gid = who.gid;
    op.cwd = live->workspace;
    return std::make_pair(live, op);
  }

  Status StatInto(Live& live, proto::FileOpRequest op, bool follow, v1::FileInfo* out) {
    op.op = proto::FileOp::kStat;
    op.flags = follow ? proto::kFollow : 0;
    op.mode = 0;
    op.path2.clear();
    std::string data = API_TRY(FileOpToString(live, op, 64 * 1024, "stat " + op.path));
    auto records = proto::DecodeStatRecords(data, 1);
    if (!records || records->size() != 1)
      return Status(grpc::INTERNAL, "stat " + op.path + ": airlock-init sent a malformed record");
    *out = ToFileInfo((*records)[0]);
    return Status::OK;
  }

  ApiResult<std::shared_ptr<Process>> FindProcess(ServerContext* ctx, const v1::ProcessRef& ref) {
    Caller c = TRY(Who(ctx));
    auto live = TRY(Locate(ctx, c, ref.sandbox_id()));
    std::lock_guard lock(live->mu);
    auto it = live->processes.find(ref.process_id());
    if (it == live->processes.end()) return ApiFail(Code::kNotFound, "no process " + ref.process_id() + " in " + ref.sandbox_id());
    return it->second;
  }

  Manager* m_;
  CallerLookup lookup_;
};

}  // namespace

std::unique_ptr<v1::Airlock::Service> NewService(Manager* manager, CallerLookup lookup) {
  return std::make_unique<Service>(manager, std::move(lookup));
}

}  // namespace airlock::daemon
