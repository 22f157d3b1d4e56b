"""Built-in JWT authentication (--jwt-secret, --jwt-key): a token verified before the upgrade.

PyJWT with `cryptography` does the verifying; nothing here touches a signature. The token comes
from `?token=` (what a browser's WebSocket can send) or an `Authorization: Bearer` header.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .request import Request
    from .settings import Settings

HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"]


class TokenError(Exception):
    """Why a request's token was refused; the message is the 401's reason."""


class TokenSetupError(ValueError):
    """The JWT options cannot be used; the message is one line naming the option."""


class TokenVerifier:
    """Checks the signature, `exp`, `nbf` and (when configured) `aud` and `iss` of a request's token."""

    def __init__(self, key: Any, algorithms: list[str], audience: str | None, issuer: str | None) -> None:
        import jwt
        from jwt.warnings import InsecureKeyLengthWarning

        # A 32-byte secret is checked for at start; HS384/512 tokens made with it still verify.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)

        self._jwt = jwt
        self._key = key
        self._algorithms = algorithms
        self._audience = audience
        self._issuer = issuer
        self._options = {"verify_aud": audience is not None}

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier | None:
        """None when no JWT option is set; TokenSetupError when they cannot be used."""
        if settings.jwt_secret is None and settings.jwt_key is None:
            if settings.jwt_audience is not None or settings.jwt_issuer is not None:
                raise TokenSetupError("--jwt-audience and --jwt-issuer need --jwt-secret or --jwt-key")
            return None
        if settings.jwt_secret is not None and settings.jwt_key is not None:
            raise TokenSetupError("--jwt-secret and --jwt-key: give one of them")
        if settings.jwt_secret is not None:
            if len(settings.jwt_secret.encode()) < 32:
                raise TokenSetupError("--jwt-secret: at least 32 bytes (RFC 7518 section 3.2: a key as long as "
                                      "the hash; a short one can be brute-forced from one token)")
            return cls(settings.jwt_secret, HMAC_ALGORITHMS, settings.jwt_audience, settings.jwt_issuer)
        assert settings.jwt_key is not None
        key, algorithms = _public_key(settings.jwt_key)
        return cls(key, algorithms, settings.jwt_audience, settings.jwt_issuer)

    def verify(self, request: Request) -> dict[str, Any]:
        """The token's claims; TokenError with the reason to refuse it."""
        token = request.parameter("token")
        if not token:
            authorization = request.header("authorization") or ""
            scheme, _, credentials = authorization.partition(" ")
            token = credentials.strip() if scheme.lower() == "bearer" else ""
        if not token:
            raise TokenError("missing token")
        jwt = self._jwt
        try:
            claims = jwt.decode(token, self._key, algorithms=self._algorithms, audience=self._audience,
                                issuer=self._issuer, options=self._options)
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token has no {exc.claim} claim") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not yet valid") from None
        except jwt.InvalidTokenError:
            raise TokenError("invalid token") from None
        if not isinstance(claims, dict):
            raise TokenError("invalid token")
        return claims


def _public_key(path: Path) -> tuple[Any, list[str]]:
    """The PEM public key of --jwt-key and the algorithms its type signs with."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenSetupError(f"--jwt-key {path}: cannot read: {exc.strerror}") from None
    try:
        key = load_pem_public_key(data)
    except ValueError:
        raise TokenSetupError(f"--jwt-key {path}: not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    kinds: list[tuple[type, Callable[[Any], list[str]]]] = [
        (rsa.RSAPublicKey, lambda _: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]),
        (ec.EllipticCurvePublicKey, _ec_algorithms),
        (ed25519.Ed25519PublicKey, lambda _: ["EdDSA"]),
        (ed448.Ed448PublicKey, lambda _: ["EdDSA"]),
    ]
    for kind, algorithms in kinds:
        if isinstance(key, kind):
            found = algorithms(key)
            if found:
                return key, found
    raise TokenSetupError(f"--jwt-key {path}: a {type(key).__name__} cannot verify JWTs "
                          "(RSA, EC P-256/384/521 or Ed25519/Ed448 keys can)")


def _ec_algorithms(key: Any) -> list[str]:
    """An EC key signs with the one algorithm of its curve (RFC 7518 section 3.4)."""
    return {"secp256r1": ["ES256"], "secp384r1": ["ES384"], "secp521r1": ["ES512"],
            "secp256k1": ["ES256K"]}.get(key.curve.name, [])
