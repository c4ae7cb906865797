/* PNG scanline reconstruction and conversion to 8-bit RGB: the part of PNG decoding that
 * runs per byte. The caller (neonsign.images) parses the chunks and inflates the image data
 * with zlib; this turns the inflated rows into pixels.
 *
 * Input: the inflated data of a non-interlaced PNG of 8-bit samples: `height` rows, each a
 * filter-type byte (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth; PNG specification section 9)
 * followed by width * channels samples. channels: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
 * Output: out[height][width][3]. Grey is copied to R, G and B; a pixel with alpha is
 * composited on white, (v * a + 255 * (255 - a) + 127) / 255 per channel (neonsign.images's
 * rule for every format with transparency).
 */
#ifndef NS_PNG_H
#define NS_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* Bytes of inflated data a width x height image of `channels` 8-bit samples has, or 0 if it
 * would overflow size_t. */
size_t ns_png_data_size(size_t width, size_t height, int channels);

/* Reconstruct and convert (see above). `len` must equal ns_png_data_size(...); a filter type
 * above 4 fails with NS_ERR_FORMAT (naming the row), bad arguments with NS_ERR_INVALID. */
ns_status ns_png_unfilter_rgb(const uint8_t *in, size_t len, size_t width, size_t height,
                              int channels, uint8_t *out, ns_error *err);

#endif /* NS_PNG_H */
