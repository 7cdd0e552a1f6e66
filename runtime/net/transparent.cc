#include "runtime/net/transparent.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/close_range.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace airlock::net {
namespace {

// A network namespace always has "lo" at ifindex 1 (LOOPBACK_IFINDEX).
constexpr uint32_t kLoopbackIndex = 1;
constexpr char kTable[] = "airlock";
constexpr char kRedirectChain[] = "redirect";
constexpr char kEgressChain[] = "egress";
// Replies to a batch are queued while sendmsg() runs, so this only bounds a
// kernel that doesn't answer at all.
constexpr int kReplyTimeoutMs = 1000;

struct MnlSocketCloser {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using MnlSocket = std::unique_ptr<mnl_socket, MnlSocketCloser>;

template <auto Free>
struct NftnlFree {
  template <typename T>
  void operator()(T* p) const { Free(p); }
};
using TablePtr = std::unique_ptr<nftnl_table, NftnlFree<nftnl_table_free>>;
using ChainPtr = std::unique_ptr<nftnl_chain, NftnlFree<nftnl_chain_free>>;
using RulePtr = std::unique_ptr<nftnl_rule, NftnlFree<nftnl_rule_free>>;
using UdataPtr = std::unique_ptr<nftnl_udata_buf, NftnlFree<nftnl_udata_buf_free>>;

// A netlink socket in the calling thread's network namespace, with extended
// acks (the kernel's reason in text) and capped acks (an error carries only
// the header of the message it answers, not the whole rule).
Result<MnlSocket> OpenNetlink(int bus, const char* what) {
  MnlSocket nl(mnl_socket_open2(bus, SOCK_CLOEXEC));
  if (!nl) return Errno(std::string(what) + ": socket");
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) return Errno(std::string(what) + ": bind");
  int on = 1;
  // Both are optional refinements; a kernel without them still answers.
  mnl_socket_setsockopt(nl.get(), NETLINK_EXT_ACK, &on, sizeof(on));
  mnl_socket_setsockopt(nl.get(), NETLINK_CAP_ACK, &on, sizeof(on));
  timeval tv{kReplyTimeoutMs / 1000, (kReplyTimeoutMs % 1000) * 1000};
  if (setsockopt(mnl_socket_get_fd(nl.get()), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
    return Errno(std::string(what) + ": setsockopt", "SO_RCVTIMEO");
  return nl;
}

int ExtackCallback(const nlattr* attr, void* data) {
  if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0)
    *static_cast<const char**>(data) = mnl_attr_get_str(attr);
  return MNL_CB_OK;
}

// The kernel's extended-ack text of an error message, or "".
std::string ExtackMessage(const nlmsghdr* nlh) {
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return {};
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  size_t offset = sizeof(nlmsgerr);
  if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
  if (offset > mnl_nlmsg_get_payload_len(nlh)) return {};
  const char* msg = nullptr;
  mnl_attr_parse(nlh, static_cast<unsigned>(offset), ExtackCallback, &msg);
  return msg != nullptr ? std::string(msg) : std::string();
}

// The messages of one send, by sequence number: what each step is called
// in errors, and whether the kernel acknowledged it.
class Steps {
 public:
  Steps(std::string prefix, uint32_t first_seq) : prefix_(std::move(prefix)), first_(first_seq) {}
  uint32_t Add(std::string name) {
    names_.push_back(std::move(name));
    return first_ + static_cast<uint32_t>(names_.size()) - 1;
  }
  uint32_t NextSeq() const { return first_ + static_cast<uint32_t>(names_.size()); }

