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

void ns_ref_gemm(size_t M, size_t nc, size_t nr, size_t nseg, size_t kc, const float *a, size_t as,
                 size_t ss, const float *w, const float *bias, float *c, size_t cs, int relu) {
    for (size_t m = 0; m < M; m++) {
        for (size_t n = 0; n < nc; n++) {
            float sum = 0.0f;
            for (size_t s = 0; s < nseg; s++)
                for (size_t k = 0; k < kc; k++)
                    sum += a[m * as + s * ss + k] * w[(s * kc + k) * nr + n];
            sum += bias[n];
            if (relu && !(sum > 0.0f)) sum = 0.0f;
            c[m * cs + n] = sum;
        }
    }
}

void ns_ref_conv_pool(size_t pw, size_t nc, size_t nr, size_t kc, const float *a, size_t as,
                      size_t rs, const float *w, const float *bias, float *c, size_t cs, int relu) {
    for (size_t px = 0; px < pw; px++) {
        for (size_t n = 0; n < nc; n++) {
            float best = 0.0f;
            for (size_t q = 0; q < 4; q++) { /* the 2x2 window: conv row q / 2, column q % 2 */
                float v[1];
                ns_ref_gemm(1, 1, nr, 3, kc, a + (q / 2) * rs + (2 * px + q % 2) * as, as, rs,
                            w + n, bias + n, v, 1, relu);
                if (q == 0 || v[0] > best) best = v[0];
            }
            c[px * cs + n] = best;
        }
    }
}
