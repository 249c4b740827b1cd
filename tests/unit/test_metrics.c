/* test_metrics.c: metrics.h rendered as Prometheus text: request counts
 * under the right route and status labels, the histogram's cumulative
 * buckets, the service counters, label escaping, and counting from several
 * threads at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "snap/metrics.h"
#include "testing.h"

static char *render(const struct metrics *m)
{
    char *out = NULL;
    size_t len = 0;
    CHECK_EQ_INT(metrics_render(m, &out, &len), 0);
    CHECK(out != NULL);
    if (out != NULL)
        CHECK_EQ_INT(strlen(out), len);
    return out;
}

/* 1 when text holds line as a whole line. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;
    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
        p += 1;
    }
    return 0;
}

static const char *const routes[] = {"POST /chat", "GET /chats/{}", "GET /chat/{}"};

static void test_requests_by_route_and_status(void)
{
    struct metrics *m = metrics_new("ingest", routes, 3);
    char *text;

    CHECK(m != NULL);
    if (m == NULL)
        return;
    metrics_observe(m, 0, 201, 0.002);
    metrics_observe(m, 0, 201, 0.003);
    metrics_observe(m, 0, 400, 0.0001);
    metrics_observe(m, 1, 200, 0.3);
    metrics_observe(m, 3, 404, 0.0001);   /* "other" */
    metrics_observe(m, 99, 404, 0.0001);  /* out of range counts as "other" */
    metrics_observe(m, 2, 418, 0.0001);   /* unlisted status */
    text = render(m);
    if (text != NULL) {
        CHECK(has_line(text, "# TYPE snaptext_http_requests_total counter"));
        CHECK(strstr(text, "# HELP snaptext_http_requests_total ") != NULL);
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"ingest\",route=\"POST "
                             "/chat\",status=\"201\"} 2"));
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"ingest\",route=\"POST "
                             "/chat\",status=\"400\"} 1"));
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"ingest\",route=\"GET "
                             "/chats/{}\",status=\"200\"} 1"));
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"ingest\",route=\"other\","
                             "status=\"404\"} 2"));
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"ingest\",route=\"GET "
                             "/chat/{}\",status=\"other\"} 1"));
        /* zero series are left out */
        CHECK(strstr(text, "status=\"503\"") == NULL);
        free(text);
    }
    metrics_free(m);
}

static void test_histogram(void)
{
    struct metrics *m = metrics_new("fetch", routes, 3);
    char *text;

    if (m == NULL) {
        CHECK(m != NULL);
        return;
    }
    metrics_observe(m, 1, 200, 0.0004); /* <= 0.0005 */
    metrics_observe(m, 1, 200, 0.0005); /* on the bound: same bucket */
    metrics_observe(m, 1, 200, 0.003);  /* <= 0.005 */
    metrics_observe(m, 1, 200, 2.0);    /* <= 2.5 */
    metrics_observe(m, 1, 200, 30.0);   /* +Inf only */
    metrics_observe(m, 1, 200, -1.0);   /* clamped to 0 */
    text = render(m);
    if (text != NULL) {
        CHECK(has_line(text, "# TYPE snaptext_http_request_duration_seconds histogram"));
        CHECK(strstr(text, "# HELP snaptext_http_request_duration_seconds ") != NULL);
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_bucket{service=\"fetch\","
                             "route=\"GET /chats/{}\",le=\"0.0005\"} 3"));
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_bucket{service=\"fetch\","
                             "route=\"GET /chats/{}\",le=\"0.0025\"} 3"));
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_bucket{service=\"fetch\","
                             "route=\"GET /chats/{}\",le=\"0.005\"} 4"));
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_bucket{service=\"fetch\","
                             "route=\"GET /chats/{}\",le=\"1\"} 4"));
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_bucket{service=\"fetch\","
                             "route=\"GET /chats/{}\",le=\"2.5\"} 5"));
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_bucket{service=\"fetch\","
                             "route=\"GET /chats/{}\",le=\"+Inf\"} 6"));
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_count{service=\"fetch\","
                             "route=\"GET /chats/{}\"} 6"));
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_sum{service=\"fetch\","
                             "route=\"GET /chats/{}\"} 32.003900000"));
        /* every route has its series, "other" included, even when empty */
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_count{service=\"fetch\","
                             "route=\"other\"} 0"));
        CHECK(has_line(text, "snaptext_http_request_duration_seconds_bucket{service=\"fetch\","
                             "route=\"POST /chat\",le=\"+Inf\"} 0"));
        free(text);
    }
    metrics_free(m);
}

