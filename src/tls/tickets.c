/* Session ticket keys: one set for the whole process, made in memory and rotated.
 *
 * A ticket is a session sealed under a key only the server knows; a client that returns
 * it skips the full handshake. OpenSSL would make keys per context, so every reload
 * (a new context) would void every ticket, and keys that never change would let anyone
 * who ever reads one decrypt every recorded session since. Here the keys outlive
 * configurations and change every SL_TICKET_ROTATE_S: tickets are issued under the
 * newest key and still accepted under the previous one (the client then gets a fresh
 * ticket), so a ticket lives at most two periods. Nothing is ever written to disk. */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "sluice/clock.h"
#include "tickets.h"

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    uint64_t born_us; /* 0: not made yet */
};

/* ring[0] issues tickets; ring[1] only opens them. */
static struct ticket_key ring[2];
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t (*ring_clock)(void) = sl_clock_mono_us;

void sl_tls_tickets_set_clock(uint64_t (*now_us)(void))
{
    pthread_mutex_lock(&ring_lock);
    ring_clock = now_us ? now_us : sl_clock_mono_us;
    memset(ring, 0, sizeof ring);
    pthread_mutex_unlock(&ring_lock);
}

/* Under ring_lock. Returns false when no random bytes could be had. */
static bool rotate_if_due(uint64_t now)
{
    if (ring[0].born_us && now - ring[0].born_us < SL_TICKET_ROTATE_S * 1000000ull)
        return true;
    struct ticket_key fresh = {.born_us = now ? now : 1};
    if (RAND_bytes(fresh.name, sizeof fresh.name) != 1 ||
        RAND_bytes(fresh.aes, sizeof fresh.aes) != 1 ||
        RAND_bytes(fresh.hmac, sizeof fresh.hmac) != 1)
        return false;
    /* After a long quiet spell the old key has outlived both periods: drop it too. */
    bool old_too = ring[0].born_us && now - ring[0].born_us >= 2 * SL_TICKET_ROTATE_S * 1000000ull;
    ring[1] = old_too ? (struct ticket_key){0} : ring[0];
    ring[0] = fresh;
    return true;
}

static bool set_mac_key(EVP_MAC_CTX *hctx, unsigned char *key, size_t len)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, len),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

int sl_tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    int rc = -1;
    struct ticket_key key;

    pthread_mutex_lock(&ring_lock);
    if (!rotate_if_due(ring_clock())) {
        pthread_mutex_unlock(&ring_lock);
        return -1;
    }
    if (enc) {
        key = ring[0];
        rc = 1;
    } else {
        rc = 0; /* unknown or expired: a full handshake, no error */
        for (int i = 0; i < 2; i++) {
            if (ring[i].born_us && memcmp(ring[i].name, key_name, 16) == 0) {
                key = ring[i];
                rc = i == 0 ? 1 : 2; /* 2: accepted, and a new ticket is issued */
                break;
            }
        }
    }
    pthread_mutex_unlock(&ring_lock);
    if (rc <= 0)
        return rc;

    if (enc) {
        memcpy(key_name, key.name, 16);
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key.aes, iv) != 1)
            rc = -1;
    } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key.aes, iv) != 1) {
        rc = -1;
    }
    if (rc > 0 && !set_mac_key(hctx, key.hmac, sizeof key.hmac))
        rc = -1;
    OPENSSL_cleanse(&key, sizeof key);
    return rc;
}
