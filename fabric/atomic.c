/* SPDX-License-Identifier: MIT */
/*
 * FI_ATOMIC on what pagewire executes: 8-byte FETCH_AND_ADD and
 * CMP_AND_SWP at an 8-byte aligned remote address (IBA's two atomics).
 * Offered: FI_SUM (plain and fetching), FI_ATOMIC_READ (a fetching add of
 * zero) and FI_CSWAP, on FI_INT64 and FI_UINT64, one element per op.
 * Atomicity is among pagewire's own atomics at the target, as IBV_ATOMIC_HCA.
 */
#include "pwf.h"

static bool type_ok(enum fi_datatype dt)
{
	return dt == FI_INT64 || dt == FI_UINT64;
}

int pwf_query_atomic(struct fid_domain *domain, enum fi_datatype datatype,
		     enum fi_op op, struct fi_atomic_attr *attr, uint64_t flags)
{
	bool ok;

	if (!type_ok(datatype))
		return -FI_EOPNOTSUPP;
	if (flags & FI_COMPARE_ATOMIC)
		ok = op == FI_CSWAP;
	else if (flags & FI_FETCH_ATOMIC)
		ok = op == FI_SUM || op == FI_ATOMIC_READ;
	else
		ok = op == FI_SUM;
	if (!ok)
		return -FI_EOPNOTSUPP;
	if (attr) {
		attr->size = 8;
		attr->count = 1;
	}
	return 0;
}

/*
 * One atomic WR. @operand: the add value or the swap value; @compare for
 * CSWAP; @result/@rdesc: where the remote's old value lands (NULL: the
 * op record's scratch word, for non-fetching ops).
 */
static ssize_t do_atomic(struct pwf_ep *ep, enum fi_op fop, enum fi_datatype dt,
			 size_t count, const void *operand, const void *compare,
			 void *result, void *rdesc, uint64_t addr, uint64_t key,
			 void *context, uint64_t flags, bool fetch)
{
	struct pw_send_wr wr = { 0 };
	struct pw_sge sge;
	struct pwf_op *op;
	uint32_t lkey;
	ssize_t ret;

	if (!type_ok(dt) || count != 1)
		return -FI_EOPNOTSUPP;
	if (key > UINT32_MAX)
		return -FI_EKEYREJECTED;
	if (addr & 7)
		return -FI_EINVAL;
	op = pwf_op_new(ep, context, FI_ATOMIC | (fetch ? FI_READ : FI_WRITE), 8,
			pwf_tx_report(ep, flags),
			fetch ? PWF_CNTR_READ : PWF_CNTR_WRITE);
	if (!op)
		return -FI_EAGAIN;
	if (result) {
		ret = pwf_desc_lkey(ep, rdesc, &lkey);
		sge.addr = (uintptr_t)result;
	} else {
		ret = pwf_domain_implicit_lkey(ep->dom, &lkey);
		sge.addr = (uintptr_t)&op->scratch;
	}
	if (ret) {
		pwf_op_put(op);
		return ret;
	}
	sge.length = 8;
	sge.lkey = lkey;
	wr.wr_id = (uintptr_t)op;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = PW_SEND_SIGNALED;
	if (flags & FI_FENCE)
		wr.send_flags |= PW_SEND_FENCE;
	wr.wr.atomic.remote_addr = addr;
	wr.wr.atomic.rkey = (uint32_t)key;
	switch (fop) {
	case FI_SUM:
		wr.opcode = PW_WR_ATOMIC_FETCH_AND_ADD;
		wr.wr.atomic.compare_add = *(const uint64_t *)operand;
		break;
	case FI_ATOMIC_READ:
		wr.opcode = PW_WR_ATOMIC_FETCH_AND_ADD;
		wr.wr.atomic.compare_add = 0;
		break;
	case FI_CSWAP:
		wr.opcode = PW_WR_ATOMIC_CMP_AND_SWP;
		wr.wr.atomic.compare_add = *(const uint64_t *)compare;
		wr.wr.atomic.swap = *(const uint64_t *)operand;
		break;
	default:
		pwf_op_put(op);
		return -FI_EOPNOTSUPP;
	}
	ret = pwf_post_send(ep, &wr);
	if (ret)
		pwf_op_put(op);
	return ret;
}

