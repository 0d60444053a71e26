/*
 * The per-step hot path of the tracer, in C.
 *
 * pytest_asyncspec/tracing/step_log.py holds the reference implementation in Python
 * and the contract; this file implements the same two types faster:
 *
 *   StepLog      the running step (label, real start and serial number, read
 *                by the blocking watchdog) and the packed step
 *                records (six int64 words a step, kept in an array('q')).
 *   RecorderBase stands in for a task's coroutine: each send/throw into it
 *                runs one step of the real coroutine and records it.
 *
 * A C recorder matters because asyncio's C Task steps a coroutine through
 * PyIter_Send, which calls the am_send slot directly: no Python frame, no
 * method lookup.  On uvloop a whole task step costs about a microsecond, so
 * a Python-level wrapper (a few hundred nanoseconds at best) cannot meet the
 * overhead goals; this one costs two clock reads and a 48-byte copy.
 *
 * Only one rare path calls back into Python, on the recorder subclass:
 *   _yielded(result) -> int   what a kept step that yielded something other
 *                             than None waits for: awaited << 8 | kind
 * and, once a task, how it ended:
 *   step_log.describe_ending(error)
 *                             what StepLog.endings keeps of the exception a
 *                             coroutine raised: plain data, never the
 *                             exception, which would keep its traceback's
 *                             frames and their locals alive after stock
 *                             asyncio frees them.
 * A task that returned from a send is noted (label, None) without a call.
 *
 * Built on Linux only, where time.perf_counter_ns() reads CLOCK_MONOTONIC
 * too, so the stamps taken here and in Python share one clock.
 *
 * Other threads read the loop thread's stack while steps run (the blocking
 * watchdog, the hang watch, pytest-timeout's dump), so this file keeps no
 * pointer into the interpreter's frames: no frame object, no frame pointer,
 * borrowed or owned, is stored anywhere.  A recorder owns its coroutine and
 * its log; the log owns the virtual loop, the records array and the endings
 * list; everything else is plain integers.  Objects borrowed during a step
 * (the log through the recorder, the coroutine in throw) are owned by the
 * recorder, which the task keeps alive while it steps it.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

#define WORDS 6
#define LABEL_SHIFT 8
#define AWAITED_SHIFT 32
#define KIND_DONE 7
/* Steps buffered in C before they are appended to the array('q') in one
 * call: the array module has no C API, and one method call a step would cost
 * more than the rest of the recording. */
#define CHUNK_STEPS 2048

static PyObject *str_yielded;
static PyObject *str_ticks;
static PyObject *str_frombytes;
static PyObject *str_throw;
static PyObject *str_close;
/* step_log.describe_ending, looked up at the first exception (step_log
 * imports this module, so not at this module's import). */
static PyObject *ending_describer;

static PyObject *
describe_ending(PyObject *error)
{
    if (ending_describer == NULL) {
        PyObject *module = PyImport_ImportModule("pytest_asyncspec.tracing.step_log");
        if (module == NULL) {
            return NULL;
        }
        ending_describer = PyObject_GetAttrString(module, "describe_ending");
        Py_DECREF(module);
        if (ending_describer == NULL) {
            return NULL;
        }
    }
    return PyObject_CallOneArg(ending_describer, error);
}

static inline long long
read_clock(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline long long
now_ns(void)
{
    return read_clock(CLOCK_MONOTONIC);
}

/* -- StepLog ---------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    long long current;
    long long step_started_ns;
    /* Serial number of the running step (the value of steps when it began;
     * 0: none).  Unlike step_started_ns it tells two steps apart whatever
     * the clock's resolution. */
    long long step_serial;
    /* Steps whose real duration is at most this are not kept; -1 keeps all. */
    long long keep_over_ns;
    /* CLOCK_MONOTONIC, or CLOCK_MONOTONIC_COARSE (a fifth of the cost, to
     * the kernel tick) when only long steps are kept. */
    clockid_t clock;
    int coarse;
    /* Steps counted, kept or not. */
    long long steps;
    PyObject *vloop;   /* a VirtualClockLoop (its _ticks are loop time), or NULL */
    PyObject *records; /* array('q') */
    PyObject *endings; /* list of (label, describe_ending(error) or None) */
    Py_ssize_t used;   /* words buffered in chunk */
    long long chunk[CHUNK_STEPS * WORDS];
} StepLog;

