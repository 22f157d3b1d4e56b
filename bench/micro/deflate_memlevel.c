/* One message compressed as the C wire does it (deflateReset, then deflate with Z_SYNC_FLUSH, raw,
 * 15-bit window, level 6), with zlib's memLevel 4 (a 4 KiB hash, cheap to clear per message) and
 * 8 (its default), for messages of several sizes taken in turn from each file given.
 *
 *     cc -O2 bench/micro/deflate_memlevel.c -o /tmp/deflate_memlevel -lz
 *     /tmp/deflate_memlevel FILE...      (e.g. Autobahn's testdata: data1.json pg2229.txt lena512.bmp)
 *
 * Prints microseconds per message (the best of 5 rounds: the machine is shared) and the compressed
 * size as a share of the message. */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zlib.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    static unsigned char data[1 << 21], out[1 << 18];
    static const size_t sizes[] = {256, 1024, 4096, 16384, 131072};
    for (int f = 1; f < argc; f++) {
        FILE *file = fopen(argv[f], "rb");
        if (file == NULL) return perror(argv[f]), 1;
        size_t n = fread(data, 1, sizeof data, file);
        fclose(file);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes && sizes[s] < n; s++) {
            size_t size = sizes[s];
            printf("%-24s %6zu B:", argv[f], size);
            for (int mem = 4; mem <= 8; mem += 4) {
                z_stream z = {0};
                if (deflateInit2(&z, 6, Z_DEFLATED, -15, mem, Z_DEFAULT_STRATEGY) != Z_OK) return 1;
                int reps = (int)(4000000 / size) + 10;
                double best = 1e9;
                size_t total = 0;
                for (int round = 0; round < 5; round++) {
                    size_t at = 0;
                    total = 0;
                    double start = now();
                    for (int r = 0; r < reps; r++) {
                        deflateReset(&z);
                        z.next_in = data + at;
                        z.avail_in = (uInt)size;
                        z.next_out = out;
                        z.avail_out = sizeof out;
                        deflate(&z, Z_SYNC_FLUSH);
                        total += sizeof out - z.avail_out - 4;
                        at = (at + size) % (n - size);
                    }
                    double took = (now() - start) / reps;
                    if (took < best) best = took;
                }
                printf("   memLevel %d %8.1f us %4.0f%%", mem, best * 1e6, 100.0 * total / reps / size);
                deflateEnd(&z);
            }
            printf("\n");
        }
    }
    return 0;
}
