/* Calls into quickjs-ng without the binding's per-call work.
 *
 * The binding's `Object.__call__` builds a tuple, checks each argument's type twice, allocates the
 * engine's argument array and converts the result through `Py_BuildValue`: about 1,600
 * instructions a call, on each session's open, each message and each close, and the wire's direct
 * entry for messages goes through it too. `Function` calls the same JavaScript function with the
 * same conversions and the same bookkeeping (the GIL released during the call, as the binding's own
 * callbacks into Python expect; the engine told where the C stack is), through vectorcall.
 *
 * It needs the engine's C API, which the binding's shared object exports, and two of the binding's
 * structures (its Context and Object), declared below as quickjs-ng 0.17 has them. `Function()`
 * checks them against the engine before it is made (the runtime's opaque pointer is the Context,
 * the context belongs to that runtime, the value is a function, no binding time limit is set) and
 * raises ValueError when anything does not match: the caller then keeps the binding's object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#if INTPTR_MAX < INT64_MAX
#error "32-bit builds of the engine NaN-box their values; the binding's own calls are used there"
#endif

/* -- the engine's values and the calls used, as quickjs.h declares them on 64-bit builds ----- */

typedef struct JSRuntime JSRuntime;
typedef struct JSContext JSContext;
typedef union {
    int32_t int32;
    double float64;
    void *ptr;
    int32_t short_big_int;
} JSValueUnion;
typedef struct {
    JSValueUnion u;
    int64_t tag;
} JSValue;

enum { TAG_BIG_INT = -9, TAG_SYMBOL = -8, TAG_STRING = -7, TAG_STRING_ROPE = -6, TAG_MODULE = -3, TAG_OBJECT = -1, TAG_INT = 0,
       TAG_BOOL = 1, TAG_NULL = 2, TAG_UNDEFINED = 3, TAG_EXCEPTION = 6, TAG_FLOAT64 = 8 };

static JSValue make_value(int64_t tag, int32_t value) {
    JSValue v;
    v.u.int32 = value;
    v.tag = tag;
    return v;
}

static JSValue make_float(double value) {
    JSValue v;
    v.u.float64 = value;
    v.tag = TAG_FLOAT64;
    return v;
}

static struct {
    JSValue (*call)(JSContext *, JSValue, JSValue, int, JSValue *);
    JSValue (*new_string)(JSContext *, const char *, size_t);
    JSValue (*dup_value)(JSContext *, JSValue);
    void (*free_value)(JSContext *, JSValue);
    void (*update_stack_top)(JSRuntime *);
    JSRuntime *(*runtime_of)(JSContext *);
    void *(*runtime_opaque)(JSRuntime *);
    bool (*is_function)(JSContext *, JSValue);
    const char *(*to_cstring)(JSContext *, size_t *, JSValue, bool);
    void (*free_cstring)(JSContext *, const char *);
    JSValue (*exception)(JSContext *);
    JSValue (*property)(JSContext *, JSValue, const char *);
} engine;

/* -- the binding's structures (its module.c) ------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    JSRuntime *runtime;
    JSContext *context;
    int has_time_limit;
    clock_t time_limit;
    PyThreadState *thread_state;  /* set while the engine runs: its callbacks into Python restore it */
} BindingContext;

typedef struct {
    PyObject_HEAD
    BindingContext *context;
    JSValue value;
} BindingObject;

/* The binding's types and exceptions, given to load(). */
static PyObject *context_type, *object_type, *js_exception, *stack_overflow;

/* -- conversions, as the binding makes them ------------------------------------------------- */

/* A Python argument as an engine value (owned); 0, or -1 with a Python error. */
static int to_engine(BindingContext *c, PyObject *item, JSValue *out) {
    if (PyBool_Check(item)) {
        *out = make_value(TAG_BOOL, item == Py_True);
    } else if (PyLong_Check(item)) {
        int overflow;
        long value = PyLong_AsLongAndOverflow(item, &overflow);
        if (value == -1 && PyErr_Occurred()) return -1;
        if (overflow) {
            double d = PyLong_AsDouble(item);
            if (d == -1.0 && PyErr_Occurred()) return -1;
            *out = make_float(d);
        } else {
            *out = make_value(TAG_INT, (int32_t)value);
        }
    } else if (PyFloat_Check(item)) {
        *out = make_float(PyFloat_AS_DOUBLE(item));
    } else if (item == Py_None) {
        *out = make_value(TAG_NULL, 0);
    } else if (PyUnicode_Check(item)) {
        Py_ssize_t size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(item, &size);
        if (utf8 == NULL) return -1;
        *out = engine.new_string(c->context, utf8, (size_t)size);
        if (out->tag == TAG_EXCEPTION) {  /* out of the heap's memory: the engine's error is ours now */
            engine.free_value(c->context, engine.exception(c->context));
            PyErr_NoMemory();
            return -1;
        }
    } else if (Py_IS_TYPE(item, (PyTypeObject *)object_type) && ((BindingObject *)item)->context == c) {
        *out = engine.dup_value(c->context, ((BindingObject *)item)->value);
    } else {
        PyErr_Format(PyExc_TypeError, "cannot pass a %s into the engine", Py_TYPE(item)->tp_name);
        return -1;
    }
    return 0;
}

