/* The rate limit service's messages as protobuf-c generates them from proto/: a request
 * survives pack and unpack, bytes written by hand from the wire format decode to the fields
 * of Envoy's API (which proves the field numbers), and fields sluice does not know are
 * skipped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/service/ratelimit/v3/rls.pb-c.h"
#include "support/run_suite.h"

typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor Descriptor;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor__Entry Entry;
typedef Envoy__Service__Ratelimit__V3__RateLimitRequest Request;
typedef Envoy__Service__Ratelimit__V3__RateLimitResponse Response;

static Request *unpack(const uint8_t *data, size_t len)
{
    return envoy__service__ratelimit__v3__rate_limit_request__unpack(NULL, len, data);
}

START_TEST(request_round_trip)
{
    Entry e0 = ENVOY__EXTENSIONS__COMMON__RATELIMIT__V3__RATE_LIMIT_DESCRIPTOR__ENTRY__INIT;
    Entry e1 = ENVOY__EXTENSIONS__COMMON__RATELIMIT__V3__RATE_LIMIT_DESCRIPTOR__ENTRY__INIT;
    Entry e2 = ENVOY__EXTENSIONS__COMMON__RATELIMIT__V3__RATE_LIMIT_DESCRIPTOR__ENTRY__INIT;
    Entry *first[] = {&e0, &e1}, *second[] = {&e2};
    Google__Protobuf__UInt64Value addend = GOOGLE__PROTOBUF__UINT64_VALUE__INIT;
    Descriptor d0 = ENVOY__EXTENSIONS__COMMON__RATELIMIT__V3__RATE_LIMIT_DESCRIPTOR__INIT;
    Descriptor d1 = ENVOY__EXTENSIONS__COMMON__RATELIMIT__V3__RATE_LIMIT_DESCRIPTOR__INIT;
    Descriptor *descs[] = {&d0, &d1};
    Request req = ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_REQUEST__INIT;

    e0.key = "remote_address";
    e0.value = "10.0.0.1";
    e1.key = "path";
    e1.value = "/api";
    e2.key = "client_id";
    e2.value = "";
    d0.n_entries = 2;
    d0.entries = first;
    d1.n_entries = 1;
    d1.entries = second;
    addend.value = 0; /* present and 0: check only */
    d1.hits_addend = &addend;
    req.domain = "edge";
    req.n_descriptors = 2;
    req.descriptors = descs;
    req.hits_addend = 3;

    size_t len = envoy__service__ratelimit__v3__rate_limit_request__get_packed_size(&req);
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(envoy__service__ratelimit__v3__rate_limit_request__pack(&req, buf), len);
    Request *got = unpack(buf, len);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got->domain, "edge");
    ck_assert_uint_eq(got->hits_addend, 3);
    ck_assert_uint_eq(got->n_descriptors, 2);
    ck_assert_uint_eq(got->descriptors[0]->n_entries, 2);
    ck_assert_str_eq(got->descriptors[0]->entries[0]->key, "remote_address");
    ck_assert_str_eq(got->descriptors[0]->entries[0]->value, "10.0.0.1");
    ck_assert_str_eq(got->descriptors[0]->entries[1]->key, "path");
    ck_assert_str_eq(got->descriptors[0]->entries[1]->value, "/api");
    ck_assert_ptr_null(got->descriptors[0]->hits_addend);
    ck_assert_ptr_null(got->descriptors[0]->limit);
    ck_assert_str_eq(got->descriptors[1]->entries[0]->key, "client_id");
    ck_assert_str_eq(got->descriptors[1]->entries[0]->value, "");
    ck_assert_ptr_nonnull(got->descriptors[1]->hits_addend);
    ck_assert_uint_eq(got->descriptors[1]->hits_addend->value, 0);
    envoy__service__ratelimit__v3__rate_limit_request__free_unpacked(got, NULL);
    free(buf);
}
END_TEST

/* Written from the wire format alone: a tag is (field << 3) | wire type, 2 for
 * length-delimited and 0 for a varint. */
static const uint8_t reference[] = {
    0x0a, 0x04, 'e',  'd', 'g', 'e', /* RateLimitRequest.domain (1) = "edge" */
    0x12, 0x15,                      /* .descriptors (2), 21 bytes */
    0x0a, 0x08,                      /*   RateLimitDescriptor.entries (1), 8 bytes */
    0x0a, 0x01, 'k',                 /*     Entry.key (1) = "k" */
    0x12, 0x03, 'v',  'a', 'l',      /*     Entry.value (2) = "val" */
    0x12, 0x04,                      /*   .limit (2), 4 bytes */
    0x08, 0x2a,                      /*     RateLimitOverride.requests_per_unit (1) = 42 */
    0x10, 0x03,                      /*     .unit (2) = HOUR (3) */
    0x1a, 0x03,                      /*   .hits_addend (3), a UInt64Value of 3 bytes */
    0x08, 0xac, 0x02,                /*     UInt64Value.value (1) = 300 */
    0x18, 0x05,                      /* .hits_addend (3) = 5 */
};

