/* classify: handwritten digit recognition, a Lambda-style event handler.
 *
 * The event is a JSON list of 8x8 images, each a list of 64 pixel values from 0 to 16 (the
 * format of scikit-learn's digits): [[0, 0, 5, 13, ...], ...]. The answer is
 * {"labels": [...], "scores": [...]}: each image's digit, and the network's probability for
 * it. The network (a multi-layer perceptron, ReLU, softmax) is trained at build time by
 * train.py into build/weights.h. Bad input exits 1 with the reason on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weights.h"

#define PIXELS 64
#define MAX_WIDTH 256

static char *read_all(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) return NULL;
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            char *next = realloc(buf, cap + 1);
            if (!next) { free(buf); return NULL; }
            buf = next;
        }
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static const char *skip(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

static int fail(const char *why, long image) {
    if (image >= 0) fprintf(stderr, "classify: image %ld: %s\n", image, why);
    else fprintf(stderr, "classify: %s\n", why);
    return 1;
}

/* One image through the network: its label, and the probability of it. */
static int infer(const float *pixels, float *score) {
    float a[MAX_WIDTH], b[MAX_WIDTH];
    memcpy(a, pixels, sizeof(float) * PIXELS);
    for (int l = 0; l < LAYERS; l++) {
        int in = SIZES[l], out = SIZES[l + 1];
        const float *w = WEIGHTS[l], *bias = BIASES[l];
        for (int o = 0; o < out; o++) {
            float s = bias[o];
            for (int i = 0; i < in; i++) s += w[o * in + i] * a[i];
            b[o] = (l + 1 < LAYERS && s < 0) ? 0 : s; /* ReLU, but not on the output */
        }
        memcpy(a, b, sizeof(float) * out);
    }
    int best = 0;
    for (int k = 1; k < 10; k++)
        if (a[k] > a[best]) best = k;
    float sum = 0;
    for (int k = 0; k < 10; k++) sum += expf(a[k] - a[best]);
    *score = 1.0f / sum;
    return best;
}

int main(void) {
    size_t len;
    char *in = read_all(&len);
    if (!in) return fail("out of memory reading the event", -1);
    const char *p = skip(in);
    if (*p != '[') return fail("the event must be a JSON list of images ([[64 pixels], ...])", -1);
    p = skip(p + 1);
    size_t cap = 64, n = 0;
    int *labels = malloc(sizeof(int) * cap);
    float *scores = malloc(sizeof(float) * cap);
    if (!labels || !scores) return fail("out of memory", -1);
    while (*p != ']') {
        if (*p != '[') return fail("each image must be a list of 64 pixel values", (long)n);
        p = skip(p + 1);
        float pixels[PIXELS];
        int k = 0;
        while (*p != ']') {
            char *end;
            double v = strtod(p, &end);
            if (end == p) return fail("a pixel is not a number", (long)n);
            if (k == PIXELS) return fail("more than 64 pixels (8x8)", (long)n);
            if (!(v >= 0 && v <= 16)) return fail("a pixel is outside 0..16", (long)n);
            pixels[k++] = (float)(v / 16.0);
            p = skip(end);
            if (*p == ',') p = skip(p + 1);
            else if (*p != ']') return fail("pixels must be separated by commas", (long)n);
        }
        if (k != PIXELS) return fail("fewer than 64 pixels (8x8)", (long)n);
        if (n == cap) {
            cap *= 2;
            labels = realloc(labels, sizeof(int) * cap);
            scores = realloc(scores, sizeof(float) * cap);
            if (!labels || !scores) return fail("out of memory", -1);
        }
        labels[n] = infer(pixels, &scores[n]);
        n++;
        p = skip(p + 1);
        if (*p == ',') p = skip(p + 1);
        else if (*p != ']') return fail("images must be separated by commas", (long)n);
    }
    if (*skip(p + 1) != 0) return fail("trailing data after the list of images", -1);
    fputs("{\"labels\":[", stdout);
    for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", labels[i]);
    fputs("],\"scores\":[", stdout);
    for (size_t i = 0; i < n; i++) printf(i ? ",%.4f" : "%.4f", scores[i]);
    fputs("]}", stdout);
    return 0;
}