  // Sends `len` bytes of messages and reads one ack per step. `batch_seq`
  // (the seq of NFNL_MSG_BATCH_BEGIN, or 0) is where nfnetlink reports an
  // error of the whole batch (no CAP_NET_ADMIN, a failed commit).
  Result<void> SendAndCheck(mnl_socket* nl, const void* buf, size_t len, uint32_t batch_seq = 0) {
    if (mnl_socket_sendto(nl, buf, len) < 0) return Errno(prefix_ + ": send", std::to_string(len) + " bytes");
    uint32_t portid = mnl_socket_get_portid(nl);
    std::vector<bool> acked(names_.size(), false);
    size_t pending = names_.size();
    // The earliest failing step: later ones often fail only because of it.
    size_t first_bad = names_.size();
    int first_err = 0;
    std::string first_text;
    int batch_err = 0;
    std::string batch_text;
    // Acks are capped to the header: a page holds dozens of them.
    alignas(nlmsghdr) std::array<char, 8192> rbuf;
    while (pending > 0 && batch_err == 0) {
      ssize_t n = mnl_socket_recvfrom(nl, rbuf.data(), rbuf.size());
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          return Fail(prefix_ + ": no answer", std::to_string(pending) + " of " + std::to_string(names_.size()) +
                                                    " messages unacknowledged after " +
                                                    std::to_string(kReplyTimeoutMs) + " ms");
        return Errno(prefix_ + ": receive");
      }
      int remaining = static_cast<int>(n);
      for (auto* nlh = reinterpret_cast<const nlmsghdr*>(rbuf.data()); mnl_nlmsg_ok(nlh, remaining);
           nlh = mnl_nlmsg_next(nlh, &remaining)) {
        if (nlh->nlmsg_pid != portid || nlh->nlmsg_type != NLMSG_ERROR) continue;
        if (mnl_nlmsg_get_payload_len(nlh) < sizeof(nlmsgerr)) return Fail(prefix_ + ": receive", "truncated ack");
        const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (batch_seq != 0 && nlh->nlmsg_seq == batch_seq) {
          if (err->error != 0) {
            batch_err = -err->error;
            batch_text = ExtackMessage(nlh);
          }
          continue;
        }
        size_t i = nlh->nlmsg_seq - first_;
        if (nlh->nlmsg_seq < first_ || i >= names_.size() || acked[i]) continue;
        acked[i] = true;
        --pending;
        if (err->error != 0 && i < first_bad) {
          first_bad = i;
          first_err = -err->error;
          first_text = ExtackMessage(nlh);
        }
      }
    }
    if (first_bad < names_.size()) return ErrnoValue(first_err, prefix_ + ": " + names_[first_bad], first_text);
    if (batch_err != 0) return ErrnoValue(batch_err, prefix_ + ": batch", batch_text);
    return {};
  }

 private:
  std::string prefix_;
  uint32_t first_;
  std::vector<std::string> names_;
};

// ---- routes -------------------------------------------------------------

void PutDefaultRouteViaLo(mnl_nlmsg_batch* b, uint8_t family, uint32_t seq) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
  nlh->nlmsg_type = RTM_NEWROUTE;
  // REPLACE: a second install puts the same route in place of the first.
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
  nlh->nlmsg_seq = seq;
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = family;
  rtm->rtm_dst_len = 0;
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_STATIC;
  rtm->rtm_scope = family == AF_INET ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(nlh, RTA_OIF, kLoopbackIndex);
  if (family == AF_INET) mnl_attr_put_u32(nlh, RTA_PREFSRC, htonl(INADDR_LOOPBACK));
  mnl_nlmsg_batch_next(b);
}

Result<void> AddDefaultRoutes(mnl_socket* nl) {
  std::array<char, 1024> buf;
  mnl_nlmsg_batch* b = mnl_nlmsg_batch_start(buf.data(), buf.size());
  if (b == nullptr) return Errno("rtnetlink: batch");
  Steps steps("rtnetlink", 1);
  PutDefaultRouteViaLo(b, AF_INET, steps.Add("add route 'default dev lo src 127.0.0.1'"));
  PutDefaultRouteViaLo(b, AF_INET6, steps.Add("add route 'default dev lo' (ipv6)"));
  Result<void> r = steps.SendAndCheck(nl, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b));
  mnl_nlmsg_batch_stop(b);
  return r;
}

// ---- nftables -----------------------------------------------------------

// Builds one rule from expressions in the order nft would. Allocation
// failures are remembered and reported once, by Build().
class RuleBuilder {
 public:
  RuleBuilder(const char* chain, const char* comment) : rule_(nftnl_rule_alloc()), comment_(comment) {
    if (!rule_) return;
    nftnl_rule_set_str(rule_.get(), NFTNL_RULE_TABLE, kTable);
    nftnl_rule_set_str(rule_.get(), NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(rule_.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
    // The comment shows in `nft list ruleset` and names the rule there.
    UdataPtr ud(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN));
    if (!ud || !nftnl_udata_put_strz(ud.get(), NFTNL_UDATA_RULE_COMMENT, comment)) {
      rule_.reset();
      return;
    }
    nftnl_rule_set_data(rule_.get(), NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud.get()),
                        nftnl_udata_buf_len(ud.get()));
  }

