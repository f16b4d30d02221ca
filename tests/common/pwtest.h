/* SPDX-License-Identifier: MIT */
/*
 * pwtest - the small helper library of the pagewire integration tests.
 *
 * Every test executable holds several sub-tests; CTest runs each one as
 * "test_xxx NAME [ARG]". A failed check prints file:line and the values
 * involved, kills the forked children and exits 1 at once, so one failure
 * never cascades into a hang. A watchdog alarm turns a hang into a failure
 * with a message before CTest's own timeout hits.
 *
 * Tests talk to each other over real TCP on 127.0.0.1 with ephemeral ports
 * only, so that ctest -j runs them in parallel.
 *
 * Fork rule: fork (pwt_fork) before the parent opens any pagewire context.
 * A child of a process with a running progress thread inherits locks in
 * unknown states and a context it must not touch.
 */
#ifndef PWTEST_H
#define PWTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include <pagewire/pagewire.h>

/* Default wait for one completion or state change. */
#define PWT_TIMEOUT_MS		10000
/* Watchdog per test process; CTest kills at 60 s. */
#define PWT_WATCHDOG_S		170

#define PWT_KIB			((size_t)1 << 10)
#define PWT_MIB			((size_t)1 << 20)
#define PWT_GIB			((size_t)1 << 30)
#define PWT_TIB			((size_t)1 << 40)

#define PWT_ACCESS_ALL	(PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE | \
			 PW_ACCESS_REMOTE_READ | PW_ACCESS_REMOTE_ATOMIC)

/* ------------------------------------------------------------------ */
/* Failing                                                             */
/* ------------------------------------------------------------------ */

