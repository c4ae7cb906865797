/* The optimised pool2_relu kernels, instantiated by trainops.c once per vector width (a
 * template, like kernels/gemm_template.h). Before including, define:
 *   NS_TO_VB          vector bytes: 16 (SSE2/NEON), 32 (AVX2), 64 (AVX-512)
 *   NS_TO_FN(name)    the instance's name for `name`
 *   NS_TO_TARGET      its function attributes (a target ISA, or nothing)
 * (all three are undefined again at the end, ready for the next instance).
 * GCC/Clang generic vectors of the target's native width (wider ones than the ISA has are split
 * badly). The backward moves element bits only; the forward compares (see pool_bf16). */

/* the instance's vector types */
#define vf32     NS_TO_FN(vf32)
#define vi32     NS_TO_FN(vi32)
#define vi16     NS_TO_FN(vi16)
#define vu8_f32  NS_TO_FN(vu8_f32)
#define vu8_bf16 NS_TO_FN(vu8_bf16)
typedef float vf32 __attribute__((vector_size(NS_TO_VB)));
typedef int32_t vi32 __attribute__((vector_size(NS_TO_VB)));
typedef int16_t vi16 __attribute__((vector_size(NS_TO_VB)));
typedef uint8_t vu8_f32 __attribute__((vector_size(NS_TO_VB / 4)));
typedef uint8_t vu8_bf16 __attribute__((vector_size(NS_TO_VB / 2)));
#define F32_LANES  (NS_TO_VB / 4)
#define BF16_LANES (NS_TO_VB / 2)

/* float32: F32_LANES channels of one output pixel, compared as floats. */
static inline NS_TO_TARGET void NS_TO_FN(pool_f32)(const float *x, size_t col, size_t row,
                                                   float *out, size_t ostride, uint8_t *arg,
                                                   int drop) {
    const size_t offs[4] = {0, col, row, row + col};
    vf32 m;
    vi32 a = {0};
    memcpy(&m, x, sizeof m);
    for (int k = 1; k < 4; k++) {
        vf32 v;
        memcpy(&v, x + offs[k], sizeof v);
        vi32 take = (v > m) | (v != v);
        m = (vf32)(((vi32)v & take) | ((vi32)m & ~take));
        a = (take & k) | (a & ~take);
    }
    /* no gradient where relu's output is <= 0; relu zeroes values < 0 (-0.0 stays) */
    vi32 dead = m <= (vf32){0}, zero = m < (vf32){0};
    if (drop) { /* arg holds the keep mask on entry */
        vu8_f32 keep;
        memcpy(&keep, arg, sizeof keep);
        vi32 dropped = __builtin_convertvector(keep, vi32) == 0;
        dead |= dropped;
        zero |= dropped;
    }
    m = (vf32)((vi32)m & ~zero);
    vu8_f32 bytes = __builtin_convertvector((dead & NS_POOL_NO_GRAD) | (a & ~dead), vu8_f32);
    memcpy(arg, &bytes, sizeof bytes);
    if (ostride == 1)
        memcpy(out, &m, sizeof m);
    else
        for (int l = 0; l < F32_LANES; l++) out[l * ostride] = m[l];
}

/* bfloat16: BF16_LANES channels of one output pixel, without widening. Each value gets an
 * int16 key ordered as the floats: its magnitude, negated when the sign is set (so -0 == +0),
 * and INT16_MAX for NaN. A non-NaN never beats a NaN's key and a NaN always takes (`isnan(v)`),
 * so `key(v) > key(m) || isnan(v)` is the float comparison; the maximum's bits are kept. */
