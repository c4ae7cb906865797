/* A main() for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput once on each
 * file named on the command line (directories are not expanded). Used by
 * tests/test_fuzz_regressions.py to replay the committed crash inputs and the seed corpus under
 * ASan/UBSan with any C compiler.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "cannot open %s\n", argv[i]);
            return 2;
        }
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0, got;
        do {
            if (len == cap) {
                cap = cap ? 2 * cap : 4096;
                uint8_t *nb = realloc(buf, cap);
                if (!nb) return 2;
                buf = nb;
            }
            got = fread(buf + len, 1, cap - len, f);
            len += got;
        } while (got > 0);
        fclose(f);
        /* an exact-size copy, so that reads past the input are caught */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact) return 2;
        for (size_t j = 0; j < len; j++) exact[j] = buf[j];
        free(buf);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    printf("replayed %d inputs: ok\n", argc - 1);
    return 0;
}
