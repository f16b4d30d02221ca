/* SPDX-License-Identifier: MIT */
/*
 * pagewire-perf: perftest-style benchmarks over pagewire.
 *
 * Structure (one responsibility per file):
 *   perf_main.c      command line, --loopback fork, top-level flow
 *   perf_plan.c      tests table, sizes and iterations of a run
 *   perf_conn.c      buffers, MRs, CQs, QPs, private-data exchange
 *   perf_client.c    the measuring side: bw tests drive all QPs from one
 *                    thread (as perftest), latency tests one thread per QP
 *   perf_server.c    the passive side, threaded the same way
 *   perf_ctrl.c      the end-of-run "done" / "result" handshake, and the
 *                    "region" requests of --swapped and hol (page out,
 *                    verify)
 *   perf_swap.c      swap detection, the server's side of a region request
 *                    (MADV_PAGEOUT, mincore, verification)
 *   perf_platform.c  the kernel's own rates that bound --first-touch and
 *                    --swapped (page population, swap-in), measured by the
 *                    server once the timed phase is over
 *   perf_report.c    statistics, perftest-like tables, JSON lines
 *   perf_tcp.c       the plain-TCP baselines (tcp_bw, tcp_lat, --baseline)
 *   perf_tcp_hol.c   hol's TCP reference: the machine's own head-of-line
 *                    factor (an 8-byte TCP ping-pong alone and next to a
 *                    paced TCP stream)
 *
 * Buffer layout of every QP, on both sides (one mmap, one MR):
 *
 *   [ data area | rx area | ctrl area ]
 *
 * The data area is the source of outgoing payload (WRITE, SEND, READ
 * responses, the atomic target). The rx area is where incoming payload
 * lands (WRITE, SEND, READ results, atomic results). Keeping them apart
 * lets either side verify what arrived against the peer's pattern without
 * its own outgoing data getting in the way. The ctrl area holds the small
 * control messages of perf_ctrl.c.
 */
#ifndef PAGEWIRE_TOOL_PERF_H
#define PAGEWIRE_TOOL_PERF_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <pagewire/pagewire.h>

#include "cq_wait.h"

#define PERF_PROG		"pagewire-perf"
#define PERF_DEFAULT_PORT	18515
#define PERF_MAX_QPS		64
#define PERF_MAX_SIZES		24	/* -a: 2^1 .. 2^23 */
#define PERF_ALL_MAX_SIZE	(8u << 20)
#define PERF_DEFAULT_TX_DEPTH	128
/* READ/ATOMIC kept in flight: the QP default, as perftest's -o default. */
#define PERF_RD_ATOMIC		16
/* Receives the send_bw server keeps posted (perftest's rx depth). */
#define PERF_RX_DEPTH		512
/* Size of the ctrl area and of each control message slot. */
#define PERF_CTRL_AREA		4096
#define PERF_CTRL_SLOT		256
/*
 * Latency loops and the control handshake signal every PERF_LAT_SIGNAL-th
 * send and the last one: a signaled send completion wakes a blocked
 * waiter, and one wake-up per iteration (the peer's reply) is what a
 * ping-pong should cost, not two.
 */
#define PERF_LAT_SIGNAL		16
/* Completions polled at once. */
#define PERF_WC_BATCH		16
/* Client gives up when no completion arrives for this long (a hang). */
#define PERF_STALL_TIMEOUT_MS	60000

/* Exit codes: 0 success, 1 run failed, 2 usage error, 77 skipped. */
#define PERF_EXIT_FAIL		1
#define PERF_EXIT_USAGE		2
/* --swapped and hol without swap: CTest's skip code, as tests/ use it. */
#define PERF_EXIT_SKIP		77

enum perf_test {
	PERF_WRITE_BW,
	PERF_WRITE_LAT,
	PERF_READ_BW,
	PERF_READ_LAT,
	PERF_SEND_BW,
	PERF_SEND_LAT,
	PERF_ATOMIC_LAT,
	/* Plain TCP sockets, no pagewire at all: the baselines. */
	PERF_TCP_BW,
	PERF_TCP_LAT,
	/* demand paging */
	PERF_FAULT_LAT,
	PERF_HOL,
	PERF_TEST_COUNT
};

