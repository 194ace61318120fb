/*
 * constraint.c — regular expressions to a byte-level NFA, determinized
 * lazily, and the tokens each state allows (see constraint.h).
 *
 * The regex dialect (the whole text must match; ^ at the start and $ at
 * the end are accepted and change nothing):
 *   literals (UTF-8), .  [...] [^...] with ranges, \d \D \w \W \s \S,
 *   \n \r \t \f \v \0 \xHH \uHHHH \u{H...}, escaped punctuation,
 *   (...) (?:...) |, quantifiers * + ? {n} {n,} {n,m} (a lazy ? suffix is
 *   accepted; it changes nothing for a whole match).
 * Refused by name (PGI_ERR_UNSUPPORTED): backreferences, lookaround,
 * named groups, word boundaries, Unicode property escapes, anchors
 * inside the pattern, possessive quantifiers, repetition counts > 1000.
 * Character classes are of code points (\w is ASCII [A-Za-z0-9_], \d
 * [0-9], \s the JavaScript whitespace set of ASCII plus U+00A0 and
 * U+FEFF ... kept to ASCII and U+00A0 here), compiled to UTF-8 byte ranges
 * so that every accepted text is valid UTF-8.
 */
#include "constraint.h"
#include "constraint_rx.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgi_memory.h"

#define MAX_REPEAT 1000
#define DIST_INF INT32_MAX

/* ------------------------------------------------------------ arena */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, size;
    /* data follows, max-aligned */
} arena_block;

struct pgi_rx_arena {
    arena_block *head;
};

pgi_rx_arena *
pgi_rx_arena_new(void)
{
    return pgi_calloc(1, sizeof(pgi_rx_arena));
}

void
pgi_rx_arena_free(pgi_rx_arena *a)
{
    if (a == NULL)
        return;
    while (a->head != NULL)
    {
        arena_block *next = a->head->next;

        pgi_free(a->head);
        a->head = next;
    }
    pgi_free(a);
}

#define ARENA_HEADER ((sizeof(arena_block) + 15) & ~(size_t) 15)

