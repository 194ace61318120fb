/*
 * tokenizer_pretokenize.c — the regex splits that come before byte-level
 * BPE, written as hand-made matchers over code points.
 *
 * llama.cpp describes each pre-tokenizer as a list of regular expressions;
 * each expression is applied to every piece the previous one produced, and
 * both its matches and the unmatched stretches between them become pieces.
 * Two expressions (the GPT-2 one and the Llama-3 one) llama.cpp runs through
 * its own hand-written matchers; the others go through std::regex
 * (ECMAScript: leftmost match, alternatives tried in order, greedy
 * quantifiers with backtracking).  Each stage below reproduces the
 * corresponding behaviour, including llama.cpp's reading of \s (Unicode
 * White_Space) and of \p{L}, \p{N}, \p{P} (general categories).
 */
#include "tokenizer_internal.h"

#include <stdbool.h>
#include <string.h>

#include "pgi_memory.h"
#include "unicode.h"

typedef struct span {
    const uint32_t *cps;
    size_t begin;
    size_t end;
} span;

/* Flags of position pos, or 0 outside the piece (the matchers' "end"). */
static inline uint16_t
flags_at(const span *s, size_t pos)
{
    uint32_t c;

    if (pos < s->begin || pos >= s->end)
        return 0;
    c = s->cps[pos];
    if (c < 0x80)
    {
        /* ASCII fast path; same answers as the table. */
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            return PGI_UFLAG_LETTER;
        if (c >= '0' && c <= '9')
            return PGI_UFLAG_NUMBER | PGI_UFLAG_DIGIT;
    }
    return pgi_unicode_flags(c);
}

static inline bool
is_space(const span *s, size_t pos)
{
    return (flags_at(s, pos) & PGI_UFLAG_WHITESPACE) != 0;
}

