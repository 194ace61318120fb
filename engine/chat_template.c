/*
 * chat_template.c — chat families recognised by their markers, rendered by
 * hand as their templates render messages, and replies split into
 * reasoning and answer.  See chat_template.h.
 *
 * What each family writes (M marks a special marker, recorded as a span):
 *   llama-3  M<|start_header_id|>ROLE M<|end_header_id|>\n\nTRIMMED M<|eot_id|>
 *   chatml   M<|im_start|>ROLE\nTEXT M<|im_end|>\n
 *   qwen3    chatml; an assistant turn after the last user turn carries its
 *            reasoning: M<|im_start|>assistant\n M<think>\nR\n M</think>\n\nTEXT
 *   qwen3.5  qwen3 with trimmed texts, every assistant turn after the last
 *            user turn with its (maybe empty) <think> block, and the
 *            generation prompt opening one: M<|im_start|>assistant\n M<think>\n
 *   gemma    M<start_of_turn>user|model\nTRIMMED M<end_of_turn>\n, the
 *            trimmed system text opening the first user turn
 *   gemma3   the same, with the system text untrimmed + "\n\n" opening the
 *            first turn after it
 *   gpt-oss  M<|start|>system M<|message|>(model identity, dates, reasoning
 *            effort, channels) M<|end|>, a first system message as the
 *            developer's "# Instructions", then M<|start|>ROLE M<|message|>TEXT
 *            M<|end|> (assistant: M<|start|>assistant M<|channel|>final
 *            M<|message|>TEXT M<|end|>), generation prompt M<|start|>assistant
 *   phi-3    M<|ROLE|>\nTEXT M<|end|>\n;  zephyr: the same with M</s>
 *   llama-2  [INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ANSWER M</s>M<s>[INST] ...
 *   mistral  [INST] SYSTEM\n\nUSER [/INST]ANSWER M</s>[INST] ...
 */
#include "chat_template.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pgi_memory.h"

static const struct {
    pgi_chat_family family;
    const char *name;
} family_names[] = {
    {PGI_CHAT_LLAMA3, "llama-3"},
    {PGI_CHAT_CHATML, "chatml"},
    {PGI_CHAT_QWEN3, "qwen3"},
    {PGI_CHAT_QWEN35, "qwen3.5"},
    {PGI_CHAT_QWEN35, "qwen35"},
    {PGI_CHAT_GEMMA, "gemma"},
    {PGI_CHAT_GEMMA3, "gemma3"},
    {PGI_CHAT_GEMMA3, "gemma-3"},
    {PGI_CHAT_GPT_OSS, "gpt-oss"},
    {PGI_CHAT_GPT_OSS, "harmony"},
    {PGI_CHAT_PHI3, "phi-3"},
    {PGI_CHAT_ZEPHYR, "zephyr"},
    {PGI_CHAT_LLAMA2, "llama-2"},
    {PGI_CHAT_MISTRAL, "mistral"},
};

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

pgi_chat_family
pgi_chat_family_by_name(const char *name)
{
    for (size_t i = 0; i < N_ELEMENTS(family_names); i++)
        if (strcasecmp(name, family_names[i].name) == 0)
            return family_names[i].family;
    return PGI_CHAT_UNKNOWN;
}

const char *
pgi_chat_family_name(pgi_chat_family family)
{
    for (size_t i = 0; i < N_ELEMENTS(family_names); i++)
        if (family_names[i].family == family)
            return family_names[i].name;
    return "unknown";
}

static bool
has(const char *text, const char *marker)
{
    return strstr(text, marker) != NULL;
}

pgi_chat_family
pgi_chat_detect(const char *t)
{
    if (has(t, "<|start|>") && has(t, "<|channel|>"))
        return PGI_CHAT_GPT_OSS;
    if (has(t, "<|start_header_id|>"))
        return PGI_CHAT_LLAMA3;
    if (has(t, "<|im_start|>"))
    {
        if (!has(t, "<think>"))
            return PGI_CHAT_CHATML;
        /* Qwen 3.5 opens the think block in its generation prompt */
        return has(t, "{{- '<think>\\n' }}") ? PGI_CHAT_QWEN35 : PGI_CHAT_QWEN3;
    }
    if (has(t, "<start_of_turn>"))
        return has(t, "first_user_prefix") ? PGI_CHAT_GEMMA3 : PGI_CHAT_GEMMA;
    if (has(t, "<|user|>"))
        return has(t, "<|end|>") ? PGI_CHAT_PHI3 : PGI_CHAT_ZEPHYR;
    if (has(t, "[INST]"))
        return has(t, "<<SYS>>") ? PGI_CHAT_LLAMA2 : PGI_CHAT_MISTRAL;
    return PGI_CHAT_UNKNOWN;
}