static int
steplog_flush(StepLog *self)
{
    if (self->used == 0) {
        return 0;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(
        (const char *)self->chunk, self->used * (Py_ssize_t)sizeof(long long));
    if (bytes == NULL) {
        return -1;
    }
    self->used = 0;
    PyObject *done = PyObject_CallMethodOneArg(self->records, str_frombytes, bytes);
    Py_DECREF(bytes);
    if (done == NULL) {
        return -1;
    }
    Py_DECREF(done);
    return 0;
}

static inline void
steplog_append(StepLog *self, long long key, long long start, long long end,
               long long loop_start, long long loop_end, long long last)
{
    if (self->used == CHUNK_STEPS * WORDS && steplog_flush(self) < 0) {
        /* Out of memory: the step is lost, the task is not. */
        PyErr_WriteUnraisable((PyObject *)self);
        return;
    }
    long long *word = self->chunk + self->used;
    word[0] = key;
    word[1] = start;
    word[2] = end;
    word[3] = loop_start;
    word[4] = loop_end;
    word[5] = last;
    self->used += WORDS;
}

static inline long long
steplog_loop_ns(StepLog *self)
{
    if (self->vloop == NULL) {
        return 0;
    }
    PyObject *ticks = PyObject_GetAttr(self->vloop, str_ticks);
    if (ticks == NULL) {
        PyErr_WriteUnraisable(self->vloop);
        return 0;
    }
    long long value = PyLong_AsLongLong(ticks);
    Py_DECREF(ticks);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_WriteUnraisable(self->vloop);
        return 0;
    }
    return value;
}

static int
steplog_init(StepLog *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"vloop", "keep_over_ns", "coarse", NULL};
    PyObject *vloop = Py_None;
    long long keep_over_ns = -1;
    int coarse = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OLp:StepLog", kwlist, &vloop, &keep_over_ns,
                                     &coarse)) {
        return -1;
    }
    if (coarse && keep_over_ns < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "coarse stamps are for keeping long steps only: give keep_over_ns");
        return -1;
    }
    PyObject *array_module = PyImport_ImportModule("array");
    if (array_module == NULL) {
        return -1;
    }
    PyObject *records = PyObject_CallMethod(array_module, "array", "s", "q");
    Py_DECREF(array_module);
    if (records == NULL) {
        return -1;
    }
    PyObject *endings = PyList_New(0);
    if (endings == NULL) {
        Py_DECREF(records);
        return -1;
    }
    Py_XSETREF(self->records, records);
    Py_XSETREF(self->endings, endings);
    Py_XSETREF(self->vloop, vloop == Py_None ? NULL : Py_NewRef(vloop));
    self->keep_over_ns = keep_over_ns;
    self->coarse = coarse;
    self->clock = coarse ? CLOCK_MONOTONIC_COARSE : CLOCK_MONOTONIC;
    self->current = 0;
    self->step_started_ns = 0;
    self->step_serial = 0;
    self->steps = 0;
    self->used = 0;
    return 0;
}

static int
steplog_traverse(StepLog *self, visitproc visit, void *arg)
{
    Py_VISIT(self->vloop);
    Py_VISIT(self->records);
    Py_VISIT(self->endings);
    return 0;
}

static int
steplog_clear(StepLog *self)
{
    Py_CLEAR(self->vloop);
    Py_CLEAR(self->records);
    Py_CLEAR(self->endings);
    return 0;
}

