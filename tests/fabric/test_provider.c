/* SPDX-License-Identifier: MIT */
/*
 * The provider through libfabric's own API, no fabtests needed: one
 * process, a passive endpoint and an active one over 127.0.0.1.
 *
 *   test_provider huge     fi_mr_reg of 1 TiB of MAP_NORESERVE memory (on
 *                          demand: nothing is pinned or touched), then an
 *                          fi_write into its middle and an fi_read back;
 *                          every byte compared, the CQ entries exact
 *   test_provider inject   fi_inject (unsignalled underneath) and
 *                          fi_send with a context: no entry for the first,
 *                          exactly one for the second, data in order
 *   test_provider static   a program's initialised static data (a private
 *                          mapping of its file, which userfaultfd cannot
 *                          watch) registers too: an fi_write lands in it
 *                          and an fi_read returns it, byte for byte
 *
 * FI_PROVIDER_PATH must name the provider's build directory (CTest sets it).
 * Exit 0 passed, 1 failed, 77 skipped (no 1 TiB of address space).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <time.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define TIB	((size_t)1 << 40)

#define FAIL(...) do {							\
	fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);		\
	fprintf(stderr, __VA_ARGS__);					\
	fputc('\n', stderr);						\
	exit(1);							\
} while (0)
#define OK(call) do {							\
	long r_ = (long)(call);						\
	if (r_)								\
		FAIL("%s = %ld (%s)", #call, r_, fi_strerror((int)-r_));	\
} while (0)

struct side {
	struct fid_domain *dom;
	struct fid_ep *ep;
	struct fid_cq *cq;
	struct fid_eq *eq;
};

static struct fi_info *info;
static struct fid_fabric *fab;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void open_side(struct side *s, struct fi_info *fi)
{
	struct fi_cq_attr ca = { .format = FI_CQ_FORMAT_DATA, .size = 64 };
	struct fi_eq_attr ea = { .size = 16, .wait_obj = FI_WAIT_UNSPEC };

	OK(fi_domain(fab, fi, &s->dom, NULL));
	OK(fi_cq_open(s->dom, &ca, &s->cq, NULL));
	OK(fi_eq_open(fab, &ea, &s->eq, NULL));
	OK(fi_endpoint(s->dom, fi, &s->ep, NULL));
	OK(fi_ep_bind(s->ep, &s->cq->fid, FI_TRANSMIT | FI_RECV));
	OK(fi_ep_bind(s->ep, &s->eq->fid, 0));
	OK(fi_enable(s->ep));
}

static void close_side(struct side *s)
{
	OK(fi_close(&s->ep->fid));
	OK(fi_close(&s->cq->fid));
	OK(fi_close(&s->eq->fid));
	OK(fi_close(&s->dom->fid));
}

static void expect_cm(struct fid_eq *eq, uint32_t want, struct fi_eq_cm_entry *e)
{
	uint32_t ev;
	ssize_t n = fi_eq_sread(eq, &ev, e, sizeof(*e), 10000, 0);

	if (n < 0)
		FAIL("fi_eq_sread: %zd (%s)", n, fi_strerror((int)-n));
	if (ev != want)
		FAIL("CM event %u, want %u", ev, want);
}

/* a = client, b = accepted server side */
static void connect_pair(struct side *a, struct side *b)
{
	struct fi_eq_attr ea = { .size = 16, .wait_obj = FI_WAIT_UNSPEC };
	struct fi_info *sinfo, *cinfo, *hints = fi_dupinfo(info);
	struct fi_eq_cm_entry e;
	struct fid_eq *peq;
	struct fid_pep *pep;
	char addr[128];
	size_t alen = sizeof(addr);
	char port[16];

	OK(fi_getinfo(FI_VERSION(1, 17), "127.0.0.1", "0", FI_SOURCE, hints, &sinfo));
	OK(fi_eq_open(fab, &ea, &peq, NULL));
	OK(fi_passive_ep(fab, sinfo, &pep, NULL));
	OK(fi_pep_bind(pep, &peq->fid, 0));
	OK(fi_listen(pep));
	OK(fi_getname(&pep->fid, addr, &alen));
	snprintf(port, sizeof(port), "%u",
		 (unsigned)ntohs(((struct sockaddr_in *)(void *)addr)->sin_port));
	OK(fi_getinfo(FI_VERSION(1, 17), "127.0.0.1", port, 0, hints, &cinfo));
	open_side(a, cinfo);
	OK(fi_connect(a->ep, cinfo->dest_addr, NULL, 0));
	expect_cm(peq, FI_CONNREQ, &e);
	if (!e.info || !e.info->dest_addr)
		FAIL("FI_CONNREQ without info->dest_addr");
	open_side(b, e.info);
	OK(fi_accept(b->ep, NULL, 0));
	expect_cm(b->eq, FI_CONNECTED, &e);
	expect_cm(a->eq, FI_CONNECTED, &e);
	fi_freeinfo(e.info);
	fi_freeinfo(cinfo);
	fi_freeinfo(sinfo);
	fi_freeinfo(hints);
	/* the accepted endpoint outlives its passive endpoint */
	OK(fi_close(&pep->fid));
	OK(fi_close(&peq->fid));
}