void *
pgi_rx_alloc(pgi_rx_arena *a, size_t size)
{
    arena_block *b = a->head;
    char *p;

    size = (size + 15) & ~(size_t) 15;
    if (b == NULL || b->size - b->used < size)
    {
        size_t block = size > 65536 ? size : 65536;

        b = pgi_alloc(ARENA_HEADER + block);
        if (b == NULL)
            return NULL;
        b->size = block;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    p = (char *) b + ARENA_HEADER + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

/* ------------------------------------------------------------ tree builders */

static pgi_rx *
new_node(pgi_rx_arena *a, pgi_rx_kind kind)
{
    pgi_rx *r = pgi_rx_alloc(a, sizeof(pgi_rx));

    if (r != NULL)
        r->kind = kind;
    return r;
}

pgi_rx *
pgi_rx_empty(pgi_rx_arena *a)
{
    return new_node(a, RX_EMPTY);
}

pgi_rx *
pgi_rx_bytes(pgi_rx_arena *a, const char *bytes, size_t n)
{
    pgi_rx *r = new_node(a, RX_BYTES);

    if (r == NULL)
        return NULL;
    r->bytes = pgi_rx_alloc(a, n + 1);
    if (r->bytes == NULL)
        return NULL;
    memcpy(r->bytes, bytes, n);
    r->n_bytes = n;
    return r;
}

pgi_rx *
pgi_rx_str(pgi_rx_arena *a, const char *s)
{
    return pgi_rx_bytes(a, s, strlen(s));
}

static int
by_lo(const void *x, const void *y)
{
    const uint32_t *a = x, *b = y;

    return a[0] < b[0] ? -1 : a[0] > b[0];
}

pgi_rx *
pgi_rx_set(pgi_rx_arena *a, const uint32_t *ranges, int n)
{
    pgi_rx *r = new_node(a, RX_SET);
    uint32_t *out;
    int k = 0;

    if (r == NULL)
        return NULL;
    out = pgi_rx_alloc(a, sizeof(uint32_t) * 2 * (size_t) (n > 0 ? n : 1));
    if (out == NULL)
        return NULL;
    memcpy(out, ranges, sizeof(uint32_t) * 2 * (size_t) n);
    qsort(out, (size_t) n, sizeof(uint32_t) * 2, by_lo);
    for (int i = 0; i < n; i++)
    {
        if (out[2 * i] > out[2 * i + 1])
            continue;
        if (k > 0 && out[2 * i] <= out[2 * (k - 1) + 1] + 1)
        {
            if (out[2 * i + 1] > out[2 * (k - 1) + 1])
                out[2 * (k - 1) + 1] = out[2 * i + 1];
        }
        else
        {
            out[2 * k] = out[2 * i];
            out[2 * k + 1] = out[2 * i + 1];
            k++;
        }
    }
    r->ranges = out;
    r->n_ranges = k;
    return r;
}

pgi_rx *
pgi_rx_list(pgi_rx_arena *a, pgi_rx_kind kind)
{
    return new_node(a, kind);
}

pgi_rx *
pgi_rx_add(pgi_rx_arena *a, pgi_rx *list, pgi_rx *kid)
{
    if (list == NULL || kid == NULL)
        return NULL;
    if (list->n_kids == list->kids_capacity)
    {
        int capacity = list->kids_capacity ? list->kids_capacity * 2 : 4;
        pgi_rx **kids = pgi_rx_alloc(a, sizeof(pgi_rx *) * (size_t) capacity);

        if (kids == NULL)
            return NULL;
        if (list->n_kids > 0)
            memcpy(kids, list->kids, sizeof(pgi_rx *) * (size_t) list->n_kids);
        list->kids = kids;
        list->kids_capacity = capacity;
    }
    list->kids[list->n_kids++] = kid;
    return list;
}

pgi_rx *
pgi_rx_cat2(pgi_rx_arena *a, pgi_rx *x, pgi_rx *y)
{
    return pgi_rx_add(a, pgi_rx_add(a, pgi_rx_list(a, RX_CAT), x), y);
}

pgi_rx *
pgi_rx_alt2(pgi_rx_arena *a, pgi_rx *x, pgi_rx *y)
{
    return pgi_rx_add(a, pgi_rx_add(a, pgi_rx_list(a, RX_ALT), x), y);
}

pgi_rx *
pgi_rx_repeat(pgi_rx_arena *a, pgi_rx *kid, int min, int max)
{
    pgi_rx *r;

    if (kid == NULL)
        return NULL;
    r = pgi_rx_add(a, new_node(a, RX_REPEAT), kid);
    if (r != NULL)
    {
        r->min = min;
        r->max = max;
    }
    return r;
}

static bool
json_safe(uint32_t c)
{
    return c >= 0x20 && c != '"' && c != '\\';
}

bool
pgi_rx_restrict_to_json_string(pgi_rx_arena *a, pgi_rx *r)
{
    if (r == NULL)
        return false;
    switch (r->kind)
    {
        case RX_EMPTY:
            return true;
        case RX_BYTES:
            for (size_t i = 0; i < r->n_bytes; i++)
                if (r->bytes[i] < 0x80 && !json_safe(r->bytes[i]))
                    return false;
            return true;
        case RX_SET:
            {
                /* intersect with [0x20, 0x21] [0x23, 0x5B] [0x5D, 0x10FFFF] */
                static const uint32_t safe[] = {0x20, 0x21, 0x23, 0x5B, 0x5D, 0x10FFFF};
                uint32_t *out = pgi_rx_alloc(a, sizeof(uint32_t) * 6 * (size_t) (r->n_ranges + 1));
                int k = 0;

                if (out == NULL)
                    return false;
                for (int i = 0; i < r->n_ranges; i++)
                    for (int j = 0; j < 3; j++)
                    {
                        uint32_t lo = r->ranges[2 * i] > safe[2 * j] ? r->ranges[2 * i] : safe[2 * j];
                        uint32_t hi = r->ranges[2 * i + 1] < safe[2 * j + 1] ? r->ranges[2 * i + 1]
                                                                              : safe[2 * j + 1];

                        if (lo <= hi)
                        {
                            out[2 * k] = lo;
                            out[2 * k + 1] = hi;
                            k++;
                        }
                    }
                r->ranges = out;
                r->n_ranges = k;
                return true;
            }
        default:
            for (int i = 0; i < r->n_kids; i++)
                if (!pgi_rx_restrict_to_json_string(a, r->kids[i]))
                    return false;
            return true;
    }
}

/* ------------------------------------------------------------ regex parser */

typedef struct rx_parser {
    pgi_rx_arena *a;
    const char *s;
    size_t n, i;
    pgi_error *err;
    pgi_status st;
} rx_parser;

static pgi_rx *parse_alt(rx_parser *p);

static pgi_rx *
parse_fail(rx_parser *p, pgi_status code, const char *what)
{
    if (p->st == PGI_OK)
        p->st = pgi_fail(p->err, code, "%s at offset %zu of the regular expression", what, p->i);
    return NULL;
}

/* Decode one UTF-8 code point at s[*i]; -1 when invalid. */
static int32_t
decode_utf8(const char *s, size_t n, size_t *i)
{
    const unsigned char *u = (const unsigned char *) s + *i;
    size_t left = n - *i;
    int32_t c;
    int len;

    if (u[0] < 0x80)
    {
        (*i)++;
        return u[0];
    }
    if ((u[0] & 0xE0) == 0xC0)
        len = 2, c = u[0] & 0x1F;
    else if ((u[0] & 0xF0) == 0xE0)
        len = 3, c = u[0] & 0x0F;
    else if ((u[0] & 0xF8) == 0xF0)
        len = 4, c = u[0] & 0x07;
    else
        return -1;
    if ((size_t) len > left)
        return -1;
    for (int k = 1; k < len; k++)
    {
        if ((u[k] & 0xC0) != 0x80)
            return -1;
        c = (c << 6) | (u[k] & 0x3F);
    }
    if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
        c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return -1;
    *i += (size_t) len;
    return c;
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int32_t
parse_hex(rx_parser *p, int digits)
{
    int32_t v = 0;

    for (int k = 0; k < digits; k++)
    {
        int h = p->i < p->n ? hex_value(p->s[p->i]) : -1;

        if (h < 0)
        {
            parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "bad hexadecimal escape");
            return -1;
        }
        v = v * 16 + h;
        p->i++;
    }
    return v;
}

/* Class ranges being collected. */
typedef struct range_list {
    uint32_t r[2 * 512];
    int n;
} range_list;

static void
add_range(range_list *l, uint32_t lo, uint32_t hi)
{
    if (l->n < 512)
    {
        l->r[2 * l->n] = lo;
        l->r[2 * l->n + 1] = hi;
        l->n++;
    }
}

static void
add_class(range_list *l, char which)
{
    switch (which)
    {
        case 'd':
            add_range(l, '0', '9');
            break;
        case 'w':
            add_range(l, '0', '9');
            add_range(l, 'A', 'Z');
            add_range(l, '_', '_');
            add_range(l, 'a', 'z');
            break;
        case 's':
            add_range(l, '\t', '\r');
            add_range(l, ' ', ' ');
            add_range(l, 0xA0, 0xA0);
            break;
    }
}

/* The complement of ranges r[0..n) (normalized) into out. */
static void
complement(range_list *in, range_list *out)
{
    uint32_t sorted[2 * 512];
    uint32_t next = 0;
    int n = in->n;

    memcpy(sorted, in->r, sizeof(uint32_t) * 2 * (size_t) n);
    qsort(sorted, (size_t) n, sizeof(uint32_t) * 2, by_lo);
    out->n = 0;
    for (int i = 0; i < n; i++)
    {
        if (sorted[2 * i] > next)
            add_range(out, next, sorted[2 * i] - 1);
        if (sorted[2 * i + 1] + 1 > next)
            next = sorted[2 * i + 1] + 1;
    }
    if (next <= 0x10FFFF)
        add_range(out, next, 0x10FFFF);
}

/* An escape after '\\' (p->i at the letter).  Either a class (added to l,
 * returns -2) or a code point. */
static int32_t
parse_escape(rx_parser *p, range_list *l, bool in_class)
{
    char c;

    if (p->i >= p->n)
        return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "trailing backslash"), -1;
    c = p->s[p->i++];
    switch (c)
    {
        case 'd': case 'w': case 's':
            add_class(l, c);
            return -2;
        case 'D': case 'W': case 'S':
            {
                range_list one = {.n = 0}, inverse = {.n = 0};

                add_class(&one, (char) (c + ('a' - 'A')));
                complement(&one, &inverse);
                for (int k = 0; k < inverse.n; k++)
                    add_range(l, inverse.r[2 * k], inverse.r[2 * k + 1]);
                return -2;
            }
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case 'f': return '\f';
        case 'v': return '\v';
        case '0': return 0;
        case 'x': return parse_hex(p, 2);
        case 'u':
            if (p->i < p->n && p->s[p->i] == '{')
            {
                int32_t v = 0;
                int digits = 0;

                p->i++;
                while (p->i < p->n && hex_value(p->s[p->i]) >= 0 && digits < 6)
                    v = v * 16 + hex_value(p->s[p->i++]), digits++;
                if (digits == 0 || p->i >= p->n || p->s[p->i] != '}' || v > 0x10FFFF)
                    return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "bad \\u{...} escape"), -1;
                p->i++;
                return v;
            }
            return parse_hex(p, 4);
        case 'b':
            if (in_class)
                return '\b';
            return parse_fail(p, PGI_ERR_UNSUPPORTED, "word boundaries (\\b) are not supported"), -1;
        case 'B':
            return parse_fail(p, PGI_ERR_UNSUPPORTED, "word boundaries (\\B) are not supported"), -1;
        case 'p': case 'P':
            return parse_fail(p, PGI_ERR_UNSUPPORTED,
                              "Unicode property escapes (\\p) are not supported"), -1;
        case 'k':
            return parse_fail(p, PGI_ERR_UNSUPPORTED, "backreferences (\\k) are not supported"), -1;
        default:
            if (c >= '1' && c <= '9')
                return parse_fail(p, PGI_ERR_UNSUPPORTED, "backreferences are not supported"), -1;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "unknown escape"), -1;
            if ((unsigned char) c >= 0x80)
            {
                size_t at = p->i - 1;
                int32_t cp = decode_utf8(p->s, p->n, &at);

                p->i = at;
                return cp >= 0 ? cp : (parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "invalid UTF-8"), -1);
            }
            return (unsigned char) c;
    }
}

