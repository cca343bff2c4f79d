// bpe-goldens.mjs - makes tests/golden/bpe/20b.txt: the ids that the
// reference tokenizer (Transformers.js, the npm package
// @huggingface/transformers, GPTNeoXTokenizer) gives for a multilingual
// corpus, read from the local share/20B_tokenizer.json (nothing is fetched).
//
//   mkdir -p /tmp/ref && cd /tmp/ref && npm init -y &&
//     npm install --ignore-scripts @huggingface/transformers@4.3.2
//   NODE_PATH=/tmp/ref/node_modules node tests/dev/bpe-goldens.mjs \
//     share/20B_tokenizer.json > tests/golden/bpe/20b.txt
//   (from the source tree; or run it from /tmp/ref with the paths spelled out)
//
// Each line: the input bytes in hex, a tab, the ids.  Two decisions are
// written into this script, and the C tokenizer follows them:
//  - Invalid UTF-8.  A JS string cannot hold invalid bytes; the official
//    pipeline never sees them either, as it tokenizes a Python str (the
//    Pile's JSON lines, or a prompt decoded by Python).  Input bytes are
//    decoded as Python's bytes.decode("utf-8", errors="replace") does, which
//    is WHATWG's TextDecoder rule: one U+FFFD for each maximal invalid
//    subsequence.  A byte-order mark stays (ignoreBOM), as it does in Python.
//  - \s.  The official tokenizers library (Rust) runs the GPT-2 pattern on
//    Oniguruma, whose \s is U+0009..U+000D, U+0085 and the Z categories;
//    JavaScript's \s also has U+FEFF and lacks U+0085.  The pattern of the
//    reference's ByteLevel pre-tokenizer is replaced by the same pattern with
//    Oniguruma's \s spelled out, so the goldens are the official library's.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "x.js"));
const modPath = (() => {
    try {
        return require.resolve("@huggingface/transformers");
    } catch {
        for (const d of (process.env.NODE_PATH || "").split(":").filter(Boolean)) {
            try {
                return createRequire(path.join(d, "x.js")).resolve("@huggingface/transformers");
            } catch { /* next */ }
        }
        throw new Error("@huggingface/transformers not found: set NODE_PATH");
    }
})();
const { GPTNeoXTokenizer } = await import(modPath);

const file = process.argv[2] || "share/20B_tokenizer.json";
const json = JSON.parse(readFileSync(file, "utf8"));
const tok = new GPTNeoXTokenizer(json, {});

// Oniguruma's \s in the GPT-2 pattern (see above).
const S = "\\t\\n\\v\\f\\r\\u0085\\p{Zs}\\p{Zl}\\p{Zp}";
const pattern = new RegExp(
    `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${S}\\p{L}\\p{N}]+|[${S}]+(?![^${S}])|[${S}]+`,
    "gu");
let patched = 0;
(function walk(o, depth) {
    if (!o || (typeof o !== "object" && typeof o !== "function") || depth > 6) return;
    if (o.constructor && o.constructor.name === "ByteLevel" && o.pattern instanceof RegExp) {
        o.pattern = pattern;
        patched++;
    }
    for (const k of Object.keys(o)) walk(o[k], depth + 1);
})(tok, 0);
if (patched !== 1) throw new Error(`expected one ByteLevel pre-tokenizer, patched ${patched}`);

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const lines = [];
function add(bytes) {
    if (typeof bytes === "string") bytes = enc.encode(bytes);
    const text = dec.decode(bytes);
    const ids = tok.encode(text, { add_special_tokens: false });
    lines.push(Buffer.from(bytes).toString("hex") + "\t" + ids.join(" "));
}
const B = (...parts) => Uint8Array.from(parts.flatMap(p => typeof p === "string" ? [...enc.encode(p)] : p));