  // meta nfproto ipv4 / ipv6
  RuleBuilder& Nfproto(uint8_t proto) { return Meta(NFT_META_NFPROTO).Cmp(NFT_CMP_EQ, &proto, 1); }
  // meta l4proto tcp / udp
  RuleBuilder& L4proto(uint8_t proto) { return Meta(NFT_META_L4PROTO).Cmp(NFT_CMP_EQ, &proto, 1); }
  // oif "lo" (by index: an interface index is fixed, a name can be renamed)
  RuleBuilder& OifLoopback() {
    uint32_t index = kLoopbackIndex;
    return Meta(NFT_META_OIF).Cmp(NFT_CMP_EQ, &index, sizeof(index));
  }
  // ip daddr [!=] 127.0.0.0/8
  RuleBuilder& Ipv4DaddrLoopbackNet(nft_cmp_ops op) {
    uint32_t mask = htonl(0xff000000);
    uint32_t net = htonl(0x7f000000);
    return Payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4).Bitwise(&mask, 4).Cmp(op, &net, 4);
  }
  // ip6 daddr ::1
  RuleBuilder& Ipv6DaddrLoopback() {
    in6_addr lo = IN6ADDR_LOOPBACK_INIT;
    return Payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 16).Cmp(NFT_CMP_EQ, &lo, sizeof(lo));
  }
  // th dport <port>: TCP and UDP keep the destination port at offset 2.
  RuleBuilder& Dport(uint16_t port) {
    uint16_t be = htons(port);
    return Payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2).Cmp(NFT_CMP_EQ, &be, 2);
  }
  // redirect to :<port> (127.0.0.1 for locally generated IPv4)
  RuleBuilder& RedirectTo(uint16_t port) {
    uint16_t be = htons(port);
    if (nftnl_expr* e = Expr("immediate")) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
      nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, &be, sizeof(be));
    }
    if (nftnl_expr* e = Expr("redir")) nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
    return *this;
  }
  // reject with tcp reset: the RST goes back over lo to the local socket.
  RuleBuilder& RejectWithTcpReset() {
    if (nftnl_expr* e = Expr("reject")) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_TCP_RST);
      nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, 0);
    }
    return *this;
  }
  RuleBuilder& Accept() {
    if (nftnl_expr* e = Expr("immediate")) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
      nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_ACCEPT);
    }
    return *this;
  }

  const char* comment() const { return comment_; }
  // The finished rule, or nullptr if an allocation failed.
  nftnl_rule* Build() { return ok_ ? rule_.get() : nullptr; }

 private:
  RuleBuilder& Meta(nft_meta_keys key) {
    if (nftnl_expr* e = Expr("meta")) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
      nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    }
    return *this;
  }
  RuleBuilder& Payload(nft_payload_bases base, uint32_t offset, uint32_t len) {
    if (nftnl_expr* e = Expr("payload")) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
      nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
      nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
      nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    }
    return *this;
  }
  RuleBuilder& Bitwise(const void* mask, uint32_t len) {
    static constexpr std::array<uint8_t, 16> kZero{};
    if (nftnl_expr* e = Expr("bitwise")) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
      nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
      nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, kZero.data(), len);
    }
    return *this;
  }
  RuleBuilder& Cmp(nft_cmp_ops op, const void* data, uint32_t len) {
    if (nftnl_expr* e = Expr("cmp")) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
      nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    }
    return *this;
  }
  // A new expression appended to the rule (which then owns it), or nullptr.
  nftnl_expr* Expr(const char* name) {
    if (!ok_ || !rule_) {
      ok_ = false;
      return nullptr;
    }
    nftnl_expr* e = nftnl_expr_alloc(name);
    if (e == nullptr) {
      ok_ = false;
      return nullptr;
    }
    nftnl_rule_add_expr(rule_.get(), e);
    return e;
  }

  RulePtr rule_;
  const char* comment_;
  bool ok_ = true;
};

// Appends one nftables message to the batch; false if it didn't fit.
template <typename Fill>
bool PutNft(mnl_nlmsg_batch* b, uint16_t type, uint16_t flags, uint32_t seq, Fill fill) {
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(mnl_nlmsg_batch_current(b)), type, NFPROTO_INET,
                                        flags | NLM_F_ACK, seq);
  fill(nlh);
  return mnl_nlmsg_batch_next(b);
}

