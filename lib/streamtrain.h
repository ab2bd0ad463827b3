/* streamtrain.h — the umbrella header of the installed C library: the
 * error type, packs (reading, writing, packing a source), the streaming
 * loader and its transforms. Each header is also usable on its own as
 * <streamtrain/error.h>, <streamtrain/pack.h>, <streamtrain/packer.h>,
 * <streamtrain/loader.h>, <streamtrain/transform.h>.
 *
 * defines: nothing of its own.
 *
 * Link with `pkg-config --cflags --libs streamtrain`.
 */
#ifndef STREAMTRAIN_H
#define STREAMTRAIN_H

#include "streamtrain/error.h"
#include "streamtrain/pack.h"
#include "streamtrain/packer.h"
#include "streamtrain/loader.h"
#include "streamtrain/transform.h"

#endif