/*
 * hol (head-of-line blocking): QP A (index 0) streams -s WRITEs (1 MiB by
 * default), PERF_HOL_WINDOW in flight, into a region of PERF_HOL_A_SLOTS
 * messages of the server's rx area that the server pages out
 * (MADV_PAGEOUT) before every pass over it (an A block); QP B (index 1)
 * does 8-byte signaled WRITEs one at a time. Phases of B alone and of B
 * while A runs alternate, PERF_HOL_PHASES of each.
 */
#define PERF_HOL_A_SLOTS	32
#define PERF_HOL_WINDOW		16
#define PERF_HOL_PHASES		8
#define PERF_HOL_DEFAULT_SIZE	(1u << 20)
#define PERF_HOL_DEFAULT_ITERS	2000
#define PERF_HOL_B_SIZE		8

/*
 * fault_lat layout of the target's area: PERF_FAULT_RESIDENT pages written
 * first (then resident and valid), then one fresh page per iteration every
 * other page (a gap, so that no fault looks sequential and fault-around
 * stays out of the measurement).
 */
#define PERF_FAULT_RESIDENT	64
#define PERF_FAULT_PAGE		4096
static inline uint64_t perf_fault_resident_off(uint64_t i)
{
	return (i % PERF_FAULT_RESIDENT) * PERF_FAULT_PAGE;
}

static inline uint64_t perf_fault_fresh_off(uint64_t i)
{
	return (PERF_FAULT_RESIDENT + 2 * i) * PERF_FAULT_PAGE;
}

enum perf_mr_mode {
	PERF_MR_PINNED,
	PERF_MR_ODP,
	PERF_MR_IMPLICIT,
	PERF_MR_COUNT
};

enum perf_atomic_op {
	PERF_ATOMIC_FA,	/* FETCH_AND_ADD (default, as perftest) */
	PERF_ATOMIC_CS,	/* CMP_AND_SWAP */
	PERF_ATOMIC_COUNT
};

/**
 * struct perf_test_info - static description of a test
 * @name:     command-line name
 * @title:    perftest-like header title
 * @bw:       bandwidth test (window of WRs) rather than latency
 * @half_rtt: latency is a ping-pong; report half the round trip
 * @server_data_pattern: the server's data area must hold its pattern
 *            before the client starts (READ source, atomic target)
 * @server_recvs: the server receives one message per iteration
 * @tcp:      a plain-TCP baseline test (perf_tcp.c), not a pagewire one
 */
struct perf_test_info {
	const char *name;
	const char *title;
	bool bw;
	bool half_rtt;
	bool server_data_pattern;
	bool server_recvs;
	bool tcp;
};

extern const struct perf_test_info perf_tests[PERF_TEST_COUNT];
extern const char *const perf_mr_names[PERF_MR_COUNT];
extern const char *const perf_atomic_names[PERF_ATOMIC_COUNT];

/**
 * struct perf_opts - parsed command line
 * @size_set/@iters_set/@port_set: given explicitly (else defaults apply)
 * @host:   server to connect to; NULL = be the server
 */
struct perf_opts {
	enum perf_test test;
	enum perf_mr_mode mr;
	enum perf_atomic_op atomic;
	const char *policy;
	uint64_t size;
	uint64_t iters;
	bool size_set;
	bool iters_set;
	bool all_sizes;
	unsigned int qps;
	unsigned int port;
	bool port_set;
	unsigned int tx_depth;
	unsigned int cq_mod;	/* -Q: 0 = a quarter of the window */
	bool json;
	bool busy_poll;
	bool loopback;
	bool baseline;
	bool vs_pinned;
	bool first_touch;
	bool swapped;
	bool stats;
	bool mr_set;
	bool local_reg;		/* the local test 'reg' */
	bool local_inval;	/* the local test 'inval_lat' */
	bool local_over;	/* the local test 'overcommit' */
	uint64_t budget;	/* overcommit: --budget (bytes) */
	unsigned int ratio;	/* overcommit: --ratio (region / budget) */
	unsigned int seconds;	/* overcommit: --seconds */
	const char *host;
};

