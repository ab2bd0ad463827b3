/* lib/api.h — forced into every object of libstreamtrain.so (-include),
 * which is compiled with -fvisibility=hidden: the public headers are read
 * first, with default visibility, so that their functions are the only
 * ones visible; the version script (lib/exports.sh) then exports exactly
 * the public headers' functions. The static library does not use it.
 *
 * defines: nothing of its own.
 */
#ifndef ST_LIB_API_H
#define ST_LIB_API_H

#pragma GCC visibility push(default)
#include "datasets/error.h"
#include "datasets/pack.h"
#include "datasets/packer.h"
#include "loader/loader.h"
#include "loader/transform.h"
#pragma GCC visibility pop

#endif