/* ------------------------------------------------------------ building */

typedef struct builder {
    pgi_chat_prompt *p;
    bool failed;
} builder;

static void
put_n(builder *b, const char *s, size_t n)
{
    pgi_chat_prompt *p = b->p;

    if (b->failed)
        return;
    if (p->length + n + 1 > p->text_capacity)
    {
        size_t grown = p->text_capacity ? p->text_capacity : 256;
        char *bigger;

        while (grown < p->length + n + 1)
            grown *= 2;
        bigger = pgi_realloc(p->text, p->text_capacity, grown);
        if (bigger == NULL)
        {
            b->failed = true;
            return;
        }
        p->text = bigger;
        p->text_capacity = grown;
    }
    memcpy(p->text + p->length, s, n);
    p->length += n;
    p->text[p->length] = '\0';
}

static void
put(builder *b, const char *s)
{
    put_n(b, s, strlen(s));
}

/* A marker of the template: written, and recorded as a special span. */
static void
mark(builder *b, const char *s)
{
    pgi_chat_prompt *p = b->p;
    size_t at = p->length, n = strlen(s);

    put_n(b, s, n);
    if (b->failed)
        return;
    if (p->n_specials == p->specials_capacity)
    {
        size_t grown = p->specials_capacity ? p->specials_capacity * 2 : 32;
        pgi_text_span *bigger = pgi_realloc(p->specials, p->specials_capacity * sizeof(pgi_text_span),
                                            grown * sizeof(pgi_text_span));

        if (bigger == NULL)
        {
            b->failed = true;
            return;
        }
        p->specials = bigger;
        p->specials_capacity = grown;
    }
    p->specials[p->n_specials].offset = at;
    p->specials[p->n_specials].length = n;
    p->n_specials++;
}

