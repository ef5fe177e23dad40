/* The dialect boundary of path_regex: the part of POSIX ERE that Hyperscan reads the same
 * way, so that the multi-pattern matcher and regexec route every path alike.
 *
 * This is a checker over the pattern's characters, not a regex engine. It runs in three
 * passes over a token list: the lexer checks each construct (escapes, brackets, bounds)
 * and pairs the parentheses; a forward pass checks operands, "^" and repetition; a
 * backward pass checks "$". Both builds run it, with or without Hyperscan, so that both
 * accept exactly the same configurations.
 *
 * What differs between the two readings, and so is refused:
 * - escapes other than "\" before a special character: "\d", "\w", "\b", "\1" are Perl
 *   classes, boundaries and back-references to Hyperscan, undefined in POSIX ERE;
 * - a backslash inside brackets: a member in POSIX, an escape in Hyperscan;
 * - "[.x.]" and "[=x=]", "[:alpha:]" outside brackets, "{,n}", a quantifier with nothing to repeat
 * or after another
 *   ("a**", "a+?": possessive and lazy in Hyperscan), "(?...)" groups;
 * - ranges other than within 0-9, a-z or A-Z (POSIX ranges follow the collation order);
 * - "^" other than at the start of the pattern or of a top-level alternative, "$" other
 *   than at the end, an anchor inside a repeated group, "{0}": Hyperscan refuses them;
 * - empty patterns, groups and alternatives, which POSIX leaves undefined;
 * - bounds above 255 (POSIX's smallest RE_DUP_MAX), or nested ones multiplying past it,
 *   which exhaust Hyperscan's compiler;
 * - bytes outside printable ASCII: requests carry them percent-encoded.
 *
 * The matcher's flags close the rest: "." matches a newline in both (HS_FLAG_DOTALL),
 * "^" matches only at the start (no HS_FLAG_MULTILINE). Hyperscan's "$" also matches
 * before a final newline; a normalised path holds none (the request line cannot, and
 * "%0A" stays encoded), and the index hands a path that does to regexec. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/route_index.h"

/* POSIX's smallest RE_DUP_MAX: the largest bound every ERE implementation accepts. */
#define MAX_BOUND 255

enum tok { T_ATOM, T_OPEN, T_CLOSE, T_BAR, T_QUANT, T_CARET, T_DOLLAR };

struct token {
    enum tok kind;
    size_t at;      /* offset in the pattern */
    unsigned bound; /* T_QUANT: the largest count it multiplies by (1 for * + ?) */
    bool zero;      /* T_QUANT: "{0}" or "{0,0}" */
};

struct lexer {
    const char *p;
    struct token *toks;
    size_t n;
    char *err;
    size_t errlen;
};

