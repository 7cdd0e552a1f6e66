// airlockd: the harness daemon. Serves airlock.v1 on a unix socket; keeps
// its state in SQLite under the state root. See `airlockd --help`.
#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "harness/cli/install_paths.h"
#include "harness/daemon/auth.h"
#include "harness/daemon/keeper.h"
#include "harness/daemon/listener.h"
#include "harness/daemon/manager.h"
#include "harness/daemon/service.h"
#include "runtime/core/kernel_check.h"
#include "runtime/launch/state.h"

namespace {

using namespace airlock;
using namespace airlock::daemon;

constexpr const char* kUsage =
    "usage: airlockd [--config FILE] [--socket PATH] [--socket-mode OCTAL] [--socket-group NAME]\n"
    "                [--state-dir DIR] [--allow-root DIR]... [--max-sandboxes N] [--warm-pool N]\n"
    "                [--skills-dir DIR] [--no-zygote]\n"
    "\n"
    "Serves the airlock.v1 API on a unix socket (default /run/airlock/airlockd.sock,\n"
    "mode 0600: root only). Whoever may connect may create sandboxes as itself and\n"
    "sees only its own; root sees all. --allow-root names host directories that\n"
    "manifests may bind (read-only, or as output directories) — callers still need\n"
    "their own access to each path. The config file is JSON with the same keys:\n"
    "  {\"socket\": ..., \"socket_mode\": \"0660\", \"socket_group\": ..., \"state_dir\": ...,\n"
    "   \"allowed_roots\": [...], \"max_sandboxes\": N, \"warm_pool\": N, \"skills_dir\": DIR}\n"
    "--skills-dir DIR serves the skills in DIR (folders with a SKILL.md) to every caller.\n"
    "TCP is served only with TLS: \"tcp\": {\"listen\": \"127.0.0.1:7443\", \"cert\": PEM,\n"
    "\"key\": PEM, and \"client_ca\": PEM + \"client_uids\": {\"CN\": uid} (client certificates)\n"
    "and/or \"tokens_file\": FILE (root-owned, 0600; lines \"uid token\", sent as\n"
    "\"authorization: Bearer TOKEN\")}.\n"
    "--warm-pool N keeps N sandboxes of the common shape (host image, no limits,\n"
    "no host paths) started, so creating one only hands it out.\n"
    "--no-zygote (\"zygote\": false) clones each sandbox in airlockd itself instead of\n"
    "in a zygote (an airlock-init started once): ~1 ms slower per create.\n"
    "Network mode proxy (the egress proxy, airlock-proxy, run as an unprivileged user):\n"
    "  \"egress\": {\"user\": \"nobody\", \"secrets\": {NAME: {\"value_file\": FILE, \"env\": VAR,\n"
    "   \"hosts\": [\"api.example.com\"], \"header\": \"Authorization\", \"add\": \"Bearer {value}\"}},\n"
    "   \"upstream_ca_file\": PEM, \"resolve\": {NAME: [ADDR]}, \"expose_address\": \"127.0.0.1\"}\n"
    "(docs/egress.md).\n";

[[noreturn]] void Die(const std::string& msg) {
  fprintf(stderr, "airlockd: %s\n", msg.c_str());
  exit(1);
}

struct Options {
  DaemonConfig config;
  TlsConfig tls;
  mode_t socket_mode = 0600;
  std::string socket_group;
};

std::string OctalMode(mode_t m) {
  char buf[8];
  snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(m));
  return buf;
}

