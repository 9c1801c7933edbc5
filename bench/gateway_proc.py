"""The sandbox gateway alone in its own process: XPay's place in the benchmark.

In production XPay is another company's server; running the gateway inside the bot's process
(as `XPAY_ENV=sandbox` does for trying the bot out) would charge XPay's work to the bot.
Reads DATABASE_URL, PORT, PAYLINK_PUBLIC_URL and the XPAY_ keys (the bot's database is not
this one, so the two are given the same keys). The benchmark sends its own signed webhooks,
so nobody pays on this gateway's checkout pages.
"""

from __future__ import annotations

import os

from flask import Flask

from bot.config import load_settings
from bot.db import make_engine, make_sessionmaker
from bot.schema import upgrade
from bot.server import Server
from bot.xpay.keys import GatewayKeys
from bot.xpay.sandbox import SandboxConfig, make_sandbox_blueprint


def main() -> None:
    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    config = SandboxConfig.from_settings(settings, GatewayKeys(settings, sessions))
    app = Flask("gateway")
    blueprint = make_sandbox_blueprint(config, sessions)
    app.register_blueprint(blueprint, url_prefix="/sandbox")
    app.get("/healthz")(lambda: {"status": "ok"})
    server = Server(app, host="127.0.0.1", port=int(os.environ["PORT"]), threads=16)
    server.serve_forever()


if __name__ == "__main__":
    main()
