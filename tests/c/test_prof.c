/* C-level tests of the profiler's span recorder (csrc/core/prof.c): spans nest with the right
 * parents and depths, ids are interned, disabled recording keeps begin/end balanced and stores
 * nothing, the buffer grows, attached external spans land under their parent, and bad use is
 * reported through ns_error (never an out-of-bounds access: this runs under ASan and UBSan).
 *
 * sources: common.c prof.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prof.h"

#include "check.h"

static uint32_t id_of(ns_prof *p, const char *name) {
    uint32_t id = 0;
    ns_error err;
    ns_error_clear(&err);
    CHECK(ns_prof_intern(p, name, &id, &err) == NS_OK);
    return id;
}

static void test_nesting(void) {
    ns_prof *p = NULL;
    ns_error err;
    ns_error_clear(&err);
    CHECK(ns_prof_create(&p, 1, &err) == NS_OK);
    uint32_t fwd = id_of(p, "forward"), c1 = id_of(p, "conv1"), c2 = id_of(p, "conv2");
    CHECK(id_of(p, "conv1") == c1 && ns_prof_name_count(p) == 3);
    CHECK(strcmp(ns_prof_name(p, c2), "conv2") == 0 && ns_prof_name(p, 99) == NULL);
    CHECK(ns_prof_begin(p, fwd, &err) == NS_OK);
    CHECK(ns_prof_begin(p, c1, &err) == NS_OK);
    CHECK(ns_prof_end(p, c1, &err) == NS_OK);
    CHECK(ns_prof_begin(p, c2, &err) == NS_OK);
    CHECK(ns_prof_open_spans(p) == 2);
    CHECK(ns_prof_end(p, NS_PROF_ANY_NAME, &err) == NS_OK);
    CHECK(ns_prof_end(p, fwd, &err) == NS_OK);
    CHECK(ns_prof_count(p) == 3 && ns_prof_open_spans(p) == 0);
    const ns_prof_record *r = ns_prof_records(p);
    CHECK(r[0].name == fwd && r[0].parent == NS_PROF_NO_PARENT && r[0].depth == 0);
    CHECK(r[1].name == c1 && r[1].parent == 0 && r[1].depth == 1);
    CHECK(r[2].name == c2 && r[2].parent == 0 && r[2].depth == 1);
    for (int i = 0; i < 3; i++) CHECK(r[i].end_ns >= r[i].start_ns && r[i].end_ns != 0);
    CHECK(r[1].start_ns >= r[0].start_ns && r[2].end_ns <= r[0].end_ns);
    if (ns_cycles_available()) CHECK(r[0].end_cycles >= r[0].start_cycles);

    /* attach an external timing under record 0 */
    CHECK(ns_prof_add(p, c1, 0, r[0].start_ns, 1234, 7, &err) == NS_OK);
    r = ns_prof_records(p);
    CHECK(ns_prof_count(p) == 4 && r[3].parent == 0 && r[3].depth == 1 && r[3].calls == 7);
    CHECK(r[3].end_ns - r[3].start_ns == 1234);
    ns_prof_destroy(p);
}