/* Writes "at offset <at>, <what>" to the caller's buffer; returns -1. */
static int fail(struct lexer *lx, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct lexer *lx, size_t at, const char *fmt, ...)
{
    char msg[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(lx->err, lx->errlen, "at offset %zu, %s", at, msg);
    return -1;
}

static bool printable(unsigned char c)
{
    return c >= 0x20 && c < 0x7f;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* What a backslash before `c` means to Hyperscan, for the message. */
static const char *escape_kind(char c)
{
    if (strchr("dDwWsShHvVN", c))
        return "a Perl character class, not POSIX ERE; write a bracket expression such as "
               "[0-9]";
    if (strchr("bB<>AzZG", c))
        return "an assertion POSIX ERE does not have";
    if (c >= '1' && c <= '9')
        return "a back-reference, which POSIX ERE does not have";
    return "an escape POSIX ERE does not define; only a special character may follow \\";
}

static int lex_escape(struct lexer *lx, size_t *i)
{
    static const char specials[] = ".[]()*+?{}|^$\\";
    char c = lx->p[*i + 1];

    if (!c)
        return fail(lx, *i, "a trailing \\ escapes nothing");
    if (!strchr(specials, c))
        return fail(lx, *i, "\"\\%c\" is %s", printable((unsigned char)c) ? c : '?',
                    escape_kind(c));
    *i += 2;
    return 0;
}

static int range_class(char c)
{
    if (is_digit(c))
        return 1;
    if (c >= 'a' && c <= 'z')
        return 2;
    if (c >= 'A' && c <= 'Z')
        return 3;
    return 0;
}

/* "[:name:]" at p[*i]: the classes both POSIX and Hyperscan define. */
static int lex_class(struct lexer *lx, size_t *i)
{
    static const char *const names[] = {"alnum", "alpha", "blank", "cntrl", "digit", "graph",
                                        "lower", "print", "punct", "space", "upper", "xdigit"};
    const char *name = lx->p + *i + 2;
    const char *end = strstr(name, ":]");
    char got[16];

    for (size_t k = 0; end && k < sizeof names / sizeof *names; k++)
        if (strlen(names[k]) == (size_t)(end - name) && !memcmp(names[k], name, end - name)) {
            *i = (size_t)(end + 2 - lx->p);
            return 0;
        }
    snprintf(got, sizeof got, "%.*s", end && end - name < 15 ? (int)(end - name) : 8, name);
    return fail(lx, *i, "\"[:%s:]\" is not a character class both matchers know", got);
}

/* A bracket expression starting at p[*i] == '['. */
static int lex_bracket(struct lexer *lx, size_t *i)
{
    const char *p = lx->p;
    size_t start = *i, j = *i + 1;

    /* "[:alpha:]" alone is a bracket of ":alph" to POSIX and an error to Hyperscan. */
    if (p[j] == ':' || p[j] == '.' || p[j] == '=')
        for (size_t k = j + 1; p[k] && p[k] != ']'; k++)
            if (p[k] == p[j] && p[k + 1] == ']')
                return fail(lx, start,
                            "\"[%c...%c]\" outside a bracket expression; a class goes inside "
                            "one, as in [[:alpha:]]",
                            p[j], p[j]);
    if (p[j] == '^')
        j++;
    size_t first = j;
    while (j == first || p[j] != ']') {
        char c = p[j];
        if (!c)
            return fail(lx, start, "an unterminated bracket expression");
        if (!printable((unsigned char)c))
            return fail(lx, j,
                        "a byte outside printable ASCII; requests carry it "
                        "percent-encoded");
        if (c == '\\')
            return fail(lx, j,
                        "a backslash inside brackets is a member in POSIX ERE but an escape "
                        "in Hyperscan; write \\\\ outside brackets");
        if (c == '[' && (p[j + 1] == '.' || p[j + 1] == '='))
            return fail(lx, j,
                        "\"[%c\" (a collating element or equivalence class) is not "
                        "supported",
                        p[j + 1]);
        if (c == '[' && p[j + 1] == ':') {
            if (lex_class(lx, &j) < 0)
                return -1;
            if (p[j] == '-' && p[j + 1] != ']')
                return fail(lx, j, "a character class cannot end a range");
            continue;
        }
        if (c == '-' && j != first && p[j + 1] != ']')
            return fail(lx, j,
                        "a \"-\" inside brackets must come first or last, or join the two "
                        "ends of a range");
        if (p[j + 1] == '-' && p[j + 2] != ']' && p[j + 2]) {
            char hi = p[j + 2];
            if (!range_class(c) || range_class(c) != range_class(hi) || c > hi) {
                char what[4] = {c, '-', hi, '\0'};
                return fail(lx, j,
                            "the range \"%s\" is not one within 0-9, a-z or A-Z (other ranges "
                            "follow the locale's collation in POSIX)",
                            printable((unsigned char)hi) ? what : "?");
            }
            j += 3;
            if (p[j] == '-' && p[j + 1] != ']')
                return fail(lx, j, "a range cannot start where another ends");
            continue;
        }
        j++;
    }
    *i = j + 1;
    return 0;
}

/* "{m}", "{m,}" or "{m,n}" at p[*i] == '{'. */
static int lex_bound(struct lexer *lx, size_t *i, struct token *t)
{
    const char *p = lx->p;
    size_t j = *i + 1;
    unsigned long lo = 0, hi;
    bool open = false;

    if (p[j] == ',')
        return fail(lx, *i, "\"{,n}\" is not POSIX ERE; write {0,n}");
    if (!is_digit(p[j]))
        return fail(lx, *i, "a \"{\" that starts no repetition bound; write \\{");
    for (; is_digit(p[j]); j++)
        lo = lo > MAX_BOUND ? lo : lo * 10 + (unsigned long)(p[j] - '0');
    hi = lo;
    if (p[j] == ',') {
        j++;
        open = !is_digit(p[j]);
        hi = 0;
        for (; is_digit(p[j]); j++)
            hi = hi > MAX_BOUND ? hi : hi * 10 + (unsigned long)(p[j] - '0');
    }
    if (p[j] != '}')
        return fail(lx, *i, "an unterminated or malformed repetition bound");
    if (lo > MAX_BOUND || hi > MAX_BOUND)
        return fail(lx, *i, "a repetition bound above 255");
    if (!open && hi < lo)
        return fail(lx, *i, "a repetition bound whose maximum is below its minimum");
    t->bound = open ? (lo ? (unsigned)lo : 1) : (unsigned)hi;
    t->zero = !open && hi == 0;
    *i = j + 1;
    return 0;
}

static int lex(struct lexer *lx)
{
    const char *p = lx->p;
    size_t i = 0;

    while (p[i]) {
        struct token *t = &lx->toks[lx->n++];
        char c = p[i];
        *t = (struct token){T_ATOM, i, 1, false};
        if (!printable((unsigned char)c))
            return fail(lx, i, "a byte outside printable ASCII; requests carry it percent-encoded");
        switch (c) {
        case '\\':
            if (lex_escape(lx, &i) < 0)
                return -1;
            continue;
        case '[':
            if (lex_bracket(lx, &i) < 0)
                return -1;
            continue;
        case '{':
            t->kind = T_QUANT;
            if (lex_bound(lx, &i, t) < 0)
                return -1;
            continue;
        case '(':
            if (p[i + 1] == '?')
                return fail(lx, i, "\"(?\" (lookaround and other Perl groups) is not POSIX ERE");
            t->kind = T_OPEN;
            break;
        case ')':
            t->kind = T_CLOSE;
            break;
        case '|':
            t->kind = T_BAR;
            break;
        case '*':
        case '+':
        case '?':
            t->kind = T_QUANT;
            break;
        case '^':
            t->kind = T_CARET;
            break;
        case '$':
            t->kind = T_DOLLAR;
            break;
        }
        i++;
    }
    return 0;
}

struct group {
    bool at_start;    /* a "^" may open each alternative */
    bool anchored;    /* holds "^" or "$" */
    unsigned product; /* the largest product of bounds inside */
};

/* Operands, "^" and repetition, left to right. */
static int check_forward(struct lexer *lx, struct group *stack)
{
    struct group top = {true, false, 1};
    size_t depth = 0;
    enum tok prev = T_BAR; /* T_BAR: nothing yet in this alternative */
    bool at_start = true, operand_anchored = false;
    unsigned operand_product = 1;

    for (size_t k = 0; k < lx->n; k++) {
        const struct token *t = &lx->toks[k];
        struct group *g = depth ? &stack[depth - 1] : &top;
        switch (t->kind) {
        case T_ATOM:
            operand_product = 1;
            operand_anchored = false;
            at_start = false;
            break;
        case T_OPEN:
            stack[depth++] = (struct group){at_start, false, 1};
            prev = T_BAR;
            continue;
        case T_CLOSE:
            if (depth == 0)
                return fail(lx, t->at, "an unmatched \")\"; write \\)");
            if (prev == T_BAR)
                return fail(lx, t->at, "an empty group or alternative");
            depth--;
            operand_product = g->product;
            operand_anchored = g->anchored;
            g = depth ? &stack[depth - 1] : &top;
            g->anchored |= operand_anchored;
            if (operand_product > g->product)
                g->product = operand_product;
            at_start = false;
            break;
        case T_BAR:
            if (prev == T_BAR)
                return fail(lx, t->at, "an empty alternative");
            at_start = g->at_start;
            break;
        case T_QUANT:
            if (prev != T_ATOM && prev != T_CLOSE)
                return fail(lx, t->at,
                            "a repetition with nothing to repeat (or after another "
                            "repetition, which Hyperscan reads as lazy or possessive)");
            if (t->zero)
                return fail(lx, t->at, "a repetition of zero times");
            if (prev == T_CLOSE && operand_anchored)
                return fail(lx, t->at, "a repeated group holding an anchor");
            if (operand_product * t->bound > MAX_BOUND)
                return fail(lx, t->at, "nested repetition bounds multiplying past 255");
            if (operand_product * t->bound > g->product)
                g->product = operand_product * t->bound;
            at_start = false;
            break;
        case T_CARET:
            if (!at_start)
                return fail(lx, t->at,
                            "a \"^\" other than at the start of the pattern or of a "
                            "top-level alternative");
            g->anchored = true;
            break;
        case T_DOLLAR:
            g->anchored = true;
            at_start = false;
            break;
        }
        prev = t->kind;
    }
    if (depth)
        return fail(lx, lx->toks[lx->n - 1].at, "an unclosed \"(\"");
    if (prev == T_BAR)
        return fail(lx, lx->n ? lx->toks[lx->n - 1].at : 0, "an empty alternative");
    return 0;
}

/* "$" only where nothing can follow it: right to left, the mirror of "^". */
static int check_backward(struct lexer *lx, bool *stack)
{
    size_t depth = 0;
    bool at_end = true;

    for (size_t k = lx->n; k-- > 0;) {
        const struct token *t = &lx->toks[k];
        switch (t->kind) {
        case T_CLOSE:
            stack[depth++] = at_end;
            break;
        case T_OPEN:
            depth--;
            at_end = false;
            break;
        case T_BAR:
            at_end = depth ? stack[depth - 1] : true;
            break;
        case T_DOLLAR:
            if (!at_end)
                return fail(lx, t->at, "a \"$\" other than at the end of the pattern");
            break;
        case T_CARET:
            break;
        case T_ATOM:
        case T_QUANT:
            at_end = false;
            break;
        }
    }
    return 0;
}

int sl_regex_dialect_check(const char *pattern, char *err, size_t errlen)
{
    size_t len = strlen(pattern);
    struct lexer lx = {pattern, NULL, 0, err, errlen};
    struct group *groups = NULL;
    bool *ends = NULL;
    int rc = -1;

    if (len == 0) {
        snprintf(err, errlen, "an empty pattern");
        return -1;
    }
    lx.toks = malloc(len * sizeof *lx.toks);
    groups = malloc(len * sizeof *groups);
    ends = malloc(len * sizeof *ends);
    if (!lx.toks || !groups || !ends) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (lex(&lx) == 0 && check_forward(&lx, groups) == 0 && check_backward(&lx, ends) == 0)
        rc = 0;
done:
    free(lx.toks);
    free(groups);
    free(ends);
    return rc;
}
