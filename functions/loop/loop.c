// loop: reads its event, then never returns. The host must end it at its timeout.
#include <stdio.h>

int main(void) {
    char buf[4096];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {}
    volatile unsigned long spins = 0;
    for (;;) spins++;
}
