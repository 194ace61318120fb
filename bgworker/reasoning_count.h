/*
 * reasoning_count.h — how many of a reply's tokens are reasoning.
 *
 * chat() asks for replies of a chat family (ext/protocol.h, reply_family);
 * the worker keeps the text it sends for such a sequence, with the number
 * of tokens generated when each piece was sent, and at the end takes the
 * reply apart exactly as chat() does (engine/chat_template.c): the tokens
 * up to the start of the answer are reasoning.  A piece held back by a stop
 * string counts with the token that released it.
 */
#ifndef PG_INFER_REASONING_COUNT_H
#define PG_INFER_REASONING_COUNT_H

#include "postgres.h"

typedef struct ReasoningCount
{
	int			family;			/* pgi_chat_family; 0: nothing is kept */
	char	   *text;			/* the reply so far */
	int			length;
	int			text_capacity;
	int32	   *piece_end;		/* bytes of text after piece i */
	int32	   *piece_tokens;	/* tokens generated when piece i was sent */
	int			n_pieces;
	int			piece_capacity;
} ReasoningCount;

/* family outside the known chat families counts nothing (no error: the
 * count is bookkeeping, the reply is served as usual). */
extern void reasoning_count_start(ReasoningCount *r, int family);
extern void reasoning_count_add(ReasoningCount *r, const char *text, int length,
								int generated_tokens);
/* The reasoning tokens of the finished reply, at most completion_tokens. */
extern int	reasoning_count_finish(ReasoningCount *r, int completion_tokens);

#endif
