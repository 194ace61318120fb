/*
 * serving_loop.h — what the worker's main loop (worker.c) calls to serve
 * requests; the rest is in serving.h.  Kept free of engine headers so that
 * worker.c need not include them.
 */
#ifndef PG_INFER_SERVING_LOOP_H
#define PG_INFER_SERVING_LOOP_H

/* After the device probe: drop calls queued for an earlier worker, load the
 * registered models and pg_infer.model_path. */
extern void serving_start(void);
/* Intake, one step per model with work, replies; returns how long the loop
 * may sleep on its latch (0 while there is work). */
extern long serving_iterate(void);
/* After a configuration reload: load pg_infer.model_path when it names a
 * model not loaded yet. */
extern void serving_reload(void);

/* Non-NULL once a model's device is lost: why the worker must restart. */
extern const char *serving_restart_reason(void);
/* Answer every open request with an error, record usage, close models. */
extern void serving_shutdown(void);

#endif							/* PG_INFER_SERVING_LOOP_H */
