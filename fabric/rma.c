/* SPDX-License-Identifier: MIT */
/*
 * FI_RMA: RDMA READ and WRITE, WRITE_WITH_IMM for fi_writedata (it
 * consumes a posted receive at the target: the endpoint needs
 * FI_RX_CQ_DATA), inline WRITEs for fi_inject_write.
 */
#include "pwf.h"

static ssize_t do_rma(struct pwf_ep *ep, bool is_read, const struct iovec *iov,
		      void **desc, size_t count, uint64_t addr, uint64_t key,
		      void *context, uint64_t flags, uint64_t data)
{
	struct pw_sge sge[PW_MAX_SGE];
	struct pw_send_wr wr = { 0 };
	struct pwf_op *op;
	size_t total = 0;
	ssize_t ret;

	if (count > ep->info->tx_attr->iov_limit || (count && !iov))
		return -FI_EINVAL;
	if (key > UINT32_MAX)
		return -FI_EKEYREJECTED;
	if ((flags & FI_REMOTE_CQ_DATA) && !ep->rx_cq_data) {
		PWF_WARN(FI_LOG_EP_DATA, "fi_writedata needs FI_RX_CQ_DATA: the "
			 "remote data consumes a receive posted at the target\n");
		return -FI_EOPNOTSUPP;
	}
	if ((flags & FI_INJECT) && is_read)
		return -FI_EINVAL;
	ret = pwf_fill_sges(ep, sge, iov, desc, count, flags & FI_INJECT, &total);
	if (ret)
		return ret;
	op = pwf_tx_op(ep, context, FI_RMA | (is_read ? FI_READ : FI_WRITE), total,
		       pwf_tx_report(ep, flags),
		       is_read ? PWF_CNTR_READ : PWF_CNTR_WRITE, &wr.send_flags);
	if (!op)
		return -FI_EAGAIN;
	wr.wr_id = (uintptr_t)op;
	wr.sg_list = sge;
	wr.num_sge = (int)count;
	if (flags & FI_INJECT)
		wr.send_flags |= PW_SEND_INLINE;
	if (flags & FI_FENCE)
		wr.send_flags |= PW_SEND_FENCE;
	if (is_read) {
		wr.opcode = PW_WR_RDMA_READ;
	} else if (flags & FI_REMOTE_CQ_DATA) {
		wr.opcode = PW_WR_RDMA_WRITE_WITH_IMM;
		wr.imm_data = (uint32_t)data;
	} else {
		wr.opcode = PW_WR_RDMA_WRITE;
	}
	wr.wr.rdma.remote_addr = addr;
	wr.wr.rdma.rkey = (uint32_t)key;
	ret = pwf_post_send(ep, &wr);
	if (ret)
		pwf_op_put(op);
	return ret;
}

static ssize_t rma_read(struct fid_ep *ep_fid, void *buf, size_t len, void *desc,
			fi_addr_t src, uint64_t addr, uint64_t key, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct iovec iov = { buf, len };

	return do_rma(ep, true, &iov, &desc, 1, addr, key, context, ep->tx_op_flags, 0);
}

static ssize_t rma_readv(struct fid_ep *ep_fid, const struct iovec *iov, void **desc,
			 size_t count, fi_addr_t src, uint64_t addr, uint64_t key,
			 void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);

	return do_rma(ep, true, iov, desc, count, addr, key, context, ep->tx_op_flags, 0);
}

static ssize_t rma_readmsg(struct fid_ep *ep_fid, const struct fi_msg_rma *msg,
			   uint64_t flags)
{
	if (msg->rma_iov_count != 1)
		return -FI_EINVAL;	/* rma_iov_limit is 1 */
	return do_rma(to_pwf_ep(ep_fid), true, msg->msg_iov, msg->desc,
		      msg->iov_count, msg->rma_iov[0].addr, msg->rma_iov[0].key,
		      msg->context, flags, 0);
}

static ssize_t rma_write(struct fid_ep *ep_fid, const void *buf, size_t len,
			 void *desc, fi_addr_t dest, uint64_t addr, uint64_t key,
			 void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct iovec iov = { (void *)buf, len };

	return do_rma(ep, false, &iov, &desc, 1, addr, key, context, ep->tx_op_flags, 0);
}

static ssize_t rma_writev(struct fid_ep *ep_fid, const struct iovec *iov, void **desc,
			  size_t count, fi_addr_t dest, uint64_t addr, uint64_t key,
			  void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);

	return do_rma(ep, false, iov, desc, count, addr, key, context, ep->tx_op_flags, 0);
}

static ssize_t rma_writemsg(struct fid_ep *ep_fid, const struct fi_msg_rma *msg,
			    uint64_t flags)
{
	if (msg->rma_iov_count != 1)
		return -FI_EINVAL;
	return do_rma(to_pwf_ep(ep_fid), false, msg->msg_iov, msg->desc,
		      msg->iov_count, msg->rma_iov[0].addr, msg->rma_iov[0].key,
		      msg->context, flags, msg->data);
}

static ssize_t rma_inject(struct fid_ep *ep_fid, const void *buf, size_t len,
			  fi_addr_t dest, uint64_t addr, uint64_t key)
{
	struct iovec iov = { (void *)buf, len };

	return do_rma(to_pwf_ep(ep_fid), false, &iov, NULL, 1, addr, key, NULL,
		      FI_INJECT, 0);
}

static ssize_t rma_writedata(struct fid_ep *ep_fid, const void *buf, size_t len,
			     void *desc, uint64_t data, fi_addr_t dest, uint64_t addr,
			     uint64_t key, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct iovec iov = { (void *)buf, len };

	return do_rma(ep, false, &iov, &desc, 1, addr, key, context,
		      ep->tx_op_flags | FI_REMOTE_CQ_DATA, data);
}

static ssize_t rma_injectdata(struct fid_ep *ep_fid, const void *buf, size_t len,
			      uint64_t data, fi_addr_t dest, uint64_t addr, uint64_t key)
{
	struct iovec iov = { (void *)buf, len };

	return do_rma(to_pwf_ep(ep_fid), false, &iov, NULL, 1, addr, key, NULL,
		      FI_INJECT | FI_REMOTE_CQ_DATA, data);
}

struct fi_ops_rma pwf_rma_ops = {
	.size = sizeof(struct fi_ops_rma),
	.read = rma_read,
	.readv = rma_readv,
	.readmsg = rma_readmsg,
	.write = rma_write,
	.writev = rma_writev,
	.writemsg = rma_writemsg,
	.inject = rma_inject,
	.writedata = rma_writedata,
	.injectdata = rma_injectdata,
};