/**
 * struct perf_plan - the sizes of a run and the iterations of each
 *
 * Both sides compute it from the same inputs (the client's, carried in
 * its private data), so the server knows how many messages to expect.
 */
struct perf_plan {
	unsigned int n;
	uint64_t size[PERF_MAX_SIZES];
	uint64_t iters[PERF_MAX_SIZES];
	uint64_t total_iters;
	uint64_t max_size;
};

/**
 * struct perf_wire_info - what each side tells the other at connect time
 *
 * Encoded explicitly as PERF_WIRE_INFO_LEN little-endian bytes, see
 * perf_conn.c for the byte layout.
 */
struct perf_wire_info {
	uint8_t test;
	uint8_t mr;
	uint8_t atomic;
	uint8_t flags;		/* PERF_WF_* */
	uint16_t qp_index;
	uint16_t qps;
	uint16_t tcp_port;	/* server: its --baseline listener, 0 = none */
	uint32_t tx_depth;
	uint32_t rkey;
	uint32_t rkey_pinned;	/* --vs-pinned: pinned MR over the same buffer */
	uint64_t size;
	uint64_t iters;
	uint64_t seed;		/* pattern seed of this side's data area */
	uint64_t data_addr;
	uint64_t rx_addr;
	uint64_t area_len;	/* bytes usable in each of data / rx area */
};

#define PERF_WF_ALL_SIZES	(1u << 0)
#define PERF_WF_ITERS_SET	(1u << 1)
#define PERF_WF_BASELINE	(1u << 2)	/* client: run the TCP baseline */
#define PERF_WF_VS_PINNED	(1u << 3)	/* client: paired ODP/pinned run */
#define PERF_WF_FIRST_TOUCH	(1u << 4)	/* client: fresh target pages */
#define PERF_WF_SWAPPED		(1u << 5)	/* client: paged-out target pages */
#define PERF_WIRE_INFO_LEN	76

/*
 * --vs-pinned: a paired measurement. Each side registers a second, pinned
 * MR over the same buffer, and the run alternates between the MR under
 * test (kind 0) and the pinned one (kind 1) in blocks of consecutive
 * messages, so that both kinds see the same machine load. Separate runs
 * on this shared 2-core machine differ by 20% and more from one minute to
 * the next, far more than the difference being measured.
 */
#define PERF_PAIR_LAT_BLOCK	64
#define PERF_PAIR_MIN_ITERS	512
static inline unsigned int perf_pair_kind(uint64_t msg, uint64_t block)
{
	return (unsigned int)((msg / block) & 1);
}

/*
 * --first-touch pairs the same way: kind 0 blocks write to target pages
 * nobody has touched (message k to slot k + 1, never reused), kind 1
 * blocks to the resident slot 0, so that the run measures both.
 */
static inline uint64_t perf_first_touch_off(uint64_t msg, uint64_t size,
					    uint64_t block)
{
	return perf_pair_kind(msg, block) ? 0 : (msg + 1) * size;
}

/*
 * --swapped pairs the same way: kind 0 blocks write to a region of the
 * target ("slot 1", at block * size) that the server pages out before
 * each of them, kind 1 blocks to a resident region ("slot 0", at 0) of
 * the same size. Message j of a block goes to slot j of its region. Its
 * source is slot (j + b / 2) % (block + 1) of the client's data area
 * (b: the block's index), so that every block of a kind writes data the
 * previous one did not, and the server can tell a write that never
 * landed from an old one.
 */
static inline uint64_t perf_swapped_region_off(unsigned int kind,
					       uint64_t size, uint64_t block)
{
	return kind ? 0 : block * size;
}

static inline uint64_t perf_swapped_src_slot(uint64_t j, uint64_t b,
					     uint64_t block)
{
	return (j + b / 2) % (block + 1);
}

/*
 * One completion record of a bw run: when @msgs messages were done. A
 * record with the same @msgs as the one before marks the start of a
 * paired block after a pause (--swapped: the page-out before it), which
 * the block's time does not include.
 */
