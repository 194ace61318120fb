/*
 * stream_client.c — runs one query in libpq's single-row mode and reports
 * when each row arrived: the honest check that generate_stream() sends its
 * rows while the worker is still generating, not all at the end.
 *
 *   stream_client CONNINFO QUERY [REPEAT [cursor]]
 *
 * With "cursor", the query is read through a cursor, one FETCH per row
 * (BEGIN; DECLARE ... CURSOR FOR QUERY; FETCH 1 until none; COMMIT), as a
 * client of the scale-out router reads generate_stream() (the router's
 * server cannot flush its output between the rows of one statement).
 *
 * Prints, per run, one JSON line:
 *   {"rows": N, "first_row_ms": T1, "last_row_ms": T2, "total_ms": T3,
 *    "first_row_epoch": E, "text": "..."}
 * (times from sending the query; E = when the first row arrived, in seconds
 * since 1970 by the system clock, to compare with the server's timestamps;
 * text = the first column of every row, concatenated).  Exits 1 on any error, printing the server's SQLSTATE and
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

static double
epoch_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
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
	double		first_epoch = 0;
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
			{
				first = t;
				first_epoch = epoch_s();
			}
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
		printf("{\"rows\": %ld, \"first_row_ms\": %.3f, \"last_row_ms\": %.3f, \"total_ms\": %.3f, "
			   "\"first_row_epoch\": %.6f, \"text\": ",
			   rows, first, last, now_ms() - start, first_epoch);
		print_json_string(text);
		printf("}\n");
		fflush(stdout);
	}
	free(text);
	return failed;
}

/* One statement that must succeed; its result, or NULL with the error shown. */
static PGresult *
exec_ok(PGconn *conn, const char *sql)
{
	PGresult   *result = PQexec(conn, sql);
	ExecStatusType status = PQresultStatus(result);

	if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
	{
		const char *sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);

		fprintf(stderr, "stream_client: ERROR %s: %s", sqlstate ? sqlstate : "?????",
				PQresultErrorMessage(result));
		PQclear(result);
		return NULL;
	}
	return result;
}

static int
run_cursor(PGconn *conn, const char *query)
{
	double		start = now_ms();
	double		first = -1;
	double		last = -1;
	double		first_epoch = 0;
	long		rows = 0;
	size_t		text_length = 0;
	size_t		text_capacity = 1024;
	char	   *text = malloc(text_capacity);
	char	   *declare = malloc(strlen(query) + 64);
	PGresult   *result;
	int			failed = 0;

	if (text == NULL || declare == NULL)
	{
		free(text);
		free(declare);
		return 1;
	}
	text[0] = '\0';
	sprintf(declare, "DECLARE stream_client NO SCROLL CURSOR FOR %s", query);
	if ((result = exec_ok(conn, "BEGIN")) == NULL)
		failed = 1;
	PQclear(result);
	if (!failed && (result = exec_ok(conn, declare)) == NULL)
		failed = 1;
	PQclear(result);
	while (!failed)
	{
		const char *value;
		size_t		length;
		double		t;

		if ((result = exec_ok(conn, "FETCH 1 FROM stream_client")) == NULL)
		{
			failed = 1;
			break;
		}
		if (PQntuples(result) == 0)
		{
			PQclear(result);
			break;
		}
		t = now_ms() - start;
		value = PQgetisnull(result, 0, 0) ? "" : PQgetvalue(result, 0, 0);
		length = strlen(value);
		if (first < 0)
		{
			first = t;
			first_epoch = epoch_s();
		}
		last = t;
		rows++;
		if (text_length + length + 1 > text_capacity)
		{
			char	   *bigger;

			text_capacity = (text_length + length + 1) * 2;
			bigger = realloc(text, text_capacity);
			if (bigger == NULL)
			{
				PQclear(result);
				failed = 1;
				break;
			}
			text = bigger;
		}
		memcpy(text + text_length, value, length + 1);
		text_length += length;
		PQclear(result);
	}
	PQclear(PQexec(conn, failed ? "ROLLBACK" : "COMMIT"));
	if (!failed)
	{
		printf("{\"rows\": %ld, \"first_row_ms\": %.3f, \"last_row_ms\": %.3f, \"total_ms\": %.3f, "
			   "\"first_row_epoch\": %.6f, \"text\": ",
			   rows, first, last, now_ms() - start, first_epoch);
		print_json_string(text);
		printf("}\n");
		fflush(stdout);
	}
	free(text);
	free(declare);
	return failed;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	int			repeat = 1;
	int			failed = 0;
	int			cursor;

	if (argc < 3)
	{
		fprintf(stderr, "usage: stream_client CONNINFO QUERY [REPEAT [cursor]]\n");
		return 2;
	}
	if (argc > 3)
		repeat = atoi(argv[3]);
	cursor = argc > 4 && strcmp(argv[4], "cursor") == 0;
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "stream_client: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return 1;
	}
	for (int i = 0; i < repeat && !failed; i++)
		failed = cursor ? run_cursor(conn, argv[2]) : run_once(conn, argv[2]);
	PQfinish(conn);
	return failed;
}
