/* SPDX-License-Identifier: MIT */
/*
 * pagewire - RDMA over TCP with demand-paged memory regions.
 *
 * The API is shaped after libibverbs + librdmacm so that a verbs programmer
 * feels at home: a context (the "device") owns a progress engine that plays
 * the role of the NIC; protection domains group memory regions and queue
 * pairs; work requests are posted to reliable-connected QPs and complete on
 * completion queues.
 *
 * Error convention (one for the whole API):
 *  - functions returning int return 0 on success or a negative errno
 *    (-EINVAL, -ENOMEM, ...);
 *  - constructors (pw_open, pw_alloc_pd, pw_reg_mr, pw_create_cq,
 *    pw_connect, ...) return NULL on failure and set errno;
 *  - pw_poll_cq returns the number of completions (>= 0) or a negative errno;
 *  - pw_last_error() returns a human-readable sentence about the last
 *    failure in the calling thread (e.g. which limit was hit).
 *
 * Thread safety: every call may be made from any thread. Posting to one QP
 * from several threads is serialised internally.
 */
#ifndef PAGEWIRE_PAGEWIRE_H
#define PAGEWIRE_PAGEWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Version of this header. The library's own, at run time, is pw_version():
 * a program built against 0.1 and run against a later 0.x library sees the
 * later string there. The SONAME (libpagewire.so.0) changes only with an
 * incompatible ABI.
 */
#define PW_VERSION_MAJOR	0
#define PW_VERSION_MINOR	1
#define PW_VERSION_PATCH	0
#define PW_VERSION_STRING	"0.1.0"
/* One number to compare: PW_VERSION_NUM >= PW_VERSION_ENCODE(0, 1, 0). */
#define PW_VERSION_ENCODE(major, minor, patch) \
	(((major) << 16) | ((minor) << 8) | (patch))
#define PW_VERSION_NUM \
	PW_VERSION_ENCODE(PW_VERSION_MAJOR, PW_VERSION_MINOR, PW_VERSION_PATCH)

/*
 * Everything declared here is the library's ABI; everything else in it is
 * built hidden (-fvisibility=hidden) and the linker's version script
 * (PAGEWIRE_0.1) exports exactly these functions.
 */
#if defined(__GNUC__) && __GNUC__ >= 4
#pragma GCC visibility push(default)
#endif

#define PW_MAX_PRIVATE_DATA	256	/* bytes of CM private data each way */
#define PW_MAX_SGE		16	/* per work request */
#define PW_MAX_INLINE_DATA	1024	/* largest max_inline_data a QP accepts */
#define PW_MAX_MSG_SIZE		(1u << 31) /* largest message, as IBA */
#define PW_MAX_QP_WR		16384	/* largest max_send_wr / max_recv_wr */
#define PW_MAX_CQE		(1 << 22)

/* ------------------------------------------------------------------ */
/* Objects. Public fields are read-only for the application.           */
/* ------------------------------------------------------------------ */

struct pw_context;
struct pw_listener;

/**
 * struct pw_context_attr - options for pw_open()
 * @flags: reserved, must be 0.
 *
 * A NULL attr gives the defaults.
 */
/*
 * Responder fault policies (the 2008 thread's "stall or drop"): what a
 * QP does when a remote op needs ODP pages not in the MR's page table.
 */
enum pw_fault_policy {
	PW_FAULT_POLICY_DEFAULT	= 0,	/* QP: the context's; context: STALL */
	PW_FAULT_STALL		= 1,	/* stop reading this QP until resolved */
	PW_FAULT_DROP		= 2,	/* discard, NAK, the requester resends */
	/*
	 * The 2008 proposal: tell the peers when a range of an MR
	 * goes away (INVALIDATE) so that their requests ask for it first
	 * (FAULT_IN, VALIDATE); a fault the peer did not know of stalls as
	 * under STALL. Falls back to STALL with a peer that cannot do it.
	 */
	PW_FAULT_NOTIFY		= 3,
};

/*
 * pw_context_attr.flags: do not offer the NOTIFY protocol on this
 * context's connections (behave as a peer from before it; for interop
 * tests and for peers that want none of its traffic).
 */
#define PW_CONTEXT_NO_NOTIFY	(1u << 0)
/*
 * pw_context_attr.flags: do not offer the LINK protocol feature (engine
 * liveness with heartbeats, the connection's RTU, DISCONNECT): behave as
 * a peer from before it, whose dead-peer bound is TCP's alone (it cannot
 * tell a stopped peer from a slow one). For interop tests.
 */
#define PW_CONTEXT_NO_LINK	(1u << 1)
/*
 * pw_context_attr.flags: busy polling, as PW_PROGRESS=busy but for this
 * context only: a pw_poll_cq() that finds its CQ empty runs one
 * non-blocking pass of the progress engine in the calling thread, so a
 * polling loop sees completions without a thread hand-off. For callers
 * that poll anyway (libfabric's manual progress, MPI); a thread that polls
 * without pause keeps a core busy.
 */
#define PW_CONTEXT_BUSY_POLL	(1u << 2)

