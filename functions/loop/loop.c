// loop: reads its event, then never returns. The host must end it at its timeout.
// An event containing "sleep" parks the guest in a host call (poll_oneoff) instead of
// spinning in wasm, where epoch interruption cannot reach it.
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    buf[n] = 0;
    while (fread(buf + n, 1, 0, stdin) > 0) {}
    if (strstr(buf, "sleep")) {
        for (;;) sleep(3600);
    }
    volatile unsigned long spins = 0;
    for (;;) spins++;
}
