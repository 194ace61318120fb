/*
 * stream_client.c — runs one query in libpq's single-row mode and reports
 * when each row arrived: the honest check that generate_stream() sends its
 * rows while the worker is still generating, not all at the end.
 *
 *   stream_client CONNINFO QUERY [REPEAT]
 *
 * Prints, per run, one JSON line:
 *   {"rows": N, "first_row_ms": T1, "last_row_ms": T2, "total_ms": T3, "text": "..."}
 * (times from sending the query; text = the first column of every row,
 * concatenated).  Exits 1 on any error, printing the server's SQLSTATE and
 * message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void
print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int
run_once(PGconn *conn, const char *query)
{
	double		start = now_ms();
	double		first = -1;
	double		last = -1;
	long		rows = 0;
	size_t		text_length = 0;
	size_t		text_capacity = 1024;
	char	   *text = malloc(text_capacity);
	PGresult   *result;
	int			failed = 0;

	if (text == NULL)
		return 1;
	text[0] = '\0';
	if (!PQsendQuery(conn, query) || !PQsetSingleRowMode(conn))
	{
		fprintf(stderr, "stream_client: %s", PQerrorMessage(conn));
		free(text);
		return 1;
	}
	while ((result = PQgetResult(conn)) != NULL)
	{
		ExecStatusType status = PQresultStatus(result);

		if (status == PGRES_SINGLE_TUPLE)
		{
			double		t = now_ms() - start;
			const char *value = PQgetisnull(result, 0, 0) ? "" : PQgetvalue(result, 0, 0);
			size_t		length = strlen(value);

			if (first < 0)
				first = t;
			last = t;
			rows++;
			if (text_length + length + 1 > text_capacity)
			{
				char	   *bigger;

				text_capacity = (text_length + length + 1) * 2;
				bigger = realloc(text, text_capacity);
				if (bigger == NULL)
				{
					free(text);
					PQclear(result);
					return 1;
				}
				text = bigger;
			}
			memcpy(text + text_length, value, length + 1);
			text_length += length;
		}
		else if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
		{
			const char *sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);

			fprintf(stderr, "stream_client: ERROR %s: %s", sqlstate ? sqlstate : "?????",
					PQresultErrorMessage(result));
			failed = 1;
		}
		PQclear(result);
	}
	if (!failed)
	{
		printf("{\"rows\": %ld, \"first_row_ms\": %.3f, \"last_row_ms\": %.3f, \"total_ms\": %.3f, \"text\": ",
			   rows, first, last, now_ms() - start);
		print_json_string(text);
		printf("}\n");
		fflush(stdout);
	}
	free(text);
	return failed;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	int			repeat = 1;
	int			failed = 0;

	if (argc < 3)
	{
		fprintf(stderr, "usage: stream_client CONNINFO QUERY [REPEAT]\n");
		return 2;
	}
	if (argc > 3)
		repeat = atoi(argv[3]);
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "stream_client: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return 1;
	}
	for (int i = 0; i < repeat && !failed; i++)
		failed = run_once(conn, argv[2]);
	PQfinish(conn);
	return failed;
}