/* The engine's pending exception as the binding raises it: JSException (StackOverflow for a stack
 * overflow) with the message, a newline and the stack. */
static void raise_exception(JSContext *ctx) {
    JSValue exception = engine.exception(ctx);
    const char *text = engine.to_cstring(ctx, NULL, exception, false);
    const char *stack = NULL;
    if (exception.tag != TAG_NULL && exception.tag != TAG_UNDEFINED) {
        JSValue value = engine.property(ctx, exception, "stack");
        if (value.tag != TAG_EXCEPTION) {
            stack = engine.to_cstring(ctx, NULL, value, false);
            engine.free_value(ctx, value);
        }
    }
    if (text != NULL) {
        PyObject *type = strstr(text, "stack overflow") || strstr(text, "call stack size exceeded")
                             ? stack_overflow : js_exception;
        PyErr_Format(type, "%s\n%s", text, stack ? stack : "");
    } else {
        PyErr_SetString(js_exception, "(Failed obtaining QuickJS error string. Concurrency issue?)");
    }
    engine.free_cstring(ctx, text);
    engine.free_cstring(ctx, stack);
    engine.free_value(ctx, exception);
}

/* A result as a Python object; takes the value. */
static PyObject *to_python(BindingContext *c, JSValue value) {
    JSContext *ctx = c->context;
    PyObject *result = NULL;
    switch ((int32_t)value.tag) {
    case TAG_INT:
        return PyLong_FromLong(value.u.int32);
    case TAG_BOOL:
        return PyBool_FromLong(value.u.int32);
    case TAG_NULL:
    case TAG_UNDEFINED:
        Py_RETURN_NONE;
    case TAG_FLOAT64:
        return PyFloat_FromDouble(value.u.float64);
    case TAG_EXCEPTION:
        raise_exception(ctx);
        return NULL;
    case TAG_STRING:
    case TAG_STRING_ROPE:
    case TAG_BIG_INT: {
        const char *text = engine.to_cstring(ctx, NULL, value, false);
        if (text == NULL)
            result = Py_NewRef(Py_None);  /* as the binding's Py_BuildValue("s", NULL) */
        else
            result = value.tag != TAG_BIG_INT ? PyUnicode_FromString(text) : PyLong_FromString(text, NULL, 10);
        engine.free_cstring(ctx, text);
        break;
    }
    case TAG_OBJECT:
    case TAG_MODULE:
    case TAG_SYMBOL: {
        /* The binding's own wrapper, made as the binding makes it. */
        result = PyObject_CallNoArgs(object_type);
        if (result != NULL) {
            ((BindingObject *)result)->context = (BindingContext *)Py_NewRef(c);
            ((BindingObject *)result)->value = value;
            return result;  /* the wrapper holds the value */
        }
        break;
    }
    default:
        PyErr_Format(PyExc_TypeError, "Unknown quickjs tag: %d", (int)value.tag);
    }
    engine.free_value(ctx, value);
    return result;
}

/* -- Function ----------------------------------------------------------------------------- */

/* At most this many arguments: the server's entries take six. */
#define MAX_ARGUMENTS 8

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    /* The binding's Object: it keeps the value and its Context alive. NULL once the cyclic
     * collector cleared this Function. */
    BindingObject *function;
} Function;

static PyObject *Function_vectorcall(Function *f, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) || n > MAX_ARGUMENTS)
        return PyErr_Format(PyExc_TypeError, "a Function takes at most %d positional arguments", MAX_ARGUMENTS);
    if (f->function == NULL) return PyErr_Format(PyExc_RuntimeError, "the Function was cleared");
    BindingContext *c = f->function->context;
    if (c->thread_state != NULL)
        return PyErr_Format(PyExc_RuntimeError, "the engine is running a call already");
    JSValue argv[MAX_ARGUMENTS];
    for (Py_ssize_t i = 0; i < n; i++) {
        if (to_engine(c, args[i], &argv[i]) < 0) {
            while (i-- > 0) engine.free_value(c->context, argv[i]);
            return NULL;
        }
    }
    Py_INCREF(f);  /* a callback into Python could drop the last other reference */
    c->thread_state = PyEval_SaveThread();
    engine.update_stack_top(c->runtime);
    JSValue result = engine.call(c->context, f->function->value, make_value(TAG_NULL, 0), (int)n, argv);
    for (Py_ssize_t i = 0; i < n; i++) engine.free_value(c->context, argv[i]);
    PyEval_RestoreThread(c->thread_state);
    c->thread_state = NULL;
    PyObject *converted = to_python(c, result);
    Py_DECREF(f);
    return converted;
}