struct perf_rec {
	uint64_t t_ns;
	uint64_t msgs;
};

/**
 * struct perf_step - what one QP measured for one size
 * @t_start/@t_end: first post and last completion (CLOCK_MONOTONIC ns)
 * @msgs:  messages completed
 * @lat_us: latency samples (lat tests), @nlat of them
 * @lat2_us: fault_lat: samples of the resident pages; hol: B alone;
 *         @nlat2 of them
 * @lat3_us: hol: B's samples while A ran that overlapped a page-out
 *         request (not in @lat_us), @nlat3 of them
 * @busy_ns: hol, QP A: time it was streaming (with-A phases)
 * @recs:  completion records (bw tests), @nrecs of them
 */
struct perf_step {
	uint64_t t_start;
	uint64_t t_end;
	uint64_t msgs;
	double *lat_us;
	double *lat2_us;	/* fault_lat: resident pages; hol: B alone */
	size_t nlat;
	size_t nlat2;
	double *lat3_us;
	size_t nlat3;
	uint64_t busy_ns;
	struct perf_rec *recs;
	size_t nrecs;
};

/*
 * The platform rate next to --first-touch and --swapped (perf_platform.c):
 * the server times what the kernel alone does per page of a demand-paged
 * target, on PERF_PLAT_REPEAT fresh regions of PERF_PLAT_REGION bytes, in
 * calls of the run's message size, and keeps the median region.
 */
#define PERF_PLAT_REGION	(64u << 20)
#define PERF_PLAT_REPEAT	3

enum perf_plat_kind {
	PERF_PLAT_NONE,		/* not measured (or the measurement failed) */
	PERF_PLAT_POPULATE,	/* fresh pages: zero-fill, --first-touch */
	PERF_PLAT_SWAPIN,	/* paged-out pages: swap-in, --swapped */
};

enum perf_plat_method {
	PERF_PLAT_MADV,		/* madvise(MADV_POPULATE_WRITE) */
	PERF_PLAT_TOUCH,	/* a one-byte write per page (kernel < 5.14) */
};

/**
 * struct perf_platform - a platform rate measurement (median region)
 * @kind:   enum perf_plat_kind
 * @method: enum perf_plat_method
 * @bytes/@ns: the region's size and the time its population took
 * @out/@total: swap-in: pages mincore() found not resident after the
 *          region's MADV_PAGEOUT, of all its pages
 *
 * The server measures it and sends it in its RESULT (perf_ctrl.c); the
 * client reports it.
 */
struct perf_platform {
	uint64_t kind;
	uint64_t method;
	uint64_t bytes;
	uint64_t ns;
	uint64_t out;
	uint64_t total;
};

/*
 * hol's TCP reference (perf_tcp_hol.c), measured by the client after the
 * pagewire phases: an 8-byte TCP ping-pong over 127.0.0.1 alone, and while
 * a second connection streams messages of A's size paced to A's measured
 * rate, in alternating phases as B and A.
 * @alone_us/@hol_us: round trips (us), @n_alone/@n_hol of them
 * @pace_MBps: the pace asked for (A's a_MBps)
 * @stream_MBps: what the stream moved over the phases it ran in
 */
struct perf_tcp_hol {
	double *alone_us;
	double *hol_us;
	size_t n_alone;
	size_t n_hol;
	double pace_MBps;
	double stream_MBps;
};

struct perf_run;

