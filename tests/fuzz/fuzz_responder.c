/* SPDX-License-Identifier: MIT */
/*
 * A whole in-process target fed arbitrary message streams.
 *
 * One context (a pinned and an ODP MR, receives posted) lives for the
 * whole run. Each input becomes the byte stream of a fresh QP's peer: a
 * socketpair, one end attached to the engine as a live QP (as if the
 * handshake had happened, NOTIFY and FAULT_NAK offered, peer PSN 0), the
 * other written by the harness, which also reads and discards whatever the
 * target answers. Then EOF, and the QP must reach the error state and be
 * destroyed cleanly. A crash, a sanitizer report, a hang (10 s) or a
 * write outside the MRs (guard pages around each fault at once) is a
 * finding.
 *
 * So that inputs can reach real memory, headers are patched on the way
 * (the fuzzer cannot guess keys): an rkey below 4 becomes the key of MR
 * (rkey & 1) (pinned, ODP), and a raddr below 2^20 is taken as an offset
 * into that MR. Everything else is the fuzzer's.
 *
 * Built as a libFuzzer target with clang (PW_FUZZ), or with gcc as a
 * replayer of the corpus plus deterministic mutations (main below), which
 * `make check` runs.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/qp.h"
#include "wire/wire.h"

#define FR_MR_LEN	(256 * 1024)
#define FR_GUARD	4096
#define FR_RECVS	16
#define FR_RECV_LEN	4096

#include "replay_inputs.h"

static struct {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_cq *cq;
	uint8_t *area[2];	/* guard | MR | guard */
	struct pw_mr *mr[2];
	uint8_t *rbuf;
	struct pw_mr *rmr;
} fr;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_responder: %s: %s (%s)\n", what, strerror(errno),
		pw_last_error());
	abort();
}

