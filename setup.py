"""Build hooks for the C wire: TLS (OpenSSL) and permessage-deflate (zlib) where their headers are.

The extension itself is declared in pyproject.toml. Each library is probed by compiling and linking
a few lines with the same compiler and flags, as the extension is linked (a shared object, so
$LDFLAGS count: a build with -fsanitize=address in $CFLAGS and $LDFLAGS probes like it builds); a
missing one is left out with a warning (the wire then refuses `--certfile` or negotiates no
compression, each with one clear line) instead of failing the build.
"""

from __future__ import annotations

import os
import tempfile

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: (macro, libraries, test program, what a user installs to get it on Debian/Ubuntu)
_OPTIONAL = [
    ("DIESEL_TLS", ["ssl", "crypto"],
     "#include <openssl/ssl.h>\nint main(void) { return SSL_CTX_new(TLS_server_method()) == 0; }\n",
     "libssl-dev"),
    ("DIESEL_DEFLATE", ["z"],
     "#include <zlib.h>\nint main(void) { z_stream s = {0}; return deflateInit(&s, 1); }\n",
     "zlib1g-dev"),
]


class _BuildExt(build_ext):
    def build_extensions(self) -> None:
        for ext in self.extensions:
            if ext.name.endswith("_wire"):
                for macro, libraries, program, package in _OPTIONAL:
                    if self._links(program, libraries):
                        ext.define_macros.append((macro, "1"))
                        ext.libraries.extend(libraries)
                    else:
                        self.warn(f"{macro}: headers or libraries not found (install {package}); "
                                  "the C wire is built without it")
        super().build_extensions()

    def _links(self, program: str, libraries: list[str]) -> bool:
        with tempfile.TemporaryDirectory() as folder:
            source = os.path.join(folder, "probe.c")
            with open(source, "w") as file:
                file.write(program)
            try:
                objects = self.compiler.compile([source], output_dir=folder)
                self.compiler.link_shared_object(objects, "probe.so", output_dir=folder, libraries=libraries)
            except Exception:  # CompileError, LinkError: the library is not usable here
                return False
        return True


setup(cmdclass={"build_ext": _BuildExt})
