/*
 * text_utf8.c — valid UTF-8 without NUL from the engine's bytes (see
 * text_utf8.h).
 */
#include "text_utf8.h"

#include "mb/pg_wchar.h"

#define REPLACEMENT_CHARACTER "\xEF\xBF\xBD"	/* U+FFFD */

/* the character length a lead byte announces; 0 for a byte that cannot
 * start one (a continuation byte, 0xF8 and above) */
static int
lead_length(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0)
		return 2;
	if ((c & 0xF0) == 0xE0)
		return 3;
	if ((c & 0xF8) == 0xF0)
		return 4;
	return 0;
}

/* Appends the valid characters of bytes[0..n) to out; returns how many bytes
 * at the end form an incomplete character kept back (0 when final). */
static int
append_bytes(StringInfo out, const unsigned char *bytes, Size n, bool final)
{
	Size		i = 0;

	while (i < n)
	{
		unsigned char c = bytes[i];
		int			len = lead_length(c);

		if (c == 0 || len == 0)
		{
			appendBinaryStringInfo(out, REPLACEMENT_CHARACTER, 3);
			i++;
			continue;
		}
		if (len == 1)
		{
			appendStringInfoChar(out, (char) c);
			i++;
			continue;
		}
		if (i + len > n)
		{
			/* the text ends inside a character: hold it back when what is
			 * there can still become one */
			bool		prefix = true;

			for (Size j = i + 1; j < n; j++)
				if ((bytes[j] & 0xC0) != 0x80)
					prefix = false;
			if (prefix && !final)
				return (int) (n - i);
			appendBinaryStringInfo(out, REPLACEMENT_CHARACTER, 3);
			i++;
			continue;
		}
		if (!pg_utf8_islegal(bytes + i, len))
		{
			appendBinaryStringInfo(out, REPLACEMENT_CHARACTER, 3);
			i++;
			continue;
		}
		appendBinaryStringInfo(out, (const char *) bytes + i, len);
		i += len;
	}
	return 0;
}

void
pgi_utf8_append(StringInfo out, PgiUtf8Pending *pending, const char *data, Size length,
				bool final)
{
	const unsigned char *bytes = (const unsigned char *) data;
	unsigned char *joined = NULL;
	Size		n = length;
	int			kept;

	if (pending->length > 0)
	{
		joined = palloc(pending->length + length);
		memcpy(joined, pending->bytes, pending->length);
		if (length > 0)
			memcpy(joined + pending->length, data, length);
		n = pending->length + length;
		bytes = joined;
		pending->length = 0;
	}
	kept = append_bytes(out, bytes, n, final);
	Assert(kept < 4);
	if (kept > 0)
	{
		memcpy(pending->bytes, bytes + n - kept, kept);
		pending->length = kept;
	}
	if (joined != NULL)
		pfree(joined);
}
