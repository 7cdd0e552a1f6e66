// The host image builder, run against a fake host tree that holds secrets
// next to the allowlisted /etc items. No privileges needed; ownership is
// checked only when the test runs as root.
#include "images/host/host_image.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using airlock::images::EnsureHostImage;
using airlock::images::ImageLayers;
using airlock::images::PinImageLayer;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "airlock-host-image-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void Write(const fs::path& p, const std::string& content, mode_t mode = 0644) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << content;
  REQUIRE(chmod(p.c_str(), mode) == 0);
}

void Link(const std::string& target, const fs::path& p) {
  fs::create_directories(p.parent_path());
  fs::create_symlink(target, p);
}

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct stat Lstat(const fs::path& p) {
  struct stat st {};
  REQUIRE(lstat(p.c_str(), &st) == 0);
  return st;
}

bool Exists(const fs::path& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

// Every secret's content carries this marker; none may reach the image.
constexpr const char* kMarker = "SECRET-";

// A merged-/usr host with secrets planted where a careless copy would find
// them, and the allowlisted items (some of them traps).
void MakeFakeHost(const fs::path& h) {
  Write(h / "usr/bin/bash", "#!bash", 0755);
  Write(h / "usr/bin/sh", "#!sh", 0755);
  Write(h / "usr/lib/os-release", "ID=fake\n");
  Write(h / "usr/share/zoneinfo/Etc/UTC", "TZif");
  fs::create_directories(h / "usr/sbin");
  fs::create_directories(h / "usr/lib64");
  Link("usr/bin", h / "bin");
  Link("usr/sbin", h / "sbin");
  Link("usr/lib", h / "lib");
  Link("/usr/lib64", h / "lib64");  // absolute on the host: made relative
  Link("/opt/elsewhere", h / "libx32");  // not into usr: left out

  // Secrets.
  Write(h / "etc/shadow", "root:SECRET-SHADOW:19000::::::\n", 0640);
  Write(h / "etc/gshadow", "root:SECRET-GSHADOW::\n", 0640);
  Write(h / "etc/ssh/ssh_host_rsa_key", "SECRET-SSHHOSTKEY", 0600);
  Write(h / "etc/ssh/sshd_config", "SECRET-SSHD\n");
  Write(h / "etc/ssl/private/key.pem", "SECRET-TLSKEY", 0600);
  Write(h / "etc/sudoers", "SECRET-SUDOERS", 0440);
  Write(h / "etc/environment", "API_KEY=SECRET-ENV\n");
  Write(h / "etc/gitconfig", "[credential] helper = SECRET-GIT\n");
  Write(h / "etc/machine-id", "SECRET-MACHINEID\n");
  Write(h / "etc/profile.d/proxy.sh", "export https_proxy=http://u:SECRET-PROXY@p\n");
  Write(h / "etc/security/opasswd", "SECRET-OPASSWD");
  Write(h / "root/.bashrc", "export TOKEN=SECRET-ROOTRC\n");
  Write(h / "home/u/.ssh/id_rsa", "SECRET-IDRSA", 0600);

  // Allowed items.
  Write(h / "etc/ld.so.cache", "ld.so-1.7.0 cache");
  Write(h / "etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n");
  Write(h / "etc/ld.so.conf.d/libc.conf", "/usr/local/lib\n");
  Write(h / "etc/profile", "PATH=/usr/bin\n");
  Write(h / "etc/ssl/openssl.cnf", "[openssl_init]\n");
  Write(h / "etc/ssl/certs/ca-certificates.crt", "-----BEGIN CERTIFICATE-----\n");
  Write(h / "etc/ssl/certs/java/cacerts", "JKS");
  Link("Foo_Root.pem", h / "etc/ssl/certs/abcd1234.0");
  Link("/usr/share/ca-certificates/mozilla/Foo_Root.crt", h / "etc/ssl/certs/Foo_Root.pem");
  Link("/usr/bin/vim.basic", h / "etc/alternatives/editor");
  Write(h / "etc/alternatives/README", "alternatives\n");
  Link("../usr/lib/os-release", h / "etc/os-release");
  Link("/usr/share/zoneinfo/Etc/UTC", h / "etc/localtime");
  Write(h / "etc/python3.11/sitecustomize.py", "# site\n");
  Write(h / "etc/python3.11/unrelated.py", "# not allowlisted\n");
  Write(h / "etc/python3/debian_config", "[DEFAULT]\n");

  // Traps inside or next to allowed items.
  Link("/etc/shadow", h / "etc/protocols");                 // file item, link out
  Link("../usr/../etc/gshadow", h / "etc/services");        // looks like usr, isn't
  Link("/root/.bashrc", h / "etc/inputrc");
  Link("/etc/shadow", h / "etc/alternatives/evil");         // tree: stays a link
  Write(h / "etc/ld.so.conf.d/hidden.conf", "SECRET-UNREADABLE", 0600);
  Write(h / "etc/ssl/certs/server.key", "SECRET-KEYINCERTS");
  Write(h / "etc/ssl/certs/private/x.pem", "SECRET-NESTEDPRIVATE");
  Write(h / "etc/ssl/certs/combined.pem",
        "-----BEGIN CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nSECRET-PEMKEY\n");
  REQUIRE(mkfifo((h / "etc/ld.so.conf.d/fifo").c_str(), 0644) == 0);
}

ImageLayers Ensure(const fs::path& store, const fs::path& host) {
  auto r = EnsureHostImage(store.string(), host.string());
  if (!r) FAIL("EnsureHostImage: " << r.error().Message());
  return *r;
}

std::vector<fs::path> Walk(const fs::path& root) {
  std::vector<fs::path> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it)
    out.push_back(it->path());  // does not follow directory symlinks
  return out;
}

