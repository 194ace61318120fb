/*
 * tokenizer.h — text <-> token ids for GGUF llama-family models.
 *
 * Two algorithms, chosen by the GGUF key tokenizer.ggml.model:
 *   "llama"  SentencePiece-style: spaces become U+2581, an optional space
 *            prefix, pieces merged by score, byte fallback (<0xNN>) for
 *            anything the vocabulary lacks.
 *   "gpt2"   byte-level BPE: the text is split by the pre-tokenizer named by
 *            tokenizer.ggml.pre, each split's bytes are mapped to GPT-2's
 *            byte->unicode alphabet and merged by rank (tokenizer.ggml.merges).
 * Results equal llama.cpp's for the same vocabulary (its test vectors in
 * ../shared/models/vocab pass exactly).
 *
 * A loaded pgi_tokenizer is immutable, owns copies of everything it needs
 * (the gguf_file may be closed afterwards) and may be used from many threads
 * at once.  All memory comes from pgi_alloc.
 */
#ifndef PGI_TOKENIZER_H
#define PGI_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pgi_error.h"

typedef struct pgi_tokenizer pgi_tokenizer;

typedef enum pgi_tokenizer_kind {
    PGI_TOKENIZER_SPM = 1,      /* tokenizer.ggml.model = "llama" */
    PGI_TOKENIZER_BPE = 2,      /* tokenizer.ggml.model = "gpt2"  */
    PGI_TOKENIZER_WPM = 3       /* tokenizer.ggml.model = "bert"  (WordPiece) */
} pgi_tokenizer_kind;

/* tokenizer.ggml.token_type values (a GGUF fact). */
typedef enum pgi_token_type {
    PGI_TOKEN_UNDEFINED = 0,
    PGI_TOKEN_NORMAL = 1,
    PGI_TOKEN_UNKNOWN = 2,
    PGI_TOKEN_CONTROL = 3,
    PGI_TOKEN_USER_DEFINED = 4,
    PGI_TOKEN_UNUSED = 5,
    PGI_TOKEN_BYTE = 6
} pgi_token_type;

/* No such token (an absent BOS/EOS/EOT...). */
#define PGI_TOKEN_NONE (-1)

/*
 * Build a tokenizer from a model's metadata.  Refuses, with
 * PGI_ERR_UNSUPPORTED and the name in the message, an unknown
 * tokenizer.ggml.model or (for "gpt2") an unknown tokenizer.ggml.pre.
 * Supported pre-tokenizers: "default" (also when the key is absent),
 * "llama3"/"llama-bpe", "qwen2", "qwen35", "deepseek-llm", "deepseek-coder", "falcon",
 * "mpt", "starcoder", "refact", "gpt-2", and the aliases llama.cpp maps to
 * the same patterns (llama-v3, falcon3, dbrx, smaug-bpe, deepseek-r1-qwen,
 * stablelm2, megrez, phi-2, roberta-bpe, gigachat, olmo, jais, codeshell,
 * exaone, minerva-7b, command-r, smollm).  For "llama" (SPM) the pre key is
 * ignored, as llama.cpp ignores it.  Malformed metadata (missing tokens or
 * merges, arrays of the wrong type or length) gives PGI_ERR_FORMAT;
 * special-token ids out of range keep their defaults, as in llama.cpp.
 */
pgi_status pgi_tokenizer_load(const gguf_file *file, pgi_tokenizer **out,
                              pgi_error *err);
void pgi_tokenizer_free(pgi_tokenizer *tokenizer);

/* ------------------------------------------------------------ accessors */
pgi_tokenizer_kind pgi_tokenizer_kind_of(const pgi_tokenizer *tokenizer);
/* The pre-tokenizer name as stored in the file ("default" when absent). */
const char *pgi_tokenizer_pre_name(const pgi_tokenizer *tokenizer);
int32_t pgi_tokenizer_vocab_size(const pgi_tokenizer *tokenizer);
/* Special ids, or PGI_TOKEN_NONE when the model has none. */
int32_t pgi_tokenizer_bos(const pgi_tokenizer *tokenizer);
int32_t pgi_tokenizer_eos(const pgi_tokenizer *tokenizer);
/* End-of-turn: tokenizer.ggml.eot_token_id, else the first token found of
 * <|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, <EOT>
 * (llama.cpp's guess); PGI_TOKEN_NONE if none. */