static ssize_t at_write(struct fid_ep *ep_fid, const void *buf, size_t count, void *desc,
			fi_addr_t dest, uint64_t addr, uint64_t key,
			enum fi_datatype dt, enum fi_op op, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);

	if (op != FI_SUM)
		return -FI_EOPNOTSUPP;
	return do_atomic(ep, op, dt, count, buf, NULL, NULL, NULL, addr, key,
			 context, ep->tx_op_flags, false);
}

static ssize_t at_writev(struct fid_ep *ep_fid, const struct fi_ioc *iov, void **desc,
			 size_t count, fi_addr_t dest, uint64_t addr, uint64_t key,
			 enum fi_datatype dt, enum fi_op op, void *context)
{
	if (count != 1)
		return -FI_EOPNOTSUPP;
	return at_write(ep_fid, iov[0].addr, iov[0].count, desc ? desc[0] : NULL,
			dest, addr, key, dt, op, context);
}

static ssize_t at_writemsg(struct fid_ep *ep_fid, const struct fi_msg_atomic *msg,
			   uint64_t flags)
{
	if (msg->iov_count != 1 || msg->rma_iov_count != 1 || msg->op != FI_SUM)
		return -FI_EOPNOTSUPP;
	return do_atomic(to_pwf_ep(ep_fid), msg->op, msg->datatype, msg->msg_iov[0].count,
			 msg->msg_iov[0].addr, NULL, NULL, NULL, msg->rma_iov[0].addr,
			 msg->rma_iov[0].key, msg->context, flags, false);
}

static ssize_t at_inject(struct fid_ep *ep_fid, const void *buf, size_t count,
			 fi_addr_t dest, uint64_t addr, uint64_t key,
			 enum fi_datatype dt, enum fi_op op)
{
	if (op != FI_SUM)
		return -FI_EOPNOTSUPP;
	return do_atomic(to_pwf_ep(ep_fid), op, dt, count, buf, NULL, NULL, NULL,
			 addr, key, NULL, FI_INJECT, false);
}

static ssize_t at_readwrite(struct fid_ep *ep_fid, const void *buf, size_t count,
			    void *desc, void *result, void *result_desc,
			    fi_addr_t dest, uint64_t addr, uint64_t key,
			    enum fi_datatype dt, enum fi_op op, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);

	if (op != FI_SUM && op != FI_ATOMIC_READ)
		return -FI_EOPNOTSUPP;
	if (!result)
		return -FI_EINVAL;
	return do_atomic(ep, op, dt, count, buf, NULL, result, result_desc, addr,
			 key, context, ep->tx_op_flags, true);
}

static ssize_t at_readwritev(struct fid_ep *ep_fid, const struct fi_ioc *iov,
			     void **desc, size_t count, struct fi_ioc *resultv,
			     void **result_desc, size_t result_count, fi_addr_t dest,
			     uint64_t addr, uint64_t key, enum fi_datatype dt,
			     enum fi_op op, void *context)
{
	if (count > 1 || result_count != 1)
		return -FI_EOPNOTSUPP;
	return at_readwrite(ep_fid, count ? iov[0].addr : NULL, resultv[0].count,
			    desc ? desc[0] : NULL, resultv[0].addr,
			    result_desc ? result_desc[0] : NULL, dest, addr, key,
			    dt, op, context);
}

static ssize_t at_readwritemsg(struct fid_ep *ep_fid, const struct fi_msg_atomic *msg,
			       struct fi_ioc *resultv, void **result_desc,
			       size_t result_count, uint64_t flags)
{
	if (msg->iov_count > 1 || msg->rma_iov_count != 1 || result_count != 1)
		return -FI_EOPNOTSUPP;
	if (msg->op != FI_SUM && msg->op != FI_ATOMIC_READ)
		return -FI_EOPNOTSUPP;
	return do_atomic(to_pwf_ep(ep_fid), msg->op, msg->datatype, resultv[0].count,
			 msg->iov_count ? msg->msg_iov[0].addr : NULL, NULL,
			 resultv[0].addr, result_desc ? result_desc[0] : NULL,
			 msg->rma_iov[0].addr, msg->rma_iov[0].key, msg->context,
			 flags, true);
}

