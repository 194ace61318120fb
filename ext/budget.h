/*
 * budget.h — admission to the books: tag grants, budgets and the token
 * reservations of requests in flight (ext/budget.c).
 *
 * A request that some budget applies to reserves, at admission, the most
 * tokens it may spend (its prompt tokens + max_tokens, per prompt) in shared
 * memory, where every session sees it at once; check_budget counts spent +
 * reserved + requested.  The reservation belongs to the backend until the
 * worker takes the call, then to the worker, which releases it once the
 * call's usage rows are committed (or it fails).  A backend that leaves
 * before the worker took its call releases it when it detaches the call's
 * segment; a new worker releases whatever a dead one held.
 */
#ifndef PG_INFER_BUDGET_H
#define PG_INFER_BUDGET_H

#include "postgres.h"

#include "protocol.h"

/* Slots of the reservation table (calls in flight + usage rows waiting
 * for a retried commit); a full table refuses admission with 53400. */
#define PGI_MAX_RESERVATIONS 4096

/* Tokens reserved by requests in flight, as one budget of each kind sees them. */
typedef struct PgInferReserved
{
	int64		role_tokens;	/* the role's, any tag */
	int64		tag_tokens;		/* the tag's, any role (0 without a tag) */
	int64		role_tag_tokens;	/* the role's within the tag */
} PgInferReserved;

extern void pg_infer_budget_shmem_request(void);
extern void pg_infer_budget_shmem_init(void);

struct PgInferCallSpec;

/*
 * The books' admission of a GENERATE call, in the caller's backend, before
 * it is queued: refuses a tag the role was not granted (42501), and when a
 * budget applies reserves the call's tokens (header->reservation_id) and
 * refuses it over a budget (PIB01, PIR01).  With the extension's SQL still
 * at 0.1.0, calls its check_budget() as 0.1.0 did.
 */
extern void pgi_admit_call(const struct PgInferCallSpec *spec, PgInferCallHeader *header);

/* Release a reservation held by a backend (not yet taken by the worker);
 * never throws.  For on_dsm_detach. */
extern void pgi_reservation_release_by_backend(uint64 id);

/* Worker side: take a call's reservation (it is the worker's to release from
 * now on); release one; hold the tokens of a usage row whose commit failed;
 * release every reservation a dead worker held (at start). */
extern void pgi_reservation_take(uint64 id, uint32 worker_generation);
extern void pgi_reservation_release(uint64 id);
extern uint64 pgi_reservation_hold(const char *role, const char *tag, int64 tokens,
								   uint32 worker_generation);
extern void pgi_reservations_clear_dead(uint32 worker_generation);

#endif							/* PG_INFER_BUDGET_H */
