/* SPDX-License-Identifier: MIT */
/*
 * rc_pingpong: SEND/RECV ping-pong over a reliable-connected QP, after
 * rdma-core's ibv_rc_pingpong.
 *
 *   rc_pingpong [options]        the server: waits for one client
 *   rc_pingpong [options] HOST   the client: connects to HOST
 *
 * The client sends a message of --size bytes, the server answers with one
 * of the same size, --iters times. Every message carries a pattern that
 * depends on its number and on who sent it, and the receiver checks it
 * byte for byte. Both sides then print the throughput and the time per
 * round trip as ibv_rc_pingpong does.
 *
 * Differences from ibv_rc_pingpong: the connection is made by
 * pw_connect()/pw_accept() (the librdmacm model) instead of an
 * out-of-band TCP exchange of LIDs and PSNs, so there is no --ib-dev,
 * --gid-idx, --mtu or --sl; buffers are registered on demand (ODP,
 * nothing pinned); -p 0 makes the server pick a free port and print
 * "port N" as its first line; -t bounds every wait.
 *
 * Exit status: 0 on success, 1 on any failure, 2 on a usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>

#include <pagewire/pagewire.h>

#define PROG		"rc_pingpong"
#define RECV_WRID	1
#define SEND_WRID	2
#define MAX_SIZE	(1ul << 30)
#define CONN_MAGIC	0x50575050u	/* "PWPP" */

struct options {
	const char *host;	/* NULL: we are the server */
	unsigned int port;
	unsigned long size;
	unsigned int iters;
	unsigned int rx_depth;
	bool use_event;
	int timeout_ms;		/* -1: no limit */
};

/* Sent in the connection's private data, so both sides agree. */
struct conn_info {
	uint32_t magic;
	uint32_t size;
	uint32_t iters;
	uint32_t reserved;
};

struct pingpong {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_comp_channel *channel;	/* with --events */
	struct pw_cq *cq;
	struct pw_listener *listener;
	struct pw_qp *qp;
	uint8_t *buf;		/* send buffer | receive buffer */
	size_t buf_len;
	struct pw_mr *mr;
	unsigned int routs;	/* receives posted */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage:\n"
		"  %s [options]        start a server and wait for a connection\n"
		"  %s [options] HOST   connect to the server at HOST\n"
		"\n"
		"Options:\n"
		"  -p, --port=PORT       listen on or connect to PORT (default 18515);\n"
		"                        server: 0 picks a free port and prints \"port N\"\n"
		"  -s, --size=SIZE       size of the message to exchange (default 4096)\n"
		"  -n, --iters=ITERS     number of exchanges (default 1000)\n"
		"  -r, --rx-depth=DEPTH  number of receives to post at a time (default 500)\n"
		"  -e, --events          sleep on CQ events (default: poll)\n"
		"  -t, --timeout=SEC     give up after SEC seconds waiting for the peer:\n"
		"                        a connection or a completion (default 10; 0: never)\n"
		"  -h, --help            print this help\n"
		"  -V, --version         print the pagewire library version\n",
		PROG, PROG);
}

/* A decimal number in [min, max], or false. */
static bool parse_num(const char *s, unsigned long min, unsigned long max,
		      unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Parse the command line; on a usage error print why and exit 2. */
static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "port",     required_argument, NULL, 'p' },
		{ "size",     required_argument, NULL, 's' },
		{ "iters",    required_argument, NULL, 'n' },
		{ "rx-depth", required_argument, NULL, 'r' },
		{ "events",   no_argument,       NULL, 'e' },
		{ "timeout",  required_argument, NULL, 't' },
		{ "help",     no_argument,       NULL, 'h' },
		{ "version",  no_argument,       NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	unsigned long v;
	int c;

	*o = (struct options){ .port = 18515, .size = 4096, .iters = 1000,
			       .rx_depth = 500, .timeout_ms = 10000 };
	while ((c = getopt_long(argc, argv, "p:s:n:r:et:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (!parse_num(optarg, 0, 65535, &v))
				goto bad_value;
			o->port = (unsigned int)v;
			break;
		case 's':
			if (!parse_num(optarg, 1, MAX_SIZE, &v))
				goto bad_value;
			o->size = v;
			break;
		case 'n':
			if (!parse_num(optarg, 1, INT_MAX, &v))
				goto bad_value;
			o->iters = (unsigned int)v;
			break;
		case 'r':
			if (!parse_num(optarg, 1, PW_MAX_QP_WR, &v))
				goto bad_value;
			o->rx_depth = (unsigned int)v;
			break;
		case 'e':
			o->use_event = true;
			break;
		case 't':
			if (!parse_num(optarg, 0, INT_MAX / 1000, &v))
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

static void lib_error(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s%s%s\n", PROG, what, strerror(err),
		*pw_last_error() ? " - " : "", pw_last_error());
}

/*
 * Byte @i of message @n sent by the client (@side 0) or the server
 * (@side 1): a different pattern for every message and direction.
 */
static inline uint8_t pattern(unsigned int n, int side, size_t i)
{
	return (uint8_t)(n * 7u + (unsigned int)side * 0x80u + i + (i >> 8) * 3u);
}

static void fill(uint8_t *p, size_t len, unsigned int n, int side)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(n, side, i);
}

static bool verify(const uint8_t *p, size_t len, unsigned int n, int side)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != pattern(n, side, i)) {
			fprintf(stderr, "%s: message %u: byte %zu is 0x%02x, expected 0x%02x\n",
				PROG, n, i, p[i], pattern(n, side, i));
			return false;
		}
	}
	return true;
}

