"""Verifies $session_assertion tokens as an application would, with PyJWT
(Debian's python3-jwt): the key found by `kid` in the JWK Set that
`sessions_jwks` serves, then signature, `exp`, `aud` and `iss`.

usage: verify.py JWKS_URL AUDIENCE ISSUER TOKEN...
prints, per token, `ok SUB SID ALG` or `refused ERROR`.
"""
import sys

import jwt

url, audience, issuer, *tokens = sys.argv[1:]
client = jwt.PyJWKClient(url)
for token in tokens:
    try:
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["EdDSA", "ES256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "sid"]},
        )
        alg = jwt.get_unverified_header(token)["alg"]
        print("ok", claims["sub"], claims["sid"], alg, flush=True)
    except Exception as e:  # every refusal is an answer here
        print("refused", type(e).__name__, flush=True)
