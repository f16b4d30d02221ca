/*
 * fi_rma_bw: RDMA WRITE/READ bandwidth and 8-byte WRITE latency over the
 * libfabric API, for comparing pagewire with the libfabric tcp provider.
 *
 * Debian packages no fabtests, so this mirrors fabtests' fi_rma_bw semantics:
 *   bandwidth: post a window (-w, default 64) of fi_write/fi_read ops, then
 *              wait until every posted op has completed (completion counting,
 *              as fabtests' ft_get_tx_comp), repeat; warm-up iterations are
 *              excluded; the target never calls in on the data path (with
 *              FI_PROGRESS_AUTO; a manual-progress provider gets polled).
 *   latency:   ping-pong of fi_writedata (8 bytes + remote CQ data, as
 *              fabtests' rma pingpong); each side waits for the remote-write
 *              completion of the peer's write; reports half the round trip.
 *
 * Endpoints: -e msg (FI_EP_MSG, provider "tcp", connection-oriented; the
 * default and what fabtests fi_rma_bw uses with the tcp provider) or -e rdm
 * (FI_EP_RDM, provider "tcp;ofi_rxm"). -P PROV names another provider
 * ("pagewire", "pagewire;ofi_rxm").
 *
 * -c keeps the window full instead (a new op as soon as one completes, as
 * pagewire-perf's write_bw and perftest do), so that the provider can be
 * compared with pagewire-perf on the same loop.
 *
 * Usage:  server: fi_rma_bw [-e msg|rdm] [-p PORT]
 *         client: fi_rma_bw [-e msg|rdm] [-p PORT] [-T TESTS] [-S SIZES]
 *                           [-n ITERS] [-w WINDOW] [-b] 127.0.0.1
 * TESTS is a comma list of write_bw, read_bw, write_lat; SIZES a comma list
 * (K/M suffixes). -n 0 (default) picks bandwidth iterations per size from
 * a byte budget (-B, default 256M) within [200, 10000]; -N sets the latency
 * iterations (default 10000), after 10% (at least 100) warm-up rounds.
 * The latency loop stops early after -L seconds (default 10) once 100
 * iterations are measured, and reports the iterations it measured.
 * -b waits for completions with fi_cq_sread (blocking) instead of spinning
 * on fi_cq_read (fabtests' default, busy polling).
 * The client prints one JSON object per result on stdout.
 * Every wait is bounded (-t seconds, default 60): no run can hang.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define MAX_SIZES 64
#define MAX_WINDOW 1024

enum { CMD_WRITE_BW = 1, CMD_READ_BW, CMD_WRITE_LAT, CMD_QUIT };

struct cmd {
	uint32_t op;
	uint32_t pad;
	uint64_t size;
	uint64_t iters;
	uint64_t warmup;
};

struct mrinfo {
	uint64_t addr;
	uint64_t key;
	uint64_t len;
};

static const char *ep_kind = "msg";
static const char *prov_opt = NULL;	/* -P */
static int continuous = 0;		/* -c */
static int port = 0;
static int blocking = 0;
static int timeout_s = 60;
static const char *host = NULL;

static struct fi_info *info;
static struct fid_fabric *fabric;
static struct fid_domain *domain;
static struct fid_eq *eq;
static struct fid_pep *pep;
static struct fid_ep *ep;
static struct fid_cq *cq;
static struct fid_av *av;
static struct fid_mr *mr;
static fi_addr_t peer = FI_ADDR_UNSPEC;
static char *buf;
static size_t buf_len;
static void *mr_desc;
static struct mrinfo remote;
static int oob = -1;
static struct fi_context ctxs[MAX_WINDOW + 2];
static uint64_t tx_posted, tx_done, rx_done;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fi_rma_bw: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

