/* Assertions shared by the C-level tests in tests/c/.
 *
 * CHECK(cond): stop the test program at the first failure (exit 1).
 * EXPECT(cond, fmt, ...): report the failure with a message, count it in `failures`, go on;
 *   the program ends with `return failures ? 1 : 0`.
 */
#ifndef NS_TEST_CHECK_H
#define NS_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int failures __attribute__((unused)) = 0;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#endif /* NS_TEST_CHECK_H */