static void
steplog_dealloc(StepLog *self)
{
    PyObject_GC_UnTrack(self);
    steplog_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
steplog_get_records(StepLog *self, void *closure)
{
    if (self->records == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "StepLog.__init__ was not called");
        return NULL;
    }
    if (steplog_flush(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self->records);
}

static PyObject *
steplog_get_endings(StepLog *self, void *closure)
{
    if (self->endings == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "StepLog.__init__ was not called");
        return NULL;
    }
    return Py_NewRef(self->endings);
}

static PyObject *
steplog_get_vloop(StepLog *self, void *closure)
{
    return Py_NewRef(self->vloop == NULL ? Py_None : self->vloop);
}

static PyObject *
steplog_append_method(StepLog *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long words[WORDS];
    if (nargs != WORDS) {
        PyErr_Format(PyExc_TypeError, "append() takes %d integers (%zd given)", WORDS, nargs);
        return NULL;
    }
    for (int i = 0; i < WORDS; i++) {
        words[i] = PyLong_AsLongLong(args[i]);
        if (words[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    steplog_append(self, words[0], words[1], words[2], words[3], words[4], words[5]);
    Py_RETURN_NONE;
}

static PyMemberDef steplog_members[] = {
    {"current", T_LONGLONG, offsetof(StepLog, current), 0,
     "Label of the task whose step is running (0: none)."},
    {"step_started_ns", T_LONGLONG, offsetof(StepLog, step_started_ns), 0,
     "Real ns at which the running step started."},
    {"step_serial", T_LONGLONG, offsetof(StepLog, step_serial), 0,
     "Serial number of the running step (steps when it began; 0: none)."},
    {"keep_over_ns", T_LONGLONG, offsetof(StepLog, keep_over_ns), READONLY,
     "Steps at most this long (real ns) are not kept; -1 keeps every step."},
    {"coarse", T_INT, offsetof(StepLog, coarse), READONLY,
     "Whether steps are stamped with CLOCK_MONOTONIC_COARSE."},
    {"steps", T_LONGLONG, offsetof(StepLog, steps), READONLY,
     "Steps run through recorders of this log, kept or not."},
    {NULL},
};

static PyGetSetDef steplog_getset[] = {
    {"records", (getter)steplog_get_records, NULL,
     "The kept steps, six int64 words each, as an array('q').", NULL},
    {"endings", (getter)steplog_get_endings, NULL,
     "Every task's end, in order: (label, error), error None when it returned.", NULL},
    {"vloop", (getter)steplog_get_vloop, NULL, "The virtual loop whose ticks are read, or None.",
     NULL},
    {NULL},
};

static PyObject *
steplog_clock(StepLog *self, PyObject *unused)
{
    return PyLong_FromLongLong(read_clock(self->clock));
}

static PyMethodDef steplog_methods[] = {
    {"clock", (PyCFunction)steplog_clock, METH_NOARGS,
     "Now, in ns, on the clock this log stamps steps with."},
    {"append", (PyCFunction)(void (*)(void))steplog_append_method, METH_FASTCALL,
     "Append one record of six integers."},
    {NULL},
};

static PyTypeObject StepLog_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pytest_asyncspec.tracing._step_log_c.StepLog",
    .tp_basicsize = sizeof(StepLog),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The running step and the packed step records of one tracer.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)steplog_init,
    .tp_traverse = (traverseproc)steplog_traverse,
    .tp_clear = (inquiry)steplog_clear,
    .tp_dealloc = (destructor)steplog_dealloc,
    .tp_members = steplog_members,
    .tp_getset = steplog_getset,
    .tp_methods = steplog_methods,
};

/* -- RecorderBase ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *coro;
    StepLog *log;
    long long label;
} Recorder;

static int
recorder_init(Recorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"coro", "log", "label", NULL};
    PyObject *coro;
    PyObject *log;
    long long label;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!L:RecorderBase", kwlist, &coro,
                                     &StepLog_Type, &log, &label)) {
        return -1;
    }
    if (label <= 0 || label >= (1LL << (AWAITED_SHIFT - 1))) {
        PyErr_Format(PyExc_ValueError, "label must be in 1..2**31-1, not %lld", label);
        return -1;
    }
    Py_XSETREF(self->coro, Py_NewRef(coro));
    Py_XSETREF(self->log, (StepLog *)Py_NewRef(log));
    self->label = label;
    return 0;
}

static int
recorder_traverse(Recorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->coro);
    Py_VISIT(self->log);
    return 0;
}

static int
recorder_clear(Recorder *self)
{
    Py_CLEAR(self->coro);
    Py_CLEAR(self->log);
    return 0;
}

static void
recorder_dealloc(Recorder *self)
{
    PyObject_GC_UnTrack(self);
    recorder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
recorder_ready(Recorder *self)
{
    if (self->coro == NULL || self->log == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RecorderBase.__init__ was not called");
        return -1;
    }
    return 0;
}

typedef struct {
    long long outer;
    long long outer_started;
    long long outer_serial;
    long long loop_start;
    long long start;
} StepStart;

static inline void
step_begin(Recorder *self, StepStart *s)
{
    StepLog *log = self->log;
    s->outer = log->current;
    s->outer_started = log->step_started_ns;
    s->outer_serial = log->step_serial;
    s->loop_start = steplog_loop_ns(log);
    s->start = read_clock(log->clock);
    /* Start first, then the label: a watchdog reading the pair between the
     * two stores sees the previous step's label with a fresh start, which
     * can only make it late, never wrong. */
    log->step_started_ns = s->start;
    log->current = self->label;
    log->step_serial = ++log->steps;
}