std::vector<std::string> StoreEntries(const fs::path& store) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(store / "host")) out.push_back(e.path().filename());
  return out;
}

}  // namespace

TEST_CASE("host image holds no secret of the host", "[host_image]") {
  TempDir tmp;
  MakeFakeHost(tmp.path / "host");
  fs::path layer = Ensure(tmp.path / "store", tmp.path / "host").lower_dirs.at(0);

  const std::set<std::string> kForbiddenNames = {
      "shadow", "gshadow", "ssh", "ssh_host_rsa_key", "private", "key.pem", "sudoers",
      "environment", "gitconfig", "machine-id", "profile.d", "security", "opasswd",
      ".bashrc", "id_rsa", "hidden.conf", "server.key", "fifo", "protocols", "services",
      "inputrc", "unrelated.py", "combined.pem"};
  size_t files = 0;
  for (const auto& p : Walk(layer)) {
    INFO(p);
    CHECK(kForbiddenNames.count(p.filename()) == 0);
    struct stat st = Lstat(p);
    CHECK((S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)));
    if (S_ISREG(st.st_mode)) {
      ++files;
      CHECK(Read(p).find(kMarker) == std::string::npos);
    }
  }
  CHECK(files >= 10);
  // Nothing of /root or /home came along (the dirs are fresh and empty).
  CHECK(fs::is_empty(layer / "root"));
  CHECK(fs::is_empty(layer / "home/sandbox"));
  // A symlink to /etc/shadow inside an allowlisted tree stays a link: it
  // resolves inside the sandbox, where there is no shadow file.
  CHECK(fs::is_symlink(layer / "etc/alternatives/evil"));
  CHECK(fs::read_symlink(layer / "etc/alternatives/evil") == "/etc/shadow");
}