static void test_disabled_and_growth(void) {
    ns_prof *p = NULL;
    ns_error err;
    ns_error_clear(&err);
    CHECK(ns_prof_create(&p, 0, &err) == NS_OK);
    uint32_t a = id_of(p, "a"), b = id_of(p, "b");
    ns_prof_set_enabled(p, 0);
    for (int i = 0; i < 100000; i++) {
        CHECK(ns_prof_begin(p, a, &err) == NS_OK);
        CHECK(ns_prof_end(p, a, &err) == NS_OK);
    }
    CHECK(ns_prof_count(p) == 0);
    /* begun while off, ended while on: skipped consistently, including the inner span */
    CHECK(ns_prof_begin(p, a, &err) == NS_OK);
    ns_prof_set_enabled(p, 1);
    CHECK(ns_prof_begin(p, b, &err) == NS_OK);
    CHECK(ns_prof_end(p, b, &err) == NS_OK);
    CHECK(ns_prof_end(p, a, &err) == NS_OK);
    CHECK(ns_prof_count(p) == 0);
    /* attaching while off is ignored */
    ns_prof_set_enabled(p, 0);
    CHECK(ns_prof_add(p, a, NS_PROF_NO_PARENT, 0, 1, 1, &err) == NS_OK && ns_prof_count(p) == 0);
    ns_prof_set_enabled(p, 1);
    for (int i = 0; i < 5000; i++) {
        CHECK(ns_prof_begin(p, a, &err) == NS_OK);
        CHECK(ns_prof_end(p, a, &err) == NS_OK);
    }
    CHECK(ns_prof_count(p) == 5000 && ns_prof_dropped(p) == 0);
    ns_prof_reset(p);
    CHECK(ns_prof_count(p) == 0 && ns_prof_name_count(p) == 2);
    ns_prof_destroy(p);
}

static void test_bad_use(void) {
    ns_prof *p = NULL;
    ns_error err;
    ns_error_clear(&err);
    CHECK(ns_prof_create(NULL, 0, &err) == NS_ERR_INVALID);
    CHECK(ns_prof_create(&p, (size_t)NS_PROF_MAX_RECORDS + 1, &err) == NS_ERR_LIMIT && p == NULL);
    CHECK(ns_prof_create(&p, 0, &err) == NS_OK);
    uint32_t id = 0, a = id_of(p, "a"), b = id_of(p, "b");
    CHECK(ns_prof_intern(p, "", &id, &err) == NS_ERR_INVALID && err.msg[0]);
    char longname[NS_PROF_NAME_MAX + 8];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(ns_prof_intern(p, longname, &id, &err) == NS_ERR_INVALID);
    CHECK(ns_prof_end(p, a, &err) == NS_ERR_INVALID);    /* nothing open */
    CHECK(ns_prof_begin(p, 42, &err) == NS_ERR_INVALID); /* unknown id */
    CHECK(ns_prof_begin(p, a, &err) == NS_OK);
    CHECK(ns_prof_end(p, b, &err) == NS_ERR_INVALID); /* wrong name */
    CHECK(strstr(err.msg, "'b'") && strstr(err.msg, "'a'"));
    CHECK(ns_prof_end(p, a, &err) == NS_OK);
    CHECK(ns_prof_add(p, a, 5, 0, 1, 1, &err) == NS_ERR_INVALID); /* no such parent */
    CHECK(ns_prof_add(p, a, -7, 0, 1, 1, &err) == NS_ERR_INVALID);
    CHECK(ns_prof_add(p, a, NS_PROF_NO_PARENT, 10, UINT64_MAX, 1, &err) == NS_ERR_INVALID);
    CHECK(ns_prof_add(p, a, NS_PROF_NO_PARENT, 10, 1, 0, &err) == NS_ERR_INVALID);
    for (int d = 0; d < NS_PROF_MAX_DEPTH; d++) CHECK(ns_prof_begin(p, a, &err) == NS_OK);
    CHECK(ns_prof_begin(p, a, &err) == NS_ERR_LIMIT);
    for (int i = 0; i < NS_PROF_MAX_NAMES; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%d", i);
        ns_status st = ns_prof_intern(p, name, &id, &err);
        CHECK(st == NS_OK || (st == NS_ERR_LIMIT && i >= NS_PROF_MAX_NAMES - 2));
    }
    ns_prof_destroy(p);
    ns_prof_destroy(NULL);
}

int main(void) {
    test_nesting();
    test_disabled_and_growth();
    test_bad_use();
    if (ns_cycles_available()) {
        double hz = ns_cycles_hz(1000000);
        CHECK(hz > 1e6 && hz < 1e11);
    }
    printf("test_prof: ok\n");
    return 0;
}