static inline NS_TO_TARGET void NS_TO_FN(pool_bf16)(const uint16_t *x, size_t col, size_t row,
                                                    uint16_t *out, size_t ostride, uint8_t *arg,
                                                    int drop) {
    const size_t offs[4] = {0, col, row, row + col};
    vi16 m = {0}, mkey = {0}, a = {0};
    for (int k = 0; k < 4; k++) {
        vi16 v;
        memcpy(&v, x + offs[k], sizeof v);
        vi16 mag = v & 0x7FFF, neg = v >> 15; /* neg: all ones where the sign bit is set */
        vi16 nan = mag > 0x7F80;
        vi16 key = (((mag ^ neg) - neg) & ~nan) | (nan & INT16_MAX);
        vi16 take = k == 0 ? ~(vi16){0} : (key > mkey) | nan;
        m = (v & take) | (m & ~take);
        mkey = (key & take) | (mkey & ~take);
        a = ((int16_t)k & take) | (a & ~take);
    }
    vi16 dead = mkey <= 0, zero = mkey < 0; /* as pool_f32 (the key of -0.0 is 0) */
    if (drop) {                             /* arg holds the keep mask on entry */
        vu8_bf16 keep;
        memcpy(&keep, arg, sizeof keep);
        vi16 dropped = __builtin_convertvector(keep, vi16) == 0;
        dead |= dropped;
        zero |= dropped;
    }
    m &= ~zero;
    vu8_bf16 bytes = __builtin_convertvector((dead & NS_POOL_NO_GRAD) | (a & ~dead), vu8_bf16);
    memcpy(arg, &bytes, sizeof bytes);
    if (ostride == 1)
        memcpy(out, &m, sizeof m);
    else
        for (int l = 0; l < BF16_LANES; l++) out[l * ostride] = (uint16_t)m[l];
}

static NS_TO_TARGET void NS_TO_FN(fwd)(ns_tdtype dt, const void *x, size_t n, size_t h, size_t w,
                                       size_t c, void *y, int nchw_out, uint8_t *arg, int drop) {
    size_t oh = h / 2, ow = w / 2, row = w * c, lanes = dt == NS_TD_BF16 ? BF16_LANES : F32_LANES;
    size_t cv = c - c % lanes, es = el_size(dt);
    size_t ostride = nchw_out ? oh * ow : 1; /* between channels of y */
    for (size_t b = 0; b < n; b++)
        for (size_t i = 0; i < oh; i++)
            for (size_t j = 0; j < ow; j++) {
                size_t at = ((b * h + 2 * i) * w + 2 * j) * c, o = ((b * oh + i) * ow + j) * c;
                const char *xp = (const char *)x + at * es;
                char *yp = (char *)y + out_index(nchw_out, b, i, j, 0, oh, ow, c) * es;
                for (size_t ch = 0; ch < cv; ch += lanes) {
                    if (dt == NS_TD_BF16)
                        NS_TO_FN(pool_bf16)((const uint16_t *)xp + ch, c, row,
                                            (uint16_t *)yp + ch * ostride, ostride, arg + o + ch,
                                            drop);
                    else
                        NS_TO_FN(pool_f32)((const float *)xp + ch, c, row,
                                           (float *)yp + ch * ostride, ostride, arg + o + ch, drop);
                }
                for (size_t ch = cv; ch < c; ch++) {
                    float v;
                    pool_one(dt, x, at + ch, c, row, &v, &arg[o + ch], drop);
                    store_el(dt, y, out_index(nchw_out, b, i, j, ch, oh, ow, c), v);
                }
            }
}

/* ns_dropout_keep's loop, vectorised by the compiler for the instance's target. */
static NS_TO_TARGET void NS_TO_FN(keep)(uint64_t seed, uint32_t threshold, size_t n,
                                        uint8_t *restrict keep) {
    uint32_t lo = (uint32_t)seed, hi = (uint32_t)(seed >> 32);
    for (size_t i = 0; i < n; i++) keep[i] = dropout_hash((uint32_t)i, lo, hi) >= threshold;
}

/* The backward moves element bits: the gradients of one output pixel's channels go to the
 * window's four input pixels t0, t1 (top row) and b0, b1 (bottom row), per element size.
 * g: the gradients, channel stride gs (1 for NHWC); a: the arg bytes (any value > 3: no
 * gradient). Vectors of NS_TO_VB bytes for contiguous gradients, element by element for the
 * rest. */
