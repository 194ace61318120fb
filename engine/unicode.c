#include "unicode.h"

uint32_t
pgi_utf8_decode(const unsigned char *text, size_t length, size_t *consumed)
{
    unsigned char lead = text[0];
    size_t need;
    uint32_t codepoint;

    if (lead < 0x80)
    {
        *consumed = 1;
        return lead;
    }
    if ((lead & 0xE0) == 0xC0)
    {
        need = 2;
        codepoint = lead & 0x1F;
    }
    else if ((lead & 0xF0) == 0xE0)
    {
        need = 3;
        codepoint = lead & 0x0F;
    }
    else if ((lead & 0xF8) == 0xF0)
    {
        need = 4;
        codepoint = lead & 0x07;
    }
    else
    {
        /* stray continuation byte or 0xF8..0xFF */
        *consumed = 1;
        return PGI_REPLACEMENT_CHARACTER;
    }
    if (need > length)
    {
        *consumed = 1;
        return PGI_REPLACEMENT_CHARACTER;
    }
    for (size_t i = 1; i < need; i++)
    {
        if ((text[i] & 0xC0) != 0x80)
        {
            *consumed = 1;
            return PGI_REPLACEMENT_CHARACTER;
        }
        codepoint = (codepoint << 6) | (text[i] & 0x3F);
    }
    if (codepoint > PGI_UNICODE_MAX_CODEPOINT)
    {
        *consumed = 1;
        return PGI_REPLACEMENT_CHARACTER;
    }
    *consumed = need;
    return codepoint;
}

size_t
pgi_utf8_encode(uint32_t codepoint, unsigned char *out)
{
    if (codepoint < 0x80)
    {
        out[0] = (unsigned char) codepoint;
        return 1;
    }
    if (codepoint < 0x800)
    {
        out[0] = (unsigned char) (0xC0 | (codepoint >> 6));
        out[1] = (unsigned char) (0x80 | (codepoint & 0x3F));
        return 2;
    }
    if (codepoint < 0x10000)
    {
        out[0] = (unsigned char) (0xE0 | (codepoint >> 12));
        out[1] = (unsigned char) (0x80 | ((codepoint >> 6) & 0x3F));
        out[2] = (unsigned char) (0x80 | (codepoint & 0x3F));
        return 3;
    }
    out[0] = (unsigned char) (0xF0 | ((codepoint >> 18) & 0x07));
    out[1] = (unsigned char) (0x80 | ((codepoint >> 12) & 0x3F));
    out[2] = (unsigned char) (0x80 | ((codepoint >> 6) & 0x3F));
    out[3] = (unsigned char) (0x80 | (codepoint & 0x3F));
    return 4;
}

bool
pgi_utf8_is_valid(const unsigned char *bytes, size_t length)
{
    size_t i = 0;

    while (i < length)
    {
        size_t consumed;
        uint32_t codepoint = pgi_utf8_decode(bytes + i, length - i, &consumed);
        static const uint32_t minimum[5] = {0, 0, 0x80, 0x800, 0x10000};

        if (codepoint == PGI_REPLACEMENT_CHARACTER && consumed == 1 && bytes[i] >= 0x80)
            return false;
        if (codepoint < minimum[consumed] || (codepoint >= 0xD800 && codepoint <= 0xDFFF))
            return false;
        i += consumed;
    }
    return true;
}

pgi_unicode_category
pgi_unicode_category_of(uint32_t codepoint)
{
    if (codepoint > PGI_UNICODE_MAX_CODEPOINT)
        return PGI_UCAT_CN;
    return (pgi_unicode_category)
        pgi_unicode_stage2[((uint32_t) pgi_unicode_stage1[codepoint >> PGI_UNICODE_BLOCK_SHIFT]
                            << PGI_UNICODE_BLOCK_SHIFT) |
                           (codepoint & ((1u << PGI_UNICODE_BLOCK_SHIFT) - 1))];
}

bool
pgi_unicode_is_white_space(uint32_t codepoint)
{
    if (codepoint <= 0x20)
        return codepoint == 0x20 || (codepoint >= 0x09 && codepoint <= 0x0D);
    if (codepoint < 0x85)
        return false;
    for (int i = 0; i < PGI_UNICODE_WHITE_SPACE_COUNT; i++)
    {
        if (pgi_unicode_white_space[i] == codepoint)
            return true;
        if (pgi_unicode_white_space[i] > codepoint)
            break;
    }
    return false;
}

