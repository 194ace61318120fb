/*
 * worker_choice.c — which serving worker a call goes to, when
 * pg_infer.devices runs several (one per device).
 *
 * Among the workers that are ready and hold the model the call names (any
 * model when it names none):
 *
 *  1. Affinity.  Each worker scores a hash of the prompt's first
 *     PGI_AFFINITY_PREFIX_BYTES bytes seeded with the worker's device name,
 *     and the highest score wins (rendezvous hashing).  Prompts that start
 *     alike (the turns of one conversation, which repeat its beginning)
 *     therefore meet the same worker's prefix cache, and a worker that goes
 *     away moves only its own prompts.
 *  2. Load.  A worker's load is the sequences of calls routed to it whose
 *     callers still wait (PgInferShared.in_flight, kept by the backends).
 *     When the preferred worker's load reaches twice the least loaded
 *     worker's plus two, the least loaded one takes the call instead: a
 *     free device now is worth more than a cached prefix later.
 *
 * When no ready worker holds the model, the call goes to the first worker
 * that runs, which answers it as one worker would (42704 for a model not
 * loaded, 55000 for none); when no worker runs at all, 55000.
 */
#include "call.h"

#include "common/hashfn.h"
#include "port/atomics.h"
#include "storage/lwlock.h"

/* The leading bytes of a prompt that choose its worker: about one 16-token
 * KV block of text, the least a prefix cache can share. */
#define PGI_AFFINITY_PREFIX_BYTES 64

/* The preferred worker keeps a call unless its load is at least this. */
#define MUCH_MORE_LOADED(least) (2 * (least) + 2)

void
pgi_worker_load_add(int worker, uint32 sequences)
{
	pg_atomic_fetch_add_u32(&pg_infer_workers[worker].in_flight, sequences);
}

void
pgi_worker_load_sub(int worker, uint32 sequences)
{
	pg_atomic_fetch_sub_u32(&pg_infer_workers[worker].in_flight, sequences);
}

static bool
holds_model(const PgInferShared *w, const char *model)
{
	for (int i = 0; i < PGI_MAX_LOADED_MODELS; i++)
		if (w->models[i].in_use && (model[0] == '\0' || strcmp(NameStr(w->models[i].name), model) == 0))
			return true;
	return false;
}

int
pgi_choose_worker(const char *model, const char *prompt, Size prompt_length)
{
	Size		key_length = Min(prompt_length, PGI_AFFINITY_PREFIX_BYTES);
	int			preferred = -1;
	int			least = -1;
	uint64		best_score = 0;
	uint32		load[PGI_MAX_WORKERS];
	bool		candidate[PGI_MAX_WORKERS];
	char		names[PGI_MAX_WORKERS][PGI_DEVICE_NAME_LENGTH];

	pg_infer_require_preload();
	if (pg_infer_n_workers == 1)
	{
		pgi_require_worker();
		return 0;
	}

	LWLockAcquire(pg_infer_workers[0].lock, LW_SHARED);
	for (int i = 0; i < pg_infer_n_workers; i++)
	{
		const PgInferShared *w = &pg_infer_workers[i];

		candidate[i] = w->worker_pid != 0 && w->worker_state == PGI_WORKER_READY &&
			holds_model(w, model);
		strlcpy(names[i], w->device_label, sizeof(names[i]));
	}
	LWLockRelease(pg_infer_workers[0].lock);

	for (int i = 0; i < pg_infer_n_workers; i++)
	{
		uint64		score;

		if (!candidate[i])
			continue;
		load[i] = pg_atomic_read_u32(&pg_infer_workers[i].in_flight);
		score = hash_bytes_extended((const unsigned char *) prompt, (int) key_length,
									hash_bytes((const unsigned char *) names[i],
											   (int) strlen(names[i])));
		if (preferred < 0 || score > best_score)
		{
			preferred = i;
			best_score = score;
		}
		if (least < 0 || load[i] < load[least])
			least = i;
	}
	if (preferred >= 0)
		return load[preferred] >= MUCH_MORE_LOADED(load[least]) ? least : preferred;

	/* nobody ready holds it: the first that runs gives the answer */
	for (int i = 0; i < pg_infer_n_workers; i++)
		if (pgi_worker_accepts_calls(i))
			return i;
	pgi_require_worker();		/* raises */
	return 0;
}