static bool
is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* s[0..n) without white space at either end (Jinja's trim) */
static void
put_trimmed(builder *b, const char *s, size_t n)
{
    while (n > 0 && is_space(*s))
        s++, n--;
    while (n > 0 && is_space(s[n - 1]))
        n--;
    put_n(b, s, n);
}

/* s[0..n) without newlines at the ends chosen (Python's strip('\n')) */
static void
strip_newlines(const char **s, size_t *n, bool left, bool right)
{
    while (left && *n > 0 && **s == '\n')
        (*s)++, (*n)--;
    while (right && *n > 0 && (*s)[*n - 1] == '\n')
        (*n)--;
}

static bool
is_role(const pgi_chat_message *m, const char *role)
{
    return strcmp(m->role, role) == 0;
}

/* The last occurrence of needle in s[0..n), or NULL. */
static const char *
find_last(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    const char *found = NULL;

    for (const char *p = s; n >= k && p + k <= s + n; p++)
    {
        p = memmem(p, (size_t) (s + n - p), needle, k);
        if (p == NULL)
            break;
        found = p;
    }
    return found;
}

/*
 * An assistant turn's reasoning and answer as Qwen's templates find them:
 * the reasoning given apart, else the text before the first </think> (after
 * its last <think>, newlines stripped), the answer being the text after the
 * last </think> without leading newlines.
 */
static void
qwen_parts(const pgi_chat_message *m, const char **reasoning, size_t *reasoning_length,
           const char **content, size_t *content_length)
{
    const char *c = m->content;
    size_t n = strlen(c);
    const char *first_close = strstr(c, "</think>");

    *content = c;
    *content_length = n;
    *reasoning = "";
    *reasoning_length = 0;
    if (m->reasoning != NULL)
    {
        *reasoning = m->reasoning;
        *reasoning_length = strlen(m->reasoning);
        return;
    }
    if (first_close == NULL)
        return;
    {
        const char *last_close = find_last(c, n, "</think>");
        const char *r = c;
        size_t rn = (size_t) (first_close - c);
        const char *open;

        *content = last_close + strlen("</think>");
        *content_length = (size_t) (c + n - *content);
        strip_newlines(content, content_length, true, false);
        strip_newlines(&r, &rn, false, true);
        open = find_last(r, rn, "<think>");
        if (open != NULL)
        {
            rn -= (size_t) (open + strlen("<think>") - r);
            r = open + strlen("<think>");
        }
        strip_newlines(&r, &rn, true, false);
        *reasoning = r;
        *reasoning_length = rn;
    }
}

static int
last_user_index(const pgi_chat_message *messages, int n)
{
    for (int i = n - 1; i >= 0; i--)
        if (is_role(&messages[i], "user"))
            return i;
    return -1;
}

static void
render_qwen3(builder *b, const pgi_chat_message *messages, int n)
{
    int last_query = last_user_index(messages, n);

    if (last_query < 0)
        last_query = n - 1;
    for (int i = 0; i < n; i++)
    {
        const pgi_chat_message *m = &messages[i];

        if (!is_role(m, "assistant"))
        {
            mark(b, "<|im_start|>");
            put(b, m->role);
            put(b, "\n");
            put(b, m->content);
            mark(b, "<|im_end|>");
            put(b, "\n");
            continue;
        }
        {
            const char *r, *c;
            size_t rn, cn;

            qwen_parts(m, &r, &rn, &c, &cn);
            mark(b, "<|im_start|>");
            put(b, "assistant\n");
            if (i > last_query && (i == n - 1 || rn > 0))
            {
                strip_newlines(&r, &rn, true, true);
                strip_newlines(&c, &cn, true, false);
                mark(b, "<think>");
                put(b, "\n");
                put_n(b, r, rn);
                put(b, "\n");
                mark(b, "</think>");
                put(b, "\n\n");
            }
            put_n(b, c, cn);
            mark(b, "<|im_end|>");
            put(b, "\n");
        }
    }
    mark(b, "<|im_start|>");
    put(b, "assistant\n");
}

static pgi_status
render_qwen35(builder *b, const pgi_chat_message *messages, int n, pgi_error *err)
{
    int last_query = last_user_index(messages, n);

    if (last_query < 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "no user message: qwen3.5's template needs one");
    for (int i = 0; i < n; i++)
    {
        const pgi_chat_message *m = &messages[i];

        if (is_role(m, "system") && i > 0)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "message %d: qwen3.5's template takes a system message only first", i + 1);
        if (!is_role(m, "assistant"))
        {
            mark(b, "<|im_start|>");
            put(b, m->role);
            put(b, "\n");
            put_trimmed(b, m->content, strlen(m->content));
            mark(b, "<|im_end|>");
            put(b, "\n");
            continue;
        }
        {
            /* the template trims the content before looking for </think> */
            pgi_chat_message trimmed = *m;
            const char *c = m->content, *r;
            size_t cn = strlen(c), rn;
            char *copy;

            while (cn > 0 && is_space(*c))
                c++, cn--;
            while (cn > 0 && is_space(c[cn - 1]))
                cn--;
            copy = pgi_alloc(cn + 1);
            if (copy == NULL)
            {
                b->failed = true;
                return PGI_OK;
            }
            memcpy(copy, c, cn);
            copy[cn] = '\0';
            trimmed.content = copy;
            qwen_parts(&trimmed, &r, &rn, &c, &cn);
            mark(b, "<|im_start|>");
            put(b, "assistant\n");
            if (i > last_query)
            {
                mark(b, "<think>");
                put(b, "\n");
                put_trimmed(b, r, rn);
                put(b, "\n");
                mark(b, "</think>");
                put(b, "\n\n");
            }
            put_n(b, c, cn);
            mark(b, "<|im_end|>");
            put(b, "\n");
            pgi_free(copy);
        }
    }
    mark(b, "<|im_start|>");
    put(b, "assistant\n");
    mark(b, "<think>");
    put(b, "\n");
    return PGI_OK;
}

