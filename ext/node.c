/*
 * node.c — the name of this server among the nodes of a scale-out.
 *
 * Every usage and device_activity row carries it (their node column's
 * default is node_name()), so that a ledger database that gathers the rows
 * of several nodes through logical replication can tell them apart (see
 * docs/scale-out.md).  pg_infer.node_name names the node; left empty, the
 * server's cluster_name does, and without one the host name.
 */
#include "pg_infer.h"

#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#define PGI_NODE_NAME_MAX 63

PG_FUNCTION_INFO_V1(pg_infer_node_name_sql);

/* Letters, digits, '_', '-' and '.': a name that reads the same in a log
 * line, a connection string and a Prometheus label. */
static bool
node_name_is_valid(const char *name)
{
	size_t		len = strlen(name);

	if (len > PGI_NODE_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (!(isalnum(c) || c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

bool
pg_infer_node_name_check(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || node_name_is_valid(*newval))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("pg_infer.node_name must be at most %d bytes of ASCII letters, digits, '_', '-' and '.'.",
						PGI_NODE_NAME_MAX);
	return false;
}

/* node_name(): the setting, else cluster_name, else the host name. */
Datum
pg_infer_node_name_sql(PG_FUNCTION_ARGS)
{
	char		host[256];

	if (pg_infer_node_name != NULL && pg_infer_node_name[0] != '\0')
		PG_RETURN_TEXT_P(cstring_to_text(pg_infer_node_name));
	if (cluster_name != NULL && cluster_name[0] != '\0')
		PG_RETURN_TEXT_P(cstring_to_text(cluster_name));
	if (gethostname(host, sizeof(host)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not read the host name for node_name(): %m"),
				 errhint("Set pg_infer.node_name (or cluster_name) in postgresql.conf.")));
	host[sizeof(host) - 1] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(host));
}
