/* Replies from Redis: the bytes are what the server sends, cut into replies by hiredis's
 * own reader (as the store's connection does), and each reply goes to the store's decision
 * parser, which must accept only {allowed, remaining, reset_us, retry_after_us, delay_us}
 * (the last two may be left out) and refuse every other shape: malformed and nested
 * arrays, wrong types, huge and negative integers, errors, nil. */
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/redis_internal.h"

/* hiredis allocates the element array a reply announces ("*2147483647") before a single
 * element arrives: 16 GiB from a few bytes. Past 64 MiB the allocation fails here instead,
 * which hiredis reports as an error, as it would when the memory ran out. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1:max_allocation_size_mb=64";
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_redis_reply: %s\n", what);
        abort();
    }
}

/* What parse_decision must accept, checked independently of it: 3 to 5 elements (the
 * missing ones are 0). */
static bool well_formed(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->elements > 5)
        return false;
    for (size_t i = 0; i < r->elements; i++)
        if (!r->element[i] || r->element[i]->type != REDIS_REPLY_INTEGER ||
            r->element[i]->integer < 0)
            return false;
    return r->element[0]->integer <= 1;
}

/* Element `i` of a well-formed reply, 0 past its end. */
static uint64_t field(const redisReply *r, size_t i)
{
    return i < r->elements ? (uint64_t)r->element[i]->integer : 0;
}

static void decide(const redisReply *r, uint64_t count)
{
    struct sl_decision d = {.limit = 12345};
    int rc = sl_redis_parse_decision(r, count, &d);
    check((rc == 0) == well_formed(r), "a reply was judged against its shape");
    if (rc == 0) {
        check(d.limit == count, "limit is not the configured count");
        check(d.allowed == (r->element[0]->integer == 1), "allowed does not follow the reply");
        check(d.remaining == field(r, 1) && d.reset_us == field(r, 2) &&
                  d.retry_after_us == field(r, 3) && d.delay_us == field(r, 4),
              "decision fields do not follow the reply");
    } else {
        check(d.limit == 12345, "a refused reply changed the decision");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReader *reader = redisReaderCreate();
    check(reader != NULL, "redisReaderCreate");
    /* The first byte splits the input in two feeds, as replies arrive in pieces. */
    if (size < 1)
        goto out;
    size_t cut = (size_t)data[0] * (size - 1) / 256;
    const char *bytes = (const char *)data + 1;
    size--;
    size_t fed = 0;
    for (int round = 0; round < 2; round++) {
        size_t end = round == 0 ? cut : size;
        if (end > fed && redisReaderFeed(reader, bytes + fed, end - fed) != REDIS_OK)
            break;
        fed = end;
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(reader, &reply) != REDIS_OK)
                goto out; /* a protocol error: the store drops the connection */
            if (!reply)
                break;
            decide(reply, 5);
            decide(reply, UINT64_MAX);
            freeReplyObject(reply);
        }
    }
out:
    redisReaderFree(reader);
    return 0;
}
