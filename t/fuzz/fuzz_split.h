
/*
 * The fuzz targets' one way to cut an input into pieces, so that each
 * parser fed piece by piece can be checked against the same input whole.
 */


#ifndef _FUZZ_SPLIT_H_INCLUDED_
#define _FUZZ_SPLIT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


static uint64_t
fuzz_random(uint64_t *state)
{
    /* splitmix64 */

    uint64_t  z;

    z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


/*
 * The size of the next piece at off of len bytes.  how: 0 whole, 1 byte
 * by byte, 2 pieces of random sizes (0 to 16, from *seed), 3 one cut at
 * *seed % (len + 1) and then the rest (*pieces counts the pieces made).
 */

static size_t
fuzz_piece(int how, uint64_t *seed, size_t *pieces, size_t off, size_t len)
{
    size_t  n;

    switch (how) {
    case 0:
        n = len;
        break;
    case 1:
        n = 1;
        break;
    case 2:
        n = fuzz_random(seed) % 17;
        break;
    default:
        n = ((*pieces)++ == 0) ? *seed % (len + 1) : len - off;
        break;
    }

    return (n > len - off) ? len - off : n;
}


#endif /* _FUZZ_SPLIT_H_INCLUDED_ */