TEST_CASE("host image has the skeleton, synthesized /etc and allowed items", "[host_image]") {
  TempDir tmp;
  fs::path host = tmp.path / "host";
  MakeFakeHost(host);
  ImageLayers img = Ensure(tmp.path / "store", host);
  REQUIRE(img.lower_dirs.size() == 1);
  fs::path layer = img.lower_dirs[0];
  CHECK(layer.parent_path() == tmp.path / "store/host");
  REQUIRE(img.binds.size() == 1);
  CHECK(img.binds[0].host_path == (host / "usr").string());
  CHECK(img.binds[0].target == "/usr");

  SECTION("root links mirror the host") {
    CHECK(fs::read_symlink(layer / "bin") == "usr/bin");
    CHECK(fs::read_symlink(layer / "sbin") == "usr/sbin");
    CHECK(fs::read_symlink(layer / "lib") == "usr/lib");
    CHECK(fs::read_symlink(layer / "lib64") == "usr/lib64");
    CHECK_FALSE(Exists(layer / "lib32"));   // absent on the host
    CHECK_FALSE(Exists(layer / "libx32"));  // not a link into usr
  }
  SECTION("skeleton directories and modes") {
    for (const char* d : {"usr", "proc", "dev", "sys", "run", "var/lib", "mnt", "opt", "srv",
                          "etc", "home/sandbox", "workspace"}) {
      INFO(d);
      struct stat st = Lstat(layer / d);
      CHECK(S_ISDIR(st.st_mode));
      CHECK((st.st_mode & 07777) == 0755);
    }
    CHECK((Lstat(layer / "tmp").st_mode & 07777) == 01777);
    CHECK((Lstat(layer / "var/tmp").st_mode & 07777) == 01777);
    CHECK((Lstat(layer / "root").st_mode & 07777) == 0700);
    CHECK((Lstat(layer).st_mode & 07777) == 0755);
    CHECK(fs::is_empty(layer / "usr"));  // /usr is bound, never copied
  }
  SECTION("synthesized /etc") {
    std::string passwd = Read(layer / "etc/passwd");
    CHECK(passwd.find("root:x:0:0:root:/root:/bin/bash\n") != std::string::npos);
    CHECK(passwd.find("sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/bash\n") !=
          std::string::npos);
    CHECK(passwd.find("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n") !=
          std::string::npos);
    std::string group = Read(layer / "etc/group");
    for (const char* g : {"root:x:0:", "tty:x:5:", "users:x:100:", "sandbox:x:1000:",
                          "nogroup:x:65534:"})
      CHECK(group.find(g) != std::string::npos);
    CHECK(Read(layer / "etc/hostname") == "sandbox\n");
    std::string hosts = Read(layer / "etc/hosts");
    CHECK(hosts.find("127.0.0.1\tlocalhost") != std::string::npos);
    CHECK(hosts.find("::1\tlocalhost ip6-localhost ip6-loopback") != std::string::npos);
    CHECK(hosts.find("127.0.1.1\tsandbox") != std::string::npos);
    CHECK(Read(layer / "etc/resolv.conf").find("nameserver 127.0.0.1\n") != std::string::npos);
    CHECK(Read(layer / "etc/nsswitch.conf").find("hosts:     files\n") != std::string::npos);
    CHECK_FALSE(Exists(layer / "etc/machine-id"));
    CHECK_FALSE(Exists(layer / "etc/shadow"));
  }
  SECTION("allowlisted host items") {
    CHECK(Read(layer / "etc/ld.so.cache") == "ld.so-1.7.0 cache");
    CHECK(Read(layer / "etc/ld.so.conf.d/libc.conf") == "/usr/local/lib\n");
    CHECK(Read(layer / "etc/profile") == "PATH=/usr/bin\n");
    CHECK(Read(layer / "etc/ssl/openssl.cnf") == "[openssl_init]\n");
    CHECK(Read(layer / "etc/ssl/certs/java/cacerts") == "JKS");
    CHECK(Read(layer / "etc/python3.11/sitecustomize.py") == "# site\n");
    CHECK(Read(layer / "etc/python3/debian_config") == "[DEFAULT]\n");
    CHECK(fs::read_symlink(layer / "etc/os-release") == "../usr/lib/os-release");
    CHECK(fs::read_symlink(layer / "etc/localtime") == "/usr/share/zoneinfo/Etc/UTC");
    CHECK(fs::read_symlink(layer / "etc/alternatives/editor") == "/usr/bin/vim.basic");
    CHECK(fs::read_symlink(layer / "etc/ssl/certs/abcd1234.0") == "Foo_Root.pem");
    CHECK(fs::read_symlink(layer / "etc/ssl/certs/Foo_Root.pem") ==
          "/usr/share/ca-certificates/mozilla/Foo_Root.crt");
    struct stat bundle = Lstat(layer / "etc/ssl/certs/ca-certificates.crt");
    CHECK(S_ISREG(bundle.st_mode));
    CHECK((bundle.st_mode & 07777) == 0644);
    for (const auto& p : Walk(layer / "etc")) {
      INFO(p);
      struct stat st = Lstat(p);
      if (S_ISREG(st.st_mode)) CHECK((st.st_mode & 07777) == 0644);
      if (S_ISDIR(st.st_mode)) CHECK((st.st_mode & 07777) == 0755);
    }
  }
  SECTION("canonical ownership") {
    if (geteuid() != 0) {
      WARN("not root: ownership assertions skipped");
      return;
    }
    for (const auto& p : Walk(layer)) {
      INFO(p);
      struct stat st = Lstat(p);
      bool sandbox_owned = p == layer / "home/sandbox" || p == layer / "workspace";
      CHECK(st.st_uid == (sandbox_owned ? 1000u : 0u));
      CHECK(st.st_gid == (sandbox_owned ? 1000u : 0u));
    }
    CHECK(Lstat(layer).st_uid == 0);
  }
}