static pgi_rx *
parse_class(rx_parser *p)
{
    range_list l = {.n = 0}, out = {.n = 0};
    bool negate = false;
    bool first = true;

    if (p->i < p->n && p->s[p->i] == '^')
        negate = true, p->i++;
    for (;;)
    {
        int32_t lo, hi;

        if (p->i >= p->n)
            return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "unterminated character class");
        if (p->s[p->i] == ']' && !first)
        {
            p->i++;
            break;
        }
        first = false;
        if (p->s[p->i] == '[' && p->i + 1 < p->n && p->s[p->i + 1] == ':')
            return parse_fail(p, PGI_ERR_UNSUPPORTED, "POSIX classes ([:alpha:]) are not supported");
        if (p->s[p->i] == '\\')
        {
            p->i++;
            lo = parse_escape(p, &l, true);
            if (lo == -2)
                continue;
        }
        else
            lo = decode_utf8(p->s, p->n, &p->i);
        if (lo < 0)
            return p->st != PGI_OK ? NULL : parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "invalid UTF-8");
        hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']')
        {
            p->i++;
            if (p->s[p->i] == '\\')
            {
                range_list ignored = {.n = 0};

                p->i++;
                hi = parse_escape(p, &ignored, true);
                if (hi == -2)
                    return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "a class escape ends a range");
            }
            else
                hi = decode_utf8(p->s, p->n, &p->i);
            if (hi < 0)
                return p->st != PGI_OK ? NULL : parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "invalid UTF-8");
            if (hi < lo)
                return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "range out of order in character class");
        }
        add_range(&l, (uint32_t) lo, (uint32_t) hi);
        if (l.n >= 512)
            return parse_fail(p, PGI_ERR_FORMAT, "character class too large");
    }
    if (negate)
    {
        complement(&l, &out);
        return pgi_rx_set(p->a, out.r, out.n);
    }
    if (l.n == 0)
        return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "empty character class");
    return pgi_rx_set(p->a, l.r, l.n);
}

static pgi_rx *
parse_atom(rx_parser *p)
{
    char c = p->s[p->i];

    switch (c)
    {
        case '(':
            {
                pgi_rx *inner;

                p->i++;
                if (p->i < p->n && p->s[p->i] == '?')
                {
                    if (p->i + 1 < p->n && p->s[p->i + 1] == ':')
                        p->i += 2;
                    else if (p->i + 1 < p->n && (p->s[p->i + 1] == '=' || p->s[p->i + 1] == '!'))
                        return parse_fail(p, PGI_ERR_UNSUPPORTED, "lookahead is not supported");
                    else if (p->i + 2 < p->n && p->s[p->i + 1] == '<' &&
                             (p->s[p->i + 2] == '=' || p->s[p->i + 2] == '!'))
                        return parse_fail(p, PGI_ERR_UNSUPPORTED, "lookbehind is not supported");
                    else
                        return parse_fail(p, PGI_ERR_UNSUPPORTED,
                                          "group modifiers and named groups are not supported");
                }
                inner = parse_alt(p);
                if (inner == NULL)
                    return NULL;
                if (p->i >= p->n || p->s[p->i] != ')')
                    return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "missing )");
                p->i++;
                return inner;
            }
        case '[':
            p->i++;
            return parse_class(p);
        case '.':
            {
                static const uint32_t any[] = {0, '\n' - 1, '\n' + 1, 0x10FFFF};

                p->i++;
                return pgi_rx_set(p->a, any, 2);
            }
        case '^':
            if (p->i == 0)
            {
                p->i++;
                return pgi_rx_empty(p->a);
            }
            return parse_fail(p, PGI_ERR_UNSUPPORTED, "^ inside the pattern is not supported");
        case '$':
            if (p->i + 1 == p->n)
            {
                p->i++;
                return pgi_rx_empty(p->a);
            }
            return parse_fail(p, PGI_ERR_UNSUPPORTED, "$ inside the pattern is not supported");
        case '*': case '+': case '?':
            return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "nothing to repeat");
        case '\\':
            {
                range_list l = {.n = 0};
                int32_t cp;
                char buffer[4];
                int len;

                p->i++;
                cp = parse_escape(p, &l, false);
                if (cp == -2)
                    return pgi_rx_set(p->a, l.r, l.n);
                if (cp < 0)
                    return NULL;
                {
                    uint32_t r[2] = {(uint32_t) cp, (uint32_t) cp};

                    (void) buffer;
                    (void) len;
                    return pgi_rx_set(p->a, r, 1);
                }
            }
        default:
            {
                size_t start = p->i;

                if (decode_utf8(p->s, p->n, &p->i) < 0)
                    return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "invalid UTF-8");
                return pgi_rx_bytes(p->a, p->s + start, p->i - start);
            }
    }
}

static bool
parse_int(rx_parser *p, int *out)
{
    long v = 0;
    size_t start = p->i;

    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
    {
        v = v * 10 + (p->s[p->i++] - '0');
        if (v > 100000)
            v = 100000;
    }
    *out = (int) v;
    return p->i > start;
}

static pgi_rx *
parse_repeat(rx_parser *p)
{
    pgi_rx *atom = parse_atom(p);
    bool quantified = false;

    while (atom != NULL && p->i < p->n)
    {
        char c = p->s[p->i];
        int min, max;

        if (quantified && (c == '*' || c == '+' || c == '?' || c == '{'))
            return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "nothing to repeat");

        if (c == '*')
            min = 0, max = -1, p->i++;
        else if (c == '+')
            min = 1, max = -1, p->i++;
        else if (c == '?')
            min = 0, max = 1, p->i++;
        else if (c == '{' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
        {
            p->i++;
            parse_int(p, &min);
            max = min;
            if (p->i < p->n && p->s[p->i] == ',')
            {
                p->i++;
                if (!parse_int(p, &max))
                    max = -1;
            }
            if (p->i >= p->n || p->s[p->i] != '}')
                return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "bad {n,m} repetition");
            p->i++;
            if (max >= 0 && max < min)
                return parse_fail(p, PGI_ERR_INVALID_ARGUMENT, "repetition {n,m} with m < n");
            if (min > MAX_REPEAT || max > MAX_REPEAT)
                return parse_fail(p, PGI_ERR_UNSUPPORTED, "repetition counts above 1000 are not supported");
        }
        else
            break;
        if (p->i < p->n && p->s[p->i] == '?')
            p->i++;             /* lazy: the same language */
        else if (p->i < p->n && p->s[p->i] == '+')
            return parse_fail(p, PGI_ERR_UNSUPPORTED, "possessive quantifiers are not supported");
        atom = pgi_rx_repeat(p->a, atom, min, max);
        quantified = true;
    }
    return atom;
}

