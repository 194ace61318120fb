/*
 * sqlstate.c — the SQLSTATE of an engine status (engine/pgi_error.h).
 *
 * A prompt longer than the context is 54000 (program_limit_exceeded, as
 * PostgreSQL reports a statement too complex); bad sampling parameters are
 * 22023; a device failure, or a lost device, is 58000; a file that is not
 * GGUF or breaks the reader's limits is 22P03; what the engine refuses to
 * run (a type, an architecture) is 0A000.
 */
#include "sqlstate.h"

#include "utils/elog.h"

static const char *const sqlstates[] = {
	[PGI_OK] = "00000",
	[PGI_ERR_IO] = "58030",
	[PGI_ERR_FORMAT] = "22P03",
	[PGI_ERR_UNSUPPORTED] = "0A000",
	[PGI_ERR_OUT_OF_MEMORY] = "53200",
	[PGI_ERR_INVALID_ARGUMENT] = "22023",
	[PGI_ERR_CONTEXT_FULL] = "54000",
	[PGI_ERR_CACHE_FULL] = "53200",
	[PGI_ERR_DEVICE] = "58000",
	[PGI_ERR_INTERNAL] = "XX000",
	[PGI_ERR_DEVICE_LOST] = "58000",
	[PGI_ERR_CANCELLED] = "57014",
};

/* every status has its row: a status added to the engine must be added here */
StaticAssertDecl(lengthof(sqlstates) == PGI_ERR_CANCELLED + 1,
				 "one SQLSTATE per pgi_status");

const char *
pgi_status_sqlstate(pgi_status status)
{
	if ((int) status < 0 || (int) status >= (int) lengthof(sqlstates) || sqlstates[status] == NULL)
		return "XX000";
	return sqlstates[status];
}

int
pgi_status_errcode(pgi_status status)
{
	const char *s = pgi_status_sqlstate(status);

	return MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]);
}