/**
 * struct pw_context_attr - pw_open() attributes (zero them first)
 * @flags:        0 or PW_CONTEXT_NO_NOTIFY, PW_CONTEXT_NO_LINK,
 *                PW_CONTEXT_BUSY_POLL
 * @fault_policy: enum pw_fault_policy for the context's QPs; 0 takes the
 *                environment's PW_FAULT_POLICY=stall|drop|notify, else STALL
 * @mem_budget:   bytes the ODP MRs' page tables may hold; past it cold pages
 *                are reclaimed (invalidate, tell the peers, MADV_PAGEOUT:
 *                needs swap for anonymous memory). 0 takes PW_MEM_BUDGET
 *                (e.g. "256M"), else no budget
 * @peer_timeout_ms: dead-peer bound for the context's connections: when
 *                the peer's engine gives no sign for this long while WRs
 *                are outstanding (its host gone, a link cut, its process
 *                stopped), the oldest fails with PW_WC_RETRY_EXC_ERR and
 *                the rest are flushed; a peer that is only slow (a long
 *                fault) says so and is waited for. An idle connection to
 *                a vanished host fails within about as long (keepalive).
 *                0 takes PW_PEER_TIMEOUT_MS, else 30000; 2000..3600000
 *                (docs/limits.md)
 * @max_half_open: incoming connections per listener that may sit in the
 *                handshake at once; past it the oldest is dropped, so a
 *                flood of silent connects cannot hold out a real client
 *                or fds. 0 = default 64, at most 4096
 * @handshake_timeout_ms: how long an incoming connection may take to send
 *                its CONNECT_REQ; 0 = default 5000
 */
struct pw_context_attr {
	uint32_t flags;
	uint32_t fault_policy;
	uint64_t mem_budget;
	uint32_t peer_timeout_ms;
	uint32_t max_half_open;
	uint32_t handshake_timeout_ms;
};

/** struct pw_pd - protection domain */
struct pw_pd {
	struct pw_context *context;
};

/**
 * enum pw_access_flags - memory region and QP access rights
 *
 * As ibv_reg_mr(3): REMOTE_WRITE and REMOTE_ATOMIC require LOCAL_WRITE.
 */
enum pw_access_flags {
	PW_ACCESS_LOCAL_WRITE	= 1 << 0,
	PW_ACCESS_REMOTE_WRITE	= 1 << 1,
	PW_ACCESS_REMOTE_READ	= 1 << 2,
	PW_ACCESS_REMOTE_ATOMIC	= 1 << 3,
	/* Not pinned: pages are faulted in on demand (the 2008 proposal: demand paging). */
	PW_ACCESS_ON_DEMAND	= 1 << 6,
	/*
	 * Follow the virtual address, as hardware ODP does: when part of the
	 * region is unmapped (or moved by mremap), accesses there fault in
	 * whatever is mapped at the address later, instead of failing for
	 * good (the default, docs/semantics.md). Also the way to register
	 * memory the notifier cannot watch (a regular file's mapping).
	 */
	PW_ACCESS_ODP_FOLLOW_VA	= 1 << 7,
};

/**
 * struct pw_mr - memory region
 * @addr:   start of the region (NULL for implicit ODP)
 * @length: bytes (SIZE_MAX for implicit ODP)
 * @lkey:   key for local SGEs
 * @rkey:   key a peer uses for RDMA READ/WRITE/ATOMIC into this region
 * @access: PW_ACCESS_* the region was registered with
 */
struct pw_mr {
	struct pw_context *context;
	struct pw_pd *pd;
	void *addr;
	size_t length;
	uint32_t lkey;
	uint32_t rkey;
	unsigned int access;
};

/** struct pw_comp_channel - completion event channel; @fd can go in epoll */
struct pw_comp_channel {
	struct pw_context *context;
	int fd;
};

/** struct pw_cq - completion queue */
struct pw_cq {
	struct pw_context *context;
	struct pw_comp_channel *channel;
	void *cq_context;
	int cqe;
};

enum pw_qp_state {
	PW_QPS_INIT = 1,	/* connecting: receives may be posted, not sends */
	PW_QPS_RTS = 3,		/* connected, ready to send */
	PW_QPS_ERR = 6,		/* error: every WR is flushed */
};

/**
 * struct pw_qp - reliable-connected queue pair
 * @qp_num:      local QP number
 * @dest_qp_num: the peer's QP number
 * @peer_private_data: private data the peer sent during connection setup
 */
struct pw_qp {
	struct pw_context *context;
	void *qp_context;
	struct pw_pd *pd;
	struct pw_cq *send_cq;
	struct pw_cq *recv_cq;
	uint32_t qp_num;
	uint32_t dest_qp_num;
	uint8_t peer_private_data[PW_MAX_PRIVATE_DATA];
	uint32_t peer_private_data_len;
};

/* ------------------------------------------------------------------ */
/* Work requests and completions                                       */
/* ------------------------------------------------------------------ */

struct pw_sge {
	uint64_t addr;
	uint32_t length;
	uint32_t lkey;
};

enum pw_wr_opcode {
	PW_WR_RDMA_WRITE,
	PW_WR_RDMA_WRITE_WITH_IMM,
	PW_WR_SEND,
	PW_WR_SEND_WITH_IMM,
	PW_WR_RDMA_READ,
	PW_WR_ATOMIC_CMP_AND_SWP,
	PW_WR_ATOMIC_FETCH_AND_ADD,
};

enum pw_send_flags {
	PW_SEND_FENCE		= 1 << 0, /* wait for prior READ/ATOMIC */
	PW_SEND_SIGNALED	= 1 << 1, /* generate a completion */
	PW_SEND_SOLICITED	= 1 << 2, /* solicited event at the receiver */
	PW_SEND_INLINE		= 1 << 3, /* copy the data at post time */
};

/**
 * struct pw_send_wr - send work request, as struct ibv_send_wr
 * @imm_data: immediate data, delivered bit for bit as posted: in host
 *            byte order here and in pw_wc.imm_data, little-endian on the
 *            wire (verbs' is __be32, copied as is to the IB wire).
 *            Programs that htonl() it when posting and ntohl() it when
 *            receiving, as verbs programs do, get the same value back.
 *
 * Atomics operate on 8 bytes at an 8-byte aligned remote address; the
 * single local SGE of 8 bytes receives the original remote value.
 * Atomicity is PW_ATOMIC_HCA: with respect to other pagewire atomics in
 * the target process, not to CPU accesses (as IBV_ATOMIC_HCA).
 */
