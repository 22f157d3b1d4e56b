"""The JavaScript runtime: handler scripts as ES modules in sandboxed quickjs-ng contexts, one per script.

The sandbox is the engine itself: a quickjs-ng context has no file system, network, process or
environment API, only the language, what `prelude.js` adds (the session and room API, `console`,
timers) and the web APIs (`web/`), whose only way out is fetch() to the origins the operator
allows. Each script gets its own runtime, so a limit hit by one script (CPU time per
call, memory, stack) never touches another, and the context stays usable afterwards.

- `script.py`: one script's context, its calls and the outbox they return;
- `modules.py`: module loading, through the engine's own module loader (live bindings, cycles);
  CommonJS files as generated ES modules (`commonjs.js` runs them);
- `resolve.py`: where an import leads: helpers, npm packages (as a web-worker bundler resolves);
- `lexer.py`: the little of JavaScript's syntax the loader reads (specifiers, requires, exports);
- `webapi.py` and `web/*.js`: the web APIs (TextEncoder, URL, crypto, events, fetch's classes);
- `fetch.py`: fetch() to the allowed origins, on the event loop;
- `bytecode.py`: the server's own JavaScript compiled once per process;
- `locations.py`: error positions mapped back to the script's files;
- `counts.py`: room member counts mirrored into the contexts;
- `cpu_limit.py`: the per-call CPU-time limit, through the engine's interrupt handler;
- `prelude.js`: the JavaScript side of the session and room API.
"""

from .locations import JsError
from .script import JsScript

__all__ = ["JsError", "JsScript"]