#define FI_CHECK(call)                                                         \
	do {                                                                   \
		int _r = (int)(call);                                          \
		if (_r)                                                        \
			die("%s: %s (%d)", #call, fi_strerror(-_r), _r);       \
	} while (0)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	else if (*end == 'g' || *end == 'G')
		v <<= 30, end++;
	if (*end || v == 0)
		die("bad size '%s'", s);
	return v;
}

/* ---- out-of-band TCP channel (setup and test control only) ---- */

static void oob_io(int send, void *p, size_t len)
{
	char *c = p;
	while (len) {
		ssize_t r = send ? write(oob, c, len) : read(oob, c, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("out-of-band %s failed: %s", send ? "send" : "recv",
			    r == 0 ? "peer closed" : strerror(errno));
		c += r;
		len -= (size_t)r;
	}
}

static void oob_setup(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = timeout_s };
	int one = 1;

	if (inet_pton(AF_INET, host ? host : "127.0.0.1", &sa.sin_addr) != 1)
		die("bad host '%s' (IPv4 literal expected)", host);
	if (host) {
		double deadline = now_s() + 10;
		for (;;) {
			oob = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(oob, (struct sockaddr *)&sa, sizeof(sa)) == 0)
				break;
			close(oob);
			if (now_s() > deadline)
				die("connect to %s:%d: %s", host, port, strerror(errno));
			usleep(20000);
		}
	} else {
		int ls = socket(AF_INET, SOCK_STREAM, 0);
		struct pollfd pfd = { .fd = ls, .events = POLLIN };
		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1))
			die("listen on 127.0.0.1:%d: %s", port, strerror(errno));
		if (poll(&pfd, 1, timeout_s * 1000) != 1)
			die("no client within %d s", timeout_s);
		oob = accept(ls, NULL, NULL);
		if (oob < 0)
			die("accept: %s", strerror(errno));
		close(ls);
	}
	setsockopt(oob, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(oob, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(oob, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int oob_readable(void)
{
	struct pollfd pfd = { .fd = oob, .events = POLLIN };
	return poll(&pfd, 1, 0) == 1;
}

/* ---- completions ---- */

static void cq_error(void)
{
	struct fi_cq_err_entry err = { 0 };
	fi_cq_readerr(cq, &err, 0);
	die("completion error: %s (prov %d: %s)", fi_strerror(err.err), err.prov_errno,
	    fi_cq_strerror(cq, err.prov_errno, err.err_data, NULL, 0));
}

/* Reads what the CQ has (at most one sread wait in blocking mode) and counts
 * it. Returns the number of entries read. */
static ssize_t progress_once(void)
{
	struct fi_cq_data_entry e[16];
	ssize_t n = blocking ? fi_cq_sread(cq, e, 16, NULL, 100) : fi_cq_read(cq, e, 16);

	if (n == -FI_EAGAIN)
		return 0;
	if (n == -FI_EAVAIL)
		cq_error();
	if (n < 0)
		die("fi_cq_read: %s", fi_strerror((int)-n));
	for (ssize_t i = 0; i < n; i++) {
		if (e[i].flags & FI_REMOTE_CQ_DATA)
			rx_done++;
		else if (e[i].flags & (FI_WRITE | FI_READ))
			tx_done++;
		else if (e[i].flags & FI_RECV)
			rx_done++; /* FI_RX_CQ_DATA providers */
	}
	return n;
}

/* Bounded wait for progress: dies after timeout_s seconds without any. */
struct waiter {
	double deadline;
	unsigned spins;
};

static void waiter_tick(struct waiter *w, ssize_t got, const char *what)
{
	if (got > 0) {
		w->deadline = 0;
		return;
	}
	if ((++w->spins & 0xfff) && !blocking)
		return;
	if (w->deadline == 0)
		w->deadline = now_s() + timeout_s;
	else if (now_s() > w->deadline)
		die("timed out (%d s) %s (tx %" PRIu64 "/%" PRIu64 " done, rx %" PRIu64 ")",
		    timeout_s, what, tx_done, tx_posted, rx_done);
}

/* Reads completions until tx_done >= tx_want and rx_done >= rx_want. */
static void wait_comp(uint64_t tx_want, uint64_t rx_want)
{
	struct waiter w = { 0 };
	while (tx_done < tx_want || rx_done < rx_want)
		waiter_tick(&w, progress_once(), "waiting for completions");
}

/* ---- fabric setup ---- */

static struct fi_info *hints_new(void)
{
	struct fi_info *h = fi_allocinfo();
	if (!h)
		die("fi_allocinfo");
	h->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
	h->mode = FI_CONTEXT | FI_RX_CQ_DATA;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
				  FI_MR_PROV_KEY | FI_MR_ENDPOINT;
	h->domain_attr->cq_data_size = 4;
	h->addr_format = FI_SOCKADDR_IN;
	if (!strcmp(ep_kind, "msg")) {
		h->ep_attr->type = FI_EP_MSG;
		h->fabric_attr->prov_name = strdup(prov_opt ? prov_opt : "tcp");
	} else {
		h->ep_attr->type = FI_EP_RDM;
		h->fabric_attr->prov_name = strdup(prov_opt ? prov_opt : "tcp;ofi_rxm");
	}
	return h;
}

static void open_domain(struct fi_info *fi)
{
	struct fi_cq_attr cq_attr = {
		.size = 4 * MAX_WINDOW,
		.format = FI_CQ_FORMAT_DATA,
		.wait_obj = blocking ? FI_WAIT_UNSPEC : FI_WAIT_NONE,
	};
	FI_CHECK(fi_fabric(fi->fabric_attr, &fabric, NULL));
	FI_CHECK(fi_domain(fabric, fi, &domain, NULL));
	FI_CHECK(fi_cq_open(domain, &cq_attr, &cq, NULL));
}

static void setup_ep(struct fi_info *fi)
{
	FI_CHECK(fi_endpoint(domain, fi, &ep, NULL));
	if (fi->ep_attr->type == FI_EP_MSG)
		FI_CHECK(fi_ep_bind(ep, &eq->fid, 0));
	else
		FI_CHECK(fi_ep_bind(ep, &av->fid, 0));
	FI_CHECK(fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV));
	FI_CHECK(fi_enable(ep));
}

static void reg_mr(void)
{
	uint64_t mode = info->domain_attr->mr_mode;
	FI_CHECK(fi_mr_reg(domain, buf, buf_len,
			   FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_SEND | FI_RECV,
			   0, 0x5157, 0, &mr, NULL));
	if (mode & FI_MR_ENDPOINT) {
		FI_CHECK(fi_mr_bind(mr, &ep->fid, 0));
		FI_CHECK(fi_mr_enable(mr));
	}
	mr_desc = fi_mr_desc(mr);
}

static void eq_wait(uint32_t want, struct fi_eq_cm_entry *entry)
{
	uint32_t event;
	ssize_t r = fi_eq_sread(eq, &event, entry, sizeof(*entry), timeout_s * 1000, 0);
	if (r == -FI_EAVAIL) {
		struct fi_eq_err_entry err = { 0 };
		fi_eq_readerr(eq, &err, 0);
		die("connection error: %s", fi_strerror(err.err));
	}
	if (r < 0)
		die("fi_eq_sread: %s", fi_strerror((int)-r));
	if (event != want)
		die("unexpected connection event %u (wanted %u)", event, want);
}

static void post_rx_for_data(unsigned n)
{
	/* Providers with FI_RX_CQ_DATA consume a posted receive per remote CQ data. */
	if (!(info->mode & FI_RX_CQ_DATA))
		return;
	for (unsigned i = 0; i < n; i++) {
		ssize_t r;
		struct waiter w = { 0 };
		while ((r = fi_recv(ep, NULL, 0, NULL, peer, &ctxs[MAX_WINDOW + 1])) == -FI_EAGAIN)
			waiter_tick(&w, progress_once(), "posting a receive (EAGAIN)");
		if (r)
			die("fi_recv: %s", fi_strerror((int)-r));
	}
}

static void fabric_setup(void)
{
	struct fi_info *h = hints_new();
	int is_msg = !strcmp(ep_kind, "msg");
	struct fi_eq_attr eq_attr = { .wait_obj = FI_WAIT_UNSPEC };
	struct mrinfo mine;

	if (is_msg && !host) {
		/* server: passive endpoint on 127.0.0.1, ephemeral port, name sent out of band */
		struct fi_info *fi;
		struct fi_eq_cm_entry entry;
		char name[64];
		size_t nlen = sizeof(name);
		FI_CHECK(fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", "0", FI_SOURCE, h, &fi));
		FI_CHECK(fi_fabric(fi->fabric_attr, &fabric, NULL));
		FI_CHECK(fi_eq_open(fabric, &eq_attr, &eq, NULL));
		FI_CHECK(fi_passive_ep(fabric, fi, &pep, NULL));
		FI_CHECK(fi_pep_bind(pep, &eq->fid, 0));
		FI_CHECK(fi_listen(pep));
		FI_CHECK(fi_getname(&pep->fid, name, &nlen));
		oob_io(1, &nlen, sizeof(nlen));
		oob_io(1, name, nlen);
		eq_wait(FI_CONNREQ, &entry);
		info = entry.info;
		{
			struct fi_cq_attr cq_attr = {
				.size = 4 * MAX_WINDOW,
				.format = FI_CQ_FORMAT_DATA,
				.wait_obj = blocking ? FI_WAIT_UNSPEC : FI_WAIT_NONE,
			};
			FI_CHECK(fi_domain(fabric, info, &domain, NULL));
			FI_CHECK(fi_cq_open(domain, &cq_attr, &cq, NULL));
		}
		setup_ep(info);
		reg_mr();
		post_rx_for_data(MAX_WINDOW);
		FI_CHECK(fi_accept(ep, NULL, 0));
		eq_wait(FI_CONNECTED, &entry);
		fi_freeinfo(fi);
	} else if (is_msg) {
		struct fi_eq_cm_entry entry;
		char name[64];
		size_t nlen;
		oob_io(0, &nlen, sizeof(nlen));
		if (nlen > sizeof(name))
			die("bad address length");
		oob_io(0, name, nlen);
		h->dest_addr = malloc(nlen);
		memcpy(h->dest_addr, name, nlen);
		h->dest_addrlen = nlen;
		FI_CHECK(fi_getinfo(FI_VERSION(1, 9), NULL, NULL, 0, h, &info));
		open_domain(info);
		FI_CHECK(fi_eq_open(fabric, &eq_attr, &eq, NULL));
		setup_ep(info);
		reg_mr();
		post_rx_for_data(MAX_WINDOW);
		FI_CHECK(fi_connect(ep, info->dest_addr, NULL, 0));
		eq_wait(FI_CONNECTED, &entry);
	} else {
		/* RDM (ofi_rxm over tcp): exchange endpoint names, insert into an AV */
		struct fi_av_attr av_attr = { .type = FI_AV_MAP };
		char name[64], pname[64];
		size_t nlen = sizeof(name), plen;
		FI_CHECK(fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, h, &info));
		open_domain(info);
		FI_CHECK(fi_av_open(domain, &av_attr, &av, NULL));
		setup_ep(info);
		reg_mr();
		FI_CHECK(fi_getname(&ep->fid, name, &nlen));
		oob_io(1, &nlen, sizeof(nlen));
		oob_io(1, name, nlen);
		oob_io(0, &plen, sizeof(plen));
		if (plen > sizeof(pname))
			die("bad address length");
		oob_io(0, pname, plen);
		if (fi_av_insert(av, pname, 1, &peer, 0, NULL) != 1)
			die("fi_av_insert failed");
		post_rx_for_data(MAX_WINDOW);
	}
	fi_freeinfo(h);

	mine.addr = (info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buf : 0;
	mine.key = fi_mr_key(mr);
	mine.len = buf_len;
	oob_io(1, &mine, sizeof(mine));
	oob_io(0, &remote, sizeof(remote));
}

/* ---- the tests ---- */

static void post_rma(int read, size_t size, uint64_t seq)
{
	struct fi_context *c = &ctxs[seq % MAX_WINDOW];
	struct waiter w = { 0 };
	for (;;) {
		ssize_t r = read ? fi_read(ep, buf, size, mr_desc, peer, remote.addr, remote.key, c)
				 : fi_write(ep, buf, size, mr_desc, peer, remote.addr, remote.key, c);
		if (r == 0)
			break;
		if (r != -FI_EAGAIN)
			die("fi_%s: %s", read ? "read" : "write", fi_strerror((int)-r));
		waiter_tick(&w, progress_once(), "posting (EAGAIN)");
	}
	tx_posted++;
}

static void run_bw(int read, size_t size, uint64_t iters, uint64_t warmup, unsigned window)
{
	struct cmd c = { .op = read ? CMD_READ_BW : CMD_WRITE_BW, .size = size, .iters = iters, .warmup = warmup };
	uint64_t ack;
	double t0 = 0, t1;
	unsigned j = 0;

	oob_io(1, &c, sizeof(c));
	oob_io(0, &ack, sizeof(ack));
	memset(buf, 0x5a, size);
	for (uint64_t i = 0; i < iters + warmup; i++) {
		if (i == warmup) {
			wait_comp(tx_posted, 0);
			t0 = now_s();
		}
		if (continuous) {
			struct waiter w = { 0 };

			while (tx_posted - tx_done >= window)
				waiter_tick(&w, progress_once(), "waiting for window room");
		}
		post_rma(read, size, tx_posted);
		if (!continuous && ++j == window) {
			wait_comp(tx_posted, 0);
			j = 0;
		}
	}
	wait_comp(tx_posted, 0);
	t1 = now_s();
	oob_io(1, &c, sizeof(c)); /* end of test */
	oob_io(0, &ack, sizeof(ack));
	printf("{\"system\":\"libfabric\",\"ep\":\"%s\",\"prov\":\"%s\",\"test\":\"%s\","
	       "\"size\":%zu,\"iters\":%" PRIu64 ",\"window\":%u,\"loop\":\"%s\",\"completion\":\"%s\","
	       "\"elapsed_s\":%.6f,\"bw_MBps\":%.3f,\"msg_rate_Mpps\":%.6f}\n",
	       ep_kind, info->fabric_attr->prov_name, read ? "read_bw" : "write_bw", size, iters,
	       window, continuous ? "continuous" : "drain", blocking ? "blocking" : "busy", t1 - t0,
	       (double)size * (double)iters / (t1 - t0) / 1e6, (double)iters / (t1 - t0) / 1e6);
	fflush(stdout);
}

static void write8(uint64_t val, uint64_t seq)
{
	ssize_t r;
	struct waiter w = { 0 };
	memcpy(buf, &val, sizeof(val));
	while ((r = fi_writedata(ep, buf, 8, mr_desc, val & 0xffffffffu, peer,
				 remote.addr + 64, remote.key, &ctxs[seq % MAX_WINDOW])) == -FI_EAGAIN)
		waiter_tick(&w, progress_once(), "posting (EAGAIN)");
	if (r)
		die("fi_writedata: %s", fi_strerror((int)-r));
	tx_posted++;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void run_lat(uint64_t iters, uint64_t warmup, double max_s)
{
	struct cmd c = { .op = CMD_WRITE_LAT, .size = 8, .iters = iters, .warmup = warmup };
	uint64_t ack, total = iters + warmup, done = 0;
	double *lat = calloc(iters, sizeof(double)), sum = 0, stop;
	volatile uint64_t *landed = (volatile uint64_t *)(buf + 64);

	if (!lat)
		die("out of memory");
	oob_io(1, &c, sizeof(c));
	oob_io(0, &ack, sizeof(ack));
	stop = now_s() + max_s;
	for (uint64_t i = 0; i < total; i++) {
		double t0 = now_s();
		write8(2 * i + 1, tx_posted);
		wait_comp(tx_posted, rx_done + 1);
		double t1 = now_s(), dt = (t1 - t0) / 2 * 1e6;
		post_rx_for_data(1);
		if (*landed != 2 * i + 2)
			die("latency: pong carried %" PRIu64 ", expected %" PRIu64, *landed, 2 * i + 2);
		if (i >= warmup)
			lat[done++] = dt, sum += dt;
		if (t1 > stop && done >= 100)
			break; /* time bound (-L): a loaded machine must not stall the run */
	}
	oob_io(1, &c, sizeof(c)); /* end of test */
	oob_io(0, &ack, sizeof(ack));
	if (!done)
		die("latency: no iteration measured within %.0f s", max_s);
	qsort(lat, done, sizeof(double), cmp_double);
	printf("{\"system\":\"libfabric\",\"ep\":\"%s\",\"prov\":\"%s\",\"test\":\"write_lat\","
	       "\"size\":8,\"iters\":%" PRIu64 ",\"completion\":\"%s\",\"lat_kind\":\"half_rtt\","
	       "\"lat_p50_us\":%.3f,\"lat_p99_us\":%.3f,\"lat_avg_us\":%.3f,\"lat_min_us\":%.3f}\n",
	       ep_kind, info->fabric_attr->prov_name, done, blocking ? "blocking" : "busy",
	       lat[done / 2], lat[(done * 99) / 100], sum / (double)done, lat[0]);
	fflush(stdout);
	free(lat);
}

static void server_loop(void)
{
	struct cmd c;
	uint64_t ack = 1;
	volatile uint64_t *landed = (volatile uint64_t *)(buf + 64);

	for (;;) {
		oob_io(0, &c, sizeof(c));
		if (c.op == CMD_QUIT)
			break;
		if (c.size > buf_len)
			die("size %" PRIu64 " exceeds buffer", c.size);
		oob_io(1, &ack, sizeof(ack));
		if (c.op == CMD_WRITE_LAT) {
			/* pong every ping until the client says done (it may stop early) */
			struct waiter w = { 0 };
			uint64_t i = 0, base = rx_done;
			for (unsigned k = 0;; k++) {
				ssize_t got = progress_once();
				if (rx_done > base + i) {
					post_rx_for_data(1);
					if (*landed != 2 * i + 1)
						die("latency: ping carried %" PRIu64 ", expected %" PRIu64,
						    *landed, 2 * i + 1);
					write8(2 * i + 2, tx_posted);
					i++;
					continue;
				}
				if ((blocking || (k & 63) == 0) && oob_readable())
					break;
				waiter_tick(&w, got, "waiting for a ping");
			}
			wait_comp(tx_posted, 0);
		} else {
			/* The target drives progress until the client says done: the
			 * tcp provider of libfabric 1.17 reports FI_PROGRESS_AUTO but
			 * moves no data unless the target polls its CQ (measured: a
			 * target blocked elsewhere stalls the writer forever). */
			double deadline = now_s() + timeout_s;
			for (unsigned k = 0;; k++) {
				progress_once();
				if ((blocking || (k & 63) == 0) && oob_readable())
					break;
				if ((blocking || (k & 0xffff) == 0) && now_s() > deadline)
					die("bandwidth test did not end within %d s", timeout_s);
			}
		}
		oob_io(0, &c, sizeof(c)); /* end of test */
		oob_io(1, &ack, sizeof(ack));
	}
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fi_rma_bw [-e msg|rdm] [-P PROV] [-c] [-p PORT] [-T write_bw,read_bw,write_lat]\n"
		"                 [-S SIZE,...] [-n ITERS] [-N LAT_ITERS] [-w WINDOW] [-B BYTES] [-b]\n"
		"                 [-t SECS] [-L LAT_SECS] [HOST]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *tests = "write_bw,write_lat";
	const char *sizes_s = "4096,65536,1048576";
	uint64_t sizes[MAX_SIZES], iters_opt = 0, lat_iters = 10000, budget = 256u << 20;
	unsigned nsizes = 0, window = 64;
	double max_lat_s = 10;
	int opt;

	while ((opt = getopt(argc, argv, "e:P:cp:T:S:n:N:w:B:bt:L:h")) != -1) {
		switch (opt) {
		case 'e': ep_kind = optarg; break;
		case 'P': prov_opt = optarg; break;
		case 'c': continuous = 1; break;
		case 'p': port = atoi(optarg); break;
		case 'T': tests = optarg; break;
		case 'S': sizes_s = optarg; break;
		case 'n': iters_opt = strtoull(optarg, NULL, 10); break;
		case 'N': lat_iters = strtoull(optarg, NULL, 10); break;
		case 'w': window = (unsigned)atoi(optarg); break;
		case 'B': budget = parse_size(optarg); break;
		case 'b': blocking = 1; break;
		case 't': timeout_s = atoi(optarg); break;
		case 'L': max_lat_s = atof(optarg); break;
		default: usage();
		}
	}
	if (optind < argc)
		host = argv[optind];
	if (strcmp(ep_kind, "msg") && strcmp(ep_kind, "rdm"))
		usage();
	if (port <= 0 || port > 65535)
		die("-p PORT is required");
	if (window < 1 || window > MAX_WINDOW)
		die("window must be 1..%d", MAX_WINDOW);
	{
		char *dup = strdup(sizes_s), *save = NULL;
		for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (nsizes == MAX_SIZES)
				die("too many sizes");
			sizes[nsizes++] = parse_size(t);
		}
		free(dup);
	}

	oob_setup();
	/* buffer: the client announces the largest size, both allocate it */
	if (host) {
		uint64_t max = 4096;
		for (unsigned i = 0; i < nsizes; i++)
			max = sizes[i] > max ? sizes[i] : max;
		oob_io(1, &max, sizeof(max));
		buf_len = max;
	} else {
		uint64_t max;
		oob_io(0, &max, sizeof(max));
		buf_len = max;
	}
	if (posix_memalign((void **)&buf, 4096, buf_len))
		die("out of memory");
	memset(buf, 0, buf_len);
	fabric_setup();

	if (!host) {
		server_loop();
	} else {
		char *dup = strdup(tests), *save = NULL;
		for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (!strcmp(t, "write_lat")) {
				uint64_t it = lat_iters ? lat_iters : 10000;
				run_lat(it, it / 10 < 100 ? 100 : it / 10, max_lat_s);
				continue;
			}
			int rd;
			if (!strcmp(t, "write_bw"))
				rd = 0;
			else if (!strcmp(t, "read_bw"))
				rd = 1;
			else
				die("unknown test '%s'", t);
			for (unsigned i = 0; i < nsizes; i++) {
				uint64_t it = iters_opt;
				if (!it) {
					it = budget / sizes[i];
					it = it < 200 ? 200 : it > 10000 ? 10000 : it;
				}
				run_bw(rd, sizes[i], it, it / 10 < window ? window : it / 10, window);
			}
		}
		free(dup);
		struct cmd q = { .op = CMD_QUIT };
		oob_io(1, &q, sizeof(q));
	}

	if (mr)
		fi_close(&mr->fid);
	if (ep)
		fi_close(&ep->fid);
	if (pep)
		fi_close(&pep->fid);
	if (av)
		fi_close(&av->fid);
	if (cq)
		fi_close(&cq->fid);
	if (eq)
		fi_close(&eq->fid);
	if (domain)
		fi_close(&domain->fid);
	if (fabric)
		fi_close(&fabric->fid);
	if (info)
		fi_freeinfo(info);
	close(oob);
	free(buf);
	return 0;
}