/**
 * struct perf_ep - one QP endpoint and its buffers
 * @buf:    the mmap'ed [data | rx | ctrl] buffer, @buf_len bytes
 * @area:   bytes of each of the data and rx areas (page multiple)
 * @mr:     this endpoint's MR (NULL with --mr=implicit)
 * @lkey:   lkey to use for local SGEs (own MR or the implicit one)
 * @mr_pinned/@lkey_pinned: --vs-pinned: the pinned MR over the same buffer
 * @peer:   what the peer sent at connect time
 * @seed:   pattern seed of our data area
 * @recvs_posted: receives posted so far (data receives come first)
 * @data_recvs:   number of data receives of the whole run
 * @sends_posted: send WRs posted through perf_post_tracked()
 * @sends_done:   of those, how many are known complete
 * @recvs_done:   data receives consumed (send_bw server)
 * @atomic_expect: the value the atomic target must hold next (client)
 * @wcq:    completions polled but not consumed yet (see perf_next_wc())
 * @steps:  per-size measurements (client)
 * @sock:   the connected socket of a TCP run (perf_tcp.c), else -1
 * @xctrl_posted/@xctrl_done: region requests/replies (perf_ctrl.c):
 *          extra control receives posted so far, and consumed
 * @pageout_pages/@pageout_total: client: pages the server found not
 *          resident after its MADV_PAGEOUTs, of pages paged out
 * @region_status: server: 0, or -EIO once a region check failed
 * @ref/@ref_len: server: the client's data-area pattern, made once, that
 *          region checks compare with (memcmp is ~10x pattern_check)
 * @regions_verified: server: region checks passed
 * @plat:   --first-touch, --swapped: the platform rate; server: what it
 *          measured, client: what the server's RESULT carried
 * @status: 0, or the thread's failure (negative errno or -EIO)
 */
struct perf_ep {
	struct perf_run *run;
	unsigned int idx;
	uint8_t *buf;
	size_t buf_len;
	size_t area;
	uint8_t *data;
	uint8_t *rx;
	uint8_t *ctrl;
	struct pw_mr *mr;
	uint32_t lkey;
	struct pw_mr *mr_pinned;	/* --vs-pinned only */
	uint32_t lkey_pinned;
	struct cq_waiter cqw;
	struct pw_qp *qp;
	struct pw_qp_init_attr attr;
	struct perf_wire_info peer;
	struct pw_stats peer_stats;	/* the server's, from its RESULT */
	uint64_t seed;
	uint64_t recvs_posted;
	uint64_t data_recvs;
	uint64_t sends_posted;
	uint64_t sends_done;
	uint64_t recvs_done;
	uint64_t atomic_expect;
	struct pw_wc wcq[PERF_WC_BATCH];
	unsigned int wcq_head;
	unsigned int wcq_len;
	struct perf_step steps[PERF_MAX_SIZES];
	int sock;
	uint64_t xctrl_posted;
	uint64_t xctrl_done;
	uint64_t pageout_pages;
	uint64_t pageout_total;
	int region_status;
	uint8_t *ref;
	size_t ref_len;
	uint64_t regions_verified;
	struct perf_platform plat;
	pthread_t thread;
	bool thread_started;
	int status;
};

/**
 * struct perf_run - one side of a run
 * @o:      options of this process
 * @server: this side is the server
 * @plan:   sizes and iterations (the client's, on both sides)
 * @wire:   the client's parameters as the server learnt them
 * @abort:  a client thread failed; the others skip their remaining sizes
 * @barrier: client threads start every size together
 * @baseline: with --baseline, the TCP run measured in the same invocation,
 *          interleaved size by size with this one (perf_tcp.c)
 * @own_opts: the options of a baseline run (@o points here)
 * @tcp_listen: listening socket of a TCP server run, else -1
 * @tcp_port: server: the port of the --baseline listener, 0 = none
 * @tcp_full_rtt: a TCP latency run reports the full round trip (the
 *          baseline of read_lat/atomic_lat), not half of it
 * @channel: bw tests in blocking mode: the one completion channel of all
 *          the QPs' CQs, on which the single bw thread sleeps
 * @hol_b_count: hol: B's samples so far in the current phase with A
 *          (A stops at the end of a pass once B has its share)
 * @hol_stop: hol: A has stopped; B ends the phase
 * @hol_pageout: hol: A's page-out requests started (odd while one runs:
 *          B drops samples that overlap one)
 * @tcp_hol: hol (one size): the TCP reference of the client's machine
 */
