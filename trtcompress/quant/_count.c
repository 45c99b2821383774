/* Histogram counting for calibration: counts[floor(|x| * scale)] += 1 over a float32/float64 array,
 * returning the number of exact zeros. One pass, without the GIL, so several tensors are counted
 * at once. Same result as the numpy path in _kernels.py: scale is a power of two, so the product
 * is exact in the input's own precision and truncation is the floor.
 *
 * Each block of values first gets its bins (a loop the compiler vectorises: abs, scale, compare,
 * truncate), then four sub-histograms of uint32 take consecutive values: a ReLU output repeats bin
 * 0 at random, and one table would make each increment wait for the previous one to the same bin.
 * A value outside the bins (or NaN) goes to a spare bin past the end, counted but never folded.
 * The sub-histograms are folded into int64 every 2**30 values, before a uint32 could overflow.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 4
#define BLOCK 512
#define FOLD_EVERY ((Py_ssize_t)1 << 30)

#define COUNT_LOOP(T, ABS)                                                                   \
    do {                                                                                     \
        const T *x = (const T *)xs.buf;                                                      \
        const T s = (T)scale, top = (T)nb;                                                   \
        int32_t bin[BLOCK];                                                                  \
        uint32_t *l0 = lanes, *l1 = l0 + stride, *l2 = l1 + stride, *l3 = l2 + stride;        \
        for (Py_ssize_t start = 0; start < n; start += FOLD_EVERY) {                         \
            Py_ssize_t end = n - start > FOLD_EVERY ? start + FOLD_EVERY : n;                \
            for (Py_ssize_t i = start; i < end; i += BLOCK) {                                \
                const int m = end - i < BLOCK ? (int)(end - i) : BLOCK;                      \
                int z = 0, out = 0;                                                          \
                for (int j = 0; j < m; j++) {                                                \
                    T a = ABS(x[i + j]), p = a * s;                                          \
                    int ok = p < top; /* false for NaN too */                                \
                    z += a == 0; /* before scaling: a tiny value may underflow to 0 */       \
                    out += !ok;                                                              \
                    bin[j] = ok ? (int32_t)p : (int32_t)nb;                                  \
                }                                                                            \
                zeros += z;                                                                  \
                bad += out;                                                                  \
                int j = 0;                                                                   \
                for (; j + LANES <= m; j += LANES) {                                         \
                    l0[bin[j]]++;                                                            \
                    l1[bin[j + 1]]++;                                                        \
                    l2[bin[j + 2]]++;                                                        \
                    l3[bin[j + 3]]++;                                                        \
                }                                                                            \
                for (; j < m; j++) l0[bin[j]]++;                                             \
            }                                                                                \
            for (Py_ssize_t b = 0; b < nb; b++) acc[b] += (int64_t)l0[b] + l1[b] + l2[b] + l3[b]; \
            memset(lanes, 0, LANES * stride * sizeof(uint32_t));                             \
        }                                                                                    \
    } while (0)

static PyObject *count_abs(PyObject *self, PyObject *args) {
    PyObject *xo, *co;
    double scale;
    if (!PyArg_ParseTuple(args, "OdO", &xo, &scale, &co)) return NULL;
    Py_buffer xs, cs;
    if (PyObject_GetBuffer(xo, &xs, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(co, &cs, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&xs);
        return NULL;
    }
    PyObject *result = NULL;
    const char *xf = xs.format ? xs.format : "B", *cf = cs.format ? cs.format : "B";
    int is_f32 = strcmp(xf, "f") == 0, is_f64 = strcmp(xf, "d") == 0;
    if (!(is_f32 || is_f64)) {
        PyErr_SetString(PyExc_TypeError, "values must be a contiguous float32 or float64 array");
        goto done;
    }
    if (cs.itemsize != 8 || !(strcmp(cf, "q") == 0 || strcmp(cf, "l") == 0)) {
        PyErr_SetString(PyExc_TypeError, "counts must be a contiguous int64 array");
        goto done;
    }
    Py_ssize_t n = xs.len / xs.itemsize, nb = cs.len / 8;
    if (nb >= INT32_MAX) { /* bins are int32 within a block */
        PyErr_SetString(PyExc_ValueError, "too many bins for the compiled kernel (at most 2**31 - 2)");
        goto done;
    }
    int64_t *counts = (int64_t *)cs.buf;
    /* lanes fold into acc, and acc into counts only when every value fitted: an error leaves
       counts as they were */
    Py_ssize_t stride = nb + 1; /* the spare bin */
    uint32_t *lanes = calloc((size_t)(LANES * stride), sizeof(uint32_t));
    int64_t *acc = calloc((size_t)(nb + 1), sizeof(int64_t));
    if (!lanes || !acc) {
        free(lanes);
        free(acc);
        PyErr_NoMemory();
        goto done;
    }
    long long zeros = 0, bad = 0;
    Py_BEGIN_ALLOW_THREADS
    if (is_f32)
        COUNT_LOOP(float, fabsf);
    else
        COUNT_LOOP(double, fabs);
    Py_END_ALLOW_THREADS
    free(lanes);
    if (bad) {
        free(acc);
        PyErr_Format(PyExc_ValueError, "%lld values are NaN or fall outside the %zd bins", bad, nb);
        goto done;
    }
    for (Py_ssize_t b = 0; b < nb; b++) counts[b] += acc[b];
    free(acc);
    result = PyLong_FromLongLong(zeros);
done:
    PyBuffer_Release(&xs);
    PyBuffer_Release(&cs);
    return result;
}

static PyMethodDef methods[] = {
    {"count_abs", count_abs, METH_VARARGS,
     "count_abs(values, scale, counts) -> zeros: add floor(|values| * scale) to counts (int64), "
     "return how many values are exactly zero."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_count", "Histogram counting kernel for calibration.", -1, methods};

PyMODINIT_FUNC PyInit__count(void) { return PyModule_Create(&module); }
