/* SPDX-License-Identifier: MIT */
/*
 * pwtest - helpers shared by the integration tests. See pwtest.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pwtest.h"

/* Children to kill when the parent fails, so nothing outlives a test. */
#define PWT_MAX_CHILDREN 16
static pid_t pwt_children[PWT_MAX_CHILDREN];
static bool pwt_child_flag;
static const char *pwt_test_name = "?";
static const char *pwt_skipped_why;

static void pwt_kill_children(void)
{
	for (int i = 0; i < PWT_MAX_CHILDREN; i++)
		if (pwt_children[i] > 0)
			kill(pwt_children[i], SIGKILL);
}

const char *pwt_strerr(int negerr)
{
	return strerror(negerr < 0 ? -negerr : negerr);
}

void pwt_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%sFAIL %s: %s:%d: ", pwt_child_flag ? "[child] " : "",
		pwt_test_name, file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	if (!pwt_child_flag)
		pwt_kill_children();
	/* _exit: no atexit handlers or leak reports on top of the failure. */
	_exit(1);
}

void pwt_memeq_at(const char *file, int line, const char *what,
		  const void *got, const void *want, size_t len)
{
	const uint8_t *g = got, *w = want;

	if (memcmp(g, w, len) == 0)
		return;
	for (size_t i = 0; i < len; i++)
		if (g[i] != w[i])
			pwt_fail(file, line,
				 "%s differs at offset %zu of %zu: got 0x%02x, want 0x%02x",
				 what, i, len, g[i], w[i]);
}

void pwt_pattern_at(const char *file, int line, const char *what,
		    const void *p, size_t len, uint32_t seed, uint64_t base)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++) {
		uint8_t want = pwt_pattern_byte(seed, base + i);

		if (b[i] != want)
			pwt_fail(file, line,
				 "%s: pattern %" PRIu32 " differs at offset %zu of %zu: got 0x%02x, want 0x%02x",
				 what, seed, i, len, b[i], want);
	}
}

void pwt_zero_at(const char *file, int line, const char *what,
		 const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			pwt_fail(file, line,
				 "%s: not zero at offset %zu of %zu: 0x%02x",
				 what, i, len, b[i]);
}

/* ------------------------------------------------------------------ */

static void pwt_watchdog(int sig)
{
	static const char msg[] = "FAIL: watchdog: test hung\n";
	ssize_t n;

	(void)sig;
	n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)n;
	if (!pwt_child_flag)
		pwt_kill_children();
	_exit(1);
}

int pwt_main(int argc, char **argv, const struct pwt_case *cases,
	     size_t ncases)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s TEST [ARG]; tests:", argv[0]);
		for (size_t i = 0; i < ncases; i++)
			fprintf(stderr, " %s", cases[i].name);
		fputc('\n', stderr);
		return 1;
	}
	for (size_t i = 0; i < ncases; i++) {
		if (strcmp(cases[i].name, argv[1]) != 0)
			continue;
		pwt_test_name = cases[i].name;
		signal(SIGALRM, pwt_watchdog);
		/* A peer that vanished must give errors, never SIGPIPE. */
		signal(SIGPIPE, SIG_IGN);
		alarm(PWT_WATCHDOG_S);
		cases[i].fn(argc > 2 ? argv[2] : NULL);
		alarm(0);
		if (pwt_skipped_why) {
			printf("SKIP %s: %s (every other check passed)\n",
			       cases[i].name, pwt_skipped_why);
			return PWT_SKIP_CODE;
		}
		printf("PASS %s%s%s\n", cases[i].name, argc > 2 ? " " : "",
		       argc > 2 ? argv[2] : "");
		return 0;
	}
	fprintf(stderr, "FAIL: unknown test '%s'\n", argv[1]);
	return 1;
}

void pwt_skip_part(const char *why)
{
	pwt_skipped_why = why;
}

bool pwt_mlock_works(void)
{
	static int works = -1;

	if (works < 0) {
		size_t pg = (size_t)sysconf(_SC_PAGESIZE);
		void *p = pwt_map(16 * pg);
		size_t before = pwt_vmlck_bytes();

		works = syscall(SYS_mlock, p, 16 * pg) == 0 &&
			pwt_vmlck_bytes() >= before + 16 * pg;
		syscall(SYS_munlock, p, 16 * pg);
		pwt_unmap(p, 16 * pg);
	}
	return works;
}