_Noreturn void pwt_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define PWT_ASSERT(cond)						\
	do {								\
		if (!(cond))						\
			pwt_fail(__FILE__, __LINE__,			\
				 "assertion failed: %s", #cond);	\
	} while (0)

/* PWT_ASSERTF(cond, fmt, ...) */
#define PWT_ASSERTF(cond, ...)						\
	do {								\
		if (!(cond))						\
			pwt_fail(__FILE__, __LINE__, __VA_ARGS__);	\
	} while (0)

#define PWT_EQ(a, b)							\
	do {								\
		unsigned long long pwt_a_ = (unsigned long long)(a);	\
		unsigned long long pwt_b_ = (unsigned long long)(b);	\
		if (pwt_a_ != pwt_b_)					\
			pwt_fail(__FILE__, __LINE__,			\
				 "%s == %s failed: 0x%llx (%lld) != 0x%llx (%lld)", \
				 #a, #b, pwt_a_, (long long)pwt_a_,	\
				 pwt_b_, (long long)pwt_b_);		\
	} while (0)

/* An int-returning pagewire call that must return 0. */
#define PWT_OK(expr)							\
	do {								\
		int pwt_rc_ = (expr);					\
		if (pwt_rc_ != 0)					\
			pwt_fail(__FILE__, __LINE__,			\
				 "%s returned %d (%s); last error: %s",	\
				 #expr, pwt_rc_, pwt_strerr(pwt_rc_),	\
				 pw_last_error());			\
	} while (0)

/* A constructor that must not return NULL. */
#define PWT_NONNULL(ptr)						\
	do {								\
		if ((ptr) == NULL)					\
			pwt_fail(__FILE__, __LINE__,			\
				 "%s is NULL: errno %d (%s); last error: %s", \
				 #ptr, errno, pwt_strerr(-errno),	\
				 pw_last_error());			\
	} while (0)

/* Byte-for-byte comparison that reports the first differing offset. */
#define PWT_MEMEQ(got, want, len)					\
	pwt_memeq_at(__FILE__, __LINE__, #got, (got), (want), (len))

/* Buffer must hold the pattern of pwt_fill_at(seed, base). */
#define PWT_PATTERN(p, len, seed, base)					\
	pwt_pattern_at(__FILE__, __LINE__, #p, (p), (len), (seed), (base))

/* Buffer must hold only zero bytes. */
#define PWT_ZERO(p, len) pwt_zero_at(__FILE__, __LINE__, #p, (p), (len))

const char *pwt_strerr(int negerr);
void pwt_memeq_at(const char *file, int line, const char *what,
		  const void *got, const void *want, size_t len);
void pwt_pattern_at(const char *file, int line, const char *what,
		    const void *p, size_t len, uint32_t seed, uint64_t base);
void pwt_zero_at(const char *file, int line, const char *what,
		 const void *p, size_t len);

/* ------------------------------------------------------------------ */
/* Test registry                                                       */
/* ------------------------------------------------------------------ */

/* @arg is argv[2] (e.g. an MR mode), or NULL. */
struct pwt_case {
	const char *name;
	void (*fn)(const char *arg);
};

/* Runs the sub-test named by argv[1]; an unknown name fails (exit 1). */
int pwt_main(int argc, char **argv, const struct pwt_case *cases,
	     size_t ncases);

#define PWT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Some checks cannot run in this environment (e.g. VmLck where the kernel
 * refuses to lock pages). The test runs every other check; pwt_main then
 * prints why and exits with PWT_SKIP_CODE, which CTest reports as
 * "Skipped", never as a pass.
 */
#define PWT_SKIP_CODE 77
void pwt_skip_part(const char *why);

/*
 * Whether the kernel locks pages for this process (VmLck grows). Probed
 * with the raw syscall: sanitizer runtimes turn the libc mlock() into a
 * no-op, and the library pins with the raw syscall too.
 */
bool pwt_mlock_works(void);

/* ------------------------------------------------------------------ */
/* Patterns, time, memory                                              */
/* ------------------------------------------------------------------ */

/*
 * Byte i of pattern (seed, base) depends on seed and base + i, so that a
 * shifted, truncated or misplaced copy never matches by accident.
 */
uint8_t pwt_pattern_byte(uint32_t seed, uint64_t index);
void pwt_fill_at(void *p, size_t len, uint32_t seed, uint64_t base);
static inline void pwt_fill(void *p, size_t len, uint32_t seed)
{
	pwt_fill_at(p, len, seed, 0);
}

uint64_t pwt_now_ms(void);
uint64_t pwt_now_us(void);
void pwt_sleep_ms(unsigned int ms);
/* Resident set size of this process in bytes (/proc/self/statm). */
size_t pwt_rss_bytes(void);
/* pw_query_stats() of @ctx, which must succeed. */
struct pw_stats pwt_stats(struct pw_context *ctx);
/* VmLck of this process in bytes (/proc/self/status). */
size_t pwt_vmlck_bytes(void);
/* mmap'ed anonymous memory, page aligned, never touched here. */
void *pwt_map(size_t len);
/*
 * Map @len bytes (NORESERVE) at *@p and return the length mapped: @len,
 * or under ThreadSanitizer, whose layout often has no 1 TiB gap, the
 * largest half of it (down to 64 GiB) that maps.
 */
size_t pwt_map_huge(void **p, size_t len);
/* Built with ThreadSanitizer (pwt_map_huge may then map less). */
bool pwt_under_tsan(void);
/*
 * Copy @len bytes from @p, which the engine may be writing right now (a
 * test sampling a transfer in flight), through process_vm_readv: the race
 * is deliberate, and a plain read would be reported by ThreadSanitizer as
 * the race it is. Returns false if the memory cannot be read.
 */
bool pwt_peek(void *dst, const void *p, size_t len);
void pwt_unmap(void *p, size_t len);

/* ------------------------------------------------------------------ */
/* Contexts, QPs, buffers                                              */
/* ------------------------------------------------------------------ */

enum pwt_mode {
	PWT_PINNED,
	PWT_ODP,
	PWT_IMPLICIT,
};

/* "pinned" | "odp" | "implicit"; anything else fails the test. */
enum pwt_mode pwt_parse_mode(const char *arg);
const char *pwt_mode_name(enum pwt_mode m);

/*
 * One endpoint: a context with a PD, a send and a receive CQ and (after
 * connecting) one QP. @implicit is the implicit-ODP MR that buffers of
 * mode PWT_IMPLICIT use, registered on first need.
 */
struct pwt_side {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_cq *scq;
	struct pw_cq *rcq;
	struct pw_qp *qp;
	struct pw_mr *implicit;
	struct pw_qp_init_attr attr;	/* as written back by connect/accept */
};

void pwt_side_open(struct pwt_side *s);
/* The same with pw_open() attributes (NULL: defaults). */
void pwt_side_open_attr(struct pwt_side *s, const struct pw_context_attr *attr);
/* Destroys whatever is set (QP, implicit MR, CQs, PD, context). */
void pwt_side_close(struct pwt_side *s);

/* pw_accept() on a thread, so that one thread can connect to itself. */
struct pwt_acceptor {
	struct pw_listener *l;
	struct pw_pd *pd;
	struct pw_qp_init_attr attr;
	struct pw_conn_param param;
	struct pw_qp *qp;	/* result */
	int err;		/* errno when qp is NULL */
	pthread_t thread;
};

void pwt_accept_start(struct pwt_acceptor *acc);
/* Joins the thread; returns the QP or NULL with errno = acc->err. */
struct pw_qp *pwt_accept_join(struct pwt_acceptor *acc);

/*
 * Two sides in this process connected over 127.0.0.1: "a" connects
 * (the initiator in most tests), "b" accepts on listener @l.
 */
struct pwt_pair_opts {
	struct pw_qp_init_attr a_attr;	/* CQs are filled in */
	struct pw_qp_init_attr b_attr;
	struct pw_conn_param a_param;
	struct pw_conn_param b_param;
	struct pw_context_attr a_ctx;	/* pw_open() attributes of each side */
	struct pw_context_attr b_ctx;
};

struct pwt_pair {
	struct pwt_side a;
	struct pwt_side b;
	struct pw_listener *l;
	uint16_t port;
};

/* @o may be NULL for defaults. */
void pwt_pair_open(struct pwt_pair *p, const struct pwt_pair_opts *o);
void pwt_pair_close(struct pwt_pair *p);

/*
 * Connects a second QP between @a and @b over @l (sharing their PDs and
 * CQs). The caller destroys both QPs.
 */
void pwt_connect_qp(struct pwt_side *a, struct pwt_side *b,
		    struct pw_listener *l, const struct pw_qp_init_attr *aa,
		    const struct pw_qp_init_attr *ba, struct pw_qp **qa,
		    struct pw_qp **qb);

/*
 * A registered buffer: mmap'ed, page aligned, @len bytes. Pinned and ODP
 * buffers get their own MR with @access (ON_DEMAND added for ODP);
 * implicit ones use the side's implicit MR. Nothing is touched here, so
 * ODP pages are first touched by whoever writes them first.
 */
struct pwt_buf {
	uint8_t *addr;
	size_t len;
	size_t map_len;
	struct pw_mr *mr;	/* NULL for implicit */
	uint32_t lkey;
	uint32_t rkey;
};

void pwt_buf_alloc(struct pwt_buf *b, struct pwt_side *s, size_t len,
		   unsigned int access, enum pwt_mode mode);
void pwt_buf_free(struct pwt_buf *b);

/*
 * A registered buffer and the image it must have at the end of a test:
 * its initial content (a pattern when pinned and @seed != 0, otherwise
 * untouched zero pages, so that an ODP target is first touched by the
 * remote op itself) with the expected effects of the ops applied by the
 * test. Comparing the whole buffer also catches stray writes.
 */
struct pwt_img {
	struct pwt_buf buf;
	uint8_t *want;
};

void pwt_img_alloc(struct pwt_img *g, struct pwt_side *s, size_t len,
		   enum pwt_mode m, uint32_t seed);
/* Access rights other than PWT_ACCESS_ALL (ON_DEMAND added for ODP). */
void pwt_img_alloc_access(struct pwt_img *g, struct pwt_side *s, size_t len,
			  unsigned int access, enum pwt_mode m, uint32_t seed);
/* A source buffer: filled with pattern @seed in every mode. */
void pwt_img_alloc_src(struct pwt_img *g, struct pwt_side *s, size_t len,
		       enum pwt_mode m, uint32_t seed);
void pwt_img_free(struct pwt_img *g);
#define PWT_IMG_CHECK(g) PWT_MEMEQ((g)->buf.addr, (g)->want, (g)->buf.len)

static inline uint64_t pwt_va(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* ------------------------------------------------------------------ */
/* Posting                                                             */
/* ------------------------------------------------------------------ */

/* One WR with one SGE (none when len is 0); returns pw_post_send()'s rc. */
int pwt_post_rdma(struct pw_qp *qp, enum pw_wr_opcode op, uint64_t wr_id,
		  const void *laddr, uint32_t len, uint32_t lkey,
		  uint64_t raddr, uint32_t rkey, unsigned int flags);
int pwt_post_send1(struct pw_qp *qp, enum pw_wr_opcode op, uint64_t wr_id,
		   const void *laddr, uint32_t len, uint32_t lkey,
		   uint32_t imm, unsigned int flags);
int pwt_post_atomic(struct pw_qp *qp, enum pw_wr_opcode op, uint64_t wr_id,
		    uint64_t *result, uint32_t lkey, uint64_t raddr,
		    uint32_t rkey, uint64_t compare_add, uint64_t swap,
		    unsigned int flags);
/* One receive with one SGE (none when len is 0). */
int pwt_post_recv1(struct pw_qp *qp, uint64_t wr_id, void *addr,
		   uint32_t len, uint32_t lkey);

/* ------------------------------------------------------------------ */
/* Completions                                                         */
/* ------------------------------------------------------------------ */

/* Polls for one completion; returns 1, or 0 after @timeout_ms. */
int pwt_poll_wc(struct pw_cq *cq, struct pw_wc *wc, int timeout_ms);

#define PWT_WAIT_WC(cq, wc)						\
	pwt_wait_wc_at(__FILE__, __LINE__, (cq), (wc), PWT_TIMEOUT_MS)
void pwt_wait_wc_at(const char *file, int line, struct pw_cq *cq,
		    struct pw_wc *wc, int timeout_ms);

/* No completion may arrive within @ms. */
#define PWT_NO_WC(cq, ms) pwt_no_wc_at(__FILE__, __LINE__, (cq), (ms))
void pwt_no_wc_at(const char *file, int line, struct pw_cq *cq, int ms);

/*
 * The next completion on @cq must be successful, for @wr_id, with @opcode,
 * @byte_len and @qp_num. Returns it for further checks.
 */
#define PWT_EXPECT_OK(cq, wr_id, opcode, byte_len, qp_num)		\
	pwt_expect_ok_at(__FILE__, __LINE__, (cq), (wr_id), (opcode),	\
			 (byte_len), (qp_num))
struct pw_wc pwt_expect_ok_at(const char *file, int line, struct pw_cq *cq,
			      uint64_t wr_id, enum pw_wc_opcode opcode,
			      uint32_t byte_len, uint32_t qp_num);

/*
 * A successful receive completion: opcode PW_WC_RECV or
 * PW_WC_RECV_RDMA_WITH_IMM, and WITH_IMM set exactly when @with_imm.
 */
#define PWT_EXPECT_RECV(cq, wr_id, opcode, byte_len, with_imm, imm, qp_num) \
	pwt_expect_recv_at(__FILE__, __LINE__, (cq), (wr_id), (opcode),	\
			   (byte_len), (with_imm), (imm), (qp_num))
struct pw_wc pwt_expect_recv_at(const char *file, int line, struct pw_cq *cq,
				uint64_t wr_id, enum pw_wc_opcode opcode,
				uint32_t byte_len, bool with_imm,
				uint32_t imm, uint32_t qp_num);

/* An error completion: only wr_id, status and qp_num are defined. */
#define PWT_EXPECT_ERR(cq, wr_id, status, qp_num)			\
	pwt_expect_err_at(__FILE__, __LINE__, (cq), (wr_id), (status),	\
			  (qp_num))
struct pw_wc pwt_expect_err_at(const char *file, int line, struct pw_cq *cq,
			       uint64_t wr_id, enum pw_wc_status status,
			       uint32_t qp_num);

/* Waits until pw_qp_state(qp) == state. */
#define PWT_WAIT_STATE(qp, state)					\
	pwt_wait_state_at(__FILE__, __LINE__, (qp), (state), PWT_TIMEOUT_MS)
void pwt_wait_state_at(const char *file, int line, const struct pw_qp *qp,
		       enum pw_qp_state state, int timeout_ms);

/* ------------------------------------------------------------------ */
/* Processes                                                           */
/* ------------------------------------------------------------------ */

/*
 * A forked child and the parent's end of a control socketpair. The child
 * runs fn(fd, arg) and _exits with its return value (a failed check in
 * the child exits 1). It dies with the parent (PR_SET_PDEATHSIG) and has
 * its own watchdog.
 */
struct pwt_child {
	pid_t pid;
	int fd;
};

void pwt_fork(struct pwt_child *c, int (*fn)(int fd, void *arg), void *arg);
/* Waits for the child's exit; kills it and fails after @timeout_ms. */
int pwt_child_wait(struct pwt_child *c, int timeout_ms);
/* The child must exit with status 0 within @timeout_ms. */
#define PWT_CHILD_OK(c, timeout_ms)					\
	pwt_child_ok_at(__FILE__, __LINE__, (c), (timeout_ms))
void pwt_child_ok_at(const char *file, int line, struct pwt_child *c,
		     int timeout_ms);
/* True in a child created by pwt_fork(). */
bool pwt_in_child(void);

/* Exact-length messages on the control socket; receive fails on timeout. */
void pwt_ctl_send(int fd, const void *p, size_t len);
void pwt_ctl_recv(int fd, void *p, size_t len, int timeout_ms);

/*
 * What a target tells its initiator in the CM private data: where its
 * buffer is and the key to reach it.
 */
struct pwt_remote {
	uint64_t addr;
	uint64_t len;
	uint32_t rkey;
	uint32_t aux;
	uint64_t addr2;
	uint32_t rkey2;
	uint32_t pad;
};

/* Reads a struct pwt_remote out of qp->peer_private_data. */
void pwt_remote_from_qp(const struct pw_qp *qp, struct pwt_remote *r);

/* ------------------------------------------------------------------ */
/* Raw TCP (for wire-level tests; see pwraw.h for the protocol side)   */
/* ------------------------------------------------------------------ */

/* Blocking TCP connect to 127.0.0.1:@port; returns the fd. */
int pwt_tcp_connect(uint16_t port);
/* Listening TCP socket on 127.0.0.1, ephemeral port in *port. */
int pwt_tcp_listen(uint16_t *port);
/* A port that nobody listens on (bound, then closed). */
uint16_t pwt_unused_port(void);
void pwt_write_all(int fd, const void *p, size_t len);
/*
 * Reads exactly @len bytes. Returns @len, 0 on EOF before any byte, the
 * bytes read on EOF in the middle, -ETIMEDOUT, or another negative errno
 * (e.g. -ECONNRESET).
 */
ssize_t pwt_read_full(int fd, void *p, size_t len, int timeout_ms);

#endif /* PWTEST_H */
