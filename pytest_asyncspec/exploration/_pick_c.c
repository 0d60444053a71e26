/*
 * The exploring loop's pick loop, in C.
 *
 * pytest_asyncspec/exploration/exploring_loop.py holds the reference
 * implementation in Python (ExploringLoop._run_ready_chosen_py) and the
 * contract; run_chosen(loop, chooser) here does the same work, in the same
 * order, with the same calls into Python:
 *
 *   loop._label_of(handle)       a callback that is not a task's
 *   loop._new_task_label(task)   a task of a Task subclass seen first
 *   loop.on_label(task, label)   a task seen for the first time, if set
 *   shown_task_name(name, coro)  a default-named task of a coroutine whose
 *                                short name is not known yet
 *   loop._prune_task_labels()    when the task-label table is due a pruning
 *   chooser.choose(candidates, eligible, pick, steps)
 *   chooser.arrive(candidate)    unless chooser.ignores_arrivals is true
 *   loop.on_deviation(oldest, picked)
 *   handle._run()
 *
 * What it saves is the Python bytecode between those calls: taking an
 * arrival into the pool, finding the eligible prefix, moving the fairness
 * counters, recording the pick and its deviation.  That bytecode cost more
 * per pick than asyncio's own loop spends on a task step
 * (docs/benchmarks-exploration.md).
 *
 * A task of asyncio's own task types seen for the first time is labelled
 * here as ExploringLoop._new_task_label labels it (the same name, count,
 * table entry and on_label call; a loop subclass's own _new_task_label is
 * not called for it).  A Task subclass, whose get_name or done may be its
 * own, is labelled by _new_task_label.
 *
 * The pool's state stays where the Python code keeps it, in the loop's
 * slots, kept for the schedule in a PickState; the counters this function
 * alone uses are kept there too, and _held (which has_ready and the hang
 * watch read) is kept current on the loop.  No
 * borrowed reference is held across a call into Python: a callback may
 * close the loop, which empties the pool.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Set once by configure(). */
static PyObject *Candidate_type;
static PyObject *Deviation_type;
static PyObject *deque_type;
static PyObject *lane_label;
static PyObject *bookkeeping_label;
static PyObject *task_types;
static PyObject *absent;
static Py_ssize_t fairness_bound;
static PyObject *empty_tuple;
/* The strategies' own types, whose choose and arrive are done here without
 * a call into Python (see Native below). */
static PyObject *RandomChooser_type;
static PyObject *PctChooser_type;
/* task_table.shown_task_name and its cache of coroutines' short names. */
static PyObject *shown_task_name;
static PyObject *short_names;

static PyObject *s_callback, *s_self, *s_cancelled, *s_run, *s_new_task_label, *s_label_of,
    *s_choose, *s_arrive, *s_ignores_arrivals, *s_on_deviation, *s_popleft, *s_append,
    *s_candidates, *s_queued, *s_task_labels, *s_steps, *s_picks, *s_deviations, *s_ready,
    *s_choices, *s_passed_over, *s_starving, *s_lane_seq, *s_arrivals, *s_held,
    *s_instead_of, *s_step, *s_ran, *s_below, *s_priority, *s_heap, *s_held_back,
    *s_lowered_to, *s_random, *s_random_method, *s_depth, *s_pick_state, *s_name_counts,
    *s_get_name, *s_done, *s_get_coro, *s_qualname, *s_name, *s_prune_labels_at,
    *s_prune_task_labels, *s_on_label, *s_none_name, *s_task_prefix;

/* SplitMix64: the C twin of generator.PySplitMix (see generator.py). */
typedef struct {
    PyObject_HEAD
    uint64_t state;
} SplitMixObject;

static PyTypeObject SplitMix_Type;

static inline uint64_t
splitmix_next(SplitMixObject *self)
{
    uint64_t z = (self->state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, bound), bound >= 1: the fewest top bits covering
 * bound - 1, drawn until below bound (a bound of 1 draws nothing). */
static inline uint64_t
splitmix_below(SplitMixObject *self, uint64_t bound)
{
    if (bound <= 1) {
        return 0;
    }
    int width = 64 - __builtin_clzll(bound - 1);
    int shift = 64 - width;
    for (;;) {
        uint64_t drawn = splitmix_next(self) >> shift;
        if (drawn < bound) {
            return drawn;
        }
    }
}

static inline double
splitmix_random(SplitMixObject *self)
{
    return (double)(splitmix_next(self) >> 11) * (1.0 / 9007199254740992.0);
}

static PyObject *
SplitMix_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *seed;
    static char *keywords[] = {"seed", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!:SplitMix", keywords, &PyLong_Type, &seed)) {
        return NULL;
    }
    /* seed & (2**64 - 1), as the Python twin masks it. */
    uint64_t state = PyLong_AsUnsignedLongLongMask(seed);
    if (state == (uint64_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    SplitMixObject *self = (SplitMixObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->state = state;
    }
    return (PyObject *)self;
}

static PyObject *
SplitMix_next64(SplitMixObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(splitmix_next(self));
}

static PyObject *
SplitMix_below(SplitMixObject *self, PyObject *bound_obj)
{
    if (!PyLong_Check(bound_obj)) {
        PyErr_Format(PyExc_TypeError, "below() needs an int bound, not %.100s",
                     Py_TYPE(bound_obj)->tp_name);
        return NULL;
    }
    int overflow = 0;
    long long bound = PyLong_AsLongLongAndOverflow(bound_obj, &overflow);
    if (bound == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow > 0) {
        PyErr_SetString(PyExc_OverflowError, "below() draws below 2**63 at most");
        return NULL;
    }
    if (overflow < 0 || bound < 1) {
        PyErr_Format(PyExc_ValueError, "below() needs a bound of at least 1, not %R", bound_obj);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(splitmix_below(self, (uint64_t)bound));
}

static PyObject *
SplitMix_random(SplitMixObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(splitmix_random(self));
}

static PyObject *
SplitMix_get_state(SplitMixObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->state);
}

static int
SplitMix_set_state(SplitMixObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || !PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "state is an int");
        return -1;
    }
    uint64_t state = PyLong_AsUnsignedLongLongMask(value);
    if (state == (uint64_t)-1 && PyErr_Occurred()) {
        return -1;
    }
    self->state = state;
    return 0;
}

static PyMethodDef SplitMix_methods[] = {
    {"next64", (PyCFunction)SplitMix_next64, METH_NOARGS, "The next 64-bit word."},
    {"below", (PyCFunction)SplitMix_below, METH_O,
     "below(bound): uniform in range(bound); bound at least 1 (1 draws nothing)."},
    {"random", (PyCFunction)SplitMix_random, METH_NOARGS,
     "Uniform in [0, 1), in steps of 2**-53."},
    {NULL},
};

static PyGetSetDef SplitMix_getset[] = {
    {"state", (getter)SplitMix_get_state, (setter)SplitMix_set_state,
     "The 64-bit state word.", NULL},
    {NULL},
};

