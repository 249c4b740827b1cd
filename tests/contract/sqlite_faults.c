/* sqlite_faults.c: failures of the SQLite cold store that only a local file
 * can stage — disk full, the file deleted under a running store, a file
 * that is not a database, read-only files, a schema from a newer build.
 * Each must end in a status (SNAP_EUNAVAIL for an outage), never a crash,
 * and the store must recover once the cause is gone.
 * It uses cold_store.h only, like the contract suite; the files live in a
 * fresh directory under SNAPTEXT_TEST_DIR.
 * Not here: the behaviour every driver shares (cold_contract.c). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/err.h"
#include "../testing.h"

static char dir[512];
static int64_t t0;

static void path_for(char *out, size_t len, const char *name)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "sqlite_faults: path too long\n");
        exit(2);
    }
}

static void url_for(char *out, size_t len, const char *name)
{
    char path[600];
    int n;

    path_for(path, sizeof path, name);
    n = snprintf(out, len, "sqlite://%s", path);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "sqlite_faults: url too long\n");
        exit(2);
    }
}

static void msg_init(struct cold_msg *m, int64_t id, char *text, size_t len)
{
    memset(m, 0, sizeof *m);
    m->id = id;
    memcpy(m->username, "faulty", 7);
    m->text = text;
    m->text_len = len;
    m->created_ms = t0;
    m->expires_ms = t0 + 60000;
}

static int open_store(const char *name, struct cold_store **cs)
{
    char url[640];
    struct snap_err err;
    int rc;

    url_for(url, sizeof url, name);
    rc = cold_open(url, cs, &err);
    if (rc != SNAP_OK)
        fprintf(stderr, "  open %s: %s (%s)\n", name, err.msg, snap_status_name(rc));
    return rc;
}

/* Disk full (simulated with RLIMIT_FSIZE, which binds root too): the put
 * fails with SNAP_EUNAVAIL and stores nothing; once there is room again
 * the same store takes writes (the failed connection was replaced). */
static void test_disk_full(void)
{
    struct cold_store *cs = NULL;
    struct cold_msg m, got;
    struct snap_err err;
    struct rlimit old, low;
    char small[] = "fits";
    size_t big_len = 1u << 20;
    char *big = malloc(big_len);

    CHECK(big != NULL);
    if (big == NULL)
        return;
    memset(big, 'b', big_len);
    CHECK_EQ_INT(open_store("full.db", &cs), SNAP_OK);
    if (cs == NULL)
        goto done;
    msg_init(&m, 1, small, strlen(small));
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_OK);

    /* Writes past 64 KiB now fail with EFBIG instead of killing us. */
    CHECK(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    low = old;
    low.rlim_cur = 64 * 1024;
    CHECK(setrlimit(RLIMIT_FSIZE, &low) == 0);
    msg_init(&m, 2, big, big_len);
    snap_err_clear(&err);
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EUNAVAIL);
    CHECK_EQ_INT(err.code, SNAP_EUNAVAIL);
    CHECK(err.msg[0] != '\0');
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    fprintf(stderr, "  (disk full reported as: %s)\n", err.msg);

    /* Nothing half-stored; the earlier message is intact. */
    CHECK_EQ_INT(cold_msg_get(cs, 2, &got, &err), SNAP_ENOTFOUND);
    CHECK_EQ_INT(cold_msg_get(cs, 1, &got, &err), SNAP_OK);
    CHECK_EQ_INT(got.text_len, strlen(small));
    cold_msg_cleanup(&got);

    /* Room again: the store recovers without being reopened. */
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_OK);
    CHECK_EQ_INT(cold_msg_get(cs, 2, &got, &err), SNAP_OK);
    CHECK_EQ_INT(got.text_len, big_len);
    cold_msg_cleanup(&got);
    CHECK_EQ_INT(cold_ping(cs, &err), SNAP_OK);
done:
    cold_close(cs);
    free(big);
}

/* The database file is deleted while the store is open: ping and writes
 * report SNAP_EUNAVAIL, and no empty database is quietly created in its
 * place. */