int32_t pgi_tokenizer_eot(const pgi_tokenizer *tokenizer);
int32_t pgi_tokenizer_unknown(const pgi_tokenizer *tokenizer);
int32_t pgi_tokenizer_padding(const pgi_tokenizer *tokenizer);
/* Whether to add BOS / EOS by default (tokenizer.ggml.add_bos_token /
 * add_eos_token; when absent, as llama.cpp: BOS yes for SPM and for the
 * llama3 pre-tokenizer, no for other BPE; EOS no). */
bool pgi_tokenizer_adds_bos(const pgi_tokenizer *tokenizer);
bool pgi_tokenizer_adds_eos(const pgi_tokenizer *tokenizer);
/* True for EOS, EOT and other end-of-generation control tokens. */
bool pgi_tokenizer_is_end_of_generation(const pgi_tokenizer *tokenizer, int32_t id);
/* PGI_TOKEN_UNDEFINED for an id out of range. */
pgi_token_type pgi_tokenizer_token_type(const pgi_tokenizer *tokenizer, int32_t id);
/* The token's vocabulary string (not NUL-terminated; *length set), exactly
 * as stored: "▁the", "Ġthe", "<0x0A>", "<s>".  NULL for an id out of range. */
const char *pgi_tokenizer_token_text(const pgi_tokenizer *tokenizer, int32_t id,
                                     size_t *length);
/* Longest piece (in bytes) pgi_token_piece can produce: a buffer of this
 * size always suffices. */
size_t pgi_tokenizer_max_piece_length(const pgi_tokenizer *tokenizer);

/* ------------------------------------------------------------ encoding */
/*
 * Tokenize length bytes of text (need not be NUL-terminated).
 *   add_bos        prepend BOS (if the model has one); the usual value is
 *                  pgi_tokenizer_adds_bos(); EOS is appended too when
 *                  add_bos is true and pgi_tokenizer_adds_eos() says so
 *                  (llama.cpp's "add_special").
 *   parse_special  text spelling a control or user-defined token (e.g.
 *                  "<|im_start|>", "</s>") becomes that token; otherwise it
 *                  is tokenized as ordinary text.  User-defined tokens are
 *                  always matched, as in llama.cpp.
 * Output: at most capacity ids are written to tokens (which may be NULL when
 * capacity is 0) and *n_tokens is set to the number of ids the text needs.
 * Returns PGI_OK when they all fit; when capacity is too small, returns
 * PGI_ERR_INVALID_ARGUMENT with *n_tokens > capacity (call again with
 * capacity >= *n_tokens; the first capacity ids are already correct).
 * Text that is not valid UTF-8 never fails, and is read as llama.cpp reads
 * it: SPM encodes invalid bytes by byte fallback (they come back on
 * decoding, except that a lead byte takes the next bytes with it, so a
 * space among them comes back as U+2581); BPE reads each invalid byte as
 * U+FFFD.
 */
/* The longest text one call tokenizes (token counts stay within an int);
 * longer is PGI_ERR_INVALID_ARGUMENT.  pg_infer.max_input_bytes stays below
 * it (a static assertion in ext/pg_infer.c). */
#define PGI_MAX_TOKENIZE_BYTES ((size_t) INT32_MAX / 4)

pgi_status pgi_tokenize(const pgi_tokenizer *tokenizer, const char *text, size_t length,
                        bool add_bos, bool parse_special, int32_t *tokens, int capacity,
                        int *n_tokens, pgi_error *err);

/* The same, into an array from pgi_alloc that the caller pgi_free()s
 * (*tokens is NULL when *n_tokens is 0). */
pgi_status pgi_tokenize_alloc(const pgi_tokenizer *tokenizer, const char *text,
                              size_t length, bool add_bos, bool parse_special,
                              int32_t **tokens, int *n_tokens, pgi_error *err);

/* A byte range of a text. */
typedef struct pgi_text_span {
    size_t offset;
    size_t length;
} pgi_text_span;

/*
 * Tokenize a chat prompt: control tokens are recognised only where their
 * text lies wholly inside one of the n_specials spans (the markers the chat
 * template wrote; sorted by offset, not overlapping); elsewhere the text is
 * tokenized as with parse_special false (user-defined tokens still match,
 * as in llama.cpp).  The text is not cut at span edges, so a prompt whose
 * messages hold no special-token text tokenizes exactly as with
 * parse_special true.  Output as pgi_tokenize_alloc.
 */
