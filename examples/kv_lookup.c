/* SPDX-License-Identifier: MIT */
/*
 * kv_lookup: a remote key-value store read with one-sided RDMA READs.
 *
 *   kv_lookup [options]        the server: builds the table, serves one client
 *   kv_lookup [options] HOST   the client: looks keys up in the server's table
 *
 * The server maps a large region (64 GiB of address space by default)
 * with MAP_NORESERVE and registers it on demand (ODP): nothing is pinned
 * and registration touches no page. It then fills a hash table of
 * --records records whose buckets are spread evenly over the whole
 * region, so that only the pages holding buckets ever exist. It tells
 * the client where the table is (address, rkey, geometry) in a SEND, and
 * from then on does nothing: its CPU is not involved in lookups.
 *
 * The client looks keys up with RDMA READ alone: hash the key to a
 * bucket, READ the bucket (8 slots of 64 bytes), look for the key in it;
 * a full bucket without the key sends it on to the next bucket (linear
 * probing), an empty slot ends the search. Several lookups are in flight
 * at once (--depth). Every record's value is a function of its key, so
 * the client checks every value it finds; it also looks up keys that
 * are not in the table, which must not be found. At the end it sends
 * "done", the server answers with its memory use, and the client prints
 * lookups/s and how much of the region is resident at the server.
 *
 * Exit status: 0 if every lookup gave the right answer, 1 on any failure,
 * 2 on a usage error. -p 0 makes the server pick a free port and print
 * "port N" as its first line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <pagewire/pagewire.h>

#define PROG		"kv_lookup"
#define MAGIC		0x4b564c4b55503031ull	/* "KVLKUP01" */

/* The table's layout, shared by server and client. */
#define SLOT_SIZE	64
#define BUCKET_SLOTS	8
#define BUCKET_SIZE	(SLOT_SIZE * BUCKET_SLOTS)
#define VALUE_MAX	48

/* READs in flight on one connection (both sides ask for this many) */
#define MAX_RD		64

/* One record. Key 0 marks an empty slot. */
struct slot {
	uint64_t key;
	uint32_t vlen;
	uint32_t reserved;
	uint8_t value[VALUE_MAX];
};
_Static_assert(sizeof(struct slot) == SLOT_SIZE, "slot layout");

/* Control messages (SEND/RECV), each in a fixed-size buffer. */
#define CTRL_SIZE	256
#define CTRL_SEND_WRID	UINT64_MAX
#define CTRL_RECV_WRID	(UINT64_MAX - 1)	/* lookups use 0 .. depth-1 */

enum msg_type { MSG_TABLE = 1, MSG_DONE = 2, MSG_REPORT = 3 };

/* server -> client: where the table is and how it is laid out */
struct msg_table {
	uint64_t magic;
	uint32_t type;		/* MSG_TABLE */
	uint32_t rkey;
	uint64_t addr;		/* the region's start */
	uint64_t region_len;
	uint64_t nbuckets;	/* a power of two */
	uint64_t stride;	/* bytes between buckets */
	uint64_t records;
	uint64_t seed;		/* keys are key_of(seed, 0 .. records-1) */
};

/* client -> server: the lookups are over */
struct msg_done {
	uint64_t magic;
	uint32_t type;		/* MSG_DONE */
	uint32_t reserved;
};

/* server -> client: its memory use */
struct msg_report {
	uint64_t magic;
	uint32_t type;		/* MSG_REPORT */
	uint32_t reserved;
	uint64_t rss_bytes;	/* the server process's resident memory */
	uint64_t pt_bytes;	/* what the ODP page tables hold */
	uint64_t faults;	/* faults the remote READs took */
};

struct options {
	const char *host;	/* NULL: we are the server */
	unsigned int port;
	uint64_t region_len;	/* server */
	uint64_t records;	/* server */
	uint64_t seed;		/* server */
	uint64_t lookups;	/* client: present keys to look up, 0 = all */
	uint64_t absent;	/* client: absent keys to look up */
	unsigned int depth;	/* client: lookups in flight */
	int timeout_ms;		/* -1: no limit */
};

