/* Exact integer arithmetic shared by the algorithm files (private to src/limit/).
 *
 * Decisions compare times scaled by N (µs × N) or products such as N × P, which can pass
 * 2^64; they are done in 128 bits, where a product of two 64-bit values always fits.
 * Results handed out in struct sl_decision saturate at UINT64_MAX instead of wrapping. */
#ifndef SLUICE_LIMIT_ARITH_H
#define SLUICE_LIMIT_ARITH_H

#include <stdint.h>
#include <string.h>

__extension__ typedef unsigned __int128 sl_u128;

static inline uint64_t sl_sat64(sl_u128 x)
{
    return x > UINT64_MAX ? UINT64_MAX : (uint64_t)x;
}

static inline sl_u128 sl_mul128(uint64_t a, uint64_t b)
{
    return (sl_u128)a * b;
}

/* ceil(a / b); b > 0. */
static inline sl_u128 sl_ceil_div128(sl_u128 a, sl_u128 b)
{
    return a / b + (a % b != 0);
}

static inline sl_u128 sl_max128(sl_u128 a, sl_u128 b)
{
    return a > b ? a : b;
}

/* A time scaled by N (µs × N) as the same instant scaled by `to` instead of `from`, rounded
 * up: ceil(t·to/from). Exact while t·to < 2^128: t below 2^63·2^30 and `to` below 2^30
 * (N is at most 10^9). */
static inline sl_u128 sl_rescale_time(sl_u128 t, uint64_t from, uint64_t to)
{
    return from == to ? t : sl_ceil_div128(t * to, from);
}

/* States are only guaranteed 8-byte alignment, so 128-bit values go through memcpy. */
static inline sl_u128 sl_load128(const void *p)
{
    sl_u128 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void sl_store128(void *p, sl_u128 v)
{
    memcpy(p, &v, sizeof v);
}

#endif
