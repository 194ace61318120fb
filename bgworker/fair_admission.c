/*
 * fair_admission.c — which waiting sequence a model starts next.
 *
 * The engine batches whatever it is given, first come first served; left
 * to it, one role's generate_batch() of a thousand prompts would run before
 * another role's single generate().  So a generate call's sequences wait
 * here, pending (call_intake.c), and each iteration of the serving loop
 * hands a model's engine only what it can start now:
 *
 *   - room: the engine's own line of sequences waiting for cache room is
 *     kept at most ENGINE_QUEUE_DEPTH long, and at most
 *     pg_infer.max_sequences run;
 *   - turns: the roles with pending sequences take turns, one sequence each
 *     (round robin in role order, resuming after the role served last), so
 *     a role with one request waits for at most one sequence per other
 *     active role, however long their backlogs are;
 *   - a cap: one role runs at most pg_infer.max_sequences_per_role
 *     sequences on a model (default three quarters of max_sequences), so
 *     room stays free for a role that arrives while another one fills the
 *     model, and it starts at the next step instead of after one of the
 *     running sequences ends.
 * Within a role, calls start in the order they were taken and a call's
 * prompts in their order.  Fairness is between roles (who pays), not tags:
 * a role cannot gain turns by spreading its work over many tags.
 */
#include "serving_call.h"

#include "../ext/pg_infer.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

/* The role each model served last, to resume the turns after it. */
static Oid	last_role[PGI_MAX_LOADED_MODELS];

typedef struct RoleTurn
{
	Oid			role;
	int			running;		/* its sequences in the model's engine */
	bool		pending;		/* it has sequences waiting for this model */
} RoleTurn;

static int
role_cap(int max_sequences)
{
	if (pg_infer_max_sequences_per_role > 0)
		return Min(pg_infer_max_sequences_per_role, max_sequences);
	return Max(1, max_sequences - max_sequences / 4);
}

static RoleTurn *
find_role(RoleTurn *roles, int n, Oid role)
{
	for (int i = 0; i < n; i++)
		if (roles[i].role == role)
			return &roles[i];
	return NULL;
}

/* The roles with work on a model: how many sequences each runs there, and
 * whether it has more waiting.  Sorted by role oid. */
static RoleTurn *
model_roles(int slot, int *n_roles)
{
	int			capacity = 8;
	int			n = 0;
	RoleTurn   *roles = palloc(sizeof(RoleTurn) * capacity);
	dlist_iter	iter;

	dlist_foreach(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);
		Oid			role = call->header.role_id;
		RoleTurn   *r;
		int			running = 0;

		for (int i = 0; i < call->n_sequences; i++)
			if (call->sequences[i].in_engine && call->sequences[i].model_slot == slot)
				running++;
		if (running == 0 && (call->n_pending == 0 || call->model_slot != slot))
			continue;
		r = find_role(roles, n, role);
		if (r == NULL)
		{
			if (n == capacity)
			{
				capacity *= 2;
				roles = repalloc(roles, sizeof(RoleTurn) * capacity);
			}
			r = &roles[n++];
			r->role = role;
			r->running = 0;
			r->pending = false;
		}
		r->running += running;
		if (call->n_pending > 0 && call->model_slot == slot)
			r->pending = true;
	}
	/* insertion sort: a handful of roles */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && roles[j - 1].role > roles[j].role; j--)
		{
			RoleTurn	t = roles[j];

			roles[j] = roles[j - 1];
			roles[j - 1] = t;
		}
	*n_roles = n;
	return roles;
}

/* The role whose turn it is: the first after `after` (wrapping) that has
 * sequences waiting and is under its cap; NULL when none may start. */
static RoleTurn *
next_role(RoleTurn *roles, int n, Oid after, int cap)
{
	int			start = 0;

	while (start < n && roles[start].role <= after)
		start++;
	for (int k = 0; k < n; k++)
	{
		RoleTurn   *r = &roles[(start + k) % n];

		if (r->pending && r->running < cap)
			return r;
	}
	return NULL;
}

/* Start the role's next pending sequence on the model (its oldest call
 * first); false when it has none left there. */
static bool
start_next_of(RoleTurn *r, int slot)
{
	dlist_iter	iter;

	dlist_foreach(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		if (call->header.role_id != r->role || call->model_slot != slot || call->n_pending == 0)
			continue;
		for (int i = 0; i < call->n_sequences; i++)
		{
			ServingSequence *s = &call->sequences[i];

			if (!s->pending)
				continue;
			if (intake_start_pending(s))
				r->running++;
			return true;
		}
	}
	r->pending = false;
	return false;
}

/*
 * Hand the model's engine what it may start: while it runs fewer than
 * max_sequences and has fewer than ENGINE_QUEUE_DEPTH sequences waiting of
 * its own.  The engine starts a waiting sequence when its cache has room
 * for it, first come first served; keeping its own line that short leaves
 * the order to the turns here, so a newcomer is never behind more than
 * ENGINE_QUEUE_DEPTH sequences of others.  The line refills every step.
 */
#define ENGINE_QUEUE_DEPTH 2

static void
admit_model(int slot)
{
	ServingModel *m = &serving_models[slot];
	pgi_engine_stats stats;
	RoleTurn   *roles = NULL;
	int			n_roles = 0;
	int			cap;

	for (;;)
	{
		RoleTurn   *r;

		pgi_engine_get_stats(m->engine, &stats);
		if (stats.waiting >= ENGINE_QUEUE_DEPTH || stats.running + stats.waiting >= stats.max_sequences)
			break;
		if (roles == NULL)
			roles = model_roles(slot, &n_roles);
		cap = role_cap(stats.max_sequences);
		r = next_role(roles, n_roles, last_role[slot], cap);
		if (r == NULL)
			break;
		last_role[slot] = r->role;
		/* counted as its own from now on: the cap sees it at once */
		(void) start_next_of(r, slot);
	}
	if (roles != NULL)
		pfree(roles);
}

void
admission_run(void)
{
	dlist_iter	iter;
	bool		any = false;

	dlist_foreach(iter, &active_calls)
		if (dlist_container(ServingCall, node, iter.cur)->n_pending > 0)
		{
			any = true;
			break;
		}
	if (!any)
		return;
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use)
			admit_model(slot);
	/* pending sequences of a model that is gone: start them, which answers
	 * each with the error of its model's lookup */
	dlist_foreach(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		if (call->n_pending > 0 && !serving_models[call->model_slot].in_use)
			for (int i = 0; i < call->n_sequences; i++)
				if (call->sequences[i].pending)
					(void) intake_start_pending(&call->sequences[i]);
	}
}

void
admission_drop_pending(ServingSequence *s, pgi_finish_reason reason)
{
	float8		waited;

	Assert(s->pending);
	s->pending = false;
	s->call->n_pending--;
	/* it computed nothing: its row says how long it waited */
	waited = (float8) (GetCurrentTimestamp() - s->call->taken_at) / 1000.0;
	memset(&s->timings, 0, sizeof(s->timings));
	s->timings.queue_ms = waited;
	s->timings.total_ms = waited;
	finishing_add(s, reason);
}

int
admission_waiting(int slot)
{
	dlist_iter	iter;
	int			n = 0;

	dlist_foreach(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		if (call->model_slot == slot)
			n += call->n_pending;
	}
	return n;
}