struct pw_send_wr {
	uint64_t wr_id;
	struct pw_send_wr *next;
	struct pw_sge *sg_list;
	int num_sge;
	enum pw_wr_opcode opcode;
	unsigned int send_flags;
	uint32_t imm_data;
	union {
		struct {
			uint64_t remote_addr;
			uint32_t rkey;
		} rdma;
		struct {
			uint64_t remote_addr;
			uint64_t compare_add;
			uint64_t swap;
			uint32_t rkey;
		} atomic;
	} wr;
};

struct pw_recv_wr {
	uint64_t wr_id;
	struct pw_recv_wr *next;
	struct pw_sge *sg_list;
	int num_sge;
};

enum pw_wc_status {
	PW_WC_SUCCESS,
	PW_WC_LOC_LEN_ERR,	/* local length: message too long, recv too small */
	PW_WC_LOC_QP_OP_ERR,	/* local QP operation error */
	PW_WC_LOC_PROT_ERR,	/* local protection: bad lkey, PD, access, bounds */
	PW_WC_WR_FLUSH_ERR,	/* flushed because the QP is in error */
	PW_WC_REM_INV_REQ_ERR,	/* remote invalid request */
	PW_WC_REM_ACCESS_ERR,	/* remote access: rkey, PD, access, bounds, unmapped */
	PW_WC_REM_OP_ERR,	/* remote operation error */
	PW_WC_RETRY_EXC_ERR,	/* transport retry exceeded / peer gone */
	PW_WC_RNR_RETRY_EXC_ERR,/* no receive posted at the peer, retries exhausted */
	PW_WC_FATAL_ERR,	/* protocol violation by the peer */
	PW_WC_GENERAL_ERR,
};

enum pw_wc_opcode {
	PW_WC_SEND,
	PW_WC_RDMA_WRITE,
	PW_WC_RDMA_READ,
	PW_WC_COMP_SWAP,
	PW_WC_FETCH_ADD,
	PW_WC_RECV = 1 << 7,
	PW_WC_RECV_RDMA_WITH_IMM,
};

enum pw_wc_flags {
	PW_WC_WITH_IMM = 1 << 1,
};

/**
 * struct pw_wc - work completion, as struct ibv_wc
 * @byte_len: bytes received (receive completions) or transferred
 * @imm_data: immediate data as the sender posted it (host byte order),
 *            valid with PW_WC_WITH_IMM
 */
struct pw_wc {
	uint64_t wr_id;
	enum pw_wc_status status;
	enum pw_wc_opcode opcode;
	uint32_t vendor_err;
	uint32_t byte_len;
	uint32_t imm_data;
	uint32_t qp_num;
	unsigned int wc_flags;
};

/* ------------------------------------------------------------------ */
/* Context and protection domains                                      */
/* ------------------------------------------------------------------ */

/**
 * pw_open() - open a context and start its progress engine
 * @attr: options, or NULL for defaults
 *
 * Return: the context, or NULL with errno set.
 */
struct pw_context *pw_open(const struct pw_context_attr *attr);

/**
 * pw_close() - stop the engine and free the context
 *
 * Return: 0, or -EBUSY while PDs, CQs, channels or listeners remain.
 */
int pw_close(struct pw_context *ctx);

struct pw_pd *pw_alloc_pd(struct pw_context *ctx);
/* Return: 0, or -EBUSY while MRs or QPs of the PD remain. */
int pw_dealloc_pd(struct pw_pd *pd);

/* ------------------------------------------------------------------ */
/* Memory regions                                                      */
/* ------------------------------------------------------------------ */

/**
 * pw_reg_mr() - register a memory region
 * @pd:     protection domain
 * @addr:   start address; NULL together with @length == SIZE_MAX and
 *          PW_ACCESS_ON_DEMAND registers the whole address space
 *          (implicit ODP, an explicit opt-in: it exposes everything)
 * @length: bytes, > 0
 * @access: PW_ACCESS_* flags
 *
 * Without PW_ACCESS_ON_DEMAND the range is populated and mlock'ed (pinned)
 * and counts against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.
 * With it, registration is O(1) in @length and touches no page.
 *
 * Return: the MR, or NULL with errno set: EINVAL (bad flags or range),
 * ENOMEM (past RLIMIT_MEMLOCK; pw_last_error() names the limit), EFAULT
 * (pinned range not mapped).
 */
struct pw_mr *pw_reg_mr(struct pw_pd *pd, void *addr, size_t length,
			unsigned int access);

/**
 * pw_dereg_mr() - deregister a memory region
 *
 * The keys stop working at once. An operation that was placing data into
 * the region finishes its current step before this returns; none lands
 * later. Keys are not reused soon.
 */
int pw_dereg_mr(struct pw_mr *mr);

/**
 * pw_mr_invalidate() - drop part of an ODP MR from its device page table
 * @mr:     an on-demand (PW_ACCESS_ON_DEMAND) MR, explicit or implicit
 * @offset: from the MR's start (for an implicit MR: the virtual address)
 * @len:    bytes, > 0; pages overlapping the range are dropped
 *
 * The explicit form of what the kernel notifier does, for when
 * the application is about to change the mapping (munmap, mremap,
 * MADV_DONTNEED) and wants no access to reach what comes there next
 * without a new fault. When this returns, no data placement into the
 * range that began before the call is still running and every later
 * placement (WRITE, SEND, READ response) first faults the pages in again,
 * from whatever is mapped then. A fault that was populating the range
 * meanwhile does not mark it valid (Linux mmu_interval_notifier's
 * read_begin/read_retry). The keys stay valid. Not yet covered: an atomic
 * or a READ response source checked just before the call.
 *
 * Return: 0; -EINVAL for NULL, a pinned MR, @len 0 or a range outside
 * the MR.
 */