static int post_recv(struct pingpong *pp, size_t size, unsigned int n)
{
	struct pw_sge sge = {
		.addr = (uintptr_t)(pp->buf + size),
		.length = (uint32_t)size,
		.lkey = pp->mr->lkey,
	};
	struct pw_recv_wr wr = { .wr_id = RECV_WRID, .sg_list = &sge,
				 .num_sge = 1 };
	unsigned int i;

	/*
	 * All receives use the same buffer, as in ibv_rc_pingpong: in a
	 * ping-pong, one message at a time is in flight towards each side.
	 */
	for (i = 0; i < n; i++)
		if (pw_post_recv(pp->qp, &wr, NULL))
			break;
	return (int)i;
}

static int post_send(struct pingpong *pp, size_t size)
{
	struct pw_sge sge = {
		.addr = (uintptr_t)pp->buf,
		.length = (uint32_t)size,
		.lkey = pp->mr->lkey,
	};
	struct pw_send_wr wr = {
		.wr_id = SEND_WRID,
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = PW_WR_SEND,
		.send_flags = PW_SEND_SIGNALED,
	};

	return pw_post_send(pp->qp, &wr, NULL);
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf,
			    size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned int port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
	}
	snprintf(buf, len, "%s port %u", host, port);
	return buf;
}

