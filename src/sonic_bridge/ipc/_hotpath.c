/* The host's hot path in one C call: validate a common audio frame, encode it as an AudioIn message and
 * append it to the inbound ring (sonic_bridge.ipc.ring's layout), without a temporary bytes object.
 *
 * Written by hand because no library does this: it is our own ring and codec. It must stay byte-compatible
 * with the pure-Python path (ipc.codec.encode + SharedRing.try_write), which tests/test_hotpath.py checks
 * by writing the same frames both ways. Only the common frame is handled here: a C-contiguous native
 * float32 or int16 buffer shaped [N], [1, N] or [N, 1]; anything else returns None and takes the
 * Python path, which validates every other input and words every refusal.
 *
 * Limited API (abi3, Python >= 3.11): one build serves the 3.11 host and the 3.12 worker.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define HEADER 16          /* record header: u32 length, u32 spare, u64 send time (ns) */
#define AUDIO_HEAD 14      /* AudioIn: u8 tag, u32 rate, u8 format, i64 seq */
#define TAG_AUDIO_IN 20
#define WRAP 0xFFFFFFFFu
#define DATA 256           /* offset of the data area in the mapping */
#define WRITE_WORD 0       /* the write index, stored only by the producer (u64 word 0) */
#define READ_WORD 8        /* the read index, stored only by the consumer (u64 word 8: its own cache line) */

static inline void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }

/* write_audio(mapping, capacity, w, samples, sample_rate, stamp_ns, seq, max_samples)
 *   -> (new write index, written) or None.
 * None: not a common frame, or one the Python path must refuse with its own message (empty, too long, NaN or
 * infinity, over the ring's message limit); nothing was written. written False: the ring is full now (the
 * index may still have moved past a published wrap marker, as in SharedRing.try_write). */
static PyObject *write_audio(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *mapping_obj, *samples;
    unsigned long long capacity, w, stamp;
    unsigned int rate;
    long long seq;
    Py_ssize_t max_samples;
    if (!PyArg_ParseTuple(args, "OKKOIKLn", &mapping_obj, &capacity, &w, &samples, &rate, &stamp, &seq,
                          &max_samples))
        return NULL;
    Py_buffer src;
    if (PyObject_GetBuffer(samples, &src, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const uint16_t probe = 1;
    const int little = *(const unsigned char *)&probe == 1;
    const char *fmt = src.format ? src.format : "B";
    if (fmt[0] == '=' || fmt[0] == '@' || fmt[0] == '<') fmt++;  /* native or little-endian; '>' and '!' are not */
    int format = -1;  /* 0: int16, 1: float32 (ipc.codec's _FORMATS order) */
    if (strcmp(fmt, "h") == 0 && src.itemsize == 2) format = 0;
    else if (strcmp(fmt, "f") == 0 && src.itemsize == 4) format = 1;
    int mono = src.ndim == 1 || (src.ndim == 2 && (src.shape[0] == 1 || src.shape[1] == 1));
    Py_ssize_t count = src.itemsize ? src.len / src.itemsize : 0;
    uint64_t n = AUDIO_HEAD + (uint64_t)src.len;
    if (format < 0 || !mono || !little || count == 0 || count > max_samples || capacity < 2 * HEADER
        || n > capacity / 2 - HEADER) {
        PyBuffer_Release(&src);
        Py_RETURN_NONE;
    }
    if (format == 1) {
        const float *f = (const float *)src.buf;
        for (Py_ssize_t i = 0; i < count; i++) {
            if (!isfinite(f[i])) {
                PyBuffer_Release(&src);
                Py_RETURN_NONE;
            }
        }
    }
    Py_buffer map;
    if (PyObject_GetBuffer(mapping_obj, &map, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if ((unsigned long long)map.len < DATA + capacity || capacity % 8) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&map);
        PyErr_SetString(PyExc_ValueError, "the mapping does not hold a ring of that capacity");
        return NULL;
    }
    unsigned char *base = (unsigned char *)map.buf;
    uint64_t *words = (uint64_t *)base;  /* page-aligned mapping: the indices are aligned 8-byte words */
    unsigned char *data = base + DATA;
    uint64_t size = (HEADER + n + 7) & ~(uint64_t)7;
    int written = 0;
    uint64_t r = __atomic_load_n(&words[READ_WORD], __ATOMIC_ACQUIRE);
    uint64_t free_bytes = capacity - (w - r);
    uint64_t pos = w % capacity;
    uint64_t tail = capacity - pos;
    if (size > tail) {
        if (tail > free_bytes) goto done;
        put_u32(data + pos, WRAP);
        w += tail;
        __atomic_store_n(&words[WRITE_WORD], w, __ATOMIC_RELEASE);  /* the marker is published on its own */
        free_bytes -= tail;
        pos = 0;
    }
    if (size > free_bytes) goto done;
    unsigned char *rec = data + pos;
    put_u32(rec, (uint32_t)n);
    put_u32(rec + 4, 0);
    put_u64(rec + 8, stamp);
    rec[16] = TAG_AUDIO_IN;
    put_u32(rec + 17, rate);
    rec[21] = (unsigned char)format;
    put_u64(rec + 22, (uint64_t)seq);
    memcpy(rec + HEADER + AUDIO_HEAD, src.buf, (size_t)src.len);
    w += size;
    __atomic_store_n(&words[WRITE_WORD], w, __ATOMIC_RELEASE);  /* the payload before the index (release) */
    written = 1;
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&map);
    return Py_BuildValue("(KO)", (unsigned long long)w, written ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"write_audio", write_audio, METH_VARARGS,
     "write_audio(mapping, capacity, w, samples, sample_rate, stamp_ns, seq, max_samples) -> (write index, "
     "written) or None (not a common frame: the Python path takes it)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hotpath", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__hotpath(void) { return PyModule_Create(&module); }
