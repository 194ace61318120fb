"""The inputs of the gpt-4o pre-tokenizer vectors: every valid-UTF-8 case of
llama.cpp's ggml-vocab-*.gguf.inp files (in $PGI_SHARED_MODELS/vocab, by
default ../shared/models/vocab), then the hand-made strings below, then
characters whose category depends on the Unicode version; duplicates
dropped, first occurrence kept."""
import glob
import os


def inp_cases():
    models = os.environ.get("PGI_SHARED_MODELS", "../shared/models")
    out = []
    for path in sorted(glob.glob(os.path.join(models, "vocab", "*.inp"))):
        with open(path, "rb") as f:
            cases = f.read().split(b"\n__ggml_vocab_test__\n")
        if cases and cases[-1] == b"":
            cases = cases[:-1]
        for case in cases:
            try:
                out.append(case.decode("utf-8"))
            except UnicodeDecodeError:
                pass
    return out


HAND = [
    # case and CamelCase
    "HELLO WORLD", "Hello World", "hello world", "HelloWorld", "helloWorld",
    "HTTPServer", "getHTTPResponseCode", "XMLHttpRequest", "iPhone iPAD eBay",
    "ALLCAPS ALLCAPS'S ALLCAPS's", "McDonald's O'Neill", "camelCaseVariableName",
    "snake_case_name CONSTANT_NAME", "A B C a b c", "I am OK", "aBcDeF", "AbCdEf",
    # contractions in every case
    "it's IT'S It'S it'S", "don't DON'T Don'T", "we're WE'RE We'Re", "I've I'VE I'Ve",
    "I'm I'M i'm", "we'll WE'LL We'Ll we'lL", "he'd HE'D He'd",
    "'s 's 'S 'll 'LL 'Ll", "x'sy X'SY", "rock'n'roll", "can't've", "the dogs' bones",
    "'''", "it\u2019s", "USA's", "ABC'DEF",
    # numbers
    "1", "12", "123", "1234", "12345", "123456", "1234567", "3.14159", "1,000,000",
    "2024-01-15", "v1.2.3", "x=12345y", "abc123def", "ABC123", "\u0663\u0664\u0665\u0666",
    "\u00bd \u2153 \u00b2\u00b3", "\u2167\u2168 IX", "\uff11\uff12\uff13\uff14",
    # mixed scripts
    "\u0391\u0398\u0397\u039d\u0391 \u0391\u03b8\u03ae\u03bd\u03b1 \u03b1\u03b8\u03ae\u03bd\u03b1",
    "\u0391\u03b8\u0397\u03bd\u03b1",
    "\u041c\u041e\u0421\u041a\u0412\u0410 \u041c\u043e\u0441\u043a\u0432\u0430 \u043c\u043e\u0441\u043a\u0432\u0430",
    "\u041c\u043e\u0441\u041a\u0432\u0430 \u043cOSKVA",
    "\u4f60\u597d\u4e16\u754c\uff0c\u6211\u662fGPT\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8ABC",
    "\u0627\u0644\u0633\u0651\u064e\u0644\u0627\u0645\u064f \u0639\u064e\u0644\u064e\u064a\u0652\u0643\u064f\u0645\u0652",
    "\u0645\u0631\u062d\u0628\u0627 123 \u0661\u0662\u0663",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0939\u093f\u0928\u094d\u0926\u0940 Hindi",
    "e\u0301cole \u00e9cole E\u0301COLE",
    "\u00c9COLE \u00c9cole \u00e9COLE",
    "\U0001F600\U0001F600 emoji \U0001F44D\U0001F3FD ok",
    "\U0001F468\u200D\U0001F469\u200D\U0001F467 family",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8 Korean",
    "\u1100\u1161\u11a8 jamo",
    "Stra\u00dfe STRASSE \u1e9e",
    "\u01c5ungla \u01c4UNGLA \u01c6ungla",
    "\u02b0\u02b1 modifier \u02b2x",
    "x\u0301y\u0302Z\u0303",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
    "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd",
    "\u1f08\u1f00 \u1f88\u1f80",
    "\u2160\u2161 \u2170\u2171",
    # white space
    "a  b", "a   b", "a\tb", "a\t\tb", "a \t b", "a\nb", "a\n\nb", "a\r\nb", "a\r\n\r\nb",
    "a \n b", "a  \n  b", "   ", "\t\t", "\n\n\n", "\r\n", " \r\n \r\n ", "end   ",
    "  lead", "a\u00a0b", "a\u00a0\u00a0b", "a\u3000b\u2003c", "x\u0085y", "x\u200by",
    "x\u2028y\u2029z", "tab\t\nnext", "a\x0bb\x0cc",
    # punctuation, newlines and slashes
    "Hello!\nWorld", "Hello!\n\nWorld", "end.\r\n", "ok?\n/path", "a/b/c", "./configure",
    "http://example.com/a/b?x=1&y=2", "path/to/file.txt\n", "}\n}\n", "});\n",
    "#include <stdio.h>\n", "x += 1;  // comment\n", "-->\n/\n", "!!!///\n\n//",
    "...\n/", " ... ", "(Hello)", "[HELLO]", "\"Quoted\"", "'Single'", "\u00abguillemets\u00bb",
    "\u2014dash\u2014", "$100 \u20ac50 \u00a520", "a+b=c", "@user #tag", "x^2 ~y |z|",
    "__init__", "--verbose", "***bold***", ":-) :-(", "\u201cHello\u201d",
    "\u00bfQu\u00e9? \u00a1S\u00ed!", "foo\x01bar", "a\u00adb",
    # mixes
    "The QUICK brown Fox's 123 jumps\n\n  over 4567 lazy DOGS'LL!",
    "def f(x):\n    return x*2  # OK\n",
    "MixOfUPPERlower\u00c4\u00d6\u00dcandUmlaut\u00e4\u00f6\u00fc",
    "\u00c4\u00d6\u00dcabc ABC\u00e4\u00f6\u00fc",
    "\u00e9ABC \u00c9abc ABC\u00e9 abc\u00c9",
    "\u00e9'S \u00c9'll \u0394'd",
    " 'S", "\n'S", "$'s", "1'S", "A1b2C3",
    # (?i:...) is ASCII-only in llama.cpp: the long s (U+017F) is no 's'
    "it'\u017f it's IT'\u017f",
]

# Characters whose category changed with Unicode 15.0, 15.1 and 16.0, each
# between ASCII letters so that a letter joins the run.
UCD = [
    "x\U0001E030y",      # 15.0 Lm  CYRILLIC MODIFIER LETTER SMALL A
    "a\U00011F04b",      # 15.0 Lo  KAWI LETTER A
    "a\U0001E4D0b",      # 15.0 Lo  NAG MUNDARI LETTER O
    "a\U00031350b",      # 15.0 Lo  CJK Ext H
    "a\U0002EBF0b",      # 15.1 Lo  CJK Ext I
    "a\u31EFb",          # 15.1 So  CJK STROKE HXG
    "a\u2FFCb",          # 15.1 So  IDC
    "a\u0CF3b",          # 15.0 Mc  KANNADA SIGN COMBINING ANUSVARA ABOVE RIGHT
    "a\u1C89b",          # 16.0 Lu  CYRILLIC CAPITAL LETTER TJE
    "a\U00010D40b",      # 16.0     GARAY block
    "a\U0001CCF0b",      # 16.0 Nd  OUTLINED DIGIT ZERO
]


def all_cases():
    seen = set()
    out = []
    for s in inp_cases() + HAND + UCD:
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out
