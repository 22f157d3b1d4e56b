// CommonJS in the sandbox: each CommonJS file of a package is a generated ES module that defines
// its factory here (`define`), and runs only when first required, as in Node: a cycle between
// CommonJS files sees the partial exports of the one still running. ES modules a CommonJS file
// requires are registered as their namespaces (`esm`). A factory gets `process` with only
// `env.NODE_ENV` ("production", as bundlers inline it) and `global`; no Node built-in is there.
(function () {
  "use strict";
  const defs = new Map();   // id -> { deps: {spec: id | [error]}, factory, module }
  const namespaces = new Map();
  const process = Object.freeze({ env: Object.freeze({ NODE_ENV: "production" }), browser: true });

  function load(id) {
    if (namespaces.has(id)) return namespaces.get(id);
    const d = defs.get(id);
    if (d === undefined) throw new Error(`require: the module ${id} was not loaded`);
    if (d.module !== null) return d.module.exports;
    const module = d.module = { exports: {}, id, filename: "/" + id, loaded: false, children: [], paths: [] };
    const require = (spec) => {
      const target = d.deps[String(spec)];
      if (typeof target === "string") return load(target);
      throw new Error(target === undefined
        ? `require(${JSON.stringify(String(spec))}) in ${id}: only a require() of a string literal can be loaded (the sandbox resolves modules before it runs them)`
        : `require(${JSON.stringify(String(spec))}) in ${id}: ${target[0]}`);
    };
    require.cache = Object.create(null);
    require.resolve = (spec) => {
      const target = d.deps[String(spec)];
      if (typeof target === "string") return "/" + target;
      throw new Error(`Cannot find module '${spec}' from ${id}`);
    };
    const dir = "/" + id.slice(0, Math.max(0, id.lastIndexOf("/")));
    try {
      d.factory.call(module.exports, module.exports, require, module, "/" + id, dir, process, globalThis);
    } catch (error) {
      d.module = null;
      throw error;
    }
    module.loaded = true;
    return module.exports;
  }

  Object.defineProperty(globalThis, "__diesel_cjs__", {
    value: Object.freeze({
      define(id, deps, factory) { if (!defs.has(id)) defs.set(id, { deps, factory, module: null }); },
      esm(id, namespace) { namespaces.set(id, namespace); },
      require: load,
      // The default export of a CommonJS module to an ES module, as bundlers give it.
      interop(m) { return m !== null && (typeof m === "object" || typeof m === "function") && m.__esModule ? m.default : m; },
    }),
  });
})();