static PyObject *Function_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *context, *function;
    if (!PyArg_ParseTuple(args, "OO:Function", &context, &function)) return NULL;
    if (engine.call == NULL) return PyErr_Format(PyExc_RuntimeError, "load() the engine first");
    BindingContext *c = (BindingContext *)context;
    if (!Py_IS_TYPE(context, (PyTypeObject *)context_type) || !Py_IS_TYPE(function, (PyTypeObject *)object_type))
        return PyErr_Format(PyExc_ValueError, "a Function is made of the binding's Context and Object");
    if (((BindingObject *)function)->context != c || engine.runtime_opaque(c->runtime) != (void *)c ||
        engine.runtime_of(c->context) != c->runtime || c->has_time_limit != 0 || c->thread_state != NULL ||
        !engine.is_function(c->context, ((BindingObject *)function)->value))
        return PyErr_Format(PyExc_ValueError, "the binding's structures are not as expected (another version?)");
    Function *f = (Function *)type->tp_alloc(type, 0);
    if (f == NULL) return NULL;
    f->vectorcall = (vectorcallfunc)Function_vectorcall;
    f->function = (BindingObject *)Py_NewRef(function);
    return (PyObject *)f;
}

static int Function_traverse(Function *f, visitproc visit, void *arg) {
    Py_VISIT(f->function);
    return 0;
}

static int Function_clear(Function *f) {
    Py_CLEAR(f->function);
    return 0;
}

static void Function_dealloc(Function *f) {
    PyObject_GC_UnTrack(f);
    Function_clear(f);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyTypeObject FunctionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dieselengine.js._direct.Function",
    .tp_doc = "Function(context, function): the binding's JavaScript function, called without its per-call work.",
    .tp_basicsize = sizeof(Function),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Function, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = Function_new,
    .tp_traverse = (traverseproc)Function_traverse,
    .tp_clear = (inquiry)Function_clear,
    .tp_dealloc = (destructor)Function_dealloc,
};

/* -- load -------------------------------------------------------------------------------------- */

static PyObject *load(PyObject *module, PyObject *args) {
    const char *path;
    PyObject *types[4];
    if (!PyArg_ParseTuple(args, "sOOOO:load", &path, &types[0], &types[1], &types[2], &types[3])) return NULL;
    void *library = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (library == NULL) return PyErr_Format(PyExc_OSError, "the engine is not loaded from %s", path);
    struct { void **slot; const char *name; } symbols[] = {
        {(void **)&engine.call, "JS_Call"},
        {(void **)&engine.new_string, "JS_NewStringLen"},
        {(void **)&engine.dup_value, "JS_DupValue"},
        {(void **)&engine.free_value, "JS_FreeValue"},
        {(void **)&engine.update_stack_top, "JS_UpdateStackTop"},
        {(void **)&engine.runtime_of, "JS_GetRuntime"},
        {(void **)&engine.runtime_opaque, "JS_GetRuntimeOpaque"},
        {(void **)&engine.is_function, "JS_IsFunction"},
        {(void **)&engine.to_cstring, "JS_ToCStringLen2"},
        {(void **)&engine.free_cstring, "JS_FreeCString"},
        {(void **)&engine.exception, "JS_GetException"},
        {(void **)&engine.property, "JS_GetPropertyStr"},
    };
    void *found[sizeof symbols / sizeof symbols[0]];
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        found[i] = dlsym(library, symbols[i].name);
        if (found[i] == NULL) {
            dlclose(library);
            return PyErr_Format(PyExc_OSError, "the engine has no %s", symbols[i].name);
        }
    }
    /* The handle stays open: the binding's module keeps the library loaded anyway. */
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) *symbols[i].slot = found[i];
    Py_XSETREF(context_type, Py_NewRef(types[0]));
    Py_XSETREF(object_type, Py_NewRef(types[1]));
    Py_XSETREF(js_exception, Py_NewRef(types[2]));
    Py_XSETREF(stack_overflow, Py_NewRef(types[3]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"load", load, METH_VARARGS,
     "load(path, Context, Object, JSException, StackOverflow): the binding's shared object and types."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_direct", "Calls into quickjs-ng without the binding's per-call work.", -1, methods,
};

PyMODINIT_FUNC PyInit__direct(void) {
    if (PyType_Ready(&FunctionType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Function", (PyObject *)&FunctionType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
