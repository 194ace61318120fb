/*
 * unicode.h — the code-point helpers the tokenizers need: UTF-8 decoding
 * that behaves like llama.cpp's (so token ids match), character classes for
 * the pre-tokenizer patterns, and GPT-2's byte <-> character alphabet.
 */
#ifndef PGI_UNICODE_H
#define PGI_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "unicode_tables.h"

#define PGI_REPLACEMENT_CHARACTER 0xFFFDu

/* Class bits returned by pgi_unicode_flags(). */
enum {
    PGI_UFLAG_UNDEFINED   = 0x0001,   /* Cn */
    PGI_UFLAG_NUMBER      = 0x0002,   /* \p{N} */
    PGI_UFLAG_LETTER      = 0x0004,   /* \p{L} */
    PGI_UFLAG_SEPARATOR   = 0x0008,   /* \p{Z} */
    PGI_UFLAG_MARK        = 0x0010,   /* \p{M} */
    PGI_UFLAG_PUNCTUATION = 0x0020,   /* \p{P} */
    PGI_UFLAG_SYMBOL      = 0x0040,   /* \p{S} */
    PGI_UFLAG_CONTROL     = 0x0080,   /* \p{C} other than Cn */
    PGI_UFLAG_WHITESPACE  = 0x0100,   /* Unicode White_Space (\s) */
    PGI_UFLAG_DIGIT       = 0x0200    /* \p{Nd} */
};

/* Length of the UTF-8 sequence a lead byte announces (1 for continuation
 * and invalid bytes), as llama.cpp counts it. */
static inline size_t
pgi_utf8_sequence_length(unsigned char lead)
{
    static const unsigned char by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return by_high_nibble[lead >> 4];
}

/*
 * Decode one code point at text[0..length) (length > 0).  Sets *consumed.
 * Invalid input (stray continuation byte, truncated sequence, lead byte
 * 0xF8..0xFF, a value past U+10FFFF) gives U+FFFD with *consumed = 1.
 * Overlong forms and surrogates are accepted, as llama.cpp accepts them.
 */
uint32_t pgi_utf8_decode(const unsigned char *text, size_t length, size_t *consumed);

/* Encode a code point (<= U+10FFFF) into out[0..4); returns the length. */
size_t pgi_utf8_encode(uint32_t codepoint, unsigned char *out);

/* True when bytes[0..length) is entirely valid UTF-8 (no overlong forms,
 * no surrogates, nothing past U+10FFFF). */
bool pgi_utf8_is_valid(const unsigned char *bytes, size_t length);

pgi_unicode_category pgi_unicode_category_of(uint32_t codepoint);
uint16_t pgi_unicode_flags(uint32_t codepoint);
bool pgi_unicode_is_white_space(uint32_t codepoint);

/* GPT-2's byte-level alphabet: each byte is shown as a printable code
 * point (printable Latin-1 bytes as themselves, the rest as U+0100...). */
uint32_t pgi_gpt2_byte_to_codepoint(uint8_t byte);
/* The byte a GPT-2 alphabet code point stands for, or -1. */
int pgi_gpt2_codepoint_to_byte(uint32_t codepoint);

/* One code point mapped to another (engine/unicode_bert_tables.c, sorted by
 * from): WordPiece's lower case and accent stripping. */
typedef struct pgi_codepoint_map {
    uint32_t from;
    uint32_t to;
} pgi_codepoint_map;

extern const pgi_codepoint_map pgi_unicode_lower_map[];
extern const int pgi_unicode_lower_map_count;
extern const pgi_codepoint_map pgi_unicode_nfd_map[];
extern const int pgi_unicode_nfd_map_count;

/* The code point's lower case (its first code point), or itself. */
uint32_t pgi_unicode_to_lower(uint32_t codepoint);
/* The first code point of its canonical decomposition, or itself. */
uint32_t pgi_unicode_nfd_first(uint32_t codepoint);

#endif
