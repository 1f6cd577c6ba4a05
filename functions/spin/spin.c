// spin: a CPU-bound event handler. The event {"n": N} asks for N rounds of an xorshift
// generator; the work scales linearly with N. Used by the scaling tests and benchmarks.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long long field(const char *json, const char *key, long long dflt) {
    const char *p = strstr(json, key);
    if (!p) return dflt;
    p += strlen(key);
    while (*p == '"' || *p == ' ' || *p == ':' || *p == '\t') p++;
    if (*p < '0' || *p > '9') return dflt;
    return strtoll(p, NULL, 10);
}

int main(void) {
    static char in[65536];
    size_t len = fread(in, 1, sizeof in - 1, stdin);
    in[len] = 0;
    long long n = field(in, "\"n\"", 1000000);
    unsigned long long x = 0x9e3779b97f4a7c15ULL;
    for (long long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    printf("{\"n\":%lld,\"result\":%llu}\n", n, x);
    return 0;
}