int pw_mr_invalidate(struct pw_mr *mr, uint64_t offset, uint64_t len);

/* ------------------------------------------------------------------ */
/* Asynchronous events (as ibv_get_async_event)                        */
/* ------------------------------------------------------------------ */

enum pw_event_type {
	/* part of an MR was unmapped: that range is dead for every access */
	PW_EVENT_MR_UNMAPPED = 1,
	/* part of an MR was moved by mremap(): dead, the MR does not move */
	PW_EVENT_MR_REMAPPED = 2,
	/*
	 * The QP went to PW_QPS_ERR (IBV_EVENT_QP_FATAL): @cause says why,
	 * with nothing outstanding as well. Not sent when the application
	 * itself ended the QP (pw_disconnect, pw_destroy_qp).
	 */
	PW_EVENT_QP_FATAL = 3,
	/*
	 * The peer ended the connection (pw_disconnect or pw_destroy_qp on
	 * its side): the QP is in PW_QPS_ERR, @cause is
	 * PW_QP_CAUSE_PEER_DISCONNECTED.
	 */
	PW_EVENT_QP_PEER_DISCONNECTED = 4,
};

/**
 * enum pw_qp_cause - why a QP is in the error state
 *
 * pw_query_qp() reports it too. A peer from before the LINK protocol
 * feature (docs/wire.md) sends no DISCONNECT: its every close is
 * PEER_CLOSED.
 */
enum pw_qp_cause {
	PW_QP_CAUSE_NONE = 0,		/* not in error, or ended by the application */
	PW_QP_CAUSE_LOCAL_WR,		/* a WR failed locally: its completion says how */
	PW_QP_CAUSE_REMOTE_NAK,		/* the peer refused one of our requests */
	PW_QP_CAUSE_RESPONDER,		/* we refused one of the peer's requests (IBA) */
	PW_QP_CAUSE_RETRY_EXC,		/* RNR or PAGE_FAULT retries used up */
	PW_QP_CAUSE_PROTOCOL,		/* the peer broke the protocol */
	PW_QP_CAUSE_PEER_DISCONNECTED,	/* the peer ended the connection */
	PW_QP_CAUSE_PEER_CLOSED,	/* closed without a DISCONNECT: the peer process ended */
	PW_QP_CAUSE_PEER_RESET,		/* the connection was reset or broke */
	PW_QP_CAUSE_PEER_TIMEOUT,	/* no sign of the peer's engine for peer_timeout_ms */
	/*
	 * This process was stopped (SIGSTOP, a debugger) or starved for
	 * most of peer_timeout_ms while the peer may have been waiting: the
	 * peer may have given up, so nothing that arrived meanwhile runs.
	 */
	PW_QP_CAUSE_STOPPED,
};

/**
 * struct pw_async_event - one asynchronous event
 * @element.mr:     the MR (PW_EVENT_MR_*)
 * @element.qp:     the QP (PW_EVENT_QP_*)
 * @offset/@length: the range of the MR concerned, in bytes from its start
 * @cause:          PW_EVENT_QP_*: why the QP went to error
 */
struct pw_async_event {
	enum pw_event_type event_type;
	union {
		struct pw_mr *mr;
		struct pw_qp *qp;
	} element;
	uint64_t offset;
	uint64_t length;
	enum pw_qp_cause cause;
};

/*
 * pw_get_async_fd() - a descriptor that polls readable while an event is
 * waiting. Set O_NONBLOCK on it (fcntl) to make pw_get_async_event()
 * return -EAGAIN instead of waiting.
 */
int pw_get_async_fd(struct pw_context *ctx);

/**
 * pw_get_async_event() - take the next asynchronous event
 *
 * Waits for one unless the async fd is non-blocking. Every event taken
 * must be given back with pw_ack_async_event(): pw_dereg_mr() and
 * pw_destroy_qp() wait for the acknowledgement of their object's events
 * (events still queued for it are dropped).
 *
 * Return: 0, -EAGAIN (none, non-blocking fd) or -EINVAL.
 */
int pw_get_async_event(struct pw_context *ctx, struct pw_async_event *event);
void pw_ack_async_event(struct pw_async_event *event);
const char *pw_event_type_str(enum pw_event_type type);
const char *pw_qp_cause_str(enum pw_qp_cause cause);

/* pw_advise_mr() advice, as ibv_advise_mr()'s */
enum pw_advise_mr_advice {
	PW_ADVISE_MR_ADVICE_PREFETCH		= 0,	/* for reading */
	PW_ADVISE_MR_ADVICE_PREFETCH_WRITE	= 1,	/* for writing */
};

/* Wait until the pages are in the MR's page table (IBV_ADVISE_MR_FLAG_FLUSH). */
#define PW_ADVISE_MR_FLAG_FLUSH	(1u << 0)

/**
 * pw_advise_mr() - fault pages of ODP MRs in ahead of use
 * @pd:      protection domain of the MRs
 * @advice:  PW_ADVISE_MR_ADVICE_PREFETCH or _PREFETCH_WRITE
 * @flags:   0 (asynchronous: queued to the fault engine) or
 *           PW_ADVISE_MR_FLAG_FLUSH (return when done)
 * @sg_list: ranges, each naming its MR by lkey
 * @num_sge: entries in @sg_list, >= 1
 *
 * Ops that later touch the ranges find the pages valid and take no fault
 * (the fault counters of pw_query_stats() show it). Pinned MRs need no
 * advice: their ranges are accepted and ignored.
 *
 * Return: 0; -EINVAL (bad advice or flags, an lkey that is not an MR of
 * @pd, a range outside its MR); -EFAULT (FLUSH: no mapping in a range);
 * -ENOMEM.
 */