void ApplyJson(const std::string& file, Options* o) {
  std::ifstream in(file);
  if (!in) Die("config " + file + ": can't read it");
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) Die("config " + file + ": not a JSON object");
  for (auto& [key, value] : j.items()) {
    auto need = [&](bool ok, const char* what) {
      if (!ok) Die("config " + file + ": \"" + key + "\" must be " + what);
    };
    if (key == "socket") {
      need(value.is_string(), "a path");
      o->config.socket = value.get<std::string>();
    } else if (key == "socket_mode") {
      need(value.is_string(), "an octal string like \"0660\"");
      o->socket_mode = static_cast<mode_t>(strtoul(value.get<std::string>().c_str(), nullptr, 8)) & 0777;
    } else if (key == "socket_group") {
      need(value.is_string(), "a group name");
      o->socket_group = value.get<std::string>();
    } else if (key == "state_dir") {
      need(value.is_string(), "a directory");
      o->config.paths.state_root = value.get<std::string>();
    } else if (key == "skills_dir") {
      need(value.is_string() && IsNormalizedAbsolutePath(value.get<std::string>()), "an absolute directory");
      o->config.skills_dir = value.get<std::string>();
    } else if (key == "allowed_roots") {
      need(value.is_array(), "a list of directories");
      for (auto& r : value) {
        need(r.is_string(), "a list of directories");
        o->config.allowed_roots.push_back(r.get<std::string>());
      }
    } else if (key == "max_sandboxes") {
      need(value.is_number_unsigned(), "a positive number");
      o->config.max_sandboxes = value.get<size_t>();
    } else if (key == "tcp") {
      // {"listen": "host:port", "cert": PEM, "key": PEM, "client_ca": PEM,
      //  "client_uids": {"CN": uid}, "tokens_file": path}
      need(value.is_object(), "an object");
      for (auto& [k, v] : value.items()) {
        auto str = [&](std::string* out) {
          if (!v.is_string()) Die("config " + file + ": \"tcp." + k + "\" must be a string");
          *out = v.get<std::string>();
        };
        if (k == "listen") str(&o->tls.listen);
        else if (k == "cert") str(&o->tls.cert);
        else if (k == "key") str(&o->tls.key);
        else if (k == "client_ca") str(&o->tls.client_ca);
        else if (k == "tokens_file") str(&o->tls.tokens_file);
        else if (k == "client_uids") {
          if (!v.is_object()) Die("config " + file + ": \"tcp.client_uids\" must map names to uids");
          for (auto& [cn, uid] : v.items()) {
            if (!uid.is_number_unsigned()) Die("config " + file + ": \"tcp.client_uids." + cn + "\" must be a uid");
            o->tls.client_uids[cn] = uid.get<uid_t>();
          }
        } else {
          Die("config " + file + ": unknown key \"tcp." + k + "\"");
        }
      }
    } else if (key == "init_binary") {
      // For tests (a hostile init): the default is the airlock-init beside us.
      need(value.is_string(), "a path");
      o->config.paths.init_binary = value.get<std::string>();
    } else if (key == "zygote") {
      need(value.is_boolean(), "true or false");
      o->config.zygote = value.get<bool>();
    } else if (key == "warm_pool") {
      need(value.is_number_unsigned(), "a number");
      o->config.warm_pool = value.get<size_t>();
    } else if (key == "snapshot_keep_last" || key == "snapshot_max_per_sandbox" || key == "snapshot_max_total" ||
               key == "snapshot_max_bytes") {
      need(value.is_number_unsigned(), "a number");
      if (key == "snapshot_keep_last") o->config.snapshot_keep_last = value.get<size_t>();
      if (key == "snapshot_max_per_sandbox") o->config.snapshot_max_per_sandbox = value.get<size_t>();
      if (key == "snapshot_max_total") o->config.snapshot_max_total = value.get<size_t>();
      if (key == "snapshot_max_bytes") o->config.snapshot_max_bytes = value.get<uint64_t>();
    } else if (key == "egress") {
      // Secrets written into the config make the file itself a credential.
      struct stat st;
      if (value.is_object() && value.contains("secrets") && stat(file.c_str(), &st) == 0 &&
          ((st.st_mode & 077) != 0 || st.st_uid != 0))
        Die("config " + file + ": it holds egress.secrets, so it must be owned by root and mode 0600 (it is " +
            std::to_string(st.st_uid) + ", " + OctalMode(st.st_mode & 07777) + ")");
      auto egress = ParseEgressConfig(value);
      if (!egress) Die("config " + file + ": " + egress.error().Message());
      o->config.egress = std::move(*egress);
    } else {
      Die("config " + file + ": unknown key \"" + key + "\"");
    }
  }
}