static void setup(void)
{
	unsigned int access = PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
			      PW_ACCESS_REMOTE_READ | PW_ACCESS_REMOTE_ATOMIC;

	signal(SIGPIPE, SIG_IGN);
	fr.ctx = pw_open(NULL);
	fr.pd = fr.ctx ? pw_alloc_pd(fr.ctx) : NULL;
	fr.cq = fr.pd ? pw_create_cq(fr.ctx, 4096, NULL, NULL, 0) : NULL;
	if (!fr.cq)
		die("context");
	for (int i = 0; i < 2; i++) {
		fr.area[i] = mmap(NULL, FR_MR_LEN + 2 * FR_GUARD, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (fr.area[i] == MAP_FAILED)
			die("mmap");
		/* guard pages on both sides: a stray write faults at once */
		mprotect(fr.area[i], FR_GUARD, PROT_NONE);
		mprotect(fr.area[i] + FR_GUARD + FR_MR_LEN, FR_GUARD, PROT_NONE);
		fr.mr[i] = pw_reg_mr(fr.pd, fr.area[i] + FR_GUARD, FR_MR_LEN,
				     access | (i ? PW_ACCESS_ON_DEMAND : 0));
		if (!fr.mr[i])
			die("pw_reg_mr");
	}
	fr.rbuf = mmap(NULL, FR_RECVS * FR_RECV_LEN, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fr.rmr = fr.rbuf != MAP_FAILED ?
		 pw_reg_mr(fr.pd, fr.rbuf, FR_RECVS * FR_RECV_LEN, PW_ACCESS_LOCAL_WRITE) :
		 NULL;
	if (!fr.rmr)
		die("receive buffers");
}

/* Patch keys and addresses of the headers of the stream (see above). */
static void patch(uint8_t *p, size_t len)
{
	size_t off = 0;

	while (len - off >= PW_WIRE_HDR_LEN && p[off] == PW_WIRE_MAGIC0 &&
	       p[off + 1] == PW_WIRE_MAGIC1) {
		uint8_t *h = p + off;
		uint32_t rkey = (uint32_t)h[12] | (uint32_t)h[13] << 8 |
				(uint32_t)h[14] << 16 | (uint32_t)h[15] << 24;
		uint64_t raddr = 0, plen;

		for (int i = 7; i >= 0; i--)
			raddr = raddr << 8 | h[16 + i];
		if (rkey < 4) {
			struct pw_mr *mr = fr.mr[rkey & 1];

			rkey = mr->rkey;
			for (int i = 0; i < 4; i++)
				h[12 + i] = (uint8_t)(rkey >> (8 * i));
			if (raddr < (1u << 20)) {
				raddr += (uint64_t)(uintptr_t)mr->addr;
				for (int i = 0; i < 8; i++)
					h[16 + i] = (uint8_t)(raddr >> (8 * i));
			}
		}
		plen = (uint64_t)h[24] | (uint64_t)h[25] << 8 | (uint64_t)h[26] << 16 |
		       (uint64_t)h[27] << 24;
		off += PW_WIRE_HDR_LEN;
		if (plen > len - off)
			break;
		off += plen;
	}
}

static void post_recvs(struct pw_qp *qp)
{
	for (int i = 0; i < FR_RECVS; i++) {
		struct pw_sge sge = { .addr = (uint64_t)(uintptr_t)(fr.rbuf + i * FR_RECV_LEN),
				      .length = FR_RECV_LEN, .lkey = fr.rmr->lkey };
		struct pw_recv_wr wr = { .wr_id = (uint64_t)i, .sg_list = &sge, .num_sge = 1 };

		(void)pw_post_recv(qp, &wr, NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pw_qp_init_attr attr = { .send_cq = NULL };
	uint8_t *buf, sink[65536];
	struct pw_wc wc[64];
	size_t sent = 0;
	struct pw_qp *qp;
	int sv[2];
	uint64_t deadline;

	if (!fr.ctx)
		setup();
	if (size > (1u << 20))
		return 0;
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	patch(buf, size);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		die("socketpair");
	attr.send_cq = attr.recv_cq = fr.cq;
	attr.cap.max_recv_wr = FR_RECVS;
	qp = pw_qp_attach_fd(fr.pd, &attr, sv[0], 0x100, 0,
			     PW_WIRE_FEAT_FAULT_NAK | PW_WIRE_FEAT_NOTIFY);
	if (!qp)
		die("pw_qp_attach_fd");
	post_recvs(qp);

	/* write everything, reading the answers meanwhile; then EOF */
	deadline = pw_now_ns() + 10000000000ull;
	while (sent < size) {
		struct pollfd pfd = { .fd = sv[1], .events = POLLIN | POLLOUT };
		ssize_t n;

		if (pw_now_ns() > deadline) {
			fprintf(stderr, "fuzz_responder: the target stopped reading\n");
			abort();
		}
		poll(&pfd, 1, 100);
		while (read(sv[1], sink, sizeof(sink)) > 0)
			;
		n = write(sv[1], buf + sent, size - sent);
		if (n > 0)
			sent += (size_t)n;
		else if (n < 0 && errno != EAGAIN)
			break;	/* the target closed: it found an error */
	}
	shutdown(sv[1], SHUT_WR);
	/* the target must end the QP: EOF is a dead peer (retry exceeded) */
	while (pw_qp_get_state(to_qp(qp)) != PW_QPS_ERR) {
		if (pw_now_ns() > deadline) {
			fprintf(stderr, "fuzz_responder: the QP never reached the error state\n");
			abort();
		}
		while (read(sv[1], sink, sizeof(sink)) > 0)
			;
		poll(NULL, 0, 1);
	}
	if (pw_destroy_qp(qp))
		die("pw_destroy_qp");
	while (pw_poll_cq(fr.cq, 64, wc) > 0)
		;
	close(sv[1]);
	free(buf);
	return 0;
}

#ifndef PW_LIBFUZZER
/*
 * gcc replay (replay_inputs.c): the harness must reach memory, or it
 * tests nothing: the corpus writes into both MRs (keys patched), so
 * neither can be all zero.
 */
int fuzz_after_replay(void)
{
	for (int i = 0; i < 2; i++) {
		size_t nz = 0;

		for (size_t k = 0; k < FR_MR_LEN; k++)
			nz += fr.area[i][FR_GUARD + k] != 0;
		printf("fuzz_responder: MR %d (%s): %zu bytes written\n", i,
		       i ? "ODP" : "pinned", nz);
		if (!nz) {
			fprintf(stderr, "fuzz_responder: nothing reached MR %d\n", i);
			return 1;
		}
	}
	return 0;
}
#endif