static pgi_rx *
parse_cat(rx_parser *p)
{
    pgi_rx *list = pgi_rx_list(p->a, RX_CAT);

    while (list != NULL && p->i < p->n && p->s[p->i] != '|' && p->s[p->i] != ')')
        list = pgi_rx_add(p->a, list, parse_repeat(p));
    return list;
}

static pgi_rx *
parse_alt(rx_parser *p)
{
    pgi_rx *first = parse_cat(p);
    pgi_rx *alt;

    if (first == NULL || p->i >= p->n || p->s[p->i] != '|')
        return first;
    alt = pgi_rx_add(p->a, pgi_rx_list(p->a, RX_ALT), first);
    while (alt != NULL && p->i < p->n && p->s[p->i] == '|')
    {
        p->i++;
        alt = pgi_rx_add(p->a, alt, parse_cat(p));
    }
    return alt;
}

pgi_status
pgi_rx_parse_regex(pgi_rx_arena *a, const char *text, size_t length, pgi_rx **out,
                   pgi_error *err)
{
    rx_parser p = {.a = a, .s = text, .n = length, .i = 0, .err = err, .st = PGI_OK};
    pgi_rx *r = parse_alt(&p);

    *out = NULL;
    if (p.st != PGI_OK)
        return p.st;
    if (p.i < p.n)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "unmatched ) at offset %zu of the regular expression", p.i);
    if (r == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the regular expression");
    *out = r;
    return PGI_OK;
}

/* ------------------------------------------------------------ NFA */

typedef struct nfa_state {
    int32_t out, out2;          /* -1: none */
    uint8_t lo, hi;
    bool is_byte;               /* one edge on [lo, hi] to out; else epsilon edges */
} nfa_state;

typedef struct dfa_state {
    int32_t *set;               /* NFA states with a byte edge, or the accepting one */
    int n;
    uint32_t hash;
    bool accepting;
    bool has_bytes;
    int32_t dist;
    int32_t next[256];          /* -3 not computed, -1 none */
    pgi_constraint_tokens *tokens;
} dfa_state;

struct pgi_constraint {
    pgi_constraint_spec spec;
    char *text_copy;
    nfa_state *nfa;
    int n_nfa, nfa_capacity;
    int start_nfa, accept_nfa;
    int32_t *dist;              /* [n_nfa] bytes to accept; DIST_INF: dead */
    dfa_state **dfa;
    int n_dfa, dfa_capacity;
    int32_t *table;             /* hash: dfa ids, -1 empty */
    int table_size;
    /* scratch for closures */
    uint32_t *mark;
    uint32_t generation;
    int32_t *stack, *collect;
    bool too_large;
    pgi_constraint_stats stats;
};

static int
nfa_new(pgi_constraint *c)
{
    if (c->n_nfa >= PGI_CONSTRAINT_MAX_NFA_STATES)
    {
        c->too_large = true;
        return -1;
    }
    if (c->n_nfa == c->nfa_capacity)
    {
        int capacity = c->nfa_capacity ? c->nfa_capacity * 2 : 256;
        nfa_state *p = pgi_realloc(c->nfa, sizeof(nfa_state) * (size_t) c->nfa_capacity,
                                   sizeof(nfa_state) * (size_t) capacity);

        if (p == NULL)
            return -1;
        c->nfa = p;
        c->nfa_capacity = capacity;
    }
    c->nfa[c->n_nfa].out = c->nfa[c->n_nfa].out2 = -1;
    c->nfa[c->n_nfa].is_byte = false;
    c->nfa[c->n_nfa].lo = c->nfa[c->n_nfa].hi = 0;
    return c->n_nfa++;
}

static void
set_eps(pgi_constraint *c, int s, int out, int out2)
{
    c->nfa[s].out = out;
    c->nfa[s].out2 = out2;
}

static void
set_byte(pgi_constraint *c, int s, int lo, int hi, int out)
{
    c->nfa[s].is_byte = true;
    c->nfa[s].lo = (uint8_t) lo;
    c->nfa[s].hi = (uint8_t) hi;
    c->nfa[s].out = out;
}

static int
utf8_encode(uint32_t c, unsigned char *b)
{
    if (c < 0x80)
        return b[0] = (unsigned char) c, 1;
    if (c < 0x800)
        return b[0] = (unsigned char) (0xC0 | (c >> 6)), b[1] = (unsigned char) (0x80 | (c & 0x3F)), 2;
    if (c < 0x10000)
    {
        b[0] = (unsigned char) (0xE0 | (c >> 12));
        b[1] = (unsigned char) (0x80 | ((c >> 6) & 0x3F));
        b[2] = (unsigned char) (0x80 | (c & 0x3F));
        return 3;
    }
    b[0] = (unsigned char) (0xF0 | (c >> 18));
    b[1] = (unsigned char) (0x80 | ((c >> 12) & 0x3F));
    b[2] = (unsigned char) (0x80 | ((c >> 6) & 0x3F));
    b[3] = (unsigned char) (0x80 | (c & 0x3F));
    return 4;
}

/* Byte-range sequences of the UTF-8 encodings of [lo, hi]: each is an
 * alternative from `from`, ending at `to`.  `*cur` is the state to hang
 * the next alternative on (epsilon splits chain along). */
typedef struct utf8_emit {
    pgi_constraint *c;
    int cur;                    /* state with no edges yet, where the next alternative starts */
    int to;
    int pending;                /* alternatives emitted */
    bool failed;
} utf8_emit;

static void
emit_sequence(utf8_emit *e, const unsigned char *lo, const unsigned char *hi, int n)
{
    pgi_constraint *c = e->c;
    int a = nfa_new(c), b = nfa_new(c);
    int s;

    if (a < 0 || b < 0)
    {
        e->failed = true;
        return;
    }
    /* cur splits into this alternative (a) and the rest (b) */
    set_eps(c, e->cur, a, b);
    s = a;
    for (int i = 0; i < n; i++)
    {
        int next = i + 1 == n ? e->to : nfa_new(c);

        if (next < 0)
        {
            e->failed = true;
            return;
        }
        set_byte(c, s, lo[i], hi[i], next);
        s = next;
    }
    e->cur = b;
    e->pending++;
}