TEST_CASE("host image uses /bin/sh when the host has no bash", "[host_image]") {
  TempDir tmp;
  MakeFakeHost(tmp.path / "host");
  fs::remove(tmp.path / "host/usr/bin/bash");
  fs::path layer = Ensure(tmp.path / "store", tmp.path / "host").lower_dirs.at(0);
  std::string passwd = Read(layer / "etc/passwd");
  CHECK(passwd.find("root:x:0:0:root:/root:/bin/sh\n") != std::string::npos);
  CHECK(passwd.find("/home/sandbox:/bin/sh\n") != std::string::npos);
}

TEST_CASE("a linked CA bundle becomes a regular file, only from a CA location",
          "[host_image]") {
  TempDir tmp;
  fs::path host = tmp.path / "host";
  MakeFakeHost(host);
  fs::path bundle = host / "etc/ssl/certs/ca-certificates.crt";
  fs::remove(bundle);

  SECTION("link into /etc/pki is copied as content") {
    Write(host / "etc/pki/tls/certs/ca-bundle.crt", "PKI BUNDLE\n");
    Link("/etc/pki/tls/certs/ca-bundle.crt", bundle);
    fs::path layer = Ensure(tmp.path / "store", host).lower_dirs.at(0);
    fs::path copied = layer / "etc/ssl/certs/ca-certificates.crt";
    CHECK(S_ISREG(Lstat(copied).st_mode));
    CHECK(Read(copied) == "PKI BUNDLE\n");
  }
  SECTION("link to a secret is dropped") {
    Link("../../../etc/shadow", bundle);
    fs::path layer = Ensure(tmp.path / "store", host).lower_dirs.at(0);
    CHECK_FALSE(Exists(layer / "etc/ssl/certs/ca-certificates.crt"));
  }
  SECTION("link escaping the host root resolves inside it") {
    // /../../ from the fake root stays in the fake root: nothing there.
    Link("/../../../../../../etc/passwd", bundle);
    fs::path layer = Ensure(tmp.path / "store", host).lower_dirs.at(0);
    CHECK_FALSE(Exists(layer / "etc/ssl/certs/ca-certificates.crt"));
  }
}

