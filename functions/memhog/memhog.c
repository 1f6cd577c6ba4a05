// memhog: allocates the number of MiB the event {"mib": N} asks for and touches every
// page, so the memory is really used. Fails cleanly (exit 1) when the allocation is refused.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static char in[4096];
    size_t len = fread(in, 1, sizeof in - 1, stdin);
    in[len] = 0;
    long mib = 1;
    const char *p = strstr(in, "\"mib\"");
    if (p) {
        p += 5;
        while (*p == ' ' || *p == ':') p++;
        mib = strtol(p, NULL, 10);
    }
    char *block = malloc((size_t)mib << 20);
    if (!block) {
        fprintf(stderr, "{\"error\":\"out of memory\",\"mib\":%ld}\n", mib);
        return 1;
    }
    memset(block, 0xa5, (size_t)mib << 20);
    // Read every page back, so the compiler cannot drop the allocation.
    unsigned long sum = 0;
    for (size_t off = 0; off < ((size_t)mib << 20); off += 4096) sum += (unsigned char)block[off];
    printf("{\"allocated_mib\":%ld,\"checksum\":%lu}\n", mib, sum);
    return 0;
}