static void
split_utf8(utf8_emit *e, uint32_t lo, uint32_t hi)
{
    static const uint32_t limits[] = {0x7F, 0x7FF, 0xFFFF};

    if (e->failed || lo > hi)
        return;
    if (lo <= 0xDFFF && hi >= 0xD800)
    {
        if (lo < 0xD800)
            split_utf8(e, lo, 0xD7FF);
        if (hi > 0xDFFF)
            split_utf8(e, 0xE000, hi);
        return;
    }
    for (int k = 0; k < 3; k++)
        if (lo <= limits[k] && hi > limits[k])
        {
            split_utf8(e, lo, limits[k]);
            split_utf8(e, limits[k] + 1, hi);
            return;
        }
    if (hi < 0x80)
    {
        unsigned char l = (unsigned char) lo, h = (unsigned char) hi;

        emit_sequence(e, &l, &h, 1);
        return;
    }
    for (int i = 1; i < 4; i++)
    {
        uint32_t m = (1u << (6 * i)) - 1;

        if ((lo & ~m) != (hi & ~m))
        {
            if ((lo & m) != 0)
            {
                split_utf8(e, lo, lo | m);
                split_utf8(e, (lo | m) + 1, hi);
                return;
            }
            if ((hi & m) != m)
            {
                split_utf8(e, lo, (hi & ~m) - 1);
                split_utf8(e, hi & ~m, hi);
                return;
            }
        }
    }
    {
        unsigned char bl[4], bh[4];
        int n = utf8_encode(lo, bl);

        utf8_encode(hi, bh);
        emit_sequence(e, bl, bh, n);
    }
}

/* Builds rx from `from` (a state with no edges); returns the end state
 * (no edges), -1 on failure. */
static int
build(pgi_constraint *c, const pgi_rx *r, int from)
{
    int cur = from;

    if (from < 0)
        return -1;
    switch (r->kind)
    {
        case RX_EMPTY:
            return from;
        case RX_BYTES:
            for (size_t i = 0; i < r->n_bytes; i++)
            {
                int next = nfa_new(c);

                if (next < 0)
                    return -1;
                set_byte(c, cur, r->bytes[i], r->bytes[i], next);
                cur = next;
            }
            return cur;
        case RX_SET:
            {
                utf8_emit e = {.c = c, .cur = from, .to = nfa_new(c), .pending = 0, .failed = false};

                if (e.to < 0)
                    return -1;
                for (int i = 0; i < r->n_ranges; i++)
                    split_utf8(&e, r->ranges[2 * i], r->ranges[2 * i + 1]);
                if (e.failed)
                    return -1;
                /* e.cur: the last split's "rest" branch, a dead end (no edges):
                 * it stays unreachable to accept and is pruned */
                return e.to;
            }
        case RX_CAT:
            for (int i = 0; i < r->n_kids && cur >= 0; i++)
                cur = build(c, r->kids[i], cur);
            return cur;
        case RX_ALT:
            {
                int end = nfa_new(c);

                if (end < 0)
                    return -1;
                for (int i = 0; i < r->n_kids; i++)
                {
                    int a = nfa_new(c), b = i + 1 < r->n_kids ? nfa_new(c) : -1;
                    int t;

                    if (a < 0 || (i + 1 < r->n_kids && b < 0))
                        return -1;
                    set_eps(c, cur, a, b);
                    t = build(c, r->kids[i], a);
                    if (t < 0)
                        return -1;
                    set_eps(c, t, end, -1);
                    cur = b;
                }
                if (r->n_kids == 0)
                    return -1;  /* an empty alternation matches nothing: unreachable end */
                return end;
            }
        case RX_REPEAT:
            {
                const pgi_rx *kid = r->kids[0];

                for (int i = 0; i < r->min && cur >= 0; i++)
                    cur = build(c, kid, cur);
                if (cur < 0)
                    return -1;
                if (r->max < 0)
                {
                    int a = nfa_new(c), exit = nfa_new(c), t;

                    if (a < 0 || exit < 0)
                        return -1;
                    set_eps(c, cur, a, exit);
                    t = build(c, kid, a);
                    if (t < 0)
                        return -1;
                    set_eps(c, t, cur, -1);
                    return exit;
                }
                if (r->max > r->min)
                {
                    int end = nfa_new(c);

                    if (end < 0)
                        return -1;
                    for (int i = r->min; i < r->max; i++)
                    {
                        int a = nfa_new(c);

                        if (a < 0)
                            return -1;
                        set_eps(c, cur, a, end);
                        cur = build(c, kid, a);
                        if (cur < 0)
                            return -1;
                    }
                    set_eps(c, cur, end, -1);
                    return end;
                }
                return cur;
            }
    }
    return -1;
}

/* dist[s]: fewest bytes from s to accept (0-1 BFS over reversed edges). */
static bool
compute_distances(pgi_constraint *c)
{
    int n = c->n_nfa;
    int32_t *count = pgi_calloc((size_t) n + 1, sizeof(int32_t));
    int32_t *edges = NULL, *deque = NULL;
    bool ok = false;

    c->dist = pgi_alloc(sizeof(int32_t) * (size_t) n);
    if (count == NULL || c->dist == NULL)
        goto done;
    for (int s = 0; s < n; s++)
    {
        if (c->nfa[s].out >= 0)
            count[c->nfa[s].out + 1]++;
        if (!c->nfa[s].is_byte && c->nfa[s].out2 >= 0)
            count[c->nfa[s].out2 + 1]++;
    }
    for (int s = 0; s < n; s++)
        count[s + 1] += count[s];
    edges = pgi_alloc(sizeof(int32_t) * (size_t) (count[n] > 0 ? count[n] : 1));
    deque = pgi_alloc(sizeof(int32_t) * (size_t) (2 * ((size_t) count[n] + (size_t) n) + 4));
    if (edges == NULL || deque == NULL)
        goto done;
    {
        int32_t *fill = pgi_alloc(sizeof(int32_t) * (size_t) (n + 1));

        if (fill == NULL)
            goto done;
        memcpy(fill, count, sizeof(int32_t) * (size_t) (n + 1));
        for (int s = 0; s < n; s++)
        {
            if (c->nfa[s].out >= 0)
                edges[fill[c->nfa[s].out]++] = s;
            if (!c->nfa[s].is_byte && c->nfa[s].out2 >= 0)
                edges[fill[c->nfa[s].out2]++] = s;
        }
        pgi_free(fill);
    }
    for (int s = 0; s < n; s++)
        c->dist[s] = DIST_INF;
    {
        /* deque in [head, tail) of a 2n buffer, starting in the middle */
        int head = count[n] + n + 2, tail = head;

        c->dist[c->accept_nfa] = 0;
        deque[tail++] = c->accept_nfa;
        while (head < tail)
        {
            int v = deque[head++];

            for (int k = count[v]; k < count[v + 1]; k++)
            {
                int u = edges[k];
                int w = c->nfa[u].is_byte ? 1 : 0;

                if (c->dist[v] + w < c->dist[u])
                {
                    c->dist[u] = c->dist[v] + w;
                    if (w == 0)
                        deque[--head] = u;
                    else
                        deque[tail++] = u;
                }
            }
        }
    }
    ok = true;
done:
    pgi_free(count);
    pgi_free(edges);
    pgi_free(deque);
    return ok;
}

