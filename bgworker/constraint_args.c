/*
 * constraint_args.c — the worker's half of a call's constraint (the blob
 * of a GENERATE call, ext/protocol.h's PgInferConstraintArgs).  The
 * backend compiled the constraint once to report mistakes before anything
 * ran; here only the frame is checked, and the engine compiles the text
 * again when the sequences are added (engine/constraint.h).
 */
#include "serving.h"

bool
serving_constraint_check(const PgInferCallHeader *h, const char *base, ServingError *error)
{
	const PgInferConstraintArgs *args;

	if (h->blob_size == 0)
		return true;
	args = (const PgInferConstraintArgs *) (base + h->blob_offset);
	if (h->blob_size < sizeof(PgInferConstraintArgs) || h->blob_offset % MAXIMUM_ALIGNOF != 0 ||
		args->kind < PGI_CONSTRAINT_REGEX || args->kind > PGI_CONSTRAINT_CHOICES ||
		args->length != h->blob_size - sizeof(PgInferConstraintArgs))
	{
		serving_error_set(error, "XX001", NULL, "malformed pg_infer call: constraint arguments");
		return false;
	}
	return true;
}

void
serving_constraint_fill(const PgInferCallHeader *h, const char *base, pgi_constraint_spec *spec)
{
	const PgInferConstraintArgs *args;

	spec->kind = PGI_CONSTRAINT_NONE;
	spec->text = NULL;
	spec->length = 0;
	if (h->kind != PGI_CALL_GENERATE || h->blob_size < sizeof(PgInferConstraintArgs))
		return;
	args = (const PgInferConstraintArgs *) (base + h->blob_offset);
	spec->kind = (pgi_constraint_kind) args->kind;
	spec->text = (const char *) args + sizeof(PgInferConstraintArgs);
	spec->length = args->length;
}