static PyTypeObject SplitMix_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pytest_asyncspec.exploration._pick_c.SplitMix",
    .tp_doc = "SplitMix(seed): SplitMix64, the C twin of generator.PySplitMix.",
    .tp_basicsize = sizeof(SplitMixObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = SplitMix_new,
    .tp_methods = SplitMix_methods,
    .tp_getset = SplitMix_getset,
};

static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyObject *cand, *dev, *dq, *lane, *book, *tasks, *abs, *random_type, *pct_type, *shown,
        *shorts;
    Py_ssize_t bound;
    if (!PyArg_ParseTuple(args, "OOOUUO!OnOOOO!", &cand, &dev, &dq, &lane, &book, &PyTuple_Type,
                          &tasks, &abs, &bound, &random_type, &pct_type, &shown, &PyDict_Type,
                          &shorts)) {
        return NULL;
    }
    if (!PyType_Check(cand) || !PyType_IsSubtype((PyTypeObject *)cand, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Candidate must be a tuple subclass");
        return NULL;
    }
    Py_XSETREF(Candidate_type, Py_NewRef(cand));
    Py_XSETREF(Deviation_type, Py_NewRef(dev));
    Py_XSETREF(deque_type, Py_NewRef(dq));
    Py_XSETREF(lane_label, Py_NewRef(lane));
    Py_XSETREF(bookkeeping_label, Py_NewRef(book));
    Py_XSETREF(task_types, Py_NewRef(tasks));
    Py_XSETREF(absent, Py_NewRef(abs));
    fairness_bound = bound;
    Py_XSETREF(RandomChooser_type, Py_NewRef(random_type));
    Py_XSETREF(PctChooser_type, Py_NewRef(pct_type));
    Py_XSETREF(shown_task_name, Py_NewRef(shown));
    Py_XSETREF(short_names, Py_NewRef(shorts));
    Py_RETURN_NONE;
}

/* A Candidate(seq, label, handle), as tuple.__new__(Candidate, ...) makes it. */
static PyObject *
new_candidate(Py_ssize_t seq, PyObject *label, PyObject *handle)
{
    PyTypeObject *type = (PyTypeObject *)Candidate_type;
    PyObject *number = PyLong_FromSsize_t(seq);
    if (number == NULL) {
        return NULL;
    }
    PyObject *entry = type->tp_alloc(type, 3);
    if (entry == NULL) {
        Py_DECREF(number);
        return NULL;
    }
    PyTuple_SET_ITEM(entry, 0, number);
    PyTuple_SET_ITEM(entry, 1, Py_NewRef(label));
    PyTuple_SET_ITEM(entry, 2, Py_NewRef(handle));
    return entry;
}

static Py_ssize_t
seq_of(PyObject *candidate)
{
    return PyLong_AsSsize_t(PyTuple_GET_ITEM(candidate, 0));
}

/* Index of the first candidate whose arrival number is above ``seq``
 * (candidates are sorted by arrival, numbers unique): bisect_right of
 * (seq, _LAST) in the Python code. */
static Py_ssize_t
after_seq(PyObject *candidates, Py_ssize_t seq)
{
    Py_ssize_t low = 0, high = PyList_GET_SIZE(candidates);
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (seq_of(PyList_GET_ITEM(candidates, middle)) <= seq) {
            low = middle + 1;
        }
        else {
            high = middle;
        }
    }
    return low;
}

