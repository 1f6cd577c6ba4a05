// flaky: an event handler that fails or takes its time on request, for retries, timeouts and
// queues. The event is JSON with optional keys:
//   "fail_until_ms": fail (exit 1, a message on stderr) while the wall clock, in Unix ms, is
//                    before this; 0 or absent: never; a huge value: always.
//   "sleep_ms":      sleep this long first.
// It answers {"ok":true,"at_ms":<now>} and echoes "id" when the event has one.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long field(const char *json, const char *key, long long dflt) {
    const char *p = strstr(json, key);
    if (!p) return dflt;
    p += strlen(key);
    while (*p == '"' || *p == ' ' || *p == ':' || *p == '\t') p++;
    if (*p < '0' || *p > '9') return dflt;
    return strtoll(p, NULL, 10);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(void) {
    static char in[1 << 20];
    size_t len = fread(in, 1, sizeof in - 1, stdin);
    in[len] = 0;
    long long sleep_ms = field(in, "\"sleep_ms\"", 0);
    if (sleep_ms > 0) {
        struct timespec d = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000};
        nanosleep(&d, NULL);
    }
    long long until = field(in, "\"fail_until_ms\"", 0);
    long long now = now_ms();
    if (now < until) {
        fprintf(stderr, "flaky: failing as asked, %lld ms before fail_until_ms\n", until - now);
        return 1;
    }
    long long id = field(in, "\"id\"", -1);
    if (id >= 0)
        printf("{\"ok\":true,\"id\":%lld,\"at_ms\":%lld}\n", id, now);
    else
        printf("{\"ok\":true,\"at_ms\":%lld}\n", now);
    return 0;
}
