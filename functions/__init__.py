"""Azure Functions blueprints of tickcast: thin adapters over ``shared``."""


def reset_services() -> None:
    """Forget the process-wide services, as a fresh worker would; the next invocation rebuilds them.

    The local stack calls this when it (re)starts the functions with new app settings.
    """
    from functions import archive, predict, promote, retrain  # noqa: F401 - registers their services
    from functions.common import reset_all

    reset_all()