struct conn {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_comp_channel *channel;
	struct pw_cq *cq;
	struct pw_listener *listener;
	struct pw_qp *qp;
	uint8_t *buf;		/* ctrl send | ctrl recv | (client) buckets */
	size_t buf_len;
	struct pw_mr *mr;
};

/* ------------------------------------------------------------------ */
/* Keys, values, hashing                                                */
/* ------------------------------------------------------------------ */

/* SplitMix64's finalizer: a bijection on 64-bit integers. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/*
 * Key number @i. Distinct @i give distinct keys (mix64 is a bijection),
 * so keys past the table's last are certainly not in it.
 */
static uint64_t key_of(uint64_t seed, uint64_t i)
{
	return mix64(seed + i);
}

/* The bucket a key starts in. */
static uint64_t bucket_of(uint64_t key, uint64_t nbuckets)
{
	return mix64(key ^ 0x6b76c0ffee5eedull) & (nbuckets - 1);
}

/* The value stored with @key: 8..48 bytes, each a function of the key. */
static uint32_t value_len(uint64_t key)
{
	return 8 + (uint32_t)(key % (VALUE_MAX - 8 + 1));
}

static uint8_t value_byte(uint64_t key, uint32_t i)
{
	return (uint8_t)(mix64(key + i + 1) >> 56);
}

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage:\n"
		"  %s [options]        build the table and serve one client\n"
		"  %s [options] HOST   look keys up in the table of the server at HOST\n"
		"\n"
		"Options:\n"
		"  -p, --port=PORT       listen on or connect to PORT (default 18516);\n"
		"                        server: 0 picks a free port and prints \"port N\"\n"
		"  -r, --region=SIZE     server: region to map and register, with K, M, G\n"
		"                        or T (default 64G; address space, not memory)\n"
		"  -n, --records=N       server: records in the table (default 10000)\n"
		"  -S, --seed=N          server: which keys (default 1)\n"
		"  -l, --lookups=N       client: present keys to look up (default: every\n"
		"                        record once)\n"
		"  -a, --absent=N        client: absent keys to look up too (default 1000)\n"
		"  -d, --depth=N         client: lookups in flight (default 16)\n"
		"  -t, --timeout=SEC     give up after SEC seconds waiting for a connection\n"
		"                        or a completion (default 10; 0: never)\n"
		"  -h, --help            print this help\n"
		"  -V, --version         print the pagewire library version\n",
		PROG, PROG);
}