int pw_advise_mr(struct pw_pd *pd, enum pw_advise_mr_advice advice,
		 uint32_t flags, const struct pw_sge *sg_list, uint32_t num_sge);

/* pw_query_stats(): fault latency histogram buckets (bucket i: < 2^i us) */
#define PW_STATS_FAULT_HIST	16

/**
 * struct pw_stats - counters of a context, since pw_open()
 * @faults:             faults resolved or failed by the fault engine
 *                      (responder ops, and asynchronous pw_advise_mr())
 * @fault_failed:       of those, with no mapping (remote access errors)
 * @fault_pages:        pages populated for ops
 * @fault_around_pages: pages populated ahead (fault-around)
 * @fault_major:        faults that had to read pages in (swap, files)
 * @fault_ns:           submit-to-resolved time, summed
 * @stall_ns:           time QPs spent stalled (STALL policy), summed
 * @fault_lat_hist:     faults by latency: bucket i counts < 2^i us, the
 *                      last one everything slower
 * @naks_sent:          PAGE_FAULT NAKs our responders sent (DROP policy)
 * @naks_received:      PAGE_FAULT NAKs our requesters got
 * @retransmitted_bytes: payload our requesters sent again after them
 * @dropped_bytes:      payload our responders read and discarded (after a
 *                      PAGE_FAULT or RNR NAK, until the resend arrives)
 * @fault_inline:       of @faults, resolved on the progress thread (small,
 *                      anonymous, nothing swapped: no I/O possible)
 */
struct pw_stats {
	uint64_t faults;
	uint64_t fault_failed;
	uint64_t fault_pages;
	uint64_t fault_around_pages;
	uint64_t fault_major;
	uint64_t fault_ns;
	uint64_t stall_ns;
	uint64_t fault_lat_hist[PW_STATS_FAULT_HIST];
	uint64_t naks_sent;
	uint64_t naks_received;
	uint64_t retransmitted_bytes;
	uint64_t dropped_bytes;
	uint64_t fault_inline;
	/*
	 * The notifier (process-wide): 1 when it is off (PW_NOTIFIER=off, or
	 * no userfaultfd here), and the VM events it has handled.
	 */
	uint64_t notifier_off;
	uint64_t notifier_events;
	/*
	 * NOTIFY: INVALIDATE/VALIDATE our targets sent and our
	 * requesters received; FAULT_INs our requesters sent (and so waited
	 * for) and our targets answered; INVALIDATEs not sent because a QP's
	 * queue was full (the peer then faults as under STALL); the invalid
	 * ranges our requesters remember now, over all QPs (bounded:
	 * PW_RVIEW_MAX per QP).
	 */
	uint64_t notifications_sent;
	uint64_t notifications_received;
	uint64_t fault_in_sent;
	uint64_t fault_in_received;
	uint64_t notify_dropped;
	uint64_t notify_view_ranges;
	/* CLOCK_MONOTONIC ns when our requester last applied an INVALIDATE */
	uint64_t notify_last_rx_ns;
	/*
	 * The memory budget: its size (0: none), what the ODP MRs' page
	 * tables hold now, pages reclaimed (invalidated) by it, of those the
	 * ones MADV_PAGEOUT took out of memory and the ones still resident
	 * after it, and 1 when that was for want of swap.
	 */
	uint64_t budget_bytes;
	uint64_t resident_bytes;
	uint64_t reclaimed_pages;
	uint64_t reclaim_paged_out;
	uint64_t reclaim_unfreed;
	uint64_t reclaim_no_swap;
	/*
	 * Limits (docs/limits.md): incoming connections dropped from a
	 * listener's handshake set because it was full (max_half_open), and
	 * ones that failed it (timeout, EOF, not our protocol); READ/ATOMIC
	 * requests refused because the peer overran max_dest_rd_atomic.
	 */
	uint64_t conn_half_open_dropped;
	uint64_t conn_handshake_failed;
	uint64_t rd_atomic_overrun;
	/*
	 * Transport liveness (docs/limits.md): HEARTBEATs sent and received
	 * (PINGs, their answers, and the unasked ones of an engine busy
	 * with a peer's request); QPs failed because the peer's engine gave
	 * no sign for peer_timeout_ms; times this process found it had been
	 * stopped longer than a QP's peer waits.
	 */
	uint64_t heartbeats_sent;
	uint64_t heartbeats_received;
	uint64_t peer_timeouts;
	uint64_t stops_detected;
};

/**
 * pw_query_stats() - read a context's counters
 * @ctx:  the context
 * @st:   filled in
 * @size: sizeof(*st) as the caller was compiled (fields past it are not
 *        written, so that old callers keep working when fields are added)
 *
 * Return: 0 or -EINVAL.
 */
int pw_query_stats(struct pw_context *ctx, struct pw_stats *st, size_t size);

/* ------------------------------------------------------------------ */
/* Completion queues and channels                                      */
/* ------------------------------------------------------------------ */

struct pw_comp_channel *pw_create_comp_channel(struct pw_context *ctx);
int pw_destroy_comp_channel(struct pw_comp_channel *channel);

/**
 * pw_create_cq() - create a completion queue
 * @cqe:     minimum number of entries; the CQ grows as QPs are attached so
 *           that it can never overflow
 * @channel: completion channel for events, or NULL
 */
struct pw_cq *pw_create_cq(struct pw_context *ctx, int cqe, void *cq_context,
			   struct pw_comp_channel *channel, int comp_vector);
/* Return: 0, or -EBUSY while a QP uses it. */
int pw_destroy_cq(struct pw_cq *cq);

/**
 * pw_poll_cq() - poll up to @num_entries completions, never blocks
 *
 * Return: the number of completions written to @wc (0 if none), or a
 * negative errno.
 */