static uint16_t
flags_of_category(pgi_unicode_category category)
{
    switch (category)
    {
        case PGI_UCAT_CN: return PGI_UFLAG_UNDEFINED;
        case PGI_UCAT_CC: case PGI_UCAT_CF: case PGI_UCAT_CO: case PGI_UCAT_CS:
            return PGI_UFLAG_CONTROL;
        case PGI_UCAT_LL: case PGI_UCAT_LM: case PGI_UCAT_LO: case PGI_UCAT_LT: case PGI_UCAT_LU:
            return PGI_UFLAG_LETTER;
        case PGI_UCAT_MC: case PGI_UCAT_ME: case PGI_UCAT_MN:
            return PGI_UFLAG_MARK;
        case PGI_UCAT_ND: return PGI_UFLAG_NUMBER | PGI_UFLAG_DIGIT;
        case PGI_UCAT_NL: case PGI_UCAT_NO:
            return PGI_UFLAG_NUMBER;
        case PGI_UCAT_PC: case PGI_UCAT_PD: case PGI_UCAT_PE: case PGI_UCAT_PF:
        case PGI_UCAT_PI: case PGI_UCAT_PO: case PGI_UCAT_PS:
            return PGI_UFLAG_PUNCTUATION;
        case PGI_UCAT_SC: case PGI_UCAT_SK: case PGI_UCAT_SM: case PGI_UCAT_SO:
            return PGI_UFLAG_SYMBOL;
        case PGI_UCAT_ZL: case PGI_UCAT_ZP: case PGI_UCAT_ZS:
            return PGI_UFLAG_SEPARATOR;
        case PGI_UCAT_COUNT:
            break;
    }
    return PGI_UFLAG_UNDEFINED;
}

uint16_t
pgi_unicode_flags(uint32_t codepoint)
{
    uint16_t flags = flags_of_category(pgi_unicode_category_of(codepoint));

    if (pgi_unicode_is_white_space(codepoint))
        flags |= PGI_UFLAG_WHITESPACE;
    return flags;
}

/* Bytes GPT-2 shows as themselves: '!'..'~', '¡'..'¬', '®'..'ÿ'. */
static bool
gpt2_byte_is_shown_as_itself(unsigned byte)
{
    return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) ||
           (byte >= 0xAE && byte <= 0xFF);
}

uint32_t
pgi_gpt2_byte_to_codepoint(uint8_t byte)
{
    unsigned shifted = 0;

    if (gpt2_byte_is_shown_as_itself(byte))
        return byte;
    /* The others take U+0100, U+0101, ... in byte order. */
    for (unsigned b = 0; b < byte; b++)
        if (!gpt2_byte_is_shown_as_itself(b))
            shifted++;
    return 0x100 + shifted;
}

int
pgi_gpt2_codepoint_to_byte(uint32_t codepoint)
{
    if (codepoint < 0x100)
        return gpt2_byte_is_shown_as_itself(codepoint) ? (int) codepoint : -1;
    if (codepoint < 0x100 + 68)
    {
        unsigned index = codepoint - 0x100;

        for (unsigned b = 0; b < 256; b++)
            if (!gpt2_byte_is_shown_as_itself(b) && index-- == 0)
                return (int) b;
    }
    return -1;
}

static uint32_t
map_codepoint(const pgi_codepoint_map *map, int count, uint32_t codepoint)
{
    int lo = 0, hi = count - 1;

    while (lo <= hi)
    {
        int mid = (lo + hi) / 2;

        if (map[mid].from == codepoint)
            return map[mid].to;
        if (map[mid].from < codepoint)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return codepoint;
}

uint32_t
pgi_unicode_to_lower(uint32_t codepoint)
{
    return map_codepoint(pgi_unicode_lower_map, pgi_unicode_lower_map_count, codepoint);
}

uint32_t
pgi_unicode_nfd_first(uint32_t codepoint)
{
    return map_codepoint(pgi_unicode_nfd_map, pgi_unicode_nfd_map_count, codepoint);
}
