/* The configuration: one immutable, reference-counted snapshot of the YAML file.
 *
 * A snapshot is built by sl_cfg_load(), validated in full, and never changed after it
 * is published to the workers (except for the metrics ids the metrics registry assigns
 * before publication). In-flight requests hold a reference across a reload. */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sluice/cidr.h"
#include "sluice/sha256.h"

struct sl_algorithm_ops;
struct sl_route_index;
struct sl_rates;

/* An address to listen on or connect to: "host:port", "[v6]:port" or "unix:/path". */
struct sl_sockaddr {
    struct sockaddr_storage ss; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t len;
    char *text; /* as written in the file; owned */
};

/* One certificate chain and its key, offered by a TLS listener (listen[].tls.certificates). */
struct sl_tls_certificate {
    char *cert; /* PEM chain, leaf first; owned */
    char *key;  /* PEM private key; owned */
    /* Of the files as loaded: what reload.watch compares the files on disk with. */
    uint8_t cert_digest[SL_SHA256_LEN], key_digest[SL_SHA256_LEN];
};

struct sl_tls_server; /* src/tls/tls_server.h: the certificates loaded, ready to serve */

/* A listener's TLS (listen[].tls, SPEC section 11). */
struct sl_tls_server_config {
    struct sl_tls_certificate *certs; /* chosen by SNI; the first is the default; owned */
    size_t ncerts;
    int min_version;                  /* 12 (TLS 1.2) or 13 */
    char *client_ca;                  /* set: clients must present a certificate it signed;
                                       * owned */
    uint8_t client_ca_digest[SL_SHA256_LEN];
    struct sl_tls_server *server;     /* built at load, which checks every file; owned */
};

/* One address sluice serves requests on. */
struct sl_listen_config {
    struct sl_sockaddr addr;
    struct sl_tls_server_config *tls; /* NULL: cleartext; owned */
};

enum sl_key_kind {
    SL_KEY_CLIENT_IP,
    SL_KEY_HEADER,
    SL_KEY_QUERY,
    SL_KEY_COOKIE,
    SL_KEY_METHOD,
    SL_KEY_PATH,
    SL_KEY_HOST,
    SL_KEY_ROUTE,
    SL_KEY_TLS_CLIENT_SUBJECT, /* the verified client certificate's subject (mTLS) */
};

/* One source of a limit's key. `name` is set for header/query/cookie only (owned). */
struct sl_key_source {
    enum sl_key_kind kind;
    char *name;
    size_t name_len;
};

enum sl_store_kind { SL_STORE_MEMORY, SL_STORE_REDIS };

/* Upper bound on limits per route; the engine keeps per-request state for each. */
#define SL_MAX_LIMITS_PER_ROUTE 16

struct sl_route;

/* A limit's rate, N per P. */
struct sl_rate {
    uint64_t count;     /* N */
    uint64_t period_us; /* P */
};

/* An earlier rate a limit remembers across reloads (see sl_cfg_inherit_rates). */
struct sl_prev_rate {
    struct sl_rate rate;
    uint64_t until_us; /* sl_clock_mono_us: any state written under it has expired by then */
    bool headed;       /* the limit had `rates:`: its states begin with the rate they were
                        * decided under (memory store) */
};

#define SL_LIMIT_PREV_RATES 3

/* A limit's `cost`: the units one request takes (SPEC.md section 3, Cost). */
enum sl_cost_kind {
    SL_COST_DEFAULT, /* not set: 1 */
    SL_COST_CONST,   /* a number */
    SL_COST_HEADER,  /* "header:NAME": read from the request (absent: 1) */
};

/* A limit's `charge`: units taken after the fact, from the upstream's answer. */
enum sl_charge_kind {
    SL_CHARGE_NONE,
    SL_CHARGE_HEADER, /* "response_header:NAME" */
    SL_CHARGE_JSON,   /* "response_json:PATH", a dot path into a JSON or SSE body */
};

