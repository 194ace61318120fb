/*
 * json_schema.c — a JSON schema to the regular language of the JSON texts
 * it accepts, as constraint.c's tree.
 *
 * Supported: type (one or a list): object (properties, required,
 * additionalProperties: only the listed properties are written, in schema
 * order, so any additionalProperties is honoured), array (items,
 * minItems, maxItems), string (minLength, maxLength, or pattern), number,
 * integer, boolean, null; enum, const; anyOf and oneOf (as alternatives:
 * oneOf's branches must not overlap, which is not checked); true and {}
 * (any JSON value, nested at most two levels deep).  Annotations (title,
 * description, $schema, $id, $comment, default, examples) are ignored.
 * Everything else is refused by name: $ref, allOf, not, minimum, format...
 *
 * The text written has one layout: {"a": 1, "b": [1, 2]} (": " and ", ",
 * no other whitespace); numbers have at most 15 digits before and after
 * the point and no exponent; strings use the escapes \" \\ \/ \b \f \n \r
 * \t and no \u (so that a character of the text is a character of the
 * value, as minLength counts them).
 */
#include "constraint.h"
#include "constraint_rx.h"

#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64
#define ANY_DEPTH 2

/* ------------------------------------------------------------ JSON reader */

typedef enum jtype { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT } jtype;

typedef struct jv {
    jtype type;
    bool boolean;
    const char *raw;            /* number: its text */
    size_t raw_length;
    char *str;                  /* string: decoded UTF-8, NUL-terminated */
    size_t str_length;
    struct jv **items;          /* array items, object values */
    struct jv **keys;           /* object keys (strings) */
    int n;
} jv;

typedef struct jreader {
    pgi_rx_arena *a;
    const char *s;
    size_t n, i;
    int depth;
    pgi_error *err;
    pgi_status st;
} jreader;

static jv *
jfail(jreader *r, const char *what)
{
    if (r->st == PGI_OK)
        r->st = pgi_fail(r->err, PGI_ERR_INVALID_ARGUMENT, "the JSON schema is not valid JSON: %s at offset %zu",
                         what, r->i);
    return NULL;
}

static void
skip_ws(jreader *r)
{
    while (r->i < r->n && (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\n' ||
                           r->s[r->i] == '\r'))
        r->i++;
}

static jv *read_value(jreader *r);

static int
put_utf8(char *out, uint32_t c)
{
    if (c < 0x80)
        return out[0] = (char) c, 1;
    if (c < 0x800)
        return out[0] = (char) (0xC0 | (c >> 6)), out[1] = (char) (0x80 | (c & 0x3F)), 2;
    if (c < 0x10000)
        return out[0] = (char) (0xE0 | (c >> 12)), out[1] = (char) (0x80 | ((c >> 6) & 0x3F)),
               out[2] = (char) (0x80 | (c & 0x3F)), 3;
    out[0] = (char) (0xF0 | (c >> 18));
    out[1] = (char) (0x80 | ((c >> 12) & 0x3F));
    out[2] = (char) (0x80 | ((c >> 6) & 0x3F));
    out[3] = (char) (0x80 | (c & 0x3F));
    return 4;
}