int pw_poll_cq(struct pw_cq *cq, int num_entries, struct pw_wc *wc);

/**
 * pw_req_notify_cq() - arm the CQ for one completion event
 * @solicited_only: only for solicited receives and error completions
 *
 * The next matching completion makes the channel fd readable and queues an
 * event for pw_get_cq_event(). As in verbs, poll the CQ again after arming
 * to catch completions that arrived before.
 */
int pw_req_notify_cq(struct pw_cq *cq, int solicited_only);

/**
 * pw_get_cq_event() - wait for a completion event
 * @timeout_ms: -1 waits forever; 0 does not wait
 *
 * Return: 0 with *@cq and *@cq_context set, -EAGAIN when no event
 * arrived within the timeout, or another negative errno.
 */
int pw_get_cq_event(struct pw_comp_channel *channel, struct pw_cq **cq,
		    void **cq_context, int timeout_ms);
void pw_ack_cq_events(struct pw_cq *cq, unsigned int nevents);

/* ------------------------------------------------------------------ */
/* Connections and queue pairs                                         */
/* ------------------------------------------------------------------ */

struct pw_qp_cap {
	uint32_t max_send_wr;		/* 0 = default 128 */
	uint32_t max_recv_wr;		/* 0 = default 128 */
	uint32_t max_send_sge;		/* 0 = default 4 */
	uint32_t max_recv_sge;		/* 0 = default 4 */
	uint32_t max_inline_data;	/* 0 = default 64 */
};

#define PW_RNR_RETRY_NONE	(-1)

/**
 * struct pw_qp_init_attr - QP creation attributes
 * @sq_sig_all:   every send WR generates a completion
 * @max_rd_atomic: READ/ATOMIC we may have outstanding; 0 = default 16
 * @max_dest_rd_atomic: READ/ATOMIC we accept outstanding; 0 = default 16
 * @rnr_retry:    retries after "receiver not ready" NAKs: 0 = default (7),
 *                1..6 that many, 7 = infinite (IBA), PW_RNR_RETRY_NONE =
 *                fail on the first RNR NAK
 * @min_rnr_timer_us: wait before an RNR retry; 0 = default 200 us
 * @fault_policy: enum pw_fault_policy for faults this QP's responder takes;
 *                0 = the context's. DROP falls back to STALL with a peer
 *                that cannot handle PAGE_FAULT NAKs, NOTIFY with a peer
 *                that did not offer the NOTIFY protocol.
 * @retry_cnt:    PAGE_FAULT NAKs (the peer's DROP policy) taken at the
 *                longest back-off (100 ms; it doubles from the peer's hint
 *                up to there) before the WR fails with PW_WC_RETRY_EXC_ERR:
 *                0 = default (7), 1..7, or PW_RNR_RETRY_NONE for none
 * @peer_timeout_ms: this QP's dead-peer bound (see pw_context_attr);
 *                0 = the context's, else 2000..3600000
 *
 * Numeric fields left at zero take the documented defaults; the values in
 * effect are written back into @cap by pw_connect()/pw_accept().
 */
struct pw_qp_init_attr {
	void *qp_context;
	struct pw_cq *send_cq;
	struct pw_cq *recv_cq;
	struct pw_qp_cap cap;
	int sq_sig_all;
	uint32_t max_rd_atomic;
	uint32_t max_dest_rd_atomic;
	int rnr_retry;
	uint32_t min_rnr_timer_us;
	uint32_t fault_policy;
	int retry_cnt;
	uint32_t peer_timeout_ms;
};

/**
 * struct pw_conn_param - connection parameters, as struct rdma_conn_param
 * @private_data:     sent to the peer (may be NULL)
 * @private_data_len: at most PW_MAX_PRIVATE_DATA
 * @timeout_ms:       handshake timeout; 0 = default 10000, -1 = forever
 *                    (pw_accept: also how long to wait for a connection)
 * @src_addr:         pw_connect()/pw_connect_async() only: the local
 *                    address to connect from, a struct sockaddr_in or
 *                    sockaddr_in6 (address and port; a port of 0 is any,
 *                    as is the wildcard address), as the source address of
 *                    rdma_resolve_addr(). NULL: the kernel's choice. Only
 *                    @host's addresses of the same family are tried. The
 *                    accepting side's calls take NULL only.
 */
struct pw_conn_param {
	const void *private_data;
	uint32_t private_data_len;
	int timeout_ms;
	const struct sockaddr *src_addr;
};

/**
 * pw_listen() - listen for connections
 * @host: local address to bind, NULL or "" for any
 * @port: TCP port, 0 for an ephemeral one (see pw_listener_port())
 */
struct pw_listener *pw_listen(struct pw_context *ctx, const char *host,
			      uint16_t port);
uint16_t pw_listener_port(const struct pw_listener *l);
/*
 * Readable while a whole connection request waits for pw_accept() (the
 * engine reads requests as their bytes arrive, so pw_accept() then does
 * not wait for a slow client): poll, select or epoll it; do not read it.
 * For a listener of pw_listen_channel(), the channel's fd.
 */
int pw_listener_fd(const struct pw_listener *l);
int pw_close_listener(struct pw_listener *l);

/**
 * pw_connect() - create an RC QP connected to a listening peer
 *
 * Blocks until the peer accepts or rejects, or the timeout expires: the
 * handshake of pw_connect_async(), waited for. The peer's private data
 * is in qp->peer_private_data.
 *
 * Return: the QP, or NULL with errno: ECONNREFUSED (nobody listening or
 * rejected), ETIMEDOUT, EPROTO (peer speaks another protocol or version),
 * ECONNRESET (the peer closed during the handshake), EHOSTUNREACH (the
 * name does not resolve, no route, or no address of @param->src_addr's
 * family), EADDRINUSE or EADDRNOTAVAIL (@param->src_addr cannot be
 * bound), EINVAL.
 */
