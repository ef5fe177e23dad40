/* The literal prefix of a POSIX extended regular expression: the route index runs regexec
 * only for patterns whose prefix the path starts with. The scan is deliberately modest; an
 * operator it does not understand ends the prefix, which costs speed, never a match. */
#include <string.h>

#include "sluice/route_index.h"

/* The characters with a meaning in an ERE outside brackets (POSIX XBD 9.4.3). */
static const char operators[] = ".[]()*+?{}|^$\\";

static bool is_operator(char c)
{
    return c && strchr(operators, c);
}

/* The index of the "]" closing the bracket expression opened at p[i], or 0 when it is not
 * closed. A "]" first in the list is a member; "[:class:]", "[.coll.]" and "[=equiv=]"
 * may hold a "]" of their own; a backslash is an ordinary member. */
static size_t bracket_end(const char *p, size_t i)
{
    size_t j = i + 1;

    if (p[j] == '^')
        j++;
    if (p[j] == ']')
        j++;
    while (p[j]) {
        if (p[j] == '[' && (p[j + 1] == ':' || p[j + 1] == '.' || p[j + 1] == '=')) {
            char kind = p[j + 1];
            size_t k = j + 2;
            while (p[k] && !(p[k] == kind && p[k + 1] == ']'))
                k++;
            if (!p[k])
                return 0;
            j = k + 2;
            continue;
        }
        if (p[j] == ']')
            return j;
        j++;
    }
    return 0;
}

/* True when the pattern has a "|" outside parentheses and brackets, so that "^" anchors
 * only the first alternative, or when it cannot be scanned with confidence. */
static bool may_have_alternatives(const char *p)
{
    int depth = 0;

    for (size_t i = 0; p[i]; i++) {
        switch (p[i]) {
        case '\\':
            if (!p[i + 1])
                return true;
            i++;
            break;
        case '[': {
            size_t end = bracket_end(p, i);
            if (!end)
                return true;
            i = end;
            break;
        }
        case '(':
            depth++;
            break;
        case ')':
            if (depth == 0)
                return true;
            depth--;
            break;
        case '|':
            if (depth == 0)
                return true;
            break;
        }
    }
    return false;
}

size_t sl_regex_literal_prefix(const char *pattern, char *out, size_t size)
{
    size_t n = 0;

    if (size == 0)
        return 0;
    if (pattern[0] == '^' && !may_have_alternatives(pattern)) {
        size_t i = 1;
        while (pattern[i] && n + 1 < size) {
            char c = pattern[i];
            size_t step = 1;
            if (c == '\\') {
                /* Only an escaped operator is a literal; "\1", "\w", "\<" are not. */
                if (!is_operator(pattern[i + 1]))
                    break;
                c = pattern[i + 1];
                step = 2;
            } else if (is_operator(c)) {
                break;
            }
            char next = pattern[i + step];
            /* "a*", "a?" and "a{0,1}" may match no "a" at all. */
            if (next == '*' || next == '?' || next == '{')
                break;
            out[n++] = c;
            /* "a+" matches at least one "a"; what follows it is not known. */
            if (next == '+')
                break;
            i += step;
        }
    }
    out[n] = '\0';
    return n;
}