static void test_file_removed(void)
{
    struct cold_store *cs = NULL;
    struct cold_msg m;
    struct snap_err err;
    char text[] = "before the rm", path[600];
    struct stat sb;

    CHECK_EQ_INT(open_store("removed.db", &cs), SNAP_OK);
    if (cs == NULL)
        return;
    msg_init(&m, 1, text, strlen(text));
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_OK);

    path_for(path, sizeof path, "removed.db");
    CHECK(unlink(path) == 0);
    /* The first write runs on the pooled connection, which still holds
     * the deleted file open: SQLite notices the move. */
    msg_init(&m, 2, text, strlen(text));
    snap_err_clear(&err);
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EUNAVAIL);
    fprintf(stderr, "  (write to the deleted file reported as: %s)\n", err.msg);
    /* The connection that saw it was dropped; a new one cannot open the
     * file, because only cold_open may create it. */
    CHECK_EQ_INT(cold_ping(cs, &err), SNAP_EUNAVAIL);
    for (int64_t id = 3; id <= 5; id++) {
        msg_init(&m, id, text, strlen(text));
        snap_err_clear(&err);
        CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EUNAVAIL);
        CHECK_EQ_INT(err.code, SNAP_EUNAVAIL);
    }
    fprintf(stderr, "  (later writes reported as: %s)\n", err.msg);
    CHECK(stat(path, &sb) != 0 && errno == ENOENT);
    cold_close(cs);
}

/* A file that is not an SQLite database, and a directory, cannot be opened. */
static void test_not_a_database(void)
{
    struct cold_store *cs = NULL;
    char path[600];
    FILE *f;

    path_for(path, sizeof path, "garbage.db");
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    for (int i = 0; i < 200; i++)
        fputs("this is not an sqlite database at all\n", f);
    fclose(f);
    CHECK_EQ_INT(open_store("garbage.db", &cs), SNAP_EUNAVAIL);
    CHECK(cs == NULL);

    path_for(path, sizeof path, "a-directory");
    CHECK(mkdir(path, 0755) == 0);
    CHECK_EQ_INT(open_store("a-directory", &cs), SNAP_EUNAVAIL);
    CHECK(cs == NULL);
}

/* A database written by a newer build (user_version 2) is refused instead
 * of being used with the wrong schema. The version sits at byte 60 of the
 * file header, big-endian. */
static void test_newer_schema(void)
{
    struct cold_store *cs = NULL;
    struct snap_err err;
    char path[600], url[640];
    unsigned char newer[4] = {0, 0, 0, 4}; /* one past this build's version 3 */
    int fd;

    CHECK_EQ_INT(open_store("newer.db", &cs), SNAP_OK);
    cold_close(cs); /* the last close folds the WAL into the file */
    cs = NULL;
    path_for(path, sizeof path, "newer.db");
    fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(pwrite(fd, newer, sizeof newer, 60) == (ssize_t)sizeof newer);
    close(fd);
    url_for(url, sizeof url, "newer.db");
    CHECK_EQ_INT(cold_open(url, &cs, &err), SNAP_ERR);
    CHECK(cs == NULL);
    CHECK(strstr(err.msg, "version") != NULL);
    cold_close(cs);
}

/* A read-only file: the store refuses to start on it rather than failing
 * every write later. Root ignores file modes, so this only runs as a user. */
static void test_readonly_file(void)
{
    struct cold_store *cs = NULL;
    struct cold_msg m;
    struct snap_err err;
    char text[] = "x", path[600];

    if (geteuid() == 0) {
        fprintf(stderr, "  skipped: running as root, file modes do not apply\n");
        return;
    }
    CHECK_EQ_INT(open_store("ro.db", &cs), SNAP_OK);
    msg_init(&m, 1, text, 1);
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_OK);
    cold_close(cs);
    cs = NULL;
    path_for(path, sizeof path, "ro.db");
    CHECK(chmod(path, 0444) == 0);
    CHECK_EQ_INT(open_store("ro.db", &cs), SNAP_EUNAVAIL);
    CHECK(cs == NULL);
    cold_close(cs);
    CHECK(chmod(path, 0644) == 0);
}

int main(void)
{
    const char *base = getenv("SNAPTEXT_TEST_DIR");
    int n;

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    n = snprintf(dir, sizeof dir, "%s/sqlite_faults.XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof dir || mkdtemp(dir) == NULL) {
        fprintf(stderr, "sqlite_faults: cannot make a directory under %s\n", base);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    t0 = clock_now_ms();
    RUN(test_disk_full);
    RUN(test_file_removed);
    RUN(test_not_a_database);
    RUN(test_newer_schema);
    RUN(test_readonly_file);
    fprintf(stderr, "files kept in %s\n", dir);
    return TEST_SUMMARY();
}