/* ------------------------------------------------------------------ */

static uint64_t pwt_mix(uint64_t x)
{
	/* splitmix64 finaliser */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint8_t pwt_pattern_byte(uint32_t seed, uint64_t index)
{
	uint64_t w = pwt_mix(((uint64_t)seed << 40) ^ (index >> 3));

	return (uint8_t)(w >> (8 * (index & 7)));
}

void pwt_fill_at(void *p, size_t len, uint32_t seed, uint64_t base)
{
	uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		b[i] = pwt_pattern_byte(seed, base + i);
}

uint64_t pwt_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t pwt_now_ms(void)
{
	return pwt_now_us() / 1000u;
}

void pwt_sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

struct pw_stats pwt_stats(struct pw_context *ctx)
{
	struct pw_stats st;

	PWT_OK(pw_query_stats(ctx, &st, sizeof(st)));
	return st;
}

size_t pwt_rss_bytes(void)
{
	unsigned long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	PWT_ASSERTF(f, "open /proc/self/statm: %s", strerror(errno));
	PWT_ASSERT(fscanf(f, "%lu %lu", &size, &rss) == 2);
	fclose(f);
	return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

size_t pwt_vmlck_bytes(void)
{
	char line[256];
	size_t kib = 0;
	bool found = false;
	FILE *f = fopen("/proc/self/status", "r");

	PWT_ASSERTF(f, "open /proc/self/status: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %zu kB", &kib) == 1) {
			found = true;
			break;
		}
	fclose(f);
	PWT_ASSERTF(found, "no VmLck in /proc/self/status");
	return kib * 1024;
}

void *pwt_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	PWT_ASSERTF(p != MAP_FAILED, "mmap %zu bytes: %s", len, strerror(errno));
	return p;
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PWT_HAS_TSAN 1
#endif
#endif
#ifndef PWT_HAS_TSAN
#define PWT_HAS_TSAN 0
#endif
#if defined(__SANITIZE_THREAD__) || PWT_HAS_TSAN
static const bool defined_tsan = true;
#else
static const bool defined_tsan = false;
#endif

bool pwt_peek(void *dst, const void *p, size_t len)
{
	struct iovec l = { .iov_base = dst, .iov_len = len };
	struct iovec r = { .iov_base = (void *)(uintptr_t)p, .iov_len = len };

	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)len;
}

bool pwt_under_tsan(void)
{
	return defined_tsan;
}

size_t pwt_map_huge(void **p, size_t len)
{
	for (;;) {
		*p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (*p != MAP_FAILED)
			return len;
#if defined(__SANITIZE_THREAD__) || PWT_HAS_TSAN
		/*
		 * ThreadSanitizer keeps application mappings inside its own
		 * ranges, where 1 TiB in one piece is often not free: what is
		 * measured there is the code under test, not the layout.
		 */
		if (errno == ENOMEM && len > ((size_t)64 << 30)) {
			len /= 2;
			continue;
		}
#endif
		PWT_ASSERTF(0, "mmap %zu bytes: %s", len, strerror(errno));
	}
}

void pwt_unmap(void *p, size_t len)
{
	PWT_ASSERTF(munmap(p, len) == 0, "munmap: %s", strerror(errno));
}

/* ------------------------------------------------------------------ */

enum pwt_mode pwt_parse_mode(const char *arg)
{
	if (arg && strcmp(arg, "pinned") == 0)
		return PWT_PINNED;
	if (arg && strcmp(arg, "odp") == 0)
		return PWT_ODP;
	if (arg && strcmp(arg, "implicit") == 0)
		return PWT_IMPLICIT;
	pwt_fail(__FILE__, __LINE__, "MR mode must be pinned|odp|implicit, got '%s'",
		 arg ? arg : "(none)");
}

const char *pwt_mode_name(enum pwt_mode m)
{
	switch (m) {
	case PWT_PINNED: return "pinned";
	case PWT_ODP: return "odp";
	case PWT_IMPLICIT: return "implicit";
	}
	return "?";
}

void pwt_side_open(struct pwt_side *s)
{
	pwt_side_open_attr(s, NULL);
}

