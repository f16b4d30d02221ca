/* SPDX-License-Identifier: MIT */
/* FI_MSG: sends (SEND, SEND_WITH_IMM, inline for fi_inject) and receives. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pwf.h"

ssize_t pwf_post_send(struct pwf_ep *ep, struct pw_send_wr *wr)
{
	struct pw_send_wr *bad;
	ssize_t err = 0;
	struct pw_qp *qp = pwf_ep_qp(ep, &err);
	int ret;

	if (!qp)
		return err;
	ret = pw_post_send(qp, wr, &bad);
	if (!ret)
		return 0;
	/* a full send queue is libfabric's "try again after progress" */
	if (ret == -ENOMEM)
		return -FI_EAGAIN;
	PWF_WARN(FI_LOG_EP_DATA, "pw_post_send: %s\n", pw_last_error());
	return pwf_errno(ret);
}

int pwf_fill_sges(struct pwf_ep *ep, struct pw_sge *sge, const struct iovec *iov,
		  void **desc, size_t count, bool inline_data, size_t *total)
{
	size_t sum = 0;

	for (size_t i = 0; i < count; i++) {
		uint32_t lkey = 0;	/* inline: copied at post time, no key */
		int ret;

		if (iov[i].iov_len > UINT32_MAX)
			return -FI_EMSGSIZE;
		if (!inline_data) {
			ret = pwf_desc_lkey(ep, desc ? desc[i] : NULL, &lkey);
			if (ret)
				return ret;
		}
		sge[i].addr = (uintptr_t)iov[i].iov_base;
		sge[i].length = (uint32_t)iov[i].iov_len;
		sge[i].lkey = lkey;
		sum += iov[i].iov_len;
	}
	if (sum > PW_MAX_MSG_SIZE)
		return -FI_EMSGSIZE;
	if (inline_data && sum > ep->inject_size)
		return -FI_EINVAL;
	*total = sum;
	return 0;
}

static ssize_t do_recv(struct pwf_ep *ep, const struct iovec *iov, void **desc,
		       size_t count, void *context, uint64_t flags)
{
	struct pw_sge sge[PW_MAX_SGE];
	struct pw_recv_wr wr = { 0 }, *bad;
	struct pwf_op *op;
	struct pw_qp *qp;
	size_t total;
	int ret;

	if (count > ep->info->rx_attr->iov_limit || (count && !iov))
		return -FI_EINVAL;
	if (flags & FI_MULTI_RECV)
		return -FI_EOPNOTSUPP;
	ret = pwf_fill_sges(ep, sge, iov, desc, count, false, &total);
	if (ret)
		return ret;
	op = pwf_op_new(ep, context, FI_RECV | FI_MSG, total,
			!ep->rcq_selective || (flags & FI_COMPLETION), PWF_CNTR_RECV);
	if (!op)
		return -FI_EAGAIN;
	op->buf = count ? iov[0].iov_base : NULL;
	wr.wr_id = (uintptr_t)op;
	wr.sg_list = sge;
	wr.num_sge = (int)count;
	pthread_mutex_lock(&ep->lock);
	qp = atomic_load_explicit(&ep->qp, memory_order_acquire);
	if (!qp) {
		/* before fi_connect/fi_accept: posted when the QP exists */
		struct pwf_pending_recv *p = calloc(1, sizeof(*p));

		if (!p) {
			pthread_mutex_unlock(&ep->lock);
			pwf_op_put(op);
			return -FI_ENOMEM;
		}
		p->wr = wr;
		memcpy(p->sge, sge, count * sizeof(*sge));
		if (ep->pend_tail)
			ep->pend_tail->next = p;
		else
			ep->pend_head = p;
		ep->pend_tail = p;
		pthread_mutex_unlock(&ep->lock);
		return 0;
	}
	pthread_mutex_unlock(&ep->lock);
	ret = pw_post_recv(qp, &wr, &bad);
	if (ret) {
		pwf_op_put(op);
		return ret == -ENOMEM ? -FI_EAGAIN : pwf_errno(ret);
	}
	return 0;
}