/* ------------------------------------------------------------ lazy DFA */

static uint32_t
hash_set(const int32_t *set, int n)
{
    uint32_t h = 2166136261u;

    for (int i = 0; i < n; i++)
    {
        h ^= (uint32_t) set[i];
        h *= 16777619u;
    }
    return h;
}

static int
cmp_int32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *) x, b = *(const int32_t *) y;

    return a < b ? -1 : a > b;
}

/* Closure of the seeds already in c->stack[0..n_seeds): the live byte
 * states and the accepting state, sorted, into c->collect; returns count. */
static int
closure(pgi_constraint *c, int n_seeds)
{
    int top = n_seeds, n = 0;

    if (++c->generation == 0)
    {
        memset(c->mark, 0, sizeof(uint32_t) * (size_t) c->n_nfa);
        c->generation = 1;
    }
    for (int i = 0; i < n_seeds; i++)
        c->mark[c->stack[i]] = c->generation;
    while (top > 0)
    {
        int s = c->stack[--top];
        const nfa_state *st = &c->nfa[s];

        if (c->dist[s] == DIST_INF)
            continue;
        if (st->is_byte || s == c->accept_nfa)
            c->collect[n++] = s;
        if (!st->is_byte)
        {
            int outs[2] = {st->out, st->out2};

            for (int k = 0; k < 2; k++)
                if (outs[k] >= 0 && c->mark[outs[k]] != c->generation)
                {
                    c->mark[outs[k]] = c->generation;
                    c->stack[top++] = outs[k];
                }
        }
    }
    qsort(c->collect, (size_t) n, sizeof(int32_t), cmp_int32);
    return n;
}

static bool
grow_table(pgi_constraint *c)
{
    int size = c->table_size ? c->table_size * 2 : 1024;
    int32_t *table = pgi_alloc(sizeof(int32_t) * (size_t) size);

    if (table == NULL)
        return false;
    for (int i = 0; i < size; i++)
        table[i] = -1;
    for (int d = 0; d < c->n_dfa; d++)
    {
        uint32_t h = c->dfa[d]->hash & (uint32_t) (size - 1);

        while (table[h] >= 0)
            h = (h + 1) & (uint32_t) (size - 1);
        table[h] = d;
    }
    pgi_free(c->table);
    c->table = table;
    c->table_size = size;
    return true;
}

/* The DFA state for c->collect[0..n) (n > 0): found or made; -2 on failure. */
static int
intern(pgi_constraint *c, int n)
{
    uint32_t h = hash_set(c->collect, n);
    uint32_t slot;
    dfa_state *d;

    if (c->table_size == 0 || (c->n_dfa + 1) * 2 > c->table_size)
        if (!grow_table(c))
            return -2;
    slot = h & (uint32_t) (c->table_size - 1);
    while (c->table[slot] >= 0)
    {
        d = c->dfa[c->table[slot]];
        if (d->hash == h && d->n == n && memcmp(d->set, c->collect, sizeof(int32_t) * (size_t) n) == 0)
            return c->table[slot];
        slot = (slot + 1) & (uint32_t) (c->table_size - 1);
    }
    if (c->n_dfa >= PGI_CONSTRAINT_MAX_DFA_STATES)
    {
        c->too_large = true;
        return -2;
    }
    if (c->n_dfa == c->dfa_capacity)
    {
        int capacity = c->dfa_capacity ? c->dfa_capacity * 2 : 64;
        dfa_state **p = pgi_realloc(c->dfa, sizeof(dfa_state *) * (size_t) c->dfa_capacity,
                                    sizeof(dfa_state *) * (size_t) capacity);

        if (p == NULL)
            return -2;
        c->dfa = p;
        c->dfa_capacity = capacity;
    }
    d = pgi_calloc(1, sizeof(dfa_state));
    if (d == NULL)
        return -2;
    d->set = pgi_alloc(sizeof(int32_t) * (size_t) n);
    if (d->set == NULL)
    {
        pgi_free(d);
        return -2;
    }
    memcpy(d->set, c->collect, sizeof(int32_t) * (size_t) n);
    d->n = n;
    d->hash = h;
    d->dist = DIST_INF;
    for (int i = 0; i < n; i++)
    {
        if (d->set[i] == c->accept_nfa)
            d->accepting = true;
        if (c->nfa[d->set[i]].is_byte)
            d->has_bytes = true;
        if (c->dist[d->set[i]] < d->dist)
            d->dist = c->dist[d->set[i]];
    }
    for (int b = 0; b < 256; b++)
        d->next[b] = -3;
    c->dfa[c->n_dfa] = d;
    c->table[slot] = c->n_dfa;
    c->stats.dfa_states = c->n_dfa + 1;
    return c->n_dfa++;
}

int
pgi_constraint_start(pgi_constraint *c)
{
    return 0;
}

int
pgi_constraint_next(pgi_constraint *c, int state, unsigned char byte)
{
    dfa_state *d;
    int n_seeds = 0, n, id;

    if (state < 0 || state >= c->n_dfa)
        return -1;
    d = c->dfa[state];
    if (d->next[byte] != -3)
        return d->next[byte];
    for (int i = 0; i < d->n; i++)
    {
        const nfa_state *s = &c->nfa[d->set[i]];

        if (s->is_byte && byte >= s->lo && byte <= s->hi)
            c->stack[n_seeds++] = s->out;
    }
    n = n_seeds > 0 ? closure(c, n_seeds) : 0;
    if (n == 0)
        id = -1;
    else
    {
        id = intern(c, n);
        if (id == -2)
            return -2;
        d = c->dfa[state];
    }
    d->next[byte] = id;
    return id;
}

int
pgi_constraint_advance(pgi_constraint *c, int state, const char *bytes, size_t length)
{
    for (size_t i = 0; i < length && state >= 0; i++)
        state = pgi_constraint_next(c, state, (unsigned char) bytes[i]);
    return state;
}

bool
pgi_constraint_accepting(const pgi_constraint *c, int state)
{
    return state >= 0 && state < c->n_dfa && c->dfa[state]->accepting;
}

bool
pgi_constraint_complete(pgi_constraint *c, int state)
{
    return state >= 0 && state < c->n_dfa && c->dfa[state]->accepting && !c->dfa[state]->has_bytes;
}

int
pgi_constraint_distance(const pgi_constraint *c, int state)
{
    return state >= 0 && state < c->n_dfa ? c->dfa[state]->dist : DIST_INF;
}

bool
pgi_constraint_matches(pgi_constraint *c, const char *text, size_t length)
{
    return pgi_constraint_accepting(c, pgi_constraint_advance(c, 0, text, length));
}

/* ------------------------------------------------------------ compile */