static inline void
step_restore(StepLog *log, const StepStart *s)
{
    /* Back to the step this one ran inside (an eager task's first step). */
    log->current = s->outer;
    log->step_started_ns = s->outer_started;
    log->step_serial = s->outer_serial;
}

static inline int
keeps(StepLog *log, long long duration)
{
    return log->keep_over_ns < 0 || duration > log->keep_over_ns;
}

/* A step yielded `result` (a new reference, left untouched). */
static void
step_yielded(Recorder *self, const StepStart *s, PyObject *result)
{
    StepLog *log = self->log;
    long long end = read_clock(log->clock);
    if (keeps(log, end - s->start)) {
        long long key = self->label << LABEL_SHIFT;
        long long awaited = 0;
        if (result != Py_None) {
            PyObject *code = PyObject_CallMethodOneArg((PyObject *)self, str_yielded, result);
            if (code == NULL) {
                PyErr_WriteUnraisable((PyObject *)self);
            }
            else {
                long long value = PyLong_AsLongLong(code);
                Py_DECREF(code);
                if (value == -1 && PyErr_Occurred()) {
                    PyErr_WriteUnraisable((PyObject *)self);
                }
                else {
                    key |= value & 0xff;
                    awaited = value >> LABEL_SHIFT;
                }
            }
        }
        steplog_append(log, key, s->start, end, s->loop_start, steplog_loop_ns(log),
                       awaited << AWAITED_SHIFT | s->outer);
    }
    step_restore(log, s);
}

/* The coroutine finished: returned (error NULL) or raised (error set). The
 * exception, if any, is left set for the caller. */
