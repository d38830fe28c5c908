"""One short log line for a client's mistake, not a traceback.

BentoML logs every request that fails validation as an error with its traceback (some 2.3 KB
a request): a client sending bad requests fills the log and hides the server's own errors.
A filter on that logger turns such a record into one warning line naming the route and the
fields; every other exception keeps its traceback.
"""

import logging

BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class ClientErrorsInShort(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            fields = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}"
                for error in exc.errors(include_url=False, include_input=False)[:5]
            )
            record.msg = "client error on %s [%s] (400): %s"
            record.args = (*(record.args or ())[:2], fields[:500])
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install() -> None:
    """Attach the filter once (a worker calls this when its service starts)."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientErrorsInShort) for f in logger.filters):
        logger.addFilter(ClientErrorsInShort())