// English, contractions, punctuation.
add("Hello world");
add("The quick brown fox jumps over the lazy dog.");
add("I'm sure you're right, they've gone, we'll see, he'd know, it's ok, don't.");
add("'s 't 're 've 'm 'll 'd 'S 'T 'RE 'x '' ''s O'Neil's rock'n'roll");
add("\"Quoted,\" she said -- (parenthetical) [brackets] {braces} <angle> ...!?;:");
add("e-mail: someone@example.com, https://example.org/path?q=1&r=2#frag");
add("ALL CAPS, camelCase, snake_case, kebab-case, PascalCase, x86_64");
// Code.
add("int main(void)\n{\n    printf(\"%d\\n\", 42);\n    return 0;\n}\n");
add("def f(x):\n\tif x:\n\t\treturn [i ** 2 for i in range(x)]  # squares\n\treturn None\n");
add("for (size_t i = 0; i < n; i++) {\n        a[i] += b[i] * c;   // fma\n}\n\n\n");
add("<div class=\"x\">&amp; &lt;tag&gt;</div>\n<script>let y = a => a?.b ?? 0;</script>");
add("SELECT * FROM t WHERE a >= 10 AND b != 'x';  -- comment");
// CJK.
add("中文的分词测试：你好，世界！这是一个没有空格的长句子。");
add("日本語のテキスト、カタカナとひらがな。漢字も含む。");
add("한국어 텍스트입니다. 띄어쓰기가 있습니다.");
add("混合 mixed テキスト with 한글 and 中文123");
// Emoji.
add("😀 😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ ✨🎉");
add("emoji😀glued👍🏽to words🇩🇪");
// RTL.
add("العربية: مرحبا بالعالم! ١٢٣٤٥");
add("עברית: שלום עולם, מה שלומך?");
add("mixed \u202Bembedded RTL\u202C and \u200Fmarks\u200E");
// Combining marks and normalization (NFC composes the decomposed forms).
add("café naïve résumé");
add("cafe\u0301 nai\u0308ve re\u0301sume\u0301");
add("\u1100\u1161\u11A8 \u1112\u1161\u11AB");
add("Tiếng Việt có dấu: Việt Nam, người, được");
add("a\u0300\u0301\u0302\u0303 x\u0332\u0332 \u0301start");
add("ﬁ ﬂ Å Ω K ℌ ① ｆｕｌｌｗｉｄｔｈ");
add("हिन्दी देवनागरी, ภาษาไทยไม่มีช่องว่าง, ελληνικά, русский текст");
// Whitespace.
for (let k = 1; k <= 30; k++) add(" ".repeat(k) + "x");
for (let k = 1; k <= 30; k += 3) add("x" + " ".repeat(k));
add(" ".repeat(60) + "long run");
add("a  b   c    d\t\te\n\nf\r\ng\u00A0h\u3000i\u2028j\u2029k\u0085l\uFEFFm\u1680n\u2009o");
add("\t\t\tindent\n\t\n  \n   \n");
add("trailing spaces   ");
add("   ");
add(" \n ");
add("\u00A0\u00A0x \u00A0y");
add("x\u0085\u0085y \uFEFFz\uFEFF");
add("\uFEFFBOM at the start");
// Numbers.
add("0 1 12 123 1234 12345 123456789012345678901234567890");
add("3.14159, 2.71828; 1,000,000 and 1.000.000; -42 +7 1e-9 0x1F");
add("１２３ ² ³ ½ ¾ Ⅻ ⅷ ٣ ๓ 五");
add("2024-12-31T23:59:59Z v1.2.3-rc4");
// Special and added tokens.
add("<|endoftext|>");
add("text<|endoftext|>more<|padding|>end");
add("<|endoftext|><|endoftext|> <|endoftext| <|endof");
add("<|endoftext|>" + " ".repeat(5) + "<|padding|>");
// Controls and NUL.
add(B([0], "nul", [0, 0], "\x01\x02\x1b[31mred\x1b[0m\x7f"));
// Invalid UTF-8.
add(B([0x80]));
add(B("a", [0x80, 0x81], "b"));
add(B("truncated ", [0xE2, 0x82], " end"));
add(B("truncated at end ", [0xE2, 0x82]));
add(B("four ", [0xF0, 0x9F, 0x98], "x"));
add(B("overlong ", [0xC0, 0x80], " ", [0xC1, 0xBF], " ", [0xE0, 0x80, 0x80]));
add(B("surrogate ", [0xED, 0xA0, 0x80], " ", [0xED, 0xBF, 0xBF]));
add(B("too big ", [0xF4, 0x90, 0x80, 0x80], " ", [0xF5, 0x80], " ", [0xFF, 0xFE]));
add(B([0xFE, 0xFF], "x", [0xC3], "é", [0xA9]));
add(B("latin-1: caf", [0xE9], " na", [0xEF], "ve"));
add(B([0xE4, 0xB8], "中", [0xAD, 0xE6], "文", [0x96]));
add(B("  ", [0x80], "  ", [0xC2], "  "));

// Long words.
add("a".repeat(1000));
add("9".repeat(500));
add("中".repeat(300) + "文字".repeat(100));
add("!".repeat(200) + "-=".repeat(100));
add("😀".repeat(100));

// Random texts from a pool of pieces of every kind (seeded).
let seed = 22;
function rnd(n) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
}
const pool = [
    "the", " the", "The", " and", "ing", "tion", "'s", "'t", "'re", "'ll", "'", "\"", " ", "  ",
    "   ", "\t", "\n", "\n\n", "\r\n", "\u00A0", "\u3000", "\u0085", "\uFEFF", "\u2028",
    "0", "7", "42", "3.14", "１", "²", "½", "Ⅻ", ",", ".", "!", "?", "-", "_", "(", ")", "{",
    "}", ";", "#", "@", "$", "%", "^", "&", "*", "=", "+", "/", "\\", "|", "~", "`", "<", ">",
    "é", "e\u0301", "ñ", "n\u0303", "ü", "ß", "Æ", "ø", "ł", "ş", "\u0301", "\u0308",
    "中", "文", "日本", "語", "한", "국", "\u1100\u1161", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷",
    "ا", "ل", "ع", "ש", "ל", "ו", "\u200F", "\u200D", "ह", "ि", "ภ", "า", "Ω", "ж",
    "<|endoftext|>", "<|padding|>", "<|", "|>", "x", "y", "Q", "code", "def", "return",
];
for (let k = 0; k < 400; k++) {
    const n = 1 + rnd(24);
    let s = "";
    for (let j = 0; j < n; j++) s += pool[rnd(pool.length)];
    add(s);
}
// Random bytes, invalid UTF-8 included.
for (let k = 0; k < 100; k++) {
    const n = 1 + rnd(40);
    const b = new Uint8Array(n);
    for (let j = 0; j < n; j++) {
        const r = rnd(4);
        b[j] = r === 0 ? rnd(256) : r === 1 ? 0x80 + rnd(64) : r === 2 ? 0xC2 + rnd(51) : 32 + rnd(95);
    }
    add(b);
}

process.stdout.write(lines.join("\n") + "\n");