static int
hex4(const char *s)
{
    int v = 0;

    for (int k = 0; k < 4; k++)
    {
        char c = s[k];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static jv *
read_string(jreader *r)
{
    jv *v = pgi_rx_alloc(r->a, sizeof(jv));
    size_t start = ++r->i, end = start;
    char *out;
    size_t k = 0;

    if (v == NULL)
        return NULL;
    while (end < r->n && r->s[end] != '"')
    {
        if ((unsigned char) r->s[end] < 0x20)
            return r->i = end, jfail(r, "control character in a string");
        end += r->s[end] == '\\' ? 2 : 1;
    }
    if (end >= r->n)
        return jfail(r, "unterminated string");
    out = pgi_rx_alloc(r->a, end - start + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = start; i < end;)
    {
        if (r->s[i] != '\\')
        {
            out[k++] = r->s[i++];
            continue;
        }
        i++;
        switch (r->s[i])
        {
            case '"': out[k++] = '"'; i++; break;
            case '\\': out[k++] = '\\'; i++; break;
            case '/': out[k++] = '/'; i++; break;
            case 'b': out[k++] = '\b'; i++; break;
            case 'f': out[k++] = '\f'; i++; break;
            case 'n': out[k++] = '\n'; i++; break;
            case 'r': out[k++] = '\r'; i++; break;
            case 't': out[k++] = '\t'; i++; break;
            case 'u':
                {
                    int c = i + 5 <= end ? hex4(r->s + i + 1) : -1;

                    if (c < 0)
                        return r->i = i, jfail(r, "bad \\u escape");
                    i += 5;
                    if (c >= 0xD800 && c <= 0xDBFF && i + 6 <= end && r->s[i] == '\\' &&
                        r->s[i + 1] == 'u')
                    {
                        int lo = hex4(r->s + i + 2);

                        if (lo >= 0xDC00 && lo <= 0xDFFF)
                        {
                            c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                            i += 6;
                        }
                    }
                    if (c >= 0xD800 && c <= 0xDFFF)
                        return r->i = i, jfail(r, "lone surrogate in a \\u escape");
                    if (c == 0)
                        return r->i = i, jfail(r, "\\u0000 in a string");
                    k += (size_t) put_utf8(out + k, (uint32_t) c);
                    break;
                }
            default:
                return r->i = i, jfail(r, "bad escape");
        }
    }
    out[k] = '\0';
    v->type = J_STRING;
    v->str = out;
    v->str_length = k;
    r->i = end + 1;
    return v;
}

static jv *
read_number(jreader *r)
{
    jv *v = pgi_rx_alloc(r->a, sizeof(jv));
    size_t start = r->i;
    const char *s = r->s;

    if (v == NULL)
        return NULL;
    if (r->i < r->n && s[r->i] == '-')
        r->i++;
    if (r->i < r->n && s[r->i] == '0')
        r->i++;
    else if (r->i < r->n && s[r->i] >= '1' && s[r->i] <= '9')
        while (r->i < r->n && s[r->i] >= '0' && s[r->i] <= '9')
            r->i++;
    else
        return jfail(r, "bad number");
    if (r->i < r->n && s[r->i] == '.')
    {
        r->i++;
        if (!(r->i < r->n && s[r->i] >= '0' && s[r->i] <= '9'))
            return jfail(r, "bad number");
        while (r->i < r->n && s[r->i] >= '0' && s[r->i] <= '9')
            r->i++;
    }
    if (r->i < r->n && (s[r->i] == 'e' || s[r->i] == 'E'))
    {
        r->i++;
        if (r->i < r->n && (s[r->i] == '+' || s[r->i] == '-'))
            r->i++;
        if (!(r->i < r->n && s[r->i] >= '0' && s[r->i] <= '9'))
            return jfail(r, "bad number");
        while (r->i < r->n && s[r->i] >= '0' && s[r->i] <= '9')
            r->i++;
    }
    v->type = J_NUMBER;
    v->raw = s + start;
    v->raw_length = r->i - start;
    return v;
}

static bool
push_item(jreader *r, jv *v, jv *item, jv *key, int *capacity)
{
    if (v->n == *capacity)
    {
        int grown = *capacity ? *capacity * 2 : 8;
        jv **items = pgi_rx_alloc(r->a, sizeof(jv *) * (size_t) grown);
        jv **keys = pgi_rx_alloc(r->a, sizeof(jv *) * (size_t) grown);

        if (items == NULL || keys == NULL)
            return false;
        if (v->n > 0)
        {
            memcpy(items, v->items, sizeof(jv *) * (size_t) v->n);
            memcpy(keys, v->keys, sizeof(jv *) * (size_t) v->n);
        }
        v->items = items;
        v->keys = keys;
        *capacity = grown;
    }
    v->items[v->n] = item;
    v->keys[v->n] = key;
    v->n++;
    return true;
}

static jv *
read_container(jreader *r, bool object)
{
    jv *v = pgi_rx_alloc(r->a, sizeof(jv));
    int capacity = 0;
    char close = object ? '}' : ']';

    if (v == NULL)
        return NULL;
    if (++r->depth > MAX_DEPTH)
        return jfail(r, "nested too deeply");
    v->type = object ? J_OBJECT : J_ARRAY;
    r->i++;
    skip_ws(r);
    if (r->i < r->n && r->s[r->i] == close)
    {
        r->i++;
        r->depth--;
        return v;
    }
    for (;;)
    {
        jv *key = NULL, *item;

        skip_ws(r);
        if (object)
        {
            if (r->i >= r->n || r->s[r->i] != '"')
                return jfail(r, "expected a key");
            if ((key = read_string(r)) == NULL)
                return NULL;
            skip_ws(r);
            if (r->i >= r->n || r->s[r->i] != ':')
                return jfail(r, "expected ':'");
            r->i++;
        }
        if ((item = read_value(r)) == NULL)
            return NULL;
        if (!push_item(r, v, item, key, &capacity))
            return NULL;
        skip_ws(r);
        if (r->i < r->n && r->s[r->i] == ',')
        {
            r->i++;
            continue;
        }
        if (r->i < r->n && r->s[r->i] == close)
        {
            r->i++;
            r->depth--;
            return v;
        }
        return jfail(r, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static jv *
read_value(jreader *r)
{
    jv *v;

    skip_ws(r);
    if (r->i >= r->n)
        return jfail(r, "unexpected end");
    switch (r->s[r->i])
    {
        case '{': return read_container(r, true);
        case '[': return read_container(r, false);
        case '"': return read_string(r);
        case 't': case 'f': case 'n':
            {
                static const char *const words[] = {"true", "false", "null"};

                for (int k = 0; k < 3; k++)
                {
                    size_t len = strlen(words[k]);

                    if (r->n - r->i >= len && memcmp(r->s + r->i, words[k], len) == 0)
                    {
                        v = pgi_rx_alloc(r->a, sizeof(jv));
                        if (v == NULL)
                            return NULL;
                        v->type = k == 2 ? J_NULL : J_BOOL;
                        v->boolean = k == 0;
                        r->i += len;
                        return v;
                    }
                }
                return jfail(r, "unexpected word");
            }
        default:
            return read_number(r);
    }
}

/* ------------------------------------------------------------ compiler */

typedef struct compiler {
    pgi_rx_arena *a;
    pgi_error *err;
    pgi_status st;
    char path[256];             /* where in the schema, for messages */
} compiler;

static pgi_rx *
cfail(compiler *c, pgi_status code, const char *fmt, const char *what)
{
    if (c->st == PGI_OK)
    {
        char message[640];

        snprintf(message, sizeof(message), fmt, what);
        c->st = pgi_fail(c->err, code, "%s (at %s)", message, c->path[0] ? c->path : "the top level");
    }
    return NULL;
}

static const jv *
get(const jv *object, const char *key)
{
    for (int i = 0; i < object->n; i++)
        if (strcmp(object->keys[i]->str, key) == 0)
            return object->items[i];
    return NULL;
}

/* A JSON string as the text writes it. */
static void
append_escaped(char *out, size_t *k, const char *s, size_t n)
{
    out[(*k)++] = '"';
    for (size_t i = 0; i < n; i++)
    {
        unsigned char ch = (unsigned char) s[i];

        switch (ch)
        {
            case '"': out[(*k)++] = '\\'; out[(*k)++] = '"'; break;
            case '\\': out[(*k)++] = '\\'; out[(*k)++] = '\\'; break;
            case '\n': out[(*k)++] = '\\'; out[(*k)++] = 'n'; break;
            case '\r': out[(*k)++] = '\\'; out[(*k)++] = 'r'; break;
            case '\t': out[(*k)++] = '\\'; out[(*k)++] = 't'; break;
            case '\b': out[(*k)++] = '\\'; out[(*k)++] = 'b'; break;
            case '\f': out[(*k)++] = '\\'; out[(*k)++] = 'f'; break;
            default:
                if (ch < 0x20)
                {
                    snprintf(out + *k, 7, "\\u%04x", ch);
                    *k += 6;
                }
                else
                    out[(*k)++] = (char) ch;
        }
    }
    out[(*k)++] = '"';
}

static size_t
literal_size(const jv *v)
{
    size_t size = 2;

    switch (v->type)
    {
        case J_NULL: case J_BOOL: return 5;
        case J_NUMBER: return v->raw_length;
        case J_STRING: return v->str_length * 6 + 2;
        default:
            for (int i = 0; i < v->n; i++)
                size += literal_size(v->items[i]) + 2 +
                        (v->type == J_OBJECT ? literal_size(v->keys[i]) + 2 : 0);
            return size;
    }
}

static void
write_literal(const jv *v, char *out, size_t *k)
{
    switch (v->type)
    {
        case J_NULL: memcpy(out + *k, "null", 4); *k += 4; break;
        case J_BOOL:
            memcpy(out + *k, v->boolean ? "true" : "false", v->boolean ? 4 : 5);
            *k += v->boolean ? 4 : 5;
            break;
        case J_NUMBER: memcpy(out + *k, v->raw, v->raw_length); *k += v->raw_length; break;
        case J_STRING: append_escaped(out, k, v->str, v->str_length); break;
        case J_ARRAY: case J_OBJECT:
            out[(*k)++] = v->type == J_ARRAY ? '[' : '{';
            for (int i = 0; i < v->n; i++)
            {
                if (i > 0)
                {
                    out[(*k)++] = ',';
                    out[(*k)++] = ' ';
                }
                if (v->type == J_OBJECT)
                {
                    append_escaped(out, k, v->keys[i]->str, v->keys[i]->str_length);
                    out[(*k)++] = ':';
                    out[(*k)++] = ' ';
                }
                write_literal(v->items[i], out, k);
            }
            out[(*k)++] = v->type == J_ARRAY ? ']' : '}';
            break;
    }
}

static pgi_rx *
literal(compiler *c, const jv *v)
{
    char *out = pgi_rx_alloc(c->a, literal_size(v) + 8);
    size_t k = 0;

    if (out == NULL)
        return NULL;
    write_literal(v, out, &k);
    return pgi_rx_bytes(c->a, out, k);
}

static pgi_rx *
ranges(compiler *c, const uint32_t *r, int n)
{
    return pgi_rx_set(c->a, r, n);
}

static pgi_rx *
digits(compiler *c, int min, int max)
{
    static const uint32_t d[] = {'0', '9'};

    return pgi_rx_repeat(c->a, ranges(c, d, 1), min, max);
}

static pgi_rx *
integer_rx(compiler *c)
{
    static const uint32_t d19[] = {'1', '9'};
    pgi_rx *sign = pgi_rx_repeat(c->a, pgi_rx_str(c->a, "-"), 0, 1);
    pgi_rx *body = pgi_rx_alt2(c->a, pgi_rx_str(c->a, "0"),
                               pgi_rx_cat2(c->a, ranges(c, d19, 1), digits(c, 0, 14)));

    return pgi_rx_cat2(c->a, sign, body);
}

static pgi_rx *
number_rx(compiler *c)
{
    pgi_rx *fraction = pgi_rx_repeat(c->a, pgi_rx_cat2(c->a, pgi_rx_str(c->a, "."), digits(c, 1, 15)), 0, 1);

    return pgi_rx_cat2(c->a, integer_rx(c), fraction);
}

/* One character of a JSON string's text. */
static pgi_rx *
string_char(compiler *c)
{
    static const uint32_t safe[] = {0x20, 0x21, 0x23, 0x5B, 0x5D, 0x10FFFF};
    static const uint32_t escapes[] = {'"', '"', '\\', '\\', '/', '/', 'b', 'b', 'f', 'f',
                                       'n', 'n', 'r', 'r', 't', 't'};

    return pgi_rx_alt2(c->a, ranges(c, safe, 3),
                       pgi_rx_cat2(c->a, pgi_rx_str(c->a, "\\"), ranges(c, escapes, 8)));
}

static pgi_rx *
string_body(compiler *c, int min, int max)
{
    return pgi_rx_repeat(c->a, string_char(c), min, max);
}

static pgi_rx *
quoted(compiler *c, pgi_rx *body)
{
    pgi_rx *q = pgi_rx_list(c->a, RX_CAT);

    q = pgi_rx_add(c->a, q, pgi_rx_str(c->a, "\""));
    q = pgi_rx_add(c->a, q, body);
    return pgi_rx_add(c->a, q, pgi_rx_str(c->a, "\""));
}

/* Any JSON value, nested at most depth levels. */
static pgi_rx *
any_value(compiler *c, int depth)
{
    pgi_rx *alt = pgi_rx_list(c->a, RX_ALT);

    alt = pgi_rx_add(c->a, alt, pgi_rx_str(c->a, "null"));
    alt = pgi_rx_add(c->a, alt, pgi_rx_str(c->a, "true"));
    alt = pgi_rx_add(c->a, alt, pgi_rx_str(c->a, "false"));
    alt = pgi_rx_add(c->a, alt, number_rx(c));
    alt = pgi_rx_add(c->a, alt, quoted(c, string_body(c, 0, -1)));
    if (depth > 0)
    {
        pgi_rx *item = any_value(c, depth - 1);
        pgi_rx *member = pgi_rx_list(c->a, RX_CAT);
        pgi_rx *items, *members;

        items = pgi_rx_cat2(c->a, item,
                            pgi_rx_repeat(c->a, pgi_rx_cat2(c->a, pgi_rx_str(c->a, ", "), any_value(c, depth - 1)), 0, -1));
        alt = pgi_rx_add(c->a, alt, pgi_rx_cat2(c->a, pgi_rx_str(c->a, "["),
                                                pgi_rx_cat2(c->a, pgi_rx_repeat(c->a, items, 0, 1), pgi_rx_str(c->a, "]"))));
        member = pgi_rx_add(c->a, member, quoted(c, string_body(c, 0, -1)));
        member = pgi_rx_add(c->a, member, pgi_rx_str(c->a, ": "));
        member = pgi_rx_add(c->a, member, any_value(c, depth - 1));
        members = pgi_rx_list(c->a, RX_CAT);
        members = pgi_rx_add(c->a, members, member);
        {
            pgi_rx *more = pgi_rx_list(c->a, RX_CAT);

            more = pgi_rx_add(c->a, more, pgi_rx_str(c->a, ", "));
            more = pgi_rx_add(c->a, more, quoted(c, string_body(c, 0, -1)));
            more = pgi_rx_add(c->a, more, pgi_rx_str(c->a, ": "));
            more = pgi_rx_add(c->a, more, any_value(c, depth - 1));
            members = pgi_rx_add(c->a, members, pgi_rx_repeat(c->a, more, 0, -1));
        }
        alt = pgi_rx_add(c->a, alt, pgi_rx_cat2(c->a, pgi_rx_str(c->a, "{"),
                                                pgi_rx_cat2(c->a, pgi_rx_repeat(c->a, members, 0, 1), pgi_rx_str(c->a, "}"))));
    }
    return alt;
}

static pgi_rx *compile_schema(compiler *c, const jv *schema, int depth);

static const char *const annotations[] = {
    "title", "description", "$schema", "$id", "$comment", "default", "examples", "deprecated",
    "readOnly", "writeOnly", NULL
};
static const char *const supported[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "enum", "const", "anyOf", "oneOf", NULL
};

static bool
in_list(const char *const *list, const char *key)
{
    for (int i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], key) == 0)
            return true;
    return false;
}

/* A non-negative integer keyword; -1 when absent; -2 after an error. */
static int
count_keyword(compiler *c, const jv *schema, const char *key)
{
    const jv *v = get(schema, key);
    long value = 0;

    if (v == NULL)
        return -1;
    if (v->type != J_NUMBER || v->raw[0] == '-' || memchr(v->raw, '.', v->raw_length) != NULL ||
        memchr(v->raw, 'e', v->raw_length) != NULL || memchr(v->raw, 'E', v->raw_length) != NULL)
        return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be a non-negative integer", key), -2;
    for (size_t i = 0; i < v->raw_length; i++)
    {
        value = value * 10 + (v->raw[i] - '0');
        if (value > 1000)
            return cfail(c, PGI_ERR_UNSUPPORTED, "\"%s\" above 1000 is not supported", key), -2;
    }
    return (int) value;
}

static bool
type_matches(const jv *value, const char *type)
{
    switch (value->type)
    {
        case J_NULL: return strcmp(type, "null") == 0;
        case J_BOOL: return strcmp(type, "boolean") == 0;
        case J_STRING: return strcmp(type, "string") == 0;
        case J_ARRAY: return strcmp(type, "array") == 0;
        case J_OBJECT: return strcmp(type, "object") == 0;
        case J_NUMBER:
            if (strcmp(type, "number") == 0)
                return true;
            return strcmp(type, "integer") == 0 && memchr(value->raw, '.', value->raw_length) == NULL &&
                   memchr(value->raw, 'e', value->raw_length) == NULL &&
                   memchr(value->raw, 'E', value->raw_length) == NULL;
    }
    return false;
}

static bool
value_has_type(const jv *value, const jv *type)
{
    if (type == NULL)
        return true;
    if (type->type == J_STRING)
        return type_matches(value, type->str);
    for (int i = 0; i < type->n; i++)
        if (type->items[i]->type == J_STRING && type_matches(value, type->items[i]->str))
            return true;
    return false;
}

static pgi_rx *
compile_object(compiler *c, const jv *schema, int depth)
{
    const jv *properties = get(schema, "properties");
    const jv *required = get(schema, "required");
    const jv *additional = get(schema, "additionalProperties");
    int n = properties != NULL ? properties->n : 0;
    pgi_rx **member;
    bool *is_required;
    pgi_rx *alt, *body;
    int first_required = -1;
    size_t path_length = strlen(c->path);

    if (properties != NULL && properties->type != J_OBJECT)
        return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be an object", "properties");
    /* no properties listed and others allowed: any object */
    if (properties == NULL && required == NULL &&
        !(additional != NULL && additional->type == J_BOOL && !additional->boolean))
    {
        pgi_rx *any = any_value(c, ANY_DEPTH);

        /* any_value's last alternative is the object */
        return any != NULL && any->n_kids > 0 ? any->kids[any->n_kids - 1] : NULL;
    }
    if (required != NULL && required->type != J_ARRAY)
        return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be an array of property names", "required");
    if (additional != NULL && additional->type != J_BOOL && additional->type != J_OBJECT)
        return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be a boolean or a schema", "additionalProperties");
    member = pgi_rx_alloc(c->a, sizeof(pgi_rx *) * (size_t) (n + 1));
    is_required = pgi_rx_alloc(c->a, sizeof(bool) * (size_t) (n + 1));
    if (member == NULL || is_required == NULL)
        return NULL;
    for (int i = 0; required != NULL && i < required->n; i++)
    {
        const jv *name = required->items[i];
        bool found = false;

        if (name->type != J_STRING)
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be an array of property names", "required");
        for (int k = 0; k < n; k++)
            if (strcmp(properties->keys[k]->str, name->str) == 0)
                is_required[k] = found = true;
        if (!found)
            return cfail(c, PGI_ERR_UNSUPPORTED,
                         "required property \"%s\" is not among the properties (only listed properties are written)",
                         name->str);
    }
    for (int i = 0; i < n; i++)
    {
        pgi_rx *key;
        size_t k = 0;
        const jv *name = properties->keys[i];
        char *text = pgi_rx_alloc(c->a, name->str_length * 6 + 8);

        if (text == NULL)
            return NULL;
        for (int j = 0; j < i; j++)
            if (strcmp(properties->keys[j]->str, name->str) == 0)
                return cfail(c, PGI_ERR_INVALID_ARGUMENT, "property \"%s\" is listed twice", name->str);
        append_escaped(text, &k, name->str, name->str_length);
        text[k++] = ':';
        text[k++] = ' ';
        key = pgi_rx_bytes(c->a, text, k);
        snprintf(c->path + path_length, sizeof(c->path) - path_length, "/properties/%s", name->str);
        member[i] = pgi_rx_cat2(c->a, key, compile_schema(c, properties->items[i], depth + 1));
        c->path[path_length] = '\0';
        if (member[i] == NULL)
            return NULL;
        if (is_required[i] && first_required < 0)
            first_required = i;
    }
    /* The first property written is k (any optional one before the first
     * required, or that one); after it each later property is ", " member,
     * optional unless required. */
    alt = pgi_rx_list(c->a, RX_ALT);
    for (int k = 0; k < n && (first_required < 0 || k <= first_required); k++)
    {
        pgi_rx *seq = pgi_rx_add(c->a, pgi_rx_list(c->a, RX_CAT), member[k]);

        for (int j = k + 1; j < n; j++)
        {
            pgi_rx *more = pgi_rx_cat2(c->a, pgi_rx_str(c->a, ", "), member[j]);

            seq = pgi_rx_add(c->a, seq, is_required[j] ? more : pgi_rx_repeat(c->a, more, 0, 1));
        }
        alt = pgi_rx_add(c->a, alt, seq);
    }
    if (first_required < 0)
        alt = pgi_rx_add(c->a, alt, pgi_rx_empty(c->a));
    body = pgi_rx_cat2(c->a, pgi_rx_str(c->a, "{"), alt);
    return pgi_rx_cat2(c->a, body, pgi_rx_str(c->a, "}"));
}

static pgi_rx *
compile_array(compiler *c, const jv *schema, int depth)
{
    const jv *items = get(schema, "items");
    int min = count_keyword(c, schema, "minItems");
    int max = count_keyword(c, schema, "maxItems");
    size_t path_length = strlen(c->path);
    pgi_rx *item, *more, *list;

    if (min == -2 || max == -2)
        return NULL;
    if (min < 0)
        min = 0;
    if (max >= 0 && max < min)
        return cfail(c, PGI_ERR_INVALID_ARGUMENT, "%s: maxItems is less than minItems", "the array");
    if (items != NULL && items->type == J_ARRAY)
        return cfail(c, PGI_ERR_UNSUPPORTED, "\"%s\" as an array (tuples) is not supported", "items");
    if (max == 0)
        return pgi_rx_str(c->a, "[]");
    snprintf(c->path + path_length, sizeof(c->path) - path_length, "/items");
    item = items != NULL ? compile_schema(c, items, depth + 1) : any_value(c, ANY_DEPTH);
    more = pgi_rx_cat2(c->a, pgi_rx_str(c->a, ", "),
                       items != NULL ? compile_schema(c, items, depth + 1) : any_value(c, ANY_DEPTH));
    c->path[path_length] = '\0';
    list = pgi_rx_cat2(c->a, item,
                       pgi_rx_repeat(c->a, more, min > 0 ? min - 1 : 0, max < 0 ? -1 : max - 1));
    if (min == 0)
        list = pgi_rx_repeat(c->a, list, 0, 1);
    return pgi_rx_cat2(c->a, pgi_rx_cat2(c->a, pgi_rx_str(c->a, "["), list), pgi_rx_str(c->a, "]"));
}

static pgi_rx *
compile_string(compiler *c, const jv *schema)
{
    int min = count_keyword(c, schema, "minLength");
    int max = count_keyword(c, schema, "maxLength");
    const jv *pattern = get(schema, "pattern");

    if (min == -2 || max == -2)
        return NULL;
    if (pattern != NULL)
    {
        pgi_rx *rx;
        pgi_error inner;
        pgi_status st;
        const char *p;
        size_t n;
        bool anchored_start, anchored_end;
        static const uint32_t safe[] = {0x20, 0x21, 0x23, 0x5B, 0x5D, 0x10FFFF};

        if (pattern->type != J_STRING)
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be a string", "pattern");
        if (min >= 0 || max >= 0)
            return cfail(c, PGI_ERR_UNSUPPORTED, "%s together with minLength or maxLength is not supported",
                         "\"pattern\"");
        p = pattern->str;
        n = pattern->str_length;
        st = pgi_rx_parse_regex(c->a, p, n, &rx, &inner);
        if (st != PGI_OK)
            return cfail(c, st, "pattern: %s", inner.message);
        if (!pgi_rx_restrict_to_json_string(c->a, rx))
            return cfail(c, PGI_ERR_UNSUPPORTED,
                         "%s with characters JSON must escape (\", \\, control characters) is not supported",
                         "\"pattern\"");
        /* JSON Schema patterns search: unanchored ends match anything */
        anchored_start = n > 0 && p[0] == '^';
        anchored_end = n > 0 && p[n - 1] == '$';
        if (anchored_end)
        {
            size_t backslashes = 0;

            for (size_t i = n - 1; i > 0 && p[i - 1] == '\\'; i--)
                backslashes++;
            anchored_end = backslashes % 2 == 0;
        }
        if (!anchored_start)
            rx = pgi_rx_cat2(c->a, pgi_rx_repeat(c->a, ranges(c, safe, 3), 0, -1), rx);
        if (!anchored_end)
            rx = pgi_rx_cat2(c->a, rx, pgi_rx_repeat(c->a, ranges(c, safe, 3), 0, -1));
        return quoted(c, rx);
    }
    if (max >= 0 && min > max)
        return cfail(c, PGI_ERR_INVALID_ARGUMENT, "%s: maxLength is less than minLength", "the string");
    return quoted(c, string_body(c, min < 0 ? 0 : min, max));
}

static pgi_rx *
compile_type(compiler *c, const jv *schema, const char *type, int depth)
{
    if (strcmp(type, "null") == 0)
        return pgi_rx_str(c->a, "null");
    if (strcmp(type, "boolean") == 0)
        return pgi_rx_alt2(c->a, pgi_rx_str(c->a, "true"), pgi_rx_str(c->a, "false"));
    if (strcmp(type, "integer") == 0)
        return integer_rx(c);
    if (strcmp(type, "number") == 0)
        return number_rx(c);
    if (strcmp(type, "string") == 0)
        return compile_string(c, schema);
    if (strcmp(type, "object") == 0)
        return compile_object(c, schema, depth);
    if (strcmp(type, "array") == 0)
        return compile_array(c, schema, depth);
    return cfail(c, PGI_ERR_INVALID_ARGUMENT, "unknown type \"%s\"", type);
}

static pgi_rx *
compile_schema(compiler *c, const jv *schema, int depth)
{
    const jv *type, *choices;

    if (c->st != PGI_OK)
        return NULL;
    if (depth > MAX_DEPTH)
        return cfail(c, PGI_ERR_INVALID_ARGUMENT, "%s", "the schema is nested too deeply");
    if (schema->type == J_BOOL)
    {
        if (!schema->boolean)
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "%s", "the schema false matches nothing");
        return any_value(c, ANY_DEPTH);
    }
    if (schema->type != J_OBJECT)
        return cfail(c, PGI_ERR_INVALID_ARGUMENT, "%s", "a schema must be an object or a boolean");
    for (int i = 0; i < schema->n; i++)
    {
        const char *key = schema->keys[i]->str;

        if (!in_list(annotations, key) && !in_list(supported, key))
            return cfail(c, PGI_ERR_UNSUPPORTED, "JSON schema keyword \"%s\" is not supported", key);
    }
    type = get(schema, "type");
    if (type != NULL)
    {
        if (type->type != J_STRING && type->type != J_ARRAY)
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be a string or an array of strings", "type");
        for (int i = 0; type->type == J_ARRAY && i < type->n; i++)
            if (type->items[i]->type != J_STRING)
                return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be a string or an array of strings", "type");
        if (type->type == J_ARRAY && type->n == 0)
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must not be an empty array", "type");
    }

    if ((choices = get(schema, "const")) != NULL)
    {
        if (!value_has_type(choices, type))
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "%s", "\"const\" does not have the schema's type");
        return literal(c, choices);
    }
    if ((choices = get(schema, "enum")) != NULL)
    {
        pgi_rx *alt = pgi_rx_list(c->a, RX_ALT);

        if (choices->type != J_ARRAY || choices->n == 0)
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "%s", "\"enum\" must be a non-empty array");
        for (int i = 0; i < choices->n; i++)
            if (value_has_type(choices->items[i], type))
                alt = pgi_rx_add(c->a, alt, literal(c, choices->items[i]));
        if (alt != NULL && alt->n_kids == 0)
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "%s", "no \"enum\" value has the schema's type");
        return alt;
    }
    if ((choices = get(schema, "anyOf")) != NULL || (choices = get(schema, "oneOf")) != NULL)
    {
        pgi_rx *alt = pgi_rx_list(c->a, RX_ALT);
        const char *name = get(schema, "anyOf") != NULL ? "anyOf" : "oneOf";
        size_t path_length = strlen(c->path);

        if (get(schema, "anyOf") != NULL && get(schema, "oneOf") != NULL)
            return cfail(c, PGI_ERR_UNSUPPORTED, "%s", "anyOf together with oneOf is not supported");
        for (int i = 0; i < schema->n; i++)
        {
            const char *key = schema->keys[i]->str;

            if (strcmp(key, name) != 0 && !in_list(annotations, key))
                return cfail(c, PGI_ERR_UNSUPPORTED,
                             "keyword \"%s\" beside anyOf/oneOf is not supported (move it into each branch)",
                             key);
        }
        if (choices->type != J_ARRAY || choices->n == 0)
            return cfail(c, PGI_ERR_INVALID_ARGUMENT, "\"%s\" must be a non-empty array of schemas", name);
        for (int i = 0; i < choices->n; i++)
        {
            snprintf(c->path + path_length, sizeof(c->path) - path_length, "/%s/%d", name, i);
            alt = pgi_rx_add(c->a, alt, compile_schema(c, choices->items[i], depth + 1));
            c->path[path_length] = '\0';
        }
        return alt;
    }
    if (type == NULL)
    {
        if (get(schema, "properties") != NULL || get(schema, "required") != NULL ||
            get(schema, "additionalProperties") != NULL)
            return compile_type(c, schema, "object", depth);
        if (get(schema, "items") != NULL || get(schema, "minItems") != NULL || get(schema, "maxItems") != NULL)
            return compile_type(c, schema, "array", depth);
        if (get(schema, "pattern") != NULL || get(schema, "minLength") != NULL ||
            get(schema, "maxLength") != NULL)
            return compile_type(c, schema, "string", depth);
        return any_value(c, ANY_DEPTH);
    }
    if (type->type == J_STRING)
        return compile_type(c, schema, type->str, depth);
    {
        pgi_rx *alt = pgi_rx_list(c->a, RX_ALT);

        for (int i = 0; i < type->n; i++)
            alt = pgi_rx_add(c->a, alt, compile_type(c, schema, type->items[i]->str, depth));
        return alt;
    }
}

pgi_status
pgi_json_schema_to_rx(pgi_rx_arena *a, const char *text, size_t length, pgi_rx **out,
                      pgi_error *err)
{
    jreader r = {.a = a, .s = text, .n = length, .i = 0, .depth = 0, .err = err, .st = PGI_OK};
    compiler c = {.a = a, .err = err, .st = PGI_OK};
    jv *schema = read_value(&r);
    pgi_rx *rx;

    *out = NULL;
    if (r.st != PGI_OK)
        return r.st;
    if (schema == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the JSON schema");
    skip_ws(&r);
    if (r.i < r.n)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "the JSON schema is not valid JSON: text after the value at offset %zu", r.i);
    c.path[0] = '\0';
    rx = compile_schema(&c, schema, 0);
    if (c.st != PGI_OK)
        return c.st;
    if (rx == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the JSON schema");
    *out = rx;
    return PGI_OK;
}