/* Whether handle._cancelled is true: 1, 0, or -1 with an error set. */
static int
is_cancelled(PyObject *handle)
{
    PyObject *flag = PyObject_GetAttr(handle, s_cancelled);
    if (flag == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(flag);
    Py_DECREF(flag);
    return truth;
}

static int
run_handle(PyObject *handle)
{
    PyObject *result = PyObject_CallMethodNoArgs(handle, s_run);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static int
set_ssize(PyObject *loop, PyObject *name, Py_ssize_t value)
{
    PyObject *number = PyLong_FromSsize_t(value);
    if (number == NULL) {
        return -1;
    }
    int status = PyObject_SetAttr(loop, name, number);
    Py_DECREF(number);
    return status;
}

static int
get_ssize(PyObject *loop, PyObject *name, Py_ssize_t *value)
{
    PyObject *number = PyObject_GetAttr(loop, name);
    if (number == NULL) {
        return -1;
    }
    *value = PyLong_AsSsize_t(number);
    Py_DECREF(number);
    return (*value == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* counts[key] = counts.get(key, 0) + 1; the new count, or -1 with an
 * error set. */
static Py_ssize_t
count_up(PyObject *counts, PyObject *key)
{
    PyObject *known = PyDict_GetItemWithError(counts, key); /* borrowed */
    Py_ssize_t count = 0;
    if (known != NULL) {
        count = PyLong_AsSsize_t(known);
        if (count == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    else if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *next = PyLong_FromSsize_t(++count);
    if (next == NULL) {
        return -1;
    }
    int status = PyDict_SetItem(counts, key, next);
    Py_DECREF(next);
    return status < 0 ? -1 : count;
}

/* Whether ``name`` (a str) is one asyncio gives a task that was not named:
 * "Task-" and decimal digits, "None" (3.13's eager factory) or empty;
 * -1 with an error set.  As task_table.shown_task_name tells them apart. */
static int
is_default_task_name(PyObject *name)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(name) < 0) {
        return -1;
    }
#endif
    Py_ssize_t length = PyUnicode_GET_LENGTH(name);
    if (length == 0) {
        return 1;
    }
    int equal = PyUnicode_Compare(name, s_none_name);
    if (equal == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (equal == 0) {
        return 1;
    }
    if (length <= 5) {
        return 0;
    }
    Py_ssize_t prefixed = PyUnicode_Tailmatch(name, s_task_prefix, 0, 5, -1);
    if (prefixed <= 0) {
        return (int)prefixed; /* 0, or -1 with an error set */
    }
    int kind = PyUnicode_KIND(name);
    const void *data = PyUnicode_DATA(name);
    for (Py_ssize_t i = 5; i < length; i++) {
        if (!Py_UNICODE_ISDECIMAL(PyUnicode_READ(kind, data, i))) {
            return 0;
        }
    }
    return 1;
}

/* The name a label shows for ``task``: shown_task_name(task.get_name(),
 * the qualified name of its coroutine).  A new reference, or NULL. */
static PyObject *
shown_name(PyObject *task)
{
    PyObject *name = PyObject_CallMethodNoArgs(task, s_get_name);
    if (name == NULL) {
        return NULL;
    }
    int unnamed = is_default_task_name(name);
    if (unnamed <= 0) {
        /* Its own name (or an error). */
        if (unnamed < 0) {
            Py_CLEAR(name);
        }
        return name;
    }
    /* introspection.live_coro: no get_coro() on a done task (3.12.0-3.12.2
     * crash on one that finished eagerly). */
    PyObject *done = PyObject_CallMethodNoArgs(task, s_done);
    if (done == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    int finished = PyObject_IsTrue(done);
    Py_DECREF(done);
    PyObject *coro = finished < 0   ? NULL
                     : finished > 0 ? Py_NewRef(Py_None)
                                    : PyObject_CallMethodNoArgs(task, s_get_coro);
    if (coro == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    /* getattr(coro, "__qualname__", None) or type(coro).__name__ */
    PyObject *qualname = PyObject_GetAttr(coro, s_qualname);
    int usable = 0;
    if (qualname == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            Py_DECREF(coro);
            Py_DECREF(name);
            return NULL;
        }
        PyErr_Clear();
    }
    else if ((usable = PyObject_IsTrue(qualname)) < 0) {
        Py_DECREF(qualname);
        Py_DECREF(coro);
        Py_DECREF(name);
        return NULL;
    }
    if (!usable) {
        Py_XDECREF(qualname);
        qualname = PyObject_GetAttr((PyObject *)Py_TYPE(coro), s_name);
    }
    Py_DECREF(coro);
    if (qualname == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    /* The short name, if this coroutine's is known; else the Python
     * function, which works it out and keeps it. */
    PyObject *shown = PyUnicode_Check(qualname) ? PyDict_GetItemWithError(short_names, qualname)
                                                : NULL; /* borrowed */
    if (shown != NULL) {
        Py_INCREF(shown);
    }
    else if (!PyErr_Occurred()) {
        shown = PyObject_CallFunctionObjArgs(shown_task_name, name, qualname, NULL);
    }
    Py_DECREF(qualname);
    Py_DECREF(name);
    return shown;
}

/* ExploringLoop._new_task_label: the task's label (a new reference), or
 * NULL with an error set. */
static PyObject *
new_task_label(PyObject *loop, PyObject *task_labels, PyObject *name_counts, PyObject *task)
{
    PyObject *name = shown_name(task);
    if (name == NULL) {
        return NULL;
    }
    Py_ssize_t count = count_up(name_counts, name);
    if (count < 0) {
        Py_DECREF(name);
        return NULL;
    }
    PyObject *label = PyUnicode_FromFormat("%S-%zd", name, count);
    Py_DECREF(name);
    if (label == NULL) {
        return NULL;
    }
    PyObject *key = PyLong_FromVoidPtr(task);
    if (key == NULL) {
        Py_DECREF(label);
        return NULL;
    }
    int present = PyDict_Contains(task_labels, key);
    if (present < 0) {
        goto failed;
    }
    if (present) {
        /* A dead task's entry under a reused id(): removed, so that the new
         * entry comes last in label order. */
        if (PyDict_DelItem(task_labels, key) < 0) {
            goto failed;
        }
    }
    else {
        Py_ssize_t prune_at;
        if (get_ssize(loop, s_prune_labels_at, &prune_at) < 0) {
            goto failed;
        }
        if (PyDict_GET_SIZE(task_labels) >= prune_at) {
            PyObject *pruned = PyObject_CallMethodNoArgs(loop, s_prune_task_labels);
            if (pruned == NULL) {
                goto failed;
            }
            Py_DECREF(pruned);
        }
    }
    PyObject *held = PyWeakref_NewRef(task, NULL);
    if (held == NULL) {
        goto failed;
    }
    PyObject *entry = PyTuple_Pack(2, held, label);
    Py_DECREF(held);
    if (entry == NULL) {
        goto failed;
    }
    int status = PyDict_SetItem(task_labels, key, entry);
    Py_DECREF(entry);
    if (status < 0) {
        goto failed;
    }
    Py_CLEAR(key);
    PyObject *listener = PyObject_GetAttr(loop, s_on_label);
    if (listener == NULL) {
        goto failed;
    }
    if (listener != Py_None) {
        PyObject *told = PyObject_CallFunctionObjArgs(listener, task, label, NULL);
        if (told == NULL) {
            Py_DECREF(listener);
            goto failed;
        }
        Py_DECREF(told);
    }
    Py_DECREF(listener);
    return label;

failed:
    Py_XDECREF(key);
    Py_DECREF(label);
    return NULL;
}

/* Whether the weak reference ``held`` refers to ``object`` (alive). */
static int
weakref_is(PyObject *held, PyObject *object)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *referent = NULL;
    if (PyWeakref_GetRef(held, &referent) < 0) {
        PyErr_Clear(); /* not a weak reference: not a match */
        return 0;
    }
    int same = referent == object;
    Py_XDECREF(referent);
    return same;
#else
    return PyWeakref_GetObject(held) == object;
#endif
}

/* The label of an arriving handle: a new reference, or NULL. */
static PyObject *
label_of(PyObject *loop, PyObject *task_labels, PyObject *name_counts, PyObject *handle)
{
    PyObject *callback = PyObject_GetAttr(handle, s_callback);
    if (callback == NULL) {
        return NULL;
    }
    PyObject *owner = PyObject_GetAttr(callback, s_self);
    Py_DECREF(callback);
    if (owner == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    if (owner != NULL && owner != Py_None) {
        int is_task = PyObject_IsInstance(owner, task_types);
        if (is_task < 0) {
            Py_DECREF(owner);
            return NULL;
        }
        if (is_task) {
            PyObject *key = PyLong_FromVoidPtr(owner);
            if (key == NULL) {
                Py_DECREF(owner);
                return NULL;
            }
            PyObject *known = PyDict_GetItemWithError(task_labels, key); /* borrowed */
            Py_DECREF(key);
            if (known == NULL && PyErr_Occurred()) {
                Py_DECREF(owner);
                return NULL;
            }
            if (known != NULL && PyTuple_Check(known) && PyTuple_GET_SIZE(known) == 2) {
                PyObject *held = PyTuple_GET_ITEM(known, 0);
                if (PyWeakref_Check(held) && weakref_is(held, owner)) {
                    PyObject *label = Py_NewRef(PyTuple_GET_ITEM(known, 1));
                    Py_DECREF(owner);
                    return label;
                }
            }
            /* asyncio's own task types are labelled here; a subclass (its
             * get_name or done may be its own) by _new_task_label. */
            int own_type = 0;
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(task_types); i++) {
                own_type |= (PyObject *)Py_TYPE(owner) == PyTuple_GET_ITEM(task_types, i);
            }
            PyObject *label =
                own_type ? new_task_label(loop, task_labels, name_counts, owner)
                         : PyObject_CallMethodOneArg(loop, s_new_task_label, owner);
            Py_DECREF(owner);
            return label;
        }
    }
    Py_XDECREF(owner);
    return PyObject_CallMethodOneArg(loop, s_label_of, handle);
}

/* Deviation(instead_of, step, ran), its dictionary filled as the frozen
 * __init__ fills it. */
static PyObject *
new_deviation(PyObject *instead_of, PyObject *step, PyObject *ran)
{
    /* object.__new__(Deviation): object's tp_new sets up the instance's
     * dictionary storage, which a bare tp_alloc would not. */
    PyObject *made = PyBaseObject_Type.tp_new((PyTypeObject *)Deviation_type, empty_tuple, NULL);
    if (made == NULL) {
        return NULL;
    }
    PyObject *fields = PyObject_GenericGetDict(made, NULL);
    if (fields == NULL || PyDict_SetItem(fields, s_instead_of, instead_of) < 0 ||
        PyDict_SetItem(fields, s_step, step) < 0 || PyDict_SetItem(fields, s_ran, ran) < 0) {
        Py_XDECREF(fields);
        Py_DECREF(made);
        return NULL;
    }
    Py_DECREF(fields);
    return made;
}

/* RandomChooser and PctChooser (exactly those types: a subclass may change
 * them) are run here: their choose and arrive, as strategies.py writes them,
 * on the chooser's own state, so that a schedule is the same in C and in
 * Python and the chooser reads the same afterwards. */
enum { CHOOSER_PYTHON, CHOOSER_RANDOM, CHOOSER_PCT };

/* An entry of PCT's heaps: (-priority, arrival number).  Arrival numbers
 * are unique, so entries never tie and any heap pops them in the order
 * heapq pops PctChooser's tuples. */
typedef struct {
    double negative;
    Py_ssize_t seq;
} PctEntry;

/* A binary min-heap of PctEntry, by (negative, seq), or by seq alone. */
typedef struct {
    PctEntry *items;
    Py_ssize_t length, capacity;
    int by_seq;
} PctHeap;

static inline int
pct_before(const PctHeap *heap, PctEntry a, PctEntry b)
{
    if (heap->by_seq || a.negative == b.negative) {
        return a.seq < b.seq;
    }
    return a.negative < b.negative;
}

static int
pct_push(PctHeap *heap, PctEntry entry)
{
    if (heap->length == heap->capacity) {
        Py_ssize_t capacity = heap->capacity ? 2 * heap->capacity : 32;
        PctEntry *items = PyMem_Realloc(heap->items, (size_t)capacity * sizeof(PctEntry));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        heap->items = items;
        heap->capacity = capacity;
    }
    Py_ssize_t at = heap->length++;
    while (at > 0) {
        Py_ssize_t parent = (at - 1) / 2;
        if (!pct_before(heap, entry, heap->items[parent])) {
            break;
        }
        heap->items[at] = heap->items[parent];
        at = parent;
    }
    heap->items[at] = entry;
    return 0;
}

/* Removes the first entry (the heap is not empty). */
static PctEntry
pct_pop(PctHeap *heap)
{
    PctEntry first = heap->items[0];
    PctEntry last = heap->items[--heap->length];
    Py_ssize_t at = 0, length = heap->length;
    for (;;) {
        Py_ssize_t child = 2 * at + 1;
        if (child >= length) {
            break;
        }
        if (child + 1 < length && pct_before(heap, heap->items[child + 1], heap->items[child])) {
            child++;
        }
        if (!pct_before(heap, heap->items[child], last)) {
            break;
        }
        heap->items[at] = heap->items[child];
        at = child;
    }
    if (length) {
        heap->items[at] = last;
    }
    return first;
}

typedef struct {
    int kind;
    /* The chooser's generator (both kinds), drawn from in C when it is a
     * _pick_c.SplitMix (generator.SplitMix is), else through its methods. */
    SplitMixObject *splitmix;
    PyObject *below;       /* random: the generator's below, when not SplitMix */
    PyObject *priority;    /* pct: label -> priority */
    /* pct: the chooser's _heap and _held_back, kept here in C for the
     * schedule (heapq on tuples was a large share of a PCT schedule:
     * docs/benchmarks-exploration.md); loaded from the chooser's lists. */
    PctHeap heap, held_back;
    /* pct: _lowered_to's change points and their priorities (depth - 1). */
    Py_ssize_t points;
    Py_ssize_t *point_at;
    PyObject **point_value;
    PyObject *draw;        /* pct: the generator's random, when not SplitMix */
    double depth_plus_one;
} Native;

static void
native_clear(Native *native)
{
    Py_CLEAR(native->splitmix);
    Py_CLEAR(native->below);
    Py_CLEAR(native->priority);
    Py_CLEAR(native->draw);
    PyMem_Free(native->heap.items);
    PyMem_Free(native->held_back.items);
    native->heap.items = native->held_back.items = NULL;
    native->heap.length = native->held_back.length = 0;
    native->heap.capacity = native->held_back.capacity = 0;
    for (Py_ssize_t i = 0; i < native->points; i++) {
        Py_CLEAR(native->point_value[i]);
    }
    PyMem_Free(native->point_at);
    PyMem_Free(native->point_value);
    native->point_at = NULL;
    native->point_value = NULL;
    native->points = 0;
}

/* Pushes the entries of a heap list of 2-tuples onto ``heap``: (-priority,
 * seq), or (seq, -priority) when ``seq_first``. */
static int
pct_load(PctHeap *heap, PyObject *list, int seq_first)
{
    if (!PyList_CheckExact(list)) {
        PyErr_SetString(PyExc_TypeError, "PctChooser's heaps are lists");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        /* Held: the conversions below may call into Python. */
        PyObject *item = Py_NewRef(PyList_GET_ITEM(list, i));
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            Py_DECREF(item);
            PyErr_SetString(PyExc_TypeError, "PctChooser's heap entries are pairs");
            return -1;
        }
        PctEntry entry;
        entry.negative = PyFloat_AsDouble(PyTuple_GET_ITEM(item, seq_first ? 1 : 0));
        entry.seq = PyErr_Occurred() ? -1 : PyLong_AsSsize_t(PyTuple_GET_ITEM(item, seq_first ? 0 : 1));
        Py_DECREF(item);
        if (PyErr_Occurred() || pct_push(heap, entry) < 0) {
            return -1;
        }
    }
    return 0;
}

/* _lowered_to (change point -> priority) as two arrays. */
static int
pct_load_points(Native *native, PyObject *lowered_to)
{
    if (!PyDict_CheckExact(lowered_to)) {
        PyErr_SetString(PyExc_TypeError, "PctChooser's _lowered_to is a dict");
        return -1;
    }
    Py_ssize_t count = PyDict_GET_SIZE(lowered_to);
    native->point_at = PyMem_Calloc((size_t)(count ? count : 1), sizeof(Py_ssize_t));
    native->point_value = PyMem_Calloc((size_t)(count ? count : 1), sizeof(PyObject *));
    if (native->point_at == NULL || native->point_value == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(lowered_to, &position, &key, &value)) {
        Py_ssize_t at = PyLong_AsSsize_t(key);
        if (at == -1 && PyErr_Occurred()) {
            return -1;
        }
        native->point_at[native->points] = at;
        native->point_value[native->points] = Py_NewRef(value);
        native->points++;
    }
    return 0;
}

/* The chooser's _random: kept as SplitMix, or its method ``name``. */
static int
native_generator(Native *native, PyObject *chooser, PyObject *name, PyObject **method)
{
    PyObject *generator = PyObject_GetAttr(chooser, s_random);
    if (generator == NULL) {
        return -1;
    }
    if (Py_IS_TYPE(generator, &SplitMix_Type)) {
        native->splitmix = (SplitMixObject *)generator;
        return 0;
    }
    *method = PyObject_GetAttr(generator, name);
    Py_DECREF(generator);
    return *method == NULL ? -1 : 0;
}

static int
native_init(Native *native, PyObject *chooser)
{
    memset(native, 0, sizeof(*native));
    if ((PyObject *)Py_TYPE(chooser) == RandomChooser_type) {
        native->kind = CHOOSER_RANDOM;
        return native_generator(native, chooser, s_below, &native->below);
    }
    if ((PyObject *)Py_TYPE(chooser) == PctChooser_type) {
        native->kind = CHOOSER_PCT;
        native->held_back.by_seq = 1;
        PyObject *depth = NULL, *heap = NULL, *held_back = NULL, *lowered_to = NULL;
        int status = -1;
        if ((native->priority = PyObject_GetAttr(chooser, s_priority)) != NULL &&
            (heap = PyObject_GetAttr(chooser, s_heap)) != NULL &&
            (held_back = PyObject_GetAttr(chooser, s_held_back)) != NULL &&
            (lowered_to = PyObject_GetAttr(chooser, s_lowered_to)) != NULL &&
            native_generator(native, chooser, s_random_method, &native->draw) == 0 &&
            (depth = PyObject_GetAttr(chooser, s_depth)) != NULL) {
            double depth_value = PyFloat_AsDouble(depth);
            native->depth_plus_one = depth_value + 1.0;
            if (depth_value == -1.0 && PyErr_Occurred()) {
                /* status stays -1 */
            }
            else if (!PyDict_CheckExact(native->priority)) {
                PyErr_SetString(PyExc_TypeError, "PctChooser's _priority is a dict");
            }
            else if (pct_load(&native->heap, heap, 0) == 0 &&
                     pct_load(&native->held_back, held_back, 1) == 0 &&
                     pct_load_points(native, lowered_to) == 0) {
                status = 0;
            }
        }
        Py_XDECREF(depth);
        Py_XDECREF(heap);
        Py_XDECREF(held_back);
        Py_XDECREF(lowered_to);
        return status;
    }
    native->kind = CHOOSER_PYTHON;
    return 0;
}

/* What run_chosen needs of one schedule, gathered at its first call and
 * kept on the loop (ExploringLoop._pick_state, which begin_schedule and
 * end_schedule reset to None): the pool's containers, the chooser's methods
 * and state, and the counters only this function moves.  Reading them from
 * the loop and the chooser at every call cost more than the picks of a
 * short iteration (docs/benchmarks-exploration.md). */
typedef struct {
    PyObject_HEAD
    PyObject *chooser;
    PyObject *candidates, *queued, *task_labels, *name_counts, *steps, *picks, *deviations, *ready,
        *popleft;
    PyObject *choose;
    PyObject *arrive; /* NULL: the chooser is not told of arrivals */
    Native native;
    Py_ssize_t choices, passed_over, starving, arrivals;
    Py_ssize_t lane_seq; /* -1: the lane has no candidate (arrival numbers are >= 0) */
    int pct_arrivals;    /* PctChooser, told of arrivals: pct_arrive, in C */
} PickState;

static int
PickState_traverse(PickState *self, visitproc visit, void *arg)
{
    Py_VISIT(self->chooser);
    Py_VISIT(self->candidates);
    Py_VISIT(self->queued);
    Py_VISIT(self->task_labels);
    Py_VISIT(self->name_counts);
    Py_VISIT(self->steps);
    Py_VISIT(self->picks);
    Py_VISIT(self->deviations);
    Py_VISIT(self->ready);
    Py_VISIT(self->popleft);
    Py_VISIT(self->choose);
    Py_VISIT(self->arrive);
    Py_VISIT(self->native.splitmix);
    Py_VISIT(self->native.below);
    Py_VISIT(self->native.priority);
    for (Py_ssize_t i = 0; i < self->native.points; i++) {
        Py_VISIT(self->native.point_value[i]);
    }
    Py_VISIT(self->native.draw);
    return 0;
}

static int
PickState_clear(PickState *self)
{
    Py_CLEAR(self->chooser);
    Py_CLEAR(self->candidates);
    Py_CLEAR(self->queued);
    Py_CLEAR(self->task_labels);
    Py_CLEAR(self->name_counts);
    Py_CLEAR(self->steps);
    Py_CLEAR(self->picks);
    Py_CLEAR(self->deviations);
    Py_CLEAR(self->ready);
    Py_CLEAR(self->popleft);
    Py_CLEAR(self->choose);
    Py_CLEAR(self->arrive);
    native_clear(&self->native);
    return 0;
}

static void
PickState_dealloc(PickState *self)
{
    PyObject_GC_UnTrack(self);
    PickState_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject PickState_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pytest_asyncspec.exploration._pick_c.PickState",
    .tp_doc = "run_chosen's state for one schedule (internal).",
    .tp_basicsize = sizeof(PickState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)PickState_traverse,
    .tp_clear = (inquiry)PickState_clear,
    .tp_dealloc = (destructor)PickState_dealloc,
};

/* The schedule's state, made at the first call for ``chooser`` (a new
 * reference), or NULL with an error set. */
static PickState *
pick_state(PyObject *loop, PyObject *chooser)
{
    PyObject *kept = PyObject_GetAttr(loop, s_pick_state);
    if (kept == NULL) {
        return NULL;
    }
    if (Py_IS_TYPE(kept, &PickState_Type) && ((PickState *)kept)->chooser == chooser) {
        return (PickState *)kept;
    }
    Py_DECREF(kept);
    PickState *state = PyObject_GC_New(PickState, &PickState_Type);
    if (state == NULL) {
        return NULL;
    }
    memset((char *)state + sizeof(PyObject), 0, sizeof(PickState) - sizeof(PyObject));
    PyObject_GC_Track(state);
    state->chooser = Py_NewRef(chooser);
    state->lane_seq = -1;
    if (native_init(&state->native, chooser) < 0 ||
        (state->candidates = PyObject_GetAttr(loop, s_candidates)) == NULL ||
        (state->queued = PyObject_GetAttr(loop, s_queued)) == NULL ||
        (state->task_labels = PyObject_GetAttr(loop, s_task_labels)) == NULL ||
        (state->name_counts = PyObject_GetAttr(loop, s_name_counts)) == NULL ||
        (state->steps = PyObject_GetAttr(loop, s_steps)) == NULL ||
        (state->picks = PyObject_GetAttr(loop, s_picks)) == NULL ||
        (state->deviations = PyObject_GetAttr(loop, s_deviations)) == NULL ||
        (state->ready = PyObject_GetAttr(loop, s_ready)) == NULL ||
        (state->popleft = PyObject_GetAttr(state->ready, s_popleft)) == NULL ||
        (state->choose = PyObject_GetAttr(chooser, s_choose)) == NULL) {
        goto failed;
    }
    if (!PyList_CheckExact(state->candidates) || !PyDict_CheckExact(state->queued) ||
        !PyDict_CheckExact(state->task_labels) || !PyDict_CheckExact(state->name_counts) ||
        !PyDict_CheckExact(state->steps) ||
        !PyList_CheckExact(state->picks) || !PyList_CheckExact(state->deviations)) {
        PyErr_SetString(PyExc_TypeError, "the exploring loop's pool is not what run_chosen expects");
        goto failed;
    }
    {
        /* A chooser that says it ignores arrivals is not told of them. */
        PyObject *ignores = PyObject_GetAttr(chooser, s_ignores_arrivals);
        int skip = 0;
        if (ignores == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                goto failed;
            }
            PyErr_Clear();
        }
        else {
            skip = PyObject_IsTrue(ignores);
            Py_DECREF(ignores);
            if (skip < 0) {
                goto failed;
            }
        }
        /* RandomChooser ignores arrivals; PctChooser's arrive is pct_arrive. */
        state->pct_arrivals = !skip && state->native.kind == CHOOSER_PCT;
        if (!skip && state->native.kind == CHOOSER_PYTHON &&
            (state->arrive = PyObject_GetAttr(chooser, s_arrive)) == NULL) {
            goto failed;
        }
    }
    /* The counters start where the loop's own (those of the Python pick
     * loop, reset by begin_schedule) stand. */
    PyObject *lane_seq_obj = NULL;
    if (get_ssize(loop, s_choices, &state->choices) < 0 ||
        get_ssize(loop, s_passed_over, &state->passed_over) < 0 ||
        get_ssize(loop, s_starving, &state->starving) < 0 ||
        get_ssize(loop, s_arrivals, &state->arrivals) < 0 ||
        (lane_seq_obj = PyObject_GetAttr(loop, s_lane_seq)) == NULL) {
        goto failed;
    }
    if (lane_seq_obj != Py_None) {
        state->lane_seq = PyLong_AsSsize_t(lane_seq_obj);
        if (state->lane_seq == -1 && PyErr_Occurred()) {
            Py_DECREF(lane_seq_obj);
            goto failed;
        }
    }
    Py_DECREF(lane_seq_obj);
    if (PyObject_SetAttr(loop, s_pick_state, (PyObject *)state) < 0) {
        goto failed;
    }
    return state;

failed:
    Py_DECREF(state);
    return NULL;
}

/* PctChooser.arrive */
static int
pct_arrive(Native *native, PyObject *candidate)
{
    PyObject *label = PyTuple_GET_ITEM(candidate, 1);
    PyObject *value = PyDict_GetItemWithError(native->priority, label); /* borrowed */
    double priority;
    if (value == NULL) {
        if (PyErr_Occurred()) {
            return -1;
        }
        /* depth + 1 + random(), added in this order as the Python code adds. */
        if (native->splitmix != NULL) {
            priority = native->depth_plus_one + splitmix_random(native->splitmix);
        }
        else {
            PyObject *drawn = PyObject_CallNoArgs(native->draw);
            if (drawn == NULL) {
                return -1;
            }
            double unit = PyFloat_AsDouble(drawn);
            Py_DECREF(drawn);
            if (unit == -1.0 && PyErr_Occurred()) {
                return -1;
            }
            priority = native->depth_plus_one + unit;
        }
        PyObject *kept = PyFloat_FromDouble(priority);
        if (kept == NULL) {
            return -1;
        }
        int status = PyDict_SetItem(native->priority, label, kept);
        Py_DECREF(kept);
        if (status < 0) {
            return -1;
        }
    }
    else {
        /* A float, or the int a change point lowered it to. */
        priority = PyFloat_AsDouble(value);
        if (priority == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    }
    PctEntry entry = {-priority, seq_of(candidate)};
    return pct_push(&native->heap, entry);
}

/* Index of the first candidate whose arrival number is ``seq`` or above:
 * bisect_left(candidates, (seq,)) in the Python code. */
static Py_ssize_t
at_or_after_seq(PyObject *candidates, Py_ssize_t seq)
{
    Py_ssize_t low = 0, high = PyList_GET_SIZE(candidates);
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (seq_of(PyList_GET_ITEM(candidates, middle)) < seq) {
            low = middle + 1;
        }
        else {
            high = middle;
        }
    }
    return low;
}

/* PctChooser.choose; -1 with an error set on failure. */
static Py_ssize_t
pct_choose(Native *native, PyObject *candidates, Py_ssize_t eligible, Py_ssize_t pick)
{
    PctHeap *heap = &native->heap, *held_back = &native->held_back;
    Py_ssize_t last_eligible = seq_of(PyList_GET_ITEM(candidates, eligible - 1));
    while (held_back->length && held_back->items[0].seq <= last_eligible) {
        if (pct_push(heap, pct_pop(held_back)) < 0) {
            return -1;
        }
    }
    Py_ssize_t index;
    for (;;) {
        if (heap->length == 0) {
            PyErr_SetString(PyExc_IndexError, "list index out of range");
            return -1;
        }
        Py_ssize_t seq = heap->items[0].seq;
        index = at_or_after_seq(candidates, seq);
        if (index == PyList_GET_SIZE(candidates) ||
            seq_of(PyList_GET_ITEM(candidates, index)) != seq) {
            pct_pop(heap); /* it ran already */
        }
        else if (seq > last_eligible) {
            if (pct_push(held_back, pct_pop(heap)) < 0) {
                return -1;
            }
        }
        else {
            break;
        }
    }
    for (Py_ssize_t i = 0; i < native->points; i++) {
        if (native->point_at[i] == pick + 1) {
            /* The step runs, then its task yields to everyone else. */
            PyObject *label = PyTuple_GET_ITEM(PyList_GET_ITEM(candidates, index), 1);
            return PyDict_SetItem(native->priority, label, native->point_value[i]) < 0 ? -1
                                                                                       : index;
        }
    }
    return index;
}

/* RandomChooser.choose: the generator's below(eligible). */
static Py_ssize_t
random_choose(Native *native, Py_ssize_t eligible)
{
    if (native->splitmix != NULL) {
        return (Py_ssize_t)splitmix_below(native->splitmix, (uint64_t)eligible);
    }
    PyObject *bound = PyLong_FromSsize_t(eligible);
    if (bound == NULL) {
        return -1;
    }
    PyObject *drawn = PyObject_CallOneArg(native->below, bound);
    Py_DECREF(bound);
    if (drawn == NULL) {
        return -1;
    }
    Py_ssize_t value = PyNumber_AsSsize_t(drawn, PyExc_IndexError);
    Py_DECREF(drawn);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value >= eligible) {
        PyErr_Format(PyExc_IndexError, "the generator's below(%zd) gave %zd", eligible, value);
        return -1;
    }
    return value;
}

static PyObject *
run_chosen(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "run_chosen(loop, chooser)");
        return NULL;
    }
    if (Candidate_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_pick_c.configure() was not called");
        return NULL;
    }
    PyObject *loop = args[0], *chooser = args[1];
    PyObject *handle = NULL, *label = NULL, *entry = NULL, *oldest = NULL;
    PyObject *result = NULL;
    Py_ssize_t held = 0;
    PickState *state = pick_state(loop, chooser);
    if (state == NULL) {
        return NULL;
    }
    /* Borrowed from the state, which this call holds. */
    PyObject *candidates = state->candidates, *queued = state->queued,
             *task_labels = state->task_labels, *steps = state->steps, *picks = state->picks,
             *deviations = state->deviations, *ready = state->ready, *popleft = state->popleft,
             *choose = state->choose, *arrive = state->arrive;
    Native *native = &state->native;
    /* Read and written by this function alone: kept in locals, and stored
     * back into the state however the loop below ends. */
    Py_ssize_t choices = state->choices, passed_over = state->passed_over,
               starving = state->starving, arrivals = state->arrivals,
               lane_seq = state->lane_seq;
    if (get_ssize(loop, s_held, &held) < 0) {
        goto done;
    }

    Py_ssize_t left = -1; /* picks left in this iteration, counted after the first arrivals */
    for (;;) {
        /* Newly ready callbacks join the pool. */
        for (;;) {
            Py_ssize_t waiting_now = PyObject_Length(ready);
            if (waiting_now < 0) {
                goto done;
            }
            if (waiting_now == 0) {
                break;
            }
            if ((handle = PyObject_CallNoArgs(popleft)) == NULL) {
                goto done;
            }
            if ((label = label_of(loop, task_labels, state->name_counts, handle)) == NULL) {
                goto done;
            }
            if (label == bookkeeping_label) {
                int cancelled = is_cancelled(handle);
                if (cancelled < 0 || (!cancelled && run_handle(handle) < 0)) {
                    goto done;
                }
                Py_CLEAR(label);
                Py_CLEAR(handle);
                continue;
            }
            Py_ssize_t seq = arrivals++;
            held++;
            if (set_ssize(loop, s_held, held) < 0) {
                goto done;
            }
            if ((entry = new_candidate(seq, label, handle)) == NULL) {
                goto done;
            }
            Py_CLEAR(handle);
            PyObject *waiting = PyDict_GetItemWithError(queued, label); /* borrowed */
            if (waiting == NULL) {
                if (PyErr_Occurred()) {
                    goto done;
                }
                /* Arrivals are the newest: appending keeps the pool sorted.  No
                 * queue until a second callback of the label waits. */
                if (PyList_Append(candidates, entry) < 0 ||
                    PyDict_SetItem(queued, label, Py_None) < 0) {
                    goto done;
                }
                int is_lane = PyObject_RichCompareBool(label, lane_label, Py_EQ);
                if (is_lane < 0) {
                    goto done;
                }
                if (is_lane) {
                    lane_seq = seq;
                }
                if (state->pct_arrivals) {
                    if (pct_arrive(native, entry) < 0) {
                        goto done;
                    }
                }
                else if (arrive != NULL) {
                    PyObject *told = PyObject_CallOneArg(arrive, entry);
                    if (told == NULL) {
                        goto done;
                    }
                    Py_DECREF(told);
                }
            }
            else if (waiting == Py_None) {
                PyObject *items = PyTuple_Pack(1, entry);
                if (items == NULL) {
                    goto done;
                }
                PyObject *queue = PyObject_CallOneArg(deque_type, items);
                Py_DECREF(items);
                if (queue == NULL) {
                    goto done;
                }
                int status = PyDict_SetItem(queued, label, queue);
                Py_DECREF(queue);
                if (status < 0) {
                    goto done;
                }
            }
            else {
                Py_INCREF(waiting);
                PyObject *added = PyObject_CallMethodOneArg(waiting, s_append, entry);
                Py_DECREF(waiting);
                if (added == NULL) {
                    goto done;
                }
                Py_DECREF(added);
            }
            Py_CLEAR(entry);
            Py_CLEAR(label);
        }
        if (left < 0) {
            /* As many picks as the pool holds when the iteration begins. */
            left = held;
        }
        Py_ssize_t pooled = PyList_GET_SIZE(candidates);
        if (!left || !pooled) {
            break;
        }
        left--;
        /* Nothing overtakes a loop callback that was ready before it:
         * candidates up to the lane's are eligible. */
        Py_ssize_t eligible = lane_seq < 0 ? pooled : after_seq(candidates, lane_seq);
        if (PyErr_Occurred()) {
            goto done;
        }
        Py_ssize_t index = 0;
        if (passed_over < fairness_bound && native->kind != CHOOSER_PYTHON) {
            index = native->kind == CHOOSER_RANDOM
                        ? random_choose(native, eligible)
                        : pct_choose(native, candidates, eligible, choices);
            if (index == -1) {
                goto done;
            }
            choices++;
        }
        else if (passed_over < fairness_bound) {
            PyObject *call_args[4];
            PyObject *eligible_obj = PyLong_FromSsize_t(eligible);
            PyObject *pick_obj = PyLong_FromSsize_t(choices);
            if (eligible_obj == NULL || pick_obj == NULL) {
                Py_XDECREF(eligible_obj);
                Py_XDECREF(pick_obj);
                goto done;
            }
            call_args[0] = candidates;
            call_args[1] = eligible_obj;
            call_args[2] = pick_obj;
            call_args[3] = steps;
            PyObject *chosen = PyObject_Vectorcall(choose, call_args, 4, NULL);
            Py_DECREF(eligible_obj);
            Py_DECREF(pick_obj);
            if (chosen == NULL) {
                goto done;
            }
            index = PyNumber_AsSsize_t(chosen, PyExc_IndexError);
            Py_DECREF(chosen);
            if (index == -1 && PyErr_Occurred()) {
                goto done;
            }
            choices++;
        }
        /* The chooser may have changed the pool (it should not): look again. */
        pooled = PyList_GET_SIZE(candidates);
        if (pooled == 0) {
            PyErr_SetString(PyExc_IndexError, "pop from empty list");
            goto done;
        }
        Py_ssize_t at = index < 0 ? index + pooled : index;
        if (at < 0 || at >= pooled) {
            PyErr_SetString(PyExc_IndexError, "pop index out of range");
            goto done;
        }
        oldest = Py_NewRef(PyList_GET_ITEM(candidates, 0));
        if (index) {
            Py_ssize_t oldest_seq = seq_of(oldest);
            if (oldest_seq != starving) {
                starving = oldest_seq;
                passed_over = 0;
            }
            passed_over++;
        }
        else {
            passed_over = 0;
        }
        entry = Py_NewRef(PyList_GET_ITEM(candidates, at));
        if (PySequence_DelItem(candidates, at) < 0) {
            goto done;
        }
        held--;
        if (set_ssize(loop, s_held, held) < 0) {
            goto done;
        }
        label = Py_NewRef(PyTuple_GET_ITEM(entry, 1));
        /* Before the borrowed look-up below: comparing may run Python code. */
        int is_lane = PyObject_RichCompareBool(label, lane_label, Py_EQ);
        if (is_lane < 0) {
            goto done;
        }
        PyObject *waiting = PyDict_GetItemWithError(queued, label); /* borrowed */
        if (waiting == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetObject(PyExc_KeyError, label);
            }
            goto done;
        }
        int has_successor = 0;
        if (waiting != Py_None && (has_successor = PyObject_IsTrue(waiting)) < 0) {
            goto done;
        }
        if (has_successor) {
            Py_INCREF(waiting);
            PyObject *successor = PyObject_CallMethodNoArgs(waiting, s_popleft);
            Py_DECREF(waiting);
            if (successor == NULL) {
                goto done;
            }
            Py_ssize_t successor_seq = seq_of(successor);
            if (PyList_Insert(candidates, after_seq(candidates, successor_seq), successor) < 0) {
                Py_DECREF(successor);
                goto done;
            }
            if (is_lane) {
                lane_seq = successor_seq;
            }
            if (state->pct_arrivals) {
                if (pct_arrive(native, successor) < 0) {
                    Py_DECREF(successor);
                    goto done;
                }
            }
            else if (arrive != NULL) {
                PyObject *told = PyObject_CallOneArg(arrive, successor);
                if (told == NULL) {
                    Py_DECREF(successor);
                    goto done;
                }
                Py_DECREF(told);
            }
            Py_DECREF(successor);
        }
        else {
            if (PyDict_DelItem(queued, label) < 0) {
                goto done;
            }
            if (is_lane) {
                lane_seq = -1;
            }
        }
        handle = Py_NewRef(PyTuple_GET_ITEM(entry, 2));
        if (index) {
            /* Recorded even when the pick is a cancelled callback: taking it
             * out of the pool early moves its lane on, which a replay must do
             * at the same moment. */
            PyObject *oldest_label = PyTuple_GET_ITEM(oldest, 1);
            PyObject *step = PyDict_GetItemWithError(steps, oldest_label);
            if (step == NULL && PyErr_Occurred()) {
                goto done;
            }
            /* Held across new_deviation, which allocates (a collection may
             * run finalizers). */
            step = step == NULL ? PyLong_FromLong(0) : Py_NewRef(step);
            if (step == NULL) {
                goto done;
            }
            PyObject *deviation = new_deviation(oldest_label, step, label);
            Py_DECREF(step);
            if (deviation == NULL) {
                goto done;
            }
            int status = PyList_Append(deviations, deviation);
            Py_DECREF(deviation);
            if (status < 0) {
                goto done;
            }
            PyObject *listener = PyObject_GetAttr(loop, s_on_deviation);
            if (listener == NULL) {
                goto done;
            }
            if (listener != Py_None) {
                int cancelled = is_cancelled(handle);
                if (cancelled < 0) {
                    Py_DECREF(listener);
                    goto done;
                }
                if (!cancelled) {
                    PyObject *told = PyObject_CallFunctionObjArgs(listener, oldest, entry, NULL);
                    if (told == NULL) {
                        Py_DECREF(listener);
                        goto done;
                    }
                    Py_DECREF(told);
                }
            }
            Py_DECREF(listener);
        }
        Py_CLEAR(oldest);
        Py_CLEAR(entry);
        int cancelled = is_cancelled(handle);
        if (cancelled < 0) {
            goto done;
        }
        if (!cancelled) {
            if (PyList_Append(picks, label) < 0) {
                goto done;
            }
            if (count_up(steps, label) < 0) {
                goto done;
            }
            Py_CLEAR(label);
            /* No reference to the handle survives its run (see
             * VirtualClockLoop._run_ready: a failed task must not be kept
             * alive by the loop). */
            PyObject *running = handle;
            handle = NULL;
            int ran = run_handle(running);
            Py_DECREF(running);
            if (ran < 0) {
                goto done;
            }
        }
        else {
            Py_CLEAR(label);
            Py_CLEAR(handle);
        }
    }
    result = Py_NewRef(Py_None);

done:
    Py_XDECREF(handle);
    Py_XDECREF(label);
    Py_XDECREF(entry);
    Py_XDECREF(oldest);
    state->choices = choices;
    state->passed_over = passed_over;
    state->starving = starving;
    state->arrivals = arrivals;
    state->lane_seq = lane_seq;
    Py_DECREF(state);
    return result;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(Candidate, Deviation, deque, LANE, BOOKKEEPING, task_types, absent, "
     "fairness_bound, RandomChooser, PctChooser, shown_task_name, short names): the exploring "
     "loop's types and constants."},
    {"run_chosen", (PyCFunction)(void (*)(void))run_chosen, METH_FASTCALL,
     "run_chosen(loop, chooser): one iteration's picks (see ExploringLoop._run_ready_chosen_py)."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pytest_asyncspec.exploration._pick_c",
    .m_doc = "The exploring loop's pick loop in C (see exploring_loop.py for the contract).",
    .m_size = -1,
    .m_methods = module_methods,
};

#define INTERN(var, text)                                                                      \
    if ((var = PyUnicode_InternFromString(text)) == NULL) {                                    \
        return NULL;                                                                           \
    }

PyMODINIT_FUNC
PyInit__pick_c(void)
{
    INTERN(s_callback, "_callback");
    INTERN(s_self, "__self__");
    INTERN(s_cancelled, "_cancelled");
    INTERN(s_run, "_run");
    INTERN(s_new_task_label, "_new_task_label");
    INTERN(s_label_of, "_label_of");
    INTERN(s_choose, "choose");
    INTERN(s_arrive, "arrive");
    INTERN(s_ignores_arrivals, "ignores_arrivals");
    INTERN(s_on_deviation, "on_deviation");
    INTERN(s_popleft, "popleft");
    INTERN(s_append, "append");
    INTERN(s_candidates, "_candidates");
    INTERN(s_queued, "_queued");
    INTERN(s_task_labels, "_task_labels");
    INTERN(s_steps, "_steps");
    INTERN(s_picks, "picks");
    INTERN(s_deviations, "deviations");
    INTERN(s_ready, "_ready");
    INTERN(s_choices, "_choices");
    INTERN(s_passed_over, "_passed_over");
    INTERN(s_starving, "_starving");
    INTERN(s_lane_seq, "_lane_seq");
    INTERN(s_arrivals, "_arrivals");
    INTERN(s_held, "_held");
    INTERN(s_instead_of, "instead_of");
    INTERN(s_step, "step");
    INTERN(s_ran, "ran");
    INTERN(s_below, "below");
    INTERN(s_priority, "_priority");
    INTERN(s_heap, "_heap");
    INTERN(s_held_back, "_held_back");
    INTERN(s_lowered_to, "_lowered_to");
    INTERN(s_random, "_random");
    INTERN(s_random_method, "random");
    INTERN(s_depth, "depth");
    INTERN(s_pick_state, "_pick_state");
    INTERN(s_name_counts, "_name_counts");
    INTERN(s_get_name, "get_name");
    INTERN(s_done, "done");
    INTERN(s_get_coro, "get_coro");
    INTERN(s_qualname, "__qualname__");
    INTERN(s_name, "__name__");
    INTERN(s_prune_labels_at, "_prune_labels_at");
    INTERN(s_prune_task_labels, "_prune_task_labels");
    INTERN(s_on_label, "on_label");
    INTERN(s_none_name, "None");
    INTERN(s_task_prefix, "Task-");
    if ((empty_tuple = PyTuple_New(0)) == NULL) {
        return NULL;
    }
    if (PyType_Ready(&SplitMix_Type) < 0 || PyType_Ready(&PickState_Type) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObject(module, "SplitMix", Py_NewRef((PyObject *)&SplitMix_Type)) < 0) {
        Py_DECREF(&SplitMix_Type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