struct perf_run {
	const struct perf_opts *o;
	bool server;
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_mr *implicit_mr;
	struct pw_listener *listener;
	struct perf_plan plan;
	enum perf_atomic_op atomic;
	unsigned int qps;
	unsigned int tx_depth;
	uint64_t seed;
	struct perf_ep eps[PERF_MAX_QPS];
	atomic_int abort;
	pthread_barrier_t barrier;
	bool barrier_init;
	bool quiet;
	FILE *human;
	struct perf_run *baseline;
	struct perf_opts own_opts;
	int tcp_listen;
	uint16_t tcp_port;
	bool tcp_full_rtt;
	struct pw_comp_channel *channel;
	atomic_uint hol_b_count;
	atomic_int hol_stop;
	atomic_uint hol_pageout;
	struct perf_tcp_hol tcp_hol;
};

/* wr_id tags: receives and control sends are told apart from data WRs. */
#define PERF_WRID_RECV		(1ull << 63)
#define PERF_WRID_CTRL		(1ull << 62)
/* The extra control receives of region requests (perf_ctrl.c). */
#define PERF_WRID_XCTRL		(1ull << 61)

/*
 * A region request (perf_ctrl.c, served by perf_swap.c): the client asks
 * the server, at a point where nothing of its own is in flight on the QP,
 * to check and/or page out part of the QP's rx area.
 * @off/@len: the range in the rx area (page-out: its whole pages)
 * @size:  message size; slot j of the range is [off + j * size, + size)
 * @flags: PERF_REGION_*
 * @rot/@mod/@slots: verify: slots [0, @slots) hold bytes
 *         [((j + rot) % mod) * size, + size) of the client's pattern
 */
#define PERF_REGION_VERIFY	(1u << 0)
#define PERF_REGION_PAGEOUT	(1u << 1)
struct perf_region_req {
	uint64_t off;
	uint64_t len;
	uint64_t size;
	uint64_t flags;
	uint64_t rot;
	uint64_t mod;
	uint64_t slots;
};

/*
 * The reply. @status: 0 ok, PERF_REGION_BAD_DATA (@detail: offset in the
 * rx area of the first wrong byte + 1), PERF_REGION_BAD_REQ,
 * PERF_REGION_MADV_FAILED (@detail: errno). @out/@total: pages not
 * resident after MADV_PAGEOUT (mincore), of the pages paged out.
 */
#define PERF_REGION_BAD_DATA	1
#define PERF_REGION_BAD_REQ	2
#define PERF_REGION_MADV_FAILED	3
struct perf_region_rep {
	uint64_t status;
	uint64_t detail;
	uint64_t out;
	uint64_t total;
};

/* perf_plan.c */
int perf_test_by_name(const char *name);
uint64_t perf_default_size(enum perf_test t);
int perf_plan_build(enum perf_test t, uint64_t size, bool all_sizes,
		    uint64_t iters, bool iters_set, unsigned int qps,
		    struct perf_plan *p);
unsigned int perf_cq_mod(const struct perf_run *run);
unsigned int perf_window(const struct perf_run *run);
enum perf_test perf_baseline_of(enum perf_test t);
uint64_t perf_pair_bw_block(const struct perf_run *run, unsigned int s);

/* perf_reg.c: the local test 'reg' (registration cost against size) */
int perf_reg_run(const struct perf_opts *o);
/* inval_lat: local (two contexts in this process); perf_inval.c */
int perf_inval_run(const struct perf_opts *o);
/* overcommit: a forked target and this process on 127.0.0.1; perf_over.c */
int perf_over_run(const struct perf_opts *o);
void perf_plan_pair(struct perf_plan *p, enum perf_test t, bool iters_set);
void perf_plan_first_touch(struct perf_plan *p);
void perf_plan_swapped(struct perf_plan *p);

/* The local and remote keys of pair kind @kind (0 unless --vs-pinned). */
static inline uint32_t perf_lkey(const struct perf_ep *ep, unsigned int kind)
{
	return kind ? ep->lkey_pinned : ep->lkey;
}

static inline uint32_t perf_peer_rkey(const struct perf_ep *ep, unsigned int kind)
{
	return kind ? ep->peer.rkey_pinned : ep->peer.rkey;
}

/* perf_conn.c */
void perf_wire_encode(const struct perf_wire_info *w,
		      uint8_t out[PERF_WIRE_INFO_LEN]);
int perf_wire_decode(const uint8_t *buf, uint32_t len,
		     struct perf_wire_info *w);