Result<void> InstallRules(mnl_socket* nl, const TransparentPorts& ports) {
  TablePtr table(nftnl_table_alloc());
  ChainPtr redirect(nftnl_chain_alloc());
  ChainPtr egress(nftnl_chain_alloc());
  if (!table || !redirect || !egress) return ErrnoValue(ENOMEM, "nftables: allocate", "table inet airlock");
  nftnl_table_set_u32(table.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, kTable);

  // Priority -100 (dstnat): after conntrack (-200), so the redirect is
  // recorded and undone on replies, and before the filter chain (0), which
  // then sees the redirected destination 127.0.0.1.
  nftnl_chain_set_str(redirect.get(), NFTNL_CHAIN_TABLE, kTable);
  nftnl_chain_set_str(redirect.get(), NFTNL_CHAIN_NAME, kRedirectChain);
  nftnl_chain_set_str(redirect.get(), NFTNL_CHAIN_TYPE, "nat");
  nftnl_chain_set_u32(redirect.get(), NFTNL_CHAIN_HOOKNUM, NF_INET_LOCAL_OUT);
  nftnl_chain_set_s32(redirect.get(), NFTNL_CHAIN_PRIO, -100);
  nftnl_chain_set_u32(redirect.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);

  nftnl_chain_set_str(egress.get(), NFTNL_CHAIN_TABLE, kTable);
  nftnl_chain_set_str(egress.get(), NFTNL_CHAIN_NAME, kEgressChain);
  nftnl_chain_set_str(egress.get(), NFTNL_CHAIN_TYPE, "filter");
  nftnl_chain_set_u32(egress.get(), NFTNL_CHAIN_HOOKNUM, NF_INET_LOCAL_OUT);
  nftnl_chain_set_s32(egress.get(), NFTNL_CHAIN_PRIO, 0);
  nftnl_chain_set_u32(egress.get(), NFTNL_CHAIN_POLICY, NF_DROP);

  // Only IPv4 is redirected; IPv6 (but ::1) falls through to the egress
  // chain's reset or drop, as do UDP but DNS, ICMP, raw IP and every other
  // protocol. The nat chain only sees the first packet of a connection; a
  // packet conntrack calls invalid is never redirected, keeps its real
  // destination and is refused too. The egress chain needs no ct match:
  // running after the nat chain, it sees a redirected packet's new
  // destination, 127.0.0.1.
  std::array<RuleBuilder, 6> rules{
      RuleBuilder(kRedirectChain, "redirect dns udp"),
      RuleBuilder(kRedirectChain, "redirect dns tcp"),
      RuleBuilder(kRedirectChain, "redirect tcp"),
      RuleBuilder(kEgressChain, "accept loopback ipv4"),
      RuleBuilder(kEgressChain, "accept loopback ipv6"),
      RuleBuilder(kEgressChain, "reset other tcp"),
  };
  rules[0].Nfproto(NFPROTO_IPV4).Ipv4DaddrLoopbackNet(NFT_CMP_NEQ).L4proto(IPPROTO_UDP).Dport(53).RedirectTo(
      ports.dns_port);
  rules[1].Nfproto(NFPROTO_IPV4).Ipv4DaddrLoopbackNet(NFT_CMP_NEQ).L4proto(IPPROTO_TCP).Dport(53).RedirectTo(
      ports.dns_port);
  rules[2].Nfproto(NFPROTO_IPV4).Ipv4DaddrLoopbackNet(NFT_CMP_NEQ).L4proto(IPPROTO_TCP).RedirectTo(ports.tcp_port);
  // Out of lo to a loopback address: the redirected connections, DNS, and
  // the sandbox's own loopback traffic. Nothing else leaves.
  rules[3].OifLoopback().Nfproto(NFPROTO_IPV4).Ipv4DaddrLoopbackNet(NFT_CMP_EQ).Accept();
  rules[4].OifLoopback().Nfproto(NFPROTO_IPV6).Ipv6DaddrLoopback().Accept();
  // A dropped SYN isn't an error to connect(): TCP retransmits it for two
  // minutes (an IPv6 connect, say, would hang). A reset fails it at once
  // with ECONNREFUSED. Everything else meets the policy: dropped, and
  // sendto() says EPERM.
  rules[5].L4proto(IPPROTO_TCP).RejectWithTcpReset();
  for (auto& r : rules)
    if (r.Build() == nullptr) return ErrnoValue(ENOMEM, "nftables: build rule", r.comment());

  // The whole table in one transaction. To replace an earlier install
  // atomically, the batch first makes sure the table exists (NEWTABLE
  // without EXCL), deletes it with everything in it, and creates it anew:
  // the kernel commits all of it or, on any error, none of it.
  std::vector<char> buf(16384);
  mnl_nlmsg_batch* b = mnl_nlmsg_batch_start(buf.data(), buf.size());
  if (b == nullptr) return Errno("nftables: batch");
  struct BatchStop {
    mnl_nlmsg_batch* b;
    ~BatchStop() { mnl_nlmsg_batch_stop(b); }
  } stop{b};

  uint32_t batch_seq = 1;
  Steps steps("nftables", batch_seq + 1);
  nftnl_batch_begin(static_cast<char*>(mnl_nlmsg_batch_current(b)), batch_seq);
  bool fits = mnl_nlmsg_batch_next(b);
  auto put_table = [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, table.get()); };
  fits = fits && PutNft(b, NFT_MSG_NEWTABLE, NLM_F_CREATE, steps.Add("add table 'airlock' (if absent)"), put_table);
  fits = fits && PutNft(b, NFT_MSG_DELTABLE, 0, steps.Add("delete table 'airlock' (replace)"), put_table);
  fits = fits && PutNft(b, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, steps.Add("add table 'airlock'"), put_table);
  fits = fits && PutNft(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, steps.Add("add chain 'redirect'"),
                        [&](nlmsghdr* nlh) { nftnl_chain_nlmsg_build_payload(nlh, redirect.get()); });
  fits = fits && PutNft(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, steps.Add("add chain 'egress'"),
                        [&](nlmsghdr* nlh) { nftnl_chain_nlmsg_build_payload(nlh, egress.get()); });
  for (auto& r : rules) {
    fits = fits && PutNft(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
                          steps.Add(std::string("add rule '") + r.comment() + "'"),
                          [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, r.Build()); });
  }
  nftnl_batch_end(static_cast<char*>(mnl_nlmsg_batch_current(b)), steps.NextSeq());
  fits = fits && mnl_nlmsg_batch_next(b);
  if (!fits) return Fail("nftables: batch", "messages exceed " + std::to_string(buf.size()) + " bytes");

  return steps.SendAndCheck(nl, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b), batch_seq);
}