static inline uint32_t
ascii_lower(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* -------------------------------------------------------------- output */

static bool
push_piece(pgi_piece_list *list, size_t length)
{
    if (length == 0)
        return true;
    if (list->count == list->capacity)
    {
        size_t grown = list->capacity ? list->capacity * 2 : 64;
        uint32_t *bigger = pgi_realloc(list->lengths, list->capacity * sizeof(uint32_t),
                                       grown * sizeof(uint32_t));

        if (bigger == NULL)
            return false;
        list->lengths = bigger;
        list->capacity = grown;
    }
    list->lengths[list->count++] = (uint32_t) length;
    return true;
}

/* ------------------------------------------- llama.cpp's custom matchers */

/* The GPT-2 pattern:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
 * with a final \s+ for whitespace the lookahead refuses. */
static bool
split_gpt2(const span *s, pgi_piece_list *out)
{
    size_t pos = s->begin;

    while (pos < s->end)
    {
        size_t start = pos;
        uint32_t c = s->cps[pos];
        uint16_t here;

        if (c == '\'' && pos + 1 < s->end)
        {
            uint32_t n1 = s->cps[pos + 1];

            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd')
            {
                pos += 2;
                goto emit;
            }
            if (pos + 2 < s->end)
            {
                uint32_t n2 = s->cps[pos + 2];

                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
                {
                    pos += 3;
                    goto emit;
                }
            }
        }

        /* an optional leading space belongs to the run that follows it */
        here = (c == ' ') ? flags_at(s, pos + 1) : flags_at(s, pos);
        if (here & PGI_UFLAG_LETTER)
        {
            pos += (c == ' ');
            while (flags_at(s, pos) & PGI_UFLAG_LETTER)
                pos++;
            goto emit;
        }
        if (here & PGI_UFLAG_NUMBER)
        {
            pos += (c == ' ');
            while (flags_at(s, pos) & PGI_UFLAG_NUMBER)
                pos++;
            goto emit;
        }
        if (!(here & (PGI_UFLAG_WHITESPACE | PGI_UFLAG_LETTER | PGI_UFLAG_NUMBER)) && here != 0)
        {
            uint16_t f;

            pos += (c == ' ');
            for (;;)
            {
                f = flags_at(s, pos);
                if ((f & (PGI_UFLAG_WHITESPACE | PGI_UFLAG_LETTER | PGI_UFLAG_NUMBER)) || f == 0)
                    break;
                pos++;
            }
            goto emit;
        }
        {
            size_t n_space = 0;

            while (is_space(s, pos + n_space))
                n_space++;
            if (n_space > 1 && pos + n_space < s->end)
                pos += n_space - 1;        /* \s+(?!\S): leave one for the next word */
            else if (n_space > 0)
                pos += n_space;
            else
                pos += 1;                  /* nothing matched: a piece of its own */
        }
emit:
        if (!push_piece(out, pos - start))
            return false;
    }
    return true;
}

/* The Llama-3 pattern (max_digits 3) and Qwen2's (max_digits 1):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * With with_marks (Qwen 3.5, max_digits 1) combining marks count as letters:
 *   ...|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|...
 * so "e" followed by U+0301 stays one piece instead of two. */
static bool
split_llama3(const span *s, int max_digits, bool with_marks, pgi_piece_list *out)
{
    const uint16_t word = PGI_UFLAG_LETTER | (with_marks ? PGI_UFLAG_MARK : 0);

    size_t pos = s->begin;

    while (pos < s->end)
    {
        size_t start = pos;
        uint32_t c = s->cps[pos];
        uint16_t f = flags_at(s, pos);

        if (c == '\'' && pos + 1 < s->end)
        {
            uint32_t n1 = ascii_lower(s->cps[pos + 1]);

            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd')
            {
                pos += 2;
                goto emit;
            }
            if (pos + 2 < s->end)
            {
                uint32_t n2 = ascii_lower(s->cps[pos + 2]);

                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
                {
                    pos += 3;
                    goto emit;
                }
            }
        }

        /* [^\r\n\p{L}\p{N}]?\p{L}+ (or [\p{L}\p{M}]+) */
        if (!(c == '\r' || c == '\n' || (f & PGI_UFLAG_NUMBER)))
        {
            if ((f & word) || (flags_at(s, pos + 1) & word))
            {
                pos++;
                while (flags_at(s, pos) & word)
                    pos++;
                goto emit;
            }
        }

        /* \p{N}{1,max}: each group of up to max digits is its own piece */
        if (f & PGI_UFLAG_NUMBER)
        {
            int n = 0;

            while (n < max_digits && (flags_at(s, pos) & PGI_UFLAG_NUMBER))
            {
                pos++;
                n++;
            }
            goto emit;
        }

        /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' (or [^\s\p{L}\p{M}\p{N}]) */
        {
            uint16_t next = (c == ' ') ? flags_at(s, pos + 1) : f;
            uint16_t stop = PGI_UFLAG_WHITESPACE | PGI_UFLAG_NUMBER | word;

            if (!(next & stop) && f != 0)
            {
                pos += (c == ' ');
                for (;;)
                {
                    uint16_t g = flags_at(s, pos);

                    if ((g & stop) || g == 0)
                        break;
                    pos++;
                }
                while (pos < s->end && (s->cps[pos] == '\r' || s->cps[pos] == '\n'))
                    pos++;
                goto emit;
            }
        }

        {
            size_t n_space = 0;
            size_t after_last_newline = 0;   /* 0: none seen */

            while (is_space(s, pos + n_space))
            {
                uint32_t w = s->cps[pos + n_space];

                if (w == '\r' || w == '\n')
                    after_last_newline = pos + n_space + 1;
                n_space++;
            }
            if (after_last_newline > 0)
                pos = after_last_newline;             /* \s*[\r\n]+ */
            else if (n_space > 1 && pos + n_space < s->end)
                pos += n_space - 1;                   /* \s+(?!\S) */
            else if (n_space > 0)
                pos += n_space;                       /* \s+ */
            else
                pos += 1;
        }
emit:
        if (!push_piece(out, pos - start))
            return false;
    }
    return true;
}

/* ------------------------------------------- std::regex-style stages */

/* A stage that llama.cpp runs through std::regex: match_at returns the
 * length of the match that starts exactly at pos (0 for none). */
typedef size_t (*match_fn)(const span *s, size_t pos);

static bool
split_by_matches(const span *s, match_fn match_at, pgi_piece_list *out)
{
    size_t gap_start = s->begin;
    size_t pos = s->begin;

    while (pos < s->end)
    {
        size_t length = match_at(s, pos);

        if (length == 0)
        {
            pos++;
            continue;
        }
        if (!push_piece(out, pos - gap_start) || !push_piece(out, length))
            return false;
        pos += length;
        gap_start = pos;
    }
    return push_piece(out, s->end - gap_start);
}

typedef struct codepoint_range {
    uint32_t first;
    uint32_t last;
} codepoint_range;

static bool
in_ranges(uint32_t c, const codepoint_range *ranges, size_t n)
{
    size_t lo = 0, hi = n;

    /* ranges are sorted by first and do not overlap */
    while (lo < hi)
    {
        size_t mid = (lo + hi) / 2;

        if (c < ranges[mid].first)
            hi = mid;
        else if (c > ranges[mid].last)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* deepseek-llm's letter class (from its tokenizer.json), sorted. */
static const codepoint_range deepseek_llm_letters[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

/* deepseek-llm's punctuation class [!-/:-~！-／：-～‘-‟　-。], sorted. */
static const codepoint_range deepseek_llm_punctuation[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0x2018, 0x201F}, {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};

/* The CJK class [一-龥ࠀ-一가-퟿] of both deepseek tokenizers, merged. */
static const codepoint_range deepseek_cjk[] = {
    {0x800, 0x9FA5}, {0xAC00, 0xD7FF},
};

#define N_RANGES(a) (sizeof(a) / sizeof((a)[0]))

/* llama.cpp feeds std::wregex the code points with every non-ASCII white
 * space replaced by U+000B, so no white space ever matches a class of
 * explicit ranges. */
static inline bool
in_class(const span *s, size_t pos, const codepoint_range *ranges, size_t n)
{
    if (pos >= s->end)
        return false;
    return in_ranges(s->cps[pos], ranges, n) && !is_space(s, pos);
}

static inline bool
has_flag(const span *s, size_t pos, uint16_t flag)
{
    return (flags_at(s, pos) & flag) != 0;
}

/* [\r\n] */
static size_t
match_newline(const span *s, size_t pos)
{
    return (s->cps[pos] == '\r' || s->cps[pos] == '\n') ? 1 : 0;
}

/* \s?X+ where X is given by a predicate: the optional space is taken only
 * when an X follows it (greedy, then backtrack). */
#define DEFINE_OPTIONAL_SPACE_RUN(name, predicate)                      \
    static size_t name(const span *s, size_t pos)                       \
    {                                                                   \
        size_t p = pos;                                                 \
        if (is_space(s, p) && (predicate(s, p + 1)))                    \
            p++;                                                        \
        if (!(predicate(s, p)))                                         \
            return 0;                                                   \
        while (predicate(s, p))                                         \
            p++;                                                        \
        return p - pos;                                                 \
    }

#define IS_LETTER(s, p) has_flag(s, p, PGI_UFLAG_LETTER)
#define IS_PUNCTUATION(s, p) has_flag(s, p, PGI_UFLAG_PUNCTUATION)
#define IS_DSLLM_LETTER(s, p) in_class(s, p, deepseek_llm_letters, N_RANGES(deepseek_llm_letters))
#define IS_DSLLM_PUNCTUATION(s, p) \
    in_class(s, p, deepseek_llm_punctuation, N_RANGES(deepseek_llm_punctuation))

DEFINE_OPTIONAL_SPACE_RUN(match_space_letters, IS_LETTER)                 /* \s?\p{L}+ */
DEFINE_OPTIONAL_SPACE_RUN(match_space_punctuation, IS_PUNCTUATION)        /* \s?\p{P}+ */
DEFINE_OPTIONAL_SPACE_RUN(match_dsllm_letters, IS_DSLLM_LETTER)           /* \s?[A-Za-zµÀ-Ö...]+ */
DEFINE_OPTIONAL_SPACE_RUN(match_dsllm_punctuation, IS_DSLLM_PUNCTUATION)  /* \s?[!-/:-~...]+ */

/* [一-龥ࠀ-一가-퟿]+ */
static size_t
match_cjk(const span *s, size_t pos)
{
    size_t p = pos;

    while (in_class(s, p, deepseek_cjk, N_RANGES(deepseek_cjk)))
        p++;
    return p - pos;
}

/* \p{N} */
static size_t
match_one_number(const span *s, size_t pos)
{
    return has_flag(s, pos, PGI_UFLAG_NUMBER) ? 1 : 0;
}

/* \p{N}+ */
static size_t
match_numbers(const span *s, size_t pos)
{
    size_t p = pos;

    while (has_flag(s, p, PGI_UFLAG_NUMBER))
        p++;
    return p - pos;
}

/* [0-9][0-9][0-9] */
static size_t
match_three_digits(const span *s, size_t pos)
{
    if (pos + 3 > s->end)
        return 0;
    for (size_t i = 0; i < 3; i++)
        if (s->cps[pos + i] < '0' || s->cps[pos + i] > '9')
            return 0;
    return 3;
}

/* One character of [\p{P}\$\+<=>\^~\|`] (falcon, with_backquote) or of
 * [\p{P}\$\+<=>\^~\|] (default). */
static inline bool
in_punctuation_class(const span *s, size_t pos, bool with_backquote)
{
    uint32_t c;

    if (pos >= s->end)
        return false;
    if (has_flag(s, pos, PGI_UFLAG_PUNCTUATION))
        return true;
    c = s->cps[pos];
    return c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
           c == '|' || (with_backquote && c == '`');
}

/* [\p{P}\$\+<=>\^~\|`]+ */
static size_t
match_falcon_punctuation(const span *s, size_t pos)
{
    size_t p = pos;

    while (in_punctuation_class(s, p, true))
        p++;
    return p - pos;
}

/* [\p{P}\$\+<=>\^~\|]+ */
static size_t
match_default_punctuation(const span *s, size_t pos)
{
    size_t p = pos;

    while (in_punctuation_class(s, p, false))
        p++;
    return p - pos;
}

/* \s+$ : the white space that ends the piece.  Done directly (not via
 * match_at) so a long run of spaces costs linear time. */
static bool
split_trailing_space(const span *s, pgi_piece_list *out)
{
    size_t p = s->end;

    while (p > s->begin && is_space(s, p - 1))
        p--;
    return push_piece(out, p - s->begin) && push_piece(out, s->end - p);
}

/* ----------------------------------------------------- gpt-4o (o200k) */

/*
 * The o200k pattern, as llama.cpp runs it.  tokenizer.json has
 *   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?
 *   |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?
 *   |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * but llama.cpp replaces the two case classes by "a letter that is not
 * a-z" and "a letter that is not A-Z", and runs std::regex over text in
 * which every non-ASCII character is collapsed to one byte per category.
 * So only ASCII letters have a case: a non-ASCII letter belongs to both
 * classes whatever its case, and a combining mark is no letter at all (it
 * stops a letter run; it can be the one character before the next run).
 * Every character starts some alternative, so there are no gaps.
 */

/* A letter of "[^a-z]" (upper) or "[^A-Z]" (lower) in llama.cpp's sense. */
static inline bool
gpt4o_upper(const span *s, size_t pos)
{
    return has_flag(s, pos, PGI_UFLAG_LETTER) && !(s->cps[pos] >= 'a' && s->cps[pos] <= 'z');
}

static inline bool
gpt4o_lower(const span *s, size_t pos)
{
    return has_flag(s, pos, PGI_UFLAG_LETTER) && !(s->cps[pos] >= 'A' && s->cps[pos] <= 'Z');
}

/* [^\s\p{L}\p{N}] */
static inline bool
gpt4o_other(const span *s, size_t pos)
{
    return pos < s->end &&
           !has_flag(s, pos, PGI_UFLAG_WHITESPACE | PGI_UFLAG_LETTER | PGI_UFLAG_NUMBER);
}

/* (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])? : its length. */
static size_t
gpt4o_contraction(const span *s, size_t pos)
{
    uint32_t n1, n2;

    if (pos + 1 >= s->end || s->cps[pos] != '\'')
        return 0;
    n1 = ascii_lower(s->cps[pos + 1]);
    if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd')
        return 2;
    if (pos + 2 >= s->end)
        return 0;
    n2 = ascii_lower(s->cps[pos + 2]);
    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
        return 3;
    return 0;
}

/* The two letter-run alternatives, P?U*L+C? then P?U+L*C?; the end of the
 * match, or 0 (a match never ends at the piece's first position). */
static size_t
gpt4o_letters(const span *s, size_t pos)
{
    uint32_t c = s->cps[pos];
    size_t p = pos, q, end;
    bool found_lower = false;
    size_t last_lower = 0;

    /* The optional [^\r\n\p{L}\p{N}]: taking it is tried first, and leaving
     * it out cannot help, since that character is no letter. */
    if (c != '\r' && c != '\n' && !has_flag(s, pos, PGI_UFLAG_LETTER | PGI_UFLAG_NUMBER))
        p++;

    /* U* is greedy and gives back characters until L+ can start: L+
     * starts at the last position up to the end of the U run that is a
     * lower letter (a non-ASCII letter inside the run, or the a-z after it). */
    for (q = p; gpt4o_upper(s, q); q++)
        if (gpt4o_lower(s, q))
        {
            found_lower = true;
            last_lower = q;
        }
    if (gpt4o_lower(s, q))
    {
        found_lower = true;
        last_lower = q;
    }
    if (found_lower)
    {
        end = last_lower;
        while (gpt4o_lower(s, end))
            end++;
    }
    else if (q > p)
        end = q;            /* U+ with an empty L*: what follows is no letter */
    else
        return 0;
    return end + gpt4o_contraction(s, end);
}

static bool
split_gpt4o(const span *s, pgi_piece_list *out)
{
    size_t pos = s->begin;

    while (pos < s->end)
    {
        size_t start = pos;
        uint32_t c = s->cps[pos];
        size_t end = gpt4o_letters(s, pos);

        if (end != 0)
        {
            pos = end;
            goto emit;
        }

        /* \p{N}{1,3} */
        if (has_flag(s, pos, PGI_UFLAG_NUMBER))
        {
            while (pos - start < 3 && has_flag(s, pos, PGI_UFLAG_NUMBER))
                pos++;
            goto emit;
        }

        /* ' ?[^\s\p{L}\p{N}]+[\r\n/]*' */
        if (gpt4o_other(s, c == ' ' ? pos + 1 : pos))
        {
            pos += (c == ' ');
            while (gpt4o_other(s, pos))
                pos++;
            while (pos < s->end && (s->cps[pos] == '\r' || s->cps[pos] == '\n' || s->cps[pos] == '/'))
                pos++;
            goto emit;
        }

        /* What is left starts with white space. */
        {
            size_t n_space = 0;
            size_t after_last_newline = 0;   /* 0: none seen */

            while (is_space(s, pos + n_space))
            {
                uint32_t w = s->cps[pos + n_space];

                if (w == '\r' || w == '\n')
                    after_last_newline = pos + n_space + 1;
                n_space++;
            }
            if (after_last_newline > 0)
                pos = after_last_newline;             /* \s*[\r\n]+ */
            else if (n_space > 1 && pos + n_space < s->end)
                pos += n_space - 1;                   /* \s+(?!\S) */
            else if (n_space > 0)
                pos += n_space;                       /* \s+ */
            else
                pos += 1;                             /* not reached */
        }
emit:
        if (!push_piece(out, pos - start))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ driver */

typedef enum stage_kind {
    STAGE_GPT2,
    STAGE_LLAMA3,
    STAGE_QWEN2,
    STAGE_QWEN35,
    STAGE_TRAILING_SPACE,
    STAGE_GPT4O,
    STAGE_MATCHER
} stage_kind;

typedef struct stage {
    stage_kind kind;
    match_fn matcher;
} stage;

#define MAX_STAGES 6

static int
stages_for(pgi_pretokenizer_kind kind, stage *stages)
{
    int n = 0;

#define ADD(k, m) (stages[n].kind = (k), stages[n].matcher = (m), n++)
    switch (kind)
    {
        case PGI_PRE_GPT2:
            ADD(STAGE_GPT2, NULL);
            break;
        case PGI_PRE_LLAMA3:
            ADD(STAGE_LLAMA3, NULL);
            break;
        case PGI_PRE_QWEN2:
            ADD(STAGE_QWEN2, NULL);
            break;
        case PGI_PRE_QWEN35:
            ADD(STAGE_QWEN35, NULL);
            break;
        case PGI_PRE_DEEPSEEK_LLM:
            ADD(STAGE_MATCHER, match_newline);
            ADD(STAGE_MATCHER, match_dsllm_letters);
            ADD(STAGE_MATCHER, match_dsllm_punctuation);
            ADD(STAGE_TRAILING_SPACE, NULL);
            ADD(STAGE_MATCHER, match_cjk);
            ADD(STAGE_MATCHER, match_numbers);
            break;
        case PGI_PRE_DEEPSEEK_CODER:
            ADD(STAGE_MATCHER, match_newline);
            ADD(STAGE_MATCHER, match_space_letters);
            ADD(STAGE_MATCHER, match_space_punctuation);
            ADD(STAGE_MATCHER, match_cjk);
            ADD(STAGE_MATCHER, match_one_number);
            break;
        case PGI_PRE_GPT4O:
            ADD(STAGE_GPT4O, NULL);
            break;
        case PGI_PRE_FALCON:
            ADD(STAGE_MATCHER, match_falcon_punctuation);
            ADD(STAGE_GPT2, NULL);
            ADD(STAGE_MATCHER, match_three_digits);
            break;
        case PGI_PRE_STARCODER:
            ADD(STAGE_MATCHER, match_one_number);
            ADD(STAGE_GPT2, NULL);
            break;
        case PGI_PRE_DEFAULT:
            ADD(STAGE_MATCHER, match_default_punctuation);
            ADD(STAGE_GPT2, NULL);
            ADD(STAGE_MATCHER, match_numbers);
            ADD(STAGE_MATCHER, match_three_digits);
            break;
    }
#undef ADD
    return n;
}

static bool
run_stage(const stage *st, const span *s, pgi_piece_list *out)
{
    switch (st->kind)
    {
        case STAGE_GPT2:
            return split_gpt2(s, out);
        case STAGE_LLAMA3:
            return split_llama3(s, 3, false, out);
        case STAGE_QWEN2:
            return split_llama3(s, 1, false, out);
        case STAGE_QWEN35:
            return split_llama3(s, 1, true, out);
        case STAGE_TRAILING_SPACE:
            return split_trailing_space(s, out);
        case STAGE_GPT4O:
            return split_gpt4o(s, out);
        case STAGE_MATCHER:
            return split_by_matches(s, st->matcher, out);
    }
    return false;
}

pgi_status
pgi_pretokenize(pgi_pretokenizer_kind kind, const uint32_t *codepoints, size_t count,
                pgi_piece_list *pieces, pgi_error *err)
{
    stage stages[MAX_STAGES];
    int n_stages = stages_for(kind, stages);
    pgi_piece_list current = {0}, next = {0};

    pieces->count = 0;
    if (count == 0)
        return PGI_OK;
    if (!push_piece(&current, count))
        goto oom;

    for (int i = 0; i < n_stages; i++)
    {
        size_t offset = 0;

        next.count = 0;
        for (size_t p = 0; p < current.count; p++)
        {
            span s = {codepoints, offset, offset + current.lengths[p]};

            if (!run_stage(&stages[i], &s, &next))
                goto oom;
            offset += current.lengths[p];
        }
        {
            pgi_piece_list swap = current;

            current = next;
            next = swap;
        }
    }
    pgi_free(next.lengths);
    pgi_free(pieces->lengths);
    *pieces = current;
    return PGI_OK;

oom:
    pgi_free(current.lengths);
    pgi_free(next.lengths);
    return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory while pre-tokenizing %zu characters",
                    count);
}