struct pw_qp *pw_connect(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			 const char *host, uint16_t port,
			 const struct pw_conn_param *param);

/**
 * pw_accept() - accept the next connection on @l as an RC QP in @pd
 *
 * Several calls on one listener may wait at once; each takes the next
 * connection request and returns once the connection is up (the client's
 * CONNECT_RTU arrived, with a client that sends one): a client that gave
 * up meanwhile is passed over. Not for a listener of pw_listen_channel().
 *
 * Return: the QP, or NULL with errno (ETIMEDOUT when none arrived, EMFILE
 * or ENFILE when out of file descriptors with no handshake pending,
 * EINVAL).
 */
struct pw_qp *pw_accept(struct pw_listener *l, struct pw_pd *pd,
			struct pw_qp_init_attr *attr,
			const struct pw_conn_param *param);

/* ------------------------------------------------------------------ */
/* Connection events (as librdmacm's event channel)                    */
/* ------------------------------------------------------------------ */

/*
 * The asynchronous connection model: pw_connect_async() returns at once
 * and its outcome arrives as an event; a listener of pw_listen_channel()
 * reports each incoming request as CONNECT_REQUEST, answered with
 * pw_accept_request() or pw_reject(); an established QP of either kind
 * reports DISCONNECTED, then TIMEWAIT_EXIT. docs/semantics.md,
 * "Connections", has the sequences.
 */

/** struct pw_cm_channel - connection event channel; @fd can go in epoll */
struct pw_cm_channel {
	struct pw_context *context;
	int fd;
};

enum pw_cm_event_type {
	/* a client asks (@request, @listener, its private data and address) */
	PW_CM_EVENT_CONNECT_REQUEST = 1,
	/* the handshake broke: a peer speaking nonsense, a client that left */
	PW_CM_EVENT_CONNECT_ERROR = 2,
	/* no answer in time (-ETIMEDOUT), or no route (-EHOSTUNREACH, ...) */
	PW_CM_EVENT_UNREACHABLE = 3,
	/*
	 * refused: by the peer application (pw_reject: its private data),
	 * by nobody listening, or for no common protocol version (-EPROTO)
	 */
	PW_CM_EVENT_REJECTED = 4,
	/* the QP is connected (PW_QPS_RTS); client side: the server's private data */
	PW_CM_EVENT_ESTABLISHED = 5,
	/*
	 * the connection ended and the QP is in PW_QPS_ERR: status 0 when
	 * either side disconnected (pw_disconnect, pw_destroy_qp), else
	 * -errno of the cause (pw_query_qp() has it)
	 */
	PW_CM_EVENT_DISCONNECTED = 6,
	/* after DISCONNECTED: nothing more comes from the connection */
	PW_CM_EVENT_TIMEWAIT_EXIT = 7,
};

struct pw_conn_request;	/* an incoming connection awaiting an answer */

/**
 * struct pw_cm_event - one connection event (valid until pw_ack_cm_event)
 * @status:       0, or a negative errno (see the event types)
 * @qp:           the QP (every event but CONNECT_REQUEST)
 * @context:      the QP's qp_context, or the listener's context
 * @listener:     CONNECT_REQUEST: the listener it arrived on
 * @request:      CONNECT_REQUEST: answer it with pw_accept_request() or
 *                pw_reject(), exactly once
 * @private_data: the peer's, for CONNECT_REQUEST, ESTABLISHED (client
 *                side) and REJECTED by the peer application
 * @peer_addr:    the peer's address (every event)
 */
struct pw_cm_event {
	enum pw_cm_event_type event;
	int status;
	struct pw_qp *qp;
	void *context;
	struct pw_listener *listener;
	struct pw_conn_request *request;
	const void *private_data;
	uint32_t private_data_len;
	struct sockaddr_storage peer_addr;
};

struct pw_cm_channel *pw_create_cm_channel(struct pw_context *ctx);
/* Return: 0, or -EBUSY while listeners or QPs report to it. */
int pw_destroy_cm_channel(struct pw_cm_channel *ch);

/**
 * pw_get_cm_event() - take the next connection event
 *
 * Waits for one unless the channel's fd is non-blocking (O_NONBLOCK).
 * Every event taken is given back with pw_ack_cm_event(); pw_destroy_qp()
 * waits for its QP's.
 *
 * Return: 0, -EAGAIN (none, non-blocking fd) or -EINVAL.
 */
int pw_get_cm_event(struct pw_cm_channel *ch, struct pw_cm_event **event);
int pw_ack_cm_event(struct pw_cm_event *event);
const char *pw_cm_event_str(enum pw_cm_event_type type);

/**
 * pw_listen_channel() - listen, reporting requests on @ch
 * @context: given back in each CONNECT_REQUEST event
 *
 * As pw_listen(), but every whole, valid connection request becomes a
 * CONNECT_REQUEST event on @ch instead of waiting for pw_accept(). The
 * requests not yet answered count against max_half_open.
 */
struct pw_listener *pw_listen_channel(struct pw_cm_channel *ch, const char *host,
				      uint16_t port, void *context);

/**
 * pw_accept_request() - accept a CONNECT_REQUEST as an RC QP in @pd
 *
 * Returns at once with the QP in PW_QPS_INIT (receives may be posted);
 * ESTABLISHED follows on the listener's channel when the connection is
 * up, or CONNECT_ERROR when the client is gone. @param->timeout_ms bounds
 * the wait for the client's RTU (0: the handshake timeout). @req is
 * consumed, even on failure.
 *
 * Return: the QP, or NULL with errno (EINVAL, ENOMEM, ECONNABORTED: the
 * client had already left).
 */
