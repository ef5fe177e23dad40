/* The operator's path-folding rules (the paths section): spellings that sluice's own
 * normalisation keeps apart but the application behind it routes to one resource.
 *
 * sl_path_normalize() runs them at two points of its pipeline, each step on the output of
 * the one before, in place (no step lengthens the path, so the caller's buffer suffices):
 *
 *   1. cut the query, decode %XX of unreserved characters, upper-case other escapes
 *   2. strip_path_parameters: ";..." dropped up to the end of each segment
 *   3. decode_slash: "%2F" becomes "/"
 *   4. merge repeated slashes, resolve "." and ".."
 *   5. case_insensitive: ASCII letters lower-cased, escapes left alone
 *   6. ignore_trailing_slash: a final "/" dropped, except from "/"
 *
 * Why this order:
 * - Parameters before dots: Tomcat reads "/api/..;/admin" as "/api/.." and so as "/admin";
 *   resolving the dots first would leave "..;" an ordinary segment and the limit on
 *   "/admin" side-stepped.
 * - Parameters before %2F: Tomcat, Jetty and Spring cut parameters from the raw path and
 *   decode afterwards, so "/api/login;%2F..%2F" is "/api/login" to them; decoding first
 *   would make it "/api/". Only a literal ";" starts a parameter ("%3B" is data).
 * - %2F before slashes and dots: a decoded "%2F" is a separator like any other, so
 *   "/api%2f..%2fadmin" is "/admin" and "/api%2F%2Flogin" is "/api/login".
 * - Case last: "." and ".." have no case. Escapes keep their upper-case hex digits, so
 *   "%C3%A9" stays one spelling; letters outside ASCII are compared byte for byte (an
 *   application folding Unicode case folds more than this).
 * - The trailing slash last: dot resolution keeps a slash after a final "." or "..", so
 *   "/api/./login/." is "/api/login/" and then "/api/login". "/" stays "/", the root. */
#include "paths.h"

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* Drops every segment's ";..." up to the next "/". A segment that was only parameters
 * becomes empty, and the merging of slashes then removes it. */
static size_t strip_parameters(char *p, size_t n)
{
    size_t o = 0;
    bool in_param = false;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '/')
            in_param = false;
        else if (p[i] == ';')
            in_param = true;
        if (!in_param)
            p[o++] = p[i];
    }
    return o;
}

/* "%2F" becomes "/"; normalisation has upper-cased the hex digits already. */
static size_t decode_slashes(char *p, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n && p[i + 1] == '2' && p[i + 2] == 'F') {
            p[o++] = '/';
            i += 2;
            continue;
        }
        p[o++] = p[i];
    }
    return o;
}

/* Lower-cases ASCII letters, skipping the two hex digits of each escape. */
static void fold_case(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%' && i + 2 < n && is_hex((unsigned char)p[i + 1]) &&
            is_hex((unsigned char)p[i + 2]))
            i += 2;
        else if (c >= 'A' && c <= 'Z')
            p[i] = (char)(c + 0x20);
    }
}

size_t sl_path_rules_before_dots(const struct sl_path_rules *rules, char *p, size_t n)
{
    if (rules->strip_path_parameters)
        n = strip_parameters(p, n);
    if (rules->decode_slash)
        n = decode_slashes(p, n);
    return n;
}

size_t sl_path_rules_after_dots(const struct sl_path_rules *rules, char *p, size_t n)
{
    if (rules->case_insensitive)
        fold_case(p, n);
    if (rules->ignore_trailing_slash && n > 1 && p[n - 1] == '/')
        n--;
    return n;
}