static ssize_t do_send(struct pwf_ep *ep, const struct iovec *iov, void **desc,
		       size_t count, void *context, uint64_t flags, uint64_t data)
{
	struct pw_sge sge[PW_MAX_SGE];
	struct pw_send_wr wr = { 0 };
	struct pwf_op *op;
	size_t total = 0;
	ssize_t ret;

	if (count > ep->info->tx_attr->iov_limit || (count && !iov))
		return -FI_EINVAL;
	ret = pwf_fill_sges(ep, sge, iov, desc, count, flags & FI_INJECT, &total);
	if (ret)
		return ret;
	op = pwf_tx_op(ep, context, FI_SEND | FI_MSG, total,
		       pwf_tx_report(ep, flags), PWF_CNTR_SEND, &wr.send_flags);
	if (!op)
		return -FI_EAGAIN;
	if (flags & FI_INJECT)
		wr.send_flags |= PW_SEND_INLINE;
	wr.wr_id = (uintptr_t)op;
	wr.sg_list = sge;
	wr.num_sge = (int)count;
	if (flags & FI_REMOTE_CQ_DATA) {
		wr.opcode = PW_WR_SEND_WITH_IMM;
		wr.imm_data = (uint32_t)data;
	} else {
		wr.opcode = PW_WR_SEND;
	}
	if (flags & FI_FENCE)
		wr.send_flags |= PW_SEND_FENCE;
	ret = pwf_post_send(ep, &wr);
	if (ret)
		pwf_op_put(op);
	return ret;
}

static ssize_t msg_recv(struct fid_ep *ep_fid, void *buf, size_t len, void *desc,
			fi_addr_t src, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct iovec iov = { buf, len };

	return do_recv(ep, &iov, &desc, 1, context, ep->rx_op_flags);
}

static ssize_t msg_recvv(struct fid_ep *ep_fid, const struct iovec *iov, void **desc,
			 size_t count, fi_addr_t src, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);

	return do_recv(ep, iov, desc, count, context, ep->rx_op_flags);
}

static ssize_t msg_recvmsg(struct fid_ep *ep_fid, const struct fi_msg *msg,
			   uint64_t flags)
{
	return do_recv(to_pwf_ep(ep_fid), msg->msg_iov, msg->desc, msg->iov_count,
		       msg->context, flags);
}

static ssize_t msg_send(struct fid_ep *ep_fid, const void *buf, size_t len,
			void *desc, fi_addr_t dest, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct iovec iov = { (void *)buf, len };

	return do_send(ep, &iov, &desc, 1, context, ep->tx_op_flags, 0);
}

static ssize_t msg_sendv(struct fid_ep *ep_fid, const struct iovec *iov, void **desc,
			 size_t count, fi_addr_t dest, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);

	return do_send(ep, iov, desc, count, context, ep->tx_op_flags, 0);
}

static ssize_t msg_sendmsg(struct fid_ep *ep_fid, const struct fi_msg *msg,
			   uint64_t flags)
{
	return do_send(to_pwf_ep(ep_fid), msg->msg_iov, msg->desc, msg->iov_count,
		       msg->context, flags, msg->data);
}

static ssize_t msg_inject(struct fid_ep *ep_fid, const void *buf, size_t len,
			  fi_addr_t dest)
{
	struct iovec iov = { (void *)buf, len };

	return do_send(to_pwf_ep(ep_fid), &iov, NULL, 1, NULL, FI_INJECT, 0);
}

static ssize_t msg_senddata(struct fid_ep *ep_fid, const void *buf, size_t len,
			    void *desc, uint64_t data, fi_addr_t dest, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct iovec iov = { (void *)buf, len };

	return do_send(ep, &iov, &desc, 1, context,
		       ep->tx_op_flags | FI_REMOTE_CQ_DATA, data);
}

static ssize_t msg_injectdata(struct fid_ep *ep_fid, const void *buf, size_t len,
			      uint64_t data, fi_addr_t dest)
{
	struct iovec iov = { (void *)buf, len };

	return do_send(to_pwf_ep(ep_fid), &iov, NULL, 1, NULL,
		       FI_INJECT | FI_REMOTE_CQ_DATA, data);
}

struct fi_ops_msg pwf_msg_ops = {
	.size = sizeof(struct fi_ops_msg),
	.recv = msg_recv,
	.recvv = msg_recvv,
	.recvmsg = msg_recvmsg,
	.send = msg_send,
	.sendv = msg_sendv,
	.sendmsg = msg_sendmsg,
	.inject = msg_inject,
	.senddata = msg_senddata,
	.injectdata = msg_injectdata,
};