struct pw_qp *pw_accept_request(struct pw_conn_request *req, struct pw_pd *pd,
				struct pw_qp_init_attr *attr,
				const struct pw_conn_param *param);

/**
 * pw_reject() - refuse a CONNECT_REQUEST
 *
 * The client gets REJECTED (-ECONNREFUSED) with @private_data (at most
 * PW_MAX_PRIVATE_DATA bytes). @req is consumed.
 *
 * Return: 0 or -EINVAL.
 */
int pw_reject(struct pw_conn_request *req, const void *private_data,
	      uint32_t private_data_len);

/**
 * pw_connect_async() - start connecting, the outcome as an event on @ch
 *
 * Returns at once with the QP in PW_QPS_INIT; ESTABLISHED, REJECTED,
 * UNREACHABLE or CONNECT_ERROR follows on @ch (then destroy a QP that did
 * not connect). @host is resolved in the call: a numeric address never
 * blocks. A @param->src_addr that cannot be bound ends it with
 * UNREACHABLE, status -EADDRINUSE or -EADDRNOTAVAIL.
 *
 * Return: the QP, or NULL with errno (EINVAL, ENOMEM, EHOSTUNREACH: the
 * name does not resolve, or to no address of @param->src_addr's family).
 */
struct pw_qp *pw_connect_async(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			       const char *host, uint16_t port,
			       const struct pw_conn_param *param,
			       struct pw_cm_channel *ch);

/**
 * pw_disconnect() - end the connection, keep the QP (as rdma_disconnect)
 *
 * The QP goes to PW_QPS_ERR: outstanding send and receive WRs complete
 * with PW_WC_WR_FLUSH_ERR before this returns, WRs posted later are
 * flushed. The peer is told (its QP gets PW_EVENT_QP_PEER_DISCONNECTED)
 * after the acknowledgements it is owed. No PW_EVENT_QP_FATAL is raised
 * for it. The QP is still to be destroyed.
 *
 * Return: 0 or -EINVAL.
 */
int pw_disconnect(struct pw_qp *qp);

/**
 * pw_destroy_qp() - disconnect and destroy
 *
 * Outstanding send and receive WRs complete with PW_WC_WR_FLUSH_ERR before
 * this returns. Waits for the acknowledgement of the QP's async events
 * that were taken (pw_ack_async_event); queued ones are dropped.
 */
int pw_destroy_qp(struct pw_qp *qp);

enum pw_qp_state pw_qp_state(const struct pw_qp *qp);

/* pw_qp_attr.features: protocol features in use on the connection */
#define PW_QP_FEATURE_FAULT_NAK	(1u << 0)	/* the peer takes DROP's NAKs */
#define PW_QP_FEATURE_NOTIFY	(1u << 1)	/* INVALIDATE / VALIDATE / FAULT_IN */
#define PW_QP_FEATURE_LINK	(1u << 2)	/* engine liveness, RTU, DISCONNECT */

/**
 * struct pw_qp_attr - what pw_query_qp() reports (as ibv_query_qp)
 * @qp_state:       PW_QPS_INIT, _RTS or _ERR
 * @cause:          why it is in PW_QPS_ERR (PW_QP_CAUSE_NONE otherwise)
 * @cap:            the queue sizes in effect
 * @max_rd_atomic:  READ/ATOMIC we send at once (lowered to the peer's
 *                  max_dest_rd_atomic)
 * @fault_policy:   the responder fault policy in effect (DROP and NOTIFY
 *                  fall back to STALL with a peer that lacks them)
 * @features:       PW_QP_FEATURE_* both sides use
 * @local_addr, @peer_addr: the connection's addresses (kept after it ends)
 */
struct pw_qp_attr {
	enum pw_qp_state qp_state;
	enum pw_qp_cause cause;
	uint32_t qp_num;
	uint32_t dest_qp_num;
	struct pw_qp_cap cap;
	uint32_t max_rd_atomic;
	uint32_t max_dest_rd_atomic;
	int rnr_retry;
	int retry_cnt;
	uint32_t min_rnr_timer_us;
	uint32_t fault_policy;
	uint32_t peer_timeout_ms;
	uint32_t features;
	struct sockaddr_storage local_addr;
	struct sockaddr_storage peer_addr;
};

/**
 * pw_query_qp() - a QP's state, attributes and addresses
 * @size: sizeof(*attr) as the caller was compiled (as pw_query_stats)
 *
 * Return: 0 or -EINVAL.
 */
int pw_query_qp(struct pw_qp *qp, struct pw_qp_attr *attr, size_t size);

/**
 * pw_post_send() - post a list of send work requests
 * @bad_wr: on failure, the first WR that was not posted
 *
 * Return: 0, -EINVAL (malformed WR), -ENOMEM (send queue full).
 * Errors found while executing a WR (keys, bounds, access) are reported
 * in its completion, as verbs does. Posting to a QP in error state flushes.
 */
int pw_post_send(struct pw_qp *qp, struct pw_send_wr *wr,
		 struct pw_send_wr **bad_wr);

/* Return: 0, -EINVAL, -ENOMEM (receive queue full). */
int pw_post_recv(struct pw_qp *qp, struct pw_recv_wr *wr,
		 struct pw_recv_wr **bad_wr);

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

const char *pw_wc_status_str(enum pw_wc_status status);
const char *pw_wr_opcode_str(enum pw_wr_opcode opcode);

/* A sentence about the last failure in this thread, or "" if none. */
const char *pw_last_error(void);

/*
 * The library's version, "MAJOR.MINOR.PATCH", as it was built (which may be
 * later than this header's PW_VERSION_STRING). Never NULL.
 */
const char *pw_version(void);

#if defined(__GNUC__) && __GNUC__ >= 4
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* PAGEWIRE_PAGEWIRE_H */
