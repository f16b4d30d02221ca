/* SPDX-License-Identifier: MIT */
/*
 * The connection manager's server side fed arbitrary bytes: what
 * pw_accept does with one incoming connection, the handshake (CONNECT_REQ
 * parsing, version negotiation, CONNECT_REJ), the reply and, when the
 * input is a valid request, the QP going live with the peer's parameters
 * (features, READ/ATOMIC credit, private data). The input is the whole
 * client side of the stream, then EOF: the handshake never waits for more.
 * A live QP must then reach the error state at EOF and be destroyed.
 *
 * Built as a libFuzzer target with clang (PW_FUZZ), or with gcc over
 * replay_inputs.c, which `make check` runs over corpus/cm.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/qp.h"
#include "replay_inputs.h"

static struct {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_cq *cq;
	unsigned long live, refused;
} fc;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_cm: %s: %s (%s)\n", what, strerror(errno),
		pw_last_error());
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pw_qp_init_attr attr = { 0 };
	uint8_t sink[4096];
	struct pw_qp *qp;
	uint64_t deadline;
	int sv[2];

	if (!fc.ctx) {
		signal(SIGPIPE, SIG_IGN);
		fc.ctx = pw_open(NULL);
		fc.pd = fc.ctx ? pw_alloc_pd(fc.ctx) : NULL;
		fc.cq = fc.pd ? pw_create_cq(fc.ctx, 256, NULL, NULL, 0) : NULL;
		if (!fc.cq)
			die("context");
	}
	/* the whole request fits in a socket buffer: no writer loop needed */
	if (size > 16384)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		die("socketpair");
	if (size && write(sv[1], data, size) != (ssize_t)size)
		die("write");
	shutdown(sv[1], SHUT_WR);
	attr.send_cq = attr.recv_cq = fc.cq;
	qp = pw_cm_accept_fd(fc.pd, &attr, sv[0], 2000);
	if (!qp) {
		fc.refused++;
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	fc.live++;
	/* the client is gone after its request: the QP must notice */
	deadline = pw_now_ns() + 10000000000ull;
	close(sv[1]);
	while (pw_qp_get_state(to_qp(qp)) != PW_QPS_ERR) {
		if (pw_now_ns() > deadline) {
			fprintf(stderr, "fuzz_cm: a live QP never saw its peer go\n");
			abort();
		}
		poll(NULL, 0, 1);
	}
	(void)sink;
	if (pw_destroy_qp(qp))
		die("pw_destroy_qp");
	return 0;
}

#ifndef PW_LIBFUZZER
/* gcc replay: the corpus must reach both outcomes, live and refused. */
int fuzz_after_replay(void)
{
	printf("fuzz_cm: %lu handshakes went live, %lu were refused\n",
	       fc.live, fc.refused);
	return fc.live && fc.refused ? 0 : 1;
}
#endif