static void
step_ended(Recorder *self, const StepStart *s, int raised)
{
    StepLog *log = self->log;
    long long end = read_clock(log->clock);
    PyObject *type = NULL, *value = NULL, *traceback = NULL;
    /* Set the exception aside first: what follows calls the C API (reading
     * the loop's ticks, flushing the buffer), which must not run with an
     * exception set. */
    if (raised) {
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (traceback != NULL && value != NULL) {
            PyException_SetTraceback(value, traceback);
        }
    }
    if (keeps(log, end - s->start)) {
        steplog_append(log, self->label << LABEL_SHIFT | KIND_DONE, s->start, end, s->loop_start,
                       steplog_loop_ns(log), s->outer);
    }
    step_restore(log, s);
    /* A return (the common case) is noted without a Python call; an
     * exception is reduced to plain data now, so the log never holds it. */
    PyObject *detail = Py_NewRef(Py_None);
    if (value != NULL) {
        Py_SETREF(detail, describe_ending(value));
    }
    PyObject *label = detail == NULL ? NULL : PyLong_FromLongLong(self->label);
    PyObject *ending = label == NULL ? NULL : PyTuple_Pack(2, label, detail);
    Py_XDECREF(label);
    Py_XDECREF(detail);
    if (ending == NULL || PyList_Append(log->endings, ending) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    Py_XDECREF(ending);
    if (raised) {
        PyErr_Restore(type, value, traceback);
    }
}

static PySendResult
recorder_am_send(Recorder *self, PyObject *arg, PyObject **presult)
{
    if (recorder_ready(self) < 0) {
        *presult = NULL;
        return PYGEN_ERROR;
    }
    StepStart s;
    step_begin(self, &s);
    PySendResult status = PyIter_Send(self->coro, arg, presult);
    if (status == PYGEN_NEXT) {
        step_yielded(self, &s, *presult);
    }
    else {
        step_ended(self, &s, status == PYGEN_ERROR);
    }
    return status;
}

/* Turn an am_send outcome into the iterator protocol's. */
static PyObject *
send_result(PySendResult status, PyObject *result)
{
    if (status == PYGEN_NEXT) {
        return result;
    }
    if (status == PYGEN_RETURN) {
        if (result == Py_None) {
            Py_DECREF(result);
            PyErr_SetNone(PyExc_StopIteration);
        }
        else {
            /* An instance, so a tuple value is not taken for arguments. */
            PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
            Py_DECREF(result);
            if (stop != NULL) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
            }
        }
    }
    return NULL;
}

static PyObject *
recorder_iternext(Recorder *self)
{
    PyObject *result;
    PySendResult status = recorder_am_send(self, Py_None, &result);
    return send_result(status, result);
}

static PyObject *
recorder_send(Recorder *self, PyObject *value)
{
    PyObject *result;
    PySendResult status = recorder_am_send(self, value, &result);
    return send_result(status, result);
}

