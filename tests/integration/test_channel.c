/* SPDX-License-Identifier: MIT */
/*
 * Completion channels: pw_req_notify_cq arms one event, pw_get_cq_event
 * returns it with the CQ and its context, the channel fd works in epoll,
 * solicited-only arming ignores unsolicited receives.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "pwtest.h"

/*
 * A pair whose initiator send CQ and target receive CQ report to
 * channels; the pair's own CQs are replaced before connecting.
 */
struct chpair {
	struct pwt_pair p;
	struct pw_comp_channel *ach, *bch;
	int actx, bctx;		/* addresses serve as cq_context */
};

static void side_with_channel(struct pwt_side *s, struct pw_comp_channel **ch,
			      void *cq_context, bool send_side)
{
	struct pw_cq **cq = send_side ? &s->scq : &s->rcq;

	*ch = pw_create_comp_channel(s->ctx);
	PWT_NONNULL(*ch);
	PWT_ASSERT((*ch)->fd >= 0);
	PWT_OK(pw_destroy_cq(*cq));
	*cq = pw_create_cq(s->ctx, 64, cq_context, *ch, 0);
	PWT_NONNULL(*cq);
	PWT_ASSERT((*cq)->channel == *ch);
	PWT_ASSERT((*cq)->cq_context == cq_context);
}