#define DEFINE_SCATTER(NAME, T, VT, VU8, LANES, SIGN)                                              \
    static inline NS_TO_TARGET void NAME(const T *restrict g, size_t gs,                           \
                                         const uint8_t *restrict a, size_t c, T *restrict t0,      \
                                         T *restrict t1, T *restrict b0, T *restrict b1) {         \
        size_t ch = 0;                                                                             \
        if (gs == 1)                                                                               \
            for (; ch + LANES <= c; ch += LANES) {                                                 \
                VT v, k;                                                                           \
                VU8 kb;                                                                            \
                memcpy(&v, g + ch, sizeof v);                                                      \
                memcpy(&kb, a + ch, sizeof kb);                                                    \
                k = __builtin_convertvector(kb, VT);                                               \
                v &= ~(v == (SIGN)); /* -0.0 -> +0.0, as PyTorch's 0 + g */                        \
                VT r0 = v & (k == 0), r1 = v & (k == 1), r2 = v & (k == 2), r3 = v & (k == 3);     \
                memcpy(t0 + ch, &r0, sizeof v);                                                    \
                memcpy(t1 + ch, &r1, sizeof v);                                                    \
                memcpy(b0 + ch, &r2, sizeof v);                                                    \
                memcpy(b1 + ch, &r3, sizeof v);                                                    \
            }                                                                                      \
        for (; ch < c; ch++) { /* element bits through memcpy: no aliasing of float data */        \
            T v, zero = 0;                                                                         \
            memcpy(&v, g + ch * gs, sizeof v);                                                     \
            if (v == (T)(SIGN)) v = 0;                                                             \
            unsigned k = a[ch];                                                                    \
            memcpy(t0 + ch, k == 0 ? &v : &zero, sizeof v);                                        \
            memcpy(t1 + ch, k == 1 ? &v : &zero, sizeof v);                                        \
            memcpy(b0 + ch, k == 2 ? &v : &zero, sizeof v);                                        \
            memcpy(b1 + ch, k == 3 ? &v : &zero, sizeof v);                                        \
        }                                                                                          \
    }

DEFINE_SCATTER(NS_TO_FN(scatter_u16), uint16_t, vi16, vu8_bf16, BF16_LANES, INT16_MIN)
DEFINE_SCATTER(NS_TO_FN(scatter_u32), uint32_t, vi32, vu8_f32, F32_LANES, INT32_MIN)
#undef DEFINE_SCATTER

static NS_TO_TARGET void NS_TO_FN(bwd)(ns_tdtype dt, const void *gy, int nchw_in,
                                       const uint8_t *arg, size_t n, size_t h, size_t w, size_t c,
                                       void *gx) {
    size_t oh = h / 2, ow = w / 2, es = el_size(dt), row = w * c * es, px = c * es;
    size_t gs = nchw_in ? oh * ow : 1; /* the stride between channels of gy */
    for (size_t b = 0; b < n; b++) {
        for (size_t i = 0; i < oh; i++) {
            char *top = (char *)gx + (b * h + 2 * i) * row, *bot = top + row;
            for (size_t j = 0; j < ow; j++) {
                const uint8_t *a = arg + ((b * oh + i) * ow + j) * c;
                const char *g = (const char *)gy + out_index(nchw_in, b, i, j, 0, oh, ow, c) * es;
                char *t0 = top + 2 * j * px, *b0 = bot + 2 * j * px;
                if (dt == NS_TD_BF16)
                    NS_TO_FN(scatter_u16)((const uint16_t *)g, gs, a, c, (uint16_t *)t0,
                                          (uint16_t *)(t0 + px), (uint16_t *)b0,
                                          (uint16_t *)(b0 + px));
                else
                    NS_TO_FN(scatter_u32)((const uint32_t *)g, gs, a, c, (uint32_t *)t0,
                                          (uint32_t *)(t0 + px), (uint32_t *)b0,
                                          (uint32_t *)(b0 + px));
            }
            /* an odd width leaves a last column that no window covers */
            if (w % 2) {
                memset(top + (w - 1) * px, 0, px);
                memset(bot + (w - 1) * px, 0, px);
            }
        }
        /* and an odd height a last row */
        if (h % 2) memset((char *)gx + (b * h + h - 1) * row, 0, row);
    }
}

#undef F32_LANES
#undef BF16_LANES
#undef vf32
#undef vi32
#undef vi16
#undef vu8_f32
#undef vu8_bf16
#undef NS_TO_VB
#undef NS_TO_FN
#undef NS_TO_TARGET
