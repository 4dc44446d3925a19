"""Named errors. Two marker classes decide retries: a TransientError may succeed when
tried again (connection lost, serialization failure, deadlock); a TerminalError will not
(bad data, bad configuration, a refused migration) and must fail once, clearly."""


class VitalError(Exception):
    """Base of every error vital-etl raises on purpose."""


class TerminalError(VitalError):
    """Retrying cannot help: the input, the configuration or the target must change."""


class TransientError(VitalError):
    """The same call may succeed later (connection, serialization, deadlock)."""


class ConfigError(TerminalError):
    """A setting, rule file or manifest is missing or wrong."""


class ConnectionFailed(TransientError):
    """The database refused or dropped the connection (down, restarting, unreachable)."""


class EmbeddedServerError(TerminalError):
    """The embedded PostgreSQL under VITAL_HOME could not be started or stopped."""


class PreflightError(TerminalError):
    """The target database is not fit for the schema; nothing was changed."""


class MigrationError(TerminalError):
    """A schema file failed; its transaction was rolled back and the ledger is unchanged."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        statement: str | None = None,
        line: int | None = None,
        cause: str | None = None,
    ):
        super().__init__(message)
        self.file = file
        self.statement = statement
        self.line = line
        self.cause = cause


class ChecksumMismatchError(TerminalError):
    """An already-applied schema file was edited."""


class PruneRefused(TerminalError):
    """A prune would remove more of an entity's rows than max_delete_ratio allows; nothing was written."""

    def __init__(self, message: str, *, over: dict[str, tuple[int, int]], max_ratio: float):
        super().__init__(message)
        self.over = over  # entity -> (rows it would remove, rows of the tenant)
        self.max_ratio = max_ratio