static void
render_gemma(builder *b, const pgi_chat_message *messages, int n, bool gemma3)
{
    const char *system = NULL;
    int first = 0;

    if (gemma3 && n > 0 && is_role(&messages[0], "system"))
    {
        system = messages[0].content;
        first = 1;
    }
    for (int i = first; i < n; i++)
    {
        const pgi_chat_message *m = &messages[i];

        if (gemma3)
        {
            mark(b, "<start_of_turn>");
            put(b, is_role(m, "assistant") ? "model" : m->role);
            put(b, "\n");
            if (i == first && system != NULL)
            {
                put(b, system);
                put(b, "\n\n");
            }
        }
        else
        {
            if (is_role(m, "system"))
            {
                system = m->content;
                continue;
            }
            mark(b, "<start_of_turn>");
            put(b, is_role(m, "assistant") ? "model\n" : "user\n");
            if (system != NULL && is_role(m, "user"))
            {
                put_trimmed(b, system, strlen(system));
                put(b, "\n\n");
                system = NULL;
            }
        }
        put_trimmed(b, m->content, strlen(m->content));
        mark(b, "<end_of_turn>");
        put(b, "\n");
    }
    /* llama.cpp's gemma: a system message with no user turn after it */
    if (!gemma3 && system != NULL)
    {
        mark(b, "<start_of_turn>");
        put(b, "user\n");
        put_trimmed(b, system, strlen(system));
        mark(b, "<end_of_turn>");
        put(b, "\n");
    }
    mark(b, "<start_of_turn>");
    put(b, "model\n");
}

static pgi_status
render_gpt_oss(builder *b, const pgi_chat_message *messages, int n, const char *date,
               pgi_error *err)
{
    int first = 0;

    mark(b, "<|start|>");
    put(b, "system");
    mark(b, "<|message|>");
    put(b, "You are ChatGPT, a large language model trained by OpenAI.\n"
           "Knowledge cutoff: 2024-06\n"
           "Current date: ");
    put(b, date != NULL ? date : "");
    put(b, "\n\nReasoning: medium\n\n"
           "# Valid channels: analysis, commentary, final. Channel must be included for every message.");
    mark(b, "<|end|>");
    if (n > 0 && is_role(&messages[0], "system"))
    {
        first = 1;
        if (messages[0].content[0] != '\0')
        {
            mark(b, "<|start|>");
            put(b, "developer");
            mark(b, "<|message|>");
            put(b, "# Instructions\n\n");
            put(b, messages[0].content);
            put(b, "\n\n");
            mark(b, "<|end|>");
        }
    }
    for (int i = first; i < n; i++)
    {
        const pgi_chat_message *m = &messages[i];

        if (is_role(m, "assistant"))
        {
            if (has(m->content, "<|channel|>analysis<|message|>") ||
                has(m->content, "<|channel|>final<|message|>"))
                return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                                "message %d: an assistant message must not hold <|channel|> markers; "
                                "pass its reasoning apart", i + 1);
            mark(b, "<|start|>");
            put(b, "assistant");
            mark(b, "<|channel|>");
            put(b, "final");
            mark(b, "<|message|>");
            put(b, m->content);
            mark(b, "<|end|>");
        }
        else if (is_role(m, "user"))
        {
            mark(b, "<|start|>");
            put(b, "user");
            mark(b, "<|message|>");
            put(b, m->content);
            mark(b, "<|end|>");
        }
        /* the template renders no later system message */
    }
    mark(b, "<|start|>");
    put(b, "assistant");
    return PGI_OK;
}

/* [INST] families: the system text goes into the first user turn. */
static void
render_inst(builder *b, const pgi_chat_message *messages, int n, bool llama2)
{
    const char *system = NULL;
    bool first_turn = true;

    for (int i = 0; i < n; i++)
    {
        const pgi_chat_message *m = &messages[i];

        if (is_role(m, "system"))
        {
            system = m->content;
            continue;
        }
        if (is_role(m, "user"))
        {
            if (!first_turn && llama2)
                mark(b, "<s>");
            put(b, "[INST] ");
            if (system != NULL)
            {
                if (llama2)
                {
                    put(b, "<<SYS>>\n");
                    put_trimmed(b, system, strlen(system));
                    put(b, "\n<</SYS>>\n\n");
                }
                else
                {
                    put(b, system);
                    put(b, "\n\n");
                }
                system = NULL;
            }
            if (llama2)
                put_trimmed(b, m->content, strlen(m->content));
            else
                put(b, m->content);
            put(b, " [/INST]");
        }
        else if (llama2)
        {
            put(b, " ");
            put_trimmed(b, m->content, strlen(m->content));
            put(b, " ");
            mark(b, "</s>");
        }
        else
        {
            put(b, m->content);
            mark(b, "</s>");
        }
        first_turn = false;
    }
    /* a system message alone still reaches the model */
    if (system != NULL)
    {
        if (llama2)
        {
            put(b, "[INST] <<SYS>>\n");
            put_trimmed(b, system, strlen(system));
            put(b, "\n<</SYS>>\n\n [/INST]");
        }
        else
        {
            put(b, "[INST] ");
            put(b, system);
            put(b, " [/INST]");
        }
    }
}