static ssize_t at_compwrite(struct fid_ep *ep_fid, const void *buf, size_t count,
			    void *desc, const void *compare, void *compare_desc,
			    void *result, void *result_desc, fi_addr_t dest,
			    uint64_t addr, uint64_t key, enum fi_datatype dt,
			    enum fi_op op, void *context)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);

	if (op != FI_CSWAP)
		return -FI_EOPNOTSUPP;
	if (!result || !compare || !buf)
		return -FI_EINVAL;
	return do_atomic(ep, op, dt, count, buf, compare, result, result_desc, addr,
			 key, context, ep->tx_op_flags, true);
}

static ssize_t at_compwritev(struct fid_ep *ep_fid, const struct fi_ioc *iov,
			     void **desc, size_t count, const struct fi_ioc *comparev,
			     void **compare_desc, size_t compare_count,
			     struct fi_ioc *resultv, void **result_desc,
			     size_t result_count, fi_addr_t dest, uint64_t addr,
			     uint64_t key, enum fi_datatype dt, enum fi_op op,
			     void *context)
{
	if (count != 1 || compare_count != 1 || result_count != 1)
		return -FI_EOPNOTSUPP;
	return at_compwrite(ep_fid, iov[0].addr, iov[0].count, desc ? desc[0] : NULL,
			    comparev[0].addr, NULL, resultv[0].addr,
			    result_desc ? result_desc[0] : NULL, dest, addr, key,
			    dt, op, context);
}

static ssize_t at_compwritemsg(struct fid_ep *ep_fid, const struct fi_msg_atomic *msg,
			       const struct fi_ioc *comparev, void **compare_desc,
			       size_t compare_count, struct fi_ioc *resultv,
			       void **result_desc, size_t result_count, uint64_t flags)
{
	if (msg->iov_count != 1 || msg->rma_iov_count != 1 || compare_count != 1 ||
	    result_count != 1 || msg->op != FI_CSWAP)
		return -FI_EOPNOTSUPP;
	return do_atomic(to_pwf_ep(ep_fid), msg->op, msg->datatype, msg->msg_iov[0].count,
			 msg->msg_iov[0].addr, comparev[0].addr, resultv[0].addr,
			 result_desc ? result_desc[0] : NULL, msg->rma_iov[0].addr,
			 msg->rma_iov[0].key, msg->context, flags, true);
}

static int valid(enum fi_datatype dt, enum fi_op op, size_t *count, uint64_t flags)
{
	int ret = pwf_query_atomic(NULL, dt, op, NULL, flags);

	if (!ret && count)
		*count = 1;
	return ret;
}

static int at_writevalid(struct fid_ep *ep, enum fi_datatype dt, enum fi_op op,
			 size_t *count)
{
	return valid(dt, op, count, 0);
}

static int at_readwritevalid(struct fid_ep *ep, enum fi_datatype dt, enum fi_op op,
			     size_t *count)
{
	return valid(dt, op, count, FI_FETCH_ATOMIC);
}

static int at_compwritevalid(struct fid_ep *ep, enum fi_datatype dt, enum fi_op op,
			     size_t *count)
{
	return valid(dt, op, count, FI_COMPARE_ATOMIC);
}

struct fi_ops_atomic pwf_atomic_ops = {
	.size = sizeof(struct fi_ops_atomic),
	.write = at_write,
	.writev = at_writev,
	.writemsg = at_writemsg,
	.inject = at_inject,
	.readwrite = at_readwrite,
	.readwritev = at_readwritev,
	.readwritemsg = at_readwritemsg,
	.compwrite = at_compwrite,
	.compwritev = at_compwritev,
	.compwritemsg = at_compwritemsg,
	.writevalid = at_writevalid,
	.readwritevalid = at_readwritevalid,
	.compwritevalid = at_compwritevalid,
};