static pgi_status
choices_to_rx(pgi_rx_arena *a, const char *text, size_t length, pgi_rx **out, pgi_error *err)
{
    pgi_rx *alt = pgi_rx_list(a, RX_ALT);
    size_t start = 0;

    if (length == 0 || text[length - 1] != '\0')
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "no choices");
    for (size_t i = 0; i < length; i++)
        if (text[i] == '\0')
        {
            if (i == start)
                return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "choice %d is empty", alt ? alt->n_kids + 1 : 0);
            alt = pgi_rx_add(a, alt, pgi_rx_bytes(a, text + start, i - start));
            start = i + 1;
        }
    if (alt == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the choices");
    *out = alt;
    return PGI_OK;
}

pgi_status
pgi_constraint_compile(const pgi_constraint_spec *spec, pgi_constraint **out, pgi_error *err)
{
    pgi_constraint *c;
    pgi_rx_arena *arena;
    pgi_rx *rx = NULL;
    pgi_status st;
    int end;

    *out = NULL;
    if (spec == NULL || spec->kind == PGI_CONSTRAINT_NONE)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "no constraint");
    if (spec->length > PGI_CONSTRAINT_MAX_TEXT)
        return pgi_fail(err, PGI_ERR_FORMAT, "the constraint is %zu bytes long, more than %d",
                        spec->length, PGI_CONSTRAINT_MAX_TEXT);
    c = pgi_calloc(1, sizeof(*c));
    arena = pgi_rx_arena_new();
    if (c == NULL || arena == NULL)
    {
        pgi_free(c);
        pgi_rx_arena_free(arena);
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the constraint");
    }
    c->text_copy = pgi_alloc(spec->length + 1);
    if (c->text_copy == NULL)
    {
        st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the constraint");
        goto fail;
    }
    if (spec->length > 0)
        memcpy(c->text_copy, spec->text, spec->length);
    c->text_copy[spec->length] = '\0';
    c->spec.kind = spec->kind;
    c->spec.text = c->text_copy;
    c->spec.length = spec->length;

    switch (spec->kind)
    {
        case PGI_CONSTRAINT_REGEX:
            st = pgi_rx_parse_regex(arena, c->text_copy, spec->length, &rx, err);
            break;
        case PGI_CONSTRAINT_JSON_SCHEMA:
            st = pgi_json_schema_to_rx(arena, c->text_copy, spec->length, &rx, err);
            break;
        case PGI_CONSTRAINT_CHOICES:
            st = choices_to_rx(arena, c->text_copy, spec->length, &rx, err);
            break;
        default:
            st = pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "unknown constraint kind %d", (int) spec->kind);
    }
    if (st != PGI_OK)
        goto fail;

    c->start_nfa = nfa_new(c);
    end = build(c, rx, c->start_nfa);
    if (end < 0 || c->too_large)
    {
        st = c->too_large
                 ? pgi_fail(err, PGI_ERR_FORMAT,
                            "the constraint is too large: more than %d automaton states (smaller maxItems, maxLength or repetition counts help)",
                            PGI_CONSTRAINT_MAX_NFA_STATES)
                 : pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the constraint");
        goto fail;
    }
    c->accept_nfa = end;
    c->stats.nfa_states = c->n_nfa;
    c->mark = pgi_calloc((size_t) c->n_nfa, sizeof(uint32_t));
    c->stack = pgi_alloc(sizeof(int32_t) * (size_t) c->n_nfa * 2);
    c->collect = pgi_alloc(sizeof(int32_t) * (size_t) c->n_nfa);
    if (c->mark == NULL || c->stack == NULL || c->collect == NULL || !compute_distances(c))
    {
        st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the constraint");
        goto fail;
    }
    if (c->dist[c->start_nfa] == DIST_INF)
    {
        st = pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "the constraint matches no text at all");
        goto fail;
    }
    c->stack[0] = c->start_nfa;
    if (intern(c, closure(c, 1)) != 0)
    {
        st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the constraint");
        goto fail;
    }
    pgi_rx_arena_free(arena);
    *out = c;
    return PGI_OK;

fail:
    pgi_rx_arena_free(arena);
    pgi_constraint_free(c);
    return st;
}

void
pgi_constraint_free(pgi_constraint *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->n_dfa; i++)
    {
        dfa_state *d = c->dfa[i];

        if (d->tokens != NULL)
        {
            pgi_free(d->tokens->ids);
            pgi_free(d->tokens->next);
            pgi_free(d->tokens->distance);
            pgi_free(d->tokens);
        }
        pgi_free(d->set);
        pgi_free(d);
    }
    pgi_free(c->dfa);
    pgi_free(c->table);
    pgi_free(c->nfa);
    pgi_free(c->dist);
    pgi_free(c->mark);
    pgi_free(c->stack);
    pgi_free(c->collect);
    pgi_free(c->text_copy);
    pgi_free(c);
}

const pgi_constraint_spec *
pgi_constraint_get_spec(const pgi_constraint *c)
{
    return &c->spec;
}

bool
pgi_constraint_spec_equal(const pgi_constraint_spec *a, const pgi_constraint_spec *b)
{
    return a->kind == b->kind && a->length == b->length &&
           (a->length == 0 || memcmp(a->text, b->text, a->length) == 0);
}

void
pgi_constraint_get_stats(const pgi_constraint *c, pgi_constraint_stats *stats)
{
    *stats = c->stats;
}

/* ------------------------------------------------------------ token trie */

typedef struct trie_node {
    int32_t first_child;
    int32_t next_sibling;
    int32_t token_head;         /* first token whose piece ends here; -1 */
    uint8_t byte;
} trie_node;

struct pgi_token_trie {
    trie_node *nodes;
    int n_nodes, capacity;
    int32_t *token_next;        /* [vocab] next token ending at the same node */
    int32_t *end_tokens;
    int n_end_tokens;
    int vocab;
};

static int
trie_child(pgi_token_trie *t, int node, uint8_t byte)
{
    int prev = -1;

    for (int k = t->nodes[node].first_child; k >= 0; k = t->nodes[k].next_sibling)
    {
        if (t->nodes[k].byte == byte)
            return k;
        prev = k;
    }
    if (t->n_nodes == t->capacity)
    {
        int capacity = t->capacity * 2;
        trie_node *p = pgi_realloc(t->nodes, sizeof(trie_node) * (size_t) t->capacity,
                                   sizeof(trie_node) * (size_t) capacity);

        if (p == NULL)
            return -1;
        t->nodes = p;
        t->capacity = capacity;
    }
    t->nodes[t->n_nodes].first_child = -1;
    t->nodes[t->n_nodes].next_sibling = -1;
    t->nodes[t->n_nodes].token_head = -1;
    t->nodes[t->n_nodes].byte = byte;
    if (prev < 0)
        t->nodes[node].first_child = t->n_nodes;
    else
        t->nodes[prev].next_sibling = t->n_nodes;
    return t->n_nodes++;
}