struct sl_limit {
    char *name;                      /* unique within the route; owned */
    const struct sl_route *route;    /* the route holding this limit */
    const struct sl_algorithm_ops *alg;
    uint64_t count;                  /* N of "N/P" */
    uint64_t period_us;              /* P of "N/P" */
    uint64_t burst;                  /* defaulted per algorithm (see limit.h) */
    bool burst_set;                  /* written in the file: every consumer rate keeps it */
    bool delay;                      /* leaky_bucket: hold early requests (default true) */
    bool shadow;                     /* evaluated and counted, never enforced */
    char *rate_text;                 /* "5/1m", as written; owned */
    struct sl_key_source *keys;      /* one or more sources; owned */
    size_t nkeys;
    enum sl_store_kind store;
    enum sl_cost_kind cost_kind;
    uint64_t cost;                   /* SL_COST_CONST: the units, at most 2^32 */
    char *cost_header;               /* SL_COST_HEADER: the request header's name; owned */
    size_t cost_header_len;
    enum sl_charge_kind charge_kind;
    char *charge_name;               /* the response header, or the dot path; owned */
    size_t charge_name_len;
    size_t index;                    /* 0..cfg->nlimits-1 over the whole config */
    struct sl_rates *rates;          /* per-consumer rates (rates.h), or NULL; owned */
    unsigned metrics_id;             /* assigned by sl_metrics_bind() */
    uint32_t top_tag;                /* its key sources' fingerprint, from sl_top_bind() */
    /* Other rates the limit with this route name, limit name and algorithm had in the
     * configurations before this one, newest first: a store may hold state written under
     * them, which it carries over to this rate (sl_algorithm_ops.rescale). */
    struct sl_prev_rate prev_rates[SL_LIMIT_PREV_RATES];
    size_t nprev_rates;
};

enum sl_path_match { SL_MATCH_ANY, SL_MATCH_PATH, SL_MATCH_PREFIX, SL_MATCH_REGEX };

struct sl_header_match {
    char *name;  /* owned */
    char *value; /* owned; compared exactly */
};

struct sl_route {
    char *name;                      /* [A-Za-z0-9_-]+, unique; owned */
    size_t index;                    /* position in cfg->routes */
    enum sl_path_match path_match;
    char *path;                      /* PATH/PREFIX: as written; REGEX: the pattern; owned */
    regex_t regex;                   /* compiled when path_match == SL_MATCH_REGEX */
    char **methods;                  /* upper-case method names; none = any; owned */
    size_t nmethods;
    char *host;                      /* lower-case, no port; NULL = any; owned */
    struct sl_header_match *headers; /* all must match; owned */
    size_t nheaders;
    bool shadow;
    struct sl_limit *limits;         /* owned, at most SL_MAX_LIMITS_PER_ROUTE */
    size_t nlimits;
    unsigned metrics_id;             /* assigned by sl_metrics_bind() */
};

enum sl_failure_mode { SL_FAILURE_OPEN, SL_FAILURE_CLOSED, SL_FAILURE_LOCAL };
enum sl_header_mode { SL_HEADERS_BOTH, SL_HEADERS_DRAFT, SL_HEADERS_LEGACY, SL_HEADERS_NONE };
enum sl_access_log { SL_ACCESS_LOG_STDOUT, SL_ACCESS_LOG_OFF, SL_ACCESS_LOG_FILE };
enum sl_log_level { SL_LOG_ERROR, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG };

/* A TLS client's settings: upstream.tls and redis.tls (SPEC section 11). */
struct sl_tls_client_config {
    bool enabled;      /* rediss://, https://, h2://, or a tls block given */
    char *ca;          /* PEM bundle; NULL: the system's trust store; owned */
    bool verify;       /* chain and host name; default true */
    char *server_name; /* SNI and the name verified; NULL: the host connected to; owned */
    char *cert, *key;  /* client certificate and its key, or NULL; owned */
};

/* Frees what `c` owns and clears it (verify back to its default, true). */
void sl_tls_client_config_deinit(struct sl_tls_client_config *c);

/* Copies `src` into `dst` (whose own strings are not freed); 0, or -1 on ENOMEM (`dst` then
 * holds nothing to free). */
int sl_tls_client_config_copy(struct sl_tls_client_config *dst,
                              const struct sl_tls_client_config *src);