static void chpair_open(struct chpair *c)
{
	struct pw_qp_init_attr aa, ba;
	struct pwt_pair *p = &c->p;

	memset(c, 0, sizeof(*c));
	pwt_side_open(&p->a);
	pwt_side_open(&p->b);
	side_with_channel(&p->a, &c->ach, &c->actx, true);
	side_with_channel(&p->b, &c->bch, &c->bctx, false);
	p->l = pw_listen(p->b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(p->l);
	p->port = pw_listener_port(p->l);
	memset(&aa, 0, sizeof(aa));
	memset(&ba, 0, sizeof(ba));
	pwt_connect_qp(&p->a, &p->b, p->l, &aa, &ba, &p->a.qp, &p->b.qp);
}

static void chpair_close(struct chpair *c)
{
	struct pwt_pair *p = &c->p;

	PWT_OK(pw_destroy_qp(p->a.qp));
	PWT_OK(pw_destroy_qp(p->b.qp));
	p->a.qp = p->b.qp = NULL;
	PWT_OK(pw_destroy_cq(p->a.scq));
	PWT_OK(pw_destroy_cq(p->b.rcq));
	p->a.scq = p->b.rcq = NULL;
	PWT_OK(pw_destroy_comp_channel(c->ach));
	PWT_OK(pw_destroy_comp_channel(c->bch));
	pwt_pair_close(p);
}

static void expect_event(struct pw_comp_channel *ch, struct pw_cq *want_cq,
			 void *want_ctx, int timeout_ms)
{
	struct pw_cq *cq = NULL;
	void *ctx = NULL;
	int rc = pw_get_cq_event(ch, &cq, &ctx, timeout_ms);

	PWT_ASSERTF(rc == 0, "pw_get_cq_event: %d (%s)", rc, pwt_strerr(rc));
	PWT_ASSERT(cq == want_cq);
	PWT_ASSERT(ctx == want_ctx);
	pw_ack_cq_events(cq, 1);
}

static void expect_no_event(struct pw_comp_channel *ch, int timeout_ms)
{
	struct pw_cq *cq = NULL;
	void *ctx = NULL;
	int rc = pw_get_cq_event(ch, &cq, &ctx, timeout_ms);

	PWT_ASSERTF(rc == -EAGAIN, "pw_get_cq_event: %d, want -EAGAIN", rc);
}

static void t_notify(const char *arg)
{
	struct chpair c;
	struct pwt_img src, dst;
	struct pwt_pair *p = &c.p;

	(void)arg;
	chpair_open(&c);
	pwt_img_alloc_src(&src, &p->a, 4096, PWT_PINNED, 1);
	pwt_img_alloc(&dst, &p->b, 4096, PWT_PINNED, 2);

	PWT_OK(pw_req_notify_cq(p->a.scq, 0));
	expect_no_event(c.ach, 0);
	expect_no_event(c.ach, 100);
	PWT_OK(pwt_post_rdma(p->a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr, 100,
			     src.buf.lkey, pwt_va(dst.buf.addr), dst.buf.rkey,
			     PW_SEND_SIGNALED));
	expect_event(c.ach, p->a.scq, &c.actx, PWT_TIMEOUT_MS);
	PWT_EXPECT_OK(p->a.scq, 1, PW_WC_RDMA_WRITE, 100, p->a.qp->qp_num);

	/* Not re-armed: a completion queues no event. */
	PWT_OK(pwt_post_rdma(p->a.qp, PW_WR_RDMA_WRITE, 2, src.buf.addr + 100, 100,
			     src.buf.lkey, pwt_va(dst.buf.addr + 100), dst.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p->a.scq, 2, PW_WC_RDMA_WRITE, 100, p->a.qp->qp_num);
	expect_no_event(c.ach, 100);

	/* Re-armed, the next one wakes a waiter blocked forever (-1). */
	PWT_OK(pw_req_notify_cq(p->a.scq, 0));
	PWT_NO_WC(p->a.scq, 0);
	PWT_OK(pwt_post_rdma(p->a.qp, PW_WR_RDMA_WRITE, 3, src.buf.addr + 200, 100,
			     src.buf.lkey, pwt_va(dst.buf.addr + 200), dst.buf.rkey,
			     PW_SEND_SIGNALED));
	expect_event(c.ach, p->a.scq, &c.actx, -1);
	PWT_EXPECT_OK(p->a.scq, 3, PW_WC_RDMA_WRITE, 100, p->a.qp->qp_num);

	memcpy(dst.want, src.want, 300);
	PWT_IMG_CHECK(&dst);
	pwt_img_free(&src);
	pwt_img_free(&dst);
	chpair_close(&c);
}

/* The channel fd in epoll: readable on an event, quiet otherwise. */
static void t_epoll(const char *arg)
{
	struct chpair c;
	struct pwt_img src, rb;
	struct pwt_pair *p = &c.p;
	struct epoll_event ev = { .events = EPOLLIN }, out;
	int ep;

	(void)arg;
	chpair_open(&c);
	pwt_img_alloc_src(&src, &p->a, 4096, PWT_PINNED, 3);
	pwt_img_alloc(&rb, &p->b, 4096, PWT_PINNED, 4);
	ep = epoll_create1(EPOLL_CLOEXEC);
	PWT_ASSERT(ep >= 0);
	ev.data.ptr = c.bch;
	PWT_ASSERT(epoll_ctl(ep, EPOLL_CTL_ADD, c.bch->fd, &ev) == 0);

	PWT_OK(pw_req_notify_cq(p->b.rcq, 0));
	PWT_EQ(epoll_wait(ep, &out, 1, 100), 0);
	PWT_OK(pwt_post_recv1(p->b.qp, 7, rb.buf.addr, 4096, rb.buf.lkey));
	PWT_OK(pwt_post_send1(p->a.qp, PW_WR_SEND, 8, src.buf.addr, 500,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EQ(epoll_wait(ep, &out, 1, PWT_TIMEOUT_MS), 1);
	PWT_ASSERT(out.data.ptr == c.bch);
	PWT_ASSERT(out.events & EPOLLIN);
	expect_event(c.bch, p->b.rcq, &c.bctx, 0);
	/* The only event was consumed: quiet again. */
	PWT_EQ(epoll_wait(ep, &out, 1, 50), 0);
	PWT_EXPECT_RECV(p->b.rcq, 7, PW_WC_RECV, 500, false, 0, p->b.qp->qp_num);
	PWT_EXPECT_OK(p->a.scq, 8, PW_WC_SEND, 500, p->a.qp->qp_num);
	memcpy(rb.want, src.want, 500);
	PWT_IMG_CHECK(&rb);

	close(ep);
	pwt_img_free(&src);
	pwt_img_free(&rb);
	chpair_close(&c);
}

/* Armed solicited-only: an unsolicited receive does not wake, a SOLICITED one does. */
static void t_solicited(const char *arg)
{
	struct chpair c;
	struct pwt_img src, rb;
	struct pwt_pair *p = &c.p;

	(void)arg;
	chpair_open(&c);
	pwt_img_alloc_src(&src, &p->a, 4096, PWT_PINNED, 5);
	pwt_img_alloc(&rb, &p->b, 4096, PWT_PINNED, 6);
	PWT_OK(pwt_post_recv1(p->b.qp, 10, rb.buf.addr, 1000, rb.buf.lkey));
	PWT_OK(pwt_post_recv1(p->b.qp, 11, rb.buf.addr + 1000, 1000, rb.buf.lkey));
	PWT_OK(pw_req_notify_cq(p->b.rcq, 1));

	PWT_OK(pwt_post_send1(p->a.qp, PW_WR_SEND, 20, src.buf.addr, 100,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_RECV(p->b.rcq, 10, PW_WC_RECV, 100, false, 0, p->b.qp->qp_num);
	expect_no_event(c.bch, 100);

	PWT_OK(pwt_post_send1(p->a.qp, PW_WR_SEND_WITH_IMM, 21, src.buf.addr + 100,
			      100, src.buf.lkey, 5, PW_SEND_SIGNALED | PW_SEND_SOLICITED));
	expect_event(c.bch, p->b.rcq, &c.bctx, PWT_TIMEOUT_MS);
	PWT_EXPECT_RECV(p->b.rcq, 11, PW_WC_RECV, 100, true, 5, p->b.qp->qp_num);
	PWT_EXPECT_OK(p->a.scq, 20, PW_WC_SEND, 100, p->a.qp->qp_num);
	PWT_EXPECT_OK(p->a.scq, 21, PW_WC_SEND, 100, p->a.qp->qp_num);
	memcpy(rb.want, src.want, 100);
	memcpy(rb.want + 1000, src.want + 100, 100);
	PWT_IMG_CHECK(&rb);
	pwt_img_free(&src);
	pwt_img_free(&rb);
	chpair_close(&c);
}

/* Two CQs on one channel: the event names the CQ that completed. */
static void t_multi_cq(const char *arg)
{
	struct chpair c;
	struct pwt_img src, dst;
	struct pwt_pair *p = &c.p;
	struct pw_cq *cq2;
	struct pw_qp *qa2, *qb2;
	struct pw_qp_init_attr attr;
	int ctx2;

	(void)arg;
	chpair_open(&c);
	cq2 = pw_create_cq(p->a.ctx, 16, &ctx2, c.ach, 0);
	PWT_NONNULL(cq2);
	/* A second QP whose send CQ is cq2. */
	{
		struct pwt_side a2 = p->a;

		a2.scq = cq2;
		memset(&attr, 0, sizeof(attr));
		pwt_connect_qp(&a2, &p->b, p->l, &attr, NULL, &qa2, &qb2);
	}
	pwt_img_alloc_src(&src, &p->a, 4096, PWT_PINNED, 7);
	pwt_img_alloc(&dst, &p->b, 4096, PWT_PINNED, 8);
	PWT_OK(pw_req_notify_cq(p->a.scq, 0));
	PWT_OK(pw_req_notify_cq(cq2, 0));
	PWT_OK(pwt_post_rdma(qa2, PW_WR_RDMA_WRITE, 30, src.buf.addr, 64,
			     src.buf.lkey, pwt_va(dst.buf.addr), dst.buf.rkey,
			     PW_SEND_SIGNALED));
	expect_event(c.ach, cq2, &ctx2, PWT_TIMEOUT_MS);
	PWT_EXPECT_OK(cq2, 30, PW_WC_RDMA_WRITE, 64, qa2->qp_num);
	expect_no_event(c.ach, 50);
	PWT_OK(pwt_post_rdma(p->a.qp, PW_WR_RDMA_WRITE, 31, src.buf.addr + 64, 64,
			     src.buf.lkey, pwt_va(dst.buf.addr + 64), dst.buf.rkey,
			     PW_SEND_SIGNALED));
	expect_event(c.ach, p->a.scq, &c.actx, PWT_TIMEOUT_MS);
	PWT_EXPECT_OK(p->a.scq, 31, PW_WC_RDMA_WRITE, 64, p->a.qp->qp_num);
	memcpy(dst.want, src.want, 128);
	PWT_IMG_CHECK(&dst);

	PWT_OK(pw_destroy_qp(qa2));
	PWT_OK(pw_destroy_qp(qb2));
	PWT_OK(pw_destroy_cq(cq2));
	pwt_img_free(&src);
	pwt_img_free(&dst);
	chpair_close(&c);
}

static const struct pwt_case cases[] = {
	{ "notify", t_notify },
	{ "epoll", t_epoll },
	{ "solicited", t_solicited },
	{ "multi_cq", t_multi_cq },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