pgi_status
pgi_token_trie_build(const pgi_tokenizer *tokenizer, pgi_token_trie **out, pgi_error *err)
{
    pgi_token_trie *t = pgi_calloc(1, sizeof(*t));
    int vocab = pgi_tokenizer_vocab_size(tokenizer);
    size_t piece_capacity = pgi_tokenizer_max_piece_length(tokenizer) + 1;
    char *piece = pgi_alloc(piece_capacity);

    *out = NULL;
    if (t == NULL || piece == NULL)
        goto oom;
    t->vocab = vocab;
    t->capacity = 1024;
    t->nodes = pgi_alloc(sizeof(trie_node) * (size_t) t->capacity);
    t->token_next = pgi_alloc(sizeof(int32_t) * (size_t) (vocab > 0 ? vocab : 1));
    t->end_tokens = pgi_alloc(sizeof(int32_t) * 16);
    if (t->nodes == NULL || t->token_next == NULL || t->end_tokens == NULL)
        goto oom;
    t->nodes[0].first_child = t->nodes[0].next_sibling = t->nodes[0].token_head = -1;
    t->nodes[0].byte = 0;
    t->n_nodes = 1;
    for (int32_t id = 0; id < vocab; id++)
    {
        pgi_token_type type = pgi_tokenizer_token_type(tokenizer, id);
        int n, node = 0;

        t->token_next[id] = -1;
        if (pgi_tokenizer_is_end_of_generation(tokenizer, id))
        {
            if (t->n_end_tokens < 16)
                t->end_tokens[t->n_end_tokens++] = id;
            continue;
        }
        if (type == PGI_TOKEN_CONTROL || type == PGI_TOKEN_UNKNOWN || type == PGI_TOKEN_UNUSED)
            continue;
        n = pgi_token_piece(tokenizer, id, piece, piece_capacity);
        if (n <= 0 || (size_t) n > piece_capacity)
            continue;
        for (int i = 0; i < n && node >= 0; i++)
            node = trie_child(t, node, (uint8_t) piece[i]);
        if (node < 0)
            goto oom;
        t->token_next[id] = t->nodes[node].token_head;
        t->nodes[node].token_head = id;
    }
    pgi_free(piece);
    *out = t;
    return PGI_OK;
oom:
    pgi_free(piece);
    pgi_token_trie_free(t);
    return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the token trie");
}

void
pgi_token_trie_free(pgi_token_trie *t)
{
    if (t == NULL)
        return;
    pgi_free(t->nodes);
    pgi_free(t->token_next);
    pgi_free(t->end_tokens);
    pgi_free(t);
}

int
pgi_token_trie_n_end_tokens(const pgi_token_trie *t)
{
    return t->n_end_tokens;
}

const int32_t *
pgi_token_trie_end_tokens(const pgi_token_trie *t)
{
    return t->end_tokens;
}

typedef struct token_collect {
    int32_t *ids, *next;
    int n, capacity;
    bool failed;
} token_collect;

static void
walk(pgi_constraint *c, const pgi_token_trie *t, int node, int state, token_collect *out)
{
    for (int k = t->nodes[node].first_child; k >= 0 && !out->failed; k = t->nodes[k].next_sibling)
    {
        int next = pgi_constraint_next(c, state, t->nodes[k].byte);

        if (next == -2)
        {
            out->failed = true;
            return;
        }
        if (next < 0)
            continue;
        for (int id = t->nodes[k].token_head; id >= 0; id = t->token_next[id])
        {
            if (out->n == out->capacity)
            {
                int capacity = out->capacity ? out->capacity * 2 : 256;
                int32_t *a = pgi_realloc(out->ids, sizeof(int32_t) * (size_t) out->capacity,
                                         sizeof(int32_t) * (size_t) capacity);
                int32_t *b;

                if (a == NULL)
                {
                    out->failed = true;
                    return;
                }
                out->ids = a;
                b = pgi_realloc(out->next, sizeof(int32_t) * (size_t) out->capacity,
                                sizeof(int32_t) * (size_t) capacity);
                if (b == NULL)
                {
                    out->failed = true;
                    return;
                }
                out->next = b;
                out->capacity = capacity;
            }
            out->ids[out->n] = id;
            out->next[out->n] = next;
            out->n++;
        }
        if (t->nodes[k].first_child >= 0)
            walk(c, t, k, next, out);
    }
}

static double
clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

const pgi_constraint_tokens *
pgi_constraint_tokens_at(pgi_constraint *c, const pgi_token_trie *t, int state, pgi_error *err)
{
    dfa_state *d;
    token_collect col = {0};
    pgi_constraint_tokens *tokens;
    double started;
    int32_t *order = NULL;

    if (state < 0 || state >= c->n_dfa)
    {
        pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "no constraint state %d", state);
        return NULL;
    }
    if (c->dfa[state]->tokens != NULL)
        return c->dfa[state]->tokens;
    started = clock_ms();
    walk(c, t, 0, state, &col);
    tokens = pgi_calloc(1, sizeof(*tokens));
    if (col.failed || tokens == NULL)
        goto fail;
    tokens->n = col.n;
    tokens->ids = pgi_alloc(sizeof(int32_t) * (size_t) (col.n > 0 ? col.n : 1));
    tokens->next = pgi_alloc(sizeof(int32_t) * (size_t) (col.n > 0 ? col.n : 1));
    tokens->distance = pgi_alloc(sizeof(int32_t) * (size_t) (col.n > 0 ? col.n : 1));
    order = pgi_alloc(sizeof(int32_t) * (size_t) t->vocab);
    if (tokens->ids == NULL || tokens->next == NULL || tokens->distance == NULL || order == NULL)
        goto fail;
    /* ids ascending: a counting pass over the vocabulary's ids */
    for (int i = 0; i < t->vocab; i++)
        order[i] = -1;
    for (int i = 0; i < col.n; i++)
        order[col.ids[i]] = i;
    tokens->min_distance = DIST_INF;
    {
        int k = 0;

        for (int id = 0; id < t->vocab; id++)
            if (order[id] >= 0)
            {
                int next = col.next[order[id]];

                tokens->ids[k] = id;
                tokens->next[k] = next;
                tokens->distance[k] = c->dfa[next]->dist;
                if (tokens->distance[k] < tokens->min_distance)
                    tokens->min_distance = tokens->distance[k];
                k++;
            }
    }
    pgi_free(order);
    pgi_free(col.ids);
    pgi_free(col.next);
    d = c->dfa[state];
    d->tokens = tokens;
    c->stats.token_lists++;
    c->stats.token_list_ms += clock_ms() - started;
    return tokens;

fail:
    if (tokens != NULL)
    {
        pgi_free(tokens->ids);
        pgi_free(tokens->next);
        pgi_free(tokens->distance);
        pgi_free(tokens);
    }
    pgi_free(order);
    pgi_free(col.ids);
    pgi_free(col.next);
    if (c->too_large)
        pgi_fail(err, PGI_ERR_FORMAT, "the constraint needs more than %d automaton states",
                 PGI_CONSTRAINT_MAX_DFA_STATES);
    else
        pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the constraint's token lists");
    return NULL;
}