// The netlink sockets of one install, in the namespace they were made in.
struct Sockets {
  MnlSocket route;
  MnlSocket nft;
};

Result<void> InstallInCurrentNetns(const TransparentPorts& ports, Sockets& sockets) {
  sockets.route = TRY(OpenNetlink(NETLINK_ROUTE, "rtnetlink"));
  sockets.nft = TRY(OpenNetlink(NETLINK_NETFILTER, "nftables"));
  // Rules first: if they fail, the namespace is left exactly as it was,
  // without a route that would let connect() get as far as netfilter.
  TRY(InstallRules(sockets.nft.get(), ports));
  return AddDefaultRoutes(sockets.route.get());
}

}  // namespace

Result<void> InstallTransparentRedirect(int netns_fd, const TransparentPorts& ports) {
  if (ports.tcp_port == 0) return Fail("transparent redirect", "tcp_port is 0");
  if (ports.dns_port == 0) return Fail("transparent redirect", "dns_port is 0");
  // setns() changes the namespace of the calling thread only, and netlink
  // sockets belong to the namespace they were made in: a thread of its own
  // enters the sandbox's namespace and makes its sockets there, so no
  // thread of the caller is ever in the wrong namespace.
  //
  // The caller waits for the answer, not for the thread: closing an
  // nfnetlink socket right after a commit waits in the kernel for the
  // commit's cleanup (nft_rcv_nl_event flushes the transaction destroy
  // work, an RCU grace period: 8-16 ms here, against ~0.3 ms for all the
  // rest). The thread reports, then closes its sockets and exits on its
  // own. It gives itself an empty file table first, so those sockets are
  // never in the caller's (a sandbox cloned meanwhile can't inherit them)
  // and it holds no extra reference to the caller's files while it lingers.
  std::promise<Result<void>> promise;
  std::future<Result<void>> answer = promise.get_future();
  std::thread([netns_fd, ports, promise = std::move(promise)]() mutable {
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
      promise.set_value(Errno("setns", "sandbox network namespace (fd " + std::to_string(netns_fd) + ")"));
      return;
    }
    // From here the thread's file table is its own, and empty.
    if (close_range(0, ~0U, CLOSE_RANGE_UNSHARE) < 0) {
      promise.set_value(Errno("close_range", "CLOSE_RANGE_UNSHARE (helper thread)"));
      return;
    }
    Sockets sockets;
    promise.set_value(InstallInCurrentNetns(ports, sockets));
    // `sockets` closes here, on this thread only.
  }).detach();
  return answer.get();
}

}  // namespace airlock::net
