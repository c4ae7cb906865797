/* Scalar int8 reference: plain loops, integer arithmetic, the definition of correct for every
 * int8 kernel (see int8_kernels.h for the number formats). */
#include <math.h>
#include <string.h>

#include "int8_kernels.h"

void ns_qinput_nhwc(const float *src, size_t c, size_t hw, float inv_scale, size_t cpad,
                    uint8_t flip, uint8_t *dst) {
    for (size_t i = 0; i < hw; i++) {
        for (size_t ch = 0; ch < c; ch++) {
            float v = src[ch * hw + i] * inv_scale;
            v = v > 127.0f ? 127.0f : v; /* NaN compares false: clamped below to -128 */
            v = v >= -128.0f ? v : -128.0f;
            dst[i * cpad + ch] = (uint8_t)(((int)lrintf(v) + 128) ^ flip);
        }
        for (size_t ch = c; ch < cpad; ch++) dst[i * cpad + ch] = (uint8_t)(128 ^ flip);
    }
}

void ns_qref_conv3x3(const uint8_t *in, size_t cin, size_t h, size_t w, const int8_t *weight,
                     const int32_t *bias, const int32_t *mult, const int32_t *shift, size_t cout,
                     uint8_t *out) {
    const size_t oh = h - 2, ow = w - 2;
    for (size_t co = 0; co < cout; co++)
        for (size_t y = 0; y < oh; y++)
            for (size_t x = 0; x < ow; x++) {
                int32_t acc = bias[co];
                for (size_t ci = 0; ci < cin; ci++)
                    for (size_t ky = 0; ky < 3; ky++)
                        for (size_t kx = 0; kx < 3; kx++)
                            acc += (int32_t)in[(ci * h + y + ky) * w + x + kx] *
                                   (int32_t)weight[((co * cin + ci) * 3 + ky) * 3 + kx];
                out[(co * oh + y) * ow + x] = ns_requant(acc, mult[co], shift[co]);
            }
}

void ns_qref_maxpool2x2(const uint8_t *in, size_t c, size_t h, size_t w, uint8_t *out) {
    const size_t oh = h / 2, ow = w / 2;
    for (size_t ch = 0; ch < c; ch++)
        for (size_t y = 0; y < oh; y++)
            for (size_t x = 0; x < ow; x++) {
                const uint8_t *p = in + (ch * h + 2 * y) * w + 2 * x;
                uint8_t m = p[0];
                if (p[1] > m) m = p[1];
                if (p[w] > m) m = p[w];
                if (p[w + 1] > m) m = p[w + 1];
                out[(ch * oh + y) * ow + x] = m;
            }
}

void ns_qref_linear(const uint8_t *in, size_t rows, size_t k, const int8_t *weight,
                    const int32_t *bias, const int32_t *mult, const int32_t *shift,
                    const float *scale, size_t n, uint8_t *out, float *fout) {
    for (size_t m = 0; m < rows; m++)
        for (size_t o = 0; o < n; o++) {
            int32_t acc = bias[o];
            for (size_t i = 0; i < k; i++)
                acc += (int32_t)in[m * k + i] * (int32_t)weight[o * k + i];
            if (scale)
                fout[m * n + o] = (float)acc * scale[o];
            else
                out[m * n + o] = ns_requant(acc, mult[o], shift[o]);
        }
}

/* W(k, n) of a packed block (int8_kernels.h). */
static int32_t packed_w(const ns_qisa *isa, const int8_t *w, size_t k, size_t n) {
    const size_t nr = isa->nr;
    if (isa->layout == NS_QPACK_MMLA8)
        return w[(((k / 8) * (nr / 2) + n / 2) * 2 + n % 2) * 8 + k % 8];
    return w[((k / 4) * nr + n) * 4 + k % 4];
}

/* acc of one row and column of the micro-kernel operation, exactly as the ISA computes it: an
 * s8_act ISA's A bytes are int8 (a - 128, its bias corrected at packing). */
static int32_t ref_acc(const ns_qisa *isa, size_t nseg, size_t kc, const uint8_t *a, size_t ss,
                       const int8_t *w, const ns_qout *q, size_t n, int half) {
    int32_t acc = q->bias[n];
    for (size_t s = 0; s < nseg; s++)
        for (size_t k = 0; k < kc; k++) { /* half >= 0: a row pair's row (ns_qisa.paired) */
            const uint8_t v =
                half < 0 ? a[s * ss + k] : a[s * ss + (k / 8) * 16 + (size_t)half * 8 + k % 8];
            const int32_t x = isa->s8_act ? (int32_t)(int8_t)v : (int32_t)v;
            acc += x * packed_w(isa, w, s * kc + k, n);
        }
    return acc;
}

void ns_qref_gemm(const ns_qisa *isa, size_t M, size_t nc, size_t nseg, size_t kc, const uint8_t *a,
                  size_t as, size_t ss, const int8_t *w, const ns_qout *q, void *c, size_t cs) {
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < nc; n++) {
            const int32_t acc =
                isa->paired ? ref_acc(isa, nseg, kc, a + (m / 2) * as, ss, w, q, n, (int)(m % 2))
                            : ref_acc(isa, nseg, kc, a + m * as, ss, w, q, n, -1);
            if (q->scale)
                ((float *)c)[m * cs + n] = (float)acc * q->scale[n];
            else
                ((uint8_t *)c)[m * cs + n] =
                    (uint8_t)(ns_requant(acc, q->mult[n], q->shift[n]) ^ (isa->s8_act ? 0x80 : 0));
        }
}

