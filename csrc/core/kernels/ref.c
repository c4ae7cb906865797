/* Scalar reference kernels: plain loops, the definition of correct for every operation. */
#include "kernels.h"

void ns_ref_conv3x3(const float *in, size_t cin, size_t h, size_t w, const float *weight,
                    const float *bias, size_t cout, int relu, float *out) {
    const size_t oh = h - 2, ow = w - 2;
    for (size_t co = 0; co < cout; co++) {
        for (size_t y = 0; y < oh; y++) {
            for (size_t x = 0; x < ow; x++) {
                float sum = bias[co];
                for (size_t ci = 0; ci < cin; ci++) {
                    for (size_t ky = 0; ky < 3; ky++) {
                        for (size_t kx = 0; kx < 3; kx++) {
                            sum += in[(ci * h + y + ky) * w + x + kx] *
                                   weight[((co * cin + ci) * 3 + ky) * 3 + kx];
                        }
                    }
                }
                if (relu && !(sum > 0.0f)) sum = 0.0f;
                out[(co * oh + y) * ow + x] = sum;
            }
        }
    }
}

void ns_ref_relu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(x[i] > 0.0f)) x[i] = 0.0f;
}

void ns_ref_maxpool2x2(const float *in, size_t c, size_t h, size_t w, float *out) {
    const size_t oh = h / 2, ow = w / 2;
    for (size_t ch = 0; ch < c; ch++) {
        for (size_t y = 0; y < oh; y++) {
            for (size_t x = 0; x < ow; x++) {
                const float *p = in + (ch * h + 2 * y) * w + 2 * x;
                float m = p[0];
                if (p[1] > m) m = p[1];
                if (p[w] > m) m = p[w];
                if (p[w + 1] > m) m = p[w + 1];
                out[(ch * oh + y) * ow + x] = m;
            }
        }
    }
}

void ns_ref_linear(const float *in, size_t rows, size_t k, const float *weight, const float *bias,
                   size_t n, int relu, float *out) {
    for (size_t m = 0; m < rows; m++) {
        for (size_t o = 0; o < n; o++) {
            float sum = bias[o];
            for (size_t i = 0; i < k; i++) sum += in[m * k + i] * weight[o * k + i];
            if (relu && !(sum > 0.0f)) sum = 0.0f;
            out[m * n + o] = sum;
        }
    }
}
