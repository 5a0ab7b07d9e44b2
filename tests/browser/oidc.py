"""A small OpenID Connect provider on 127.0.0.1, for signing in through Streamlit's real
`st.login` flow in tests: discovery, an authorization page where a person types who they are,
the code exchanged for an RS256-signed id token (joserfc, which Authlib, Streamlit's own
login, checks it with), the keys, and the user's claims.

Anyone may sign in as anyone: it proves the app's accounts, not a provider's security.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

CLIENT_ID = "flower-lens"
CLIENT_SECRET = secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Provider:
    """A running provider: where it is, and what a server's `[auth]` secrets need."""

    url: str

    def secrets_toml(self, app_url: str) -> str:
        """Return the `[auth]` section that makes an app at `app_url` sign in here."""
        return (
            "[auth]\n"
            f'redirect_uri = "{app_url}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_urlsafe(24)}"\n'
            f'client_id = "{CLIENT_ID}"\n'
            f'client_secret = "{CLIENT_SECRET}"\n'
            f'server_metadata_url = "{self.url}/.well-known/openid-configuration"\n'
        )


def _app(url: str):
    from joserfc import jwt
    from joserfc.jwk import RSAKey
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
    from starlette.routing import Route

    key = RSAKey.generate_key(2048)
    kid = secrets.token_hex(4)
    codes: dict[str, dict] = {}

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": url,
                "authorization_endpoint": f"{url}/authorize",
                "token_endpoint": f"{url}/token",
                "jwks_uri": f"{url}/jwks",
                "userinfo_endpoint": f"{url}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
            }
        )  # fmt: skip

    async def authorize(request: Request) -> HTMLResponse:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in request.query_params.items()
        )
        return HTMLResponse(
            "<html><body><h1>Test provider</h1><form method='get' action='/approve'>"
            f"{hidden}<label>User <input name='user' autofocus></label>"
            "<button type='submit'>Sign in</button></form></body></html>"
        )

    async def approve(request: Request) -> RedirectResponse:
        query = request.query_params
        user = query["user"].strip().lower()
        code = secrets.token_urlsafe(16)
        codes[code] = {"user": user, "nonce": query.get("nonce"), "client": query["client_id"]}
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return RedirectResponse(target, status_code=302)

    def claims_of(user: str) -> dict:
        return {"sub": f"user-{user}", "email": f"{user}@example.org", "name": user.title()}

    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        found = codes.pop(str(form.get("code")), None)
        if found is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {
            "iss": url,
            "aud": found["client"],
            "iat": now,
            "exp": now + 600,
            **claims_of(found["user"]),
        }
        if found["nonce"]:
            claims["nonce"] = found["nonce"]
        id_token = jwt.encode({"alg": "RS256", "kid": kid}, claims, key)
        return JSONResponse(
            {
                "access_token": f"access-{found['user']}",
                "token_type": "Bearer",
                "expires_in": 600,
                "id_token": id_token,
            }
        )

    async def jwks(request: Request) -> JSONResponse:
        public = key.as_dict(private=False)
        return JSONResponse({"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]})

    async def userinfo(request: Request) -> JSONResponse:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        return JSONResponse(claims_of(bearer.removeprefix("access-")))

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/authorize", authorize),
            Route("/approve", approve),
            Route("/token", token, methods=["POST"]),
            Route("/jwks", jwks),
            Route("/userinfo", userinfo),
        ]
    )


@contextmanager
def provider() -> Iterator[Provider]:
    """Run the provider on a free port of 127.0.0.1 while the block runs."""
    import uvicorn

    from tests.browser.chromium import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(_app(url), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="oidc-provider", daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "the test OpenID provider did not start"
        time.sleep(0.05)
    try:
        yield Provider(url)
    finally:
        server.should_exit = True
        thread.join(10)