static PyObject *
recorder_throw(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (recorder_ready(self) < 0) {
        return NULL;
    }
    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "throw expected 1 to 3 arguments, got %zd", nargs);
        return NULL;
    }
    /* call[0] is spare: with PY_VECTORCALL_ARGUMENTS_OFFSET the callee may
     * overwrite the slot before the first argument (here, the receiver). */
    PyObject *call[5];
    call[0] = NULL;
    call[1] = self->coro;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        call[i + 2] = args[i];
    }
    StepStart s;
    step_begin(self, &s);
    PyObject *result = PyObject_VectorcallMethod(
        str_throw, call + 1, (size_t)(nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (result != NULL) {
        step_yielded(self, &s, result);
    }
    else {
        /* StopIteration included: the coroutine caught the exception and
         * returned; the task reads the value from it as usual. */
        step_ended(self, &s, 1);
    }
    return result;
}

static PyObject *
recorder_close(Recorder *self, PyObject *unused)
{
    if (recorder_ready(self) < 0) {
        return NULL;
    }
    return PyObject_CallMethodNoArgs(self->coro, str_close);
}

static PyObject *
recorder_self(PyObject *self)
{
    return Py_NewRef(self);
}

static PyObject *
recorder_self_method(PyObject *self, PyObject *unused)
{
    return Py_NewRef(self);
}

static PyObject *
recorder_get_coro(Recorder *self, void *closure)
{
    return Py_NewRef(self->coro == NULL ? Py_None : self->coro);
}

static PyObject *
recorder_get_log(Recorder *self, void *closure)
{
    return Py_NewRef(self->log == NULL ? Py_None : (PyObject *)self->log);
}

static PyMemberDef recorder_members[] = {
    {"_label", T_LONGLONG, offsetof(Recorder, label), READONLY, "The task's label."},
    {NULL},
};

static PyGetSetDef recorder_getset[] = {
    {"_coro", (getter)recorder_get_coro, NULL, "The task's real coroutine.", NULL},
    {"_log", (getter)recorder_get_log, NULL, "The StepLog steps are recorded in.", NULL},
    {NULL},
};

static PyMethodDef recorder_methods[] = {
    {"send", (PyCFunction)recorder_send, METH_O, "Run one step, sending a value in."},
    {"throw", (PyCFunction)(void (*)(void))recorder_throw, METH_FASTCALL,
     "Run one step, raising an exception in the coroutine."},
    {"close", (PyCFunction)recorder_close, METH_NOARGS, "Close the coroutine."},
    {"__await__", (PyCFunction)recorder_self_method, METH_NOARGS, "The recorder itself."},
    {NULL},
};

static PyAsyncMethods recorder_as_async = {
    .am_await = (unaryfunc)recorder_self,
    .am_send = (sendfunc)recorder_am_send,
};

static PyTypeObject Recorder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pytest_asyncspec.tracing._step_log_c.RecorderBase",
    .tp_basicsize = sizeof(Recorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Stands in for a task's coroutine and records each step it runs.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)recorder_init,
    .tp_traverse = (traverseproc)recorder_traverse,
    .tp_clear = (inquiry)recorder_clear,
    .tp_dealloc = (destructor)recorder_dealloc,
    .tp_as_async = &recorder_as_async,
    .tp_iter = (getiterfunc)recorder_self,
    .tp_iternext = (iternextfunc)recorder_iternext,
    .tp_members = recorder_members,
    .tp_getset = recorder_getset,
    .tp_methods = recorder_methods,
};

/* -- the module ------------------------------------------------------------ */

static PyObject *
module_now_ns(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(now_ns());
}

/* On Python 3.10 and 3.11 a Python subclass does not inherit am_send from
 * its C base (inherit_slots copies am_await, am_aiter and am_anext only), so
 * asyncio's task would step it through tp_iternext: one more dispatch a step
 * and a StopIteration object at each task's end.  Give the subclass the slot. */
static PyObject *
module_prepare_subclass(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &Recorder_Type)) {
        PyErr_SetString(PyExc_TypeError, "prepare_subclass() takes a subclass of RecorderBase");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        PyHeapTypeObject *heap = (PyHeapTypeObject *)type;
        if (type->tp_as_async == &heap->as_async && heap->as_async.am_send == NULL) {
            heap->as_async.am_send = (sendfunc)recorder_am_send;
            PyType_Modified(type);
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"prepare_subclass", module_prepare_subclass, METH_O,
     "Let a Python subclass of RecorderBase keep the C send slot."},
    {"now_ns", module_now_ns, METH_NOARGS,
     "Real nanoseconds on the clock the recorders stamp steps with."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pytest_asyncspec.tracing._step_log_c",
    .m_doc = "The tracer's per-step hot path in C (see step_log.py for the contract).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__step_log_c(void)
{
    if (PyType_Ready(&StepLog_Type) < 0 || PyType_Ready(&Recorder_Type) < 0) {
        return NULL;
    }
    if ((str_yielded = PyUnicode_InternFromString("_yielded")) == NULL ||
        (str_ticks = PyUnicode_InternFromString("_ticks")) == NULL ||
        (str_frombytes = PyUnicode_InternFromString("frombytes")) == NULL ||
        (str_throw = PyUnicode_InternFromString("throw")) == NULL ||
        (str_close = PyUnicode_InternFromString("close")) == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "StepLog", (PyObject *)&StepLog_Type) < 0 ||
        PyModule_AddObjectRef(module, "RecorderBase", (PyObject *)&Recorder_Type) < 0 ||
        PyModule_AddIntConstant(module, "CHUNK_STEPS", CHUNK_STEPS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