void pwt_side_open_attr(struct pwt_side *s, const struct pw_context_attr *attr)
{
	memset(s, 0, sizeof(*s));
	s->ctx = pw_open(attr);
	PWT_NONNULL(s->ctx);
	s->pd = pw_alloc_pd(s->ctx);
	PWT_NONNULL(s->pd);
	s->scq = pw_create_cq(s->ctx, 256, NULL, NULL, 0);
	PWT_NONNULL(s->scq);
	s->rcq = pw_create_cq(s->ctx, 256, NULL, NULL, 0);
	PWT_NONNULL(s->rcq);
}

void pwt_side_close(struct pwt_side *s)
{
	if (s->qp)
		PWT_OK(pw_destroy_qp(s->qp));
	if (s->implicit)
		PWT_OK(pw_dereg_mr(s->implicit));
	if (s->scq)
		PWT_OK(pw_destroy_cq(s->scq));
	if (s->rcq)
		PWT_OK(pw_destroy_cq(s->rcq));
	if (s->pd)
		PWT_OK(pw_dealloc_pd(s->pd));
	if (s->ctx)
		PWT_OK(pw_close(s->ctx));
	memset(s, 0, sizeof(*s));
}

static void *pwt_accept_thread(void *arg)
{
	struct pwt_acceptor *acc = arg;

	acc->qp = pw_accept(acc->l, acc->pd, &acc->attr, &acc->param);
	acc->err = acc->qp ? 0 : errno;
	return NULL;
}

void pwt_accept_start(struct pwt_acceptor *acc)
{
	int rc = pthread_create(&acc->thread, NULL, pwt_accept_thread, acc);

	PWT_ASSERTF(rc == 0, "pthread_create: %s", strerror(rc));
}

struct pw_qp *pwt_accept_join(struct pwt_acceptor *acc)
{
	int rc = pthread_join(acc->thread, NULL);

	PWT_ASSERTF(rc == 0, "pthread_join: %s", strerror(rc));
	errno = acc->err;
	return acc->qp;
}

void pwt_connect_qp(struct pwt_side *a, struct pwt_side *b,
		    struct pw_listener *l, const struct pw_qp_init_attr *aa,
		    const struct pw_qp_init_attr *ba, struct pw_qp **qa,
		    struct pw_qp **qb)
{
	struct pwt_acceptor acc;
	struct pw_qp_init_attr attr;
	struct pw_conn_param param = { .timeout_ms = PWT_TIMEOUT_MS };
	int err;

	memset(&acc, 0, sizeof(acc));
	acc.l = l;
	acc.pd = b->pd;
	if (ba)
		acc.attr = *ba;
	acc.attr.send_cq = b->scq;
	acc.attr.recv_cq = b->rcq;
	acc.param.timeout_ms = PWT_TIMEOUT_MS;
	pwt_accept_start(&acc);

	memset(&attr, 0, sizeof(attr));
	if (aa)
		attr = *aa;
	attr.send_cq = a->scq;
	attr.recv_cq = a->rcq;
	*qa = pw_connect(a->pd, &attr, "127.0.0.1", pw_listener_port(l), &param);
	err = errno;
	*qb = pwt_accept_join(&acc);
	errno = err;
	PWT_NONNULL(*qa);
	errno = acc.err;
	PWT_NONNULL(*qb);
}