/* The next entry of @cq: @ctx with all of @flags, within 10 s. */
static void expect_comp(struct fid_cq *cq, void *ctx, uint64_t flags)
{
	struct fi_cq_data_entry e;
	uint64_t end = now_ns() + 10000000000ull;
	ssize_t n;

	for (;;) {
		n = fi_cq_read(cq, &e, 1);
		if (n == 1)
			break;
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry err = { 0 };

			fi_cq_readerr(cq, &err, 0);
			FAIL("error completion: %s (prov_errno %d)",
			     fi_strerror(err.err), err.prov_errno);
		}
		if (n != -FI_EAGAIN)
			FAIL("fi_cq_read: %zd", n);
		if (now_ns() > end)
			FAIL("no completion for context %p within 10 s", ctx);
	}
	if (e.op_context != ctx || (e.flags & flags) != flags)
		FAIL("completion context %p flags 0x%" PRIx64 ", want %p with 0x%" PRIx64,
		     e.op_context, e.flags, ctx, flags);
}

static void expect_empty(struct fid_cq *cq)
{
	struct fi_cq_data_entry e;
	uint64_t end = now_ns() + 50000000ull;

	while (now_ns() < end) {
		ssize_t n = fi_cq_read(cq, &e, 1);

		if (n != -FI_EAGAIN)
			FAIL("unexpected CQ entry (%zd), context %p", n, n == 1 ? e.op_context : NULL);
	}
}

static void fill(uint8_t *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 8));
}

/*
 * fi_write @len bytes of @buf (pattern @seed) from @a into @target (the
 * peer's region @tmr), then fi_read them back into @buf + @len: the
 * target and the read-back compared byte for byte, exact CQ entries.
 */
static void write_read(struct side *a, struct fid_mr *loc, uint8_t *buf,
		       struct fid_mr *tmr, uint8_t *target, size_t len,
		       unsigned int seed, const char *where)
{
	int ctx_w, ctx_r;

	fill(buf, len, seed);
	OK(fi_write(a->ep, buf, len, fi_mr_desc(loc), 0,
		    (uint64_t)(uintptr_t)target, fi_mr_key(tmr), &ctx_w));
	expect_comp(a->cq, &ctx_w, FI_RMA | FI_WRITE);
	if (memcmp(target, buf, len))
		FAIL("the WRITE did not land byte for byte %s", where);
	OK(fi_read(a->ep, buf + len, len, fi_mr_desc(loc), 0,
		   (uint64_t)(uintptr_t)target, fi_mr_key(tmr), &ctx_r));
	expect_comp(a->cq, &ctx_r, FI_RMA | FI_READ);
	if (memcmp(buf + len, buf, len))
		FAIL("the READ did not return what was written %s", where);
}

