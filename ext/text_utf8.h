/*
 * text_utf8.h — the one rule for text that leaves the engine: valid UTF-8,
 * no NUL.
 *
 * The engine's text is bytes: a token may hold part of a character (byte
 * tokens such as <0xC3>), bytes that are no UTF-8 at all, or a NUL.  Before
 * such text reaches a backend (the worker's replies) or is returned
 * (detokenize), it goes through pgi_utf8_append: an invalid byte and a NUL
 * each become U+FFFD, as llama.cpp's server does; an incomplete character
 * at the end of a piece is held back in a PgiUtf8Pending until the next
 * piece completes it, or becomes U+FFFD at the end of the text.
 */
#ifndef PG_INFER_TEXT_UTF8_H
#define PG_INFER_TEXT_UTF8_H

#include "postgres.h"

#include "lib/stringinfo.h"

typedef struct PgiUtf8Pending
{
	unsigned char bytes[4];
	int			length;			/* 0..3: the start of a character */
} PgiUtf8Pending;

/* Appends the valid UTF-8 of pending + data to out; keeps an incomplete
 * character at the end in pending unless final. */
extern void pgi_utf8_append(StringInfo out, PgiUtf8Pending *pending,
							const char *data, Size length, bool final);

#endif