static void test_counters(void)
{
    struct metrics *m = metrics_new("ingest", routes, 3);
    char *text;

    if (m == NULL) {
        CHECK(m != NULL);
        return;
    }
    metrics_add(m, METRIC_STORE_ERRORS_REDIS, 2);
    metrics_add(m, METRIC_STORE_ERRORS_COLD, 1);
    metrics_add(m, METRIC_MESSAGES_SENT, 5);
    metrics_add(m, METRIC_MESSAGES_SENT, 1);
    metrics_add(m, METRIC_MESSAGES_READ, 3);
    metrics_add(m, METRIC_MESSAGES_EXPIRED, 7);
    metrics_add(m, METRIC_MESSAGES_REPAIRED, 4);
    metrics_add(m, METRIC_UNSENDS, 2);
    metrics_add(m, METRIC_STATUS_READS, 9);
    metrics_add(m, METRIC__COUNT, 4); /* ignored */
    text = render(m);
    if (text != NULL) {
        CHECK(has_line(text, "# TYPE snaptext_store_errors_total counter"));
        CHECK(has_line(text, "snaptext_store_errors_total{service=\"ingest\",store=\"redis\"} 2"));
        CHECK(has_line(text, "snaptext_store_errors_total{service=\"ingest\",store=\"cold\"} 1"));
        CHECK(has_line(text, "# TYPE snaptext_messages_sent_total counter"));
        CHECK(has_line(text, "snaptext_messages_sent_total{service=\"ingest\"} 6"));
        CHECK(has_line(text, "snaptext_messages_read_total{service=\"ingest\"} 3"));
        CHECK(has_line(text, "snaptext_messages_expired_total{service=\"ingest\"} 7"));
        CHECK(has_line(text, "snaptext_messages_repaired_total{service=\"ingest\"} 4"));
        CHECK(has_line(text, "snaptext_unsends_total{service=\"ingest\"} 2"));
        CHECK(has_line(text, "snaptext_status_reads_total{service=\"ingest\"} 9"));
        CHECK(text[strlen(text) - 1] == '\n');
        free(text);
    }
    metrics_free(m);
}

static void test_label_escaping(void)
{
    static const char *const odd[] = {"GET /a\"b", "GET /c\\d", "GET /e\nf"};
    struct metrics *m = metrics_new("sv\"c", odd, 3);
    char *text;

    if (m == NULL) {
        CHECK(m != NULL);
        return;
    }
    metrics_observe(m, 0, 200, 0.001);
    metrics_observe(m, 1, 200, 0.001);
    metrics_observe(m, 2, 200, 0.001);
    text = render(m);
    if (text != NULL) {
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"sv\\\"c\",route=\"GET "
                             "/a\\\"b\",status=\"200\"} 1"));
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"sv\\\"c\",route=\"GET "
                             "/c\\\\d\",status=\"200\"} 1"));
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"sv\\\"c\",route=\"GET "
                             "/e\\nf\",status=\"200\"} 1"));
        free(text);
    }
    metrics_free(m);
}

static void test_empty_and_null(void)
{
    struct metrics *m = metrics_new("users", NULL, 0);
    char *text;

    CHECK(m != NULL);
    metrics_observe(m, 0, 200, 0.01); /* only "other" exists */
    text = render(m);
    if (text != NULL) {
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"users\",route=\"other\","
                             "status=\"200\"} 1"));
        free(text);
    }
    metrics_free(m);
    metrics_free(NULL);
    metrics_observe(NULL, 0, 200, 0.1);
    metrics_add(NULL, METRIC_MESSAGES_SENT, 1);
    text = render(NULL);
    if (text != NULL) {
        CHECK_EQ_STR(text, "");
        free(text);
    }
    CHECK(metrics_new("x", NULL, 2) == NULL);
}

struct worker_arg {
    struct metrics *m;
};

static void *hammer(void *p)
{
    struct worker_arg *a = p;
    int i;
    for (i = 0; i < 100000; i++) {
        metrics_observe(a->m, (size_t)(i % 2), 201, 0.001);
        metrics_add(a->m, METRIC_MESSAGES_SENT, 1);
    }
    return NULL;
}

static void test_threads(void)
{
    struct metrics *m = metrics_new("ingest", routes, 3);
    struct worker_arg a = {m};
    pthread_t t[4];
    char *text;
    int i;

    if (m == NULL) {
        CHECK(m != NULL);
        return;
    }
    for (i = 0; i < 4; i++)
        CHECK_EQ_INT(pthread_create(&t[i], NULL, hammer, &a), 0);
    for (i = 0; i < 4; i++)
        CHECK_EQ_INT(pthread_join(t[i], NULL), 0);
    text = render(m);
    if (text != NULL) {
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"ingest\",route=\"POST "
                             "/chat\",status=\"201\"} 200000"));
        CHECK(has_line(text, "snaptext_http_requests_total{service=\"ingest\",route=\"GET "
                             "/chats/{}\",status=\"201\"} 200000"));
        CHECK(has_line(text, "snaptext_messages_sent_total{service=\"ingest\"} 400000"));
        free(text);
    }
    metrics_free(m);
}

int main(void)
{
    RUN(test_requests_by_route_and_status);
    RUN(test_histogram);
    RUN(test_counters);
    RUN(test_label_escaping);
    RUN(test_empty_and_null);
    RUN(test_threads);
    return TEST_SUMMARY();
}