std::string ReadPem(const std::string& path, const char* what) {
  if (path.empty()) Die(std::string(what) + ": needed for TCP (TLS only)");
  std::ifstream in(path);
  if (!in) Die(std::string(what) + ": can't read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Options Parse(int argc, char** argv) {
  Options o;
  o.config.paths = cli::DefaultPaths(AIRLOCK_SOURCE_DIR);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      exit(0);
    } else if (a == "--config") {
      ApplyJson(value(), &o);
    } else if (a == "--socket") {
      o.config.socket = value();
    } else if (a == "--socket-mode") {
      o.socket_mode = static_cast<mode_t>(strtoul(value().c_str(), nullptr, 8)) & 0777;
    } else if (a == "--socket-group") {
      o.socket_group = value();
    } else if (a == "--state-dir") {
      o.config.paths.state_root = value();
    } else if (a == "--allow-root") {
      o.config.allowed_roots.push_back(value());
    } else if (a == "--skills-dir") {
      o.config.skills_dir = value();
      if (!IsNormalizedAbsolutePath(o.config.skills_dir)) Die("--skills-dir must be an absolute, normalized path");
    } else if (a == "--max-sandboxes") {
      o.config.max_sandboxes = strtoul(value().c_str(), nullptr, 10);
    } else if (a == "--no-zygote") {
      o.config.zygote = false;
    } else if (a == "--warm-pool") {
      o.config.warm_pool = strtoul(value().c_str(), nullptr, 10);
    } else {
      Die("unknown option " + a + " (see --help)");
    }
  }
  for (const auto& r : o.config.allowed_roots)
    if (!IsNormalizedAbsolutePath(r)) Die("allowed root \"" + r + "\" must be an absolute, normalized path");
  if (!o.tls.listen.empty() && o.tls.client_uids.empty() && o.tls.tokens_file.empty())
    Die("tcp: set client_ca + client_uids or tokens_file: TCP callers need an identity");
  if (!o.tls.client_uids.empty() && o.tls.client_ca.empty()) Die("tcp.client_uids needs tcp.client_ca");
  if (o.config.paths.init_binary.empty()) Die("airlock-init not found next to " + cli::ExeDir());
  // The egress proxy: beside airlockd in a build tree, in libexec installed.
  if (o.config.egress.proxy_binary.empty())
    for (const std::string& p : {cli::ExeDir() + "/airlock-proxy", cli::ExeDir() + "/../libexec/airlock/airlock-proxy"})
      if (access(p.c_str(), X_OK) == 0) {
        o.config.egress.proxy_binary = p;
        break;
      }
  o.config.egress.ca_dir = o.config.paths.state_root + "/egress-ca";
  if (!o.tls.listen.empty()) o.config.egress.refused.push_back(o.tls.listen);
  const char* timings = getenv("AIRLOCKD_TIMINGS");
  o.config.timings = timings && strcmp(timings, "1") == 0;
  if (o.config.paths.profiles_dir.empty()) Die("seccomp-profiles not found");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  if (geteuid() != 0) Die("airlockd needs root (it creates namespaces, cgroups and idmapped mounts)");
  if (auto k = CheckKernel(); !k) Die(k.error().Message());
  // Writes to a pipe whose reader left must fail with EPIPE, not kill us.
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // every thread inherits the mask

  if (auto dirs = PrepareRuntimeDirs(o.config.paths); !dirs) Die(dirs.error().Message());
  // Before any thread exists: this may fork the keeper.
  auto keeper = KeeperClient::Connect(o.config.paths.state_root + "/keeper.sock");
  if (!keeper) fprintf(stderr, "airlockd: no keeper (%s): sandboxes end with this daemon\n", keeper.error().Message().c_str());
  auto store = Store::Open(o.config.Database());
  if (!store) Die(store.error().Message());
  Manager manager(o.config, std::move(*store), keeper ? std::move(*keeper) : nullptr);
  if (auto started = manager.Start(); !started) Die(started.error().Message());

  gid_t gid = static_cast<gid_t>(-1);
  if (!o.socket_group.empty()) {
    group* g = getgrnam(o.socket_group.c_str());
    if (!g) Die("--socket-group: no group " + o.socket_group);
    gid = g->gr_gid;
  }
  auto listener = Listener::Bind(o.config.socket, o.socket_mode, gid);
  if (!listener) Die(listener.error().Message());
  Listener* l = listener->get();
  auto auth = Authenticator::Make(l, o.tls);
  if (!auth) Die(auth.error().Message());
  Authenticator* a = auth->get();
  auto service = NewService(&manager, [a](grpc::ServerContext* ctx) { return a->Identify(ctx); });
  grpc::ServerBuilder builder;
  builder.RegisterService(service.get());
  if (!o.tls.listen.empty()) {
    // TCP only ever with TLS: there is no cleartext port to misconfigure.
    grpc::SslServerCredentialsOptions ssl(o.tls.client_ca.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_key_cert_pairs.push_back({ReadPem(o.tls.key, "tcp.key"), ReadPem(o.tls.cert, "tcp.cert")});
    if (!o.tls.client_ca.empty()) ssl.pem_root_certs = ReadPem(o.tls.client_ca, "tcp.client_ca");
    builder.AddListeningPort(o.tls.listen, grpc::SslServerCredentials(ssl));
  }
  builder.SetMaxReceiveMessageSize(16 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) Die("gRPC server did not start" + (o.tls.listen.empty() ? std::string() : " (tcp.listen " + o.tls.listen + ")"));

  std::thread accept([&] { l->Serve(server.get()); });
  fprintf(stderr, "airlockd: serving %s\n", o.config.socket.c_str());
  int sig;
  sigwait(&stop, &sig);
  fprintf(stderr, "airlockd: signal %d, shutting down\n", sig);
  l->Stop();
  accept.join();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  manager.Shutdown();
  return 0;
}