struct sl_upstream_config {
    char *url;                       /* as written; owned */
    /* A numeric address, localhost or unix: resolved at load time. A host name: `host`
     * and `port`, looked up by each worker (addr is then AF_UNSPEC; addr.text names it). */
    struct sl_sockaddr addr;
    char *host;                      /* the name to look up, or NULL; owned */
    uint16_t port;                   /* with `host`, in host byte order */
    uint64_t connect_timeout_ms;
    uint64_t timeout_ms;
    unsigned keepalive;              /* idle connections kept per worker */
    bool h2;                         /* h2c:// or h2://: requests go as HTTP/2 streams */
    /* https:// or h2://: TLS (upstream.tls); `tls_ctx` is built at load, ALPN "h2" for
     * h2:// and "http/1.1" for https://, and shared by the workers; owned. */
    struct sl_tls_client_config tls;
    struct ssl_ctx_st *tls_ctx;
};

/* client.underscores_in_headers: what becomes of a request header whose name has a "_". */
enum sl_underscores { SL_UNDERSCORES_DROP, SL_UNDERSCORES_ALLOW, SL_UNDERSCORES_REJECT };

struct sl_client_config {
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t max_header_bytes;
    uint64_t max_body_bytes;         /* 0 = unlimited */
    unsigned max_connections;
    enum sl_underscores underscores_in_headers;
    /* client.upgrades: the Upgrade protocols tunnelled after a 101, lower case; owned.
     * "h2c" is refused at load: its tunnel would carry requests past every limit. */
    char **upgrades;
    size_t nupgrades;
    bool http2;                      /* HTTP/2 from clients: prior knowledge, ALPN "h2" */
    uint32_t http2_max_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS sent to each client */
};

/* How the application behind sluice folds path spellings (the paths section). Each rule,
 * off by default, makes route matching and the path key fold what the application folds;
 * what is forwarded never changes. */
struct sl_path_rules {
    bool case_insensitive;      /* ASCII letters compare without case (IIS, ASP.NET) */
    bool strip_path_parameters; /* ";name=value" dropped from every segment (Tomcat, Spring) */
    bool decode_slash;          /* "%2F" is a "/" */
    bool ignore_trailing_slash; /* "/a/" is "/a" (Express, Flask, Rails) */
};

/* How the Redis servers are found: one address (url), a Cluster's seed nodes, or Sentinels. */
enum sl_redis_mode { SL_REDIS_MODE_URL, SL_REDIS_MODE_CLUSTER, SL_REDIS_MODE_SENTINEL };

struct sl_redis_addr {
    char *host; /* owned; a name or a numeric address */
    int port;
};

struct sl_redis_config {
    bool enabled;                    /* the redis block is present */
    enum sl_redis_mode mode;
    struct sl_redis_addr *addrs;     /* cluster seeds or sentinels; owned */
    size_t naddrs;
    char *sentinel_master;           /* the master's name known to the sentinels; owned */
    char *url;                       /* as written, or NULL; owned (password included: redact) */
    char *host;                      /* TCP host, or NULL when unix_path is set; owned */
    int port;
    char *unix_path;                 /* owned or NULL */
    char *user;                      /* owned or NULL */
    char *password;                  /* owned or NULL */
    int db;
    uint64_t timeout_ms;
    char *key_prefix;                /* owned */
    uint64_t deny_cache;             /* over-limit keys held locally, all workers; 0 = off */
    struct sl_tls_client_config tls; /* rediss:// or redis.tls; on every node of the mode */
};

struct sl_rls_config;

/* The rls block (SPEC.md section 12): Envoy's rate limit service API. */
struct sl_rls_settings {
    bool enabled;                    /* the rls block is present */
    struct sl_sockaddr listen;       /* gRPC over cleartext HTTP/2 */
    char *config;                    /* the files' path as written (resolved against the
                                      * configuration file's directory); owned */
    bool response_headers;           /* x-ratelimit-* in response_headers_to_add */
    bool shadow_mode;                /* every OVER_LIMIT overall answered OK, still counted */
    struct sl_rls_config *files;     /* the files as loaded; owned */
};

/* The smallest memory.max_bytes accepted (64 KiB). */
#define SL_MEMORY_MIN_BYTES 65536u

