/*
 * counters.h — live counters per (model, role, database, device) in shared memory,
 * in the manner of pg_stat_statements (ext/counters.c).
 *
 * Set-up, from ext/pg_infer.c:
 *   _PG_init, before the other pg_infer GUCs are defined (before
 *     MarkGUCPrefixReserved("pg_infer")):    pg_infer_counters_define_gucs();
 *   the shmem_request_hook:                  pg_infer_counters_shmem_request();
 *   the shmem_startup_hook:                  pg_infer_counters_shmem_init();
 * Recording, from the worker when a request finishes:
 *   pg_infer_counters_record(...)
 */
#ifndef PG_INFER_COUNTERS_H
#define PG_INFER_COUNTERS_H

#include "postgres.h"

/* pg_infer.counters_max: entries the table holds (PGC_POSTMASTER). */
extern int	pg_infer_counters_max;

extern void pg_infer_counters_define_gucs(void);
/* RequestAddinShmemSpace + RequestNamedLWLockTranche for the table. */
extern void pg_infer_counters_shmem_request(void);
/* Create or attach to the table; takes AddinShmemInitLock unless the
 * caller already holds it. */
extern void pg_infer_counters_shmem_init(void);

/*
 * Fold one finished request into the counters of (model, role, database).
 * error: it ended in an error or a timeout; cancelled: the caller cancelled
 * or went away.  ttft_ms is NaN (or negative) when no token was generated.
 * Never throws; a no-op before shared memory is set up.  When the table is
 * full, the least-used entries are evicted first (pg_infer_counters_info
 * counts evictions).
 */
extern void pg_infer_counters_record(const char *model, const char *device, Oid role, Oid database,
									 int prompt_tokens, int cached_tokens, int completion_tokens,
									 bool error, bool cancelled,
									 double total_ms, double ttft_ms, double device_ms);

#endif							/* PG_INFER_COUNTERS_H */