pgi_status
pgi_chat_render(pgi_chat_family family, const pgi_chat_message *messages, int n, const char *date,
                pgi_chat_prompt *prompt, pgi_error *err)
{
    builder b = {prompt, false};
    pgi_status status = PGI_OK;

    memset(prompt, 0, sizeof(*prompt));
    put(&b, "");
    switch (family)
    {
        case PGI_CHAT_LLAMA3:
            for (int i = 0; i < n; i++)
            {
                mark(&b, "<|start_header_id|>");
                put(&b, messages[i].role);
                mark(&b, "<|end_header_id|>");
                put(&b, "\n\n");
                put_trimmed(&b, messages[i].content, strlen(messages[i].content));
                mark(&b, "<|eot_id|>");
            }
            mark(&b, "<|start_header_id|>");
            put(&b, "assistant");
            mark(&b, "<|end_header_id|>");
            put(&b, "\n\n");
            break;
        case PGI_CHAT_CHATML:
            for (int i = 0; i < n; i++)
            {
                mark(&b, "<|im_start|>");
                put(&b, messages[i].role);
                put(&b, "\n");
                put(&b, messages[i].content);
                mark(&b, "<|im_end|>");
                put(&b, "\n");
            }
            mark(&b, "<|im_start|>");
            put(&b, "assistant\n");
            break;
        case PGI_CHAT_QWEN3:
            render_qwen3(&b, messages, n);
            break;
        case PGI_CHAT_QWEN35:
            status = render_qwen35(&b, messages, n, err);
            break;
        case PGI_CHAT_GEMMA:
        case PGI_CHAT_GEMMA3:
            render_gemma(&b, messages, n, family == PGI_CHAT_GEMMA3);
            break;
        case PGI_CHAT_GPT_OSS:
            status = render_gpt_oss(&b, messages, n, date, err);
            break;
        case PGI_CHAT_PHI3:
        case PGI_CHAT_ZEPHYR:
            for (int i = 0; i < n; i++)
            {
                char role[64];

                snprintf(role, sizeof(role), "<|%s|>", messages[i].role);
                mark(&b, role);
                put(&b, "\n");
                put(&b, messages[i].content);
                mark(&b, family == PGI_CHAT_PHI3 ? "<|end|>" : "</s>");
                put(&b, "\n");
            }
            mark(&b, "<|assistant|>");
            put(&b, "\n");
            break;
        case PGI_CHAT_LLAMA2:
            render_inst(&b, messages, n, true);
            break;
        case PGI_CHAT_MISTRAL:
            render_inst(&b, messages, n, false);
            break;
        case PGI_CHAT_UNKNOWN:
            status = pgi_fail(err, PGI_ERR_UNSUPPORTED, "unknown chat family");
            break;
    }
    if (status == PGI_OK && b.failed)
        status = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory rendering a chat prompt");
    if (status != PGI_OK)
        pgi_chat_prompt_free(prompt);
    return status;
}

void
pgi_chat_prompt_free(pgi_chat_prompt *prompt)
{
    pgi_free(prompt->text);
    pgi_free(prompt->specials);
    memset(prompt, 0, sizeof(*prompt));
}

/* ------------------------------------------------------------ replies */

static bool
starts_with(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);

    return n >= k && memcmp(s, prefix, k) == 0;
}