struct sl_config {
    atomic_int refs;
    char *file;                      /* path the snapshot was loaded from; owned */
    uint8_t file_digest[SL_SHA256_LEN]; /* of the file's bytes as read: what reload.watch
                                         * compares the file on disk with */
    /* listen: one address, or a list of them, each cleartext or TLS; at least one. The
     * workers bind them at start-up, in this order. */
    struct sl_listen_config *listeners; /* owned */
    size_t nlisteners;
    unsigned workers;                /* resolved: "auto" becomes the number of CPUs */
    bool workers_auto;
    bool admin_enabled;
    struct sl_sockaddr admin_listen;
    bool admin_route_histograms;     /* false: one request-duration histogram per instance */
    bool admin_top;                  /* heavy-hitter sketches and GET /top */
    char *admin_token;               /* NULL: none; else the bearer token /top and /config ask
                                      * for; owned (redact: never logged or shown) */
    bool admin_metrics_auth;         /* /metrics asks for the token too; only with a token */
    struct sl_upstream_config upstream;
    struct sl_client_config client;
    struct sl_path_rules paths;      /* folds for matching and the path key */
    struct sl_cidr_list trusted_proxies;
    struct sl_cidr_list exempt;
    struct sl_redis_config redis;
    struct sl_rls_settings rls;
    enum sl_failure_mode failure_mode;
    uint64_t memory_max_keys;
    uint64_t memory_max_bytes;        /* at least SL_MEMORY_MIN_BYTES */
    uint64_t shutdown_drain_delay_ms; /* SIGTERM: keep serving, closing, this long first */
    bool reload_watch;               /* reload when the file changes on disk */
    uint64_t reload_debounce_ms;     /* changes within this time make one reload */
    int response_status;
    enum sl_header_mode response_headers;
    int response_grpc_status;        /* a gRPC request's denial: 8 or 14 (SPEC section 10) */
    enum sl_access_log access_log;
    char *access_log_path;           /* SL_ACCESS_LOG_FILE only; owned */
    bool access_log_key_fields;      /* log the host, headers and cookies routes and keys read */
    enum sl_log_level log_level;
    struct sl_route *routes;         /* owned, file order */
    size_t nroutes;
    struct sl_route_index *route_index; /* owned; NULL: sl_route_match() walks the routes */
    size_t nlimits;                  /* limits over all routes */
};

/* Loads, expands ${VAR}, and validates the YAML file at `path`.
 * Returns a new snapshot holding one reference, or NULL. On NULL, `*errors` (when
 * `errors` is not NULL) receives a malloc'd string with every problem found, one per
 * line as "file:line:column: key.path: message"; the caller frees it. */
struct sl_config *sl_cfg_load(const char *path, char **errors);

/* Gives each limit of `cfg` the earlier rates of the limit of `prev` with the same route
 * name, limit name and algorithm: its rate when it differs, then its own earlier rates
 * still in use, at most SL_LIMIT_PREV_RATES and never cfg's own rate. A rate is remembered
 * until state written under it must have expired: (burst + 2)·P after `now_us`
 * (sl_clock_mono_us), plus 10 s for decisions still in flight under `prev`. Call on a
 * reload, before publishing `cfg`; `prev` (the running snapshot, may be NULL) is only
 * read. */
void sl_cfg_inherit_rates(struct sl_config *cfg, const struct sl_config *prev, uint64_t now_us);

/* The files a reload reads, as reload.watch watches them: the configuration file, each
 * limit's `rates` file, each TLS listener's certificates, keys and client_ca, with the
 * SHA-256 of the content loaded, then the rls files (digest NULL). Fills at most `max` entries
 * of `paths` and `digests` (borrowed from `cfg`) and returns how many files there are. */
size_t sl_cfg_files(const struct sl_config *cfg, const char **paths, const uint8_t **digests,
                    size_t max);

/* Takes one more reference; returns `cfg`. Thread-safe. */
struct sl_config *sl_cfg_ref(struct sl_config *cfg);

/* Drops one reference; the last one frees the snapshot. Accepts NULL. Thread-safe. */
void sl_cfg_unref(struct sl_config *cfg);

/* Writes the effective configuration as one JSON object, passwords and the admin token
 * redacted ("***"), to `out`
 * (a malloc'd NUL-terminated string the caller frees). Returns 0, or -1 on ENOMEM. */
int sl_cfg_to_json(const struct sl_config *cfg, char **out);

#endif