int perf_run_open(struct perf_run *run);
int perf_server_listen(struct perf_run *run, const char *host,
		       uint16_t port, uint16_t *bound_port);
int perf_server_accept(struct perf_run *run);
int perf_client_connect(struct perf_run *run, const char *host,
			uint16_t port);
void perf_run_close(struct perf_run *run);
int perf_ep_map_buffer(struct perf_ep *ep);
int perf_server_adopt_client(struct perf_run *run,
			     const struct perf_wire_info *c);
int perf_post_recv(struct perf_ep *ep);
void perf_print_wc_error(const struct perf_ep *ep, const struct pw_wc *wc,
			 const char *what);
void perf_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* perf_client.c / perf_server.c */
int perf_client_run(struct perf_run *run);
int perf_server_run(struct perf_run *run);

/* perf_ctrl.c */
int perf_next_wc(struct perf_ep *ep, struct pw_wc *out, int timeout_ms);
int perf_wait_any(struct perf_run *run, const bool *active, int timeout_ms);
int perf_ctrl_client_finish_all(struct perf_run *run);
int perf_reap_send(struct perf_ep *ep, const struct pw_wc *wc);
int perf_post_tracked(struct perf_ep *ep, struct pw_send_wr *wr, bool signal);
int perf_wait_recv(struct perf_ep *ep, struct pw_wc *out, int timeout_ms);
int perf_drain_sends(struct perf_ep *ep, int timeout_ms);
int perf_ctrl_client_finish(struct perf_ep *ep);
int perf_ctrl_server_wait_done(struct perf_ep *ep);
int perf_ctrl_server_reply(struct perf_ep *ep, uint64_t status, uint64_t detail);
int perf_ctrl_region(struct perf_ep *ep, const struct perf_region_req *rq,
		     struct perf_region_rep *rp);

/* perf_swap.c */
bool perf_swap_available(void);
int perf_swap_check_or_skip(const struct perf_opts *o);
void perf_swap_prepare(struct perf_ep *ep);
void perf_swap_release(struct perf_ep *ep);
void perf_swap_serve_region(struct perf_ep *ep, const struct perf_region_req *rq,
			    struct perf_region_rep *rp);
double perf_swapped_out_frac(const struct perf_run *run);
int perf_count_not_resident(uint8_t *p, size_t len, size_t page,
			    uint64_t *out);

/* perf_platform.c */
int perf_platform_measure(struct perf_ep *ep);
const char *perf_plat_method_name(uint64_t method);
double perf_plat_MBps(const struct perf_platform *pl);

/* perf_tcp_hol.c */
int perf_tcp_hol_run(struct perf_run *run, unsigned int s);
void perf_tcp_hol_free(struct perf_run *run);

/* perf_tcp.c */
int perf_tcp_listen(struct perf_run *run, const char *host, uint16_t port,
		    bool fallback_ephemeral, uint16_t *bound_port);
int perf_tcp_accept(struct perf_run *run, bool standalone);
int perf_tcp_connect(struct perf_run *run, const char *host, uint16_t port);
int perf_tcp_client_step(struct perf_ep *ep, unsigned int s);
int perf_tcp_server_step(struct perf_ep *ep, unsigned int s);
int perf_tcp_client_finish(struct perf_ep *ep);
int perf_tcp_server_finish(struct perf_ep *ep);
int perf_tcp_client_bw(struct perf_run *run, unsigned int s);
int perf_tcp_server_bw(struct perf_run *run, unsigned int s);
int perf_tcp_client_finish_all(struct perf_run *run);
int perf_tcp_server_finish_all(struct perf_run *run);
void perf_tcp_abort(struct perf_ep *ep);
void perf_tcp_abort_all(struct perf_run *run);
uint64_t perf_tcp_inflight_bytes(void);
void perf_tcp_close(struct perf_run *run);

/* perf_report.c */
void perf_report_header(const struct perf_run *run);
int perf_report_steps(const struct perf_run *run);
void perf_report_footer(const struct perf_run *run);
double perf_hol_a_MBps(const struct perf_run *run, unsigned int s);

#endif /* PAGEWIRE_TOOL_PERF_H */