static int t_huge(void)
{
	struct side a, b;
	struct fid_mr *big, *loc;
	const size_t len = 64 * 1024, off = TIB / 2 + 12345;
	uint8_t *region, *buf;
	uint64_t t0, t1;

	region = mmap(NULL, TIB, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (region == MAP_FAILED) {
		printf("SKIP: cannot map 1 TiB of address space: %s\n", strerror(errno));
		return 77;
	}
	buf = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		FAIL("mmap: %s", strerror(errno));
	connect_pair(&a, &b);

	/* the target registers 1 TiB: on demand, so nothing is touched */
	t0 = now_ns();
	OK(fi_mr_reg(b.dom, region, TIB, FI_REMOTE_WRITE | FI_REMOTE_READ, 0, 0, 0,
		     &big, NULL));
	t1 = now_ns();
	printf("fi_mr_reg(1 TiB): %.1f us\n", (double)(t1 - t0) / 1000.0);
	OK(fi_mr_reg(a.dom, buf, 2 * len, FI_WRITE | FI_READ, 0, 0, 0, &loc, NULL));

	write_read(&a, loc, buf, big, region + off, len, 5, "at 512 GiB + 12345");
	if (region[off - 1] != 0 || region[off + len] != 0)
		FAIL("bytes next to the WRITE changed");
	printf("WRITE and READ of %zu bytes at 512 GiB into the 1 TiB region: data ok\n", len);

	OK(fi_close(&loc->fid));
	OK(fi_close(&big->fid));
	close_side(&a);
	close_side(&b);
	munmap(buf, 2 * len);
	munmap(region, TIB);
	return 0;
}

static int t_inject(void)
{
	struct side a, b;
	struct fid_mr *rmr, *smr;
	uint8_t sbuf[64], rbuf[4][64];
	int rctx[4], sctx;

	connect_pair(&a, &b);
	OK(fi_mr_reg(b.dom, rbuf, sizeof(rbuf), FI_RECV, 0, 0, 0, &rmr, NULL));
	OK(fi_mr_reg(a.dom, sbuf, sizeof(sbuf), FI_SEND, 0, 0, 0, &smr, NULL));
	for (int i = 0; i < 4; i++)
		OK(fi_recv(b.ep, rbuf[i], sizeof(rbuf[i]), fi_mr_desc(rmr), 0, &rctx[i]));
	for (int i = 0; i < 3; i++) {
		fill(sbuf, 48, 10 + (unsigned)i);
		/* the buffer may be reused at once: change it right away */
		OK(fi_inject(a.ep, sbuf, 48, 0));
		memset(sbuf, 0xee, sizeof(sbuf));
	}
	fill(sbuf, 64, 20);
	OK(fi_send(a.ep, sbuf, 64, fi_mr_desc(smr), 0, &sctx));
	for (int i = 0; i < 4; i++) {
		uint8_t want[64];

		expect_comp(b.cq, &rctx[i], FI_RECV | FI_MSG);
		fill(want, i < 3 ? 48 : 64, i < 3 ? 10 + (unsigned)i : 20);
		if (memcmp(rbuf[i], want, i < 3 ? 48 : 64))
			FAIL("message %d differs", i);
	}
	/* one entry at the sender: the fi_send's, none for the injects */
	expect_comp(a.cq, &sctx, FI_SEND | FI_MSG);
	expect_empty(a.cq);
	printf("3 injects and a send arrived in order, one send completion\n");
	OK(fi_close(&smr->fid));
	OK(fi_close(&rmr->fid));
	close_side(&a);
	close_side(&b);
	return 0;
}

/* initialised, so in .data: pages of the executable's file mapping */
static uint8_t static_target[3 * 4096 + 100] = { 1 };

static int t_static(void)
{
	struct side a, b;
	struct fid_mr *tmr, *loc;
	const size_t len = sizeof(static_target) - 200;
	uint8_t *buf;

	buf = malloc(2 * len);
	if (!buf)
		FAIL("malloc");
	connect_pair(&a, &b);
	OK(fi_mr_reg(b.dom, static_target, sizeof(static_target),
		     FI_REMOTE_WRITE | FI_REMOTE_READ, 0, 0, 0, &tmr, NULL));
	OK(fi_mr_reg(a.dom, buf, 2 * len, FI_WRITE | FI_READ, 0, 0, 0, &loc, NULL));
	write_read(&a, loc, buf, tmr, static_target + 100, len, 7, "in static data");
	if (static_target[0] != 1 || static_target[99] != 0 ||
	    static_target[100 + len] != 0)
		FAIL("bytes next to the WRITE changed");
	printf("WRITE and READ of %zu bytes in static data: data ok\n", len);
	OK(fi_close(&loc->fid));
	OK(fi_close(&tmr->fid));
	close_side(&a);
	close_side(&b);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	struct fi_info *hints = fi_allocinfo();
	int rc;

	if (argc != 2 || !hints)
		FAIL("usage: test_provider huge|inject|static");
	hints->fabric_attr->prov_name = strdup("pagewire");
	hints->ep_attr->type = FI_EP_MSG;
	hints->caps = FI_MSG | FI_RMA;
	hints->mode = FI_CONTEXT;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_PROV_KEY |
				      FI_MR_ALLOCATED;
	OK(fi_getinfo(FI_VERSION(1, 17), "127.0.0.1", NULL, FI_SOURCE, hints, &info));
	if (strcmp(info->fabric_attr->prov_name, "pagewire"))
		FAIL("provider %s, want pagewire", info->fabric_attr->prov_name);
	OK(fi_fabric(info->fabric_attr, &fab, NULL));
	if (!strcmp(argv[1], "huge"))
		rc = t_huge();
	else if (!strcmp(argv[1], "inject"))
		rc = t_inject();
	else if (!strcmp(argv[1], "static"))
		rc = t_static();
	else
		FAIL("unknown case %s", argv[1]);
	OK(fi_close(&fab->fid));
	fi_freeinfo(info);
	fi_freeinfo(hints);
	if (!rc)
		printf("%s: ok\n", argv[1]);
	return rc;
}
