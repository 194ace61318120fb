/*
 * sqlstate.h — the SQLSTATE of an engine status: one table for the backends
 * (tokenizing) and the worker (loading, admitting, stepping).
 */
#ifndef PG_INFER_SQLSTATE_H
#define PG_INFER_SQLSTATE_H

#include "postgres.h"

#include "../engine/pgi_error.h"

/* Five characters, "54000"; XX000 for a status the table does not know. */
extern const char *pgi_status_sqlstate(pgi_status status);

/* The same, as errcode() takes it. */
extern int	pgi_status_errcode(pgi_status status);

#endif							/* PG_INFER_SQLSTATE_H */