static int setup(struct pingpong *pp, const struct options *o)
{
	pp->ctx = pw_open(NULL);
	if (!pp->ctx) {
		lib_error("pw_open", errno);
		return -1;
	}
	pp->pd = pw_alloc_pd(pp->ctx);
	if (!pp->pd) {
		lib_error("pw_alloc_pd", errno);
		return -1;
	}
	if (o->use_event) {
		pp->channel = pw_create_comp_channel(pp->ctx);
		if (!pp->channel) {
			lib_error("pw_create_comp_channel", errno);
			return -1;
		}
	}
	pp->cq = pw_create_cq(pp->ctx, (int)o->rx_depth + 1, NULL, pp->channel, 0);
	if (!pp->cq) {
		lib_error("pw_create_cq", errno);
		return -1;
	}
	/* One buffer: the message we send, then the one we receive. */
	pp->buf_len = 2 * o->size;
	pp->buf = mmap(NULL, pp->buf_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pp->buf == MAP_FAILED) {
		pp->buf = NULL;
		lib_error("mmap", errno);
		return -1;
	}
	/* On demand: nothing pinned, pages enter as they are first used. */
	pp->mr = pw_reg_mr(pp->pd, pp->buf, pp->buf_len,
			   PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	if (!pp->mr) {
		lib_error("pw_reg_mr", errno);
		return -1;
	}
	return 0;
}

static void teardown(struct pingpong *pp)
{
	if (pp->qp)
		pw_destroy_qp(pp->qp);
	if (pp->listener)
		pw_close_listener(pp->listener);
	if (pp->mr)
		pw_dereg_mr(pp->mr);
	if (pp->buf)
		munmap(pp->buf, pp->buf_len);
	if (pp->cq)
		pw_destroy_cq(pp->cq);
	if (pp->channel)
		pw_destroy_comp_channel(pp->channel);
	if (pp->pd)
		pw_dealloc_pd(pp->pd);
	if (pp->ctx)
		pw_close(pp->ctx);
}

/* Connect (client) or accept one connection (server). */
static int connect_qp(struct pingpong *pp, const struct options *o)
{
	struct conn_info mine = { .magic = CONN_MAGIC, .size = (uint32_t)o->size,
				  .iters = o->iters };
	struct conn_info peer;
	struct pw_qp_init_attr attr = {
		.send_cq = pp->cq,
		.recv_cq = pp->cq,
		.cap = { .max_send_wr = 1, .max_recv_wr = o->rx_depth,
			 .max_send_sge = 1, .max_recv_sge = 1 },
	};
	struct pw_conn_param param = {
		.private_data = &mine,
		.private_data_len = sizeof(mine),
		.timeout_ms = o->timeout_ms,
	};
	struct pw_qp_attr qa;
	char local[80], remote[80], what[300];

	if (o->host) {
		pp->qp = pw_connect(pp->pd, &attr, o->host, (uint16_t)o->port, &param);
		if (!pp->qp) {
			snprintf(what, sizeof(what), "cannot connect to %s port %u",
				 o->host, o->port);
			lib_error(what, errno);
			return -1;
		}
	} else {
		pp->listener = pw_listen(pp->ctx, NULL, (uint16_t)o->port);
		if (!pp->listener) {
			snprintf(what, sizeof(what), "cannot listen on port %u", o->port);
			lib_error(what, errno);
			return -1;
		}
		if (o->port == 0) {
			/* For scripts: the port we got, first, at once. */
			printf("port %u\n", pw_listener_port(pp->listener));
			fflush(stdout);
		}
		pp->qp = pw_accept(pp->listener, pp->pd, &attr, &param);
		if (!pp->qp) {
			lib_error(errno == ETIMEDOUT ? "no client connected" :
				  "pw_accept", errno);
			return -1;
		}
		/* One client, as ibv_rc_pingpong. */
		pw_close_listener(pp->listener);
		pp->listener = NULL;
	}

	if (pp->qp->peer_private_data_len != sizeof(peer)) {
		fprintf(stderr, "%s: the peer is not an %s\n", PROG, PROG);
		return -1;
	}
	memcpy(&peer, pp->qp->peer_private_data, sizeof(peer));
	if (peer.magic != CONN_MAGIC) {
		fprintf(stderr, "%s: the peer is not an %s\n", PROG, PROG);
		return -1;
	}
	if (peer.size != mine.size || peer.iters != mine.iters) {
		fprintf(stderr, "%s: the peer runs with -s %u -n %u, we with -s %u -n %u\n",
			PROG, peer.size, peer.iters, mine.size, mine.iters);
		return -1;
	}
	if (pw_query_qp(pp->qp, &qa, sizeof(qa)) == 0) {
		printf("  local address:  QPN 0x%06x, %s\n", qa.qp_num,
		       addr_str(&qa.local_addr, local, sizeof(local)));
		printf("  remote address: QPN 0x%06x, %s\n", qa.dest_qp_num,
		       addr_str(&qa.peer_addr, remote, sizeof(remote)));
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Wait for completions and poll up to @max of them into @wc.
 *
 * With --events: sleep on the completion channel (the CQ was armed),
 * acknowledge the event, arm again, then poll, so that completions that
 * came before the arm are found as well. Without: poll, yielding the CPU
 * now and then (the machine may be shared), until @timeout_ms is over.
 *
 * Return: the number of completions (> 0), or a negative errno.
 */
static int wait_completions(struct pingpong *pp, const struct options *o,
			    struct pw_wc *wc, int max)
{
	uint64_t deadline = o->timeout_ms < 0 ? UINT64_MAX :
			    now_ns() + (uint64_t)o->timeout_ms * 1000000ull;
	int ne;

	if (o->use_event) {
		for (;;) {
			struct pw_cq *ev_cq;
			void *ev_ctx;
			int err;

			/* Anything already there? (armed before it came) */
			ne = pw_poll_cq(pp->cq, max, wc);
			if (ne)
				return ne;
			err = pw_get_cq_event(pp->channel, &ev_cq, &ev_ctx,
					      o->timeout_ms);
			if (err)
				return err == -EAGAIN ? -ETIMEDOUT : err;
			pw_ack_cq_events(ev_cq, 1);
			err = pw_req_notify_cq(ev_cq, 0);
			if (err)
				return err;
		}
	}
	for (unsigned int spins = 1;; spins++) {
		ne = pw_poll_cq(pp->cq, max, wc);
		if (ne)
			return ne;
		if (spins % 64 == 0)
			sched_yield();
		if (spins % 1024 == 0 && now_ns() > deadline)
			return -ETIMEDOUT;
	}
}

/*
 * Message @n arrived (@wc): check it, and post receives again when few
 * are left, as ibv_rc_pingpong does.
 */
static int on_recv(struct pingpong *pp, const struct options *o,
		   const struct pw_wc *wc, unsigned int n, int sender)
{
	if (wc->byte_len != o->size) {
		fprintf(stderr, "%s: message %u has %u bytes, expected %lu\n",
			PROG, n, wc->byte_len, o->size);
		return -1;
	}
	if (!verify(pp->buf + o->size, o->size, n, sender))
		return -1;
	if (--pp->routs <= 1) {
		pp->routs += (unsigned int)post_recv(pp, o->size,
						     o->rx_depth - pp->routs);
		if (pp->routs < o->rx_depth) {
			fprintf(stderr, "%s: could not post receives (%u posted)\n",
				PROG, pp->routs);
			return -1;
		}
	}
	return 0;
}

/* The ping-pong itself, as ibv_rc_pingpong's main loop. */
static int run(struct pingpong *pp, const struct options *o)
{
	const int me = o->host ? 0 : 1, peer = !me;
	unsigned int rcnt = 0, scnt = 0;
	unsigned int pending = RECV_WRID;
	struct timeval start, end;
	int err;

	pp->routs = (unsigned int)post_recv(pp, o->size, o->rx_depth);
	if (pp->routs < o->rx_depth) {
		fprintf(stderr, "%s: could not post %u receives, only %u\n",
			PROG, o->rx_depth, pp->routs);
		return -1;
	}
	if (o->use_event && (err = pw_req_notify_cq(pp->cq, 0))) {
		lib_error("pw_req_notify_cq", -err);
		return -1;
	}

	gettimeofday(&start, NULL);
	if (o->host) {
		/* The client serves first; the server only answers. */
		fill(pp->buf, o->size, scnt, me);
		if ((err = post_send(pp, o->size))) {
			lib_error("pw_post_send", -err);
			return -1;
		}
		pending |= SEND_WRID;
	}

	while (rcnt < o->iters || scnt < o->iters) {
		struct pw_wc wc[2];
		int ne = wait_completions(pp, o, wc, 2);

		if (ne < 0) {
			if (ne == -ETIMEDOUT)
				fprintf(stderr, "%s: no completion within %d s "
					"(%u sent, %u received)\n", PROG,
					o->timeout_ms / 1000, scnt, rcnt);
			else
				lib_error("waiting for completions", -ne);
			return -1;
		}
		for (int i = 0; i < ne; i++) {
			/*
			 * Once every message is in, the receives still posted
			 * are flushed when the peer, done too, disconnects.
			 */
			if (wc[i].status == PW_WC_WR_FLUSH_ERR &&
			    wc[i].wr_id == RECV_WRID && rcnt == o->iters)
				continue;
			if (wc[i].status != PW_WC_SUCCESS) {
				struct pw_qp_attr qa;

				fprintf(stderr, "Failed status %s (%d) for wr_id %d\n",
					pw_wc_status_str(wc[i].status),
					wc[i].status, (int)wc[i].wr_id);
				/* Why the QP is in error, as pagewire saw it. */
				if (pw_query_qp(pp->qp, &qa, sizeof(qa)) == 0 &&
				    qa.cause != PW_QP_CAUSE_NONE)
					fprintf(stderr, "%s: the QP is in error: %s\n",
						PROG, pw_qp_cause_str(qa.cause));
				return -1;
			}
			switch ((int)wc[i].wr_id) {
			case SEND_WRID:
				++scnt;
				break;
			case RECV_WRID:
				if (on_recv(pp, o, &wc[i], rcnt, peer))
					return -1;
				++rcnt;
				break;
			default:
				fprintf(stderr, "Completion for unknown wr_id %d\n",
					(int)wc[i].wr_id);
				return -1;
			}
			pending &= ~(unsigned int)wc[i].wr_id;
			/* Our turn: the peer's message arrived, ours left. */
			if (scnt < o->iters && !pending) {
				fill(pp->buf, o->size, scnt, me);
				if ((err = post_send(pp, o->size))) {
					lib_error("pw_post_send", -err);
					return -1;
				}
				pending = RECV_WRID | SEND_WRID;
			}
		}
	}
	gettimeofday(&end, NULL);

	{
		double usec = (end.tv_sec - start.tv_sec) * 1000000.0 +
			      (end.tv_usec - start.tv_usec);
		long long bytes = (long long)o->size * o->iters * 2;

		printf("%lld bytes in %.2f seconds = %.2f Mbit/sec\n",
		       bytes, usec / 1000000., bytes * 8. / usec);
		printf("%u iters in %.2f seconds = %.2f usec/iter\n",
		       o->iters, usec / 1000000., usec / o->iters);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	struct pingpong pp = { 0 };
	int ret = 1;

	parse_args(argc, argv, &o);
	if (setup(&pp, &o) == 0 && connect_qp(&pp, &o) == 0 && run(&pp, &o) == 0)
		ret = 0;
	teardown(&pp);
	return ret;
}