TEST_CASE("host image is reused while inputs are unchanged, rebuilt when they change",
          "[host_image]") {
  TempDir tmp;
  fs::path host = tmp.path / "host";
  fs::path store = tmp.path / "store";
  MakeFakeHost(host);
  fs::path first = Ensure(store, host).lower_dirs.at(0);
  ino_t passwd_ino = Lstat(first / "etc/passwd").st_ino;

  fs::path again = Ensure(store, host).lower_dirs.at(0);
  CHECK(again == first);
  CHECK(Lstat(again / "etc/passwd").st_ino == passwd_ino);  // not rebuilt
  CHECK(StoreEntries(store) == std::vector<std::string>{first.filename()});

  SECTION("a changed file gives a new version; the old one is collected") {
    Write(host / "etc/profile", "PATH=/usr/local/bin:/usr/bin\n");
    fs::path second = Ensure(store, host).lower_dirs.at(0);
    CHECK(second != first);
    CHECK(Read(second / "etc/profile") == "PATH=/usr/local/bin:/usr/bin\n");
    CHECK(StoreEntries(store) == std::vector<std::string>{second.filename()});
  }
  SECTION("a file replaced inside a tree (as dpkg does) gives a new version") {
    Write(host / "etc/ssl/certs/java/cacerts.new", "JKS2");
    fs::rename(host / "etc/ssl/certs/java/cacerts.new", host / "etc/ssl/certs/java/cacerts");
    fs::path second = Ensure(store, host).lower_dirs.at(0);
    CHECK(second != first);
    CHECK(Read(second / "etc/ssl/certs/java/cacerts") == "JKS2");
  }
  SECTION("a changed root link gives a new version") {
    Link("usr/lib32", host / "lib32");
    fs::path second = Ensure(store, host).lower_dirs.at(0);
    CHECK(second != first);
    CHECK(fs::read_symlink(second / "lib32") == "usr/lib32");
  }
  SECTION("a pinned old version survives until unpinned") {
    auto pin = PinImageLayer(first.string());
    REQUIRE(pin);
    Write(host / "etc/ld.so.cache", "ld.so-1.7.0 cache, newer");
    fs::path second = Ensure(store, host).lower_dirs.at(0);
    CHECK(second != first);
    CHECK(Read(first / "etc/passwd").find("sandbox") != std::string::npos);
    pin->Reset();
    Ensure(store, host);
    CHECK_FALSE(Exists(first));
    auto late = PinImageLayer(first.string());
    REQUIRE_FALSE(late);
    CHECK(late.error().err == ENOENT);
  }
}

TEST_CASE("concurrent callers get one complete image", "[host_image]") {
  TempDir tmp;
  MakeFakeHost(tmp.path / "host");
  std::vector<std::string> paths(6);
  std::vector<std::string> errors(6);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < paths.size(); ++i)
    threads.emplace_back([&, i] {
      auto r = EnsureHostImage((tmp.path / "store").string(), (tmp.path / "host").string());
      if (r) paths[i] = r->lower_dirs.at(0);
      else errors[i] = r.error().Message();
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < paths.size(); ++i) {
    INFO(errors[i]);
    CHECK(!paths[i].empty());
    CHECK(paths[i] == paths[0]);
  }
  // Losers removed their temporary trees.
  CHECK(StoreEntries(tmp.path / "store") ==
        std::vector<std::string>{fs::path(paths[0]).filename()});
  CHECK(Read(fs::path(paths[0]) / "etc/hostname") == "sandbox\n");
}

TEST_CASE("a host that is not merged-/usr is refused by name", "[host_image]") {
  TempDir tmp;
  fs::path host = tmp.path / "host";
  MakeFakeHost(host);
  fs::remove(host / "bin");
  fs::create_directories(host / "bin");
  auto r = EnsureHostImage((tmp.path / "store").string(), host.string());
  REQUIRE_FALSE(r);
  CHECK(r.error().Message().find("merged-/usr") != std::string::npos);
  CHECK(r.error().Message().find((host / "bin").string()) != std::string::npos);
}

TEST_CASE("a host without /usr is refused", "[host_image]") {
  TempDir tmp;
  fs::create_directories(tmp.path / "host/etc");
  auto r = EnsureHostImage((tmp.path / "store").string(), (tmp.path / "host").string());
  REQUIRE_FALSE(r);
  CHECK(r.error().err == ENOENT);
}