void ns_qpair_image(const uint8_t *src, size_t h, size_t w, size_t c, uint8_t *dst) {
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            uint8_t *blk = dst + (y * w + x) * 2 * c;
            const uint8_t *p0 = src + (y * w + x) * c, *p1 = x + 1 < w ? p0 + c : p0;
            for (size_t j = 0; j < c / 8; j++) {
                memcpy(blk + 16 * j, p0 + 8 * j, 8);
                memcpy(blk + 16 * j + 8, p1 + 8 * j, 8);
            }
        }
}

void ns_qpair_rows(const uint8_t *src, size_t m, size_t k, uint8_t *dst) {
    for (size_t p = 0; p < (m + 1) / 2; p++) {
        const uint8_t *r0 = src + 2 * p * k, *r1 = 2 * p + 1 < m ? r0 + k : r0;
        for (size_t j = 0; j < k / 8; j++) {
            memcpy(dst + p * 2 * k + 16 * j, r0 + 8 * j, 8);
            memcpy(dst + p * 2 * k + 16 * j + 8, r1 + 8 * j, 8);
        }
    }
}

/* Pixel p, channel ci of a pair-layout row (blocks as bytes apart): block p's first half. */
static uint8_t unpair(const uint8_t *row, size_t as, size_t p, size_t ci) {
    return row[p * as + (ci / 8) * 16 + ci % 8];
}

/* The conv-pool operation on a pair-layout input (int8_kernels.h, ns_qpair_image). */
static void ref_conv_pool_paired(const ns_qisa *isa, size_t pw, size_t nc, size_t kc,
                                 const uint8_t *a, size_t as, size_t rs, const int8_t *w,
                                 const ns_qout *q, uint8_t *c, size_t cs) {
    const size_t ch = kc / 3;
    for (size_t px = 0; px < pw; px++)
        for (size_t n = 0; n < nc; n++) {
            uint8_t best = 0;
            for (size_t d = 0; d < 4; d++) {
                int32_t acc = q->bias[n];
                for (size_t s = 0; s < 3; s++)
                    for (size_t k = 0; k < kc; k++)
                        acc += (int32_t)unpair(a + (d / 2 + s) * rs, as, 2 * px + d % 2 + k / ch,
                                               k % ch) *
                               packed_w(isa, w, s * kc + k, n);
                const uint8_t v = ns_requant(acc, q->mult[n], q->shift[n]);
                if (v > best) best = v;
            }
            c[px * cs + n] = best;
        }
}

void ns_qref_conv_pool(const ns_qisa *isa, size_t pw, size_t nc, size_t kc, const uint8_t *a,
                       size_t as, size_t rs, const int8_t *w, const ns_qout *q, uint8_t *c,
                       size_t cs) {
    if (isa->paired) {
        ref_conv_pool_paired(isa, pw, nc, kc, a, as, rs, w, q, c, cs);
        return;
    }
    for (size_t px = 0; px < pw; px++)
        for (size_t n = 0; n < nc; n++) {
            uint8_t best = 0;
            for (size_t d = 0; d < 4; d++) { /* the 2x2 window: conv row d / 2, column d % 2 */
                const uint8_t *ap = a + (d / 2) * rs + (2 * px + d % 2) * as;
                const uint8_t v =
                    ns_requant(ref_acc(isa, 3, kc, ap, rs, w, q, n, -1), q->mult[n], q->shift[n]);
                if (v > best) best = v;
            }
            c[px * cs + n] = (uint8_t)(best ^ (isa->s8_act ? 0x80 : 0));
        }
}

/* The "ref" int8 kernel: the plain loops above as micro-kernels (dot4 layout, 1 x 16 tile). */
#define REF_NR 16
static const ns_qisa ref_isa_template = {.name = "ref", .nr = REF_NR, .kgroup = 4};

static void qgemm_ref(size_t M, size_t nc, size_t nseg, size_t kc, const uint8_t *a, size_t as,
                      size_t ss, const int8_t *w, const ns_qout *q, void *c, size_t cs) {
    ns_qref_gemm(&ref_isa_template, M, nc, nseg, kc, a, as, ss, w, q, c, cs);
}

static void qconv_pool_ref(size_t pw, size_t nc, size_t kc, const uint8_t *a, size_t as, size_t rs,
                           const int8_t *w, const ns_qout *q, uint8_t *c, size_t cs) {
    ns_qref_conv_pool(&ref_isa_template, pw, nc, kc, a, as, rs, w, q, c, cs);
}

const ns_qisa *ns_qisa_ref(void) {
    static const ns_qisa isa = {.name = "ref",
                                .gemm_name = "ns_qref_gemm",
                                .conv_pool_name = "ns_qref_conv_pool",
                                .tile = "scalar",
                                .mr = 1,
                                .nr = REF_NR,
                                .kgroup = 4,
                                .layout = NS_QPACK_DOT4,
                                .s8_act = 0,
                                .pool_mc = 2,
                                .gemm = qgemm_ref,
                                .conv_pool = qconv_pool_ref};
    return &isa;
}
