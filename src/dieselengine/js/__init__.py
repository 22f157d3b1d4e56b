"""The JavaScript runtime: handler scripts as ES modules in sandboxed quickjs-ng contexts, one per script.

The sandbox is the engine itself: a quickjs-ng context has no file system, network, process or
environment API, only the language and what `prelude.js` adds (the session and room API,
`console`, timers). Each script gets its own runtime, so a limit hit by one script (CPU time per
call, memory, stack) never touches another, and the context stays usable afterwards.

- `script.py`: one script's context, its calls and the outbox they return;
- `modules.py`: module loading (imports and exports rewritten before evaluation);
- `locations.py`: error positions mapped back to the script's files;
- `counts.py`: room member counts mirrored into the contexts;
- `cpu_limit.py`: the per-call CPU-time limit, through the engine's interrupt handler;
- `prelude.js`: the JavaScript side of the session and room API.
"""

from .locations import JsError
from .script import JsScript

__all__ = ["JsError", "JsScript"]