void pwt_pair_open(struct pwt_pair *p, const struct pwt_pair_opts *o)
{
	struct pwt_pair_opts def;
	struct pwt_acceptor acc;
	int err;

	memset(p, 0, sizeof(*p));
	if (!o) {
		memset(&def, 0, sizeof(def));
		o = &def;
	}
	pwt_side_open_attr(&p->a, &o->a_ctx);
	pwt_side_open_attr(&p->b, &o->b_ctx);
	p->l = pw_listen(p->b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(p->l);
	p->port = pw_listener_port(p->l);
	PWT_ASSERT(p->port != 0);

	memset(&acc, 0, sizeof(acc));
	acc.l = p->l;
	acc.pd = p->b.pd;
	acc.attr = o->b_attr;
	acc.attr.send_cq = p->b.scq;
	acc.attr.recv_cq = p->b.rcq;
	acc.param = o->b_param;
	if (!acc.param.timeout_ms)
		acc.param.timeout_ms = PWT_TIMEOUT_MS;
	pwt_accept_start(&acc);

	p->a.attr = o->a_attr;
	p->a.attr.send_cq = p->a.scq;
	p->a.attr.recv_cq = p->a.rcq;
	p->a.qp = pw_connect(p->a.pd, &p->a.attr, "127.0.0.1", p->port,
			     &o->a_param);
	err = errno;
	p->b.qp = pwt_accept_join(&acc);
	p->b.attr = acc.attr;
	errno = err;
	PWT_NONNULL(p->a.qp);
	errno = acc.err;
	PWT_NONNULL(p->b.qp);
}

void pwt_pair_close(struct pwt_pair *p)
{
	if (p->a.qp)
		PWT_OK(pw_destroy_qp(p->a.qp));
	p->a.qp = NULL;
	if (p->b.qp)
		PWT_OK(pw_destroy_qp(p->b.qp));
	p->b.qp = NULL;
	if (p->l)
		PWT_OK(pw_close_listener(p->l));
	p->l = NULL;
	pwt_side_close(&p->a);
	pwt_side_close(&p->b);
}

void pwt_buf_alloc(struct pwt_buf *b, struct pwt_side *s, size_t len,
		   unsigned int access, enum pwt_mode mode)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	memset(b, 0, sizeof(*b));
	b->len = len;
	b->map_len = (len + pg - 1) / pg * pg;
	if (!b->map_len)
		b->map_len = pg;
	b->addr = pwt_map(b->map_len);
	switch (mode) {
	case PWT_PINNED:
	case PWT_ODP:
		b->mr = pw_reg_mr(s->pd, b->addr, len,
				  access | (mode == PWT_ODP ? PW_ACCESS_ON_DEMAND : 0));
		PWT_NONNULL(b->mr);
		PWT_ASSERT(b->mr->addr == b->addr);
		PWT_EQ(b->mr->length, len);
		b->lkey = b->mr->lkey;
		b->rkey = b->mr->rkey;
		break;
	case PWT_IMPLICIT:
		if (!s->implicit) {
			s->implicit = pw_reg_mr(s->pd, NULL, SIZE_MAX,
						PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
			PWT_NONNULL(s->implicit);
		}
		b->lkey = s->implicit->lkey;
		b->rkey = s->implicit->rkey;
		break;
	}
}

void pwt_buf_free(struct pwt_buf *b)
{
	if (b->mr)
		PWT_OK(pw_dereg_mr(b->mr));
	if (b->addr)
		pwt_unmap(b->addr, b->map_len);
	memset(b, 0, sizeof(*b));
}

void pwt_img_alloc_access(struct pwt_img *g, struct pwt_side *s, size_t len,
			  unsigned int access, enum pwt_mode m, uint32_t seed)
{
	pwt_buf_alloc(&g->buf, s, len, access, m);
	g->want = malloc(len);
	PWT_ASSERT(g->want);
	if (m == PWT_PINNED && seed) {
		pwt_fill(g->buf.addr, len, seed);
		memcpy(g->want, g->buf.addr, len);
	} else {
		memset(g->want, 0, len);
	}
}

void pwt_img_alloc(struct pwt_img *g, struct pwt_side *s, size_t len,
		   enum pwt_mode m, uint32_t seed)
{
	pwt_img_alloc_access(g, s, len, PWT_ACCESS_ALL, m, seed);
}

void pwt_img_alloc_src(struct pwt_img *g, struct pwt_side *s, size_t len,
		       enum pwt_mode m, uint32_t seed)
{
	pwt_img_alloc(g, s, len, m, 0);
	pwt_fill(g->buf.addr, len, seed);
	memcpy(g->want, g->buf.addr, len);
}

void pwt_img_free(struct pwt_img *g)
{
	pwt_buf_free(&g->buf);
	free(g->want);
	g->want = NULL;
}

/* ------------------------------------------------------------------ */

int pwt_post_rdma(struct pw_qp *qp, enum pw_wr_opcode op, uint64_t wr_id,
		  const void *laddr, uint32_t len, uint32_t lkey,
		  uint64_t raddr, uint32_t rkey, unsigned int flags)
{
	struct pw_sge sge = { pwt_va(laddr), len, lkey };
	struct pw_send_wr wr, *bad = NULL;
	int rc;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id;
	wr.sg_list = len ? &sge : NULL;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = op;
	wr.send_flags = flags;
	wr.imm_data = 0;
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	rc = pw_post_send(qp, &wr, &bad);
	if (rc)
		PWT_ASSERT(bad == &wr);
	return rc;
}

int pwt_post_send1(struct pw_qp *qp, enum pw_wr_opcode op, uint64_t wr_id,
		   const void *laddr, uint32_t len, uint32_t lkey,
		   uint32_t imm, unsigned int flags)
{
	struct pw_sge sge = { pwt_va(laddr), len, lkey };
	struct pw_send_wr wr, *bad = NULL;
	int rc;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id;
	wr.sg_list = len ? &sge : NULL;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = op;
	wr.send_flags = flags;
	wr.imm_data = imm;
	rc = pw_post_send(qp, &wr, &bad);
	if (rc)
		PWT_ASSERT(bad == &wr);
	return rc;
}

int pwt_post_atomic(struct pw_qp *qp, enum pw_wr_opcode op, uint64_t wr_id,
		    uint64_t *result, uint32_t lkey, uint64_t raddr,
		    uint32_t rkey, uint64_t compare_add, uint64_t swap,
		    unsigned int flags)
{
	struct pw_sge sge = { pwt_va(result), 8, lkey };
	struct pw_send_wr wr, *bad = NULL;
	int rc;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = op;
	wr.send_flags = flags;
	wr.wr.atomic.remote_addr = raddr;
	wr.wr.atomic.rkey = rkey;
	wr.wr.atomic.compare_add = compare_add;
	wr.wr.atomic.swap = swap;
	rc = pw_post_send(qp, &wr, &bad);
	if (rc)
		PWT_ASSERT(bad == &wr);
	return rc;
}

int pwt_post_recv1(struct pw_qp *qp, uint64_t wr_id, void *addr,
		   uint32_t len, uint32_t lkey)
{
	struct pw_sge sge = { pwt_va(addr), len, lkey };
	struct pw_recv_wr wr, *bad = NULL;
	int rc;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id;
	wr.sg_list = len ? &sge : NULL;
	wr.num_sge = len ? 1 : 0;
	rc = pw_post_recv(qp, &wr, &bad);
	if (rc)
		PWT_ASSERT(bad == &wr);
	return rc;
}

/* ------------------------------------------------------------------ */

int pwt_poll_wc(struct pw_cq *cq, struct pw_wc *wc, int timeout_ms)
{
	uint64_t deadline = pwt_now_us() + (uint64_t)timeout_ms * 1000u;
	unsigned int spins = 0;

	for (;;) {
		int n = pw_poll_cq(cq, 1, wc);

		PWT_ASSERTF(n >= 0 && n <= 1, "pw_poll_cq returned %d (%s)",
			    n, n < 0 ? pwt_strerr(n) : "more than asked");
		if (n == 1)
			return 1;
		if (pwt_now_us() >= deadline)
			return 0;
		/* Spin briefly for latency, then sleep to leave the CPU to
		 * the progress threads (two cores are shared). */
		if (++spins > 200) {
			struct timespec ts = { 0, 50000 };

			nanosleep(&ts, NULL);
		}
	}
}

void pwt_wait_wc_at(const char *file, int line, struct pw_cq *cq,
		    struct pw_wc *wc, int timeout_ms)
{
	if (!pwt_poll_wc(cq, wc, timeout_ms))
		pwt_fail(file, line, "no completion within %d ms", timeout_ms);
}

void pwt_no_wc_at(const char *file, int line, struct pw_cq *cq, int ms)
{
	struct pw_wc wc;

	if (pwt_poll_wc(cq, &wc, ms))
		pwt_fail(file, line,
			 "unexpected completion: wr_id 0x%" PRIx64 " status %s opcode %d",
			 wc.wr_id, pw_wc_status_str(wc.status), (int)wc.opcode);
}

static void pwt_wc_common(const char *file, int line, const struct pw_wc *wc,
			  uint64_t wr_id, enum pw_wc_status status,
			  uint32_t qp_num)
{
	if (wc->status != status || wc->wr_id != wr_id)
		pwt_fail(file, line,
			 "completion: want wr_id 0x%" PRIx64 " status %s, got wr_id 0x%" PRIx64
			 " status %s (vendor_err %u)",
			 wr_id, pw_wc_status_str(status), wc->wr_id,
			 pw_wc_status_str(wc->status), wc->vendor_err);
	if (wc->qp_num != qp_num)
		pwt_fail(file, line, "completion wr_id 0x%" PRIx64 ": qp_num %u, want %u",
			 wr_id, wc->qp_num, qp_num);
}

struct pw_wc pwt_expect_ok_at(const char *file, int line, struct pw_cq *cq,
			      uint64_t wr_id, enum pw_wc_opcode opcode,
			      uint32_t byte_len, uint32_t qp_num)
{
	struct pw_wc wc;

	pwt_wait_wc_at(file, line, cq, &wc, PWT_TIMEOUT_MS);
	pwt_wc_common(file, line, &wc, wr_id, PW_WC_SUCCESS, qp_num);
	if (wc.opcode != opcode)
		pwt_fail(file, line, "completion wr_id 0x%" PRIx64 ": opcode %d, want %d",
			 wr_id, (int)wc.opcode, (int)opcode);
	if (wc.byte_len != byte_len)
		pwt_fail(file, line, "completion wr_id 0x%" PRIx64 ": byte_len %u, want %u",
			 wr_id, wc.byte_len, byte_len);
	if (wc.wc_flags & PW_WC_WITH_IMM)
		pwt_fail(file, line, "send completion wr_id 0x%" PRIx64 " has WITH_IMM",
			 wr_id);
	return wc;
}

struct pw_wc pwt_expect_recv_at(const char *file, int line, struct pw_cq *cq,
				uint64_t wr_id, enum pw_wc_opcode opcode,
				uint32_t byte_len, bool with_imm,
				uint32_t imm, uint32_t qp_num)
{
	struct pw_wc wc;

	pwt_wait_wc_at(file, line, cq, &wc, PWT_TIMEOUT_MS);
	pwt_wc_common(file, line, &wc, wr_id, PW_WC_SUCCESS, qp_num);
	if (wc.opcode != opcode)
		pwt_fail(file, line, "recv completion wr_id 0x%" PRIx64 ": opcode %d, want %d",
			 wr_id, (int)wc.opcode, (int)opcode);
	if (wc.byte_len != byte_len)
		pwt_fail(file, line, "recv completion wr_id 0x%" PRIx64 ": byte_len %u, want %u",
			 wr_id, wc.byte_len, byte_len);
	if (!!(wc.wc_flags & PW_WC_WITH_IMM) != with_imm)
		pwt_fail(file, line, "recv completion wr_id 0x%" PRIx64 ": wc_flags 0x%x, WITH_IMM %s",
			 wr_id, wc.wc_flags, with_imm ? "expected" : "unexpected");
	if (with_imm && wc.imm_data != imm)
		pwt_fail(file, line, "recv completion wr_id 0x%" PRIx64 ": imm 0x%x, want 0x%x",
			 wr_id, wc.imm_data, imm);
	return wc;
}

struct pw_wc pwt_expect_err_at(const char *file, int line, struct pw_cq *cq,
			       uint64_t wr_id, enum pw_wc_status status,
			       uint32_t qp_num)
{
	struct pw_wc wc;

	pwt_wait_wc_at(file, line, cq, &wc, PWT_TIMEOUT_MS);
	pwt_wc_common(file, line, &wc, wr_id, status, qp_num);
	return wc;
}

void pwt_wait_state_at(const char *file, int line, const struct pw_qp *qp,
		       enum pw_qp_state state, int timeout_ms)
{
	uint64_t deadline = pwt_now_ms() + (uint64_t)timeout_ms;
	enum pw_qp_state cur;

	while ((cur = pw_qp_state(qp)) != state) {
		if (pwt_now_ms() >= deadline)
			pwt_fail(file, line, "QP %u state %d, want %d after %d ms",
				 qp->qp_num, (int)cur, (int)state, timeout_ms);
		pwt_sleep_ms(1);
	}
}

/* ------------------------------------------------------------------ */

bool pwt_in_child(void)
{
	return pwt_child_flag;
}

void pwt_fork(struct pwt_child *c, int (*fn)(int fd, void *arg), void *arg)
{
	int sv[2];
	pid_t pid;

	PWT_ASSERTF(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
		    "socketpair: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	PWT_ASSERTF(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int rc;

		pwt_child_flag = true;
		memset(pwt_children, 0, sizeof(pwt_children));
		close(sv[0]);
		/* Never outlive the parent, never hang: alarm is not
		 * inherited across fork. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		signal(SIGALRM, pwt_watchdog);
		alarm(PWT_WATCHDOG_S);
		rc = fn(sv[1], arg);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	close(sv[1]);
	c->pid = pid;
	c->fd = sv[0];
	for (int i = 0; i < PWT_MAX_CHILDREN; i++)
		if (pwt_children[i] <= 0) {
			pwt_children[i] = pid;
			break;
		}
}

static void pwt_forget_child(pid_t pid)
{
	for (int i = 0; i < PWT_MAX_CHILDREN; i++)
		if (pwt_children[i] == pid)
			pwt_children[i] = 0;
}

int pwt_child_wait(struct pwt_child *c, int timeout_ms)
{
	uint64_t deadline = pwt_now_ms() + (uint64_t)timeout_ms;
	int status = 0;

	for (;;) {
		pid_t r = waitpid(c->pid, &status, WNOHANG);

		if (r == c->pid)
			break;
		PWT_ASSERTF(r == 0, "waitpid: %s", strerror(errno));
		if (pwt_now_ms() >= deadline) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &status, 0);
			pwt_forget_child(c->pid);
			pwt_fail(__FILE__, __LINE__, "child %d did not exit within %d ms",
				 (int)c->pid, timeout_ms);
		}
		pwt_sleep_ms(2);
	}
	pwt_forget_child(c->pid);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->pid = 0;
	return status;
}

void pwt_child_ok_at(const char *file, int line, struct pwt_child *c,
		     int timeout_ms)
{
	pid_t pid = c->pid;
	int st = pwt_child_wait(c, timeout_ms);

	if (WIFSIGNALED(st))
		pwt_fail(file, line, "child %d killed by signal %d", (int)pid,
			 WTERMSIG(st));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		pwt_fail(file, line, "child %d exited with status %d", (int)pid,
			 WEXITSTATUS(st));
}

void pwt_ctl_send(int fd, const void *p, size_t len)
{
	pwt_write_all(fd, p, len);
}

void pwt_ctl_recv(int fd, void *p, size_t len, int timeout_ms)
{
	ssize_t n = pwt_read_full(fd, p, len, timeout_ms);

	PWT_ASSERTF(n == (ssize_t)len, "control message: got %zd of %zu bytes (%s)",
		    n, len, n < 0 ? pwt_strerr((int)n) : "EOF");
}

void pwt_remote_from_qp(const struct pw_qp *qp, struct pwt_remote *r)
{
	PWT_EQ(qp->peer_private_data_len, sizeof(*r));
	memcpy(r, qp->peer_private_data, sizeof(*r));
}

/* ------------------------------------------------------------------ */

static struct sockaddr_in pwt_loopback(uint16_t port)
{
	struct sockaddr_in sa;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sa;
}

int pwt_tcp_connect(uint16_t port)
{
	struct sockaddr_in sa = pwt_loopback(port);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	PWT_ASSERTF(fd >= 0, "socket: %s", strerror(errno));
	PWT_ASSERTF(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
		    "connect to port %u: %s", port, strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int pwt_tcp_listen(uint16_t *port)
{
	struct sockaddr_in sa = pwt_loopback(0);
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	PWT_ASSERTF(fd >= 0, "socket: %s", strerror(errno));
	PWT_ASSERTF(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
		    "bind: %s", strerror(errno));
	PWT_ASSERTF(listen(fd, 8) == 0, "listen: %s", strerror(errno));
	PWT_ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

uint16_t pwt_unused_port(void)
{
	struct sockaddr_in sa = pwt_loopback(0);
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	PWT_ASSERTF(fd >= 0, "socket: %s", strerror(errno));
	PWT_ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	PWT_ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	close(fd);
	return ntohs(sa.sin_port);
}

void pwt_write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		PWT_ASSERTF(n > 0, "write: %s", n < 0 ? strerror(errno) : "0 bytes");
		b += n;
		len -= (size_t)n;
	}
}

ssize_t pwt_read_full(int fd, void *p, size_t len, int timeout_ms)
{
	uint8_t *b = p;
	size_t got = 0;
	uint64_t deadline = pwt_now_ms() + (uint64_t)timeout_ms;

	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = pwt_now_ms();
		ssize_t n;
		int r;

		if (now >= deadline)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, (int)(deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		n = read(fd, b + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return (ssize_t)got;
		got += (size_t)n;
	}
	return (ssize_t)got;
}