/* A number with an optional K/M/G/T suffix (powers of 1024). */
static bool parse_u64(const char *s, bool suffix, uint64_t min, uint64_t max,
		      uint64_t *out)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return false;
	if (suffix && *end) {
		const char *units = "KMGT", *u = strchr(units, *end & ~0x20);

		if (!u || !*u)
			return false;
		shift = 10 * (unsigned int)(u - units + 1);
		end++;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return false;
	v <<= shift;
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "port",    required_argument, NULL, 'p' },
		{ "region",  required_argument, NULL, 'r' },
		{ "records", required_argument, NULL, 'n' },
		{ "seed",    required_argument, NULL, 'S' },
		{ "lookups", required_argument, NULL, 'l' },
		{ "absent",  required_argument, NULL, 'a' },
		{ "depth",   required_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help",    no_argument,       NULL, 'h' },
		{ "version", no_argument,       NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t v;
	int c;

	*o = (struct options){ .port = 18516, .region_len = 64ull << 30,
			       .records = 10000, .seed = 1, .absent = 1000,
			       .depth = 16, .timeout_ms = 10000 };
	while ((c = getopt_long(argc, argv, "p:r:n:S:l:a:d:t:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (!parse_u64(optarg, false, 0, 65535, &v))
				goto bad_value;
			o->port = (unsigned int)v;
			break;
		case 'r':
			if (!parse_u64(optarg, true, 1, 1ull << 46, &v))
				goto bad_value;
			o->region_len = v;
			break;
		case 'n':
			if (!parse_u64(optarg, false, 1, 1ull << 32, &v))
				goto bad_value;
			o->records = v;
			break;
		case 'S':
			if (!parse_u64(optarg, false, 0, UINT64_MAX, &v))
				goto bad_value;
			o->seed = v;
			break;
		case 'l':
			if (!parse_u64(optarg, false, 1, 1ull << 40, &v))
				goto bad_value;
			o->lookups = v;
			break;
		case 'a':
			if (!parse_u64(optarg, false, 0, 1ull << 40, &v))
				goto bad_value;
			o->absent = v;
			break;
		case 'd':
			if (!parse_u64(optarg, false, 1, 1024, &v))
				goto bad_value;
			o->depth = (unsigned int)v;
			break;
		case 't':
			if (!parse_u64(optarg, false, 0, INT_MAX / 1000, &v))
				goto bad_value;
			o->timeout_ms = v ? (int)v * 1000 : -1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("%s (pagewire %s)\n", PROG, pw_version());
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "%s: one HOST at most\n", PROG);
		usage(stderr);
		exit(2);
	}
	if (optind < argc)
		o->host = argv[optind];
	if (o->host && o->port == 0) {
		fprintf(stderr, "%s: a client needs the server's port (-p)\n", PROG);
		exit(2);
	}
	return;

bad_value:
	fprintf(stderr, "%s: invalid value '%s' for -%c\n", PROG, optarg, c);
	usage(stderr);
	exit(2);
}

/* ------------------------------------------------------------------ */
/* Common plumbing                                                      */
/* ------------------------------------------------------------------ */

static void lib_error(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s%s%s\n", PROG, what, strerror(err),
		*pw_last_error() ? " - " : "", pw_last_error());
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* "64.0 GiB" */
static const char *human(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
	return buf;
}

/* This process's resident memory, from /proc/self/statm. */
static uint64_t rss_bytes(void)
{
	unsigned long long size, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%llu %llu", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Context, PD, a CQ with a completion channel, and the local buffer. */
static int conn_setup(struct conn *c, size_t buf_len, int cqe)
{
	c->ctx = pw_open(NULL);
	if (!c->ctx) {
		lib_error("pw_open", errno);
		return -1;
	}
	c->pd = pw_alloc_pd(c->ctx);
	c->channel = pw_create_comp_channel(c->ctx);
	c->cq = pw_create_cq(c->ctx, cqe, NULL, c->channel, 0);
	if (!c->pd || !c->channel || !c->cq) {
		lib_error("setting up", errno);
		return -1;
	}
	if (pw_req_notify_cq(c->cq, 0)) {
		lib_error("pw_req_notify_cq", EINVAL);
		return -1;
	}
	c->buf_len = buf_len;
	c->buf = mmap(NULL, buf_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->buf == MAP_FAILED) {
		c->buf = NULL;
		lib_error("mmap", errno);
		return -1;
	}
	c->mr = pw_reg_mr(c->pd, c->buf, buf_len,
			  PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	if (!c->mr) {
		lib_error("pw_reg_mr", errno);
		return -1;
	}
	return 0;
}

static void conn_teardown(struct conn *c)
{
	if (c->qp)
		pw_destroy_qp(c->qp);
	if (c->listener)
		pw_close_listener(c->listener);
	if (c->mr)
		pw_dereg_mr(c->mr);
	if (c->buf)
		munmap(c->buf, c->buf_len);
	if (c->cq)
		pw_destroy_cq(c->cq);
	if (c->channel)
		pw_destroy_comp_channel(c->channel);
	if (c->pd)
		pw_dealloc_pd(c->pd);
	if (c->ctx)
		pw_close(c->ctx);
}

/*
 * Wait for completions: poll; if there are none, sleep on the channel
 * (the CQ is always armed), acknowledge the event, arm again, poll again.
 * @timeout_ms bounds each sleep (-1: none).
 *
 * Return: the number of completions (> 0), or a negative errno.
 */
static int wait_wcs(struct conn *c, struct pw_wc *wc, int max, int timeout_ms)
{
	for (;;) {
		struct pw_cq *ev_cq;
		void *ev_ctx;
		int n = pw_poll_cq(c->cq, max, wc);

		if (n)
			return n;
		n = pw_get_cq_event(c->channel, &ev_cq, &ev_ctx, timeout_ms);
		if (n)
			return n == -EAGAIN ? -ETIMEDOUT : n;
		pw_ack_cq_events(ev_cq, 1);
		n = pw_req_notify_cq(ev_cq, 0);
		if (n)
			return n;
	}
}

/* Post a SEND of @len bytes at the start of the buffer (the ctrl slot). */
static int post_ctrl_send(struct conn *c, uint32_t len)
{
	struct pw_sge sge = { .addr = (uintptr_t)c->buf, .length = len,
			      .lkey = c->mr->lkey };
	struct pw_send_wr wr = { .wr_id = CTRL_SEND_WRID, .sg_list = &sge,
				 .num_sge = 1, .opcode = PW_WR_SEND,
				 .send_flags = PW_SEND_SIGNALED };
	int err = pw_post_send(c->qp, &wr, NULL);

	if (err)
		lib_error("pw_post_send", -err);
	return err;
}

/* Post the one receive, into the second ctrl slot. */
static int post_ctrl_recv(struct conn *c)
{
	struct pw_sge sge = { .addr = (uintptr_t)(c->buf + CTRL_SIZE),
			      .length = CTRL_SIZE, .lkey = c->mr->lkey };
	struct pw_recv_wr wr = { .wr_id = CTRL_RECV_WRID, .sg_list = &sge,
				 .num_sge = 1 };
	int err = pw_post_recv(c->qp, &wr, NULL);

	if (err)
		lib_error("pw_post_recv", -err);
	return err;
}

/*
 * Wait for the completions of the ctrl SEND (@send) and/or the ctrl
 * RECV (@recv), in whatever order they come; *@recv_len gets the size
 * of the message received.
 *
 * Return: 0; a negative errno when waiting failed (-ETIMEDOUT: nothing
 * within @timeout_ms); or the status of a completion that failed (> 0).
 */
static int wait_ctrl(struct conn *c, bool send, bool recv, int timeout_ms,
		     uint32_t *recv_len)
{
	while (send || recv) {
		struct pw_wc wc;
		int n = wait_wcs(c, &wc, 1, timeout_ms);

		if (n < 0)
			return n;
		if (wc.status != PW_WC_SUCCESS)
			return (int)wc.status;
		if (wc.wr_id == CTRL_SEND_WRID) {
			send = false;
		} else if (wc.wr_id == CTRL_RECV_WRID) {
			recv = false;
			if (recv_len)
				*recv_len = wc.byte_len;
		}
	}
	return 0;
}

/* What wait_ctrl()'s failure @r was. */
static const char *ctrl_error(int r)
{
	if (r == -ETIMEDOUT)
		return "the peer did not answer in time";
	return r < 0 ? strerror(-r) : pw_wc_status_str((enum pw_wc_status)r);
}

/* ------------------------------------------------------------------ */
/* The server                                                           */
/* ------------------------------------------------------------------ */

static int server(const struct options *o)
{
	const unsigned int access = PW_ACCESS_LOCAL_WRITE |
				    PW_ACCESS_REMOTE_READ | PW_ACCESS_ON_DEMAND;
	struct conn c = { 0 };
	uint8_t *region = NULL;
	uint64_t len, nbuckets = 1, stride, pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t t0, reg_ns, rss0, max_probe = 0;
	struct pw_qp_init_attr attr;
	struct pw_conn_param param = { .timeout_ms = o->timeout_ms };
	struct pw_mr *mr = NULL;
	struct pw_stats st;
	uint32_t rlen = 0;
	char h1[32], h2[32];
	int err, ret = 1;

	/*
	 * The geometry: at most half of the slots used, buckets spread over
	 * the whole region, page-aligned, so each lives in a page of its own
	 * (while the region allows).
	 */
	len = (o->region_len + pg - 1) / pg * pg;
	while (nbuckets * BUCKET_SLOTS < 2 * o->records)
		nbuckets <<= 1;
	stride = len / nbuckets;
	stride = stride >= pg ? stride / pg * pg : stride / BUCKET_SIZE * BUCKET_SIZE;
	if (stride < BUCKET_SIZE) {
		fprintf(stderr, "%s: a region of %s is too small for %" PRIu64
			" records (%" PRIu64 " buckets of %d bytes)\n", PROG,
			human(len, h1, sizeof(h1)), o->records, nbuckets,
			BUCKET_SIZE);
		return 2;	/* a usage error: -r and -n do not fit */
	}

	if (conn_setup(&c, 2 * CTRL_SIZE, 16))
		goto out;

	/*
	 * Listen first: a client that connects while the table is being
	 * filled waits in pw_connect() until pw_accept() below.
	 */
	c.listener = pw_listen(c.ctx, NULL, (uint16_t)o->port);
	if (!c.listener) {
		lib_error("pw_listen", errno);
		goto out;
	}
	if (o->port == 0) {
		/* For scripts: the port we got, first, at once. */
		printf("port %u\n", pw_listener_port(c.listener));
		fflush(stdout);
	}

	/* Address space only: MAP_NORESERVE, and registration touches nothing. */
	rss0 = rss_bytes();
	region = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (region == MAP_FAILED) {
		region = NULL;
		fprintf(stderr, "%s: cannot map %s: %s\n", PROG,
			human(len, h1, sizeof(h1)), strerror(errno));
		goto out;
	}
	t0 = now_ns();
	mr = pw_reg_mr(c.pd, region, len, access);
	reg_ns = now_ns() - t0;
	if (!mr) {
		lib_error("pw_reg_mr", errno);
		goto out;
	}

	/* Fill the table: linear probing from each key's bucket. */
	for (uint64_t i = 0; i < o->records; i++) {
		uint64_t key = key_of(o->seed, i), b = bucket_of(key, nbuckets);
		struct slot *s = NULL;
		uint64_t probes;

		if (key == 0) {
			fprintf(stderr, "%s: seed %" PRIu64 " makes key 0: choose another\n",
				PROG, o->seed);
			goto out;
		}
		for (probes = 0; !s; probes++, b = (b + 1) & (nbuckets - 1)) {
			struct slot *bucket = (struct slot *)(region + b * stride);

			for (int j = 0; j < BUCKET_SLOTS && !s; j++)
				if (bucket[j].key == 0)
					s = &bucket[j];
		}
		if (probes > max_probe)
			max_probe = probes;
		s->vlen = value_len(key);
		for (uint32_t j = 0; j < s->vlen; j++)
			s->value[j] = value_byte(key, j);
		s->key = key;
	}
	printf("server: %s region mapped and registered on demand in %.1f us\n",
	       human(len, h1, sizeof(h1)), reg_ns / 1000.0);
	printf("server: %" PRIu64 " records in %" PRIu64 " buckets %s apart "
	       "(longest probe: %" PRIu64 " bucket%s); resident memory +%s\n",
	       o->records, nbuckets, human(stride, h1, sizeof(h1)), max_probe,
	       max_probe > 1 ? "s" : "", human(rss_bytes() - rss0, h2, sizeof(h2)));
	fflush(stdout);

	memset(&attr, 0, sizeof(attr));
	attr.send_cq = c.cq;
	attr.recv_cq = c.cq;
	attr.max_dest_rd_atomic = MAX_RD;	/* READs the client may have in flight */
	c.qp = pw_accept(c.listener, c.pd, &attr, &param);
	if (!c.qp) {
		lib_error(errno == ETIMEDOUT ? "no client connected" : "pw_accept",
			  errno);
		goto out;
	}
	pw_close_listener(c.listener);
	c.listener = NULL;

	/* The receive for the client's "done", then the table's description. */
	if (post_ctrl_recv(&c))
		goto out;
	struct msg_table *t = (struct msg_table *)c.buf;
	*t = (struct msg_table){
		.magic = MAGIC, .type = MSG_TABLE, .rkey = mr->rkey,
		.addr = (uintptr_t)region, .region_len = len,
		.nbuckets = nbuckets, .stride = stride, .records = o->records,
		.seed = o->seed,
	};
	if (post_ctrl_send(&c, sizeof(*t)))
		goto out;
	err = wait_ctrl(&c, true, false, o->timeout_ms, NULL);
	if (err) {
		fprintf(stderr, "%s: sending the table's description: %s\n",
			PROG, ctrl_error(err));
		goto out;
	}

	/*
	 * The client now READs on its own. Wait for its "done" without a
	 * time limit: if it vanishes, its connection fails within the
	 * dead-peer bound (peer_timeout_ms) and the receive is flushed.
	 */
	err = wait_ctrl(&c, false, true, -1, &rlen);
	if (err) {
		struct pw_qp_attr qa;

		if (err == PW_WC_WR_FLUSH_ERR &&
		    pw_query_qp(c.qp, &qa, sizeof(qa)) == 0) {
			printf("server: the client left without \"done\": %s\n",
			       pw_qp_cause_str(qa.cause));
			ret = 0;
		} else {
			fprintf(stderr, "%s: waiting for the client: %s\n", PROG,
				ctrl_error(err));
		}
		goto out;
	}
	const struct msg_done *d = (const struct msg_done *)(c.buf + CTRL_SIZE);
	if (rlen != sizeof(*d) || d->magic != MAGIC || d->type != MSG_DONE) {
		fprintf(stderr, "%s: the client sent something else than \"done\"\n",
			PROG);
		goto out;
	}

	if (pw_query_stats(c.ctx, &st, sizeof(st)))
		memset(&st, 0, sizeof(st));
	struct msg_report *r = (struct msg_report *)c.buf;
	*r = (struct msg_report){ .magic = MAGIC, .type = MSG_REPORT,
				  .rss_bytes = rss_bytes(),
				  .pt_bytes = st.resident_bytes,
				  .faults = st.faults };
	printf("server: the client is done; resident %s for a %s region; "
	       "%" PRIu64 " faults taken for its READs\n",
	       human(r->rss_bytes, h1, sizeof(h1)), human(len, h2, sizeof(h2)),
	       r->faults);
	if (post_ctrl_send(&c, sizeof(*r)))
		goto out;
	err = wait_ctrl(&c, true, false, o->timeout_ms, NULL);
	if (err) {
		fprintf(stderr, "%s: sending the report: %s\n", PROG,
			ctrl_error(err));
		goto out;
	}
	ret = 0;
out:
	if (c.qp) {
		pw_destroy_qp(c.qp);
		c.qp = NULL;
	}
	if (mr)
		pw_dereg_mr(mr);
	if (region)
		munmap(region, len);
	conn_teardown(&c);
	return ret;
}

/* ------------------------------------------------------------------ */
/* The client                                                           */
/* ------------------------------------------------------------------ */

/* One lookup in flight: its key, where it is, and its READ buffer. */
struct lookup {
	uint64_t key;
	bool present;		/* expected in the table */
	uint64_t bucket;
	uint64_t probes;
	struct slot *buf;	/* BUCKET_SLOTS slots */
};

struct client {
	struct conn c;
	struct msg_table t;
	struct lookup *lk;	/* o->depth of them */
	unsigned int *free_lk;	/* stack of free lookups */
	unsigned int nfree;
	uint64_t reads, found, not_found, wrong;
};

/* READ the bucket lookup @i is at. */
static int post_read(struct client *cl, unsigned int i)
{
	struct lookup *l = &cl->lk[i];
	struct pw_sge sge = { .addr = (uintptr_t)l->buf, .length = BUCKET_SIZE,
			      .lkey = cl->c.mr->lkey };
	struct pw_send_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1,
				 .opcode = PW_WR_RDMA_READ,
				 .send_flags = PW_SEND_SIGNALED };
	int err;

	wr.wr.rdma.remote_addr = cl->t.addr + l->bucket * cl->t.stride;
	wr.wr.rdma.rkey = cl->t.rkey;
	err = pw_post_send(cl->c.qp, &wr, NULL);
	if (err)
		lib_error("pw_post_send(RDMA_READ)", -err);
	cl->reads++;
	return err;
}

/*
 * Look for lookup @i's key in the bucket just read. Return 1 when the
 * lookup is over (found, or an empty slot says it is not there), 0 when
 * the next bucket must be read.
 */
static int scan_bucket(struct client *cl, unsigned int i)
{
	struct lookup *l = &cl->lk[i];

	for (int j = 0; j < BUCKET_SLOTS; j++) {
		const struct slot *s = &l->buf[j];

		if (s->key == l->key) {
			bool ok = l->present && s->vlen == value_len(l->key);

			for (uint32_t k = 0; ok && k < s->vlen; k++)
				ok = s->value[k] == value_byte(l->key, k);
			if (ok) {
				cl->found++;
			} else {
				cl->wrong++;
				fprintf(stderr, "%s: key 0x%016" PRIx64 ": %s\n",
					PROG, l->key, l->present ?
					"wrong value" : "found, but it is not in the table");
			}
			return 1;
		}
		if (s->key == 0) {
			if (l->present) {
				cl->wrong++;
				fprintf(stderr, "%s: key 0x%016" PRIx64 " not found\n",
					PROG, l->key);
			} else {
				cl->not_found++;
			}
			return 1;
		}
	}
	if (++l->probes >= cl->t.nbuckets) {
		/* every bucket full: only a broken table does that */
		cl->wrong++;
		fprintf(stderr, "%s: key 0x%016" PRIx64 ": probed every bucket\n",
			PROG, l->key);
		return 1;
	}
	l->bucket = (l->bucket + 1) & (cl->t.nbuckets - 1);
	return 0;
}

static int client(const struct options *o)
{
	struct client cl = { 0 };
	struct conn *c = &cl.c;
	struct pw_qp_init_attr attr;
	struct pw_conn_param param = { .timeout_ms = o->timeout_ms };
	uint64_t present, total, next = 0, done = 0, t0, ns;
	unsigned int inflight = 0;
	struct pw_wc wc[16];
	struct msg_report rep;
	uint32_t rlen = 0;
	char h1[32], h2[32], h3[32];
	char what[300];
	int err, ret = 1;

	cl.lk = calloc(o->depth, sizeof(*cl.lk));
	cl.free_lk = calloc(o->depth, sizeof(*cl.free_lk));
	if (!cl.lk || !cl.free_lk) {
		fprintf(stderr, "%s: out of memory\n", PROG);
		goto out;
	}
	/* The buffer: ctrl send | ctrl recv | one bucket per lookup. */
	if (conn_setup(c, 2 * CTRL_SIZE + (size_t)o->depth * BUCKET_SIZE,
		       (int)o->depth + 2))
		goto out;
	for (unsigned int i = 0; i < o->depth; i++) {
		cl.lk[i].buf = (struct slot *)(c->buf + 2 * CTRL_SIZE +
					       (size_t)i * BUCKET_SIZE);
		cl.free_lk[cl.nfree++] = i;
	}

	memset(&attr, 0, sizeof(attr));
	attr.send_cq = c->cq;
	attr.recv_cq = c->cq;
	attr.cap.max_send_wr = o->depth + 1;
	/* READs in flight on the wire; more lookups than that wait in the SQ */
	attr.max_rd_atomic = o->depth < MAX_RD ? o->depth : MAX_RD;
	c->qp = pw_connect(c->pd, &attr, o->host, (uint16_t)o->port, &param);
	if (!c->qp) {
		snprintf(what, sizeof(what), "cannot connect to %s port %u",
			 o->host, o->port);
		lib_error(what, errno);
		goto out;
	}
	/*
	 * The server SENDs the table's description as soon as the connection
	 * is up; if it comes before this receive is posted, the server's
	 * SEND is retried (receiver not ready) until it is.
	 */
	if (post_ctrl_recv(c))
		goto out;
	err = wait_ctrl(c, false, true, o->timeout_ms, &rlen);
	if (err) {
		fprintf(stderr, "%s: no table description from the server: %s\n",
			PROG, ctrl_error(err));
		goto out;
	}
	memcpy(&cl.t, c->buf + CTRL_SIZE, sizeof(cl.t));
	if (rlen != sizeof(cl.t) || cl.t.magic != MAGIC ||
	    cl.t.type != MSG_TABLE || !cl.t.nbuckets ||
	    (cl.t.nbuckets & (cl.t.nbuckets - 1))) {
		fprintf(stderr, "%s: the server is not a %s server\n", PROG, PROG);
		goto out;
	}
	printf("client: %" PRIu64 " records in %" PRIu64 " buckets of a %s region "
	       "at 0x%" PRIx64 ", rkey 0x%x\n", cl.t.records, cl.t.nbuckets,
	       human(cl.t.region_len, h1, sizeof(h1)), cl.t.addr, cl.t.rkey);

	/*
	 * Lookup n < present is of key (n mod records), present; the rest
	 * are keys past the table's last, absent.
	 */
	present = o->lookups ? o->lookups : cl.t.records;
	total = present + o->absent;
	t0 = now_ns();
	while (done < total) {
		/* Start lookups while there is room. */
		while (cl.nfree && next < total) {
			unsigned int i = cl.free_lk[--cl.nfree];
			struct lookup *l = &cl.lk[i];

			l->present = next < present;
			l->key = key_of(cl.t.seed, l->present ? next % cl.t.records :
					cl.t.records + (next - present));
			l->bucket = bucket_of(l->key, cl.t.nbuckets);
			l->probes = 0;
			next++;
			if (post_read(&cl, i))
				goto out;
			inflight++;
		}
		int n = wait_wcs(c, wc, 16, o->timeout_ms);
		if (n < 0) {
			fprintf(stderr, "%s: %s with %u READs outstanding: %s\n",
				PROG, n == -ETIMEDOUT ? "no completion in time" :
				"waiting for completions", inflight, strerror(-n));
			goto out;
		}
		for (int k = 0; k < n; k++) {
			unsigned int i = (unsigned int)wc[k].wr_id;

			if (wc[k].status != PW_WC_SUCCESS) {
				fprintf(stderr, "%s: RDMA READ failed: %s\n", PROG,
					pw_wc_status_str(wc[k].status));
				goto out;
			}
			if (i >= o->depth) {
				fprintf(stderr, "%s: unexpected completion\n", PROG);
				goto out;
			}
			if (scan_bucket(&cl, i)) {
				done++;
				inflight--;
				cl.free_lk[cl.nfree++] = i;
			} else if (post_read(&cl, i)) {
				goto out;
			}
		}
	}
	ns = now_ns() - t0;

	/* "done"; the server answers with its memory use. */
	*(struct msg_done *)c->buf = (struct msg_done){ .magic = MAGIC,
							.type = MSG_DONE };
	if (post_ctrl_recv(c) || post_ctrl_send(c, sizeof(struct msg_done)))
		goto out;
	err = wait_ctrl(c, true, true, o->timeout_ms, &rlen);
	if (err) {
		fprintf(stderr, "%s: no report from the server: %s\n", PROG,
			ctrl_error(err));
		goto out;
	}
	memcpy(&rep, c->buf + CTRL_SIZE, sizeof(rep));
	if (rlen != sizeof(rep) || rep.magic != MAGIC || rep.type != MSG_REPORT) {
		fprintf(stderr, "%s: the server's report is garbled\n", PROG);
		goto out;
	}

	printf("client: %" PRIu64 " lookups (%" PRIu64 " present, %" PRIu64
	       " absent) in %.3f s with %u in flight: %.0f lookups/s, "
	       "%.2f READs each\n", total, present, o->absent, ns / 1e9,
	       o->depth, total / (ns / 1e9), (double)cl.reads / total);
	printf("client: %" PRIu64 " values found and correct, %" PRIu64
	       " absent keys not found, %" PRIu64 " wrong\n",
	       cl.found, cl.not_found, cl.wrong);
	printf("client: the server's resident memory: %s for a %s region (%.3f%%); "
	       "its page tables hold %s\n", human(rep.rss_bytes, h1, sizeof(h1)),
	       human(cl.t.region_len, h2, sizeof(h2)),
	       100.0 * rep.rss_bytes / cl.t.region_len,
	       human(rep.pt_bytes, h3, sizeof(h3)));
	if (cl.wrong || cl.found != present || cl.not_found != o->absent) {
		printf("%s: FAILED\n", PROG);
		goto out;
	}
	printf("%s: OK: %" PRIu64 " lookups verified, %.0f lookups/s, "
	       "server resident %s of %s\n", PROG, total, total / (ns / 1e9),
	       human(rep.rss_bytes, h1, sizeof(h1)),
	       human(cl.t.region_len, h2, sizeof(h2)));
	ret = 0;
out:
	conn_teardown(c);
	free(cl.lk);
	free(cl.free_lk);
	return ret;
}

int main(int argc, char **argv)
{
	struct options o;

	parse_args(argc, argv, &o);
	return o.host ? client(&o) : server(&o);
}
