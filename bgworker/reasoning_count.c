/*
 * reasoning_count.c — the tokens a reply spent before its answer (see
 * reasoning_count.h).  Memory comes from the caller's current context (the
 * call's) and is freed by reasoning_count_finish.
 */
#include "reasoning_count.h"

#include "chat_template.h"

void
reasoning_count_start(ReasoningCount *r, int family)
{
	memset(r, 0, sizeof(*r));
	if (family != PGI_CHAT_UNKNOWN &&
		strcmp(pgi_chat_family_name((pgi_chat_family) family), "unknown") != 0)
		r->family = family;
}

void
reasoning_count_add(ReasoningCount *r, const char *text, int length, int generated_tokens)
{
	if (r->family == 0 || length <= 0)
		return;
	if (r->length + length + 1 > r->text_capacity)
	{
		int			capacity = Max(r->text_capacity * 2, r->length + length + 1);

		capacity = Max(capacity, 1024);
		r->text = r->text == NULL ? palloc(capacity) : repalloc(r->text, capacity);
		r->text_capacity = capacity;
	}
	memcpy(r->text + r->length, text, length);
	r->length += length;
	r->text[r->length] = '\0';
	if (r->n_pieces == r->piece_capacity)
	{
		r->piece_capacity = Max(r->piece_capacity * 2, 64);
		r->piece_end = r->piece_end == NULL
			? palloc(sizeof(int32) * r->piece_capacity)
			: repalloc(r->piece_end, sizeof(int32) * r->piece_capacity);
		r->piece_tokens = r->piece_tokens == NULL
			? palloc(sizeof(int32) * r->piece_capacity)
			: repalloc(r->piece_tokens, sizeof(int32) * r->piece_capacity);
	}
	r->piece_end[r->n_pieces] = r->length;
	r->piece_tokens[r->n_pieces] = generated_tokens;
	r->n_pieces++;
}

int
reasoning_count_finish(ReasoningCount *r, int completion_tokens)
{
	pgi_chat_reply reply;
	int			tokens = 0;

	if (r->family != 0 && r->length > 0)
	{
		memset(&reply, 0, sizeof(reply));
		pgi_chat_split_reply((pgi_chat_family) r->family, r->text, (size_t) r->length, &reply);
		/* the first piece that reaches the answer's start */
		if (reply.prefix_length > 0)
			for (int i = 0; i < r->n_pieces; i++)
				if ((Size) r->piece_end[i] >= reply.prefix_length)
				{
					tokens = r->piece_tokens[i];
					break;
				}
	}
	if (r->text != NULL)
		pfree(r->text);
	if (r->piece_end != NULL)
	{
		pfree(r->piece_end);
		pfree(r->piece_tokens);
	}
	memset(r, 0, sizeof(*r));
	return Max(0, Min(tokens, completion_tokens));
}