START_TEST(request_field_numbers)
{
    Request *got = unpack(reference, sizeof reference);

    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got->domain, "edge");
    ck_assert_uint_eq(got->hits_addend, 5);
    ck_assert_uint_eq(got->n_descriptors, 1);
    Descriptor *d = got->descriptors[0];
    ck_assert_uint_eq(d->n_entries, 1);
    ck_assert_str_eq(d->entries[0]->key, "k");
    ck_assert_str_eq(d->entries[0]->value, "val");
    ck_assert_ptr_nonnull(d->limit);
    ck_assert_uint_eq(d->limit->requests_per_unit, 42);
    ck_assert_int_eq(d->limit->unit, ENVOY__TYPE__V3__RATE_LIMIT_UNIT__HOUR);
    ck_assert_ptr_nonnull(d->hits_addend);
    ck_assert_uint_eq(d->hits_addend->value, 300);
    envoy__service__ratelimit__v3__rate_limit_request__free_unpacked(got, NULL);
}
END_TEST

START_TEST(request_unknown_fields_skipped)
{
    /* Fields 9 (a varint), 10 (a string) and 11 (a fixed64) of the request, field 4 (a string)
     * of the descriptor and 3 (a fixed32) of the entry are not in sluice's messages. */
    static const uint8_t bytes[] = {
        0x48, 0x96, 0x01,                         /* field 9, varint 150 */
        0x0a, 0x01, 'd',                          /* domain = "d" */
        0x52, 0x02, 'x',  'y',                    /* field 10, "xy" */
        0x12, 0x0f,                               /* descriptors, 15 bytes */
        0x22, 0x01, 'z',                          /*   field 4, "z" */
        0x0a, 0x0a,                               /*   entries, 10 bytes */
        0x0a, 0x01, 'a',                          /*     key = "a" */
        0x1d, 0x01, 0x02, 0x03, 0x04,             /*     field 3, fixed32 */
        0x12, 0x00,                               /*     value = "" */
        0x59, 1,    2,    3,    4,    5, 6, 7, 8, /* field 11, fixed64 */
    };
    Request *got = unpack(bytes, sizeof bytes);

    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got->domain, "d");
    ck_assert_uint_eq(got->n_descriptors, 1);
    ck_assert_uint_eq(got->descriptors[0]->n_entries, 1);
    ck_assert_str_eq(got->descriptors[0]->entries[0]->key, "a");
    ck_assert_str_eq(got->descriptors[0]->entries[0]->value, "");
    envoy__service__ratelimit__v3__rate_limit_request__free_unpacked(got, NULL);
}
END_TEST

START_TEST(request_malformed_refused)
{
    static const uint8_t truncated[] = {0x0a, 0x05, 'e', 'd'};
    static const uint8_t bad_varint[] = {0x18, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0x01};

    ck_assert_ptr_null(unpack(truncated, sizeof truncated));
    ck_assert_ptr_null(unpack(bad_varint, sizeof bad_varint));
}
END_TEST

START_TEST(response_field_numbers)
{
    Response resp = ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__INIT;
    Envoy__Service__Ratelimit__V3__RateLimitResponse__DescriptorStatus st =
        ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__DESCRIPTOR_STATUS__INIT;
    Envoy__Service__Ratelimit__V3__RateLimitResponse__RateLimit lim =
        ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__INIT;
    Google__Protobuf__Duration reset = GOOGLE__PROTOBUF__DURATION__INIT;
    Envoy__Service__Ratelimit__V3__RateLimitResponse__DescriptorStatus *sts[] = {&st};

    lim.requests_per_unit = 10;
    lim.unit = ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__UNIT__WEEK;
    lim.name = "n";
    reset.seconds = 9;
    st.code = ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__CODE__OVER_LIMIT;
    st.current_limit = &lim;
    st.duration_until_reset = &reset;
    resp.overall_code = ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__CODE__OVER_LIMIT;
    resp.n_statuses = 1;
    resp.statuses = sts;

    uint8_t buf[64];
    size_t len = envoy__service__ratelimit__v3__rate_limit_response__get_packed_size(&resp);
    ck_assert_uint_le(len, sizeof buf);
    ck_assert_uint_eq(envoy__service__ratelimit__v3__rate_limit_response__pack(&resp, buf), len);
    /* protobuf-c writes fields in field-number order, whatever the .proto's order. */
    static const uint8_t ordered[] = {
        0x08, 0x02,      /* overall_code (1) = OVER_LIMIT (2) */
        0x12, 0x0f,      /* statuses (2), 15 bytes */
        0x08, 0x02,      /*   code (1) = OVER_LIMIT */
        0x12, 0x07,      /*   current_limit (2), 7 bytes */
        0x08, 0x0a,      /*     requests_per_unit (1) = 10 */
        0x10, 0x07,      /*     unit (2) = WEEK (7) */
        0x1a, 0x01, 'n', /*     name (3) = "n" */
        0x22, 0x02,      /*   duration_until_reset (4), 2 bytes */
        0x08, 0x09,      /*     seconds (1) = 9 */
    };
    ck_assert_uint_eq(len, sizeof ordered);
    ck_assert_mem_eq(buf, ordered, len);
}
END_TEST

START_TEST(unit_numbers)
{
    ck_assert_int_eq(ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__UNIT__YEAR, 6);
    ck_assert_int_eq(ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__UNIT__WEEK, 7);
    ck_assert_int_eq(ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__UNIT__MONTH,
                     5);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rls_proto");
    TCase *tc = tcase_create("messages");

    tcase_add_test(tc, request_round_trip);
    tcase_add_test(tc, request_field_numbers);
    tcase_add_test(tc, request_unknown_fields_skipped);
    tcase_add_test(tc, request_malformed_refused);
    tcase_add_test(tc, response_field_numbers);
    tcase_add_test(tc, unit_numbers);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
