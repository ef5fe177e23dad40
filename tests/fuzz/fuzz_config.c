/* The configuration file: the input is the file's bytes, loaded and validated by
 * sl_cfg_load() exactly as `sluice -t` does, then released. A file that loads must render
 * as valid JSON (GET /config); one that does not must say why, every line naming the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

#include "sluice/config.h"

static int memfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* The file lives in memory; the loader opens it by name like any other. */
    memfd = memfd_create("sluice-fuzz-config", MFD_CLOEXEC);
    if (memfd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    setenv("SLUICE_FUZZ_LISTEN", "127.0.0.1:8080", 1);
    setenv("SLUICE_FUZZ_EMPTY", "", 1);
    return 0;
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: %s\n", what);
        abort();
    }
}

static void check_json(const char *text)
{
    yajl_handle y = yajl_alloc(NULL, NULL, NULL);
    check(y != NULL, "yajl_alloc");
    check(yajl_parse(y, (const unsigned char *)text, strlen(text)) == yajl_status_ok &&
              yajl_complete_parse(y) == yajl_status_ok,
          "the effective configuration is not valid JSON");
    yajl_free(y);
}

static void check_errors(const char *errors)
{
    size_t plen = strlen(path);
    check(errors != NULL && *errors != '\0', "a file was refused without a reason");
    for (const char *line = errors; *line;) {
        check(strncmp(line, path, plen) == 0 && line[plen] == ':',
              "an error line does not start with the file name");
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(ftruncate(memfd, 0) == 0, "ftruncate");
    check(pwrite(memfd, data, size, 0) == (ssize_t)size, "pwrite");

    char *errors = NULL;
    struct sl_config *cfg = sl_cfg_load(path, &errors);
    if (cfg) {
        char *json = NULL;
        check(sl_cfg_to_json(cfg, &json) == 0, "sl_cfg_to_json failed");
        check_json(json);
        free(json);
        sl_cfg_unref(cfg);
    } else {
        check_errors(errors);
    }
    free(errors);
    return 0;
}
