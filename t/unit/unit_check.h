
/*
 * The unit tests' counters and their CHECK(cond, what): a failed check is
 * printed with its line and counted; main() prints both counts.
 */


#ifndef _UNIT_CHECK_H_INCLUDED_
#define _UNIT_CHECK_H_INCLUDED_


#include <stdio.h>


static int  passed, failed;


#define CHECK(cond, what)                                                     \
    do {                                                                      \
        if (cond) {                                                           \
            passed++;                                                         \
        } else {                                                              \
            failed++;                                                         \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, what);             \
        }                                                                     \
    } while (0)


#endif /* _UNIT_CHECK_H_INCLUDED_ */
