/* loader/mix.h — internal to the loader: splitmix64's finalizer, the 64-bit
 * mixer that loader/order.c keys its Feistel rounds with and
 * loader/transform.c draws its per-sample random stream from.
 *
 * defines: mix64
 *
 * mix64 is a bijection of uint64_t; its outputs are pinned by test_order
 * and test_transform, so it must not change.
 */
#ifndef LOADER_MIX_H
#define LOADER_MIX_H

#include <stdint.h>

/* splitmix64's finalizer: a strong 64-bit mixer. */
static inline uint64_t mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z;
}

#endif
