"""Running the API unattended: bind checks, JSON logs, graceful shutdown. Used by `counterfeit serve`."""

from __future__ import annotations

import logging
import threading

import uvicorn

from api.app import create_app
from api.auth import check_bind_allowed
from api.model_slot import load_validated
from api.observability import configure_logging
from api.read_deadlines import deadline_protocol
from api.settings import Settings

log = logging.getLogger("counterfeit.server")
GRACEFUL_TIMEOUT_S = 30  # longest wait for in-flight requests once the server stops accepting


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: /readyz turns 503 first, for `drain_seconds`, then uvicorn stops accepting
    and lets in-flight requests finish. A second signal stops at once, as uvicorn does."""

    def __init__(self, config: uvicorn.Config, app_state, drain_seconds: float) -> None:
        super().__init__(config)
        self.app_state, self.drain_seconds = app_state, drain_seconds

    def handle_exit(self, sig, frame) -> None:
        if self.app_state.draining or self.drain_seconds <= 0:
            super().handle_exit(sig, frame)
            return
        self.app_state.draining = True
        log.info("shutdown requested: readiness is 503; stopping in %.1f s", self.drain_seconds)
        threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame)).start()


def serve(settings: Settings) -> None:
    """Validate everything that can be validated before listening, then serve until stopped.

    Raises ValueError (open API on a public address) or ModelFileError (bad model) before binding.
    """
    warning = check_bind_allowed(settings.host, settings.api_keys)
    predictor = load_validated(settings.model_path, settings.threads)
    configure_logging()
    if warning:
        log.warning(warning)
    app = create_app(settings, predictor)
    server = DrainingServer(server_config(app, settings), app.state, settings.drain_seconds)
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn raises the Ctrl-C it caught again once it has shut down; Ctrl-C is how the server is
        # stopped (`make run` says so), so a clean stop is no error (make printed "Error 130" for it).
        if not server.should_exit:
            raise


def server_config(app, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for the app: h11 with read deadlines for slow clients (api.read_deadlines)."""
    protocol = deadline_protocol(settings.header_timeout_seconds, settings.body_timeout_seconds)
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                          timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S, http=protocol)
