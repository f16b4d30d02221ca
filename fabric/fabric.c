/* SPDX-License-Identifier: MIT */
/*
 * The fabric: one pagewire context (progress engine) and one CM channel.
 * Connection events are taken off the channel by whichever thread reads
 * an EQ and routed to the EQ of the object they concern (the pep's for a
 * request, the endpoint's otherwise), as librdmacm's rdma_migrate_id lets
 * a verbs program do with event channels.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "pwf.h"

static int fabric_close(struct fid *fid)
{
	struct pwf_fabric *fab = pwf_container_of(fid, struct pwf_fabric, fabric_fid.fid);
	int ret;

	if (atomic_load_explicit(&fab->refs, memory_order_acquire))
		return -FI_EBUSY;
	pwf_fabric_pump_cm(fab);
	ret = pw_destroy_cm_channel(fab->cmch);
	if (ret)
		return pwf_errno(ret);
	ret = pw_close(fab->ctx);
	if (ret)
		return pwf_errno(ret);
	pthread_mutex_destroy(&fab->cm_lock);
	free(fab);
	return 0;
}

static int fabric_trywait(struct fid_fabric *fabric, struct fid **fids, int count)
{
	for (int i = 0; i < count; i++) {
		int ret;

		switch (fids[i]->fclass) {
		case FI_CLASS_CQ:
			ret = pwf_cq_trywait(pwf_container_of(fids[i], struct pwf_cq, cq_fid.fid));
			break;
		case FI_CLASS_EQ:
			ret = pwf_eq_trywait(pwf_container_of(fids[i], struct pwf_eq, eq_fid.fid));
			break;
		default:
			return -FI_EINVAL;
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int fabric_wait_open(struct fid_fabric *fabric, struct fi_wait_attr *attr,
			    struct fid_wait **waitset)
{
	return -FI_ENOSYS;
}

static int fabric_domain2(struct fid_fabric *fabric, struct fi_info *info,
			  struct fid_domain **dom, uint64_t flags, void *context)
{
	if (flags)
		return -FI_EINVAL;
	return pwf_domain_open(fabric, info, dom, context);
}

static struct fi_ops fabric_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = fabric_close,
	.bind = pwf_no_bind,
	.control = pwf_no_control,
	.ops_open = pwf_no_ops_open,
	.tostr = pwf_no_tostr,
	.ops_set = pwf_no_ops_set,
};

static struct fi_ops_fabric fabric_ops = {
	.size = sizeof(struct fi_ops_fabric),
	.domain = pwf_domain_open,
	.passive_ep = pwf_passive_ep,
	.eq_open = pwf_eq_open,
	.wait_open = fabric_wait_open,
	.trywait = fabric_trywait,
	.domain2 = fabric_domain2,
};

int pwf_fabric_open(struct fi_fabric_attr *attr, struct fid_fabric **fabric,
		    void *context)
{
	struct pw_context_attr ca = { 0 };
	struct pwf_fabric *fab;
	int flags, ret;

	if (attr && attr->name && strcmp(attr->name, PWF_NAME))
		return -FI_ENODATA;
	fab = calloc(1, sizeof(*fab));
	if (!fab)
		return -FI_ENOMEM;
	ca.fault_policy = pwf_params.fault_policy;
	ca.mem_budget = pwf_params.mem_budget;
	/* fi_cq_read is libfabric's progress call: let it run the engine */
	if (pwf_params.busy_poll)
		ca.flags |= PW_CONTEXT_BUSY_POLL;
	fab->ctx = pw_open(&ca);
	if (!fab->ctx) {
		ret = pwf_errno(-errno);
		PWF_WARN(FI_LOG_FABRIC, "pw_open: %s\n", pw_last_error());
		goto err_free;
	}
	fab->cmch = pw_create_cm_channel(fab->ctx);
	if (!fab->cmch) {
		ret = pwf_errno(-errno);
		goto err_close;
	}
	/* pumped from EQ reads: never block there */
	flags = fcntl(fab->cmch->fd, F_GETFL);
	if (flags < 0 || fcntl(fab->cmch->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		ret = -FI_EOTHER;
		goto err_ch;
	}
	/* MR events are not part of libfabric: drain them without blocking */
	flags = fcntl(pw_get_async_fd(fab->ctx), F_GETFL);
	if (flags >= 0)
		fcntl(pw_get_async_fd(fab->ctx), F_SETFL, flags | O_NONBLOCK);
	pthread_mutex_init(&fab->cm_lock, NULL);
	atomic_init(&fab->refs, 0);
	fab->fabric_fid.fid.fclass = FI_CLASS_FABRIC;
	fab->fabric_fid.fid.context = context;
	fab->fabric_fid.fid.ops = &fabric_fi_ops;
	fab->fabric_fid.ops = &fabric_ops;
	*fabric = &fab->fabric_fid;
	return 0;

err_ch:
	pw_destroy_cm_channel(fab->cmch);
err_close:
	pw_close(fab->ctx);
err_free:
	free(fab);
	return ret;
}

/*
 * Asynchronous events have no libfabric counterpart (an MR's range
 * unmapped, a QP failed: the latter also shows as a CM DISCONNECTED and
 * as error completions). Drained so that the queue stays bounded.
 */
static void drain_async(struct pwf_fabric *fab)
{
	struct pw_async_event ev;

	while (!pw_get_async_event(fab->ctx, &ev)) {
		PWF_INFO(FI_LOG_DOMAIN, "pagewire event: %s\n",
			 pw_event_type_str(ev.event_type));
		pw_ack_async_event(&ev);
	}
}

void pwf_fabric_pump_cm(struct pwf_fabric *fab)
{
	struct pw_cm_event *ev;

	pthread_mutex_lock(&fab->cm_lock);
	while (!pw_get_cm_event(fab->cmch, &ev)) {
		if (ev->event == PW_CM_EVENT_CONNECT_REQUEST) {
			if (ev->context)
				pwf_pep_connreq(ev->context, ev);
			else
				pw_reject(ev->request, NULL, 0);
		} else if (ev->qp && ev->qp->qp_context) {
			pwf_ep_cm_event(ev->qp->qp_context, ev);
		}
		pw_ack_cm_event(ev);
	}
	pthread_mutex_unlock(&fab->cm_lock);
	drain_async(fab);
}