/* Harmony: [<|start|>assistant]<|channel|>NAME<|message|>BODY(<|end|>|<|return|>|<|call|>|end) ... */
static void
split_harmony(const char *reply, size_t n, pgi_chat_reply *out)
{
    static const char *const enders[] = {"<|end|>", "<|return|>", "<|call|>", "<|start|>"};
    size_t pos = 0;
    bool found_final = false;

    if (!starts_with(reply, n, "<|channel|>") && !starts_with(reply, n, "<|start|>"))
        return;                 /* no channels: all of it is the answer */
    while (pos < n && !found_final)
    {
        const char *message;
        size_t name_at, name_length, body_at, body_end;

        if (starts_with(reply + pos, n - pos, "<|start|>"))
        {
            const char *channel = memmem(reply + pos, n - pos, "<|channel|>", strlen("<|channel|>"));

            if (channel == NULL)
                break;
            pos = (size_t) (channel - reply);
        }
        if (!starts_with(reply + pos, n - pos, "<|channel|>"))
            break;
        name_at = pos + strlen("<|channel|>");
        message = memmem(reply + name_at, n - name_at, "<|message|>", strlen("<|message|>"));
        if (message == NULL)
            break;
        name_length = (size_t) (message - (reply + name_at));
        body_at = (size_t) (message - reply) + strlen("<|message|>");
        body_end = n;
        for (size_t e = 0; e < N_ELEMENTS(enders); e++)
        {
            const char *end = memmem(reply + body_at, n - body_at, enders[e], strlen(enders[e]));

            if (end != NULL && (size_t) (end - reply) < body_end)
                body_end = (size_t) (end - reply);
        }
        if (name_length >= 8 && memcmp(reply + name_at, "analysis", 8) == 0 && !out->has_reasoning)
        {
            out->has_reasoning = true;
            out->reasoning_offset = body_at;
            out->reasoning_length = body_end - body_at;
        }
        else if (name_length >= 5 && memcmp(reply + name_at, "final", 5) == 0)
        {
            found_final = true;
            out->content_offset = body_at;
            out->content_length = body_end - body_at;
            out->prefix_length = body_at;
        }
        pos = body_end;
        for (size_t e = 0; e < 3; e++)
            if (starts_with(reply + pos, n - pos, enders[e]))
                pos += strlen(enders[e]);
    }
    if (!found_final)
    {
        /* cut short before the answer: no answer yet */
        out->content_offset = n;
        out->content_length = 0;
        out->prefix_length = n;
    }
}

static void
split_think(const char *reply, size_t n, bool opened_by_prompt, pgi_chat_reply *out)
{
    const char *close = memmem(reply, n, "</think>", strlen("</think>"));
    const char *r = reply;
    size_t rn;

    if (close == NULL)
    {
        size_t lead = 0;

        while (lead < n && is_space(reply[lead]))
            lead++;
        if (!opened_by_prompt && !starts_with(reply + lead, n - lead, "<think>"))
            return;             /* no reasoning */
        /* cut short inside the reasoning */
        rn = n;
        if (!opened_by_prompt)
        {
            r = reply + lead + strlen("<think>");
            rn = n - lead - strlen("<think>");
        }
        strip_newlines(&r, &rn, true, true);
        out->has_reasoning = rn > 0;
        out->reasoning_offset = (size_t) (r - reply);
        out->reasoning_length = rn;
        out->content_offset = n;
        out->content_length = 0;
        out->prefix_length = n;
        return;
    }
    rn = (size_t) (close - reply);
    {
        const char *open = find_last(reply, rn, "<think>");

        if (open != NULL)
        {
            rn -= (size_t) (open + strlen("<think>") - reply);
            r = open + strlen("<think>");
        }
    }
    strip_newlines(&r, &rn, true, true);
    while (rn > 0 && is_space(r[rn - 1]))
        rn--;
    while (rn > 0 && is_space(*r))
        r++, rn--;
    out->has_reasoning = rn > 0;
    out->reasoning_offset = (size_t) (r - reply);
    out->reasoning_length = rn;
    {
        const char *c = close + strlen("</think>");
        size_t cn = (size_t) (reply + n - c);

        strip_newlines(&c, &cn, true, false);
        out->content_offset = (size_t) (c - reply);
        out->content_length = cn;
        out->prefix_length = out->content_offset;
    }
}

void
pgi_chat_split_reply(pgi_chat_family family, const char *reply, size_t length, pgi_chat_reply *out)
{
    memset(out, 0, sizeof(*out));
    out->content_length = length;
    switch (family)
    {
        case PGI_CHAT_QWEN3:
            split_think(reply, length, false, out);
            break;
        case PGI_CHAT_QWEN35:
            split_think(reply, length, true, out);
            break;
        case PGI_CHAT_GPT_OSS:
            split_harmony(reply, length, out);
            break;
        default:
            break;
    }
}