pgi_status pgi_tokenize_marked(const pgi_tokenizer *tokenizer, const char *text, size_t length,
                               bool add_bos, const pgi_text_span *specials, size_t n_specials,
                               int32_t **tokens, int *n_tokens, pgi_error *err);

/* ------------------------------------------------------------ decoding */
/*
 * The raw bytes a token stands for: SPM "▁" -> " ", byte tokens <0xNN> ->
 * that byte, GPT-2 byte-level characters -> their bytes, user-defined tokens
 * -> their text.  Control tokens (BOS, EOS, <|im_end|>...) give "" here; use
 * pgi_tokenizer_token_text to see them.  Bytes may be an incomplete UTF-8
 * sequence.  Writes at most capacity bytes (no NUL) and returns the piece's
 * full length (like snprintf: a return > capacity means truncated), or -1
 * for an id out of range.
 */
int pgi_token_piece(const pgi_tokenizer *tokenizer, int32_t id, char *buffer,
                    size_t capacity);

/*
 * Whole-sequence detokenization, exactly llama.cpp's llama_detokenize:
 *   remove_special   drop a leading BOS and a trailing EOS (when the model
 *                    adds them by default);
 *   unparse_special  render control tokens as their text ("<s>", ...)
 *                    instead of nothing.
 * For SPM with add_space_prefix the first token's leading space is removed
 * (unless a BOS was removed by remove_special: llama.cpp then keeps it), so
 *     detokenize(tokenize(s, add_bos=false)) == s
 * for SPM.  BPE vocabularies whose pre-tokenizer sets
 * clean_up_tokenization_spaces (gpt-2, llama3, falcon, ...; not qwen2 or
 * deepseek) get llama.cpp's space clean-up (" ," -> ",", " 's" -> "'s"...),
 * so they do not round-trip text such as "a , b".
 * Writes at most capacity bytes (no NUL) and returns the full length; a
 * return > capacity means the output was truncated (and not cleaned up):
 * call again with a bigger buffer.  Returns -1 for an id out of range.
 */
long pgi_detokenize(const pgi_tokenizer *tokenizer, const int32_t *tokens, int n_tokens,
                    bool remove_special, bool unparse_special, char *buffer, size_t capacity);

/*
 * Streaming detokenizer for generation: push tokens one at a time and get
 * back only complete UTF-8 characters; bytes of a character split across
 * tokens are held until it is complete.  Output is always valid UTF-8:
 * bytes that cannot start or continue a character become U+FFFD, and so
 * does an incomplete character at flush.
 *
 * strip_leading_space: for an SPM model with add_space_prefix, drop the
 * leading space of the first token's piece (what llama_detokenize does to a
 * sequence that does not start with BOS).  Pass false when streaming the
 * continuation of a prompt (llama.cpp's generation output prints each
 * piece as is: " there was ..."), true when the stream is a whole text
 * whose first token carries the prefix space.
 *
 * The struct is public so it can live on the stack; treat fields as private.
 */
typedef struct pgi_detokenizer {
    const pgi_tokenizer *tokenizer;
    char *output;               /* pgi_alloc'd; returned by push/flush */
    size_t output_capacity;
    unsigned char pending[4];   /* bytes of an unfinished character */
    int n_pending;
    bool strip_leading_space;
    bool at_start;              /* nothing emitted yet */
    bool render_special;        /* control tokens as their text (false after
                                 * init; a chat reply sets it to keep its
                                 * markers, e.g. harmony's <|channel|>) */
} pgi_detokenizer;

pgi_status pgi_detokenizer_init(pgi_detokenizer *detokenizer, const pgi_tokenizer *tokenizer,
                                bool strip_leading_space, pgi_error *err);
/* Returns the bytes now complete (maybe none: *length 0) in a buffer owned
 * by the detokenizer, valid until the next push/flush/free.  Returns NULL
 * (and *length 0) only for an id out of range. */
const char *pgi_detokenizer_push(pgi_detokenizer *detokenizer, int32_t id, size_t *length);
/* End of stream: returns whatever is held (as U+FFFD if incomplete) and
 * resets the detokenizer for a new stream. */
const char *pgi_detokenizer_flush(pgi_detokenizer *detokenizer, size_t *length);
void pgi_detokenizer_free(pgi_detokenizer *detokenizer);

#endif
