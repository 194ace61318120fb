/*
 * chat_template.h — chat prompts without Jinja: recognise a model's chat
 * template by markers only its family uses, render messages the way that
 * template does, and take a reply apart into reasoning and answer.
 *
 * The rendered prompt comes with the list of byte ranges the template
 * itself wrote as special markers (<|im_start|>, <start_of_turn>, ...).
 * Tokenizing with pgi_tokenize_marked() and that list makes those markers
 * special tokens and leaves everything the caller's messages contain as
 * plain text, so a user who types "<|im_start|>system" gets those
 * characters, not the token.
 *
 * Plain C11; memory from pgi_alloc.
 */
#ifndef PGI_CHAT_TEMPLATE_H
#define PGI_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "pgi_error.h"
#include "tokenizer.h"

typedef enum pgi_chat_family {
    PGI_CHAT_UNKNOWN = 0,
    PGI_CHAT_LLAMA3,
    PGI_CHAT_CHATML,
    PGI_CHAT_QWEN3,             /* chatml with <think> blocks */
    PGI_CHAT_QWEN35,            /* qwen3, whose generation prompt opens <think> */
    PGI_CHAT_GEMMA,             /* llama.cpp's gemma: the system text trimmed */
    PGI_CHAT_GEMMA3,            /* Gemma 3's template: system text + "\n\n" as is */
    PGI_CHAT_GPT_OSS,           /* OpenAI harmony */
    PGI_CHAT_PHI3,
    PGI_CHAT_ZEPHYR,
    PGI_CHAT_LLAMA2,
    PGI_CHAT_MISTRAL
} pgi_chat_family;

/* "llama-2, llama-3, chatml, ..." for messages listing what is known. */
#define PGI_CHAT_FAMILY_LIST \
    "llama-2, llama-3, chatml, qwen3, qwen3.5, mistral, phi-3, zephyr, gemma, gemma3, gpt-oss"

/* A family by its name (case-insensitive; also "qwen35", "gemma-3",
 * "harmony"); PGI_CHAT_UNKNOWN if none. */
pgi_chat_family pgi_chat_family_by_name(const char *name);
const char *pgi_chat_family_name(pgi_chat_family family);

/*
 * The family of a Jinja chat template, from markers (first rule that holds):
 *   <|start|> and <|channel|>                     gpt-oss
 *   <|start_header_id|>                           llama-3
 *   <|im_start|>, <think> and '<think>\n' opened
 *     in the generation prompt                    qwen3.5
 *   <|im_start|> and <think>                      qwen3
 *   <|im_start|>                                  chatml
 *   <start_of_turn> and first_user_prefix         gemma3
 *   <start_of_turn>                               gemma
 *   <|user|> and <|end|>                          phi-3
 *   <|user|>                                      zephyr
 *   [INST] and <<SYS>>                            llama-2
 *   [INST]                                        mistral
 */
pgi_chat_family pgi_chat_detect(const char *template_text);

typedef struct pgi_chat_message {
    const char *role;           /* "system", "user" or "assistant" */
    const char *content;
    const char *reasoning;      /* an assistant turn's reasoning_content, or NULL */
} pgi_chat_message;

typedef struct pgi_chat_prompt {
    char *text;                 /* NUL-terminated */
    size_t length;
    pgi_text_span *specials;    /* the template's markers, in order */
    size_t n_specials;
    size_t text_capacity;
    size_t specials_capacity;
} pgi_chat_prompt;

/*
 * Render messages as the family's template does with the generation prompt
 * added.  date ("YYYY-MM-DD") is the current date gpt-oss's system message
 * names.  On success the caller frees prompt with pgi_chat_prompt_free.
 */
pgi_status pgi_chat_render(pgi_chat_family family, const pgi_chat_message *messages, int n_messages,
                           const char *date, pgi_chat_prompt *prompt, pgi_error *err);
void pgi_chat_prompt_free(pgi_chat_prompt *prompt);

/*
 * A reply taken apart: the reasoning the model wrote before its answer
 * (Qwen's <think>...</think>, harmony's analysis channel) and the answer.
 * Offsets are into the reply text.  has_reasoning is false when the reply
 * holds no reasoning; then content is the whole reply.
 * prefix_length is how many bytes precede the answer (the reasoning with
 * its markers), for counting reasoning tokens.
 */
typedef struct pgi_chat_reply {
    bool has_reasoning;
    size_t reasoning_offset;
    size_t reasoning_length;
    size_t content_offset;
    size_t content_length;
    size_t prefix_length;
} pgi_chat_reply;

/* Split a reply generated after a prompt of the given family (whose control
 * tokens were rendered as text).  Families without reasoning give the whole
 * reply as content. */
void pgi_chat_split_reply(pgi_chat_family family, const char *reply, size_t length,
                          pgi_chat_reply *out);

#endif
